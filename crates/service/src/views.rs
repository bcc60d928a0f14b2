//! Runs as the admin API and `hookflow executions --format json` show them:
//! one JSON shape whether it comes from a server or from the store directly.

use hookflow_store::{ExecutionRecord, RunSummary};
use serde_json::{json, Value as Json};

/// A run's row in a list.
pub fn summary_json(r: &RunSummary) -> Json {
    json!({"id": r.id, "workflow": r.workflow, "version": r.version, "status": r.status,
           "started_at": r.started_at, "finished_at": r.finished_at,
           "response_status": r.response_status, "retry_of": r.retry_of})
}

/// A run's record (without its internal start milliseconds).
pub fn record_json(record: &ExecutionRecord) -> Json {
    let mut v = serde_json::to_value(record).unwrap_or(Json::Null);
    if let Json::Object(m) = &mut v {
        m.remove("started_ms");
    }
    v
}
