//! Each try of a request node counts in `hookflow_request_node_tries_total`
//! by outcome (SPEC §7), through the handles its workflow made at load.

use super::attempt::Try;
use crate::nodes::NodeCx;
use hookflow_metrics::TryOutcome;

/// Counts one try.
pub(super) fn count(cx: &NodeCx<'_>, outcome: &Try) {
    if let Some(metrics) = cx.metrics {
        let outcome = match outcome {
            Try::Response { status, .. } => TryOutcome::Status(*status),
            Try::Failed { .. } => TryOutcome::Error,
            Try::Refused(_) => TryOutcome::Refused,
        };
        metrics.node_try(cx.node_id, outcome);
    }
}
