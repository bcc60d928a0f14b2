//! Values at dotted paths read straight from a JSON body (`order.id`,
//! `items[0].sku`), the whole body checked as it is read, without building
//! the document: what a run's `vars` need when nothing reads `trigger.body`
//! whole. Parsing a small body to a value, looking two fields up in it and
//! dropping it was ~6 % of a sync run's instructions.
//!
//! It reads JSON as parsing it to a value does, through the same
//! deserializer: the same errors at the same places (a body one refuses,
//! the other refuses alike), and a member that appears twice counts as its
//! last appearance, as in the value.

use hookflow_model::path::{lookup_dotted, Step};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value as Json;
use std::fmt;

/// The most paths read in one pass: one bit of a mask each.
pub const MAX_PATHS: usize = 64;

/// The value at each of `paths` in `body` (`None` where a path finds
/// nothing), in the order given, or the error parsing `body` to a value
/// gives. Paths past [`MAX_PATHS`] are not read (`None`): the caller reads
/// more than that from the parsed body.
pub fn pluck(body: &[u8], paths: &[&[Step]]) -> Result<Vec<Option<Json>>, serde_json::Error> {
    pluck_from(serde_json::Deserializer::from_slice(body), paths)
}

/// [`pluck`] of a body already known to be UTF-8: its strings are not
/// checked again as they are read (from bytes, each one is).
/// What it gives is what [`pluck`] gives for the same bytes.
pub fn pluck_text(body: &str, paths: &[&[Step]]) -> Result<Vec<Option<Json>>, serde_json::Error> {
    pluck_from(serde_json::Deserializer::from_str(body), paths)
}

fn pluck_from<'de, R: serde_json::de::Read<'de>>(
    mut de: serde_json::Deserializer<R>,
    paths: &[&[Step]],
) -> Result<Vec<Option<Json>>, serde_json::Error> {
    let mut found = vec![None; paths.len()];
    let reads = paths.len().min(MAX_PATHS);
    let all = match reads {
        MAX_PATHS => u64::MAX,
        n => (1u64 << n) - 1,
    };
    Level {
        paths,
        depth: 0,
        active: all,
        found: &mut found,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(found)
}

/// The indexes of the bits set in `mask`.
fn bits(mut mask: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        (mask != 0).then(|| {
            let i = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            i
        })
    })
}

/// A value `depth` steps into the body, reached by the paths in `active`
/// (each of which has more than `depth` steps). With no path active it is
/// read only to be checked, as parsing it to a value would (ignoring it
/// instead would pass strings that are not UTF-8).
struct Level<'a> {
    paths: &'a [&'a [Step]],
    depth: usize,
    active: u64,
    found: &'a mut [Option<Json>],
}

impl Level<'_> {
    /// A member or element no path goes through.
    fn skip(&mut self) -> Level<'_> {
        Level {
            paths: self.paths,
            depth: self.depth + 1,
            active: 0,
            found: &mut [],
        }
    }

    /// The member or element the paths in `next` go through, when none of
    /// them ends there. What an earlier member of the same name gave is
    /// forgotten first: the last one counts.
    fn deeper(&mut self, next: u64) -> Level<'_> {
        for i in bits(next) {
            self.found[i] = None;
        }
        Level {
            paths: self.paths,
            depth: self.depth + 1,
            active: next,
            found: &mut *self.found,
        }
    }

    /// Whether one of the paths in `next` ends at the next level: that
    /// member or element is read whole.
    fn ends(&self, next: u64) -> bool {
        bits(next).any(|i| self.paths[i].len() == self.depth + 1)
    }

    /// The paths in `next` looked up in the member or element read whole
    /// (moved to the one path that ends there when it is the only one).
    fn found_in(&mut self, next: u64, value: Json) {
        let depth = self.depth + 1;
        if next.count_ones() == 1 {
            let i = next.trailing_zeros() as usize;
            if self.paths[i].len() == depth {
                self.found[i] = Some(value);
                return;
            }
        }
        for i in bits(next) {
            self.found[i] = lookup_dotted(&self.paths[i][depth..], &value).cloned();
        }
    }

    /// The paths going through element `index` of an array.
    fn at_index(&self, index: usize) -> u64 {
        bits(self.active)
            .filter(|&i| match &self.paths[i][self.depth] {
                Step::Index(at) => *at == index,
                // `items.0` reads arrays too, as a lookup in a value does.
                Step::Key(k) => k.parse::<usize>().ok() == Some(index),
            })
            .fold(0, |mask, i| mask | 1 << i)
    }
}

