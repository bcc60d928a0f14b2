//! Templates and expressions (minijinja), compiled once per workflow load.
//!
//! Every workflow owns one [`Templates`] environment configured by
//! [`TemplateBuilder::new`]: strict undefined, no autoescape, fuel and recursion
//! limits, JSON-style output of non-strings. Strings in a workflow compile to a
//! [`Text`]: a literal (no template syntax), a typed expression (exactly one
//! `{{ expr }}`, which keeps its value's type), or a text template. Mappings and
//! lists compile member by member into a [`ValueTemplate`]; JSON is never
//! rendered as text and parsed again.

use minijinja::value::{Enumerator, Object, ObjectExt, ObjectRepr, Value as MjValue};
use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, OnceLock};

/// Instruction budget of one evaluation, so that no template runs away.
const FUEL: u64 = 200_000;
/// Nesting limit of one evaluation.
const RECURSION_LIMIT: usize = 64;
/// The variable the expression wrapper assigns to.
const RESULT_VAR: &str = "__hookflow_value";

/// A string field of a workflow, compiled.
#[derive(Debug, Clone)]
pub enum Text {
    /// No template syntax: the string itself.
    Literal(String),
    /// Exactly one `{{ expr }}`: evaluates to a typed value.
    Expr(Expr),
    /// A text template (its name in the environment).
    Template(String),
}

/// A compiled expression (conditions, calculations, `loop.over`).
#[derive(Debug, Clone)]
pub struct Expr {
    name: String,
    /// The source, for messages.
    pub source: String,
    /// The shape of the commonest expressions, evaluated without the engine.
    fast: Option<Fast>,
}

/// Expressions simple enough to evaluate by looking values up. Anything
/// the lookup cannot settle (a missing variable, a value of another type)
/// goes to the engine, which also words the errors; results are the same.
#[derive(Debug, Clone)]
enum Fast {
    /// `vars.order_id`
    Path(Vec<String>),
    /// `vars.status == "SUCCESS"` (or `!=`)
    StrEq {
        path: Vec<String>,
        literal: String,
        negated: bool,
    },
}

