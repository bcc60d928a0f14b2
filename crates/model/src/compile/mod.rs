//! Turns a [`WorkflowDef`] into a runnable [`Workflow`], collecting every
//! problem (with its position in the file) instead of stopping at the first.

use crate::def::*;
use crate::diag::{Diagnostic, Severity};
use crate::path::{JsonPath, KeyPath, Step};
use crate::runtime::*;
use crate::template::{Compiled, Expr, TemplateBuilder, Text, ValueTemplate};
use crate::yaml::{Seg, Yaml};
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Default body limit: 1 MiB.
pub const DEFAULT_MAX_BODY: u64 = 1024 * 1024;
/// Default whole-run deadline of sync workflows.
pub const DEFAULT_SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// Default per-try timeout of request nodes.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default first retry delay of request nodes.
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(500);
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
    /// The positioned tree of the file.
    pub tree: &'a Yaml,
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
    let keys = nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| n.key.clone().map(|k| (k, i)))
        .collect();
    let workflow = Workflow {
        id: src.id.to_string(),
        version: content_hash(src.text.as_bytes()),
        source: Arc::from(src.text),
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
        keys,
        templates: templates.finish(),
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

/// A path into the file, built with small helpers.
#[derive(Clone, Debug, Default)]
struct P(Vec<Seg>);

fn p(keys: &[&str]) -> P {
    P(keys.iter().map(|k| Seg::from(*k)).collect())
}

impl P {
    fn key(&self, k: &str) -> P {
        let mut v = self.0.clone();
        v.push(Seg::from(k));
        P(v)
    }
    fn index(&self, i: usize) -> P {
        let mut v = self.0.clone();
        v.push(Seg::Index(i));
        P(v)
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
}

impl Cx<'_> {
    fn push(&mut self, pos: crate::yaml::Pos, message: String) {
        self.diags.push(Diagnostic {
            file: self.src.path.to_path_buf(),
            line: pos.line,
            column: pos.column,
            severity: Severity::Error,
            message,
        });
    }

    /// An error pointing at a field's key.
    fn error_at_key(&mut self, path: &P, message: String) {
        let pos = self.src.tree.locate(&path.0);
        self.push(pos, message);
    }

    /// An error pointing at a field's value.
    fn error_at_value(&mut self, path: &P, message: String) {
        let pos = self.src.tree.locate_value(&path.0);
        self.push(pos, message);
    }

    /// Checks the variables a template reads: declared secrets, and nodes that can have run.
    fn check_refs(&mut self, path: &P, refs: &BTreeSet<String>, visible: &[String]) {
        for r in refs {
            let mut parts = r.split('.');
            match (parts.next(), parts.next()) {
                (Some("secrets"), Some(name)) if !self.declared_secrets.contains(name) => {
                    self.error_at_value(
                        path,
                        format!("`secrets.{name}` is used but not declared in `secrets`"),
                    );
                }
                (Some("nodes"), Some(key)) if !visible.iter().any(|k| k == key) => {
                    let message = if self.all_keys.contains(key) {
                        format!(
                            "`nodes.{key}` refers to a node that cannot have run before this point"
                        )
                    } else {
                        format!("`nodes.{key}` refers to no node: no node has the key `{key}`")
                    };
                    self.error_at_value(path, message);
                }
                _ => {}
            }
        }
    }

    fn text(&mut self, path: &P, source: &str, visible: &[String]) -> Option<Text> {
        match self.templates.text(source) {
            Ok(Compiled { value, refs }) => {
                self.check_refs(path, &refs, visible);
                Some(value)
            }
            Err(e) => {
                self.error_at_value(path, format!("template does not compile: {e}"));
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
                self.check_refs(path, &refs, visible);
                Some(value)
            }
            Err(e) => {
                self.error_at_value(path, format!("expression does not compile: {e}"));
                None
            }
        }
    }

    fn value(&mut self, path: &P, value: &Json, visible: &[String]) -> Option<ValueTemplate> {
        match self.templates.value(value) {
            Ok(Compiled { value, refs }) => {
                self.check_refs(path, &refs, visible);
                Some(value)
            }
            Err((sub, e)) => {
                let mut at = path.clone();
                for s in sub {
                    at = match s.parse::<usize>() {
                        Ok(i)
                            if matches!(
                                self.src.tree.get(&at.0).map(|n| &n.kind),
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

    fn status(&mut self, path: &P, status: Option<&Json>, visible: &[String]) -> ValueTemplate {
        match status {
            None => ValueTemplate::Literal(Json::from(200)),
            Some(Json::Number(n)) => {
                if !n.as_u64().is_some_and(|s| (100..=599).contains(&s)) {
                    self.error_at_value(
                        path,
                        format!("status must be an HTTP status code from 100 to 599, not {n}"),
                    );
                }
                ValueTemplate::Literal(Json::Number(n.clone()))
            }
            Some(Json::String(s)) if crate::template::has_template_syntax(s) => self
                .text(path, s, visible)
                .map(ValueTemplate::Text)
                .unwrap_or(ValueTemplate::Literal(Json::Null)),
            Some(Json::String(s)) => match s.trim().parse::<u16>() {
                Ok(code) if (100..=599).contains(&code) => ValueTemplate::Literal(Json::from(code)),
                _ => {
                    self.error_at_value(
                        path,
                        format!("status must be an HTTP status code from 100 to 599, not `{s}`"),
                    );
                    ValueTemplate::Literal(Json::Null)
                }
            },
            Some(other) => {
                self.error_at_value(path, format!("status must be a number, not {other}"));
                ValueTemplate::Literal(Json::Null)
            }
        }
    }

    fn headers(
        &mut self,
        path: &P,
        headers: &BTreeMap<String, String>,
        visible: &[String],
    ) -> Vec<(String, Text)> {
        let mut out = Vec::new();
        for (name, value) in headers {
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !valid {
                self.error_at_key(
                    &path.key(name),
                    format!("`{name}` is not a valid header name"),
                );
                continue;
            }
            if let Some(t) = self.text(&path.key(name), value, visible) {
                out.push((name.clone(), t));
            }
        }
        out
    }

    fn response(&mut self, path: &P, r: &ResponseDef, visible: &[String]) -> ResponseSpec {
        let status = self.status(&path.key("status"), r.status.as_ref(), visible);
        let headers = self.headers(&path.key("headers"), &r.headers, visible);
        let body = r
            .body
            .as_ref()
            .and_then(|b| self.value(&path.key("body"), b, visible));
        ResponseSpec {
            status,
            headers,
            body,
        }
    }

    fn trigger(&mut self, t: &TriggerDef) -> Trigger {
        let tp = p(&["trigger"]);
        let none: &[String] = &[];
        if let Some(key) = &t.key {
            if !valid_pinned_key(key) {
                self.error_at_value(
                    &tp.key("key"),
                    format!("pinned key `{key}` must match [A-Za-z0-9_-]{{8,128}}"),
                );
            }
        }
        let basic_auth = t.auth.as_ref().and_then(|a| {
            let ap = tp.key("auth").key("basic");
            let username = self.text(&ap.key("username"), &a.basic.username, none);
            let password = self.text(&ap.key("password"), &a.basic.password, none);
            Some(BasicAuth {
                username: username?,
                password: password?,
            })
        });
        let parse = self.parse_spec(&tp.key("parse"), &t.parse);
        let response = match (&t.response, t.mode) {
            (Some(_), Mode::Sync) => {
                self.error_at_key(&tp.key("response"), "`trigger.response` is for async workflows; a sync workflow answers with a `response` node".into());
                None
            }
            (Some(r), Mode::Async) => Some(self.response(&tp.key("response"), r, none)),
            (None, _) => None,
        };
        let timeout_response = match (&t.timeout_response, t.mode) {
            (Some(_), Mode::Async) => {
                self.error_at_key(
                    &tp.key("timeout_response"),
                    "`trigger.timeout_response` is for sync workflows".into(),
                );
                None
            }
            (Some(r), Mode::Sync) => Some(self.response(&tp.key("timeout_response"), r, none)),
            (None, _) => None,
        };
        let verify = t.verify.as_ref().map(|v| self.verify(&tp.key("verify"), v));
        let idempotency = t.idempotency.as_ref().and_then(|i| {
            let ip = tp.key("idempotency");
            let key = self.text(&ip.key("key"), &i.key, none)?;
            let ttl = i.ttl.map(|d| d.0).unwrap_or(DEFAULT_IDEMPOTENCY_TTL);
            if ttl.is_zero() {
                self.error_at_value(&ip.key("ttl"), "ttl must be longer than zero".into());
            }
            Some(Idempotency { key, ttl })
        });
        let max_body = t.max_body.map(|s| s.0).unwrap_or(DEFAULT_MAX_BODY);
        if max_body == 0 {
            self.error_at_value(
                &tp.key("max_body"),
                "max_body must be at least 1 byte".into(),
            );
        }
        Trigger {
            pinned_key: t.key.clone(),
            basic_auth,
            max_body,
            parse,
            response,
            timeout_response,
            verify,
            idempotency,
        }
    }

    fn verify(&mut self, path: &P, v: &VerifyDef) -> Verify {
        let none: &[String] = &[];
        let mut fields: Vec<(&'static str, Option<&String>)> = Vec::new();
        match v {
            VerifyDef::Hmac(h) => {
                fields.push(("secret", Some(&h.secret)));
                fields.push(("payload", h.payload.as_ref()));
            }
            VerifyDef::StandardWebhooks(s) | VerifyDef::Stripe(s) | VerifyDef::Slack(s) => {
                fields.push(("secret", Some(&s.secret)))
            }
            VerifyDef::Github(s) | VerifyDef::Shopify(s) => {
                fields.push(("secret", Some(&s.secret)))
            }
            VerifyDef::Feishu(f) => {
                fields.push(("token", Some(&f.token)));
                fields.push(("encrypt_key", f.encrypt_key.as_ref()));
            }
            VerifyDef::WechatpayV3(w) => {
                fields.push(("public_key", Some(&w.public_key)));
                fields.push(("api_v3_key", Some(&w.api_v3_key)));
            }
            VerifyDef::Alipay(a) => fields.push(("public_key", Some(&a.public_key))),
        }
        let mut texts = BTreeMap::new();
        for (name, value) in fields {
            if let Some(value) = value {
                if let Some(t) = self.text(&path.key(name), value, none) {
                    texts.insert(name, t);
                }
            }
        }
        Verify {
            preset: v.clone(),
            texts,
        }
    }

    fn parse_spec(&mut self, path: &P, def: &ParseDef) -> ParseSpec {
        let mut aliases: BTreeMap<String, P> = BTreeMap::new();
        let mut spec = ParseSpec::default();
        for (part, entries) in [
            ("headers", &def.headers),
            ("query", &def.query),
            ("body", &def.body),
        ] {
            for (i, e) in entries.iter().enumerate() {
                let ep = path.key(part).index(i);
                let Some(entry) = self.parse_entry(&ep, part, e) else {
                    continue;
                };
                if let Some(first) = aliases.get(&entry.alias) {
                    let first_pos = self.src.tree.locate(&first.0);
                    self.error_at_value(
                        &ep,
                        format!("alias `{}` is already used on line {}; each parse entry needs its own alias", entry.alias, first_pos.line),
                    );
                    continue;
                }
                aliases.insert(entry.alias.clone(), ep);
                match part {
                    "headers" => spec.headers.push(entry),
                    "query" => spec.query.push(entry),
                    _ => spec.body.push(entry),
                }
            }
        }
        spec
    }

    fn parse_entry(&mut self, path: &P, part: &str, e: &ParseEntryDef) -> Option<ParseEntry> {
        let is_jsonpath = e.key.starts_with('$');
        let key_path = if part == "headers" {
            if is_jsonpath || e.key.is_empty() {
                self.error_at_value(
                    &path.key("key"),
                    format!("`{}` is not a header name", e.key),
                );
                return None;
            }
            KeyPath::Dotted(vec![Step::Key(e.key.to_ascii_lowercase())])
        } else {
            match KeyPath::parse(&e.key) {
                Ok(k) => k,
                Err(message) => {
                    self.error_at_value(&path.key("key"), message);
                    return None;
                }
            }
        };
        let alias = match &e.alias {
            Some(a) => {
                if !valid_alias(a) {
                    self.error_at_value(
                        &path.key("alias"),
                        format!("alias `{a}` must be a variable name ([A-Za-z_][A-Za-z0-9_]*)"),
                    );
                    return None;
                }
                a.clone()
            }
            None if is_jsonpath => {
                self.error_at_value(
                    &path.key("key"),
                    format!("a JSONPath key (`{}`) needs an explicit `alias`", e.key),
                );
                return None;
            }
            None => default_alias(&e.key),
        };
        if e.required && e.default.is_some() {
            self.error_at_key(
                &path.key("default"),
                "a `required` entry cannot have a `default`".into(),
            );
        }
        Some(ParseEntry {
            key: e.key.clone(),
            path: key_path,
            alias,
            value_type: e.value_type,
            required: e.required,
            default: e.default.clone(),
        })
    }

    /// Compiles a list of nodes into a new block; `visible` holds the keys of
    /// nodes that can have run before the block starts and grows as it goes.
    fn block(&mut self, defs: &[NodeDef], path: P, visible: &mut Vec<String>) -> BlockId {
        let id = self.blocks.len();
        self.blocks.push(Vec::new());
        let mut ids = Vec::with_capacity(defs.len());
        for (i, def) in defs.iter().enumerate() {
            if let Some(nid) = self.node(def, path.index(i), visible) {
                ids.push(nid);
            }
        }
        self.blocks[id] = ids;
        id
    }

    /// Compiles nested blocks that each start from `visible`; afterwards the
    /// keys of all of them may have run.
    fn branches<'d>(
        &mut self,
        blocks: impl IntoIterator<Item = (&'d [NodeDef], P)>,
        visible: &mut Vec<String>,
        inner: &[String],
    ) -> Vec<BlockId> {
        let mut out = Vec::new();
        let mut after = visible.clone();
        for (defs, path) in blocks {
            let mut v = visible.clone();
            v.extend(inner.iter().cloned());
            out.push(self.block(defs, path, &mut v));
            for k in v {
                if !after.contains(&k) {
                    after.push(k);
                }
            }
        }
        *visible = after;
        out
    }

    fn node(&mut self, def: &NodeDef, path: P, visible: &mut Vec<String>) -> Option<NodeId> {
        let common = def.common();
        if let Some(key) = common.key {
            if key.is_empty()
                || !key
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                self.error_at_value(
                    &path.key("key"),
                    format!("node key `{key}` must match [a-z0-9_]+"),
                );
            } else if let Some(first) = self.seen_keys.get(key) {
                let first_line = self.src.tree.locate_value(&first.key("key").0).line;
                self.error_at_value(
                    &path.key("key"),
                    format!("duplicate node key `{key}` (first used on line {first_line})"),
                );
            } else {
                self.seen_keys.insert(key.to_string(), path.clone());
            }
        }
        let id = self.nodes.len();
        // Reserve the slot so ids follow document order (pre-order).
        self.nodes.push(Node {
            key: common.key.map(str::to_string),
            title: common.title.map(str::to_string),
            on_error: common.on_error,
            kind: NodeKind::Log {
                message: Text::Literal(String::new()),
                level: LogLevel::Info,
            },
        });
        let own: Vec<String> = common.key.map(str::to_string).into_iter().collect();
        let kind = self.node_kind(def, &path, visible, &own);
        if let Some(k) = common.key {
            if !visible.iter().any(|v| v == k) {
                visible.push(k.to_string());
            }
        }
        match kind {
            Some(kind) => {
                self.nodes[id].kind = kind;
                Some(id)
            }
            None => Some(id),
        }
    }

    fn node_kind(
        &mut self,
        def: &NodeDef,
        path: &P,
        visible: &mut Vec<String>,
        own: &[String],
    ) -> Option<NodeKind> {
        let none: &[String] = &[];
        Some(match def {
            NodeDef::Condition(c) => {
                let test = self.expr(&path.key("if"), &c.test, visible);
                if c.then.is_none() && c.otherwise.is_none() && !c.reject_on_false {
                    self.error_at_key(
                        path,
                        "a condition needs `then`, `else`, or `reject_on_false: true`".into(),
                    );
                }
                if c.reject_on_false && (c.then.is_some() || c.otherwise.is_some()) {
                    self.error_at_key(
                        &path.key("reject_on_false"),
                        "`reject_on_false` cannot be combined with `then` or `else`".into(),
                    );
                }
                let mut blocks = Vec::new();
                if let Some(t) = &c.then {
                    blocks.push((t.as_slice(), path.key("then")));
                }
                if let Some(e) = &c.otherwise {
                    blocks.push((e.as_slice(), path.key("else")));
                }
                let ids = self.branches(blocks, visible, own);
                let mut ids = ids.into_iter();
                let then = c.then.as_ref().and_then(|_| ids.next());
                let otherwise = c.otherwise.as_ref().and_then(|_| ids.next());
                NodeKind::Condition {
                    test: test?,
                    then,
                    otherwise,
                    reject_on_false: c.reject_on_false,
                }
            }
            NodeDef::Switch(s) => {
                if s.cases.is_empty() {
                    self.error_at_key(
                        &path.key("cases"),
                        "a switch needs at least one case".into(),
                    );
                }
                let tests: Vec<Option<Expr>> = s
                    .cases
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        self.expr(&path.key("cases").index(i).key("if"), &c.test, visible)
                    })
                    .collect();
                let mut blocks: Vec<(&[NodeDef], P)> = s
                    .cases
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.body.as_slice(), path.key("cases").index(i).key("do")))
                    .collect();
                if let Some(d) = &s.default {
                    blocks.push((d.as_slice(), path.key("default")));
                }
                let mut ids = self.branches(blocks, visible, own).into_iter();
                let mut cases = Vec::new();
                for t in tests {
                    let b = ids.next()?;
                    cases.push((t?, b));
                }
                NodeKind::Switch {
                    cases,
                    default: ids.next(),
                }
            }
            NodeDef::Calculation(c) => NodeKind::Calculation {
                expression: self.expr(&path.key("expression"), &c.expression, visible)?,
            },
            NodeDef::JsonQuery(q) => {
                let source = self.value(&path.key("source"), &q.source, visible);
                let jp = match JsonPath::parse(&q.path) {
                    Ok(jp) => Some(jp),
                    Err(m) => {
                        self.error_at_value(&path.key("path"), m);
                        None
                    }
                };
                NodeKind::JsonQuery {
                    source: source?,
                    path: jp?,
                    first: q.first,
                }
            }
            NodeDef::Request(r) => NodeKind::Request(Box::new(self.request(path, r, visible)?)),
            NodeDef::Loop(l) => {
                let over = self.expr(&path.key("over"), &l.over, visible);
                if l.max_iterations == Some(0) {
                    self.error_at_value(
                        &path.key("max_iterations"),
                        "max_iterations must be at least 1".into(),
                    );
                }
                // The loop's own result is not there while its body runs.
                let body = self.branches([(l.body.as_slice(), path.key("do"))], visible, none)[0];
                NodeKind::Loop {
                    over: over?,
                    body,
                    max_iterations: l.max_iterations.unwrap_or(DEFAULT_MAX_ITERATIONS),
                }
            }
            NodeDef::Parallel(par) => {
                if par.branches.is_empty() {
                    self.error_at_key(
                        &path.key("branches"),
                        "a parallel node needs at least one branch".into(),
                    );
                }
                // Branches run at the same time: each sees only what ran before the parallel node.
                let blocks = par
                    .branches
                    .iter()
                    .enumerate()
                    .map(|(i, b)| (b.as_slice(), path.key("branches").index(i)));
                self.parallel_depth += 1;
                let branches = self.branches(blocks, visible, none);
                self.parallel_depth -= 1;
                NodeKind::Parallel {
                    branches,
                    mode: par.mode,
                }
            }
            NodeDef::Delay(d) => {
                if self.mode == Mode::Sync {
                    self.error_at_value(
                        &path.key("type"),
                        "a `delay` node cannot be used in a sync workflow (the caller is waiting)"
                            .into(),
                    );
                } else if self.parallel_depth > 0 {
                    self.error_at_value(
                        &path.key("type"),
                        "a `delay` node cannot be used inside a parallel branch".into(),
                    );
                }
                match (&d.duration, &d.until) {
                    (Some(dur), None) => NodeKind::Delay(DelayWait::For(dur.0)),
                    (None, Some(until)) => NodeKind::Delay(DelayWait::Until(self.text(
                        &path.key("until"),
                        until,
                        visible,
                    )?)),
                    _ => {
                        self.error_at_key(
                            path,
                            "a delay needs exactly one of `duration` or `until`".into(),
                        );
                        return None;
                    }
                }
            }
            NodeDef::Response(r) => {
                if self.mode == Mode::Async {
                    self.error_at_value(
                        &path.key("type"),
                        "a `response` node cannot be used in an async workflow (it answers at once with `trigger.response`)".into(),
                    );
                }
                let def = ResponseDef {
                    status: r.status.clone(),
                    headers: r.headers.clone(),
                    body: r.body.clone(),
                };
                NodeKind::Response(self.response(path, &def, visible))
            }
            NodeDef::End(e) => NodeKind::End {
                status: e.status,
                message: match &e.message {
                    Some(m) => Some(self.text(&path.key("message"), m, visible)?),
                    None => None,
                },
            },
            NodeDef::Log(l) => NodeKind::Log {
                message: self.text(&path.key("message"), &l.message, visible)?,
                level: l.level,
            },
        })
    }

    fn request(&mut self, path: &P, r: &RequestDef, visible: &[String]) -> Option<RequestSpec> {
        let method_src = r.method.clone().unwrap_or_else(|| "POST".into());
        let method = self.text(&path.key("method"), &method_src, visible);
        if let Some(Text::Literal(m)) = &method {
            if !METHODS.contains(&m.to_ascii_uppercase().as_str()) {
                self.error_at_value(
                    &path.key("method"),
                    format!("unknown method `{m}`; use one of {}", METHODS.join(", ")),
                );
            }
        }
        let url = self.text(&path.key("url"), &r.url, visible);
        if let Some(Text::Literal(u)) = &url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                self.error_at_value(
                    &path.key("url"),
                    format!("url `{u}` must start with http:// or https://"),
                );
            }
        }
        let headers = self.headers(&path.key("headers"), &r.headers, visible);
        let mut query = Vec::new();
        for (k, v) in &r.query {
            if let Some(t) = self.value(&path.key("query").key(k), v, visible) {
                query.push((k.clone(), t));
            }
        }
        let body = match &r.body {
            Some(b) => Some(self.value(&path.key("body"), b, visible)?),
            None => None,
        };
        let (attempts, backoff) = match &r.retry {
            Some(retry) => {
                let attempts = retry.attempts.unwrap_or(1);
                if attempts == 0 {
                    self.error_at_value(
                        &path.key("retry").key("attempts"),
                        "attempts counts every try including the first; it must be at least 1"
                            .into(),
                    );
                }
                (
                    attempts,
                    retry.backoff.map(|d| d.0).unwrap_or(DEFAULT_BACKOFF),
                )
            }
            None => (1, DEFAULT_BACKOFF),
        };
        let timeout = r.timeout.map(|d| d.0).unwrap_or(DEFAULT_REQUEST_TIMEOUT);
        if timeout.is_zero() {
            self.error_at_value(
                &path.key("timeout"),
                "timeout must be longer than zero".into(),
            );
        }
        Some(RequestSpec {
            method: method?,
            url: url?,
            headers,
            query,
            body,
            content_type: r.content_type.unwrap_or(ContentType::Json),
            timeout,
            attempts,
            backoff,
            ignore_fail: r.ignore_fail,
        })
    }
}

/// True when a pinned key matches `[A-Za-z0-9_-]{8,128}`.
pub fn valid_pinned_key(key: &str) -> bool {
    (8..=128).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn valid_alias(a: &str) -> bool {
    let mut chars = a.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The default alias of a parse key: lower-cased, `[^a-z0-9_]` → `_`.
pub fn default_alias(key: &str) -> String {
    key.to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
