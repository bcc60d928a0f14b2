//! Node kinds: one module each, dispatched by one `match`.

mod calculation;
mod condition;
mod delay;
mod end;
mod json_query;
mod log;
mod loop_node;
mod request;
pub(crate) use request::in_flight;
mod response;
mod switch;

use crate::answer::Answer;
use hookflow_model::runtime::{BlockId, Node, NodeId, NodeKind, Workflow};
use hookflow_model::template::{EvalError, Scope};
use hookflow_store::TryRecord;
use serde_json::Value as Json;

/// What a node did.
#[derive(Debug)]
pub enum Step {
    /// Finished with this result; go on with the next node.
    Next(Json),
    /// Finished with this result; run this block next, then go on.
    Enter(Json, Option<BlockId>),
    /// Run `body` once per item; the result is `{count}`.
    Loop {
        /// The items.
        items: Vec<Json>,
        /// The body.
        body: BlockId,
    },
    /// Run these blocks at the same time.
    Parallel {
        /// One block per branch.
        branches: Vec<BlockId>,
        /// How the outcome is decided.
        mode: hookflow_model::def::ParallelMode,
    },
    /// Wait until this time (Unix ms), then go on.
    Wait {
        /// When to wake.
        until_ms: u64,
    },
    /// Answer the caller; the run ends as resolved.
    Respond(Answer),
    /// End the run.
    End {
        /// Resolved or failed.
        resolved: bool,
        /// Why.
        message: Option<String>,
    },
}

/// Why a node failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct NodeError(pub String);

impl From<EvalError> for NodeError {
    fn from(e: EvalError) -> Self {
        NodeError(e.message)
    }
}

/// What a node can see while it runs.
pub struct NodeCx<'a> {
    /// The workflow (templates, blocks).
    pub workflow: &'a Workflow,
    /// Template variables.
    pub scope: &'a Scope,
    /// The run's id.
    pub execution_id: &'a str,
    /// Shared services.
    pub env: &'a crate::Env,
    /// The workflow's counters (request node tries).
    pub metrics: Option<&'a hookflow_metrics::WorkflowMetrics>,
    /// The node's index in the workflow.
    pub node_id: NodeId,
    /// The values of the request's secret-bearing headers, when the run
    /// scrubs them (what a node logs).
    pub headers: Option<&'a hookflow_model::scrub::Scrubber>,
    /// The pass of each loop around the node, outermost first, as `-2-0`
    /// (empty outside loops).
    pub passes: &'a str,
}

/// Runs a node that only computes: every kind but a request, which waits
/// for its answer ([`waits`]). Each of these finishes where it is called.
pub fn computes(node: &Node, cx: &NodeCx<'_>) -> Result<Step, NodeError> {
    match &node.kind {
        NodeKind::Condition {
            test,
            then,
            otherwise,
            reject_on_false,
        } => condition::run(cx, test, *then, *otherwise, *reject_on_false),
        NodeKind::Switch { cases, default } => switch::run(cx, cases, *default),
        NodeKind::Calculation { expression } => calculation::run(cx, expression),
        NodeKind::JsonQuery {
            source,
            path,
            first,
        } => json_query::run(cx, source, path, *first),
        NodeKind::Response(spec) => response::run(cx, spec),
        NodeKind::End { status, message } => end::run(cx, *status, message.as_ref()),
        NodeKind::Log { message, level } => log::run(cx, message, *level),
        NodeKind::Loop {
            over,
            body,
            max_iterations,
        } => loop_node::run(cx, over, *body, *max_iterations),
        NodeKind::Delay(wait) => delay::run(cx, wait),
        NodeKind::Parallel { branches, mode } => Ok(Step::Parallel {
            branches: branches.clone(),
            mode: *mode,
        }),
        NodeKind::Request(_) => Err(NodeError(
            "a request node was run as a node that only computes; it waits for its answer".into(),
        )),
    }
}

/// Runs one node (`id` is its index in the workflow), waiting where it
/// waits: a request node notes each of its tries in `tries`, whatever its
/// outcome. Any other node is computed at once.
pub async fn waits(
    id: NodeId,
    node: &Node,
    cx: &NodeCx<'_>,
    tries: &std::sync::Mutex<Vec<TryRecord>>,
) -> Result<Step, NodeError> {
    match &node.kind {
        NodeKind::Request(spec) => {
            let ident = node.key.clone().unwrap_or_else(|| format!("node{id}"));
            // Boxed: its future is most of this one's size (and the node's
            // own future is boxed for its run).
            Box::pin(request::run(cx, spec, &ident, node.key.is_some(), tries)).await
        }
        _ => computes(node, cx),
    }
}
