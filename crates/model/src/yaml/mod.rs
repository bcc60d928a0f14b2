//! The YAML source as a tree with a position on every node, and a serde
//! `Deserializer` over it.
//!
//! This is the only module that knows the YAML crate. Files are read in two
//! passes: YAML text → [`Yaml`] (syntax errors and duplicate keys come out with
//! their position), then [`Yaml`] → the serde definition types through
//! [`from_yaml`], whose errors carry the position of the innermost node that was
//! being read. Later checks find positions again with [`Yaml::locate`].

use serde::de::{
    self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use serde_saphyr::Spanned;
use std::fmt;

/// A 1-based line and column in a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord)]
pub struct Pos {
    /// Line, starting at 1 (0 when unknown).
    pub line: u32,
    /// Column, starting at 1 (0 when unknown).
    pub column: u32,
}

impl Pos {
    fn from_location(loc: &serde_saphyr::Location) -> Pos {
        Pos {
            line: u32::try_from(loc.line()).unwrap_or(u32::MAX),
            column: u32::try_from(loc.column()).unwrap_or(u32::MAX),
        }
    }
}

/// One YAML node with the position it starts at.
#[derive(Debug, Clone, PartialEq)]
pub struct Yaml {
    /// Where the node starts.
    pub pos: Pos,
    /// What it is.
    pub kind: YamlKind,
}

/// The kinds of YAML node.
#[derive(Debug, Clone, PartialEq)]
pub enum YamlKind {
    /// `~`, `null` or nothing.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer too big for `i64`.
    UInt(u64),
    /// A float.
    Float(f64),
    /// A string scalar.
    Str(String),
    /// A sequence.
    Seq(Vec<Yaml>),
    /// A mapping, in source order; keys are strings with their own positions.
    Map(Vec<(String, Pos, Yaml)>),
}

/// One step of a path into the tree: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

impl From<&str> for Seg {
    fn from(s: &str) -> Seg {
        Seg::Key(s.to_string())
    }
}

impl From<usize> for Seg {
    fn from(i: usize) -> Seg {
        Seg::Index(i)
    }
}

/// A YAML syntax error with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    /// Where the parser stopped.
    pub pos: Pos,
    /// The parser's message, first line only.
    pub message: String,
}

impl Yaml {
    /// Parses YAML text. An empty document is a `Null` node at 1:1.
    pub fn parse(text: &str) -> Result<Yaml, SyntaxError> {
        if text.trim().is_empty() {
            return Ok(Yaml {
                pos: Pos { line: 1, column: 1 },
                kind: YamlKind::Null,
            });
        }
        // YAML 1.2 booleans only: `n`, `no`, `on` and `yes` stay strings.
        let mut options = serde_saphyr::Options::default();
        options.strict_booleans = true;
        options.leading_zero_numbers_as_strings = true;
        options.with_snippet = false;
        match serde_saphyr::from_str_with_options::<Spanned<Raw>>(text, options) {
            Ok(root) => Ok(root.into()),
            Err(e) => {
                let pos = e
                    .location()
                    .map(|l| Pos::from_location(&l))
                    .unwrap_or_default();
                Err(SyntaxError {
                    pos,
                    message: first_message_line(&e.to_string()),
                })
            }
        }
    }

    /// The node at `path`, if it exists.
    pub fn get(&self, path: &[Seg]) -> Option<&Yaml> {
        let mut node = self;
        for seg in path {
            node = node.child(seg)?;
        }
        Some(node)
    }

    /// The position of `path`, or of its deepest existing ancestor. For a
    /// mapping key the position is the key's own (so "unknown field" and
    /// "duplicate key" point at the key).
    pub fn locate(&self, path: &[Seg]) -> Pos {
        let mut node = self;
        let mut pos = self.pos;
        for seg in path {
            match (&node.kind, seg) {
                (YamlKind::Map(entries), Seg::Key(k)) => {
                    match entries.iter().find(|(key, _, _)| key == k) {
                        Some((_, kpos, value)) => {
                            pos = *kpos;
                            node = value;
                        }
                        None => return pos,
                    }
                }
                (YamlKind::Seq(items), Seg::Index(i)) => match items.get(*i) {
                    Some(item) => {
                        pos = item.pos;
                        node = item;
                    }
                    None => return pos,
                },
                _ => return pos,
            }
        }
        pos
    }

    /// The position of the value at `path` (rather than its key).
    pub fn locate_value(&self, path: &[Seg]) -> Pos {
        self.get(path)
            .map(|n| n.pos)
            .unwrap_or_else(|| self.locate(path))
    }

