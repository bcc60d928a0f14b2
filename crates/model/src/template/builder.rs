//! [`TemplateBuilder`]: hookflow's one environment configuration, and the
//! compiling of expressions, string fields and JSON values (with their errors).

use super::{
    CompileError, Compiled, Expr, Fast, FastText, Templates, Text, TextTemplate, ValueTemplate,
    RESULT_VAR,
};
use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value as Json;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Instruction budget of one evaluation, so that no template runs away.
const FUEL: u64 = 200_000;
/// Nesting limit of one evaluation.
const RECURSION_LIMIT: usize = 64;

/// The filters and tests hints may name (those the environment has).
const FILTERS: &[&str] = &[
    "abs",
    "attr",
    "batch",
    "bool",
    "capitalize",
    "chain",
    "count",
    "d",
    "default",
    "dictsort",
    "e",
    "escape",
    "first",
    "float",
    "format",
    "groupby",
    "indent",
    "int",
    "items",
    "join",
    "last",
    "length",
    "lines",
    "list",
    "lower",
    "map",
    "max",
    "min",
    "pprint",
    "reject",
    "rejectattr",
    "replace",
    "reverse",
    "round",
    "safe",
    "select",
    "selectattr",
    "slice",
    "sort",
    "split",
    "string",
    "sum",
    "title",
    "tojson",
    "trim",
    "unique",
    "upper",
    "urlencode",
    "zip",
];
const TESTS: &[&str] = &[
    "boolean",
    "defined",
    "divisibleby",
    "endingwith",
    "eq",
    "equalto",
    "escaped",
    "even",
    "false",
    "filter",
    "float",
    "ge",
    "greaterthan",
    "gt",
    "in",
    "int",
    "integer",
    "iterable",
    "le",
    "lessthan",
    "lower",
    "lt",
    "mapping",
    "ne",
    "none",
    "number",
    "odd",
    "safe",
    "sameas",
    "sequence",
    "startingwith",
    "string",
    "test",
    "true",
    "undefined",
    "upper",
];

/// Builds the environment of one workflow.
///
/// Templates are checked (compiled and dropped) here, but kept only as
/// source: the environment compiles one the first time a run needs it
/// (through its loader). Most expressions never need it — the fast path
/// evaluates them by lookup — and a compiled template holds ~9 KiB of
/// instruction buffers, which with thousands of workflows loaded was most
/// of the server's memory.
pub struct TemplateBuilder {
    env: Environment<'static>,
    /// Sources by number: `e3` is the template kept for the expression
    /// `sources[2]` (made when first loaded, see [`wrapper`]), `t3` the
    /// text template `sources[2]`.
    sources: Vec<Box<str>>,
    /// The top-level variables any template reads (`trigger`, `vars`…).
    reads: BTreeSet<String>,
}

impl Default for TemplateBuilder {
    fn default() -> Self {
        Self::new()
    }
}

/// Every byte but RFC 3986's unreserved ones (letters, digits, `-._~`).
const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `urlencode`: a value as one URL component, `/`, `?`, `#` and `&`
/// encoded (unlike Jinja's, which keeps `/`): a path segment taken from a
/// webhook stays one segment. A map becomes a query string; none is
/// empty; undefined is an error (as any undefined read).
fn urlencode(value: minijinja::Value) -> Result<String, minijinja::Error> {
    use minijinja::value::ValueKind;
    let encode = |v: &minijinja::Value| {
        let text = match v.as_str() {
            Some(s) => s.to_string(),
            None => v.to_string(),
        };
        percent_encoding::utf8_percent_encode(&text, COMPONENT).to_string()
    };
    match value.kind() {
        // Strict, as every other read (SPEC §2): a missing id is not an
        // empty path segment (`/orders/` is another URL).
        ValueKind::Undefined => Err(minijinja::Error::new(
            minijinja::ErrorKind::UndefinedError,
            "`urlencode` of an undefined value",
        )),
        ValueKind::None => Ok(String::new()),
        ValueKind::Map => {
            let mut out = String::new();
            for key in value.try_iter()? {
                let item = value.get_item(&key)?;
                if item.is_none() || item.is_undefined() {
                    continue;
                }
                if !out.is_empty() {
                    out.push('&');
                }
                out.push_str(&encode(&key));
                out.push('=');
                out.push_str(&encode(&item));
            }
            Ok(out)
        }
        _ => Ok(encode(&value)),
    }
}

