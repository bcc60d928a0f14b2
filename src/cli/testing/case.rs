//! One case: the request built, the workflow run offline over the case's
//! stubs, and what the run did compared with what the case expects.

use super::format::Case;
use super::requests;
use crate::cli::offline::{run_once, short, OfflineRequest, Outcome};
use anyhow::Context;
use hookflow_executor::Stubs;
use hookflow_model::testfile::RunOutcomeDef;
use hookflow_model::Workflow;
use serde_json::Value as Json;
use std::path::Path;
use std::sync::Arc;

/// Runs `case` against `workflow` (`base` is the folder of `body_file`s);
/// returns what differs from what it expects (empty when it passes).
pub fn run(workflow: &Arc<Workflow>, case: &Case, base: &Path) -> anyhow::Result<Vec<String>> {
    let r = &case.request;
    let mut headers: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let has_type = headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
    let (body, default_type) = match (&r.body, &r.body_file, &r.raw_body) {
        (Some(json), None, None) => (serde_json::to_vec(json)?, "application/json"),
        (None, Some(path), None) => {
            let full = base.join(path);
            let bytes =
                std::fs::read(&full).with_context(|| format!("cannot read {}", full.display()))?;
            let kind = match full.extension().and_then(|e| e.to_str()) {
                Some("xml") => "application/xml",
                Some("txt") => "text/plain",
                Some("form") => "application/x-www-form-urlencoded",
                _ => "application/json",
            };
            (bytes, kind)
        }
        (None, None, Some(raw)) => (raw.clone().into_bytes(), "text/plain"),
        (None, None, None) => (Vec::new(), ""),
        _ => anyhow::bail!("give one of `body`, `body_file` or `raw_body`"),
    };
    if !body.is_empty() && !has_type {
        headers.push(("content-type".into(), default_type.into()));
    }
    let request = OfflineRequest {
        method: r
            .method
            .clone()
            .unwrap_or_else(|| "POST".into())
            .to_ascii_uppercase(),
        headers,
        query: r.query.clone().unwrap_or_default(),
        body,
    };
    let stubs = Arc::new(Stubs::new(case.stub_answers()));
    let mut problems = Vec::new();
    let e = &case.expect;
    let run = match run_once(workflow.clone(), &request, Some(stubs.clone()))? {
        Outcome::Ran(run) => run,
        Outcome::Rejected(status, body) => {
            // Refused before any run: the answer is all there is; a case
            // that expects a run fails.
            let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
            if status == 405 {
                headers.push(("allow".into(), "POST".into()));
            }
            answer_problems(e, status, &body, &headers, " (no run)", &mut problems);
            if e.run.is_some() || e.nodes.is_some() || !e.requests.is_empty() {
                problems.push(format!("no run started: {body}"));
            }
            return Ok(scrubbed(workflow, problems));
        }
    };
    let actual: Json = serde_json::from_slice(&run.answer.body)
        .unwrap_or_else(|_| Json::String(String::from_utf8_lossy(&run.answer.body).into_owned()));
    answer_problems(
        e,
        run.answer.status,
        &actual,
        &run.answer.headers,
        "",
        &mut problems,
    );
    if let Some(status) = e.run.map(RunOutcomeDef::as_str) {
        if status != run.record.status.as_str() {
            let why = run
                .record
                .error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default();
            problems.push(format!(
                "run: expected {status}, got {}{why}",
                run.record.status.as_str()
            ));
        }
    }
    if let Some(nodes) = &e.nodes {
        let ran: Vec<String> = run
            .record
            .jobs
            .iter()
            .filter_map(|j| j.key.clone())
            .collect();
        if &ran != nodes {
            problems.push(format!("nodes: expected {nodes:?}, got {ran:?}"));
        }
    }
    // A request node without an answer fails the case, whatever it expects.
    problems.extend(stubs.problems().iter().map(ToString::to_string));
    problems.extend(requests::check(&e.requests, &stubs.sent()));
    if !problems.is_empty() {
        problems.push(format!("trace: {}", trace(&run.record.jobs)));
    }
    Ok(scrubbed(workflow, problems))
}

