//! The YAML source as a tree with a position on every node, and a serde
//! `Deserializer` over it.
//!
//! This is the only module that knows the YAML crate. Files are read in two
//! passes: YAML text → [`Yaml`] (syntax errors and duplicate keys come out with
//! their position), then [`Yaml`] → the serde definition types through
//! [`from_yaml`], whose errors carry the position of the innermost node that was
//! being read. Later checks find positions again with [`Yaml::locate`].
//!
//! The tree and its parsing are here; the `Deserializer` is in `deserializer`.
//! Writing YAML (`sample`, `new`, a test file made from a run) is in `write`.

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;
use std::fmt;

mod deserializer;
mod quick;
mod syntax;
/// A tab error the parser places at the end of a value, when the tab is in
/// the indentation of the next line: that line's tab, as a tab that
/// indents (the parser read it as the value going on there).
fn indenting_tab(text: &str, pos: Pos, message: &str) -> Option<SyntaxError> {
    if message != syntax::TAB_IN_VALUE {
        return None;
    }
    let next = usize::try_from(pos.line).ok()?;
    let line = text.lines().nth(next)?;
    let indent = &line[..line.len() - line.trim_start().len()];
    let tab = indent.find('\t')?;
    Some(SyntaxError {
        pos: Pos {
            line: pos.line + 1,
            column: u32::try_from(indent[..tab].chars().count() + 1).unwrap_or(u32::MAX),
        },
        message: syntax::TAB.to_string(),
    })
}

#[cfg(test)]
mod tests;
mod wording;
pub mod write;

pub use deserializer::{from_yaml, DeError, DeErrorKind};

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
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
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
    /// Parses YAML text. An empty document is a `Null` node at 1:1. A
    /// duplicate mapping key is an error.
    pub fn parse(text: &str) -> Result<Yaml, SyntaxError> {
        let (tree, duplicates) = Yaml::parse_lenient(text)?;
        match duplicates.into_iter().next() {
            Some(first) => Err(first),
            None => Ok(tree),
        }
    }

    /// The tree of `text` read the quick way (see `quick`), when that way
    /// can read it exactly as [`Yaml::parse_lenient`] does; `None` for
    /// anything it leaves to that. Positions are best effort: use the tree
    /// only for a file that loads without a diagnostic.
    pub fn parse_quick(text: &str) -> Option<Yaml> {
        if text.trim().is_empty() {
            return None;
        }
        quick::parse(text)
    }

    /// Parses YAML text, going on past duplicate mapping keys: the first of
    /// each is kept and every later one is reported, so that one duplicate
    /// does not hide the other problems of the file.
    pub fn parse_lenient(text: &str) -> Result<(Yaml, Vec<SyntaxError>), SyntaxError> {
        if text.trim().is_empty() {
            let empty = Yaml {
                pos: Pos { line: 1, column: 1 },
                kind: YamlKind::Null,
            };
            return Ok((empty, Vec::new()));
        }
        // YAML 1.2 booleans only: `n`, `no`, `on` and `yes` stay strings.
        let mut options = serde_saphyr::Options::default();
        options.strict_booleans = true;
        options.leading_zero_numbers_as_strings = true;
        options.with_snippet = false;
        // Duplicates are found (and worded) here; `.inf` and `.nan` are text.
        options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::PassThrough;
        options.non_finite_float_policy = serde_saphyr::NonFiniteFloatPolicy::AsString;
        match serde_saphyr::from_str_with_options::<Spanned<Raw>>(text, options) {
            Ok(root) => {
                let mut duplicates = Vec::new();
                let tree = Yaml::build(root, &mut duplicates);
                Ok((tree, duplicates))
            }
            Err(e) => {
                let pos = e
                    .location()
                    .map(|l| Pos::from_location(&l))
                    .unwrap_or_default();
                let message = syntax::message(&e);
                Err(indenting_tab(text, pos, &message).unwrap_or(SyntaxError { pos, message }))
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

    /// Removes the node at `path` (a mapping entry or a sequence item);
    /// false when there is none. The nodes left keep their positions.
    pub fn remove(&mut self, path: &[Seg]) -> bool {
        let Some((last, parent)) = path.split_last() else {
            return false;
        };
        let mut node = self;
        for seg in parent {
            node = match (&mut node.kind, seg) {
                (YamlKind::Map(entries), Seg::Key(k)) => {
                    match entries.iter_mut().find(|(key, _, _)| key == k) {
                        Some(e) => &mut e.2,
                        None => return false,
                    }
                }
                (YamlKind::Seq(items), Seg::Index(i)) => match items.get_mut(*i) {
                    Some(item) => item,
                    None => return false,
                },
                _ => return false,
            };
        }
        match (&mut node.kind, last) {
            (YamlKind::Map(entries), Seg::Key(k)) => {
                let before = entries.len();
                entries.retain(|(key, _, _)| key != k);
                entries.len() < before
            }
            (YamlKind::Seq(items), Seg::Index(i)) if *i < items.len() => {
                items.remove(*i);
                true
            }
            _ => false,
        }
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

impl Yaml {
    /// The tree of the raw value; a repeated mapping key is reported in
    /// `duplicates` and its later entries are left out.
    fn build(s: Spanned<Raw>, duplicates: &mut Vec<SyntaxError>) -> Yaml {
        let pos = Pos::from_location(&s.referenced);
        let kind = match s.value {
            Raw::Null => YamlKind::Null,
            Raw::Bool(b) => YamlKind::Bool(b),
            Raw::Int(i) => YamlKind::Int(i),
            Raw::UInt(u) => YamlKind::UInt(u),
            Raw::Float(f) => YamlKind::Float(f),
            Raw::Str(s) => YamlKind::Str(s),
            Raw::Seq(items) => YamlKind::Seq(
                items
                    .into_iter()
                    .map(|item| Yaml::build(item, duplicates))
                    .collect(),
            ),
            Raw::Map(raw) => {
                let mut entries: Vec<(String, Pos, Yaml)> = Vec::with_capacity(raw.len());
                let mut seen: std::collections::HashMap<String, Pos> = Default::default();
                for (k, v) in raw {
                    let key_pos = Pos::from_location(&k.referenced);
                    if let Some(first) = seen.get(&k.value) {
                        duplicates.push(SyntaxError {
                            pos: key_pos,
                            message: format!(
                                "duplicate key `{}` in this mapping (first on line {}); remove one of them",
                                k.value, first.line
                            ),
                        });
                        continue;
                    }
                    seen.insert(k.value.clone(), key_pos);
                    entries.push((k.value, key_pos, Yaml::build(v, duplicates)));
                }
                YamlKind::Map(entries)
            }
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