impl<'de> DeserializeSeed<'de> for Level<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Level<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let key = KeyMatch {
            paths: self.paths,
            depth: self.depth,
            active: self.active,
        };
        while let Some(next) = map.next_key_seed(key)? {
            if next == 0 {
                map.next_value_seed(self.skip())?;
            } else if self.ends(next) {
                let value: Json = map.next_value()?;
                self.found_in(next, value);
            } else {
                map.next_value_seed(self.deeper(next))?;
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        loop {
            let next = self.at_index(index);
            let more = if next == 0 {
                seq.next_element_seed(self.skip())?.is_some()
            } else if self.ends(next) {
                match seq.next_element::<Json>()? {
                    Some(value) => {
                        self.found_in(next, value);
                        true
                    }
                    None => false,
                }
            } else {
                seq.next_element_seed(self.deeper(next))?.is_some()
            };
            if !more {
                return Ok(());
            }
            index += 1;
        }
    }
}

/// An object's member name → the paths in `active` that go through it.
#[derive(Clone, Copy)]
struct KeyMatch<'a> {
    paths: &'a [&'a [Step]],
    depth: usize,
    active: u64,
}

impl<'de> DeserializeSeed<'de> for KeyMatch<'_> {
    type Value = u64;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyMatch<'_> {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<u64, E> {
        Ok(bits(self.active)
            .filter(|&i| matches!(&self.paths[i][self.depth], Step::Key(k) if k == name))
            .fold(0, |mask, i| mask | 1 << i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookflow_model::path::parse_dotted;
    use proptest::prelude::*;

    /// What parsing `body` to a value and looking `paths` up in it gives:
    /// what [`pluck`] must give, error for error.
    fn by_value(body: &[u8], paths: &[Vec<Step>]) -> Result<Vec<Option<Json>>, String> {
        let value: Json = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        Ok(paths
            .iter()
            .map(|p| lookup_dotted(p, &value).cloned())
            .collect())
    }

    fn plucked(body: &[u8], paths: &[Vec<Step>]) -> Result<Vec<Option<Json>>, String> {
        let steps: Vec<&[Step]> = paths.iter().map(Vec::as_slice).collect();
        let got = pluck(body, &steps).map_err(|e| e.to_string());
        // Read as text, a UTF-8 body gives the same, error for error.
        if let Ok(text) = std::str::from_utf8(body) {
            let as_text = pluck_text(text, &steps).map_err(|e| e.to_string());
            assert_eq!(as_text, got, "as text: {text:?}");
        }
        got
    }

    /// [`pluck`] reads `body` as a parse and a lookup do.
    fn agrees(body: &[u8], wanted: &[Vec<Step>], what: &str) {
        assert_eq!(plucked(body, wanted), by_value(body, wanted), "{what}");
    }

    fn paths(texts: &[&str]) -> Vec<Vec<Step>> {
        texts.iter().map(|t| parse_dotted(t).expect(t)).collect()
    }

    #[test]
    fn reads_what_a_lookup_in_the_parsed_body_reads() {
        let wanted = paths(&[
            "order.id",
            "order",
            "status",
            "items[1].sku",
            "items.0.sku",
            "items[0]",
            "list[0][1]",
            "order.missing",
            "items[5].sku",
            "status.deeper",
            "order.id.deeper",
            "a.b.c",
        ]);
        for body in [
            r#"{"order":{"id":"ORD-1","amount":99.5},"status":"SUCCESS"}"#,
            r#"{"items":[{"sku":"x"},{"sku":"y","n":[1,2]}],"list":[[1,2],[3]]}"#,
            // A repeated member counts as its last appearance, at any depth.
            r#"{"order":{"id":"A"},"order":{"amount":1},"status":1,"status":null}"#,
            r#"{"order":{"id":"A","id":"B"},"items":[{"sku":1}],"items":[]}"#,
            r#"{"a":{"b":{"c":1}},"a":{"b":2}}"#,
            r#"{"a":{"b":{"c":[true]}},"a":{"b":{"d":1,"c":"\u00e9\n"}}}"#,
            r#"[{"sku":1},{"sku":2}]"#,
            r#""just a string""#,
            "null",
            " 12.5e3 ",
            r#"{"order":[1,2],"items":{"1":{"sku":"in an object"}}}"#,
            r#"{"or\u0064er":{"id":"escaped name"}}"#,
            r#"{}"#,
        ] {
            agrees(body.as_bytes(), &wanted, body);
        }
    }

    #[test]
    fn refuses_what_parsing_to_a_value_refuses_with_the_same_error() {
        let wanted = paths(&["a", "b.c", "d[0]"]);
        for body in [
            &b"{\"a\": }"[..],
            b"{\"a\":1} x",
            b"{\"skipped\":\"\xff\"}",
            b"{\"a\":\"\xff\"}",
            b"{\"skipped\":\"\\ud800\"}",
            b"{\"skipped\":1e999}",
            b"{\"b\":{\"c\":1,}}",
            b"{\"x\":[1,2,]}",
            b"{\"x\":\"tab\there\"}",
            b"[1, 2",
            b"",
            b"{\"a\":1,\"a\":}",
            b"\xef\xbb\xbf{}",
            b"{\"\xff\":1}",
        ] {
            let expected = by_value(body, &wanted);
            assert!(expected.is_err(), "{body:?} should not parse");
            assert_eq!(plucked(body, &wanted), expected, "{body:?}");
        }
        // As deep as a value may nest, and no deeper.
        for depth in [127, 128, 129, 5000] {
            let body = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let deep = paths(&["[0][0][0]"]);
            agrees(body.as_bytes(), &deep, &format!("{depth}"));
            let skipped = format!("{{\"s\":{body}}}");
            agrees(skipped.as_bytes(), &deep, &format!("{depth} skipped"));
        }
    }

    #[test]
    fn paths_past_the_mask_are_left_to_the_caller() {
        let mut texts: Vec<String> = (0..MAX_PATHS + 2).map(|i| format!("k{i}")).collect();
        texts[MAX_PATHS - 1] = "last".into();
        let wanted: Vec<Vec<Step>> = texts.iter().map(|t| parse_dotted(t).expect(t)).collect();
        let body = br#"{"k0":0,"last":1,"k64":2,"k65":3}"#;
        let got = plucked(body, &wanted).expect("parses");
        assert_eq!(got[0], Some(Json::from(0)));
        assert_eq!(got[MAX_PATHS - 1], Some(Json::from(1)));
        assert_eq!(got[MAX_PATHS], None);
        assert_eq!(got[MAX_PATHS + 1], None);
    }

    /// Small JSON values with few names, so that paths find things and
    /// names repeat.
    fn json() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_string()),
            Just("true".to_string()),
            (-5i64..5).prop_map(|n| n.to_string()),
            Just("1.5".to_string()),
            "[a-c]{0,2}".prop_map(|s| format!("\"{s}\"")),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4)
                    .prop_map(|items| format!("[{}]", items.join(","))),
                prop::collection::vec(("[a-c0-1]", inner), 0..5).prop_map(|members| {
                    let members: Vec<String> = members
                        .into_iter()
                        .map(|(k, v)| format!("\"{k}\":{v}"))
                        .collect();
                    format!("{{{}}}", members.join(","))
                }),
            ]
        })
    }

    fn path() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof!["[a-c0-1]", (0usize..3).prop_map(|i| format!("[{i}]"))],
            1..4,
        )
        .prop_map(|steps| {
            let mut text = String::new();
            for s in steps {
                if !s.starts_with('[') && !text.is_empty() {
                    text.push('.');
                }
                text.push_str(&s);
            }
            text
        })
        .prop_filter("a dotted path", |t| parse_dotted(t).is_ok())
    }

    proptest! {
        #[test]
        fn any_body_reads_as_its_value_does(
            body in json(),
            texts in prop::collection::vec(path(), 0..6),
            cut in 0usize..200,
            flip in prop::option::of((0usize..200, any::<u8>())),
        ) {
            let wanted: Vec<Vec<Step>> = texts.iter().map(|t| parse_dotted(t).expect("filtered")).collect();
            prop_assert_eq!(plucked(body.as_bytes(), &wanted), by_value(body.as_bytes(), &wanted));
            // Broken bodies: cut short, or a byte changed.
            let mut broken = body.clone().into_bytes();
            broken.truncate(cut.min(broken.len()));
            prop_assert_eq!(plucked(&broken, &wanted), by_value(&broken, &wanted));
            if let Some((at, byte)) = flip {
                let mut changed = body.into_bytes();
                if let Some(b) = changed.get_mut(at) {
                    *b = byte;
                }
                prop_assert_eq!(plucked(&changed, &wanted), by_value(&changed, &wanted));
            }
        }
    }
}
