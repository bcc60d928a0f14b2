//! Sync workflows whose paths do not all answer: when some path reaches a
//! `response` node and another can finish without one, the caller of the
//! second gets the default answer (SPEC §4), which is rarely what the
//! sender expects. Each such path gets a warning at the branch that lacks
//! the `response`.

use super::{p, Cx, P};
use crate::def::*;
use crate::diag::Severity;

/// The default answer of a sync run that finishes without a response.
const DEFAULT_ANSWER: &str =
    "the caller would then get the default answer, 200 `{\"status\":\"resolved\",…}`";

/// Where a path that has not answered yet comes from: the last choice that
/// took it away from a `response` node.
#[derive(Debug, Clone, PartialEq)]
enum Origin {
    /// No choice: from the start of the workflow.
    Start,
    /// A branch written in the file (`then`, `else`, a case's `do`, `default`, a parallel branch).
    Branch(P),
    /// A branch the node does not have: (the node, `then`/`else`/`default`).
    Missing(P, &'static str),
    /// A loop that answers in its body but may run no iteration.
    NoIteration(P),
}

#[derive(Default)]
struct Paths {
    /// A `response` node can be reached.
    answers: bool,
    /// `end: resolved` nodes reached without an answer.
    ends: Vec<P>,
}

impl Cx<'_> {
    /// Warns about each path of a sync workflow that can finish without a
    /// `response` node while another path has one.
    pub(super) fn unanswered_paths(&mut self, nodes: &[NodeDef]) {
        let mut paths = Paths::default();
        let open = self.flow_block(&mut paths, nodes, &p(&["nodes"]), vec![Origin::Start]);
        if !paths.answers {
            return;
        }
        for origin in open {
            let (at, message) = match origin {
                Origin::Start => (
                    self.src.tree.locate(&p(&["nodes"]).segs()),
                    format!(
                        "the run can finish after the last node without a `response` node, \
                         though other paths answer with one: {DEFAULT_ANSWER}; \
                         end every path with a `response` node"
                    ),
                ),
                Origin::Branch(branch) => (
                    self.src.tree.locate(&branch.segs()),
                    format!(
                        "this branch ({}) can finish without a `response` node, \
                         though other paths answer with one: {DEFAULT_ANSWER}; \
                         add a `response` node at its end",
                        branch_name(&branch)
                    ),
                ),
                Origin::Missing(node, which) => {
                    let when = match which {
                        "then" => "when `if` is true this condition has no `then`",
                        "else" => "when `if` is false this condition has no `else`",
                        _ => "when no case matches this switch has no `default`",
                    };
                    (
                        self.src.tree.locate(&node.segs()),
                        format!(
                            "{when}, and the run can finish without a `response` node, \
                             though other paths answer with one: {DEFAULT_ANSWER}; \
                             add `{which}` with a `response` node"
                        ),
                    )
                }
                Origin::NoIteration(node) => (
                    self.src.tree.locate_value(&node.key("over").segs()),
                    format!(
                        "when `over` has no items the loop's body does not run, and the run can \
                         finish without a `response` node, though other paths answer with one: \
                         {DEFAULT_ANSWER}; add a `response` node after the loop"
                    ),
                ),
            };
            self.push_as(at, Severity::Warning, message);
        }
        for end in paths.ends {
            let at = self.src.tree.locate_value(&end.key("status").segs());
            self.push_as(
                at,
                Severity::Warning,
                format!(
                    "this `end` finishes the run without a `response` node, though other paths \
                     answer with one: {DEFAULT_ANSWER}; put a `response` node before it \
                     (or use `status: failed`)"
                ),
            );
        }
    }

    /// The paths still without an answer after `nodes`, given those that enter.
    fn flow_block(
        &self,
        paths: &mut Paths,
        nodes: &[NodeDef],
        path: &P,
        entering: Vec<Origin>,
    ) -> Vec<Origin> {
        let mut open = entering;
        for (i, node) in nodes.iter().enumerate() {
            if open.is_empty() {
                break;
            }
            open = self.flow_node(paths, node, &path.index(i), open);
        }
        open
    }

