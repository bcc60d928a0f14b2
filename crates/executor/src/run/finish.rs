//! How a run stops: finished (its final record written, jobs left open
//! closed), waiting for a delay, or woken from one.

use super::{Run, Waiting};
use crate::answer::Answer;
use hookflow_model::time::{millis_to_rfc3339, now_millis, Timestamp};
use hookflow_store::{ExecutionRecord, JobStatus, RunStatus, Store};
use serde_json::Value as Json;
use std::sync::Arc;

impl Run {
    /// A run resumed after a delay: its waiting job is done.
    pub(super) fn wake_waiting_jobs(&mut self) {
        // The clock is read only for a run that has a waiting job (most have none).
        let mut now = None;
        for (i, job) in self.record.jobs.iter_mut().enumerate() {
            if job.status == JobStatus::Waiting {
                let now = *now.get_or_insert_with(now_millis);
                job.status = JobStatus::Resolved;
                job.result = Json::Null;
                let started = job.started_at.millis();
                job.duration_ms = now.saturating_sub(started);
                self.unsaved.changed_jobs.insert(i);
            }
        }
    }

    /// Saves the run as waiting; it wakes from the store.
    pub(super) fn wait(mut self: Box<Self>, wake_at: u64) -> Waiting {
        self.record.status = RunStatus::Waiting;
        // A shared store's count is read from it (recovery.rs): another
        // instance may wake this run.
        if !self.store.shared() {
            self.env.metrics.runs().waiting.inc();
        }
        tracing::debug!(message = "Run waits.", until = %millis_to_rfc3339(wake_at));
        let saved = self.saved(RunStatus::Waiting, Some(wake_at));
        self.store.save(&self.record.id, saved);
        Waiting { wake_at }
    }

    /// Writes the final record with this status and error; a durable run's
    /// is returned with its store instead, for the driver to write and wait
    /// until it is on disk before it moves on.
    pub(super) fn finish(
        mut self: Box<Self>,
        status: RunStatus,
        error: Option<String>,
    ) -> Option<Write> {
        if let Some(r) = &self.responder {
            // A sync run that ended without a response node answers with its status.
            if !r.is_answered() {
                r.answer(Answer::finished(
                    status == RunStatus::Resolved,
                    &self.record.id,
                ));
            }
            self.record.response = r.take_recorded();
        }
        self.record.status = status;
        self.record.error = error;
        // A job still open was cut short by the run's end: a parallel node
        // whose branch ended the run, a delay of a run aborted meanwhile.
        for job in &mut self.record.jobs {
            if matches!(job.status, JobStatus::Running | JobStatus::Waiting) {
                job.status = JobStatus::Cancelled;
            }
        }
        let headers = self.header_scrubber.as_deref();
        crate::record::keep_ending(&mut self.record, &self.env, &self.workflow, headers);
        self.record.finished_at = Some(Timestamp::now());
        self.count_finish();
        // A run that failed is for the operator; a resolved one is counted, not logged.
        match &self.record.error {
            Some(error) => {
                tracing::warn!(message = "Run failed.", status = status.as_str(), ?error)
            }
            None => tracing::debug!(message = "Run finished.", status = status.as_str()),
        }
        // A durable run's saved state goes; its driver waits for the final
        // record to be on disk before it takes another run, so that a run
        // seen finished never runs again after a crash. Other records are
        // written behind (and readable at once).
        match self.keep_record.take() {
            Some(keep) => {
                drop(keep.send(self.record));
                None
            }
            None if self.durable => Some(Write::Durable(self.store, self.record)),
            None => self.store.keep_finished(self.record).map(Write::Room),
        }
    }
}

/// The write a finished run leaves to its driver.
// Made once a run and moved once: boxing the record would cost a durable
// run an allocation to save bytes of a value that lives a moment.
#[allow(clippy::large_enum_variant)]
pub(super) enum Write {
    /// A durable run's final record: on disk before the driver goes on.
    Durable(Arc<dyn Store>, ExecutionRecord),
    /// A sync run's record, written behind, waiting for room in the
    /// store's queue of writes (a stalled disk): the driver waits as a
    /// task, so that the HTTP worker goes on serving its other connections.
    Room(hookflow_store::BoxFuture<'static, ()>),
}

impl Write {
    pub(super) async fn write(self) {
        match self {
            Write::Durable(store, record) => {
                if let Err(error) = store.finish_durably(record).await {
                    tracing::error!(message = "Could not write a finished run to disk.", %error);
                }
            }
            Write::Room(room) => room.await,
        }
    }
}