/// hookflow's one environment configuration, made once.
///
/// Every workflow's environment is a clone of it. A clone shares the
/// filter, test and global maps and the formatter (each an `Arc`); made
/// afresh, `add_filter` copied minijinja's whole default filter map per
/// workflow (`Arc::make_mut`), ~3.9 KiB each, 38 MiB with 10,000 loaded.
fn base_environment() -> &'static Environment<'static> {
    static BASE: std::sync::OnceLock<Environment<'static>> = std::sync::OnceLock::new();
    BASE.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(RECURSION_LIMIT);
        env.add_filter("urlencode", urlencode);
        env.set_formatter(|out, _state, value| {
            if let Some(s) = value.as_str() {
                out.write_str(s)?;
            } else if value.is_none() || value.is_undefined() {
                // null renders as nothing inside text
            } else {
                let json = serde_json::to_string(value).map_err(|e| {
                    minijinja::Error::new(minijinja::ErrorKind::BadSerialization, e.to_string())
                })?;
                out.write_str(&json)?;
            }
            Ok(())
        });
        env
    })
}

impl TemplateBuilder {
    /// A builder with hookflow's one environment configuration.
    pub fn new() -> TemplateBuilder {
        let env = base_environment().clone();
        TemplateBuilder {
            env,
            sources: Vec::new(),
            reads: BTreeSet::new(),
        }
    }

    /// Notes the top-level variables of a template's references, and the
    /// parts a run builds only when read: the request's headers
    /// ([`super::TRIGGER_HEADERS`]: `trigger.headers…`, or `trigger` itself,
    /// whole or by index) and two fields of `execution`
    /// ([`super::EXECUTION_WORKFLOW`], [`super::EXECUTION_STARTED_AT`]).
    fn note_reads(&mut self, refs: &BTreeSet<String>) {
        for r in refs {
            let top = r.split('.').next().unwrap_or(r);
            if !self.reads.contains(top) {
                self.reads.insert(top.to_string());
            }
            for (whole, part) in [
                ("trigger", super::TRIGGER_HEADERS),
                ("execution", super::EXECUTION_WORKFLOW),
                ("execution", super::EXECUTION_STARTED_AT),
            ] {
                let reads_part = r == whole
                    || r.strip_prefix(part)
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'));
                if reads_part && !self.reads.contains(part) {
                    self.reads.insert(part.to_string());
                }
            }
        }
    }

    /// Keeps a checked template's source under a new number (its name in
    /// the environment is that number after `e` or `t`).
    fn keep(&mut self, source: &str) -> u32 {
        self.sources.push(source.into());
        u32::try_from(self.sources.len()).unwrap_or(u32::MAX)
    }

    /// Compiles an expression written without braces.
    pub fn expr(&mut self, source: &str) -> Result<Compiled<Expr>, CompileError> {
        let fast = Fast::parse(source).map(Box::new);
        // The common shapes (`vars.order_id`, `vars.status == "PAID"`) are
        // known to compile and to read what they name; anything else is
        // compiled here, as the expression and as the template kept.
        let refs = match fast.as_deref().map(Fast::reads) {
            Some(read) => BTreeSet::from([read]),
            None => {
                let refs = {
                    let compiled = self
                        .env
                        .compile_expression(source)
                        .map_err(|e| compile_error(&e))?;
                    nested_refs(compiled.undeclared_variables(true))
                };
                self.env
                    .template_from_str(&wrapper(source))
                    .map_err(|e| compile_error(&e))?;
                refs
            }
        };
        self.note_reads(&refs);
        let id = self.keep(source);
        Ok(Compiled {
            value: Expr {
                id,
                source: source.into(),
                fast,
            },
            refs,
        })
    }

