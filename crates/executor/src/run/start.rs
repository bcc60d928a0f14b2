//! Starting a node: what it is handed, and its future.

use super::running::{self, Done, RunningNode, Work};
use super::Run;
use crate::nodes::{self, NodeCx};
use crate::state::StackPath;
use hookflow_model::runtime::{NodeId, Workflow};
use hookflow_model::template::Scope;
use hookflow_model::time::now_millis;
use std::sync::Arc;
use std::time::Instant;

/// What each request node of a run is handed, behind a count of the
/// run's own: a clone for each node of the workflow's, the environment's
/// and the metrics' own counts, which every HTTP worker touches, was a
/// contended atomic each. (Nodes that only compute borrow from the run.)
pub(super) struct Handed {
    workflow: Arc<Workflow>,
    env: Arc<crate::Env>,
    execution_id: String,
    metrics: Option<Arc<hookflow_metrics::WorkflowMetrics>>,
    headers: Option<Arc<hookflow_model::scrub::Scrubber>>,
}

impl Run {
    /// Starts the node at the top of the stack at `path`, with the scope it sees.
    pub(super) fn start(&mut self, path: StackPath, node_id: NodeId) -> RunningNode {
        let mut scope = self.scope.clone();
        // Each pass of the loops around the node, outermost first: a
        // request node's `Idempotency-Key` differs from pass to pass.
        let mut passes = String::new();
        for (item, index) in self.state.loop_scopes(&path) {
            passes.push('-');
            passes.push_str(&index.to_string());
            scope.push_loop_owned(item, index);
        }
        let started_ms = now_millis();
        let clock = Instant::now();
        // Only request nodes wait, and only they have tries to share.
        let tries = running::tries_for(&self.workflow.nodes[node_id]);
        let Some(shared) = tries.clone() else {
            return RunningNode {
                path,
                node_id,
                started_ms,
                clock,
                tries: None,
                work: Work::Computes { scope, passes },
            };
        };
        let handed = self
            .handed
            .get_or_insert_with(|| {
                Arc::new(Handed {
                    workflow: self.workflow.clone(),
                    env: self.env.clone(),
                    execution_id: self.record.id.clone(),
                    metrics: self.metrics.clone(),
                    headers: self.header_scrubber.clone(),
                })
            })
            .clone();
        RunningNode {
            path,
            node_id,
            started_ms,
            clock,
            tries,
            work: Work::Waits(Box::pin(async move {
                let node = &handed.workflow.nodes[node_id];
                let cx = NodeCx {
                    workflow: &handed.workflow,
                    scope: &scope,
                    execution_id: &handed.execution_id,
                    env: &handed.env,
                    metrics: handed.metrics.as_deref(),
                    node_id,
                    headers: handed.headers.as_deref(),
                    passes: &passes,
                };
                let step = nodes::waits(node_id, node, &cx, &shared).await;
                (step, running::take(&shared))
            })),
        }
    }

    /// Runs a node that only computes (see [`Work::Computes`]) with the
    /// scope and passes it was started with.
    pub(super) fn compute(&self, node_id: NodeId, scope: &Scope, passes: &str) -> Done {
        let cx = NodeCx {
            workflow: &self.workflow,
            scope,
            execution_id: &self.record.id,
            env: &self.env,
            metrics: self.metrics.as_deref(),
            node_id,
            headers: self.header_scrubber.as_deref(),
            passes,
        };
        (
            nodes::computes(&self.workflow.nodes[node_id], &cx),
            Vec::new(),
        )
    }
}