impl Fast {
    fn parse(source: &str) -> Option<Fast> {
        let source = source.trim();
        for (op, negated) in [("==", false), ("!=", true)] {
            if let Some((left, right)) = source.split_once(op) {
                let literal = string_literal(right.trim())?;
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
}

/// `a.b.c` of plain names, the first not a literal or keyword.
fn path_of(s: &str) -> Option<Vec<String>> {
    let ident = |p: &str| {
        let mut chars = p.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let parts: Vec<String> = s.split('.').map(str::to_string).collect();
    let first = parts.first()?;
    let keyword = matches!(
        first.as_str(),
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
    (!keyword && parts.iter().all(|p| ident(p))).then_some(parts)
}

/// `"text"` or `'text'` without escapes.
fn string_literal(s: &str) -> Option<String> {
    let quote = s.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let inner = s.strip_prefix(quote)?.strip_suffix(quote)?;
    (!inner.contains(quote) && !inner.contains('\\')).then(|| inner.to_string())
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

/// Builds the environment of one workflow.
pub struct TemplateBuilder {
    env: Environment<'static>,
    count: usize,
    /// The top-level variables any template reads (`trigger`, `vars`…).
    reads: BTreeSet<String>,
}

impl Default for TemplateBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl TemplateBuilder {
    /// A builder with hookflow's one environment configuration.
    pub fn new() -> TemplateBuilder {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(RECURSION_LIMIT);
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
        TemplateBuilder {
            env,
            count: 0,
            reads: BTreeSet::new(),
        }
    }

    /// Notes the top-level variables of a template's references.
    fn note_reads(&mut self, refs: &BTreeSet<String>) {
        for r in refs {
            let top = r.split('.').next().unwrap_or(r);
            if !self.reads.contains(top) {
                self.reads.insert(top.to_string());
            }
        }
    }

    fn next_name(&mut self, prefix: &str) -> String {
        self.count += 1;
        format!("{prefix}{}", self.count)
    }

    /// Compiles an expression written without braces.
    pub fn expr(&mut self, source: &str) -> Result<Compiled<Expr>, CompileError> {
        let refs = {
            let compiled = self
                .env
                .compile_expression(source)
                .map_err(|e| compile_error(&e))?;
            nested_refs(compiled.undeclared_variables(true))
        };
        self.note_reads(&refs);
        let name = self.next_name("e");
        // An expression is stored as a template that assigns it, so that the
        // compiled form lives in the environment and keeps no borrows.
        let wrapper = format!("{{% set {RESULT_VAR} = ({source}\n) %}}");
        self.env
            .add_template_owned(name.clone(), wrapper)
            .map_err(|e| compile_error(&e))?;
        Ok(Compiled {
            value: Expr {
                name,
                source: source.to_string(),
                fast: Fast::parse(source),
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
            let compiled = self.expr(inner)?;
            return Ok(Compiled {
                value: Text::Expr(compiled.value),
                refs: compiled.refs,
            });
        }
        let name = self.next_name("t");
        self.env
            .add_template_owned(name.clone(), source.to_string())
            .map_err(|e| compile_error(&e))?;
        let refs = match self.env.get_template(&name) {
            Ok(t) => nested_refs(t.undeclared_variables(true)),
            Err(e) => return Err(compile_error(&e)),
        };
        self.note_reads(&refs);
        Ok(Compiled {
            value: Text::Template(name),
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

    /// Freezes the environment.
    pub fn finish(self) -> Templates {
        Templates {
            env: Arc::new(self.env),
            reads: Arc::new(self.reads),
        }
    }
}

/// True when a string contains template syntax (`{{`, `{%` or `{#`).
pub fn has_template_syntax(s: &str) -> bool {
    s.contains("{{") || s.contains("{%") || s.contains("{#")
}

/// The inner expression when `s` is exactly one `{{ expr }}`.
fn single_expression(s: &str) -> Option<&str> {
    let inner = s.strip_prefix("{{")?.strip_suffix("}}")?;
    if inner.contains("{{") || inner.contains("}}") || inner.contains("{%") || inner.contains("{#")
    {
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

/// The variables templates see during one run. Values are kept as JSON and
/// turned into engine values only when a template reads them: a dotted path
/// is looked up in the JSON directly, and the engine's context converts a
/// top-level entry (`trigger`, `vars`, each `nodes.<key>`, the current loop…)
/// on first read, once; `now` is formatted only when a template reads it.
/// Cloning is cheap (the data is shared until one of the clones changes it).
#[derive(Debug, Clone, Default)]
pub struct Scope {
    data: Arc<ScopeData>,
    /// The context handed to templates, built on first use after a change.
    context: OnceLock<MjValue>,
}

#[derive(Debug, Clone, Default)]
struct ScopeData {
    entries: BTreeMap<&'static str, Arc<Lazy>>,
    nodes: BTreeMap<String, Arc<Lazy>>,
    loops: Vec<Arc<LoopEntry>>,
}

/// A JSON value and its engine form, converted on first use.
#[derive(Debug)]
struct Lazy {
    json: Json,
    value: OnceLock<MjValue>,
}

impl Lazy {
    fn new(json: Json) -> Arc<Lazy> {
        Arc::new(Lazy {
            json,
            value: OnceLock::new(),
        })
    }

    /// The engine form (converted once, then shared).
    fn value(&self) -> MjValue {
        self.value.get_or_init(|| engine_value(&self.json)).clone()
    }
}

/// One loop iteration: `loop.item`, `loop.index`.
#[derive(Debug)]
struct LoopEntry {
    item: Json,
    index: usize,
    value: OnceLock<MjValue>,
}

impl LoopEntry {
    /// The engine form of `loop` (converted once, then shared).
    fn value(&self) -> MjValue {
        self.value
            .get_or_init(|| {
                let mut m = BTreeMap::new();
                m.insert("item", engine_value(&self.item));
                m.insert("index", MjValue::from(self.index));
                MjValue::from(m)
            })
            .clone()
    }
}

/// A JSON value as the engine sees it.
fn engine_value(json: &Json) -> MjValue {
    MjValue::from(minijinja::value::Serde(json))
}

/// The value at `path` below `json`, stepping into objects by key (the only
/// steps a dotted path of names resolves in the engine).
fn walk<'a>(json: &'a Json, path: &[String]) -> Option<&'a Json> {
    path.iter()
        .try_fold(json, |value, step| value.as_object()?.get(step))
}

/// What a lookup found: JSON still to convert, or an engine value.
enum Found<'a> {
    Json(&'a Json),
    Value(MjValue),
}

impl Found<'_> {
    /// The string, when the value is one.
    fn as_str(&self) -> Option<&str> {
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
    /// An empty scope.
    pub fn new() -> Scope {
        Scope::default()
    }

    /// The data, for a change (the cached context is dropped first, so that
    /// it does not keep the data shared).
    fn change(&mut self) -> &mut ScopeData {
        self.context = OnceLock::new();
        Arc::make_mut(&mut self.data)
    }

    /// Sets a top-level variable (`trigger`, `vars`, `execution`, `secrets`).
    pub fn set(&mut self, name: &'static str, value: &Json) {
        self.set_owned(name, value.clone());
    }

    /// Sets a top-level variable, taking the value without a copy.
    pub fn set_owned(&mut self, name: &'static str, value: Json) {
        self.change().entries.insert(name, Lazy::new(value));
    }

    /// Sets `nodes.<key>`.
    pub fn set_node(&mut self, key: &str, value: &Json) {
        self.change()
            .nodes
            .insert(key.to_string(), Lazy::new(value.clone()));
    }

    /// Enters a loop iteration: `loop.item`, `loop.index`.
    pub fn push_loop(&mut self, item: &Json, index: usize) {
        self.push_loop_owned(item.clone(), index);
    }

    /// Enters a loop iteration, taking the item without a copy.
    pub fn push_loop_owned(&mut self, item: Json, index: usize) {
        self.change().loops.push(Arc::new(LoopEntry {
            item,
            index,
            value: OnceLock::new(),
        }));
    }

    /// Leaves every loop iteration.
    pub fn clear_loops(&mut self) {
        if !self.data.loops.is_empty() {
            self.change().loops.clear();
        }
    }

    /// The value at a dotted path, if every step exists.
    fn lookup(&self, path: &[String]) -> Option<MjValue> {
        self.find(path).map(Found::into_value)
    }

    /// The value at a dotted path, converted only when it is a whole entry.
    fn find(&self, path: &[String]) -> Option<Found<'_>> {
        let data = &self.data;
        let (entry, rest) = match path.first()?.as_str() {
            "nodes" => (data.nodes.get(path.get(1)?)?, path.get(2..)?),
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
    fn find_in_loop<'a>(current: &'a LoopEntry, rest: &[String]) -> Option<Found<'a>> {
        match rest.split_first() {
            None => Some(Found::Value(current.value())),
            Some((step, more)) => match step.as_str() {
                "item" => walk(&current.item, more).map(Found::Json),
                "index" if more.is_empty() => Some(Found::Value(MjValue::from(current.index))),
                _ => None,
            },
        }
    }

    fn context(&self) -> MjValue {
        self.context
            .get_or_init(|| {
                MjValue::from_object(ScopeObject {
                    data: self.data.clone(),
                })
            })
            .clone()
    }
}

/// The scope as the engine's context; entries convert when read.
#[derive(Debug)]
struct ScopeObject {
    data: Arc<ScopeData>,
}

impl Object for ScopeObject {
    fn get_value(self: &Arc<Self>, key: &MjValue) -> Option<MjValue> {
        let data = &self.data;
        match key.as_str()? {
            "nodes" => Some(MjValue::from_object(NodesObject { data: data.clone() })),
            "loop" => data.loops.last().map(|l| l.value()),
            "now" => Some(MjValue::from(crate::time::now_rfc3339())),
            other => data.entries.get(other).map(|e| e.value()),
        }
    }
}

/// `nodes` as the engine sees it: a mapping (like a `BTreeMap` of node
/// results) whose members convert when read.
#[derive(Debug)]
struct NodesObject {
    data: Arc<ScopeData>,
}

impl Object for NodesObject {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &MjValue) -> Option<MjValue> {
        self.data.nodes.get(key.as_str()?).map(|n| n.value())
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        self.mapped_rev_key_value_enumerator(|this| {
            Box::new(
                this.data
                    .nodes
                    .iter()
                    .map(|(k, v)| (MjValue::from(k.as_str()), v.value())),
            )
        })
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.data.nodes.len())
    }
}

/// One workflow's compiled templates.
#[derive(Clone)]
pub struct Templates {
    env: Arc<Environment<'static>>,
    reads: Arc<BTreeSet<String>>,
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
        self.reads.contains(name) || self.reads.contains("debug")
    }

    fn eval_named(&self, name: &str, ctx: MjValue) -> Result<MjValue, EvalError> {
        let template = self.env.get_template(name).map_err(|e| eval_error(&e))?;
        let captured = template.render_captured(ctx).map_err(|e| eval_error(&e))?;
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
        let fast = match &expr.fast {
            Some(Fast::Path(path)) => scope.lookup(path),
            Some(Fast::StrEq {
                path,
                literal,
                negated,
            }) => scope.find(path).and_then(|found| {
                found
                    .as_str()
                    .map(|s| MjValue::from((s == literal) != *negated))
            }),
            None => None,
        };
        match fast {
            Some(value) => Ok(value),
            None => self.eval_named(&expr.name, scope.context()),
        }
    }

    /// Evaluates an expression to a JSON value.
    pub fn eval(&self, expr: &Expr, scope: &Scope) -> Result<Json, EvalError> {
        to_json(
            self.eval_expr(expr, scope)
                .map_err(|e| with_source(e, &expr.source))?,
        )
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
            Text::Template(name) => {
                let template = self.env.get_template(name).map_err(|e| eval_error(&e))?;
                template.render(scope.context()).map_err(|e| eval_error(&e))
            }
        }
    }

    /// Evaluates a string field keeping the type of a single `{{ expr }}`.
    pub fn eval_text(&self, text: &Text, scope: &Scope) -> Result<Json, EvalError> {
        match text {
            Text::Expr(expr) => to_json(self.eval_expr(expr, scope)?),
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
            ValueTemplate::Object(entries) => Json::Object(
                entries
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), self.eval_value(v, scope)?)))
                    .collect::<Result<_, EvalError>>()?,
            ),
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope() -> Scope {
        let mut s = Scope::new();
        s.set(
            "vars",
            &json!({"order_id": "A1", "amount": 12.5, "n": 3, "flag": true, "none": null}),
        );
        s.set(
            "trigger",
            &json!({"body": {"status": "SUCCESS", "items": [1, 2]}}),
        );
        s
    }

    #[test]
    fn templates_name_the_variables_they_read() {
        let mut b = TemplateBuilder::new();
        b.expr("vars.status == \"SUCCESS\"").expect("expr");
        b.text("order {{ nodes.paid.id }}").expect("text");
        b.value(&serde_json::json!({"a": ["{% for h in trigger.headers %}{{ h }}{% endfor %}"]}))
            .expect("value");
        let t = b.finish();
        for (name, read) in [
            ("vars", true),
            ("nodes", true),
            ("trigger", true),
            ("secrets", false),
            ("execution", false),
        ] {
            assert_eq!(t.reads(name), read, "{name}");
        }
        // Literals read nothing; `debug()` may print anything.
        let mut b = TemplateBuilder::new();
        b.text("plain").expect("text");
        assert!(!b.finish().reads("trigger"));
        let mut b = TemplateBuilder::new();
        b.text("{{ debug() }}").expect("text");
        assert!(b.finish().reads("trigger"));
    }

    /// One helper for template behaviour: source in, JSON out (or error text).
    fn check(source: &str, expected: Result<Json, &str>) {
        let mut b = TemplateBuilder::new();
        let compiled = b.text(source).map(|c| c.value);
        let templates = b.finish();
        let got = match compiled {
            Ok(t) => templates.eval_text(&t, &scope()).map_err(|e| e.message),
            Err(e) => Err(e.message),
        };
        match (got, expected) {
            (Ok(g), Ok(e)) => assert_eq!(g, e, "{source}"),
            (Err(g), Err(e)) => {
                assert!(g.contains(e), "{source}: error `{g}` should contain `{e}`")
            }
            (g, e) => panic!("{source}: got {g:?}, expected {e:?}"),
        }
    }

    #[test]
    fn looked_up_expressions_match_the_engine() {
        let mut s = scope();
        s.set_node("calc", &json!({"total": 7, "tags": ["a"]}));
        s.push_loop(&json!({"sku": "X"}), 2);
        let cases = [
            // Taken by lookup.
            ("vars.order_id", true),
            ("vars.amount", true),
            ("vars.none", true),
            ("trigger.body", true),
            ("trigger.body.items", true),
            ("nodes.calc.total", true),
            ("loop.item.sku", true),
            ("loop.index", true),
            ("vars.order_id == \"A1\"", true),
            ("vars.order_id != 'A1'", true),
            ("trigger.body.status == \"FAILED\"", true),
            // Left to the engine (same answers or errors either way).
            ("vars.n == \"3\"", false),
            ("vars.missing", false),
            ("vars.missing == \"x\"", false),
            ("nope.x", false),
            ("vars.n + 1", false),
            ("vars.order_id == \"a\\\"b\"", false),
            ("none", false),
            ("now", false),
        ];
        for (source, by_lookup) in cases {
            let mut b = TemplateBuilder::new();
            let expr = b.expr(source).expect("compiles").value;
            let templates = b.finish();
            let mut slow = expr.clone();
            slow.fast = None;
            let fast_result = templates.eval(&expr, &s).map_err(|e| e.message);
            let engine_result = templates.eval(&slow, &s).map_err(|e| e.message);
            if source != "now" {
                assert_eq!(fast_result, engine_result, "{source}");
            }
            let looked_up = expr.fast.as_ref().is_some_and(|_| {
                matches!(&expr.fast, Some(Fast::Path(p)) if s.lookup(p).is_some())
                    || matches!(&expr.fast, Some(Fast::StrEq { path, .. })
                        if s.lookup(path).is_some_and(|v| v.as_str().is_some()))
            });
            assert_eq!(looked_up, by_lookup, "{source}");
        }
    }

    /// The context as it was built before it turned lazy: every entry converted.
    fn eager_context(s: &Scope) -> MjValue {
        let data = &s.data;
        let mut m: BTreeMap<&str, MjValue> = data
            .entries
            .iter()
            .map(|(k, v)| (*k, engine_value(&v.json)))
            .collect();
        let nodes: BTreeMap<String, MjValue> = data
            .nodes
            .iter()
            .map(|(k, v)| (k.clone(), engine_value(&v.json)))
            .collect();
        m.insert("nodes", MjValue::from(nodes));
        if let Some(l) = data.loops.last() {
            let mut current = BTreeMap::new();
            current.insert("item", engine_value(&l.item));
            current.insert("index", MjValue::from(l.index));
            m.insert("loop", MjValue::from(current));
        }
        MjValue::from(m)
    }

    #[test]
    fn lazy_context_matches_an_eager_one() {
        let mut s = scope();
        s.set_node("calc", &json!({"total": 7, "tags": ["a"]}));
        s.set_node("b", &json!([1, {"x": null}]));
        s.push_loop(&json!({"sku": "X"}), 2);
        let cases = [
            "nodes",
            "nodes | length",
            "nodes | list",
            "nodes | tojson",
            "nodes | dictsort",
            "nodes.items() | list",
            "nodes | reverse | list",
            "nodes is mapping",
            "'calc' in nodes",
            "nodes == nodes",
            "nodes.calc",
            "nodes['b'][1]",
            "nodes.calc.tags[0]",
            "nodes.missing",
            "loop",
            "loop | tojson",
            "loop.item.sku",
            "vars",
            "vars | length",
            "trigger.body.items[1]",
            "trigger.body.items.x",
            "vars.none.x",
            "vars.order_id.x",
        ];
        for source in cases {
            let mut b = TemplateBuilder::new();
            let expr = b.expr(source).expect("compiles").value;
            let t = b.finish();
            let lazy = t.eval_named(&expr.name, s.context()).and_then(to_json);
            let eager = t
                .eval_named(&expr.name, eager_context(&s))
                .and_then(to_json);
            assert_eq!(lazy, eager, "{source}");
        }
    }

    #[test]
    fn entries_convert_only_when_read() {
        let mut b = TemplateBuilder::new();
        let by_lookup = b.expr("vars.order_id == \"A1\"").expect("compiles").value;
        let by_engine = b.expr("vars.n + 1").expect("compiles").value;
        let t = b.finish();
        let s = scope();
        let converted = |name: &str| s.data.entries[name].value.get().is_some();
        assert!(t.truth(&by_lookup, &s).expect("evaluates"));
        assert!(!converted("vars") && !converted("trigger"));
        assert_eq!(t.eval(&by_engine, &s).expect("evaluates"), json!(4));
        assert!(converted("vars") && !converted("trigger"));
    }

    #[test]
    fn node_results_set_later_are_seen() {
        let mut b = TemplateBuilder::new();
        let c = b.text("{{ nodes.a.v + 1 }}").expect("compiles").value;
        let t = b.finish();
        let mut s = scope();
        assert!(t.eval_text(&c, &s).is_err());
        let branch = s.clone();
        s.set_node("a", &json!({"v": 1}));
        assert_eq!(t.eval_text(&c, &s).expect("evaluates"), json!(2));
        s.set_node("a", &json!({"v": 5}));
        assert_eq!(t.eval_text(&c, &s).expect("evaluates"), json!(6));
        assert!(t.eval_text(&c, &branch).is_err());
    }

    #[test]
    fn typed_single_expressions_keep_their_type() {
        check("{{ vars.n }}", Ok(json!(3)));
        check("{{ vars.amount }}", Ok(json!(12.5)));
        check("{{ vars.flag }}", Ok(json!(true)));
        check("{{ vars.none }}", Ok(json!(null)));
        check("{{ trigger.body.items }}", Ok(json!([1, 2])));
        check(
            "{{ trigger.body }}",
            Ok(json!({"status": "SUCCESS", "items": [1, 2]})),
        );
        check("{{ vars.n + 1 }}", Ok(json!(4)));
    }

    #[test]
    fn text_templates_render_strings() {
        check("order {{ vars.order_id }}", Ok(json!("order A1")));
        check("plain", Ok(json!("plain")));
        check("{{ vars.flag }} and {{ vars.n }}", Ok(json!("true and 3")));
        check(
            "{% if vars.flag %}yes{% else %}no{% endif %}",
            Ok(json!("yes")),
        );
        check("x{{ trigger.body.items }}", Ok(json!("x[1,2]")));
        check("<{{ '&' }}>", Ok(json!("<&>")));
    }

    #[test]
    fn undefined_is_an_error_not_empty() {
        check("{{ vars.missing }}", Err("undefined"));
        check("id {{ vars.missing }}", Err("undefined"));
        check("{{ nope.x }}", Err("undefined"));
    }

    #[test]
    fn compile_errors_are_reported() {
        check("{{ vars. }}", Err("syntax error"));
        check("{% if %}", Err("syntax error"));
        check("{{ 1 + }} x", Err("syntax error"));
    }

    #[test]
    fn runaway_templates_stop() {
        check(
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            Err("fuel"),
        );
    }

    #[test]
    fn expressions_and_refs() {
        let mut b = TemplateBuilder::new();
        let c = b
            .expr("vars.order_id and trigger.body.status == \"SUCCESS\"")
            .expect("compiles");
        assert!(c.refs.contains("vars.order_id"), "{:?}", c.refs);
        assert!(c.refs.contains("trigger.body.status"), "{:?}", c.refs);
        let t = b.finish();
        assert!(t.truth(&c.value, &scope()).expect("evaluates"));
    }

    #[test]
    fn values_render_member_by_member() {
        let mut b = TemplateBuilder::new();
        let c = b
            .value(&json!({"code": "SUCCESS", "order": "{{ vars.order_id }}", "n": ["{{ vars.n }}", 2], "fixed": {"a": 1}}))
            .expect("compiles");
        let t = b.finish();
        let out = t.eval_value(&c.value, &scope()).expect("renders");
        assert_eq!(
            out,
            json!({"code": "SUCCESS", "order": "A1", "n": [3, 2], "fixed": {"a": 1}})
        );
        let mut b = TemplateBuilder::new();
        let err = b.value(&json!({"a": [1, "{{ x. }}"]})).expect_err("bad");
        assert_eq!(err.0, vec!["a".to_string(), "1".to_string()]);
    }

    #[test]
    fn loop_scope_and_now() {
        let mut b = TemplateBuilder::new();
        let c = b
            .text("{{ loop.item }}-{{ loop.index }}-{{ now[:2] }}")
            .expect("compiles");
        let t = b.finish();
        let mut s = scope();
        s.push_loop(&json!("a"), 0);
        s.push_loop(&json!("b"), 1);
        assert_eq!(t.render(&c.value, &s).expect("renders"), "b-1-20");
        s.clear_loops();
        s.push_loop(&json!("a"), 0);
        assert_eq!(t.render(&c.value, &s).expect("renders"), "a-0-20");
    }
}
