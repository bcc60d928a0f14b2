//! Nodes: blocks and branches (with the node keys visible in each), node
//! keys, and every node kind.

use super::{Cx, DEFAULT_MAX_ITERATIONS, P};
use crate::def::*;
use crate::path::JsonPath;
use crate::runtime::*;
use crate::template::{Expr, Text};

impl Cx<'_> {
    /// Compiles a list of nodes into a new block; `visible` holds the keys of
    /// nodes that can have run before the block starts and grows as it goes.
    pub(super) fn block(
        &mut self,
        defs: &[NodeDef],
        path: P,
        visible: &mut Vec<String>,
    ) -> BlockId {
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
                let first_line = self.src.tree.locate_value(&first.key("key").segs()).line;
                self.error_at_value(
                    &path.key("key"),
                    format!("duplicate node key `{key}` (first used on line {first_line}); keys are unique in a workflow: rename one"),
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
                self.loop_depth += 1;
                let body = self.branches([(l.body.as_slice(), path.key("do"))], visible, none)[0];
                self.loop_depth -= 1;
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
                // With the mode unknown (an error of its own), only the parallel rule applies.
                let mode = if self.src.skipped.mode {
                    Mode::Async
                } else {
                    self.mode
                };
                if let Err(rule) = DelayWait::placement(mode, self.parallel_depth > 0) {
                    self.error_at_value(&path.key("type"), rule.into());
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
                if self.mode == Mode::Async && !self.src.skipped.mode {
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
                NodeKind::Response(Box::new(self.response(path, &def, visible)))
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
}
