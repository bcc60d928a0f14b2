//! What templates use, checked at load: filters and tests that the
//! environment does not have, and `vars.X` that no parse entry defines,
//! each reported where it is written, with the close names as a hint.

use super::{Cx, P};
use crate::suggest::{close_names, did_you_mean};
use crate::template::has_template_syntax;
use crate::template::scan::{scan, UseKind};
use crate::yaml::Pos;
use serde_json::Value as Json;
use std::collections::BTreeSet;

/// What a template was read from: one text, or the strings of a JSON value.
#[derive(Clone, Copy)]
pub(super) enum Written<'a> {
    /// A template or expression.
    Text(&'a str),
    /// A value whose strings are templates.
    Value(&'a Json),
}

impl Cx<'_> {
    /// Where the name `name` (`nodes.x`, `secrets.X`) is written in what is
    /// `written` at `path`: its first use, or the value when it is not
    /// written out (`nodes["x"]`).
    pub(super) fn ref_pos(&self, path: &P, written: Written<'_>, name: &str) -> Pos {
        match written {
            Written::Text(source) => match find_name(source, name) {
                Some(offset) => self.pos_in(path, source, offset),
                None => self.src.tree.locate_value(&path.segs()),
            },
            Written::Value(value) => self
                .ref_pos_in_value(path, value, name)
                .unwrap_or_else(|| self.src.tree.locate_value(&path.segs())),
        }
    }

    fn ref_pos_in_value(&self, path: &P, value: &Json, name: &str) -> Option<Pos> {
        match value {
            Json::String(s) => find_name(s, name).map(|offset| self.pos_in(path, s, offset)),
            Json::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, item)| self.ref_pos_in_value(&path.index(i), item, name)),
            Json::Object(map) => map
                .iter()
                .find_map(|(k, v)| self.ref_pos_in_value(&path.key(k), v, name)),
            _ => None,
        }
    }

    /// Checks the filters, tests and `vars` of one compiled template or
    /// expression (`expr`) written at `path`; `refs` are the variables it reads
    /// from outside (a template that sets its own `vars` is not checked for them).
    pub(super) fn check_uses(
        &mut self,
        path: &P,
        source: &str,
        expr: bool,
        refs: &BTreeSet<String>,
    ) {
        let reads_vars = refs.iter().any(|r| r == "vars" || r.starts_with("vars."));
        for u in scan(source, expr) {
            let message = match u.kind {
                UseKind::Filter if !self.templates.has_filter(&u.name) => {
                    let names = self.templates.filter_names();
                    unknown("filter", &u.name, &names)
                }
                UseKind::Test if !self.templates.has_test(&u.name) => {
                    let names = self.templates.test_names();
                    unknown("test", &u.name, &names)
                }
                UseKind::Var if reads_vars => match &self.vars {
                    Some(known) if !known.contains(&u.name) => unknown_var(&u.name, known),
                    _ => continue,
                },
                _ => continue,
            };
            let pos = self.pos_in(path, source, u.offset);
            self.push(pos, message);
        }
    }

    /// [`Cx::check_uses`] for every template string inside a JSON value.
    pub(super) fn check_value_uses(&mut self, path: &P, value: &Json, refs: &BTreeSet<String>) {
        match value {
            Json::String(s) if has_template_syntax(s) => self.check_uses(path, s, false, refs),
            Json::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.check_value_uses(&path.index(i), item, refs);
                }
            }
            Json::Object(map) => {
                for (k, v) in map {
                    self.check_value_uses(&path.key(k), v, refs);
                }
            }
            _ => {}
        }
    }

    /// The position in the file of byte `offset` of the template `source`
    /// written at `path`. Exact when the template is written as is on its
    /// lines (a plain or quoted scalar on one line, or a block scalar);
    /// otherwise (escapes, folded lines) the position of the value.
    pub(super) fn pos_in(&self, path: &P, source: &str, offset: usize) -> Pos {
        let value = self.src.tree.locate_value(&path.segs());
        let Some(before) = source.get(..offset) else {
            return value;
        };
        let line_in = before.matches('\n').count();
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let prefix = &before[line_start..];
        let col_in = prefix.chars().count();
        let lines: Vec<&str> = self.src.text.lines().collect();
        let line_at = |n: u32| lines.get((n as usize).checked_sub(1)?).copied();
        let column = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        // The template's line holding the offset.
        let this_line = source[line_start..].lines().next().unwrap_or_default();
        if this_line.trim().is_empty() {
            return value;
        }
        if line_in == 0 {
            if let Some(line) = line_at(value.line) {
                let rest: String = line
                    .chars()
                    .skip((value.column as usize).saturating_sub(1))
                    .collect();
                let quote = usize::from(rest.starts_with('"') || rest.starts_with('\''));
                if rest
                    .chars()
                    .skip(quote)
                    .collect::<String>()
                    .starts_with(this_line)
                {
                    return Pos {
                        line: value.line,
                        column: value.column + column(quote + col_in),
                    };
                }
            }
        }
        // A value over several lines (folded `>`, plain or quoted), read
        // line by line.
        if let Some(pos) = walk_lines(&lines, value, source, offset) {
            return pos;
        }
        // A block scalar: the template's line n is a line of the file below
        // the value's start, indented.
        for delta in [0, 1] {
            let n = value.line + column(line_in + delta);
            if let Some(line) = line_at(n) {
                if line.ends_with(this_line) {
                    let indent = line.chars().count() - this_line.chars().count();
                    return Pos {
                        line: n,
                        column: column(indent + col_in + 1),
                    };
                }
            }
        }
        value
    }
}

