//! Query strings and form bodies to nested JSON: `a=1&a=2` → list,
//! `a[b]=1` → object, `a[0]=x` and `a[]=x` → list; percent-decoding, `+` as space.

use percent_encoding::percent_decode_str;
use serde_json::{Map, Value as Json};

/// Most bracket levels honoured in one key; deeper ones stay in the last key's text.
const MAX_DEPTH: usize = 16;

/// Parses `a=1&b[c]=2` into a JSON object.
pub fn parse_query(query: &str) -> Json {
    parse_query_in(query, None)
}

/// [`parse_query`] of a form whose percent-encoded bytes are text in
/// `charset` (a form sent with `charset=gbk`); UTF-8 when `None`.
pub fn parse_query_in(query: &str, charset: Option<&'static encoding_rs::Encoding>) -> Json {
    let decode = |s: &str| decode_in(s, charset);
    let mut root = Map::new();
    let mut next = NextIndex::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(raw_key);
        if key.is_empty() {
            continue;
        }
        let value = Json::String(decode(raw_value));
        let (name, path) = split_key(&key);
        insert(&mut root, name, &path, value, &mut next);
    }
    Json::Object(root)
}

/// For each object that `[]` appends to (a list that got a named member),
/// the lowest index key that may be free, by the key's text up to it:
/// each `[]` looks from there, so a query of n pairs costs O(n) lookups
/// however its numbered keys are laid out (looking from the object's size
/// each time was quadratic: a 250 KB form took 42 s).
#[derive(Default)]
struct NextIndex {
    by_path: std::collections::HashMap<String, usize>,
}

impl NextIndex {
    /// Appends `child` to `m` under its next free index key.
    fn append(&mut self, at: &str, m: &mut Map<String, Json>, child: Json) {
        let next = self.by_path.entry(at.to_string()).or_insert(0);
        let mut index = *next;
        while m.contains_key(index.to_string().as_str()) {
            #[cfg(test)]
            LOOKUPS.with(|l| l.set(l.get() + 1));
            index += 1;
        }
        m.insert(index.to_string(), child);
        *next = index + 1;
    }
}

#[cfg(test)]
thread_local! {
    /// Index keys found taken while appending, on this thread.
    static LOOKUPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn decode_in(s: &str, charset: Option<&'static encoding_rs::Encoding>) -> String {
    let plus = s.replace('+', " ");
    let bytes = percent_decode_str(&plus);
    match charset {
        Some(encoding) => {
            let bytes: Vec<u8> = bytes.collect();
            encoding.decode_without_bom_handling(&bytes).0.into_owned()
        }
        None => bytes.decode_utf8_lossy().into_owned(),
    }
}

/// One bracket step of a key.
#[derive(Debug, PartialEq)]
enum Step {
    /// `[name]`.
    Key(String),
    /// `[3]`.
    Index(usize),
    /// `[]`.
    Push,
}

/// `a[b][0][]` → ("a", [Key b, Index 0, Push]). Unbalanced brackets keep the key as written.
fn split_key(key: &str) -> (String, Vec<Step>) {
    let Some(open) = key.find('[') else {
        return (key.to_string(), Vec::new());
    };
    if open == 0 {
        return (key.to_string(), Vec::new());
    }
    let name = key[..open].to_string();
    let mut steps = Vec::new();
    let mut rest = &key[open..];
    while let Some(inner) = rest.strip_prefix('[') {
        let Some(close) = inner.find(']') else {
            return (key.to_string(), Vec::new());
        };
        if steps.len() == MAX_DEPTH {
            return (key.to_string(), Vec::new());
        }
        let part = &inner[..close];
        steps.push(if part.is_empty() {
            Step::Push
        } else if let Ok(i) = part.parse::<usize>() {
            Step::Index(i)
        } else {
            Step::Key(part.to_string())
        });
        rest = &inner[close + 1..];
    }
    if !rest.is_empty() {
        return (key.to_string(), Vec::new());
    }
    (name, steps)
}

fn insert(
    map: &mut Map<String, Json>,
    name: String,
    path: &[Step],
    value: Json,
    next: &mut NextIndex,
) {
    if path.is_empty() {
        // A repeated plain key becomes a list.
        match map.get_mut(&name) {
            Some(Json::Array(items)) => items.push(value),
            Some(existing @ Json::String(_)) => {
                let first = existing.take();
                *existing = Json::Array(vec![first, value]);
            }
            _ => {
                map.insert(name, value);
            }
        }
        return;
    }
    let mut at = name.clone();
    let slot = map.entry(name).or_insert(Json::Null);
    set_path(slot, path, value, &mut Walk { at: &mut at, next });
}

/// Where `set_path` is: the key's text so far, and the appends' state.
struct Walk<'a> {
    at: &'a mut String,
    next: &'a mut NextIndex,
}

