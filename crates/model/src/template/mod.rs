//! Templates and expressions (minijinja), compiled once per workflow load.
//!
//! Every workflow owns one [`Templates`] environment configured by
//! [`TemplateBuilder::new`]: strict undefined, no autoescape, fuel and recursion
//! limits, JSON-style output of non-strings. Strings in a workflow compile to a
//! [`Text`]: a literal (no template syntax), a typed expression (exactly one
//! `{{ expr }}`, which keeps its value's type), or a text template. Mappings and
//! lists compile member by member into a [`ValueTemplate`]; JSON is never
//! rendered as text and parsed again.
//!
//! The builder and its environment are in `builder`, the variables of a run
//! in `scope`, and the evaluation of simple expressions (and of text
//! templates of text and plain paths) without the engine in `fast`.

use minijinja::value::Value as MjValue;
use minijinja::Environment;
use serde_json::Value as Json;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

mod builder;
mod fast;
pub mod scan;
mod scope;
#[cfg(test)]
mod tests;
mod undefined;

pub use builder::{has_template_syntax, TemplateBuilder};
pub use scope::Scope;

use fast::{Fast, FastText};

/// The variable the expression wrapper assigns to.
const RESULT_VAR: &str = "__hookflow_value";

/// A string field of a workflow, compiled.
#[derive(Debug, Clone)]
pub enum Text {
    /// No template syntax: the string itself.
    Literal(String),
    /// Exactly one `{{ expr }}`: evaluates to a typed value.
    Expr(Expr),
    /// A text template.
    Template(TextTemplate),
}

/// A compiled text template.
#[derive(Debug, Clone)]
pub struct TextTemplate {
    /// Its number in the environment.
    id: u32,
    /// Literal text and plain paths only: rendered without the engine.
    fast: Option<Box<FastText>>,
}

/// A compiled expression (conditions, calculations, `loop.over`).
#[derive(Debug, Clone)]
pub struct Expr {
    /// Its number in the environment.
    id: u32,
    /// The source, for messages.
    pub source: Box<str>,
    /// The shape of the commonest expressions, evaluated without the engine.
    fast: Option<Box<Fast>>,
}

/// A JSON value whose strings are templates, compiled member by member.
#[derive(Debug, Clone)]
pub enum ValueTemplate {
    /// Contains no template: used as is.
    Literal(Json),
    /// A string with template syntax.
    Text(Text),
    /// A list with templates inside.
    Array(Vec<ValueTemplate>),
    /// A mapping with templates inside.
    Object(Vec<(String, ValueTemplate)>),
}

impl ValueTemplate {
    /// True when nothing in it needs rendering.
    pub fn is_literal(&self) -> bool {
        matches!(self, ValueTemplate::Literal(_))
    }
}

/// A template or expression that does not compile.
#[derive(Debug, Clone, PartialEq)]
pub struct CompileError {
    /// The message, without the engine's internal template names.
    pub message: String,
    /// The line inside the template source (1-based), when the engine knows it.
    pub line: Option<usize>,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// An error while evaluating a template at run time.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct EvalError {
    /// What went wrong.
    pub message: String,
}

/// The output of compiling one piece: the compiled value and the variables it reads.
#[derive(Debug)]
pub struct Compiled<T> {
    /// The compiled value.
    pub value: T,
    /// Variables read, as dotted paths (`vars.order_id`, `nodes.check.result`, `secrets.KEY`).
    pub refs: BTreeSet<String>,
}

/// [`eval_error`], naming the undefined path of `source` when that is what failed.
fn eval_error_in(e: &minijinja::Error, source: &str, ctx: &MjValue) -> EvalError {
    let plain = eval_error(e);
    let undefined = e.kind() == minijinja::ErrorKind::UndefinedError;
    if undefined || plain.message.contains("undefined") {
        if let Some((path, guarded)) = undefined::undefined_in(source, ctx) {
            let message = match undefined {
                true => format!("`{path}` is undefined"),
                // An operation on it: the engine's words say which.
                false => format!("`{path}` is undefined: {}", plain.message),
            };
            let hint = match guarded {
                // `a.b.c | default(v)` with `a.b` undefined.
                true => format!(
                    " (`| default` and `is defined` cover the last step only; \
                     test the step before: `… if {path} is defined else …`)"
                ),
                false => String::new(),
            };
            return EvalError {
                message: format!("{message}{hint}"),
            };
        }
    }
    plain
}

fn eval_error(e: &minijinja::Error) -> EvalError {
    let mut message = e
        .detail()
        .map(str::to_string)
        .unwrap_or_else(|| e.kind().to_string());
    if e.kind() == minijinja::ErrorKind::OutOfFuel {
        message = "template ran too long (out of fuel)".into();
    } else if e.kind() == minijinja::ErrorKind::UndefinedError && !message.contains("undefined") {
        message = format!("undefined value: {message}");
    }
    EvalError { message }
}

/// What [`Templates::reads`] answers for templates that can read the
/// request's headers.
pub const TRIGGER_HEADERS: &str = "trigger.headers";

/// What [`Templates::reads`] answers for templates that can read
/// `execution.workflow` (the field, or `execution` whole).
pub const EXECUTION_WORKFLOW: &str = "execution.workflow";

/// What [`Templates::reads`] answers for templates that can read
/// `execution.started_at` (the field, or `execution` whole).
pub const EXECUTION_STARTED_AT: &str = "execution.started_at";

/// One workflow's compiled templates.
#[derive(Clone)]
pub struct Templates {
    env: Arc<Environment<'static>>,
    /// A short list: a tree set's node is 280 bytes, per workflow.
    reads: Arc<[Box<str>]>,
}

impl fmt::Debug for Templates {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("Templates")
    }
}

