//! Turns a [`WorkflowDef`] into a runnable [`Workflow`], collecting every
//! problem (with its position in the file) instead of stopping at the first.
//!
//! This file holds the entry point, the defaults and the compiler's context
//! with its diagnostic and template helpers; the parts of a workflow are
//! compiled in `trigger`, `nodes` and `request`.

use crate::def::*;
use crate::diag::{Diagnostic, Severity};
use crate::recover::Skipped;
use crate::runtime::*;
use crate::template::{CompileError, Compiled, Expr, TemplateBuilder, Text, ValueTemplate};
use crate::yaml::{Seg, Yaml};
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

mod answers;
mod blocks;
mod nodes;
mod request;
mod trigger;
mod uses;

use uses::Written;

pub use trigger::{default_alias, valid_pinned_key};

/// Default body limit: 1 MiB.
pub const DEFAULT_MAX_BODY: u64 = 1024 * 1024;
/// Default whole-run deadline of sync workflows.
pub const DEFAULT_SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// Default per-try timeout of request nodes.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default first retry delay of request nodes.
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(500);
/// Most tries a request node's `retry.attempts` may ask for: enough for any
/// retry policy a webhook needs (with the 500ms doubling backoff capped at
/// 30s, 100 tries wait about 47 minutes between them), few enough that a typo (`4294967295`)
/// cannot keep a run, or `hookflow test` with a failing stub, going for ever.
pub const MAX_ATTEMPTS: u32 = 100;
/// Default loop limit.
pub const DEFAULT_MAX_ITERATIONS: u64 = 10_000;
/// Default idempotency key lifetime.
pub const DEFAULT_IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);
/// HTTP methods a request node may use.
pub const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// What the compiler needs besides the definition.
pub struct Source<'a> {
    /// Workflow id.
    pub id: &'a str,
    /// File path, for diagnostics.
    pub path: &'a Path,
    /// File text.
    pub text: &'a str,
    /// The positioned tree the definition was read from.
    pub tree: &'a Yaml,
    /// What earlier errors of the file leave unchecked.
    pub skipped: &'a Skipped,
}

/// Compiles a definition. Returns the workflow when there is no error, and
/// every diagnostic found either way.
pub fn compile(def: &WorkflowDef, src: &Source<'_>) -> (Option<Workflow>, Vec<Diagnostic>) {
    let mut cx = Cx {
        src,
        diags: Vec::new(),
        templates: TemplateBuilder::new(),
        declared_secrets: def.secrets.iter().cloned().collect(),
        all_keys: BTreeSet::new(),
        seen_keys: BTreeMap::new(),
        nodes: Vec::new(),
        blocks: Vec::new(),
        mode: def.trigger.mode,
        parallel_depth: 0,
        loop_depth: 0,
        vars: (!src.skipped.vars).then(|| trigger::aliases(&def.trigger.parse)),
    };
    collect_keys(&def.nodes, &mut cx.all_keys);
    for (i, name) in def.secrets.iter().enumerate() {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            cx.error_at_value(
                &p(&["secrets"]).index(i),
                format!(
                    "secret name `{name}` must be an environment variable name ([A-Za-z0-9_]+)"
                ),
            );
        }
    }
    let trigger = cx.trigger(&def.trigger);
    let timeout = match (def.options.timeout, def.trigger.mode) {
        (Some(t), _) => Some(t.0),
        (None, Mode::Sync) => Some(DEFAULT_SYNC_TIMEOUT),
        (None, Mode::Async) => None,
    };
    if timeout == Some(Duration::ZERO) {
        cx.error_at_value(
            &p(&["options", "timeout"]),
            "timeout must be longer than zero".into(),
        );
    }
    let mut visible = Vec::new();
    let root = cx.block(&def.nodes, p(&["nodes"]), &mut visible);
    debug_assert_eq!(root, ROOT_BLOCK);
    if def.trigger.mode == Mode::Sync && !src.skipped.mode {
        cx.unanswered_paths(&def.nodes);
    }
    let Cx {
        diags,
        templates,
        nodes,
        blocks,
        ..
    } = cx;
    if diags.iter().any(Diagnostic::is_error) {
        return (None, diags);
    }
    // Exact sizes: with thousands of workflows loaded, the spare room
    // vectors keep after growing adds up.
    let mut nodes = nodes;
    nodes.shrink_to_fit();
    let mut blocks = blocks;
    for block in &mut blocks {
        block.shrink_to_fit();
    }
    blocks.shrink_to_fit();
    let mut trigger = trigger;
    trigger.shrink_to_fit();
    let workflow = Workflow {
        id: src.id.to_string(),
        version: content_hash(src.text.as_bytes()),
        path: src.path.to_path_buf(),
        title: def.title.clone(),
        description: def.description.clone(),
        enabled: def.enabled,
        mode: def.trigger.mode,
        secrets: def.secrets.clone(),
        timeout,
        trigger,
        nodes,
        blocks,
        templates: templates.finish(),
        version_kept: std::sync::atomic::AtomicBool::new(false),
    };
    (Some(workflow), diags)
}

