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

impl Cx<'_> {
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
        let value = self.src.tree.locate_value(&path.0);
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

fn unknown(what: &str, name: &str, names: &[&str]) -> String {
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
