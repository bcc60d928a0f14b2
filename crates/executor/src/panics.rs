//! A bug that panics inside a run fails that run, not the server: the run's
//! future is driven under `catch_unwind`, and a panic ends the run as failed
//! with the panic's message in its record (finished durably, so a restart
//! does not run it again) and frees its worker.

use crate::record::bare_record;
use crate::Executor;
use hookflow_model::runtime::Workflow;
use hookflow_model::time::Timestamp;
use hookflow_store::RunStatus;
use std::any::Any;

/// The text of a panic's payload (`panic!` with a literal or a format).
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(text) = payload.downcast_ref::<&'static str>() {
        text
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text
    } else {
        "a panic without a message"
    }
}

impl Executor {
    /// Ends run `id` as failed after its future panicked. Its record is the
    /// stored one when there is one (the jobs saved so far kept), else a new
    /// one of `workflow` (a sync run that was never stored).
    pub(crate) fn fail_panicked(
        &self,
        id: &str,
        workflow: Option<(&Workflow, u64)>,
        payload: &(dyn Any + Send),
    ) {
        let message = panic_message(payload);
        tracing::error!(message = "A run panicked; it is failed.", execution_id = %id, panic = ?message);
        let stored = self.store.get(id).ok().flatten();
        let mut record = match (stored, workflow) {
            (Some(record), _) => record,
            (None, Some((workflow, started_ms))) => {
                let mut record = bare_record(id.to_string(), workflow, RunStatus::Failed);
                record.started_ms = started_ms;
                record.started_at = Timestamp(started_ms);
                record
            }
            (None, None) => {
                tracing::error!(message = "The panicked run has no record to fail.", execution_id = %id);
                return;
            }
        };
        if record.finished_at.is_some() {
            return;
        }
        record.status = RunStatus::Failed;
        record.error = Some(format!("internal error (a bug in hookflow): {message}"));
        record.finished_at = Some(Timestamp::now());
        self.store.finish(record, true);
    }

    /// Records a sync run that was still going when the server stopped (its
    /// task ends with the process) as failed, unless it has finished.
    pub(crate) fn fail_stopped(&self, run: crate::detached::Going) {
        if let Ok(Some(stored)) = self.store.get(&run.id) {
            if stored.finished_at.is_some() {
                return;
            }
        }
        let mut record = bare_record(run.id, &run.workflow, RunStatus::Failed);
        record.started_ms = run.started_ms;
        record.started_at = Timestamp(run.started_ms);
        record.retry_of = run.retry_of;
        record.error = Some(
            "the server stopped before this sync run finished; a sync run does not resume \
             (retry it to run it again)"
                .into(),
        );
        record.finished_at = Some(Timestamp::now());
        self.store.finish(record, false);
    }
}
