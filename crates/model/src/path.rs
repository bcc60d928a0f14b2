//! Paths into JSON: dotted paths with indexes (`order.items[0].sku`) and
//! JSONPath (`$.items[*].sku`, parsed once when the workflow loads).
//!
//! This is the only module that knows the JSONPath crate.

use jsonpath_rust::parser::model::JpQuery;
use serde_json::Value as Json;
use std::fmt;
use std::sync::Arc;

/// One step of a dotted path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// An object member.
    Key(String),
    /// An array index.
    Index(usize),
}

/// A compiled path: dotted, or JSONPath.
#[derive(Clone)]
pub enum KeyPath {
    /// `a.b[0].c`.
    Dotted(Vec<Step>),
    /// A JSONPath, with its source.
    JsonPath(JsonPath),
}

/// A parsed JSONPath.
#[derive(Clone)]
pub struct JsonPath {
    query: Arc<JpQuery>,
    /// The source text.
    pub source: String,
}

impl fmt::Debug for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "JsonPath({})", self.source)
    }
}

impl fmt::Debug for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            KeyPath::Dotted(steps) => write!(f, "Dotted({steps:?})"),
            KeyPath::JsonPath(p) => p.fmt(f),
        }
    }
}

impl JsonPath {
    /// Parses a JSONPath.
    pub fn parse(source: &str) -> Result<JsonPath, String> {
        jsonpath_rust::parser::parse_json_path(source)
            .map(|q| JsonPath {
                query: Arc::new(q),
                source: source.to_string(),
            })
            .map_err(|e| {
                format!(
                    "invalid JSONPath `{source}`: {}",
                    tidy_parse_error(source, &e.to_string())
                )
            })
    }

    /// All matches, in document order.
    pub fn query(&self, value: &Json) -> Vec<Json> {
        match jsonpath_rust::query::js_path_process(&self.query, value) {
            Ok(refs) => refs.into_iter().map(|r| r.val().clone()).collect(),
            Err(_) => Vec::new(),
        }
    }
}

impl KeyPath {
    /// Parses a key: JSONPath when it starts with `$`, otherwise dotted.
    pub fn parse(key: &str) -> Result<KeyPath, String> {
        if key.starts_with('$') {
            JsonPath::parse(key).map(KeyPath::JsonPath)
        } else {
            parse_dotted(key).map(KeyPath::Dotted)
        }
    }

    /// The value at the path: for a dotted path the value if present; for a
    /// JSONPath the list of matches, `None` when nothing matches.
    pub fn lookup(&self, value: &Json) -> Option<Json> {
        match self {
            KeyPath::Dotted(steps) => lookup_dotted(steps, value).cloned(),
            KeyPath::JsonPath(p) => {
                let matches = p.query(value);
                (!matches.is_empty()).then_some(Json::Array(matches))
            }
        }
    }
}

/// The parser's multi-line message in hookflow's words: where the path stops
/// parsing and what is there (the parser's own grammar names, such as
/// `atom_expr`, mean nothing to an author).
fn tidy_parse_error(source: &str, message: &str) -> String {
    let at = message
        .lines()
        .find_map(|l| l.split_once("--> ").map(|(_, pos)| pos))
        .and_then(|pos| pos.split(':').nth(1))
        .and_then(|col| col.trim().parse::<usize>().ok());
    let Some(at) = at else {
        return "it does not parse; see the JSONPath syntax (RFC 9535)".into();
    };
    let rest: String = source.chars().skip(at.saturating_sub(1)).take(12).collect();
    if rest.is_empty() {
        format!("it ends too early (at character {at}); close its brackets and quotes")
    } else {
        format!(
            "it does not parse at character {at} (`{rest}`); see the JSONPath syntax (RFC 9535)"
        )
    }
}

/// Follows dotted steps.
pub fn lookup_dotted<'a>(steps: &[Step], value: &'a Json) -> Option<&'a Json> {
    let mut v = value;
    for step in steps {
        v = match (step, v) {
            (Step::Key(k), Json::Object(m)) => m.get(k)?,
            (Step::Index(i), Json::Array(a)) => a.get(*i)?,
            // `items.0` works on arrays too.
            (Step::Key(k), Json::Array(a)) => a.get(k.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(v)
}

/// Parses `a.b[0].c` into steps.
pub fn parse_dotted(path: &str) -> Result<Vec<Step>, String> {
    let err = |why: &str| format!("invalid path `{path}`: {why}");
    if path.is_empty() {
        return Err(err("empty"));
    }
    let mut steps = Vec::new();
    for part in path.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if name.is_empty() && (rest.is_empty() || steps.is_empty() && !path.starts_with('[')) {
            return Err(err("empty segment"));
        }
        if !name.is_empty() {
            steps.push(Step::Key(name.to_string()));
        }
        while !rest.is_empty() {
            let close = rest.find(']').ok_or_else(|| err("missing `]`"))?;
            let index: usize = rest[1..close]
                .trim()
                .parse()
                .map_err(|_| err("an index must be a whole number, like [0]"))?;
            steps.push(Step::Index(index));
            rest = &rest[close + 1..];
            if !rest.is_empty() && !rest.starts_with('[') {
                return Err(err("unexpected text after `]`"));
            }
        }
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dotted_paths() {
        let v =
            json!({"order": {"id": "A", "items": [{"sku": "x"}, {"sku": "y"}]}, "list": [[1, 2]]});
        let cases = [
            ("order.id", Some(json!("A"))),
            ("order.items[1].sku", Some(json!("y"))),
            ("order.items.0.sku", Some(json!("x"))),
            ("list[0][1]", Some(json!(2))),
            ("order.missing", None),
            ("order.items[5]", None),
        ];
        for (path, expected) in cases {
            let p = KeyPath::parse(path).expect(path);
            assert_eq!(p.lookup(&v), expected, "{path}");
        }
        for bad in ["", "a..b", "a[x]", "a[1", "a[1]b"] {
            assert!(parse_dotted(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn jsonpath_lists_matches() {
        let v = json!({"items": [{"sku": "x"}, {"sku": "y"}]});
        let p = KeyPath::parse("$.items[*].sku").expect("parses");
        assert_eq!(p.lookup(&v), Some(json!(["x", "y"])));
        let p = KeyPath::parse("$.nothing[*]").expect("parses");
        assert_eq!(p.lookup(&v), None);
        assert!(KeyPath::parse("$.items[").is_err());
        assert!(KeyPath::parse("$$").is_err());
    }
}
