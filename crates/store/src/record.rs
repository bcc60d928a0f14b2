//! The execution record (SPEC §5) and the pending-run entry.

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
    /// RFC 3339 start time.
    pub started_at: String,
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
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339, once finished.
    pub finished_at: Option<String>,
    /// Unix milliseconds of `started_at` (for filtering).
    #[serde(default)]
    pub started_ms: u64,
    /// The trigger context, secret-bearing headers redacted. Runs that keep
    /// their input store it only there (null here); reads put it back.
    #[serde(default)]
    pub trigger: Json,
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

/// A trigger context as records keep it: its secret-bearing headers redacted.
pub fn redacted_trigger(mut trigger: Json) -> Json {
    if let Some(Json::Object(headers)) = trigger.get_mut("headers") {
        redact_headers(headers);
    }
    trigger
}

/// Redacts header values that carry credentials or signatures.
pub fn redact_headers(headers: &mut serde_json::Map<String, Json>) {
    for (name, value) in headers.iter_mut() {
        if is_secret_header(name) {
            *value = Json::String("[redacted]".into());
        }
    }
}

/// True for headers whose values must not be stored or logged.
pub fn is_secret_header(name: &str) -> bool {
    // Header names arrive lowercase; only others pay for a copy.
    let lower;
    let n = if name.bytes().any(|b| b.is_ascii_uppercase()) {
        lower = name.to_ascii_lowercase();
        lower.as_str()
    } else {
        name
    };
    matches!(
        n,
        "authorization"
            | "proxy-authorization"
            | "cookie"
            | "set-cookie"
            | "stripe-signature"
            | "x-lark-signature"
            | "wechatpay-signature"
    ) || has_secret_word(n.as_bytes())
        || n == "x-shopify-hmac-sha256"
}

/// True when the name contains `signature`, `token` or `secret`: one pass
/// over the name's bytes (these checks run for every header of every request).
fn has_secret_word(name: &[u8]) -> bool {
    (0..name.len()).any(|i| {
        let rest = &name[i..];
        match rest[0] {
            b's' => rest.starts_with(b"signature") || rest.starts_with(b"secret"),
            b't' => rest.starts_with(b"token"),
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_headers_are_redacted() {
        let mut h = json!({"authorization": "Basic x", "cookie": "a=b", "stripe-signature": "t=1", "x-hub-signature-256": "sha256=", "webhook-signature": "v1,x", "x-request-id": "r", "content-type": "application/json"});
        if let Json::Object(m) = &mut h {
            redact_headers(m);
        }
        assert_eq!(
            h,
            json!({"authorization": "[redacted]", "cookie": "[redacted]", "stripe-signature": "[redacted]", "x-hub-signature-256": "[redacted]", "webhook-signature": "[redacted]", "x-request-id": "r", "content-type": "application/json"})
        );
        for (name, secret) in [
            ("X-Api-Token", true),
            ("x-secret", true),
            ("x-shopify-hmac-sha256", true),
            ("x-slack-signature", true),
            ("proxy-authorization", true),
            ("set-cookie", true),
            ("token", true),
            ("x-tok", false),
            ("sig", false),
            ("x-signed-by", false),
            ("host", false),
            ("x-signatur", false),
            ("a-secre", false),
            ("secrets-x", true),
            ("x-tokens", true),
        ] {
            assert_eq!(is_secret_header(name), secret, "{name}");
        }
    }
}
