//! The nodes running at once on a run's stacks, and waiting for the first
//! of them to finish.

use crate::nodes::{self, Step};
use crate::state::StackPath;
use hookflow_model::runtime::NodeId;
use hookflow_store::TryRecord;
use std::time::Instant;

/// What a node did, and each try of a request node.
pub(super) type Done = (Result<Step, nodes::NodeError>, Vec<TryRecord>);

/// A node running on some stack.
pub(super) struct RunningNode {
    pub(super) path: StackPath,
    pub(super) node_id: NodeId,
    pub(super) started_ms: u64,
    pub(super) clock: Instant,
    pub(super) work: std::pin::Pin<Box<dyn std::future::Future<Output = Done> + Send>>,
}

/// Resolves when any running node finishes: its index and outcome.
pub(super) async fn any_finished(running: &mut [RunningNode]) -> (usize, Done) {
    std::future::poll_fn(|cx| {
        for (i, r) in running.iter_mut().enumerate() {
            if let std::task::Poll::Ready(out) = r.work.as_mut().poll(cx) {
                return std::task::Poll::Ready((i, out));
            }
        }
        std::task::Poll::Pending
    })
    .await
}
