//! A run as a test case (SPEC §6 `hookflow executions export-test`): a test
//! file of one case made from an execution record, so that the failure an
//! operator just saw becomes a regression test in one step.
//!
//! The case sends the recorded request (secret-bearing headers as
//! `[redacted]`: present, so that a parse entry requiring one still finds
//! it, but never with their value),
//! answers each request node with its recorded tries (one stub per try, in
//! order) and expects the answer sent (status and body), the final status
//! and the keys of the nodes that ran. Values that change from one run to
//! the next (execution ids, times, UUIDs, redacted secrets) are left out of
//! the expectations: `hookflow test` matches mappings as subsets, so a
//! mapping without them still checks the rest.

use hookflow_model::request::{is_secret_header, join_header, TriggerRequest, REDACTED};
use hookflow_model::testfile_out::{CaseOut, ExpectOut, RequestOut, StubOut, TestFileOut};
use hookflow_model::yaml::write::FlowSeq;
use hookflow_store::{ExecutionRecord, TryOutcome, TryRecord};
use serde_json::{Map, Value as Json};
use std::collections::BTreeMap;

/// Request headers a case does not send again: how the request travelled,
/// not what it said.
const TRANSPORT_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "upgrade",
    "expect",
];

/// A test file made from a run.
#[derive(Debug, Clone, PartialEq)]
pub struct TestCase {
    /// The workflow it tests.
    pub workflow: String,
    /// The test file's text.
    pub yaml: String,
}

impl TestCase {
    /// The name it is saved under, beside the workflow: `<id>.test.yaml`.
    pub fn file_name(&self) -> String {
        format!("{}.test.yaml", self.workflow)
    }
}

/// Why a run cannot become a test case.
#[derive(Debug, thiserror::Error)]
pub enum TestCaseError {
    /// The run has not finished: there is nothing to expect yet.
    #[error("execution {0} has not finished")]
    NotFinished(String),
    /// A request node's recorded answer was cut to fit the record: a stub
    /// made from it would not answer as the upstream did.
    #[error(
        "the recorded answer of request node `{0}` was cut to fit the record (`--max-result`): \
         a case cannot give it again; write its stub by hand, or raise `--max-result` and \
         export a new run"
    )]
    Cut(String),
    /// The YAML could not be written.
    #[error("cannot write the test file: {0}")]
    Yaml(String),
}

/// The test file of one case made from `record`.
pub fn test_case(record: &ExecutionRecord) -> Result<TestCase, TestCaseError> {
    if !record.status.is_finished() {
        return Err(TestCaseError::NotFinished(record.id.clone()));
    }
    // A request node's answer cut to fit the record cannot be given again.
    // (Only keyed nodes are stubbed: see [`stubs`].)
    let cut = record
        .jobs
        .iter()
        .filter(|j| j.kind == "request" && j.truncated);
    if let Some(key) = cut
        .filter(|j| !j.tries.is_empty())
        .find_map(|j| j.key.clone())
    {
        return Err(TestCaseError::Cut(key));
    }
    let days = [Some(record.started_at), record.finished_at]
        .into_iter()
        .flatten()
        .map(|t| hookflow_model::time::millis_to_rfc3339(t.millis())[..10].to_string())
        .collect();
    let volatile = Volatile {
        id: &record.id,
        days,
    };
    let expect = ExpectOut {
        status: record.response.as_ref().map(|r| r.status),
        body: record
            .response
            .as_ref()
            .and_then(|r| volatile.stable(&r.body)),
        run: record.status.as_str(),
        nodes: FlowSeq(record.jobs.iter().filter_map(|j| j.key.clone()).collect()),
    };
    let file = TestFileOut {
        env: None,
        cases: vec![CaseOut {
            name: format!(
                "execution {} ({}) replayed",
                record.id,
                record.status.as_str()
            ),
            request: request(record.trigger.as_ref()),
            stubs: stubs(record),
            expect,
        }],
    };
    let yaml = hookflow_model::yaml::write::to_yaml(&file)
        .map_err(|e| TestCaseError::Yaml(e.to_string()))?;
    Ok(TestCase {
        workflow: record.workflow.clone(),
        yaml,
    })
}