    /// Compiles a string field: literal, typed single expression, or text template.
    pub fn text(&mut self, source: &str) -> Result<Compiled<Text>, CompileError> {
        if !has_template_syntax(source) {
            return Ok(Compiled {
                value: Text::Literal(source.to_string()),
                refs: BTreeSet::new(),
            });
        }
        if let Some(inner) = single_expression(source) {
            // Its lines count from the source's, not from the inner part's.
            let offset = (inner.as_ptr() as usize).saturating_sub(source.as_ptr() as usize);
            let before = source.get(..offset).map_or(0, |s| s.matches('\n').count());
            let compiled = self.expr(inner).map_err(|mut e| {
                e.line = e.line.map(|l| l + before);
                e
            })?;
            return Ok(Compiled {
                value: Text::Expr(compiled.value),
                refs: compiled.refs,
            });
        }
        let refs = match self.env.template_from_str(source) {
            Ok(t) => nested_refs(t.undeclared_variables(true)),
            Err(e) => return Err(compile_error(&e)),
        };
        self.note_reads(&refs);
        let id = self.keep(source);
        Ok(Compiled {
            value: Text::Template(TextTemplate {
                id,
                fast: FastText::parse(source).map(Box::new),
            }),
            refs,
        })
    }

    /// Compiles a JSON value member by member. The error names the failing
    /// member's path below `value` (e.g. `["items", "0"]`).
    pub fn value(
        &mut self,
        value: &Json,
    ) -> Result<Compiled<ValueTemplate>, (Vec<String>, CompileError)> {
        let mut refs = BTreeSet::new();
        let value = self.value_inner(value, &mut refs)?;
        Ok(Compiled { value, refs })
    }

    fn value_inner(
        &mut self,
        value: &Json,
        refs: &mut BTreeSet<String>,
    ) -> Result<ValueTemplate, (Vec<String>, CompileError)> {
        Ok(match value {
            Json::String(s) if has_template_syntax(s) => {
                let c = self.text(s).map_err(|e| (Vec::new(), e))?;
                refs.extend(c.refs);
                ValueTemplate::Text(c.value)
            }
            Json::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    out.push(self.value_inner(item, refs).map_err(|(mut p, e)| {
                        p.insert(0, i.to_string());
                        (p, e)
                    })?);
                }
                if out.iter().all(ValueTemplate::is_literal) {
                    ValueTemplate::Literal(value.clone())
                } else {
                    ValueTemplate::Array(out)
                }
            }
            Json::Object(map) => {
                let mut out = Vec::with_capacity(map.len());
                for (k, v) in map {
                    let t = self.value_inner(v, refs).map_err(|(mut p, e)| {
                        p.insert(0, k.clone());
                        (p, e)
                    })?;
                    out.push((k.clone(), t));
                }
                if out.iter().all(|(_, t)| t.is_literal()) {
                    ValueTemplate::Literal(value.clone())
                } else {
                    ValueTemplate::Object(out)
                }
            }
            other => ValueTemplate::Literal(other.clone()),
        })
    }

    /// True when the environment has a filter of that name.
    pub fn has_filter(&self, name: &str) -> bool {
        self.has("filter", name)
    }

    /// True when the environment has a test of that name.
    pub fn has_test(&self, name: &str) -> bool {
        self.has("test", name)
    }

    /// True when the environment itself has a global of that name (a
    /// function such as `range`).
    pub fn is_global(&self, name: &str) -> bool {
        let ident = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        ident
            && self
                .env
                .compile_expression(&format!("{name} is defined"))
                .and_then(|e| e.eval(minijinja::context! {}))
                .map(|v| v.is_true())
                .unwrap_or(false)
    }

    /// Asks the environment itself (`name is filter`), so that the answer
    /// follows whatever it has.
    fn has(&self, what: &str, name: &str) -> bool {
        self.env
            .compile_expression(&format!("name is {what}"))
            .and_then(|e| e.eval(minijinja::context! { name => name }))
            .map(|v| v.is_true())
            .unwrap_or(true)
    }

    /// The filters, for hints.
    pub fn filter_names(&self) -> Vec<&'static str> {
        FILTERS
            .iter()
            .copied()
            .filter(|n| self.has_filter(n))
            .collect()
    }

    /// The tests, for hints.
    pub fn test_names(&self) -> Vec<&'static str> {
        TESTS.iter().copied().filter(|n| self.has_test(n)).collect()
    }

    /// Freezes the environment; templates compile on first use.
    pub fn finish(self) -> Templates {
        let mut env = self.env;
        let sources: Arc<[Box<str>]> = self.sources.into();
        env.set_loader(move |name| {
            let source = name
                .get(1..)
                .and_then(|n| n.parse::<usize>().ok())
                .and_then(|n| n.checked_sub(1))
                .and_then(|i| sources.get(i));
            Ok(match (name.as_bytes().first(), source) {
                (Some(b'e'), Some(expr)) => Some(wrapper(expr)),
                (Some(b't'), Some(text)) => Some(text.to_string()),
                _ => None,
            })
        });
        Templates {
            env: Arc::new(env),
            reads: self.reads.into_iter().map(String::into_boxed_str).collect(),
        }
    }
}

