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
            // Refused before any run: only the status and body can match.
            if e.status != Some(status) {
                problems.push(format!(
                    "status: expected {:?}, got {status} (no run)",
                    e.status
                ));
            }
            if let Some(expected) = &e.body {
                if !matches(expected, &body) {
                    problems.push(format!(
                        "body differs (- expected, + actual):\n{}",
                        diff(expected, &body)
                    ));
                }
            }
            if e.run.is_some() || e.nodes.is_some() || !e.requests.is_empty() {
                problems.push(format!("no run started: {body}"));
            }
            return Ok(problems);
        }
    };
    if let Some(status) = e.status {
        if status != run.answer.status {
            problems.push(format!(
                "status: expected {status}, got {}",
                run.answer.status
            ));
        }
    }
    if let Some(expected) = &e.body {
        let actual: Json = serde_json::from_slice(&run.answer.body).unwrap_or_else(|_| {
            Json::String(String::from_utf8_lossy(&run.answer.body).into_owned())
        });
        if !matches(expected, &actual) {
            problems.push(format!(
                "body differs (- expected, + actual):\n{}",
                diff(expected, &actual)
            ));
        }
    }
    for (name, value) in &e.headers {
        let got = run
            .answer
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str());
        if got != Some(value.as_str()) {
            problems.push(format!("header {name}: expected {value:?}, got {got:?}"));
        }
    }
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
        let trace: Vec<String> = run
            .record
            .jobs
            .iter()
            .map(|j| {
                format!(
                    "{}:{} {}",
                    j.key.as_deref().unwrap_or("-"),
                    j.kind,
                    j.error.clone().unwrap_or_else(|| short(&j.result, 60))
                )
            })
            .collect();
        problems.push(format!("trace: {}", trace.join(" → ")));
    }
    Ok(problems)
}

/// `expected` matches `actual` when every expected field is there and equal
/// (mappings may have more fields; lists must match item by item).
fn matches(expected: &Json, actual: &Json) -> bool {
    match (expected, actual) {
        (Json::Object(e), Json::Object(a)) => e
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|av| matches(v, av))),
        (Json::Array(e), Json::Array(a)) => {
            e.len() == a.len() && e.iter().zip(a).all(|(x, y)| matches(x, y))
        }
        (e, a) => e == a,
    }
}

/// A line diff of the two values pretty-printed.
fn diff(expected: &Json, actual: &Json) -> String {
    let e = serde_json::to_string_pretty(expected).unwrap_or_default();
    let a = serde_json::to_string_pretty(actual).unwrap_or_default();
    let (el, al): (Vec<&str>, Vec<&str>) = (e.lines().collect(), a.lines().collect());
    let mut out = Vec::new();
    for line in &el {
        if !al.contains(line) {
            out.push(format!("- {line}"));
        }
    }
    for line in &al {
        if !el.contains(line) {
            out.push(format!("+ {line}"));
        }
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subset_matching() {
        assert!(matches(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
        assert!(!matches(&json!({"a": 1, "c": 3}), &json!({"a": 1, "b": 2})));
        assert!(matches(&json!([{"a": 1}]), &json!([{"a": 1, "x": 0}])));
        assert!(!matches(&json!([1]), &json!([1, 2])));
        assert!(matches(&json!("success"), &json!("success")));
        assert_eq!(
            diff(&json!({"a": 1}), &json!({"a": 2})),
            "-   \"a\": 1\n+   \"a\": 2"
        );
    }
}
