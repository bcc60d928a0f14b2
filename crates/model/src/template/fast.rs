//! The fast path: expressions of a common shape (a dotted path, a string
//! comparison) evaluated by looking values up in the scope, without the engine.

use super::scope::{engine_value, LoopEntry, Scope};
use minijinja::value::Value as MjValue;
use serde_json::Value as Json;

/// Expressions simple enough to evaluate by looking values up. Anything
/// the lookup cannot settle (a missing variable, a value of another type)
/// goes to the engine, which also words the errors; results are the same.
#[derive(Debug, Clone)]
pub(super) enum Fast {
    /// `vars.order_id`
    Path(Steps),
    /// `vars.status == "SUCCESS"` (or `!=`)
    StrEq {
        path: Steps,
        literal: Box<str>,
        negated: bool,
    },
}

/// A text template made only of literal text and `{{ path }}`
/// interpolations (`order {{ vars.order_id }} paid`), rendered by looking the
/// paths up when each is a string; anything else goes to the engine.
#[derive(Debug, Clone)]
pub(super) struct FastText(Box<[Part]>);

#[derive(Debug, Clone)]
enum Part {
    Literal(Box<str>),
    Path(Steps),
}

impl FastText {
    /// The parts of `source`, or `None` for a template of another shape:
    /// blocks or comments, filters, whitespace control, any expression but
    /// a plain path, a trailing line break (the engine drops one).
    pub(super) fn parse(source: &str) -> Option<FastText> {
        if source.contains("{%") || source.contains("{#") || source.ends_with(['\n', '\r']) {
            return None;
        }
        let mut parts = Vec::new();
        let mut rest = source;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].into()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}")?;
            parts.push(Part::Path(path_of(after[..close].trim())?));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.into()));
        }
        Some(FastText(parts.into_boxed_slice()))
    }

    /// The text, when every path holds a string; else `None` (the engine
    /// renders it, and words any error).
    pub(super) fn render(&self, scope: &Scope) -> Option<String> {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Path(path) => out.push_str(scope.find(path)?.as_str()?),
            }
        }
        Some(out)
    }
}

/// A dotted path's names, held tight: with thousands of workflows loaded,
/// every expression's spare room adds up.
pub(super) type Steps = Box<[Box<str>]>;

impl Fast {
    pub(super) fn parse(source: &str) -> Option<Fast> {
        let source = source.trim();
        for (op, negated) in [("==", false), ("!=", true)] {
            if let Some((left, right)) = source.split_once(op) {
                let literal = string_literal(right.trim())?.into_boxed_str();
                let path = path_of(left.trim())?;
                return Some(Fast::StrEq {
                    path,
                    literal,
                    negated,
                });
            }
        }
        path_of(source).map(Fast::Path)
    }

    /// What the engine would say the expression reads (`vars.order_id`),
    /// without asking it: a dotted path of plain names, compared at most to
    /// a plain string literal, is an expression the engine takes as written
    /// (and as the template kept for it). The tests hold this to the
    /// engine's own answers.
    pub(super) fn reads(&self) -> String {
        match self {
            Fast::Path(path) | Fast::StrEq { path, .. } => path.join("."),
        }
    }
}

/// `a.b.c` of plain names, the first not a literal or keyword.
fn path_of(s: &str) -> Option<Steps> {
    is_path(s).then(|| s.split('.').map(Box::from).collect())
}

/// Whether `s` is `a.b.c` of plain names, the first not a literal or
/// keyword ([`path_of`] without taking the names apart).
pub(super) fn is_path(s: &str) -> bool {
    let first = &s[..s.bytes().position(|b| b == b'.').unwrap_or(s.len())];
    let keyword = matches!(
        first,
        "true"
            | "false"
            | "none"
            | "True"
            | "False"
            | "None"
            | "not"
            | "and"
            | "or"
            | "in"
            | "is"
            | "if"
            | "else"
            | "now"
    );
    // Each name: a letter or `_`, then letters, digits or `_`; none empty.
    let mut at_start = true;
    for b in s.bytes() {
        at_start = match b {
            b'.' if !at_start => true,
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => false,
            b'0'..=b'9' if !at_start => false,
            _ => return false,
        };
    }
    !keyword && !at_start
}

/// `"text"` or `'text'` without escapes.
pub(super) fn string_literal(s: &str) -> Option<String> {
    let quote = s.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let inner = s.strip_prefix(quote)?.strip_suffix(quote)?;
    (!inner.contains(quote) && !inner.contains('\\')).then(|| inner.to_string())
}

/// The value at `path` below `json`, stepping into objects by key (the only
/// steps a dotted path of names resolves in the engine).
fn walk<'a>(json: &'a Json, path: &[Box<str>]) -> Option<&'a Json> {
    path.iter()
        .try_fold(json, |value, step| value.as_object()?.get(&**step))
}

/// What a lookup found: JSON still to convert, or an engine value.
pub(super) enum Found<'a> {
    Json(&'a Json),
    Value(MjValue),
}

impl Found<'_> {
    /// The string, when the value is one.
    pub(super) fn as_str(&self) -> Option<&str> {
        match self {
            Found::Json(json) => json.as_str(),
            Found::Value(value) => value.as_str(),
        }
    }

    /// The engine form.
    fn into_value(self) -> MjValue {
        match self {
            Found::Json(json) => engine_value(json),
            Found::Value(value) => value,
        }
    }
}

impl Scope {
    /// The value at a dotted path, if every step exists.
    pub(super) fn lookup(&self, path: &[Box<str>]) -> Option<MjValue> {
        self.find(path).map(Found::into_value)
    }

    /// The value at a dotted path, converted only when it is a whole entry.
    pub(super) fn find(&self, path: &[Box<str>]) -> Option<Found<'_>> {
        let data = &self.data;
        let (entry, rest) = match &**path.first()? {
            "nodes" => (data.nodes.get(&**path.get(1)?)?, path.get(2..)?),
            "loop" => return Self::find_in_loop(data.loops.last()?, path.get(1..)?),
            "now" => return None,
            top => (data.entries.get(top)?, path.get(1..)?),
        };
        if rest.is_empty() {
            return Some(Found::Value(entry.value()));
        }
        walk(&entry.json, rest).map(Found::Json)
    }

    /// `loop`, `loop.index` or a path below `loop.item`.
    fn find_in_loop<'a>(current: &'a LoopEntry, rest: &[Box<str>]) -> Option<Found<'a>> {
        match rest.split_first() {
            None => Some(Found::Value(current.value())),
            Some((step, more)) => match &**step {
                "item" => walk(&current.item, more).map(Found::Json),
                "index" if more.is_empty() => Some(Found::Value(MjValue::from(current.index))),
                _ => None,
            },
        }
    }
}
