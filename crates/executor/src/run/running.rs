//! The nodes running at once on a run's stacks, and waiting for the first
//! of them to finish.

use crate::lock;
use crate::nodes::{self, Step};
use crate::state::StackPath;
use hookflow_model::runtime::{Node, NodeId, NodeKind};
use hookflow_model::template::Scope;
use hookflow_model::time::now_millis;
use hookflow_store::TryRecord;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A request node's tries, shared with its run while it runs: a try cut
/// off (the run's timeout, a race another branch won) is still recorded.
pub(super) type Tries = Arc<Mutex<Vec<TryRecord>>>;

/// The shared tries of `node`: request nodes only (the others try nothing).
pub(super) fn tries_for(node: &Node) -> Option<Tries> {
    matches!(node.kind, NodeKind::Request(_)).then(Tries::default)
}

/// The tries a node made, taken.
pub(super) fn take(tries: &Mutex<Vec<TryRecord>>) -> Vec<TryRecord> {
    std::mem::take(&mut *lock(tries))
}

/// The tries of a node stopped while it ran: one in flight is recorded as
/// cut off, with the time it had.
pub(super) fn cut_off(tries: Option<&Tries>) -> Vec<TryRecord> {
    let Some(tries) = tries else {
        return Vec::new();
    };
    let mut tries = take(tries);
    if let Some(last) = tries.last_mut().filter(|t| nodes::in_flight(t)) {
        last.duration_ms = now_millis().saturating_sub(last.started_at.0);
        last.error = Some(
            "cut off: the run stopped (its timeout, or another branch won) while this try \
             waited for its answer; the upstream may have acted on it"
                .into(),
        );
    }
    tries
}

/// What a node did, and each try of a request node.
pub(super) type Done = (Result<Step, nodes::NodeError>, Vec<TryRecord>);

/// The nodes running at once: one in most runs, a few under a parallel
/// node (held in place up to two, without an allocation).
pub(super) type Running = smallvec::SmallVec<[RunningNode; 2]>;

/// A node running on some stack.
pub(super) struct RunningNode {
    pub(super) path: StackPath,
    pub(super) node_id: NodeId,
    pub(super) started_ms: u64,
    pub(super) clock: Instant,
    pub(super) work: Work,
    /// A request node's tries so far.
    pub(super) tries: Option<Tries>,
}

/// What a started node does when the run polls it.
pub(super) enum Work {
    /// A node that only computes (every kind but a request): it finishes
    /// at its first poll, so it is run then, in place, with the scope it
    /// was started with. A future of its own was a box and a handle on the
    /// workflow, the environment and the metrics for each node.
    Computes {
        /// The scope as the node was started.
        scope: Scope,
        /// The passes of the loops around it (`NodeCx::passes`).
        passes: String,
    },
    /// A node that waits (a request): its future, which owns what it reads.
    Waits(std::pin::Pin<Box<dyn std::future::Future<Output = Done> + Send>>),
}

/// Resolves when any running node finishes: its index and outcome, the
/// nodes polled in order. `compute` runs a node that only computes.
pub(super) async fn any_finished(
    running: &mut [RunningNode],
    compute: impl Fn(NodeId, &Scope, &str) -> Done,
) -> (usize, Done) {
    std::future::poll_fn(|cx| {
        for (i, r) in running.iter_mut().enumerate() {
            match &mut r.work {
                Work::Computes { scope, passes } => {
                    return std::task::Poll::Ready((i, compute(r.node_id, scope, passes)));
                }
                Work::Waits(work) => {
                    if let std::task::Poll::Ready(out) = work.as_mut().poll(cx) {
                        return std::task::Poll::Ready((i, out));
                    }
                }
            }
        }
        std::task::Poll::Pending
    })
    .await
}
