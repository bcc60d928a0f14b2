//! Runs as the admin API and `hookflow executions --format json` show them:
//! one JSON shape whether it comes from a server or from the store directly.

use hookflow_store::{ExecutionRecord, RunSummary, Store, StoreResult};
use serde_json::{json, Value as Json};

/// A run's row in a list.
pub fn summary_json(r: &RunSummary) -> Json {
    json!({"id": r.id, "workflow": r.workflow, "version": r.version, "status": r.status,
           "started_at": r.started_at, "finished_at": r.finished_at,
           "response_status": r.response_status, "retry_of": r.retry_of})
}

/// A run's record (without its internal start milliseconds), with the ids
/// of its retries.
pub fn record_json(record: &ExecutionRecord, retries: &[String]) -> Json {
    let mut v = serde_json::to_value(record).unwrap_or(Json::Null);
    if let Json::Object(m) = &mut v {
        m.remove("started_ms");
        m.insert("retries".into(), json!(retries));
    }
    v
}

/// Run `id`'s record as shown, read from `store`; `None` when none is kept.
pub fn record_of(store: &dyn Store, id: &str) -> StoreResult<Option<Json>> {
    let Some(record) = store.get(id)? else {
        return Ok(None);
    };
    let retries = store.retries_of(id)?;
    Ok(Some(record_json(&record, &retries)))
}