    fn flow_node(
        &self,
        paths: &mut Paths,
        node: &NodeDef,
        path: &P,
        open: Vec<Origin>,
    ) -> Vec<Origin> {
        let stand_in = self
            .src
            .tree
            .get(&path.segs())
            .is_some_and(|n| self.src.skipped.nodes.contains(&n.pos));
        if stand_in {
            // A node with an error of its own: it might answer; no guess.
            return Vec::new();
        }
        match node {
            NodeDef::Response(_) => {
                paths.answers = true;
                Vec::new()
            }
            NodeDef::End(e) => {
                if e.status == EndStatus::Resolved {
                    paths.ends.push(path.clone());
                }
                Vec::new()
            }
            NodeDef::Condition(c) if c.then.is_none() && c.otherwise.is_none() => open,
            NodeDef::Condition(c) => {
                let branches = vec![
                    branch(&c.then, path, "then"),
                    branch(&c.otherwise, path, "else"),
                ];
                self.flow_choice(paths, branches, open)
            }
            NodeDef::Switch(s) => {
                let mut branches: Vec<(Option<&[NodeDef]>, Origin)> = s
                    .cases
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let at = path.key("cases").index(i).key("do");
                        (Some(c.body.as_slice()), Origin::Branch(at))
                    })
                    .collect();
                branches.push(match &s.default {
                    Some(d) => (Some(d.as_slice()), Origin::Branch(path.key("default"))),
                    None => (None, Origin::Missing(path.clone(), "default")),
                });
                self.flow_choice(paths, branches, open)
            }
            NodeDef::Loop(l) => {
                let body = self.flow_block(paths, &l.body, &path.key("do"), open.clone());
                if body.is_empty() {
                    vec![Origin::NoIteration(path.clone())]
                } else {
                    union(open.into_iter().chain(body))
                }
            }
            // With `any` or `race` one branch decides and the others are
            // cancelled: as a choice of one branch.
            NodeDef::Parallel(par) if par.mode != crate::def::ParallelMode::All => {
                let branches = par
                    .branches
                    .iter()
                    .enumerate()
                    .map(|(i, b)| {
                        let at = path.key("branches").index(i);
                        (Some(b.as_slice()), Origin::Branch(at))
                    })
                    .collect();
                self.flow_choice(paths, branches, open)
            }
            NodeDef::Parallel(par) => {
                let mut outcomes = Vec::new();
                for (i, b) in par.branches.iter().enumerate() {
                    let at = path.key("branches").index(i);
                    outcomes.push(self.flow_block(paths, b, &at, open.clone()));
                }
                // With `all`, a response in any branch ends the whole run.
                if outcomes.iter().any(Vec::is_empty) {
                    Vec::new()
                } else {
                    union(outcomes.into_iter().flatten())
                }
            }
            _ => open,
        }
    }

    /// One of several branches runs. A path that went through a branch
    /// unanswered, while a sibling branch always answers, comes from that branch.
    fn flow_choice(
        &self,
        paths: &mut Paths,
        branches: Vec<(Option<&[NodeDef]>, Origin)>,
        open: Vec<Origin>,
    ) -> Vec<Origin> {
        let outcomes: Vec<(Vec<Origin>, Origin)> = branches
            .into_iter()
            .map(|(nodes, label)| {
                let out = match (nodes, &label) {
                    (Some(nodes), Origin::Branch(at)) => {
                        self.flow_block(paths, nodes, at, open.clone())
                    }
                    _ => open.clone(),
                };
                (out, label)
            })
            .collect();
        let some_answer = outcomes.iter().any(|(out, _)| out.is_empty());
        union(outcomes.into_iter().flat_map(|(out, label)| {
            out.into_iter()
                .map(|o| {
                    if some_answer && open.contains(&o) {
                        label.clone()
                    } else {
                        o
                    }
                })
                .collect::<Vec<_>>()
        }))
    }
}

/// A condition's branch, written or missing.
fn branch<'d>(
    list: &'d Option<Vec<NodeDef>>,
    node: &P,
    key: &'static str,
) -> (Option<&'d [NodeDef]>, Origin) {
    match list {
        Some(nodes) => (Some(nodes.as_slice()), Origin::Branch(node.key(key))),
        None => (None, Origin::Missing(node.clone(), key)),
    }
}

fn union(origins: impl IntoIterator<Item = Origin>) -> Vec<Origin> {
    let mut out = Vec::new();
    for o in origins {
        if !out.contains(&o) {
            out.push(o);
        }
    }
    out
}

/// `` `else` ``, `` `do` of case 2 ``, `parallel branch 1`, for messages.
fn branch_name(branch: &P) -> String {
    use crate::yaml::Seg;
    match branch.segs().as_slice() {
        [.., Seg::Key(cases), Seg::Index(i), Seg::Key(d)] if cases == "cases" && d == "do" => {
            format!("`do` of case {}", i + 1)
        }
        [.., Seg::Key(b), Seg::Index(i)] if b == "branches" => format!("parallel branch {}", i + 1),
        [.., Seg::Key(k)] => format!("`{k}`"),
        _ => "this branch".into(),
    }
}
