//! Per-workflow handles: made on a workflow version's first request, kept
//! with it, so that counting a request or a run touches only atomics — no
//! map lookup with string labels. A handle's series appear on first use (one lookup in
//! the family then), so ten thousand idle workflows add nothing to `/metrics`.

use crate::histogram::AtomicHistogram;
use crate::lanes::LaneCounter;
use crate::{Families, NodeLabels, WorkflowLabel, WorkflowReason, WorkflowStatus, WorkflowText};
use hookflow_model::runtime::{NodeKind, Workflow};
use prometheus_client::metrics::counter::Counter;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The error codes a refusal answers with (SPEC §4), in a fixed order.
pub const REASONS: [&str; 13] = [
    "not_found",
    "method_not_allowed",
    "unauthorized",
    "invalid_signature",
    "payload_too_large",
    "unsupported_media_type",
    "bad_request",
    "conflict",
    "unavailable",
    "store_unavailable",
    "request_timeout",
    "headers_too_large",
    "internal",
];

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// `resolved`.
    Resolved,
    /// `failed`.
    Failed,
    /// `aborted`.
    Aborted,
}

impl RunEnd {
    const NAMES: [&'static str; 3] = ["resolved", "failed", "aborted"];

    fn index(self) -> usize {
        match self {
            RunEnd::Resolved => 0,
            RunEnd::Failed => 1,
            RunEnd::Aborted => 2,
        }
    }
}

/// What one try of a request node came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryOutcome {
    /// An answer with this status.
    Status(u16),
    /// No answer (connect error, timeout, body too large).
    Error,
    /// The request policy refused the destination.
    Refused,
}

impl TryOutcome {
    const NAMES: [&'static str; 6] = ["2xx", "3xx", "4xx", "5xx", "error", "refused"];

    fn index(self) -> usize {
        match self {
            TryOutcome::Status(s) if s < 300 => 0,
            TryOutcome::Status(s) if s < 400 => 1,
            TryOutcome::Status(s) if s < 500 => 2,
            TryOutcome::Status(_) => 3,
            TryOutcome::Error => 4,
            TryOutcome::Refused => 5,
        }
    }
}

/// Status codes a workflow answers get a slot each, up to this many; more
/// (rare: statuses come from response nodes and a fixed list) are counted
/// through the family.
const STATUS_SLOTS: usize = 8;

#[derive(Debug, Default)]
struct StatusSlot {
    /// The status this slot counts; 0 while free.
    code: AtomicU16,
    counter: OnceLock<LaneCounter>,
}

/// The counters of one request node.
#[derive(Debug)]
struct NodeTries {
    node: String,
    outcomes: [OnceLock<Counter>; 6],
}

/// A workflow version's handles.
#[derive(Debug)]
pub struct WorkflowMetrics {
    families: Arc<Families>,
    /// The `workflow` label.
    workflow: String,
    statuses: [StatusSlot; STATUS_SLOTS],
    duration: OnceLock<AtomicHistogram>,
    refused: [OnceLock<Counter>; REASONS.len()],
    runs: [OnceLock<LaneCounter>; 3],
    run_duration: OnceLock<AtomicHistogram>,
    /// By node index: request nodes only.
    nodes: Box<[Option<Box<NodeTries>>]>,
}

impl WorkflowMetrics {
    /// Handles for `workflow` (`None`: requests to no known workflow, `workflow=""`).
    pub(crate) fn new(families: Arc<Families>, workflow: Option<&Workflow>) -> WorkflowMetrics {
        let nodes = workflow
            .map(|w| {
                w.nodes
                    .iter()
                    .enumerate()
                    .map(|(i, n)| {
                        matches!(n.kind, NodeKind::Request(_)).then(|| {
                            Box::new(NodeTries {
                                node: n.key.clone().unwrap_or_else(|| format!("node{i}")),
                                outcomes: Default::default(),
                            })
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        WorkflowMetrics {
            families,
            workflow: workflow.map(|w| w.id.clone()).unwrap_or_default(),
            statuses: Default::default(),
            duration: OnceLock::new(),
            refused: Default::default(),
            runs: Default::default(),
            run_duration: OnceLock::new(),
            nodes,
        }
    }

    /// A webhook request was answered with `status` after `took`.
    pub fn request(&self, status: u16, took: Duration) {
        self.count_status(status);
        self.duration
            .get_or_init(|| {
                self.families
                    .request_duration
                    .get_or_create_owned(&self.label())
            })
            .observe(took);
    }

    fn count_status(&self, status: u16) {
        let make = || {
            self.families.requests.get_or_create_owned(&WorkflowStatus {
                workflow: self.workflow.clone(),
                status,
            })
        };
        for slot in &self.statuses {
            let mut code = slot.code.load(Ordering::Acquire);
            if code == 0 {
                code =
                    match slot
                        .code
                        .compare_exchange(0, status, Ordering::AcqRel, Ordering::Acquire)
                    {
                        Ok(_) => status,
                        Err(taken) => taken,
                    };
            }
            if code == status {
                slot.counter.get_or_init(make).inc();
                return;
            }
        }
        make().inc();
    }

    /// A request was refused with this error code.
    pub fn refused(&self, reason: &str) {
        let make = || {
            self.families.refused.get_or_create_owned(&WorkflowReason {
                workflow: self.workflow.clone(),
                reason: reason.to_string(),
            })
        };
        match REASONS.iter().position(|r| *r == reason) {
            Some(i) => self.refused[i].get_or_init(make).inc(),
            None => make().inc(),
        };
    }

    /// A run of this workflow finished.
    pub fn run_finished(&self, end: RunEnd, took: Duration) {
        let i = end.index();
        self.runs[i]
            .get_or_init(|| {
                self.families.runs.get_or_create_owned(&WorkflowText {
                    workflow: self.workflow.clone(),
                    status: RunEnd::NAMES[i].to_string(),
                })
            })
            .inc();
        self.run_duration
            .get_or_init(|| {
                self.families
                    .run_duration
                    .get_or_create_owned(&self.label())
            })
            .observe(took);
    }

    /// A try of the request node at index `node` came to `outcome`.
    pub fn node_try(&self, node: usize, outcome: TryOutcome) {
        let Some(Some(tries)) = self.nodes.get(node) else {
            return;
        };
        let i = outcome.index();
        tries.outcomes[i]
            .get_or_init(|| {
                self.families.node_tries.get_or_create_owned(&NodeLabels {
                    workflow: self.workflow.clone(),
                    node: tries.node.clone(),
                    outcome: TryOutcome::NAMES[i].to_string(),
                })
            })
            .inc();
    }

    fn label(&self) -> WorkflowLabel {
        WorkflowLabel {
            workflow: self.workflow.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_and_statuses_fall_in_their_classes() {
        let classes: Vec<&str> = [
            TryOutcome::Status(204),
            TryOutcome::Status(302),
            TryOutcome::Status(429),
            TryOutcome::Status(503),
            TryOutcome::Error,
            TryOutcome::Refused,
        ]
        .iter()
        .map(|o| TryOutcome::NAMES[o.index()])
        .collect();
        assert_eq!(classes, TryOutcome::NAMES);
    }
}
