//! The execution record (SPEC §5), its list row, and idempotency entries.

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

    /// Every status, in the order of a run's life.
    pub const ALL: [RunStatus; 6] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Waiting,
        RunStatus::Resolved,
        RunStatus::Failed,
        RunStatus::Aborted,
    ];

    /// Parses an API name.
    pub fn parse(s: &str) -> Option<RunStatus> {
        RunStatus::ALL.into_iter().find(|st| st.as_str() == s)
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

impl JobStatus {
    /// The name the API shows.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Running => "running",
            JobStatus::Waiting => "waiting",
            JobStatus::Resolved => "resolved",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }
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
    /// The result kept here was cut down to `--max-result` (the run itself
    /// used the whole value).
    #[serde(default)]
    pub truncated: bool,
    /// Each try of a request node, in order (empty for other kinds).
    #[serde(default)]
    pub tries: Vec<TryRecord>,
}

/// How one try of a request node ended: the class of its answer's status,
/// `error` without an answer, `refused` by the request policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TryOutcome {
    /// 100–299.
    #[serde(rename = "2xx")]
    Success,
    /// 300–399.
    #[serde(rename = "3xx")]
    Redirect,
    /// 400–499.
    #[serde(rename = "4xx")]
    ClientError,
    /// 500 and above.
    #[serde(rename = "5xx")]
    ServerError,
    /// No answer: connect error, timeout, body too large.
    #[serde(rename = "error")]
    Error,
    /// The destination was refused by the request policy.
    #[serde(rename = "refused")]
    Refused,
}

impl TryOutcome {
    /// The outcome of an answer with this status.
    pub fn of_status(status: u16) -> TryOutcome {
        match status {
            0..=299 => TryOutcome::Success,
            300..=399 => TryOutcome::Redirect,
            400..=499 => TryOutcome::ClientError,
            _ => TryOutcome::ServerError,
        }
    }

    /// The name as in the API and the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            TryOutcome::Success => "2xx",
            TryOutcome::Redirect => "3xx",
            TryOutcome::ClientError => "4xx",
            TryOutcome::ServerError => "5xx",
            TryOutcome::Error => "error",
            TryOutcome::Refused => "refused",
        }
    }
}

/// One try of a request node: its answer (status, headers, body), or the
/// error of a try without one. In the API a try without an answer has no
/// `status`, `headers` or `body`, and one with an answer no `error`; stored,
/// every field is kept (fields by position).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TryRecord {
    /// 1 for the first try.
    pub attempt: u32,
    /// When it was sent.
    pub started_at: Timestamp,
    /// How long it took.
    pub duration_ms: u64,
    /// How it ended.
    pub outcome: TryOutcome,
    /// The answer's status.
    #[serde(default)]
    pub status: Option<u16>,
    /// The answer's headers (secret-bearing ones redacted).
    #[serde(default)]
    pub headers: serde_json::Map<String, Json>,
    /// The answer's body (JSON when it was JSON, else text; null when empty).
    #[serde(default)]
    pub body: Json,
    /// Why there was no answer.
    #[serde(default)]
    pub error: Option<String>,
}

impl Serialize for TryRecord {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let readable = s.is_human_readable();
        let answered = self.status.is_some();
        let fields = if readable {
            4 + if answered { 3 } else { 0 } + usize::from(self.error.is_some())
        } else {
            8
        };
        let mut st = s.serialize_struct("TryRecord", fields)?;
        st.serialize_field("attempt", &self.attempt)?;
        st.serialize_field("started_at", &self.started_at)?;
        st.serialize_field("duration_ms", &self.duration_ms)?;
        st.serialize_field("outcome", &self.outcome)?;
        if !readable || answered {
            st.serialize_field("status", &self.status)?;
            st.serialize_field("headers", &self.headers)?;
            st.serialize_field("body", &self.body)?;
        }
        if !readable || self.error.is_some() {
            st.serialize_field("error", &self.error)?;
        }
        st.end()
    }
}

/// The default cap of a job result kept in a record: 256 KiB of its JSON.
pub const DEFAULT_MAX_RESULT: usize = 256 * 1024;

impl JobRecord {
    /// Sets the result kept in the record, cut down to at most `max` bytes
    /// of JSON: a larger value is kept as the text of its JSON cut at a
    /// character boundary, and the job is marked `truncated`.
    pub fn keep_result(&mut self, result: Json, max: usize) {
        // Most results are small: a walk with no allocation tells.
        if json_len_bound(&result, max) <= max {
            self.result = result;
            return;
        }
        let text = match serde_json::to_string(&result) {
            Ok(text) if text.len() <= max => {
                self.result = result;
                return;
            }
            Ok(text) => text,
            Err(_) => String::new(),
        };
        let mut end = max.min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        self.result = Json::String(text[..end].to_string());
        self.truncated = true;
    }
}