/// The recorded request as a case sends it.
fn request(trigger: Option<&TriggerRequest>) -> RequestOut {
    let Some(t) = trigger else {
        return RequestOut::default();
    };
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &t.headers {
        let name = name.to_ascii_lowercase();
        if TRANSPORT_HEADERS.contains(&name.as_str()) {
            continue;
        }
        let value = match is_secret_header(&name) {
            true => REDACTED,
            false => value,
        };
        match headers.get_mut(&name) {
            // Repeated, a secret-bearing header is still one placeholder.
            Some(joined) if joined != REDACTED => join_header(joined, value),
            Some(_) => {}
            None => {
                headers.insert(name, value.to_string());
            }
        }
    }
    use hookflow_model::request::BodySource;
    let json_body = matches!(
        t.body_source,
        BodySource::JsonOfRaw | BodySource::JsonUnparsed
    );
    let (body, raw_body) = match (t.raw_body.is_empty(), json_body) {
        (true, _) => (None, None),
        (false, true) => (Some(t.body().into_owned()), None),
        (false, false) => (None, Some(t.raw_body.clone())),
    };
    let query = query_string(&t.query);
    RequestOut {
        method: (!t.method.eq_ignore_ascii_case("POST")).then(|| t.method.clone()),
        headers,
        query: (!query.is_empty()).then_some(query),
        body,
        raw_body,
    }
}

/// A decoded query (`trigger.query`) as a query string again: lists as
/// `a[0]`, `a[1]` (a repeated name would read back a list of one as a
/// string), nested mappings as `a[b]`.
fn query_string(query: &Json) -> String {
    fn add(out: &mut form_urlencoded::Serializer<'_, String>, name: &str, value: &Json) {
        match value {
            Json::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    add(out, &format!("{name}[{i}]"), item);
                }
            }
            Json::Object(map) => {
                for (k, v) in map {
                    add(out, &format!("{name}[{k}]"), v);
                }
            }
            Json::String(s) => {
                out.append_pair(name, s);
            }
            Json::Null => {
                out.append_pair(name, "");
            }
            other => {
                out.append_pair(name, &other.to_string());
            }
        }
    }
    let mut out = form_urlencoded::Serializer::new(String::new());
    if let Json::Object(map) = query {
        for (k, v) in map {
            add(&mut out, k, v);
        }
    }
    // Brackets as written (`tag[0]=x`): the query is read the same either
    // way, since names and values are percent-decoded before brackets are.
    out.finish().replace("%5B", "[").replace("%5D", "]")
}

/// The recorded tries of every keyed request node, one stub per try, in
/// the order they were made (a node run more than once, in a loop, answers
/// from one list, as `hookflow test` does).
fn stubs(record: &ExecutionRecord) -> BTreeMap<String, Vec<StubOut>> {
    let mut by_node: BTreeMap<String, Vec<StubOut>> = BTreeMap::new();
    for job in record.jobs.iter().filter(|j| j.kind == "request") {
        let Some(key) = &job.key else { continue };
        if job.tries.is_empty() {
            continue;
        }
        by_node
            .entry(key.clone())
            .or_default()
            .extend(job.tries.iter().map(stub_of));
    }
    by_node
}

/// One try as the stub that gives it again offline.
fn stub_of(t: &TryRecord) -> StubOut {
    match t.status {
        Some(status) => StubOut {
            status: Some(status),
            headers: t
                .headers
                .iter()
                .filter(|(_, v)| v.as_str() != Some(REDACTED))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<Map<String, Json>>(),
            body: (!t.body.is_null()).then(|| t.body.clone()),
            error: None,
        },
        None => {
            // Offline a try fails as `timeout` or `connect`; a refused
            // destination or a body too large is told as `connect`.
            let timed_out = t.outcome == TryOutcome::Error
                && t.error.as_deref().is_some_and(|e| e.contains("timed out"));
            StubOut {
                status: None,
                headers: Map::new(),
                body: None,
                error: Some(if timed_out { "timeout" } else { "connect" }),
            }
        }
    }
}

/// What changes from one run to the next.
struct Volatile<'a> {
    /// The run's execution id.
    id: &'a str,
    /// The days it ran on (`YYYY-MM-DD`, UTC): a time or date rendered
    /// into a longer text (`handled at {{ now }}`) holds one.
    days: Vec<String>,
}

impl Volatile<'_> {
    /// `value` without what changes between runs: mapping entries whose
    /// value changes are left out (mappings match as subsets); a list with
    /// such an item, or such a scalar, gives `None` (lists match item by item).
    fn stable(&self, value: &Json) -> Option<Json> {
        match value {
            Json::Object(map) => Some(Json::Object(
                map.iter()
                    .filter_map(|(k, v)| self.stable(v).map(|v| (k.clone(), v)))
                    .collect(),
            )),
            Json::Array(items) => items
                .iter()
                .map(|v| self.stable(v))
                .collect::<Option<Vec<Json>>>()
                .map(Json::Array),
            Json::String(s) if self.changes(s) => None,
            other => Some(other.clone()),
        }
    }

    fn changes(&self, s: &str) -> bool {
        s.contains(self.id)
            || s.contains(REDACTED)
            || self.days.iter().any(|day| s.contains(day.as_str()))
            || hookflow_model::time::parse_rfc3339(s).is_some()
            || looks_like_uuid(s)
    }
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in hex digits.
fn looks_like_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests;