fn collect_keys(defs: &[NodeDef], out: &mut BTreeSet<String>) {
    for def in defs {
        if let Some(k) = def.common().key {
            out.insert(k.to_string());
        }
        for block in child_blocks(def) {
            collect_keys(block, out);
        }
    }
}

fn child_blocks(def: &NodeDef) -> Vec<&[NodeDef]> {
    match def {
        NodeDef::Condition(c) => c
            .then
            .iter()
            .chain(c.otherwise.iter())
            .map(Vec::as_slice)
            .collect(),
        NodeDef::Switch(s) => s
            .cases
            .iter()
            .map(|c| c.body.as_slice())
            .chain(s.default.as_deref())
            .collect(),
        NodeDef::Loop(l) => vec![l.body.as_slice()],
        NodeDef::Parallel(par) => par.branches.iter().map(Vec::as_slice).collect(),
        _ => Vec::new(),
    }
}

/// A path into the file, built with small helpers: each step shares the
/// path it extends (a key is one small allocation, not a copy of every
/// segment before it; compile makes one per field it reads). The segments
/// are laid out ([`P::segs`]) only to look a position up.
#[derive(Clone, Debug, Default, PartialEq)]
struct P(Option<std::rc::Rc<Step>>);

#[derive(Debug, PartialEq)]
struct Step {
    parent: P,
    seg: Seg,
}

fn p(keys: &[&str]) -> P {
    keys.iter().fold(P::default(), |path, k| path.key(k))
}

impl P {
    fn then(&self, seg: Seg) -> P {
        P(Some(std::rc::Rc::new(Step {
            parent: self.clone(),
            seg,
        })))
    }
    fn key(&self, k: &str) -> P {
        self.then(Seg::from(k))
    }
    fn index(&self, i: usize) -> P {
        self.then(Seg::Index(i))
    }
    /// The segments, from the root.
    fn segs(&self) -> Vec<Seg> {
        let mut out = Vec::new();
        let mut at = &self.0;
        while let Some(step) = at {
            out.push(step.seg.clone());
            at = &step.parent.0;
        }
        out.reverse();
        out
    }
}

struct Cx<'a> {
    src: &'a Source<'a>,
    diags: Vec<Diagnostic>,
    templates: TemplateBuilder,
    declared_secrets: BTreeSet<String>,
    all_keys: BTreeSet<String>,
    seen_keys: BTreeMap<String, P>,
    nodes: Vec<Node>,
    blocks: Vec<Vec<NodeId>>,
    mode: Mode,
    /// How many parallel nodes enclose the node being compiled.
    parallel_depth: usize,
    /// How many loops enclose the node being compiled (`loop` is set there).
    loop_depth: usize,
    /// The `vars` the parse entries define; `None` when they cannot be known.
    vars: Option<BTreeSet<String>>,
}

