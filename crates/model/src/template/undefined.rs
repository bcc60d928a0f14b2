//! Naming what is undefined when a template fails on it: the engine's own
//! error says only "undefined value" (it keeps no spans without its debug
//! feature, which would cost every loaded template its source map).

use minijinja::Value as MjValue;

/// The path the template `source` reads, inside `{{ }}` or `{% %}`, that
/// is undefined in `ctx`, as far as it is defined plus the step that is not
/// (`trigger.body.missing` of `trigger.body.missing.deeper`), when there is
/// exactly one: with several, which one the engine met depends on the
/// branches it took. Paths guarded by `is defined` (`undefined`, `none`) or
/// `| default`, and those whose first name is not a variable (keywords,
/// filters, tests, locals), are passed over.
pub(super) fn undefined_in(source: &str, ctx: &MjValue) -> Option<String> {
    let mut found: Vec<String> = Vec::new();
    for chain in paths(source) {
        let mut value = ctx.clone();
        for (i, name) in chain.iter().enumerate() {
            let Ok(next) = value.get_attr(name) else {
                break;
            };
            if next.is_undefined() {
                let path = chain[..=i].join(".");
                if i > 0 && !found.contains(&path) {
                    found.push(path);
                }
                break;
            }
            value = next;
        }
    }
    match found.len() {
        1 => found.pop(),
        _ => None,
    }
}

/// Dotted name chains inside the template's blocks, in order, without
/// those in string literals or after a `.` that follows something else
/// (`foo().bar`, `x[0].y`).
fn paths(source: &str) -> Vec<Vec<&str>> {
    let mut out = Vec::new();
    let mut rest = source;
    while let Some(start) = rest.find(['{']) {
        let after = &rest[start + 1..];
        let close = match after.chars().next() {
            Some('{') => "}}",
            Some('%') => "%}",
            _ => {
                rest = after;
                continue;
            }
        };
        let inner = &after[1..];
        let end = inner.find(close).unwrap_or(inner.len());
        chains(&inner[..end], &mut out);
        rest = &inner[end..];
    }
    out
}

fn chains<'a>(code: &'a str, out: &mut Vec<Vec<&'a str>>) {
    let bytes = code.as_bytes();
    let ident_start = |b: u8| b.is_ascii_alphabetic() || b == b'_';
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    let mut previous: u8 = b' ';
    // (whitespace counts as a separator: `if nodes.k` starts a chain)
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\'' || b == b'"' {
            // A string literal: skipped to its closing quote.
            i += 1;
            while i < bytes.len() && bytes[i] != b {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            previous = b;
            i += 1;
            continue;
        }
        if ident_start(b) && previous != b'.' && !ident(previous) {
            let mut chain = Vec::new();
            loop {
                let from = i;
                while i < bytes.len() && ident(bytes[i]) {
                    i += 1;
                }
                chain.push(&code[from..i]);
                if i + 1 < bytes.len() && bytes[i] == b'.' && ident_start(bytes[i + 1]) {
                    i += 1;
                } else {
                    break;
                }
            }
            if !guarded(&code[i..]) {
                out.push(chain);
            }
            previous = bytes[i - 1];
            continue;
        }
        previous = b;
        i += 1;
    }
}

/// The first word of `s` (after blanks) and what follows it.
fn word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    (&s[..end], &s[end..])
}

/// Whether what follows a path makes its being undefined harmless:
/// `is [not] defined|undefined|none`, `| default(…)`, `| d(…)`.
fn guarded(after: &str) -> bool {
    let rest = after.trim_start();
    if let Some(test) = rest.strip_prefix("is") {
        let (mut name, tail) = word(test);
        if name == "not" {
            name = word(tail).0;
        }
        return matches!(name, "defined" | "undefined" | "none");
    }
    if let Some(filter) = rest.strip_prefix('|') {
        return matches!(word(filter).0, "default" | "d");
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_in_blocks_only_and_not_in_strings() {
        let found = paths("order {{ vars.order_id }} of {{ trigger.body['x'].y | default('a.b') }}{% if nodes.k.ok %}x{% endif %} {{ f().z }} {{ vars.g | default(1) }}{% if nodes.h is not defined %}{% endif %}");
        assert_eq!(
            found,
            vec![
                vec!["vars", "order_id"],
                vec!["trigger", "body"],
                vec!["default"],
                vec!["if"],
                vec!["nodes", "k", "ok"],
                vec!["endif"],
                vec!["f"],
                vec!["default"],
                vec!["if"],
                vec!["is"],
                vec!["not"],
                vec!["defined"],
                vec!["endif"],
            ]
        );
    }

    #[test]
    fn the_first_undefined_step_is_named() {
        let ctx =
            super::super::scope::engine_value(&serde_json::json!({"trigger": {"body": {"a": 1}}}));
        assert_eq!(
            undefined_in("{{ trigger.body.missing.deeper }}", &ctx).as_deref(),
            Some("trigger.body.missing")
        );
        assert_eq!(
            undefined_in(
                "{% set r = (default + trigger.body.a + trigger.nope) %}",
                &ctx
            )
            .as_deref(),
            Some("trigger.nope")
        );
        assert_eq!(undefined_in("{{ trigger.body.a }}", &ctx), None);
        // A guarded path is not the one that failed.
        assert_eq!(
            undefined_in(
                "{% if trigger.x is defined %}{{ trigger.x.y }}{% endif %}{{ trigger.body.m }}",
                &ctx
            ),
            None,
            "two candidates: `trigger.x` (in a branch) and `trigger.body.m`"
        );
        assert_eq!(
            undefined_in("{{ trigger.x | default(1) }} {{ trigger.body.m }}", &ctx).as_deref(),
            Some("trigger.body.m")
        );
    }
}
