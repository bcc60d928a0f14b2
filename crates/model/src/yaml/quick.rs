//! The quick way to the tree, for the common file: the YAML parser's events
//! (granit-parser, the parser under serde-saphyr) read straight into a
//! [`Yaml`], without serde-saphyr's deserializer and `Spanned` wrappers
//! on top, which cost two thirds of loading a small workflow.
//!
//! It reads only what it is sure to read as serde-saphyr does, and gives up
//! (`None`) on anything else: anchors, aliases, tags, merge keys, directives,
//! more than one document, a repeated key, deep nesting, many nodes, a
//! plain scalar that could be anything but a plain string, `true`/`false`,
//! `null`/`~`/nothing or a decimal integer (`yes`, `Null`, `1.5`, `0x1F`,
//! `007`, `.inf`…). A parser error gives up too. Positions are the parser's
//! (line, column + 1), as serde-saphyr reports them, but the loader uses a
//! quick tree only when the file then loads without a single diagnostic;
//! any diagnostic is found again from serde-saphyr's tree, so every message
//! and position stays exactly as the full path has it.

use super::{Pos, Yaml, YamlKind};
use granit_parser::{Event, Parser, ScalarStyle, Span, StrInput};
use std::borrow::Cow;

/// Deeper nesting is left to the full path (its own limit is 64).
const MAX_DEPTH: usize = 48;
/// More nodes are left to the full path (its own limit is 250,000).
const MAX_NODES: usize = 100_000;
/// Larger mappings are left to the full path (keys are compared one by one here).
const MAX_ENTRIES: usize = 256;
/// Longer files are left to the full path.
const MAX_TEXT: usize = 4 * 1024 * 1024;

/// The tree of `text` when the quick path can read it exactly; `None` otherwise.
pub(super) fn parse(text: &str) -> Option<Yaml> {
    if text.len() > MAX_TEXT {
        return None;
    }
    let mut reader = Reader {
        parser: Parser::new_from_str(text),
        nodes: 0,
    };
    if !matches!(reader.next()?.0, Event::StreamStart) {
        return None;
    }
    if !matches!(reader.next()?.0, Event::DocumentStart(_, None)) {
        return None;
    }
    let root = reader.node(0)?;
    if !matches!(reader.next()?.0, Event::DocumentEnd) {
        return None;
    }
    if !matches!(reader.next()?.0, Event::StreamEnd) {
        return None;
    }
    Some(root)
}

struct Reader<'a> {
    parser: Parser<'a, StrInput<'a>>,
    nodes: usize,
}

impl<'a> Reader<'a> {
    /// The next event; `None` at the end or on a parser error (the full
    /// path reports it).
    fn next(&mut self) -> Option<(Event<'a>, Span)> {
        self.parser.next_event()?.ok()
    }

    /// The node that starts with the next event.
    fn node(&mut self, depth: usize) -> Option<Yaml> {
        self.item(depth)?
    }

    /// The node that starts with the next event, or `Some(None)` when that
    /// event ends a sequence. The event is taken and matched in this frame:
    /// an event and its span are 256 bytes, and handing them from frame to
    /// frame copied them again for each of a file's ~150 events.
    fn item(&mut self, depth: usize) -> Option<Option<Yaml>> {
        let (event, span) = self.next()?;
        // A sequence's end is not a node: neither counted nor nested.
        if matches!(event, Event::SequenceEnd) {
            return Some(None);
        }
        self.nodes += 1;
        if self.nodes > MAX_NODES || depth > MAX_DEPTH {
            return None;
        }
        let kind = match event {
            Event::Scalar(value, style, 0, None) => scalar(value, style)?,
            Event::SequenceStart(_, 0, None) => {
                let mut items = Vec::new();
                while let Some(item) = self.item(depth + 1)? {
                    items.push(item);
                }
                YamlKind::Seq(items)
            }
            Event::MappingStart(_, 0, None) => {
                let mut entries: Vec<(String, Pos, Yaml)> = Vec::new();
                loop {
                    let (event, key_span) = self.next()?;
                    let key = match event {
                        Event::MappingEnd => break,
                        Event::Scalar(value, style, 0, None) => key_text(value, style)?,
                        _ => return None,
                    };
                    if key == "<<"
                        || entries.len() >= MAX_ENTRIES
                        || entries.iter().any(|(k, _, _)| *k == key)
                    {
                        return None;
                    }
                    let value = self.node(depth + 1)?;
                    entries.push((key, pos(&key_span), value));
                }
                YamlKind::Map(entries)
            }
            _ => return None,
        };
        Some(Some(Yaml {
            pos: pos(&span),
            kind,
        }))
    }
}

