//! What a run adds to the metrics (SPEC §7): the `running` gauge while it
//! is driven, and its final status and duration when it finishes.
//!
//! The gauge is reached through the run it counts: a guard holding a
//! handle of its own took and dropped a reference to one count, which
//! every HTTP worker moved twice a request.

use super::Run;
use hookflow_metrics::RunEnd;
use hookflow_store::RunStatus;
use std::time::Duration;

/// A run being driven: counted as running until it is taken back
/// ([`Driven::done`]) or dropped, however its future ends.
pub(super) struct Driven(Option<Box<Run>>);

impl Driven {
    /// Counts `run` in.
    pub(super) fn new(run: Box<Run>) -> Driven {
        run.env.metrics.runs().running.inc();
        Driven(Some(run))
    }

    /// The run, until it is taken back.
    pub(super) fn run(&mut self) -> Option<&mut Run> {
        self.0.as_deref_mut()
    }

    /// The run back, counted out.
    pub(super) fn done(mut self) -> Option<Box<Run>> {
        let run = self.0.take();
        if let Some(run) = &run {
            run.env.metrics.runs().running.dec();
        }
        run
    }
}

impl Drop for Driven {
    fn drop(&mut self) {
        if let Some(run) = &self.0 {
            run.env.metrics.runs().running.dec();
        }
    }
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
