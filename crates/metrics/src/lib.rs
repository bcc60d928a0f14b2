//! hookflow's metrics (SPEC §7): the Prometheus families, the per-workflow
//! handles the hot path counts with ([`WorkflowMetrics`]), the gauges of
//! runs and workflows, the store's commit timer and the process collector.
//! The text format is prometheus-client's ([`Metrics::encode`]); the HTTP
//! crate only serves it.
//!
//! Every family is registered when [`Metrics::new`] runs, so each is listed
//! with its `# HELP` and `# TYPE` lines before anything happened. Label
//! values come only from loaded workflows and fixed lists; requests to no
//! known workflow count under `workflow=""`.

mod histogram;
mod lanes;
mod process;
mod workflow;

pub use histogram::AtomicHistogram;
pub use lanes::{LaneCounter, LaneGauge};
pub use prometheus_client::metrics::gauge::Gauge;
pub use workflow::{RunEnd, TryOutcome, WorkflowMetrics, REASONS};

use histogram::{Listed, COMMIT_BOUNDS, REQUEST_BOUNDS, RUN_BOUNDS};
use hookflow_model::runtime::Workflow;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The content type of the text format (`text/plain; version=0.0.4`).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Most workflow versions whose handles are kept for lookups by version
/// (retries and resumed runs; the served ones are held by the registry).
const HANDLES_KEPT: usize = 1024;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct WorkflowLabel {
    pub workflow: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct WorkflowStatus {
    pub workflow: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct WorkflowText {
    pub workflow: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct WorkflowReason {
    pub workflow: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct NodeLabels {
    pub workflow: String,
    pub node: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StateLabel {
    pub state: &'static str,
}

type HistogramFamily<S> = Family<S, AtomicHistogram, fn() -> AtomicHistogram>;

fn request_histogram() -> AtomicHistogram {
    AtomicHistogram::new(REQUEST_BOUNDS)
}

fn run_histogram() -> AtomicHistogram {
    AtomicHistogram::new(RUN_BOUNDS)
}

/// The labelled families; handles make their members.
#[derive(Debug)]
pub(crate) struct Families {
    pub requests: Family<WorkflowStatus, LaneCounter>,
    pub request_duration: HistogramFamily<WorkflowLabel>,
    pub refused: Family<WorkflowReason, Counter>,
    pub runs: Family<WorkflowText, LaneCounter>,
    pub run_duration: HistogramFamily<WorkflowLabel>,
    pub node_tries: Family<NodeLabels, Counter>,
}

/// The gauges of runs by state (`hookflow_runs`).
#[derive(Debug, Clone, Default)]
pub struct RunGauges {
    /// Waiting for a worker.
    pub queued: LaneGauge,
    /// Being run (sync runs included): moved by every run, on whichever
    /// thread runs it, so kept in lanes like the request counts.
    pub running: LaneGauge,
    /// Waiting for a delay.
    pub waiting: LaneGauge,
}

/// Every metric of a server.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    families: Arc<Families>,
    unknown: Arc<WorkflowMetrics>,
    runs: RunGauges,
    workflows: [Gauge; 3],
    commits: AtomicHistogram,
    /// Handles by workflow id and version.
    handles: Mutex<HashMap<(String, String), Arc<WorkflowMetrics>>>,
    /// The HTTP layer's refusals counted so far, by error code.
    http_layer: Mutex<HashMap<&'static str, u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every family registered, none with a member yet (but the fixed gauges).
    pub fn new() -> Metrics {
        let families = Arc::new(Families {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(request_histogram),
            refused: Family::default(),
            runs: Family::default(),
            run_duration: Family::new_with_constructor(run_histogram),
            node_tries: Family::default(),
        });
        let mut registry = Registry::default();
        registry.register(
            "hookflow_webhook_requests",
            "Webhook requests answered, by workflow and HTTP status",
            Listed(families.requests.clone()),
        );
        registry.register(
            "hookflow_webhook_request_duration_seconds",
            "Time to answer a webhook request, refused ones included",
            Listed(families.request_duration.clone()),
        );
        registry.register(
            "hookflow_refused_requests",
            "Webhook requests refused, by workflow and error code",
            Listed(families.refused.clone()),
        );
        registry.register(
            "hookflow_runs",
            "Runs finished, by workflow and final status",
            Listed(families.runs.clone()),
        );
        registry.register(
            "hookflow_run_duration_seconds",
            "Time from a run's start to its finish",
            Listed(families.run_duration.clone()),
        );
        let (run_states, runs) = run_state_gauges();
        registry.register(
            "hookflow_runs",
            "Runs not finished, by state",
            Listed(run_states),
        );
        registry.register(
            "hookflow_request_node_tries",
            "Tries of request nodes, by outcome",
            Listed(families.node_tries.clone()),
        );
        let commits = AtomicHistogram::new(COMMIT_BOUNDS);
        registry.register(
            "hookflow_store_commit_duration_seconds",
            "Time of each sync of the store's disk (durable writes)",
            commits.clone(),
        );
        let workflow_states: Family<StateLabel, Gauge> = Family::default();
        let workflows = ["loaded", "invalid", "disabled"]
            .map(|state| workflow_states.get_or_create_owned(&StateLabel { state }));
        registry.register(
            "hookflow_workflows",
            "Workflow files by state",
            Listed(workflow_states),
        );
        registry.register_collector(Box::new(process::Process::new()));
        Metrics {
            registry,
            unknown: Arc::new(WorkflowMetrics::new(families.clone(), None)),
            families,
            runs,
            workflows,
            commits,
            handles: Mutex::new(HashMap::new()),
            http_layer: Mutex::new(HashMap::new()),
        }
    }

    /// The handles of a workflow version, made once and kept.
    pub fn workflow(&self, workflow: &Workflow) -> Arc<WorkflowMetrics> {
        let key = (workflow.id.clone(), workflow.version.clone());
        let mut handles = self
            .handles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(h) = handles.get(&key) {
            return h.clone();
        }
        if handles.len() >= HANDLES_KEPT {
            handles.clear();
        }
        let made = Arc::new(WorkflowMetrics::new(self.families.clone(), Some(workflow)));
        handles.insert(key, made.clone());
        made
    }

    /// The handles of requests to no known workflow (`workflow=""`).
    pub fn unknown(&self) -> &Arc<WorkflowMetrics> {
        &self.unknown
    }

    /// The gauges of unfinished runs.
    pub fn runs(&self) -> &RunGauges {
        &self.runs
    }

    /// Sets the counts of workflow files by state.
    pub fn set_workflows(&self, loaded: usize, invalid: usize, disabled: usize) {
        for (gauge, n) in self.workflows.iter().zip([loaded, invalid, disabled]) {
            gauge.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Brings the counts of the HTTP layer's own refusals up to its totals:
    /// `(status, error code, answered since start, how long each took)` for
    /// each kind. Requests that layer refuses reach no workflow: they count
    /// under `workflow=""`, in `hookflow_webhook_requests_total`,
    /// `hookflow_refused_requests_total` and the request-duration histogram
    /// (which observes every request counted).
    pub fn http_layer(&self, totals: &[(u16, &'static str, u64, Duration)]) {
        let mut counted = self
            .http_layer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for &(status, reason, total, took) in totals {
            let seen = counted.entry(reason).or_default();
            let new = total.saturating_sub(*seen);
            if new == 0 {
                continue;
            }
            *seen = total;
            self.families
                .requests
                .get_or_create(&WorkflowStatus {
                    workflow: String::new(),
                    status,
                })
                .inc_by(new);
            self.families
                .refused
                .get_or_create(&WorkflowReason {
                    workflow: String::new(),
                    reason: reason.to_string(),
                })
                .inc_by(new);
            self.families
                .request_duration
                .get_or_create(&WorkflowLabel {
                    workflow: String::new(),
                })
                .observe_many(took, new);
        }
    }

    /// A sync of the store's disk took this long.
    pub fn commit(&self, took: Duration) {
        self.commits.observe(took);
    }

    /// Everything in the Prometheus text format (version 0.0.4).
    pub fn encode(&self) -> String {
        let mut text = String::with_capacity(8 * 1024);
        if prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry).is_err()
        {
            text.clear();
        }
        text
    }
}

/// `hookflow_runs{state}`: one gauge per state, shared by the family and the handles.
fn run_state_gauges() -> (Family<StateLabel, LaneGauge>, RunGauges) {
    let family: Family<StateLabel, LaneGauge> = Family::default();
    let [queued, running, waiting] = ["queued", "running", "waiting"]
        .map(|state| family.get_or_create_owned(&StateLabel { state }));
    (
        family,
        RunGauges {
            queued,
            running,
            waiting,
        },
    )
}

#[cfg(test)]
mod tests;
