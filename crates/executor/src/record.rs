//! A run's new execution record, with or without its trigger context.

use hookflow_model::runtime::Workflow;
use hookflow_model::time::{now_millis, Timestamp};
use hookflow_store::{ExecutionRecord, RunInput, RunStatus};

/// A new execution record.
pub fn new_record(
    id: String,
    workflow: &Workflow,
    input: &RunInput,
    status: RunStatus,
) -> ExecutionRecord {
    let mut record = bare_record(id, workflow, status);
    record.trigger = Some(input.trigger.clone().redacted());
    record
}

/// A new execution record without its trigger context (runs whose input is
/// stored, or whose caller moves the context in after building the scope).
pub fn bare_record(id: String, workflow: &Workflow, status: RunStatus) -> ExecutionRecord {
    let started_ms = now_millis();
    let trigger = None;
    ExecutionRecord {
        id,
        workflow: workflow.id.clone(),
        version: workflow.version.clone(),
        status,
        started_at: Timestamp(started_ms),
        finished_at: None,
        started_ms,
        trigger,
        jobs: Vec::new(),
        response: None,
        retry_of: None,
        error: None,
    }
}
