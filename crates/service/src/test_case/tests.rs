use super::*;
use hookflow_model::request::BodySource;
use hookflow_model::testfile::{RunOutcomeDef, StubDef, TestFileDef};
use hookflow_model::time::Timestamp;
use hookflow_model::yaml::{from_yaml, Yaml};
use hookflow_store::{JobRecord, JobStatus, ResponseRecord, RunStatus};
use serde_json::json;
use std::sync::Arc;

const ID: &str = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";

fn try_of(attempt: u32, status: Option<u16>, body: Json, error: Option<&str>) -> TryRecord {
    TryRecord {
        attempt,
        started_at: Timestamp(1_700_000_000_000),
        duration_ms: 3,
        outcome: match status {
            Some(s) => TryOutcome::of_status(s),
            None => TryOutcome::Error,
        },
        status,
        headers: json!({"content-type": "application/json", "set-cookie": "[redacted]"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        body,
        error: error.map(str::to_string),
    }
}

fn job(key: &str, kind: &'static str, tries: Vec<TryRecord>) -> JobRecord {
    JobRecord {
        key: Some(key.to_string()),
        kind: kind.into(),
        status: JobStatus::Resolved,
        result: Json::Null,
        error: None,
        started_at: Timestamp(0),
        duration_ms: 0,
        truncated: false,
        tries,
    }
}

fn record() -> ExecutionRecord {
    let raw = r#"{"order":{"id":"A-1","amount":12.5},"flag":"yes","n":"12"}"#;
    ExecutionRecord {
        id: ID.to_string(),
        workflow: "pay".into(),
        version: "v1".into(),
        status: RunStatus::Resolved,
        started_at: Timestamp(1_700_000_000_000),
        finished_at: Some(Timestamp(1_700_000_000_100)),
        started_ms: 1_700_000_000_000,
        trigger: Some(TriggerRequest {
            method: "POST".into(),
            path: "/api/webhook:trigger/k".into(),
            headers: vec![
                ("host", "127.0.0.1:1"),
                ("content-type", "application/json"),
                ("authorization", REDACTED),
                ("x-custom-sig", REDACTED),
                ("x-request-id", "r1"),
                ("accept", "a"),
                ("accept", "b"),
            ]
            .into(),
            query: json!({"source": "shop", "tag": ["x", "y"]}),
            body: serde_json::from_str(raw).unwrap_or_default(),
            raw_body: raw.into(),
            body_source: BodySource::JsonOfRaw,
        }),
        jobs: vec![
            job("paid", "condition", vec![]),
            job(
                "erp",
                "request",
                vec![
                    try_of(1, Some(503), json!({"busy": true}), None),
                    try_of(
                        2,
                        None,
                        Json::Null,
                        Some("POST http://x/ failed: timed out"),
                    ),
                    try_of(3, Some(200), json!({"ok": true}), None),
                ],
            ),
            job("answer", "response", vec![]),
        ],
        response: Some(ResponseRecord {
            status: 200,
            headers: Default::default(),
            body: Arc::new(json!({"code": "SUCCESS", "execution_id": ID,
                "at": "2026-01-31T10:02:00Z", "ids": [ID], "n": 2,
                "nested": {"secret": REDACTED, "keep": "yes"}})),
        }),
        retry_of: None,
        error: None,
    }
}

fn read_back(yaml: &str) -> TestFileDef {
    let tree = Yaml::parse(yaml).unwrap_or_else(|e| panic!("{}: {yaml}", e.message));
    from_yaml(&tree).unwrap_or_else(|e| panic!("{}: {yaml}", e.message))
}

#[test]
fn a_run_becomes_one_case_that_reads_back() {
    let case = test_case(&record()).expect("a finished run");
    assert_eq!(case.file_name(), "pay.test.yaml");
    let file = read_back(&case.yaml);
    let c = &file.cases[0];
    assert_eq!(file.cases.len(), 1);
    // The request: transport headers left out, secret-bearing ones present
    // as `[redacted]` (a parse entry may require one), repeats joined.
    let headers: Vec<(&str, &str)> = c
        .request
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        headers,
        [
            ("accept", "a, b"),
            ("authorization", REDACTED),
            ("content-type", "application/json"),
            ("x-custom-sig", REDACTED),
            ("x-request-id", "r1")
        ]
    );
    assert_eq!(c.request.method, None);
    assert_eq!(
        c.request.query.as_deref(),
        Some("source=shop&tag[0]=x&tag[1]=y")
    );
    // Strings that look like other types stay strings.
    assert_eq!(
        c.request.body,
        Some(json!({"order": {"id": "A-1", "amount": 12.5}, "flag": "yes", "n": "12"}))
    );
    // Each try a stub, in order; redacted headers left out.
    let StubDef::Tries(tries) = &c.stubs["erp"] else {
        panic!("a list of tries: {:?}", c.stubs)
    };
    assert_eq!(tries.len(), 3);
    assert_eq!(tries[0].status, Some(503));
    assert_eq!(tries[0].body, Some(json!({"busy": true})));
    assert!(!tries[0].headers.contains_key("set-cookie"));
    assert_eq!(tries[1].error.as_deref(), Some("timeout"));
    assert_eq!(tries[1].status, None);
    assert_eq!(tries[2].body, Some(json!({"ok": true})));
    assert_eq!(c.stubs.len(), 1);
    // Expectations without what changes between runs.
    let e = &c.expect;
    assert_eq!(e.status, Some(200));
    assert_eq!(
        e.body,
        Some(json!({"code": "SUCCESS", "n": 2, "nested": {"keep": "yes"}}))
    );
    assert_eq!(e.run, Some(RunOutcomeDef::Resolved));
    assert_eq!(
        e.nodes.as_deref(),
        Some(&["paid".to_string(), "erp".into(), "answer".into()][..])
    );
    // The id names the case, and is nowhere else.
    assert_eq!(case.yaml.matches(ID).count(), 1, "{}", case.yaml);
}

#[test]
fn raw_bodies_methods_and_unfinished_runs() {
    let mut r = record();
    if let Some(t) = &mut r.trigger {
        t.method = "PUT".into();
        t.raw_body = "a=1&b=two".into();
        t.body = json!({"a": "1", "b": "two"});
        t.body_source = BodySource::Stored;
        t.query = json!({});
    }
    r.status = RunStatus::Failed;
    r.response = None;
    let file = read_back(&test_case(&r).expect("finished").yaml);
    let c = &file.cases[0];
    assert_eq!(c.request.method.as_deref(), Some("PUT"));
    assert_eq!(c.request.raw_body.as_deref(), Some("a=1&b=two"));
    assert_eq!(c.request.body, None);
    assert_eq!(c.request.query, None);
    assert_eq!(c.expect.status, None);
    assert_eq!(c.expect.run, Some(RunOutcomeDef::Failed));
    r.status = RunStatus::Running;
    assert!(matches!(test_case(&r), Err(TestCaseError::NotFinished(_))));
}

#[test]
fn a_request_answer_cut_to_fit_the_record_is_not_replayed() {
    let mut r = record();
    let erp = r
        .jobs
        .iter_mut()
        .find(|j| j.key.as_deref() == Some("erp"))
        .expect("the erp node");
    erp.truncated = true;
    match test_case(&r) {
        Err(TestCaseError::Cut(key)) => assert_eq!(key, "erp"),
        other => panic!("{other:?}"),
    }
    // A cut result of another kind of node stubs nothing: exported.
    let mut r = record();
    for j in r.jobs.iter_mut().filter(|j| j.kind != "request") {
        j.truncated = true;
    }
    assert!(test_case(&r).is_ok());
}

#[test]
fn what_changes_between_runs() {
    let v = Volatile {
        id: ID,
        days: vec!["2026-12-03".into()],
    };
    assert!(v.changes(ID));
    assert!(v.changes(&format!("{ID}-erp")));
    assert!(v.changes("2026-01-31T10:02:00.5+01:00"));
    assert!(v.changes("01234567-89ab-cdef-0123-456789abcdef"));
    assert!(v.changes("Bearer [redacted]"));
    assert!(!v.changes("SUCCESS"));
    assert!(!v.changes("2026-01-31"));
    // A time or date of the run's day inside a longer text.
    assert!(v.changes("handled at 2026-12-03T07:45:10.101Z"));
    assert!(v.changes("day 2026-12-03"));
    assert_eq!(v.stable(&json!([1, ID])), None);
    assert_eq!(v.stable(&json!({"a": [1, 2]})), Some(json!({"a": [1, 2]})));
}

#[test]
fn a_query_reads_back_as_it_was_decoded() {
    for query in [
        "ids[0]=7",
        "n[b][0]=2",
        "a=1&a=2",
        "a[]=x&a[]=y",
        "one[]=x",
        "q[]=x&q[k]=y",
        "a[b][c]=1&a[b][d]=2&a[e][]=3",
        "x=1&e=&sp=a+b%26c%3D",
        "m[0][k]=v&m[1][k]=w",
    ] {
        let decoded = hookflow_parser::parse_query(query);
        let written = query_string(&decoded);
        assert_eq!(
            hookflow_parser::parse_query(&written),
            decoded,
            "{query} was written {written}"
        );
    }
}