/// The template an expression is kept as: one that assigns it, so that its
/// compiled form lives in the environment and keeps no borrows.
fn wrapper(expr: &str) -> String {
    format!("{{% set {RESULT_VAR} = ({expr}\n) %}}")
}

/// True when a string contains template syntax (`{{`, `{%` or `{#`).
pub fn has_template_syntax(s: &str) -> bool {
    has_pair(s, '{', b"{%#")
}

/// Whether `s` holds `first` followed by one of the bytes `then`.
pub(super) fn has_pair(s: &str, first: char, then: &[u8]) -> bool {
    find_pair(s, 0, first, then).is_some()
}

/// Where the first `first` at or after byte `from` that is followed by one
/// of the bytes `then` is: a one-byte search per `first` (most strings
/// have none). A two-byte pattern sets up a substring searcher at each
/// call, ~300 instructions, and loading makes several per string.
pub(super) fn find_pair(s: &str, from: usize, first: char, then: &[u8]) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut at = from;
    while let Some(i) = s.get(at..)?.find(first) {
        let found = at + i;
        at = found + first.len_utf8();
        if bytes.get(at).is_some_and(|b| then.contains(b)) {
            return Some(found);
        }
    }
    None
}

/// The inner expression when `s` is exactly one `{{ expr }}`.
fn single_expression(s: &str) -> Option<&str> {
    let inner = s.strip_prefix("{{")?.strip_suffix("}}")?;
    if has_template_syntax(inner) || has_pair(inner, '}', b"}") {
        return None;
    }
    let inner = inner.strip_prefix('-').unwrap_or(inner);
    let inner = inner.strip_suffix('-').unwrap_or(inner);
    Some(inner.trim())
}

fn nested_refs(vars: std::collections::HashSet<String>) -> BTreeSet<String> {
    vars.into_iter().collect()
}

fn compile_error(e: &minijinja::Error) -> CompileError {
    let detail = e
        .detail()
        .map(str::to_string)
        .unwrap_or_else(|| e.kind().to_string());
    let message = match e.kind() {
        minijinja::ErrorKind::SyntaxError => format!("syntax error: {detail}"),
        _ => detail,
    };
    CompileError {
        message,
        line: e.line(),
    }
}

#[cfg(test)]
mod tests {
    use super::{has_template_syntax, single_expression};

    #[test]
    fn template_syntax_and_single_expressions_are_found_by_their_pairs() {
        for yes in ["{{ x }}", "a {% if x %}", "{# c #}", "{ {{", "é{{x}}", "{{"] {
            assert!(has_template_syntax(yes), "{yes}");
        }
        for no in ["", "{", "}", "{ x }", "{}", "a { b } c {", "é{ {"] {
            assert!(!has_template_syntax(no), "{no}");
        }
        assert_eq!(single_expression("{{ vars.a }}"), Some("vars.a"));
        assert_eq!(single_expression("{{- vars.a -}}"), Some("vars.a"));
        assert_eq!(single_expression("{{ {'a': 1} }}"), Some("{'a': 1}"));
        for no in [
            "{{ a }} {{ b }}",
            "{{ a }} x",
            "{{ a {% b %} }}",
            "{{ a {# b #} }}",
            "{{ a {{ b }}",
            "{{ a }}}}",
        ] {
            assert_eq!(single_expression(no), None, "{no}");
        }
    }
}
