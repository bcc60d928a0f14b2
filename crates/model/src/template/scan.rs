//! What a template uses, found with minijinja's own tokenizer: the filters
//! (`| round`, `{% filter upper %}`), the tests (`is defined`) and the
//! `vars.<alias>` it reads, each with its byte offset in the source, so that
//! validation can name an unknown one at its place.

use minijinja::machinery::{tokenize, Token};
use minijinja::syntax::SyntaxConfig;

/// What a use is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UseKind {
    /// A filter, after `|` or in `{% filter %}`.
    Filter,
    /// A test, after `is` or `is not`.
    Test,
    /// A variable `vars.<name>` or `vars["<name>"]`.
    Var,
}

/// One use in a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Use {
    /// What it is of.
    pub kind: UseKind,
    /// The name used.
    pub name: String,
    /// Byte offset of the name (of `vars` for a variable) in the source.
    pub offset: usize,
}

/// The uses in `source`: an expression (`expr`) or a template. A source
/// that does not tokenize gives the uses before the problem (the compiler
/// reports the problem itself).
pub fn scan(source: &str, expr: bool) -> Vec<Use> {
    plain_uses(source, expr).unwrap_or_else(|| tokenized(source, expr))
}

/// The uses of a source of the fast path's shape, read without the
/// tokenizer (a lexer pass per template was ~2 % of loading a workflow):
/// an expression that is a dotted path of names, compared at most to a
/// plain string literal, or a text of literal parts and `{{ path }}`s, with
/// ASCII spaces only. Such a source uses nothing but the `vars.<name>` its
/// paths may start with. `None` for any other source.
fn plain_uses(source: &str, expr: bool) -> Option<Vec<Use>> {
    use super::builder::{find_pair, has_pair};
    use super::fast::{is_path, string_literal};
    let spaces = |s: &str| s.len() - s.trim_ascii_start().len();
    let var = |path: &str, offset: usize, uses: &mut Vec<Use>| -> Option<()> {
        if !is_path(path) {
            return None;
        }
        if let Some(rest) = path.strip_prefix("vars.") {
            let name = &rest[..rest.bytes().position(|b| b == b'.').unwrap_or(rest.len())];
            uses.push(Use {
                kind: UseKind::Var,
                name: name.to_string(),
                offset,
            });
        }
        Some(())
    };
    let mut uses = Vec::new();
    if expr {
        // A path has no `=`: the first is the comparison's (`==`, `!=`).
        let bytes = source.as_bytes();
        let path = match source.find('=') {
            None => source,
            Some(i) => {
                let (left, right) = if bytes.get(i + 1) == Some(&b'=') {
                    (&source[..i], &source[i + 2..])
                } else if i > 0 && bytes[i - 1] == b'!' {
                    (&source[..i - 1], &source[i + 1..])
                } else {
                    return None;
                };
                string_literal(right.trim_ascii())?;
                left
            }
        };
        var(path.trim_ascii(), spaces(path), &mut uses)?;
        return Some(uses);
    }
    if has_pair(source, '{', b"%#") {
        return None;
    }
    let mut at = 0;
    while let Some(open) = find_pair(source, at, '{', b"{") {
        let inner_at = open + 2;
        let close = find_pair(source, inner_at, '}', b"}")?;
        let inner = &source[inner_at..close];
        var(inner.trim_ascii(), inner_at + spaces(inner), &mut uses)?;
        at = close + 2;
    }
    Some(uses)
}