fn pos(span: &Span) -> Pos {
    Pos {
        line: u32::try_from(span.start.line()).unwrap_or(u32::MAX),
        column: u32::try_from(span.start.col().saturating_add(1)).unwrap_or(u32::MAX),
    }
}

/// A scalar's node, when its type is certain.
fn scalar(value: Cow<'_, str>, style: ScalarStyle) -> Option<YamlKind> {
    if style != ScalarStyle::Plain {
        return Some(YamlKind::Str(value.into_owned()));
    }
    Some(match plain(&value)? {
        Plain::Null => YamlKind::Null,
        Plain::Bool(b) => YamlKind::Bool(b),
        Plain::Int(i) => YamlKind::Int(i),
        Plain::Str => YamlKind::Str(value.into_owned()),
    })
}

/// A mapping key's text, as the full path writes it (its scalars' own text;
/// a null key is left to it).
fn key_text(value: Cow<'_, str>, style: ScalarStyle) -> Option<String> {
    if style != ScalarStyle::Plain {
        return Some(value.into_owned());
    }
    match plain(&value)? {
        Plain::Null => None,
        Plain::Bool(_) | Plain::Int(_) | Plain::Str => Some(value.into_owned()),
    }
}

enum Plain {
    Null,
    Bool(bool),
    Int(i64),
    Str,
}

/// Words that YAML 1.1, 1.2 or serde-saphyr may read as something other
/// than text, in any case: a plain scalar spelled so is left to the full path.
const NOT_SURELY_TEXT: &[&str] = &[
    "null", "true", "false", "yes", "no", "on", "off", "y", "n", "nan", "inf", "infinity",
];

/// The type of a plain scalar, when certain.
fn plain(s: &str) -> Option<Plain> {
    match s {
        "" | "~" | "null" => return Some(Plain::Null),
        "true" => return Some(Plain::Bool(true)),
        "false" => return Some(Plain::Bool(false)),
        _ => {}
    }
    let first = *s.as_bytes().first()?;
    if first.is_ascii_alphabetic() {
        // `contains('$')` first: a one-byte search, where a two-byte
        // pattern sets up a substring searcher per scalar.
        if (s.contains('$') && s.contains("${"))
            || NOT_SURELY_TEXT.iter().any(|w| s.eq_ignore_ascii_case(w))
        {
            return None;
        }
        return Some(Plain::Str);
    }
    if let Some(i) = decimal(s) {
        return Some(Plain::Int(i));
    }
    duration(s).then_some(Plain::Str)
}

/// A duration as workflows write them (`5s`, `500ms`, `1h30m`): digits and
/// the unit letters `d`, `h`, `m`, `s`, starting with a digit other than 0
/// and ending with a letter. No number YAML knows is spelled so (those need
/// `.`, `e`, `x`, `o`, `b`, `_` or `:`), so it is text for both paths.
fn duration(s: &str) -> bool {
    let bytes = s.as_bytes();
    matches!(bytes.first(), Some(b'1'..=b'9'))
        && bytes.last().is_some_and(u8::is_ascii_alphabetic)
        && bytes
            .iter()
            .all(|b| b.is_ascii_digit() || matches!(b, b'd' | b'h' | b'm' | b's'))
}

/// A decimal integer written the one plain way (`0`, `42`, `-7`; no sign
/// `+`, no leading zero, no `_`, at most 18 digits).
fn decimal(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let plain = !digits.is_empty()
        && digits.len() <= 18
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && s != "-0";
    if plain {
        s.parse().ok()
    } else {
        None
    }
}