    fn child(&self, seg: &Seg) -> Option<&Yaml> {
        match (&self.kind, seg) {
            (YamlKind::Map(entries), Seg::Key(k)) => entries
                .iter()
                .find(|(key, _, _)| key == k)
                .map(|(_, _, v)| v),
            (YamlKind::Seq(items), Seg::Index(i)) => items.get(*i),
            _ => None,
        }
    }

    /// A short name of the node's kind for messages.
    fn kind_name(&self) -> &'static str {
        match self.kind {
            YamlKind::Null => "null",
            YamlKind::Bool(_) => "a boolean",
            YamlKind::Int(_) | YamlKind::UInt(_) => "an integer",
            YamlKind::Float(_) => "a number",
            YamlKind::Str(_) => "a string",
            YamlKind::Seq(_) => "a list",
            YamlKind::Map(_) => "a mapping",
        }
    }
}

fn first_message_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or(s).trim();
    let line = line.strip_prefix("error: ").unwrap_or(line);
    // serde-saphyr prefixes "line L column C: "; the position is reported separately.
    match line.find(": ") {
        Some(i) if line.starts_with("line ") => line[i + 2..].to_string(),
        _ => line.to_string(),
    }
}

/// The raw tree as serde-saphyr hands it over, before positions are flattened.
enum Raw {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Raw>>),
    Map(Vec<(Spanned<String>, Spanned<Raw>)>),
}

impl From<Spanned<Raw>> for Yaml {
    fn from(s: Spanned<Raw>) -> Yaml {
        let pos = Pos::from_location(&s.referenced);
        let kind = match s.value {
            Raw::Null => YamlKind::Null,
            Raw::Bool(b) => YamlKind::Bool(b),
            Raw::Int(i) => YamlKind::Int(i),
            Raw::UInt(u) => YamlKind::UInt(u),
            Raw::Float(f) => YamlKind::Float(f),
            Raw::Str(s) => YamlKind::Str(s),
            Raw::Seq(items) => YamlKind::Seq(items.into_iter().map(Yaml::from).collect()),
            Raw::Map(entries) => YamlKind::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.value, Pos::from_location(&k.referenced), Yaml::from(v)))
                    .collect(),
            ),
        };
        Yaml { pos, kind }
    }
}

