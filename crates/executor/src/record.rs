//! A run's new execution record, with or without its trigger context, and
//! what a record keeps of the run (scrubbed, SPEC §3).

use crate::Env;
use hookflow_model::request::{is_secret_header, REDACTED};
use hookflow_model::runtime::Workflow;
use hookflow_model::scrub::Scrubber;
use hookflow_model::time::{now_millis, Timestamp};
use hookflow_store::{ExecutionRecord, JobRecord, ResponseRecord, RunInput, RunStatus};
use serde_json::Value as Json;
use std::borrow::Cow;
use std::sync::Arc;

/// A new execution record.
pub fn new_record(
    id: String,
    workflow: &Workflow,
    input: &RunInput,
    status: RunStatus,
) -> ExecutionRecord {
    let mut record = bare_record(id, workflow, status);
    record.trigger = Some(input.recorded_trigger());
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

/// What a record keeps of a job (SPEC §3): secret values and URL user info
/// scrubbed from its result, error and tries, the secret-bearing headers of
/// a request node's answers redacted, then the result and the bodies of its
/// tries cut down to `max_result` together (scrubbed first, so that a cut
/// never leaves half a secret behind). The run itself goes on with the whole
/// value.
/// `headers` scrubs the values of the run's own secret-bearing headers
/// ([`header_scrubber`]) too.
pub(crate) fn keep_job(
    job: &mut JobRecord,
    result: Json,
    env: &Env,
    workflow: &Workflow,
    headers: Option<&Scrubber>,
) {
    env.secrets.with_current(|secrets| {
        let scrubbers: &[&Scrubber] = match headers {
            Some(headers) => &[secrets, headers],
            None => &[secrets],
        };
        keep_job_with(job, result, env.max_result, scrubbers, workflow);
    });
}

/// How many `--max-result`s of job results one record holds at most (4 MiB
/// by default): past that, a job keeps its status, times, error and tries,
/// and its result is dropped (`truncated`). One webhook looping over large
/// values cannot fill the disk or the memory with one record.
pub(crate) const BUDGET: usize = 16;

/// Drops `job`'s result when it would take the record's results past their
/// budget; the bytes the record's results take with it.
pub(crate) fn within_budget(job: &mut JobRecord, kept: usize, max_result: usize) -> usize {
    let size = job.kept_size();
    let total = kept.saturating_add(size);
    if total <= max_result.saturating_mul(BUDGET) {
        return total;
    }
    job.drop_result();
    kept.saturating_add(job.kept_size())
}

/// A scrubber of the values of the request's secret-bearing headers (each
/// whole, and a credential after its scheme: `Bearer <token>`), when the
/// workflow can copy them into what leaves the process: its templates read
/// `trigger.headers` (or all of `trigger`), or a parse rule takes such a
/// header into `vars`. `None` otherwise (most workflows: nothing to do per
/// run).
pub(crate) fn header_scrubber(
    workflow: &Workflow,
    trigger: &hookflow_store::TriggerRequest,
) -> Option<Arc<Scrubber>> {
    let copies = workflow.trigger.parses_secret_header
        || workflow
            .templates
            .reads(hookflow_model::template::TRIGGER_HEADERS);
    if !copies {
        return None;
    }
    let values = trigger
        .headers
        .iter()
        .filter(|(name, _)| is_secret_name(name, workflow))
        .flat_map(|(_, v)| [v, v.split_once(' ').map_or("", |(_, c)| c.trim())]);
    let scrubber = Scrubber::new(values);
    (scrubber.values() > 0).then(|| Arc::new(scrubber))
}

fn keep_job_with(
    job: &mut JobRecord,
    result: Json,
    max_result: usize,
    scrubbers: &[&Scrubber],
    workflow: &Workflow,
) {
    let mut result = result;
    if job.kind == "request" {
        if let Some(Json::Object(headers)) = result.get_mut("headers") {
            for (name, value) in headers.iter_mut() {
                if is_secret_name(name, workflow) {
                    *value = Json::String(REDACTED.to_string());
                }
            }
        }
    }
    for t in &mut job.tries {
        for (name, value) in t.headers.iter_mut() {
            if is_secret_name(name, workflow) {
                *value = Json::String(REDACTED.to_string());
            }
        }
    }
    for scrubber in scrubbers {
        scrubber.json(&mut result);
        scrub_text(&mut job.error, scrubber);
        for t in &mut job.tries {
            t.headers.values_mut().for_each(|v| scrubber.json(v));
            scrubber.json(&mut t.body);
            scrub_text(&mut t.error, scrubber);
        }
    }
    job.keep_result(result, max_result);
    job.keep_try_bodies(max_result);
}

/// The end of a run as its record keeps it: the stored copy of the answer
/// and the run's error, scrubbed.
pub(crate) fn keep_ending(
    record: &mut ExecutionRecord,
    env: &Env,
    workflow: &Workflow,
    headers: Option<&Scrubber>,
) {
    env.secrets.with_current(|scrubber| {
        if let Some(response) = record.response.take() {
            let mut kept = stored_response(response, scrubber, workflow);
            if let Some(headers) = headers {
                scrub_response(&mut kept, headers);
            }
            record.response = Some(kept);
        }
        scrub_text(&mut record.error, scrubber);
    });
    if let Some(headers) = headers {
        scrub_text(&mut record.error, headers);
    }
}

/// Scrubs a stored answer's body and header values with `scrubber`.
pub(crate) fn scrub_response(response: &mut ResponseRecord, scrubber: &Scrubber) {
    if scrubber.json_matches(&response.body) {
        let mut body = (*response.body).clone();
        scrubber.json(&mut body);
        response.body = Arc::new(body);
    }
    for value in response.headers.values_mut() {
        if let Cow::Owned(clean) = scrubber.str(value) {
            *value = Cow::Owned(clean);
        }
    }
}

/// `text` scrubbed of a run's header values, when the run scrubs them
/// (what its nodes log).
pub(crate) fn scrubbed<'a>(headers: Option<&Scrubber>, text: &'a str) -> Cow<'a, str> {
    headers.map_or(Cow::Borrowed(text), |s| s.str(text))
}