impl Templates {
    /// Whether any template may read the top-level variable `name`
    /// (`trigger`, `vars`, `nodes`…), so that a run need not hand its scope
    /// a variable no template reads. Templates name every variable they
    /// read, except through `debug()`, which prints the whole context.
    pub fn reads(&self, name: &str) -> bool {
        self.reads.iter().any(|r| &**r == name || &**r == "debug")
    }

    fn eval_named(&self, name: &str, ctx: MjValue) -> Result<MjValue, EvalError> {
        let template = self.env.get_template(name).map_err(|e| eval_error(&e))?;
        let captured = template
            .render_captured(ctx.clone())
            .map_err(|e| eval_error_in(&e, template.source(), &ctx))?;
        let value = captured.state().lookup(RESULT_VAR).unwrap_or_default();
        if value.is_undefined() {
            return Err(EvalError {
                message: "the expression is undefined".into(),
            });
        }
        Ok(value)
    }

    /// Evaluates an expression, by lookup when its shape allows.
    fn eval_expr(&self, expr: &Expr, scope: &Scope) -> Result<MjValue, EvalError> {
        let fast = match expr.fast.as_deref() {
            Some(Fast::Path(path)) => scope.lookup(path),
            Some(Fast::StrEq {
                path,
                literal,
                negated,
            }) => scope.find(path).and_then(|found| {
                found
                    .as_str()
                    .map(|s| MjValue::from((s == &**literal) != *negated))
            }),
            None => None,
        };
        match fast {
            Some(value) => Ok(value),
            None => self.eval_named(&expr_name(expr.id), scope.context()),
        }
    }

    /// Evaluates an expression to a JSON value.
    pub fn eval(&self, expr: &Expr, scope: &Scope) -> Result<Json, EvalError> {
        if let Some(json) = self.looked_up_json(expr, scope) {
            return Ok(json);
        }
        to_json(
            self.eval_expr(expr, scope)
                .map_err(|e| with_source(e, &expr.source))?,
        )
    }

    /// A path's value when it lies inside a variable's JSON, copied as JSON
    /// (the engine's value converted back is the same JSON).
    fn looked_up_json(&self, expr: &Expr, scope: &Scope) -> Option<Json> {
        match expr.fast.as_deref() {
            Some(Fast::Path(path)) => match scope.find(path)? {
                fast::Found::Json(json) => Some(json.clone()),
                fast::Found::Value(_) => None,
            },
            _ => None,
        }
    }

    /// Evaluates an expression for its truth (Jinja rules: empty, 0, none and false are false).
    pub fn truth(&self, expr: &Expr, scope: &Scope) -> Result<bool, EvalError> {
        Ok(self
            .eval_expr(expr, scope)
            .map_err(|e| with_source(e, &expr.source))?
            .is_true())
    }

    /// Renders a string field to text.
    pub fn render(&self, text: &Text, scope: &Scope) -> Result<String, EvalError> {
        match text {
            Text::Literal(s) => Ok(s.clone()),
            Text::Expr(expr) => {
                let value = self.eval_expr(expr, scope)?;
                Ok(match value.as_str() {
                    Some(s) => s.to_string(),
                    None if value.is_none() => String::new(),
                    None => serde_json::to_string(&value).map_err(|e| EvalError {
                        message: e.to_string(),
                    })?,
                })
            }
            Text::Template(TextTemplate { id, fast }) => {
                if let Some(text) = fast.as_deref().and_then(|f| f.render(scope)) {
                    return Ok(text);
                }
                let template = self
                    .env
                    .get_template(&text_name(*id))
                    .map_err(|e| eval_error(&e))?;
                template
                    .render(scope.context())
                    .map_err(|e| eval_error_in(&e, template.source(), &scope.context()))
            }
        }
    }

    /// Evaluates a string field keeping the type of a single `{{ expr }}`.
    pub fn eval_text(&self, text: &Text, scope: &Scope) -> Result<Json, EvalError> {
        match text {
            Text::Expr(expr) => match self.looked_up_json(expr, scope) {
                Some(json) => Ok(json),
                None => to_json(self.eval_expr(expr, scope)?),
            },
            other => self.render(other, scope).map(Json::String),
        }
    }

    /// Evaluates a JSON value with templates inside.
    pub fn eval_value(&self, value: &ValueTemplate, scope: &Scope) -> Result<Json, EvalError> {
        Ok(match value {
            ValueTemplate::Literal(v) => v.clone(),
            ValueTemplate::Text(t) => self.eval_text(t, scope)?,
            ValueTemplate::Array(items) => Json::Array(
                items
                    .iter()
                    .map(|i| self.eval_value(i, scope))
                    .collect::<Result<_, _>>()?,
            ),
            ValueTemplate::Object(entries) => {
                // Inserted one by one: collected, a map is first gathered
                // in a vector and sorted (an allocation and ~270
                // instructions more for a small answer's body).
                let mut map = serde_json::Map::new();
                for (k, v) in entries {
                    map.insert(k.clone(), self.eval_value(v, scope)?);
                }
                Json::Object(map)
            }
        })
    }
}

/// The environment's name of expression `id` (the template kept for it).
fn expr_name(id: u32) -> String {
    format!("e{id}")
}

/// The environment's name of text template `id`.
fn text_name(id: u32) -> String {
    format!("t{id}")
}

fn with_source(mut e: EvalError, source: &str) -> EvalError {
    e.message = format!("{} (in `{source}`)", e.message);
    e
}

fn to_json(value: MjValue) -> Result<Json, EvalError> {
    serde_json::to_value(&value).map_err(|e| EvalError {
        message: format!("value cannot be turned into JSON: {e}"),
    })
}