impl<'de> de::Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct RawVisitor;
        impl<'de> Visitor<'de> for RawVisitor {
            type Value = Raw;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E>(self) -> Result<Raw, E> {
                Ok(Raw::Null)
            }
            fn visit_none<E>(self) -> Result<Raw, E> {
                Ok(Raw::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
                de::Deserialize::deserialize(d)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
                Ok(Raw::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
                Ok(Raw::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Raw, E> {
                Ok(i64::try_from(v).map(Raw::Int).unwrap_or(Raw::UInt(v)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
                Ok(Raw::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
                Ok(Raw::Str(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Raw, E> {
                Ok(Raw::Str(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Raw, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = a.next_element()? {
                    items.push(item);
                }
                Ok(Raw::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Raw, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = a.next_key::<Spanned<KeyString>>()? {
                    let value = a.next_value()?;
                    let key = Spanned::new(key.value.0, key.referenced, key.defined);
                    entries.push((key, value));
                }
                Ok(Raw::Map(entries))
            }
        }
        d.deserialize_any(RawVisitor)
    }
}

/// A mapping key; scalars of any type are turned into their text.
struct KeyString(String);

impl<'de> de::Deserialize<'de> for KeyString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = KeyString;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a scalar mapping key")
            }
            fn visit_str<E>(self, v: &str) -> Result<KeyString, E> {
                Ok(KeyString(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<KeyString, E> {
                Ok(KeyString(v))
            }
            fn visit_bool<E>(self, v: bool) -> Result<KeyString, E> {
                Ok(KeyString(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<KeyString, E> {
                Ok(KeyString(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<KeyString, E> {
                Ok(KeyString(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<KeyString, E> {
                Ok(KeyString(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<KeyString, E> {
                Ok(KeyString("null".to_string()))
            }
        }
        d.deserialize_any(KeyVisitor)
    }
}

/// An error while reading the tree into typed definitions.
#[derive(Debug, Clone, PartialEq)]
pub struct DeError {
    /// Where it happened, when known.
    pub pos: Option<Pos>,
    /// What was wrong.
    pub message: String,
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            pos: None,
            message: msg.to_string(),
        }
    }
}

impl DeError {
    fn at(mut self, pos: Pos) -> Self {
        self.pos.get_or_insert(pos);
        self
    }
}

/// Enums that are written as a mapping with a tag field (`type: condition`)
/// but read like serde's externally tagged enums, so that every field of the
/// variant keeps its position. Named by the enum's Rust name.
const TAGGED_ENUMS: &[(&str, &str, &str)] = &[
    ("NodeDef", "type", "node type"),
    ("VerifyDef", "preset", "verify preset"),
];

/// Reads a typed value from the tree; errors carry positions.
pub fn from_yaml<'a, T: de::Deserialize<'a>>(node: &'a Yaml) -> Result<T, DeError> {
    T::deserialize(node)
}

impl<'de> Deserializer<'de> for &'de Yaml {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.kind {
            YamlKind::Null => visitor.visit_unit(),
            YamlKind::Bool(b) => visitor.visit_bool(*b),
            YamlKind::Int(i) => visitor.visit_i64(*i),
            YamlKind::UInt(u) => visitor.visit_u64(*u),
            YamlKind::Float(f) => visitor.visit_f64(*f),
            YamlKind::Str(s) => visitor.visit_str(s),
            YamlKind::Seq(items) => visitor.visit_seq(SeqReader {
                items: items.iter(),
                index: 0,
            }),
            YamlKind::Map(entries) => visitor.visit_map(MapReader {
                entries: entries.iter(),
                skip: None,
                value: None,
            }),
        };
        result.map_err(|e| e.at(self.pos))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.kind {
            YamlKind::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
        .map_err(|e| e.at(self.pos))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor
            .visit_newtype_struct(self)
            .map_err(|e| e.at(self.pos))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let tagged = TAGGED_ENUMS.iter().find(|(n, _, _)| *n == name);
        match (&self.kind, tagged) {
            (YamlKind::Str(s), None) => visitor
                .visit_enum(s.as_str().into_deserializer())
                .map_err(|e: DeError| e.at(self.pos)),
            (YamlKind::Map(entries), Some((_, tag, what))) => {
                let Some((_, tag_pos, tag_value)) = entries.iter().find(|(k, _, _)| k == tag)
                else {
                    return Err(DeError {
                        pos: Some(self.pos),
                        message: format!(
                            "missing field `{tag}` (the {what}: one of {})",
                            variants.join(", ")
                        ),
                    });
                };
                let YamlKind::Str(variant) = &tag_value.kind else {
                    return Err(DeError {
                        pos: Some(tag_value.pos),
                        message: format!(
                            "`{tag}` must be a string, found {}",
                            tag_value.kind_name()
                        ),
                    });
                };
                if !variants.contains(&variant.as_str()) {
                    return Err(DeError {
                        pos: Some(tag_value.pos),
                        message: format!(
                            "unknown {what} `{variant}`; expected one of: {}",
                            variants.join(", ")
                        ),
                    });
                }
                let _ = tag_pos;
                visitor
                    .visit_enum(TaggedEnum {
                        node: self,
                        variant,
                        tag,
                    })
                    .map_err(|e| e.at(self.pos))
            }
            (_, Some((_, tag, what))) => Err(DeError {
                pos: Some(self.pos),
                message: format!(
                    "expected a mapping with a `{tag}` field (the {what}), found {}",
                    self.kind_name()
                ),
            }),
            (_, None) => Err(DeError {
                pos: Some(self.pos),
                message: format!(
                    "expected one of: {}; found {}",
                    variants.join(", "),
                    self.kind_name()
                ),
            }),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

struct SeqReader<'a> {
    items: std::slice::Iter<'a, Yaml>,
    index: usize,
}

impl<'de> SeqAccess<'de> for SeqReader<'de> {
    type Error = DeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some(item) => {
                self.index += 1;
                seed.deserialize(item).map(Some).map_err(|e| e.at(item.pos))
            }
            None => Ok(None),
        }
    }
}

struct MapReader<'a> {
    entries: std::slice::Iter<'a, (String, Pos, Yaml)>,
    skip: Option<&'static str>,
    value: Option<&'a Yaml>,
}

impl<'de> MapAccess<'de> for MapReader<'de> {
    type Error = DeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        for (key, pos, value) in self.entries.by_ref() {
            if Some(key.as_str()) == self.skip {
                continue;
            }
            self.value = Some(value);
            let de: de::value::StrDeserializer<'_, DeError> = key.as_str().into_deserializer();
            return seed.deserialize(de).map(Some).map_err(|e| e.at(*pos));
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let value = self
            .value
            .take()
            .ok_or_else(|| <DeError as de::Error>::custom("value read before its key"))?;
        seed.deserialize(value).map_err(|e| e.at(value.pos))
    }
}

struct TaggedEnum<'a> {
    node: &'a Yaml,
    variant: &'a str,
    tag: &'static str,
}

impl<'de> de::EnumAccess<'de> for TaggedEnum<'de> {
    type Error = DeError;
    type Variant = Self;
    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), DeError> {
        let de: de::value::StrDeserializer<'_, DeError> = self.variant.into_deserializer();
        let v = seed.deserialize(de)?;
        Ok((v, self))
    }
}

impl<'de> de::VariantAccess<'de> for TaggedEnum<'de> {
    type Error = DeError;
    fn unit_variant(self) -> Result<(), DeError> {
        Ok(())
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        // The variant's struct sees the mapping without the tag field.
        seed.deserialize(Untagged {
            node: self.node,
            tag: self.tag,
        })
    }
    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, _visitor: V) -> Result<V::Value, DeError> {
        Err(<DeError as de::Error>::custom(
            "tuple variants are not supported",
        ))
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        Untagged {
            node: self.node,
            tag: self.tag,
        }
        .deserialize_any(visitor)
    }
}

/// A mapping read as if its tag field were not there.
struct Untagged<'a> {
    node: &'a Yaml,
    tag: &'static str,
}

impl<'de> Deserializer<'de> for Untagged<'de> {
    type Error = DeError;
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            YamlKind::Map(entries) => visitor
                .visit_map(MapReader {
                    entries: entries.iter(),
                    skip: Some(self.tag),
                    value: None,
                })
                .map_err(|e| e.at(self.node.pos)),
            _ => self.node.deserialize_any(visitor),
        }
    }
    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

impl Yaml {
    /// Converts the node to JSON (for literal values such as response bodies).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.kind {
            YamlKind::Null => Value::Null,
            YamlKind::Bool(b) => Value::Bool(*b),
            YamlKind::Int(i) => Value::from(*i),
            YamlKind::UInt(u) => Value::from(*u),
            YamlKind::Float(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            YamlKind::Str(s) => Value::String(s.clone()),
            YamlKind::Seq(items) => Value::Array(items.iter().map(Yaml::to_json).collect()),
            YamlKind::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, _, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // fields are only read through Debug
    struct Doc {
        title: String,
        #[serde(default)]
        count: Option<u16>,
    }

    fn err_of<T: for<'a> Deserialize<'a> + std::fmt::Debug>(text: &str) -> (u32, u32, String) {
        let tree = Yaml::parse(text).expect("valid yaml");
        let e = from_yaml::<T>(&tree).expect_err("should fail");
        let pos = e.pos.unwrap_or_default();
        (pos.line, pos.column, e.message)
    }

    #[test]
    fn positions_point_at_the_offending_key_or_value() {
        let (l, c, m) = err_of::<Doc>("title: a\nextra: 1\n");
        assert_eq!((l, c), (2, 1));
        assert!(m.contains("unknown field `extra`"), "{m}");
        let (l, c, m) = err_of::<Doc>("title: a\ncount: x\n");
        assert_eq!((l, c), (2, 8));
        assert!(m.contains("invalid type"), "{m}");
        let (l, c, m) = err_of::<Doc>("count: 1\n");
        assert_eq!((l, c), (1, 1));
        assert!(m.contains("missing field `title`"), "{m}");
    }

    #[test]
    fn syntax_errors_and_duplicate_keys_have_positions() {
        let e = Yaml::parse("a: 1\nb: [\n").expect_err("unclosed");
        assert_eq!(e.pos.line, 2);
        let e = Yaml::parse("a: 1\na: 2\n").expect_err("dup");
        assert_eq!((e.pos.line, e.pos.column), (2, 1));
        assert!(e.message.contains("duplicate"), "{}", e.message);
    }

    #[test]
    fn only_yaml_1_2_booleans() {
        let tree = Yaml::parse("a: n\nb: yes\nc: true\nd: 007\n").expect("yaml");
        let kinds: Vec<YamlKind> = match tree.kind {
            YamlKind::Map(entries) => entries.into_iter().map(|(_, _, v)| v.kind).collect(),
            _ => Vec::new(),
        };
        assert_eq!(
            kinds,
            vec![
                YamlKind::Str("n".into()),
                YamlKind::Str("yes".into()),
                YamlKind::Bool(true),
                YamlKind::Str("007".into())
            ]
        );
    }

    #[test]
    fn locate_follows_keys_and_indexes() {
        let tree = Yaml::parse("nodes:\n  - type: log\n    message: hi\n").expect("yaml");
        let path = [Seg::from("nodes"), Seg::from(0), Seg::from("message")];
        assert_eq!(tree.locate(&path), Pos { line: 3, column: 5 });
        assert_eq!(
            tree.locate_value(&path),
            Pos {
                line: 3,
                column: 14
            }
        );
        let missing = [Seg::from("nodes"), Seg::from(0), Seg::from("nope")];
        assert_eq!(tree.locate(&missing), Pos { line: 2, column: 5 });
    }
}
