//! A request's headers, kept in one buffer.
//!
//! Each request's headers were a `Vec` of owned name and value strings: a
//! webhook's five or six headers were eleven allocations, the largest group
//! of a small sync run's. [`Headers`] keeps the names and values one after
//! the other in one string, with where each ends: two allocations however
//! many headers there are.

use serde::de::{SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Header name/value pairs in arrival order.
#[derive(Clone, Default)]
pub struct Headers {
    /// Every name and value, one after the other.
    text: String,
    /// Where each header's name and its value end in `text` (the name
    /// starts where the header before it ended).
    ends: Vec<(usize, usize)>,
}

impl Headers {
    /// No headers, room for `n`.
    pub fn with_capacity(n: usize) -> Headers {
        Headers {
            text: String::with_capacity(n.saturating_mul(48)),
            ends: Vec::with_capacity(n),
        }
    }

    /// Adds a header after the others.
    #[inline]
    pub fn push(&mut self, name: &str, value: &str) {
        self.text.push_str(name);
        let name_end = self.text.len();
        self.text.push_str(value);
        self.ends.push((name_end, self.text.len()));
    }

    /// How many headers (a repeated name counts each time).
    #[inline]
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when there are none.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The header at `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<(&str, &str)> {
        self.iter().nth(i)
    }

    /// The headers in arrival order.
    #[inline]
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            text: &self.text,
            ends: self.ends.iter(),
            at: 0,
        }
    }

    /// Replaces the value of the header at `i` (nothing past the end).
    pub fn set_value(&mut self, i: usize, value: &str) {
        let Some(&(name_end, end)) = self.ends.get(i) else {
            return;
        };
        // The new value after the old, then the old one out: two moves of
        // the bytes after it (`replace_range` splices byte by byte).
        self.text.insert_str(end, value);
        self.text.drain(name_end..end);
        let new_end = name_end + value.len();
        // This value's end, and every header after it, move by the difference.
        self.ends[i].1 = new_end;
        for e in &mut self.ends[i + 1..] {
            e.0 = e.0 - end + new_end;
            e.1 = e.1 - end + new_end;
        }
    }

    /// Replaces each value `change` gives a new one for: called with each
    /// header's name and value in turn.
    pub fn change_values(&mut self, mut change: impl FnMut(&str, &str) -> Option<String>) {
        for i in 0..self.len() {
            let new = self.get(i).and_then(|(name, value)| change(name, value));
            if let Some(new) = new {
                self.set_value(i, &new);
            }
        }
    }
}

impl<N: AsRef<str>, V: AsRef<str>> FromIterator<(N, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(pairs: I) -> Headers {
        let pairs = pairs.into_iter();
        let mut headers = Headers::with_capacity(pairs.size_hint().0);
        for (name, value) in pairs {
            headers.push(name.as_ref(), value.as_ref());
        }
        headers
    }
}

impl<N: AsRef<str>, V: AsRef<str>> From<Vec<(N, V)>> for Headers {
    fn from(pairs: Vec<(N, V)>) -> Headers {
        pairs.into_iter().collect()
    }
}

/// The headers in arrival order, as name/value pairs.
pub struct Iter<'a> {
    text: &'a str,
    ends: std::slice::Iter<'a, (usize, usize)>,
    /// Where the next header starts.
    at: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a str);

    #[inline]
    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        let &(name_end, end) = self.ends.next()?;
        let name = self.text.get(self.at..name_end)?;
        let value = self.text.get(name_end..end)?;
        self.at = end;
        Some((name, value))
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.ends.size_hint()
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a Headers {
    type Item = (&'a str, &'a str);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl PartialEq for Headers {
    fn eq(&self, other: &Headers) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Headers {}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Stored as a sequence of name/value pairs, as the `Vec` it replaced was.
impl Serialize for Headers {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.len()))?;
        for pair in self.iter() {
            seq.serialize_element(&pair)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Headers, D::Error> {
        struct Pairs;
        impl<'de> Visitor<'de> for Pairs {
            type Value = Headers;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence of header name/value pairs")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Headers, A::Error> {
                let mut headers = Headers::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some((name, value)) = seq.next_element::<(String, String)>()? {
                    headers.push(&name, &value);
                }
                Ok(headers)
            }
        }
        d.deserialize_seq(Pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Headers {
        vec![
            ("a", "1"),
            ("bb", "22"),
            ("a", ""),
            ("", ""),
            ("ccc", "333"),
        ]
        .into()
    }

    #[test]
    fn headers_read_back_as_pushed() {
        let h = sample();
        assert_eq!(h.len(), 5);
        assert_eq!(h.iter().len(), 5);
        let pairs: Vec<_> = h.iter().collect();
        assert_eq!(
            pairs,
            [
                ("a", "1"),
                ("bb", "22"),
                ("a", ""),
                ("", ""),
                ("ccc", "333")
            ]
        );
        assert_eq!(h.get(4), Some(("ccc", "333")));
        assert_eq!(h.get(5), None);
        assert!(Headers::default().is_empty());
        assert_eq!(
            format!("{h:?}"),
            r#"[("a", "1"), ("bb", "22"), ("a", ""), ("", ""), ("ccc", "333")]"#
        );
    }

    #[test]
    fn a_value_set_longer_shorter_or_empty_moves_the_ones_after_it() {
        let sets = [
            (0, "longer value"),
            (1, ""),
            (2, "now set"),
            (3, "x"),
            (4, ""),
        ];
        for (i, value) in sets {
            let mut h = sample();
            h.set_value(i, value);
            let before = sample();
            let mut want: Vec<(&str, &str)> = before.iter().collect();
            want[i].1 = value;
            assert_eq!(
                h.iter().collect::<Vec<_>>(),
                want,
                "header {i} set to {value:?}"
            );
        }
        let mut h = sample();
        h.set_value(9, "nothing");
        assert_eq!(h, sample());
    }

    #[test]
    fn values_are_changed_where_asked() {
        let mut h = sample();
        h.change_values(|name, value| (name == "a").then(|| format!("<{value}>")));
        let pairs: Vec<_> = h.iter().collect();
        assert_eq!(
            pairs,
            [
                ("a", "<1>"),
                ("bb", "22"),
                ("a", "<>"),
                ("", ""),
                ("ccc", "333")
            ]
        );
    }

    #[test]
    fn headers_are_stored_as_pairs() {
        let h = sample();
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(
            json,
            r#"[["a","1"],["bb","22"],["a",""],["",""],["ccc","333"]]"#
        );
        let as_vec: Vec<(String, String)> = serde_json::from_str(&json).unwrap();
        assert_eq!(Headers::from(as_vec), h);
        let back: Headers = serde_json::from_str(&json).unwrap();
        assert_eq!(back, h);
        assert!(serde_json::from_str::<Headers>(r#"[["a"]]"#).is_err());
    }
}
