//! What a run adds to the metrics (SPEC §7): the `running` gauge while it
//! is driven, and its final status and duration when it finishes.

use super::Run;
use hookflow_metrics::{Gauge, Metrics, RunEnd};
use hookflow_store::RunStatus;
use std::time::Duration;

/// Counts a run as running until dropped (however its future ends).
pub(super) struct Running(Gauge);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The run being driven counts as running.
pub(super) fn running(metrics: &Metrics) -> Running {
    let gauge = metrics.runs().running.clone();
    gauge.inc();
    Running(gauge)
}

impl Run {
    /// Counts the run's end: its final status and the time since it started.
    pub(super) fn count_finish(&self) {
        let Some(metrics) = &self.metrics else {
            return;
        };
        let end = match self.record.status {
            RunStatus::Failed => RunEnd::Failed,
            RunStatus::Aborted => RunEnd::Aborted,
            _ => RunEnd::Resolved,
        };
        let finished = self
            .record
            .finished_at
            .map_or_else(hookflow_model::time::now_millis, |t| t.millis());
        let took = finished.saturating_sub(self.record.started_ms);
        metrics.run_finished(end, Duration::from_millis(took));
    }
}
