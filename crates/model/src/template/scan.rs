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
}
