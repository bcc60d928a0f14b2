//! Naming what is undefined when a template fails on it: the engine's own
//! error says only "undefined value" (it keeps no spans without its debug
//! feature, which would cost every loaded template its source map).

use minijinja::Value as MjValue;

/// The first path the template `source` reads, inside `{{ }}` or `{% %}`,
/// that is undefined in `ctx`, as far as it is defined plus the step that
/// is not (`trigger.body.missing` of `trigger.body.missing.deeper`). Paths
/// whose first name is not a variable (keywords, filters, tests, locals)
/// are passed over.
pub(super) fn undefined_in(source: &str, ctx: &MjValue) -> Option<String> {
    for chain in paths(source) {
        let mut value = ctx.clone();
        for (i, name) in chain.iter().enumerate() {
            let next = value.get_attr(name).ok()?;
            if next.is_undefined() {
                if i == 0 {
                    break;
                }
                return Some(chain[..=i].join("."));
            }
            value = next;
        }
    }
    None
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
            out.push(chain);
            previous = bytes[i - 1];
            continue;
        }
        previous = b;
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_in_blocks_only_and_not_in_strings() {
        let found = paths("order {{ vars.order_id }} of {{ trigger.body['x'].y | default('a.b') }}{% if nodes.k.ok %}x{% endif %} {{ f().z }}");
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
    }
}
