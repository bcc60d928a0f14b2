//! `hookflow test [DIR]`: runs every `<id>.test.yaml` against workflow `<id>`
//! offline (request nodes answered by stubs, no signatures, no idempotency)
//! and reports each case, with a diff when it fails.

use super::offline::{load_workflow, run_once, short, OfflineRequest, Outcome};
use anyhow::Context;
use hookflow_executor::Stub;
use hookflow_model::yaml::{from_yaml, Yaml};
use serde::Deserialize;
use serde_json::Value as Json;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::ExitCode;

/// A test file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    /// Environment variables (secrets) set before the cases run.
    #[serde(default)]
    env: BTreeMap<String, String>,
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default)]
    request: TestRequest,
    /// Answers for request nodes, by node key.
    #[serde(default)]
    stubs: BTreeMap<String, StubDef>,
    #[serde(default)]
    expect: Expect,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestRequest {
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    query: Option<String>,
    /// A JSON body (sent as application/json unless a content-type header says otherwise).
    #[serde(default)]
    body: Option<Json>,
    /// A body read from a file next to the test file.
    #[serde(default)]
    body_file: Option<String>,
    /// A body sent as is.
    #[serde(default)]
    raw_body: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StubDef {
    #[serde(default = "ok_status")]
    status: u16,
    #[serde(default)]
    headers: serde_json::Map<String, Json>,
    #[serde(default)]
    body: Json,
}

fn ok_status() -> u16 {
    200
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    /// The answer's status.
    #[serde(default)]
    status: Option<u16>,
    /// Fields the answer's body must have (a subset match for mappings).
    #[serde(default)]
    body: Option<Json>,
    /// Headers the answer must carry.
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// The run's final status: resolved, failed or aborted.
    #[serde(default)]
    run: Option<String>,
    /// The keys of the nodes that ran, in order.
    #[serde(default)]
    nodes: Option<Vec<String>>,
}

/// Runs every test file of `dir`.
pub fn run(dir: &Path) -> anyhow::Result<ExitCode> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".test.yaml") || n.ends_with(".test.yml"))
        })
        .collect();
    files.sort();
    let (mut passed, mut failed) = (0usize, 0usize);
    for file in &files {
        match run_file(dir, file) {
            Ok((p, f)) => {
                passed += p;
                failed += f;
            }
            Err(e) => {
                failed += 1;
                println!("FAIL {}: {e:#}", file.display());
            }
        }
    }
    println!();
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn run_file(dir: &Path, file: &Path) -> anyhow::Result<(usize, usize)> {
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let id = name
        .trim_end_matches(".test.yaml")
        .trim_end_matches(".test.yml");
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let tree = Yaml::parse(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}:{}:{}: {}",
            file.display(),
            e.pos.line,
            e.pos.column,
            e.message
        )
    })?;
    let tests: TestFile = from_yaml(&tree).map_err(|e| {
        let pos = e.pos.unwrap_or_default();
        anyhow::anyhow!(
            "{}:{}:{}: {}",
            file.display(),
            pos.line,
            pos.column,
            e.message
        )
    })?;
    for (k, v) in &tests.env {
        std::env::set_var(k, v);
    }
    let workflow = load_workflow(id, dir)?;
    let (mut passed, mut failed) = (0, 0);
    for case in &tests.cases {
        let problems = match run_case(&workflow, case, file.parent().unwrap_or(dir)) {
            Ok(p) => p,
            Err(e) => vec![format!("{e:#}")],
        };
        if problems.is_empty() {
            passed += 1;
            println!("ok   {id} › {}", case.name);
        } else {
            failed += 1;
            println!("FAIL {id} › {}", case.name);
            for p in problems {
                for line in p.lines() {
                    println!("       {line}");
                }
            }
        }
    }
    Ok((passed, failed))
}

fn run_case(
    workflow: &std::sync::Arc<hookflow_model::Workflow>,
    case: &Case,
    base: &Path,
) -> anyhow::Result<Vec<String>> {
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
    let stubs: HashMap<String, Stub> = case
        .stubs
        .iter()
        .map(|(k, s)| {
            (
                k.clone(),
                Stub {
                    status: s.status,
                    headers: s.headers.clone(),
                    body: s.body.clone(),
                },
            )
        })
        .collect();
    let mut problems = Vec::new();
    let e = &case.expect;
    let run = match run_once(workflow.clone(), &request, stubs)? {
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
            if e.run.is_some() || e.nodes.is_some() {
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
    if let Some(status) = &e.run {
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