/// The byte offset of the first `name` in `source` that is a whole name:
/// not part of a longer one (`nodes.ab` in `nodes.abc`, `xnodes.ab`).
fn find_name(source: &str, name: &str) -> Option<usize> {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    source.match_indices(name).map(|(i, _)| i).find(|&i| {
        let before = source[..i].chars().next_back();
        let after = source[i + name.len()..].chars().next();
        !before.is_some_and(|c| word(c) || c == '.') && !after.is_some_and(word)
    })
}

/// The position of byte `offset` of `source` (a scalar's value) found by
/// reading the file's `lines` from where the value starts (`value`): each
/// line's text is found in `source` in turn, with only whitespace between
/// (how a folded `>`, a literal `|` and a plain or quoted scalar over
/// several lines are read). `None` when a line is not found as written
/// (escapes in a quoted scalar, a comment after a plain one).
fn walk_lines(lines: &[&str], value: Pos, source: &str, offset: usize) -> Option<Pos> {
    let first = usize::try_from(value.line).ok()?.checked_sub(1)?;
    let mut cursor = 0;
    for (n, line) in lines.iter().enumerate().skip(first) {
        // The part of the line that may hold the value, and its first column.
        let (mut column, mut part) = (0, *line);
        if n == first {
            column = usize::try_from(value.column).ok()?.checked_sub(1)?;
            part = line.get(line.char_indices().nth(column)?.0..)?;
            if part.starts_with(['|', '>']) {
                // A block's header: its lines are below.
                continue;
            }
            if let Some(rest) = part.strip_prefix(['"', '\'']) {
                (column, part) = (column + 1, rest);
            }
        }
        let trimmed = part.trim_start();
        column += part.chars().count() - trimmed.chars().count();
        let trimmed = trimmed.trim_end();
        if trimmed.is_empty() {
            continue;
        }
        let unquoted = trimmed.strip_suffix(['"', '\'']);
        let (at, len) = [Some(trimmed), unquoted]
            .into_iter()
            .flatten()
            .find_map(|text| {
                let k = source.get(cursor..)?.find(text)?;
                let gap = source.get(cursor..cursor + k)?;
                gap.trim().is_empty().then_some((cursor + k, text.len()))
            })?;
        if offset < at {
            return None;
        }
        if offset < at + len {
            let within = source.get(at..offset)?.chars().count();
            return Some(Pos {
                line: u32::try_from(n + 1).ok()?,
                column: u32::try_from(column + within + 1).ok()?,
            });
        }
        cursor = at + len;
    }
    None
}

/// Filters by the names other template languages (Liquid, Jinja
/// extensions, Django) give them.
const OTHER_NAMES: &[(&str, &str)] = &[
    ("upcase", "upper"),
    ("downcase", "lower"),
    ("strip", "trim"),
    ("size", "length"),
    ("json", "tojson"),
    ("to_json", "tojson"),
    ("jsonify", "tojson"),
    ("url_encode", "urlencode"),
    ("escape_uri", "urlencode"),
];

fn unknown(what: &str, name: &str, names: &[&str]) -> String {
    let ours = OTHER_NAMES
        .iter()
        .find(|(other, ours)| *other == name && names.contains(ours));
    if let Some((_, ours)) = ours {
        return format!("unknown {what} `{name}`; here it is `{ours}`");
    }
    let close = close_names(name, names.iter().copied());
    if close.is_empty() {
        format!(
            "unknown {what} `{name}`; the {what}s are: {}",
            names.join(", ")
        )
    } else {
        format!("unknown {what} `{name}`{}", did_you_mean(&close, ""))
    }
}

fn unknown_var(name: &str, known: &BTreeSet<String>) -> String {
    let close = close_names(name, known.iter().map(String::as_str));
    let hint = if !close.is_empty() {
        did_you_mean(&close, "vars.")
    } else if known.is_empty() {
        format!("; `trigger.parse` defines no variables: add an entry such as `body: [{{ key: {name} }}]`")
    } else {
        let names: Vec<&str> = known.iter().map(String::as_str).collect();
        format!(
            "; the parse entries define: {} (add a parse entry with `alias: {name}`)",
            names.join(", ")
        )
    };
    format!("`vars.{name}` is not defined by any parse entry{hint}")
}