/// The problems without the values of the workflow's secrets (SPEC §3: no
/// secret in an error message; a test's output ends up in CI logs).
fn scrubbed(workflow: &Workflow, problems: Vec<String>) -> Vec<String> {
    let values: Vec<String> = match workflow.secret_values() {
        Json::Object(map) => map
            .values()
            .filter_map(Json::as_str)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    };
    if values.is_empty() {
        return problems;
    }
    let scrubber = hookflow_model::scrub::Scrubber::new(&values);
    problems
        .into_iter()
        .map(|p| scrubber.str(&p).into_owned())
        .collect()
}

/// What differs between the answer and what the case expects of it: the
/// status (when it names one), the body (where it differs, by path) and
/// each header it names.
fn answer_problems<N: AsRef<str>, V: AsRef<str>>(
    e: &super::format::Expect,
    status: u16,
    body: &Json,
    headers: &[(N, V)],
    note: &str,
    problems: &mut Vec<String>,
) {
    if let Some(expected) = e.status {
        if expected != status {
            problems.push(format!("status: expected {expected}, got {status}{note}"));
        }
    }
    if let Some(expected) = &e.body {
        let mut found = Vec::new();
        requests::differences(expected, body, "body", &mut found);
        problems.extend(found);
    }
    for (name, value) in &e.headers {
        let got = headers
            .iter()
            .find(|(n, _)| n.as_ref().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref());
        match got {
            Some(got) if got == value => {}
            Some(got) => problems.push(format!("header {name}: expected {value:?}, got {got:?}")),
            None => problems.push(format!("header {name}: expected {value:?}, not sent")),
        }
    }
}

/// The jobs on one line, each with its status; a long run shows its first
/// and last jobs.
fn trace(jobs: &[hookflow_store::JobRecord]) -> String {
    const ENDS: usize = 20;
    let one = |j: &hookflow_store::JobRecord| {
        format!(
            "{}:{} {} {}",
            j.key.as_deref().unwrap_or("-"),
            j.kind,
            j.status.as_str(),
            j.error.clone().unwrap_or_else(|| short(&j.result, 60))
        )
    };
    if jobs.len() <= 2 * ENDS {
        return jobs.iter().map(one).collect::<Vec<_>>().join(" → ");
    }
    let first: Vec<String> = jobs[..ENDS].iter().map(one).collect();
    let last: Vec<String> = jobs[jobs.len() - ENDS..].iter().map(one).collect();
    format!(
        "{} → … {} more … → {}",
        first.join(" → "),
        jobs.len() - 2 * ENDS,
        last.join(" → ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn differs(expected: Json, actual: Json) -> Vec<String> {
        let mut out = Vec::new();
        requests::differences(&expected, &actual, "body", &mut out);
        out
    }

    #[test]
    fn bodies_are_compared_as_subsets_by_path() {
        assert!(differs(json!({"a": 1}), json!({"a": 1, "b": 2})).is_empty());
        assert_eq!(
            differs(json!({"a": 1, "c": 3}), json!({"a": 1, "b": 2})),
            vec!["body.c: expected 3 (a number), not sent"]
        );
        assert!(differs(json!([{"a": 1}]), json!([{"a": 1, "x": 0}])).is_empty());
        assert!(!differs(json!([1]), json!([1, 2])).is_empty());
        assert!(differs(json!("success"), json!("success")).is_empty());
        // Values swapped between two places: each place is named (before,
        // a line diff cancelled the lines out and printed nothing).
        assert_eq!(
            differs(
                json!({"a": {"x": 1}, "b": {"x": 2}}),
                json!({"a": {"x": 2}, "b": {"x": 1}})
            ),
            vec![
                "body.a.x: expected 1 (a number), sent 2 (a number)",
                "body.b.x: expected 2 (a number), sent 1 (a number)",
            ]
        );
        // A number is its value: 25 is 25.0.
        assert!(differs(json!({"total": 25}), json!({"total": 25.0})).is_empty());
        assert!(!differs(json!({"total": 25}), json!({"total": 25.5})).is_empty());
    }
}