/// [`scan`] with minijinja's tokenizer: any source.
fn tokenized(source: &str, expr: bool) -> Vec<Use> {
    let tokens: Vec<(Token<'_>, usize)> = tokenize(source, expr, SyntaxConfig::default())
        .map_while(Result::ok)
        .map(|(token, span)| (token, span.start_offset as usize))
        .collect();
    let mut uses = Vec::new();
    for (i, (token, _)) in tokens.iter().enumerate() {
        let before = |back: usize| i.checked_sub(back).map(|j| &tokens[j].0);
        let after = |ahead: usize| tokens.get(i + ahead);
        let after_dot = matches!(before(1), Some(Token::Dot));
        match token {
            Token::Pipe => {
                if let Some((Token::Ident(name), offset)) = after(1) {
                    uses.push(Use {
                        kind: UseKind::Filter,
                        name: name.to_string(),
                        offset: *offset,
                    });
                }
            }
            Token::Ident("filter") if matches!(before(1), Some(Token::BlockStart)) => {
                if let Some((Token::Ident(name), offset)) = after(1) {
                    uses.push(Use {
                        kind: UseKind::Filter,
                        name: name.to_string(),
                        offset: *offset,
                    });
                }
            }
            Token::Ident("is") if !after_dot => {
                let named = match after(1) {
                    Some((Token::Ident("not"), _)) => after(2),
                    other => other,
                };
                if let Some((Token::Ident(name), offset)) = named {
                    uses.push(Use {
                        kind: UseKind::Test,
                        name: name.to_string(),
                        offset: *offset,
                    });
                }
            }
            Token::Ident("vars") if !after_dot => {
                let name = match (after(1), after(2), after(3)) {
                    (Some((Token::Dot, _)), Some((Token::Ident(name), _)), _) => {
                        Some(name.to_string())
                    }
                    (
                        Some((Token::BracketOpen, _)),
                        Some((Token::Str(name), _)),
                        Some((Token::BracketClose, _)),
                    ) => Some(name.to_string()),
                    (
                        Some((Token::BracketOpen, _)),
                        Some((Token::String(name), _)),
                        Some((Token::BracketClose, _)),
                    ) => Some(name.to_string()),
                    _ => None,
                };
                if let Some(name) = name {
                    uses.push(Use {
                        kind: UseKind::Var,
                        name,
                        offset: tokens[i].1,
                    });
                }
            }
            _ => {}
        }
    }
    uses
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(source: &str, expr: bool) -> Vec<(UseKind, String, usize)> {
        scan(source, expr)
            .into_iter()
            .map(|u| (u.kind, u.name, u.offset))
            .collect()
    }

    #[test]
    fn filters_tests_and_vars_with_their_offsets() {
        assert_eq!(
            found("vars.a | round(2) is not number and x.is", true),
            vec![
                (UseKind::Var, "a".into(), 0),
                (UseKind::Filter, "round".into(), 9),
                (UseKind::Test, "number".into(), 25),
            ]
        );
        assert_eq!(
            found(
                "a {{ vars[\"b\"] }} '| not' {% filter upper %}x{% endfilter %}",
                false
            ),
            vec![
                (UseKind::Var, "b".into(), 5),
                (UseKind::Filter, "upper".into(), 36),
            ]
        );
        // Attributes named like the keywords are not uses.
        assert!(found("trigger.vars.x or y.is", true).is_empty());
    }

    #[test]
    fn a_path_is_dotted_plain_names_the_first_no_keyword() {
        use crate::template::fast::is_path;
        for yes in [
            "vars",
            "vars.order_id",
            "_a.b2._c",
            "nodes.x.none",
            "trueish",
        ] {
            assert!(is_path(yes), "{yes}");
        }
        for no in [
            "", ".", "a.", ".a", "a..b", "a.1b", "1a", "a-b", "a b", "é", "a.é", "true", "None",
            "is.x", "now", "not.a",
        ] {
            assert!(!is_path(no), "{no}");
        }
    }

    /// The fast path's shapes are read without the tokenizer, and give
    /// exactly what the tokenizer gives; every other source goes to it.
    #[test]
    fn plain_sources_give_the_tokenizers_uses() {
        let exprs = [
            "vars.status == \"SUCCESS\"",
            "  vars.status != 'x'  ",
            "vars.a",
            "vars",
            "vars.vars.x",
            "vars.is",
            "vars.not == \"a|b is c\"",
            "trigger.body.vars.x",
            "nodes.paid.result",
            "vars.a == \"x==y\"",
            "vars.a != \"x==y\"",
            "vars.a = \"x\"",
            "vars.a <= \"x\"",
            "=vars.a",
            "vars.a ==",
            "vars.a == \"x\" == \"y\"",
            "vars.a\u{a0}== \"x\"",
            "\u{a0}vars.a",
            "vars.a | upper",
            "vars.a is defined",
            "vars[\"a\"]",
            "vars.a == vars.b",
            "vars.a == \"x\\\"y\"",
            "is.x",
            "not vars.a",
            "vars..a",
            "vars.0",
            "",
        ];
        let texts = [
            "{{ vars.order_id }}",
            "order {{ vars.order_id }} paid, ref {{vars.ref}}",
            "已支付 {{ vars.金额 }}",
            "a }} b {{ vars.x }}",
            "{{ trigger.vars.x }} {{ vars }}",
            "{{- vars.x }}",
            "{{ vars.x -}}",
            "{{ vars.x | upper }}",
            "{% if vars.x %}y{% endif %}",
            "{# vars.x #}",
            "{{ vars.x }",
            "{{ vars.x } }}",
            "{{{ vars.x }}}",
            "{ {{ vars.x }} {",
            "{{ vars.x }}{%",
            "{{ vars.x }}{",
            "{{\u{a0}vars.x }}",
            "{{ filter.x }} {{ vars.is }}",
            "plain text, no template",
            "{{ vars.x }}\n",
            "",
        ];
        let mut plain = 0;
        for (sources, expr) in [(&exprs[..], true), (&texts[..], false)] {
            for source in sources {
                if let Some(uses) = plain_uses(source, expr) {
                    plain += 1;
                    assert_eq!(uses, tokenized(source, expr), "{source:?} (expr: {expr})");
                }
                assert_eq!(scan(source, expr), tokenized(source, expr), "{source:?}");
            }
        }
        assert!(plain >= 21, "only {plain} sources read as plain");
    }
}