impl Cx<'_> {
    fn push(&mut self, pos: crate::yaml::Pos, message: String) {
        self.push_as(pos, Severity::Error, message);
    }

    fn push_as(&mut self, pos: crate::yaml::Pos, severity: Severity, message: String) {
        self.diags.push(Diagnostic {
            file: self.src.path.to_path_buf(),
            line: pos.line,
            column: pos.column,
            severity,
            message,
        });
    }

    /// A warning pointing at a field's value (the workflow still loads).
    fn warning_at_value(&mut self, path: &P, message: String) {
        let pos = self.src.tree.locate_value(&path.segs());
        self.push_as(pos, Severity::Warning, message);
    }

    /// An error pointing at a field's key.
    fn error_at_key(&mut self, path: &P, message: String) {
        let pos = self.src.tree.locate(&path.segs());
        self.push(pos, message);
    }

    /// An error pointing at a field's value.
    fn error_at_value(&mut self, path: &P, message: String) {
        let pos = self.src.tree.locate_value(&path.segs());
        self.push(pos, message);
    }

    /// A template's compile error `e` at its line when the value at `path`
    /// is a block scalar, at the value otherwise. `expr`: the value is an
    /// expression, not a text.
    fn error_in_template(&mut self, path: &P, e: &CompileError, expr: bool, message: String) {
        let pos = self.src.tree.locate_value(&path.segs());
        let at = match blocks::folded(self.src.text, pos) {
            Some((first, written)) => {
                let again = if expr {
                    self.templates.expr(&written).err()
                } else {
                    self.templates.text(&written).err()
                };
                again
                    .and_then(|e| e.line)
                    .and_then(|l| blocks::content_pos(self.src.text, first + l.checked_sub(1)?))
            }
            None => e
                .line
                .and_then(|l| blocks::literal_line(self.src.text, pos, l)),
        };
        self.push(at.unwrap_or(pos), message);
    }

    /// Checks the variables a template reads: declared secrets, and nodes
    /// that can have run; each problem at the place of the name in what is
    /// `written` at `path`.
    fn check_refs(
        &mut self,
        path: &P,
        written: Written<'_>,
        refs: &BTreeSet<String>,
        visible: &[String],
    ) {
        for r in refs {
            self.check_root(path, written, r);
            let mut parts = r.split('.');
            match (parts.next(), parts.next()) {
                (Some("secrets"), Some(name))
                    if !self.declared_secrets.contains(name) && !self.src.skipped.secrets =>
                {
                    let pos = self.ref_pos(path, written, &format!("secrets.{name}"));
                    self.push(
                        pos,
                        format!("`secrets.{name}` is used but not declared in `secrets`"),
                    );
                }
                (Some("nodes"), Some(key)) if !visible.iter().any(|k| k == key) => {
                    let message = if self.all_keys.contains(key) {
                        format!(
                            "`nodes.{key}` refers to a node that cannot have run before this point; \
                             move `{key}` before this node (a node inside a branch is read after \
                             that branch, guarded by `nodes.{key} is defined`)"
                        )
                    } else {
                        let close = crate::suggest::close_names(
                            key,
                            self.all_keys.iter().map(String::as_str),
                        );
                        format!(
                            "`nodes.{key}` refers to no node: no node has the key `{key}`{}",
                            crate::suggest::did_you_mean(&close, "nodes.")
                        )
                    };
                    let pos = self.ref_pos(path, written, &format!("nodes.{key}"));
                    self.push(pos, message);
                }
                _ => {}
            }
        }
    }

    /// Warns when a template reads a variable that is never set: a root
    /// other than those a run has (`trigger.bdoy` works, `trigge.body`
    /// never does), or `loop` outside a loop's nodes. Warnings: `is
    /// defined` and `default` make such a read legal, if useless.
    fn check_root(&mut self, path: &P, written: Written<'_>, read: &str) {
        const ROOTS: [&str; 7] = [
            "trigger",
            "vars",
            "nodes",
            "loop",
            "execution",
            "secrets",
            "now",
        ];
        let root = read.split('.').next().unwrap_or(read);
        let message = match root {
            "loop" if self.loop_depth == 0 => format!(
                "`{read}` is read outside a loop: `loop` is set only in the nodes of a \
                 loop's `do`, so it is undefined here"
            ),
            _ if ROOTS.contains(&root) || self.templates.is_global(root) => return,
            _ => {
                let close = crate::suggest::close_names(root, ROOTS.iter().copied());
                format!(
                    "`{root}` is not a variable of a run, so it is undefined here (a template \
                     reads trigger, vars, nodes, loop, execution, secrets and now){}",
                    crate::suggest::did_you_mean(&close, "")
                )
            }
        };
        let pos = self.ref_pos(path, written, root);
        self.push_as(pos, Severity::Warning, message);
    }

    fn text(&mut self, path: &P, source: &str, visible: &[String]) -> Option<Text> {
        match self.templates.text(source) {
            Ok(Compiled { value, refs }) => {
                self.check_refs(path, Written::Text(source), &refs, visible);
                self.check_uses(path, source, false, &refs);
                Some(value)
            }
            Err(e) => {
                let message = format!("template does not compile: {e}{}", syntax_hint(&e));
                self.error_in_template(path, &e, false, message);
                None
            }
        }
    }

    fn expr(&mut self, path: &P, source: &str, visible: &[String]) -> Option<Expr> {
        let trimmed = source.trim();
        if trimmed.starts_with("{{") && trimmed.ends_with("}}") {
            self.error_at_value(path, "an expression is written without `{{ }}`".into());
            return None;
        }
        match self.templates.expr(source) {
            Ok(Compiled { value, refs }) => {
                self.check_refs(path, Written::Text(source), &refs, visible);
                self.check_uses(path, source, true, &refs);
                Some(value)
            }
            Err(e) => {
                let message = format!("expression does not compile: {e}{}", syntax_hint(&e));
                self.error_in_template(path, &e, true, message);
                None
            }
        }
    }

    fn value(&mut self, path: &P, value: &Json, visible: &[String]) -> Option<ValueTemplate> {
        match self.templates.value(value) {
            Ok(Compiled {
                value: compiled,
                refs,
            }) => {
                self.check_refs(path, Written::Value(value), &refs, visible);
                self.check_value_uses(path, value, &refs);
                Some(compiled)
            }
            Err((sub, e)) => {
                let mut at = path.clone();
                for s in sub {
                    at = match s.parse::<usize>() {
                        Ok(i)
                            if matches!(
                                self.src.tree.get(&at.segs()).map(|n| &n.kind),
                                Some(crate::yaml::YamlKind::Seq(_))
                            ) =>
                        {
                            at.index(i)
                        }
                        _ => at.key(&s),
                    };
                }
                self.error_at_value(&at, format!("template does not compile: {e}"));
                None
            }
        }
    }
}

/// How to fix a template's syntax error, in hookflow's words (the
/// engine's name the token it stopped at).
fn syntax_hint(e: &crate::template::CompileError) -> &'static str {
    let m = e.message.as_str();
    if !m.starts_with("syntax error") {
        ""
    } else if m.contains("end of variable block") {
        "; the expression stops short of its end (`{{ 1 + }}`), or a `{{` is not closed: \
         end it with `}}`"
    } else if m.contains("end of block") {
        "; a `{%` is not closed with `%}`, or an `{% if %}` or `{% for %}` has no \
         `{% endif %}` or `{% endfor %}`"
    } else if m.contains("unknown statement") {
        "; an `{% endif %}`, `{% endfor %}` or `{% else %}` has no `{% if %}` or `{% for %}` \
         before it"
    } else {
        "; check the `{{ }}` and `{% %}` around the token it names"
    }
}