impl JobRecord {
    /// The bytes of JSON its result and its tries' bodies take (exact for
    /// large values, an upper bound for small ones).
    pub fn kept_size(&self) -> usize {
        let size = |v: &Json| {
            let bound = json_len_bound(v, SMALL);
            if bound <= SMALL {
                return bound;
            }
            let mut count = Count(0);
            let _ = serde_json::to_writer(&mut count, v);
            count.0
        };
        self.tries
            .iter()
            .map(|t| size(&t.body))
            .fold(size(&self.result), usize::saturating_add)
    }

    /// Drops its result and its tries' bodies (a record past its budget):
    /// its status, times, error and tries stay, marked `truncated`.
    pub fn drop_result(&mut self) {
        self.result = Json::Null;
        for t in &mut self.tries {
            t.body = Json::Null;
        }
        self.truncated = true;
    }

    /// Cuts the bodies of the job's tries so that they fit, with the result
    /// kept, in `max` bytes of JSON: a body past what is left is kept as the
    /// text of its JSON cut at a character boundary (empty when nothing is
    /// left), and the job is marked `truncated`.
    pub fn keep_try_bodies(&mut self, max: usize) {
        if self.tries.is_empty() {
            return;
        }
        let used = serde_json::to_string(&self.result).map_or(0, |t| t.len());
        let mut left = max.saturating_sub(used);
        for t in &mut self.tries {
            if t.body.is_null() {
                continue;
            }
            let text = serde_json::to_string(&t.body).unwrap_or_default();
            if text.len() <= left {
                left -= text.len();
                continue;
            }
            let mut end = left.min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            t.body = Json::String(text[..end].to_string());
            left = 0;
            self.truncated = true;
        }
    }
}

/// The HTTP answer as sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseRecord {
    /// Status code.
    pub status: u16,
    /// Headers (the names and values hookflow sets itself, such as a
    /// content type, borrowed rather than copied for each record).
    pub headers: BTreeMap<Cow<'static, str>, Cow<'static, str>>,
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

/// Values whose length is estimated, not counted.
const SMALL: usize = 4096;

/// Counts the bytes written to it.
struct Count(usize);

impl std::io::Write for Count {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len());
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An upper bound of the length of `v`'s JSON text (a string may need six
/// bytes per character escaped), stopping early once it passes `limit`.
fn json_len_bound(v: &Json, limit: usize) -> usize {
    match v {
        Json::Null | Json::Bool(_) => 5,
        Json::Number(_) => 24,
        Json::String(s) => s.len().saturating_mul(6).saturating_add(2),
        Json::Array(items) => {
            let mut n = 2usize;
            for item in items {
                n = n
                    .saturating_add(json_len_bound(item, limit))
                    .saturating_add(1);
                if n > limit {
                    break;
                }
            }
            n
        }
        Json::Object(map) => {
            let mut n = 2usize;
            for (k, item) in map {
                n = n
                    .saturating_add(k.len().saturating_mul(6).saturating_add(4))
                    .saturating_add(json_len_bound(item, limit));
                if n > limit {
                    break;
                }
            }
            n
        }
    }
}

/// One row of a list of runs: what a record says of a run without its
/// request and jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// UUID v7.
    pub id: String,
    /// Workflow id.
    pub workflow: String,
    /// Workflow version (content hash).
    pub version: String,
    /// Status.
    pub status: RunStatus,
    /// Start time.
    pub started_at: Timestamp,
    /// End time, once finished.
    pub finished_at: Option<Timestamp>,
    /// The HTTP status answered to the caller, if any yet.
    pub response_status: Option<u16>,
    /// The run this one retries.
    pub retry_of: Option<String>,
}

impl ExecutionRecord {
    /// The record's row in a list.
    pub fn summary(&self) -> RunSummary {
        RunSummary {
            id: self.id.clone(),
            workflow: self.workflow.clone(),
            version: self.version.clone(),
            status: self.status,
            started_at: self.started_at,
            finished_at: self.finished_at,
            response_status: self.answered_status(),
            retry_of: self.retry_of.clone(),
        }
    }

    /// The status answered to the caller: none yet, and none for a retry,
    /// which has no caller (a sync retry's record keeps the answer it made).
    pub fn answered_status(&self) -> Option<u16> {
        match self.retry_of {
            Some(_) => None,
            None => self.response.as_ref().map(|r| r.status),
        }
    }
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
    /// Only retries of this run (their `retry_of`).
    pub retry_of: Option<String>,
}

impl ExecutionFilter {
    /// Whether `cursor` can be an execution list's cursor (a run's id, as
    /// `next_cursor` gives it): anything else is the caller's mistake, not
    /// the first page again.
    pub fn cursor_reads(cursor: &str) -> bool {
        uuid::Uuid::parse_str(cursor).is_ok()
    }

    /// Whether a record's `retry_of` passes the filter.
    pub fn retries(&self, retry_of: Option<&str>) -> bool {
        self.retry_of
            .as_deref()
            .is_none_or(|wanted| retry_of == Some(wanted))
    }
}

pub use hookflow_model::request::is_secret_header;

pub use hookflow_model::request::RunInput;

pub(crate) mod pack;

#[cfg(test)]
mod tests;