/// A run's error as the record keeps it.
pub(crate) fn scrub_text(text: &mut Option<String>, scrubber: &Scrubber) {
    if let Some(t) = text {
        if let Cow::Owned(clean) = scrubber.str(t) {
            *t = clean;
        }
    }
}

/// The stored copy of an answer: secret values scrubbed from its body and
/// headers, secret-bearing headers redacted. The answer sent (and the copy
/// kept for idempotent replays) is not this one.
pub(crate) fn stored_response(
    mut response: ResponseRecord,
    scrubber: &Scrubber,
    workflow: &Workflow,
) -> ResponseRecord {
    for (name, value) in response.headers.iter_mut() {
        if is_secret_name(name, workflow) {
            *value = Cow::Borrowed(REDACTED);
        } else if let Cow::Owned(clean) = scrubber.str(value) {
            *value = Cow::Owned(clean);
        }
    }
    if scrubber.json_matches(&response.body) {
        let mut body = (*response.body).clone();
        scrubber.json(&mut body);
        response.body = Arc::new(body);
    }
    response
}

/// Whether a header of this workflow bears a secret by its name (SPEC §3,
/// and the workflow's custom signature header).
pub(crate) fn is_secret_name(name: &str, workflow: &Workflow) -> bool {
    is_secret_header(name)
        || workflow
            .trigger
            .secret_headers
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookflow_model::load::{load_source, LoadOptions, SecretPolicy};
    use hookflow_model::time::Timestamp;
    use hookflow_store::JobStatus;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn workflow() -> Workflow {
        let yaml = "title: t\ntrigger:\n  type: webhook\n  verify: { preset: hmac, secret: s, header: X-Custom-Sig }\n";
        let file = load_source(
            "t",
            std::path::Path::new("t.yaml"),
            yaml,
            &LoadOptions::process_env(SecretPolicy::Warn),
        );
        Arc::try_unwrap(file.workflow.expect("loads")).expect("one owner")
    }

    fn job(kind: &'static str) -> JobRecord {
        JobRecord {
            key: Some("k".into()),
            kind: kind.into(),
            status: JobStatus::Failed,
            result: Json::Null,
            error: Some("GET https://u:p@h/x?access_token=SUPERSECRET123 answered 500".into()),
            started_at: Timestamp(0),
            duration_ms: 0,
            truncated: false,
            tries: Vec::new(),
        }
    }

    #[test]
    fn jobs_keep_no_secret_and_no_secret_header() {
        let scrubber = Scrubber::new(["SUPERSECRET123"]);
        let wf = workflow();
        let result = json!({"status": 500, "headers": {"set-cookie": "sid=1", "x-api-key": "k",
            "x-custom-sig": "abc", "content-type": "text/plain"}, "body": "echo SUPERSECRET123"});
        let mut j = job("request");
        keep_job_with(&mut j, result.clone(), 1 << 20, &[&scrubber], &wf);
        assert_eq!(
            j.result,
            json!({"status": 500, "headers": {"set-cookie": "[redacted]", "x-api-key": "[redacted]",
                "x-custom-sig": "[redacted]", "content-type": "text/plain"}, "body": "echo [redacted]"})
        );
        assert_eq!(
            j.error.as_deref(),
            Some("GET https://[redacted]@h/x?access_token=[redacted] answered 500")
        );
        // Each try's answer is kept the same way.
        let mut j = job("request");
        j.tries = vec![hookflow_store::TryRecord {
            attempt: 1,
            started_at: Timestamp(0),
            duration_ms: 1,
            outcome: hookflow_store::TryOutcome::ServerError,
            status: Some(503),
            headers: result["headers"].as_object().cloned().unwrap_or_default(),
            body: json!({"echo": "SUPERSECRET123"}),
            error: Some("could not connect to u:SUPERSECRET123@h".into()),
        }];
        keep_job_with(&mut j, result.clone(), 1 << 20, &[&scrubber], &wf);
        let t = &j.tries[0];
        assert_eq!(t.headers["set-cookie"], json!("[redacted]"));
        assert_eq!(t.headers["x-custom-sig"], json!("[redacted]"));
        assert_eq!(t.headers["content-type"], json!("text/plain"));
        assert_eq!(t.body, json!({"echo": "[redacted]"}));
        assert!(!t
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("SUPERSECRET"));
        // Other kinds keep their `headers` as computed, secrets scrubbed.
        let mut j = job("calculation");
        keep_job_with(&mut j, result, 1 << 20, &[&scrubber], &wf);
        assert_eq!(j.result["headers"]["set-cookie"], json!("sid=1"));
        // A cut result never keeps part of a secret.
        let mut j = job("calculation");
        let long = json!(format!("{}SUPERSECRET123", "x".repeat(30)));
        keep_job_with(&mut j, long, 40, &[&scrubber], &wf);
        assert!(j.truncated);
        assert!(!j.result.to_string().contains("SUPERSE"), "{}", j.result);
    }

    #[test]
    fn the_stored_answer_is_scrubbed() {
        let scrubber = Scrubber::new(["SUPERSECRET123"]);
        let wf = workflow();
        let mut headers = BTreeMap::new();
        headers.insert("set-cookie".into(), "sid=1".into());
        headers.insert("x-note".into(), "SUPERSECRET123".into());
        let sent = Arc::new(json!({"token": "SUPERSECRET123"}));
        let stored = stored_response(
            ResponseRecord {
                status: 200,
                headers,
                body: sent.clone(),
            },
            &scrubber,
            &wf,
        );
        assert_eq!(stored.headers["set-cookie"], "[redacted]");
        assert_eq!(stored.headers["x-note"], "[redacted]");
        assert_eq!(*stored.body, json!({"token": "[redacted]"}));
        assert_eq!(
            *sent,
            json!({"token": "SUPERSECRET123"}),
            "the answer sent is untouched"
        );
    }
}
