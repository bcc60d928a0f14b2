//! The execution record (SPEC §5) and the pending-run entry.

use hookflow_model::request::TriggerRequest;
use hookflow_model::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Accepted, waiting for a worker.
    Queued,
    /// Running.
    Running,
    /// Waiting for a delay.
    Waiting,
    /// Finished well.
    Resolved,
    /// Finished with an error.
    Failed,
    /// Stopped (timeout).
    Aborted,
}

impl RunStatus {
    /// True for resolved, failed and aborted.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            RunStatus::Resolved | RunStatus::Failed | RunStatus::Aborted
        )
    }

    /// The name as in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Waiting => "waiting",
            RunStatus::Resolved => "resolved",
            RunStatus::Failed => "failed",
            RunStatus::Aborted => "aborted",
        }
    }

    /// Parses an API name.
    pub fn parse(s: &str) -> Option<RunStatus> {
        [
            RunStatus::Queued,
            RunStatus::Running,
            RunStatus::Waiting,
            RunStatus::Resolved,
            RunStatus::Failed,
            RunStatus::Aborted,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// Where a node run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Running.
    Running,
    /// Waiting.
    Waiting,
    /// Finished well.
    Resolved,
    /// Finished with an error.
    Failed,
    /// Stopped before it finished.
    Cancelled,
}

/// One node run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The node key, if any.
    pub key: Option<String>,
    /// The node type (a static name when the run makes it; owned when read back).
    #[serde(rename = "type")]
    pub kind: Cow<'static, str>,
    /// Status.
    pub status: JobStatus,
    /// The result.
    pub result: Json,
    /// The error message.
    pub error: Option<String>,
    /// Start time (RFC 3339 in the API).
    pub started_at: Timestamp,
    /// How long it took.
    pub duration_ms: u64,
}

/// The HTTP answer as sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseRecord {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: BTreeMap<String, String>,
    /// JSON bodies as JSON, others as text (shared with the answer it records).
    pub body: Arc<Json>,
}

/// Everything recorded about one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionRecord {
    /// UUID v7.
    pub id: String,
    /// Workflow id.
    pub workflow: String,
    /// Workflow version (content hash).
    pub version: String,
    /// Status.
    pub status: RunStatus,
    /// Start time (RFC 3339 in the API).
    pub started_at: Timestamp,
    /// End time, once finished.
    pub finished_at: Option<Timestamp>,
    /// Unix milliseconds of `started_at` (for filtering).
    #[serde(default)]
    pub started_ms: u64,
    /// The request, secret-bearing headers redacted (`trigger` in the API).
    /// Runs that keep their input store it only there (`None` here); reads
    /// put it back.
    #[serde(default)]
    pub trigger: Option<TriggerRequest>,
    /// One job per node run.
    pub jobs: Vec<JobRecord>,
    /// The answer sent to the caller.
    pub response: Option<ResponseRecord>,
    /// The run this one retries.
    pub retry_of: Option<String>,
    /// Why the run failed or was aborted (not sent to callers).
    #[serde(default)]
    pub error: Option<String>,
}

/// A run that is not finished: what the executor needs to resume it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    /// queued, running or waiting.
    pub status: RunStatus,
    /// The executor's saved position (opaque here).
    pub state: Json,
    /// For waiting runs: when to wake (Unix ms).
    pub wake_at: Option<u64>,
}

/// What is remembered about an idempotency key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdempotencyEntry {
    /// The run the key started.
    pub execution_id: String,
    /// When the key is forgotten (Unix ms).
    pub expires_ms: u64,
    /// The answer sent to the first request.
    pub response: Option<ResponseRecord>,
}

/// Filters of `GET /api/executions`.
#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    /// Only this workflow.
    pub workflow: Option<String>,
    /// Only this status.
    pub status: Option<RunStatus>,
    /// Started at or after (Unix ms).
    pub since_ms: Option<u64>,
    /// Started at or before (Unix ms).
    pub until_ms: Option<u64>,
    /// Page size.
    pub limit: usize,
    /// Continue after this id (exclusive), going older.
    pub cursor: Option<String>,
}

pub use hookflow_model::request::is_secret_header;

pub use hookflow_model::request::RunInput;

#[cfg(test)]
mod tests {
    use super::*;
    use hookflow_model::request::BodySource;
    use serde_json::json;

    #[test]
    fn stored_requests_leave_out_bodies_they_can_parse_again() {
        let base = TriggerRequest {
            method: "POST".into(),
            path: "/p".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            query: json!({}),
            ..TriggerRequest::default()
        };
        let cases = [
            (
                BodySource::JsonOfRaw,
                json!({"a": [1, 2]}),
                r#"{"a":[1,2]}"#,
            ),
            (BodySource::TextOfRaw, json!("<x/>"), "<x/>"),
            (BodySource::Stored, json!({"form": "1"}), "form=1"),
            (BodySource::Stored, Json::Null, ""),
        ];
        for (source, body, raw) in cases {
            let r = TriggerRequest {
                body: body.clone(),
                raw_body: raw.into(),
                body_source: source,
                ..base.clone()
            };
            let bytes = rmp_serde::to_vec(&r).expect("encode");
            let stored_twice = bytes
                .windows(raw.len().max(1))
                .filter(|w| *w == raw.as_bytes())
                .count();
            if source != BodySource::Stored {
                assert_eq!(stored_twice, 1, "{source:?}: the body is not stored twice");
            }
            let back: TriggerRequest = rmp_serde::from_slice(&bytes).expect("decode");
            assert_eq!(back, r, "{source:?}");
        }
    }

    #[test]
    fn a_damaged_json_body_is_an_error_not_a_null() {
        let r = TriggerRequest {
            raw_body: "{not json".into(),
            body_source: BodySource::JsonOfRaw,
            ..TriggerRequest::default()
        };
        let bytes = rmp_serde::to_vec(&r).expect("encode");
        assert!(rmp_serde::from_slice::<TriggerRequest>(&bytes).is_err());
    }
}
