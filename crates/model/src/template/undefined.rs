//! Naming what is undefined when a template fails on it: the engine's own
//! error says only "undefined value" (it keeps no spans without its debug
//! feature, which would cost every loaded template its source map).

use minijinja::machinery::{tokenize, Token};
use minijinja::syntax::SyntaxConfig;
use minijinja::Value as MjValue;

/// The path the template `source` reads, inside `{{ }}` or `{% %}`, that
/// is undefined in `ctx`, as far as it is defined plus the step that is not
/// (`trigger.body.missing` of `trigger.body.missing.deeper`), when there is
/// exactly one: with several, which one the engine met depends on the
/// branches it took. Paths guarded by `is defined` (`undefined`, `none`) or
/// `| default`, and those whose first name is not a variable (keywords,
/// filters, tests, locals), are passed over.
///
/// A guard covers the last step only: `x.y | default(v)` and `x.y is
/// defined` still need `x`. So the chain up to a guarded path's last step
/// is looked at too, and found undefined it comes with `true`.
pub(super) fn undefined_in(source: &str, ctx: &MjValue) -> Option<(String, bool)> {
    let mut found: Vec<(String, bool)> = Vec::new();
    for (chain, guarded) in paths(source) {
        let mut value = ctx.clone();
        for (i, name) in chain.iter().enumerate() {
            let Ok(next) = value.get_attr(name) else {
                break;
            };
            if next.is_undefined() {
                let path = chain[..=i].join(".");
                if i > 0 && !found.iter().any(|(p, _)| *p == path) {
                    found.push((path, guarded));
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

/// Dotted name chains inside the template's blocks, in order (found with
/// minijinja's own tokenizer, as [`super::scan`] finds uses), without those
/// after a `.` (`foo().bar`, `x[0].y`); a chain guarded by `is [not]
/// defined|undefined|none` or `| default` / `| d` without its last step
/// (which the guard covers), marked `true`.
fn paths(source: &str) -> Vec<(Vec<&str>, bool)> {
    let tokens: Vec<Token<'_>> = tokenize(source, false, SyntaxConfig::default())
        .map_while(Result::ok)
        .map(|(token, _)| token)
        .collect();
    let ident = |i: usize| match tokens.get(i) {
        Some(Token::Ident(name)) => Some(*name),
        _ => None,
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let after_dot = i > 0 && matches!(tokens[i - 1], Token::Dot);
        let Some(first) = ident(i).filter(|_| !after_dot) else {
            i += 1;
            continue;
        };
        let mut chain = vec![first];
        i += 1;
        while matches!(tokens.get(i), Some(Token::Dot)) {
            match ident(i + 1) {
                Some(name) => chain.push(name),
                None => break,
            }
            i += 2;
        }
        let guarded = match (tokens.get(i), ident(i + 1)) {
            (Some(Token::Ident("is")), Some("not")) => {
                matches!(ident(i + 2), Some("defined" | "undefined" | "none"))
            }
            (Some(Token::Ident("is")), test) => {
                matches!(test, Some("defined" | "undefined" | "none"))
            }
            (Some(Token::Pipe), filter) => matches!(filter, Some("default" | "d")),
            _ => false,
        };
        if !guarded {
            out.push((chain, false));
        } else if chain.len() > 1 {
            chain.pop();
            out.push((chain, true));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_in_blocks_only_and_not_in_strings() {
        let found = paths("order {{ vars.order_id }} of {{ trigger.body['x'].y | default('a.b') }}{% if nodes.k.ok %}x{% endif %} {{ f().z }} {{ vars.g | default(1) }}{% if nodes.h is not defined %}{% endif %}");
        let unguarded = |names: &[&'static str]| (names.to_vec(), false);
        assert_eq!(
            found,
            vec![
                unguarded(&["vars", "order_id"]),
                unguarded(&["trigger", "body"]),
                unguarded(&["default"]),
                unguarded(&["if"]),
                unguarded(&["nodes", "k", "ok"]),
                unguarded(&["endif"]),
                unguarded(&["f"]),
                // A guard covers the last step only.
                (vec!["vars"], true),
                unguarded(&["default"]),
                unguarded(&["if"]),
                (vec!["nodes"], true),
                unguarded(&["is"]),
                unguarded(&["not"]),
                unguarded(&["defined"]),
                unguarded(&["endif"]),
            ]
        );
    }

    #[test]
    fn the_first_undefined_step_is_named() {
        let ctx =
            super::super::scope::engine_value(&serde_json::json!({"trigger": {"body": {"a": 1}}}));
        let named = |source: &str| undefined_in(source, &ctx).map(|(path, _)| path);
        assert_eq!(
            named("{{ trigger.body.missing.deeper }}").as_deref(),
            Some("trigger.body.missing")
        );
        // Past a guard: `| default` stands in for `mac`, not for `form`.
        assert_eq!(
            undefined_in("{{ trigger.body.form.mac | default('') }}", &ctx),
            Some(("trigger.body.form".to_string(), true))
        );
        assert_eq!(
            named("{% set r = (default + trigger.body.a + trigger.nope) %}").as_deref(),
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
            named("{{ trigger.x | default(1) }} {{ trigger.body.m }}").as_deref(),
            Some("trigger.body.m")
        );
    }
}