impl Walk<'_> {
    /// Goes one step down, the step's text added to `at` for `f`.
    fn down(&mut self, step: &str, f: impl FnOnce(&mut Walk<'_>)) {
        let len = self.at.len();
        self.at.push('[');
        self.at.push_str(step);
        self.at.push(']');
        f(self);
        self.at.truncate(len);
    }
}

fn set_path(slot: &mut Json, path: &[Step], value: Json, walk: &mut Walk<'_>) {
    let Some((step, rest)) = path.split_first() else {
        *slot = value;
        return;
    };
    match step {
        Step::Key(k) => {
            if !slot.is_object() {
                *slot = match slot.take() {
                    // A list that gets a named member becomes an object keyed by index.
                    Json::Array(items) => Json::Object(
                        items
                            .into_iter()
                            .enumerate()
                            .map(|(i, v)| (i.to_string(), v))
                            .collect(),
                    ),
                    _ => Json::Object(Map::new()),
                };
            }
            if let Json::Object(m) = slot {
                let child = m.entry(k.clone()).or_insert(Json::Null);
                walk.down(k, |w| set_path(child, rest, value, w));
            }
        }
        Step::Index(i) => {
            let text = i.to_string();
            match slot {
                Json::Array(items) if *i < items.len() => {
                    walk.down(&text, |w| set_path(&mut items[*i], rest, value, w));
                }
                Json::Array(items) if *i == items.len() => {
                    let mut child = Json::Null;
                    walk.down(&text, |w| set_path(&mut child, rest, value, w));
                    items.push(child);
                }
                Json::Null if *i == 0 => {
                    let mut child = Json::Null;
                    walk.down(&text, |w| set_path(&mut child, rest, value, w));
                    *slot = Json::Array(vec![child]);
                }
                _ => {
                    // A sparse or out-of-order index: keep it as an object key.
                    set_path(slot, &[Step::Key(text.clone())], Json::Null, walk);
                    if let Json::Object(m) = slot {
                        if let Some(child) = m.get_mut(&text) {
                            walk.down(&text, |w| set_path(child, rest, value, w));
                        }
                    }
                }
            }
        }
        Step::Push => {
            // A fresh child: what is below it is new, never appended to again.
            let mut child = Json::Null;
            walk.down("", |w| set_path(&mut child, rest, value, w));
            if let Json::Object(m) = slot {
                // A list that became an object (it got a named member)
                // takes the next free index as a key. Wrapping the object
                // in a new list instead nested one level deeper per pair:
                // `q[]=x&q[k]=y` repeated built a value thousands of
                // levels deep, which overflowed the stack.
                walk.next.append(walk.at, m, child);
                return;
            }
            if !slot.is_array() {
                *slot = match slot.take() {
                    Json::Null => Json::Array(Vec::new()),
                    other => Json::Array(vec![other]),
                };
            }
            if let Json::Array(items) = slot {
                items.push(child);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// One helper for the query parser: text in, JSON out.
    fn check(query: &str, expected: Json) {
        assert_eq!(parse_query(query), expected, "{query}");
    }

    #[test]
    fn plain_keys() {
        check("", json!({}));
        check("a=1&b=two", json!({"a": "1", "b": "two"}));
        check("a", json!({"a": ""}));
        check("a=1&&b=2&", json!({"a": "1", "b": "2"}));
        check("=x", json!({}));
    }

    #[test]
    fn repeated_keys_make_lists() {
        check("a=1&a=2", json!({"a": ["1", "2"]}));
        check("a=1&a=2&a=3", json!({"a": ["1", "2", "3"]}));
    }

    #[test]
    fn brackets_make_objects_and_lists() {
        check("a[b]=1", json!({"a": {"b": "1"}}));
        check(
            "a[b][c]=1&a[d]=2",
            json!({"a": {"b": {"c": "1"}, "d": "2"}}),
        );
        check("a[0]=x&a[1]=y", json!({"a": ["x", "y"]}));
        check("a[]=x&a[]=y", json!({"a": ["x", "y"]}));
        check(
            "a[0][n]=x&a[1][n]=y",
            json!({"a": [{"n": "x"}, {"n": "y"}]}),
        );
        check("a[5]=x", json!({"a": {"5": "x"}}));
        check("a[b=1", json!({"a[b": "1"}));
        check("[a]=1", json!({"[a]": "1"}));
    }

    /// Depth of a value: 1 for a scalar.
    fn depth(v: &Json) -> usize {
        1 + match v {
            Json::Array(items) => items.iter().map(depth).max().unwrap_or(0),
            Json::Object(m) => m.values().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }

    #[test]
    fn no_sequence_of_pairs_nests_deeper_than_one_key() {
        let hostile = "q[]=x&q[k]=y&".repeat(5_000);
        let parsed = parse_query(&hostile);
        assert!(depth(&parsed) <= 3, "depth {}", depth(&parsed));
        check(
            "q[]=x&q[k]=y&q[]=z",
            json!({"q": {"0": "x", "k": "y", "1": "z"}}),
        );
        // A key's own brackets still nest, up to the limit.
        let deep = format!("a{}=1", "[b]".repeat(40));
        assert!(depth(&parse_query(&deep)) <= MAX_DEPTH + 2);
    }

    /// Numbered keys laid out ahead of many `[]`: each `[]` looks past
    /// them once, not once per pair (that was quadratic: seconds of CPU
    /// for a 125 KB query). Counted in lookups, not timed.
    #[test]
    fn appending_past_numbered_keys_is_linear() {
        let block: String = (1..=3_000).map(|i| format!("q[{i}]=n&")).collect();
        let query = format!("q[k]=y&{block}{}", "q[]=x&".repeat(3_000));
        let parsed = parse_query(&query);
        let q = parsed["q"].as_object().expect("an object");
        assert_eq!(q.len(), 1 + 3_000 + 3_000);
        assert_eq!(q.get("0"), Some(&json!("x")));
        assert_eq!(q.get("3000"), Some(&json!("n")));
        assert_eq!(q.get("3001"), Some(&json!("x")));
        assert_eq!(q.get("5999"), Some(&json!("x")));
        let lookups = LOOKUPS.with(std::cell::Cell::get);
        assert!(lookups < 20_000, "{lookups} lookups for 6,000 pairs");
    }

    #[test]
    fn decoding() {
        check(
            "q=hello+world&e=%E4%BD%A0%E5%A5%BD",
            json!({"q": "hello world", "e": "你好"}),
        );
        check("a%5Bb%5D=1", json!({"a": {"b": "1"}}));
        check("bad=%ZZ%", json!({"bad": "%ZZ%"}));
        check("plus=%2B", json!({"plus": "+"}));
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,64}") {
            let _ = parse_query(&s);
        }

        #[test]
        fn bracket_soup_never_panics(s in "[a-c\\[\\]0-2=&%+]{0,40}") {
            let _ = parse_query(&s);
        }

        /// However the pairs follow each other, the value is no deeper
        /// than one key's brackets make it.
        #[test]
        fn pairs_never_nest_past_one_key(keys in proptest::collection::vec("q(\\[(|k|0|1)\\]){1,3}", 1..200)) {
            let query: Vec<String> = keys.iter().map(|k| format!("{k}=v")).collect();
            let parsed = parse_query(&query.join("&"));
            prop_assert!(depth(&parsed) <= 5, "depth {} of {:?}", depth(&parsed), query);
        }

        #[test]
        fn round_trips_simple_maps(map in proptest::collection::btree_map("[a-z]{1,8}", "[a-zA-Z0-9 &=+%/?\u{4e00}-\u{4e10}]{0,12}", 0..8)) {
            let encoded: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{k}={}", percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)))
                .collect();
            let parsed = parse_query(&encoded.join("&"));
            let expected: Map<String, Json> = map.into_iter().map(|(k, v)| (k, Json::String(v))).collect();
            prop_assert_eq!(parsed, Json::Object(expected));
        }
    }
}
