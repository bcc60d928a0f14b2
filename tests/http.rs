//! SPEC §4, row by row: the webhook endpoint's answers and the runs behind them.

use crate::harness::{Options, TestApp, ADMIN};
use serde_json::json;
use std::time::Duration;

const SYNC: &str = r#"
title: Sync
enabled: true
trigger:
  type: webhook
  mode: sync
  key: sync-key-0001
  max_body: 1KiB
  parse:
    headers: [ { key: X-Request-Id, alias: rid } ]
    query: [ { key: n, type: integer } ]
    body:
      - { key: order.id, alias: order_id, required: true, type: string }
      - { key: status }
nodes:
  - key: paid
    type: condition
    if: vars.status == "SUCCESS"
    then:
      - type: response
        status: 201
        headers: { X-Order: "{{ vars.order_id }}" }
        body: { code: SUCCESS, order: "{{ vars.order_id }}", n: "{{ vars.n }}", rid: "{{ vars.rid }}" }
      - key: after
        type: log
        message: must not run
  - key: tail
    type: calculation
    expression: "1 + 1"
"#;

const FAILING: &str = r#"
title: Failing
enabled: true
trigger: { type: webhook, mode: sync, key: failing-key-01 }
nodes:
  - key: boom
    type: calculation
    expression: "trigger.body.missing.deeper"
"#;

const AUTH: &str = r#"
title: Auth
enabled: true
secrets: [HF_TEST_PASS]
trigger:
  type: webhook
  mode: sync
  key: auth-key-0001
  auth: { basic: { username: shop, password: "{{ secrets.HF_TEST_PASS }}" } }
nodes:
  - type: response
    body: "hello {{ trigger.body }}"
"#;

const DISABLED: &str =
    "title: Off\nenabled: false\ntrigger: { type: webhook, key: disabled-key-1 }\n";

const ASYNC_DEFAULT: &str = r#"
title: Async default
enabled: true
trigger: { type: webhook, key: async-key-0001, parse: { body: [ { key: n, type: integer } ] } }
nodes:
  - key: doubled
    type: calculation
    expression: vars.n * 2
  - type: log
    message: "doubled {{ nodes.doubled }}"
"#;

const ASYNC_CUSTOM: &str = r#"
title: Async custom
enabled: true
trigger:
  type: webhook
  key: async-key-0002
  response:
    status: 202
    headers: { X-Kind: ack }
    body: { received: true, id: "{{ execution.id }}" }
nodes:
  - type: end
    status: failed
    message: "stopped on purpose"
"#;

fn app() -> TestApp {
    TestApp::spawn_with(
        &[
            ("sync.yaml", SYNC),
            ("failing.yaml", FAILING),
            ("auth.yaml", AUTH),
            ("off.yaml", DISABLED),
            ("async-default.yaml", ASYNC_DEFAULT),
            ("async-custom.yaml", ASYNC_CUSTOM),
        ],
        Options {
            env: vec![("HF_TEST_PASS".into(), "s3cret".into())],
            ..Options::default()
        },
    )
}

fn error_code(r: &crate::harness::Resp) -> String {
    r.json()["error"].as_str().unwrap_or_default().to_string()
}

#[test]
fn spec_table_rows() {
    let app = app();
    let log = || app.log_text();

    // Unknown key, disabled workflow: 404, no run.
    for key in ["no-such-key-123", "disabled-key-1"] {
        let r = app.post_json(key, &json!({}));
        assert_eq!(
            (r.status, error_code(&r).as_str()),
            (404, "not_found"),
            "{key}: {r:?}"
        );
        assert!(r.header("x-hookflow-execution").is_none());
    }

    // Other methods on a known key: 405 with Allow: POST.
    for method in ["GET", "PUT", "DELETE"] {
        let r = app.call(method, "sync-key-0001");
        assert_eq!(r.status, 405, "{method}: {r:?}");
        assert_eq!(r.header("allow"), Some("POST"));
        assert_eq!(error_code(&r), "method_not_allowed");
    }
    // ...but an unknown key is still 404 whatever the method.
    assert_eq!(app.call("GET", "no-such-key-123").status, 404);

    // Basic auth: missing, wrong user, wrong password, malformed → 401 with the challenge.
    let wrong = [
        None,
        Some("Basic c2hvcDp3cm9uZw=="), // shop:wrong
        Some("Basic b3RoZXI6czNjcmV0"), // other:s3cret
        Some("Basic s3cret"),           // not base64 of user:pass
        Some("Bearer s3cret"),
    ];
    for auth in wrong {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(a) = auth {
            headers.push(("authorization", a));
        }
        let r = app.post("auth-key-0001", &headers, "{}");
        assert_eq!(r.status, 401, "{auth:?}: {r:?}");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Basic realm=\"hookflow\"")
        );
        assert_eq!(error_code(&r), "unauthorized");
    }
    let r = app.post(
        "auth-key-0001",
        &[
            ("content-type", "text/plain"),
            ("authorization", "Basic c2hvcDpzM2NyZXQ="),
        ],
        "you",
    );
    assert_eq!((r.status, r.body.as_str()), (200, "hello you"), "{}", log());
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    // The stored trigger context has Authorization redacted.
    let record = app.execution(&r.execution());
    assert_eq!(
        record["trigger"]["headers"]["authorization"],
        json!("[redacted]")
    );

    // Body over max_body (1 KiB): 413, with or without Content-Length.
    let big = format!("{{\"order\": {{\"id\": \"{}\"}}}}", "x".repeat(2000));
    let r = app.post(
        "sync-key-0001",
        &[("content-type", "application/json")],
        &big,
    );
    assert_eq!(
        (r.status, error_code(&r).as_str()),
        (413, "payload_too_large"),
        "{r:?}"
    );

    // Content types: a non-empty body of another type, or none, is 415; an empty body is fine.
    for ct in [
        Some("application/octet-stream"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let headers: Vec<(&str, &str)> = ct.map(|c| vec![("content-type", c)]).unwrap_or_default();
        let r = app.post("sync-key-0001", &headers, "order.id=1");
        assert_eq!(
            (r.status, error_code(&r).as_str()),
            (415, "unsupported_media_type"),
            "{ct:?}: {r:?}"
        );
    }

    // Malformed JSON: 400 naming the position.
    let r = app.post(
        "sync-key-0001",
        &[("content-type", "application/json")],
        "{\n \"order\": }",
    );
    assert_eq!(r.status, 400);
    assert_eq!(error_code(&r), "bad_request");
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap_or_default()
            .contains("line 2, column 11"),
        "{r:?}"
    );

    // Required field missing, wrong type: 400 naming the field, and no run.
    let r = app.post_json("sync-key-0001", &json!({"order": {}}));
    assert_eq!(r.status, 400);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap_or_default()
            .contains("`order.id`"),
        "{r:?}"
    );
    assert!(r.header("x-hookflow-execution").is_none());
    let r = app.post(
        "sync-key-0001?n=abc",
        &[("content-type", "application/json")],
        r#"{"order": {"id": "A"}}"#,
    );
    assert_eq!(r.status, 400);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap_or_default()
            .contains("field `n` in the query"),
        "{r:?}"
    );
    let r = app.post_json("sync-key-0001", &json!({"order": {"id": {"nested": true}}}));
    assert_eq!(r.status, 400, "an object is not a string: {r:?}");
    let (runs, _) = (app.admin_get("/api/executions?workflow=sync").json(), ());
    assert_eq!(
        runs["executions"].as_array().map(Vec::len),
        Some(0),
        "400s start no run: {runs}"
    );
}

#[test]
fn sync_runs() {
    let app = app();

    // A response node answers; nodes after it do not run.
    let r = app.post(
        "sync-key-0001?n=7",
        &[
            ("content-type", "application/json"),
            ("x-request-id", "req-1"),
        ],
        r#"{"order": {"id": 42}, "status": "SUCCESS"}"#,
    );
    assert_eq!(r.status, 201, "{r:?}\n{}", app.log_text());
    assert_eq!(
        r.json(),
        json!({"code": "SUCCESS", "order": "42", "n": 7, "rid": "req-1"})
    );
    assert_eq!(r.header("x-order"), Some("42"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let record = app.execution(&r.execution());
    assert_eq!(record["status"], json!("resolved"));
    let jobs: Vec<&str> = record["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["type"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(jobs, vec!["condition", "response"], "{record}");
    assert_eq!(record["response"]["status"], json!(201));
    assert_eq!(record["response"]["body"]["order"], json!("42"));
    assert_eq!(record["trigger"]["query"], json!({"n": "7"}));
    assert_eq!(
        record["trigger"]["path"],
        json!("/api/webhook:trigger/sync-key-0001")
    );

    // No response node: 200 with the status and execution id.
    let r = app.post_json(
        "sync-key-0001",
        &json!({"order": {"id": "B"}, "status": "PENDING"}),
    );
    assert_eq!(r.status, 200);
    let id = r.execution();
    assert_eq!(r.json(), json!({"status": "resolved", "execution_id": id}));
    let record = app.execution(&id);
    assert_eq!(record["jobs"][1]["key"], json!("tail"));
    assert_eq!(record["jobs"][1]["result"], json!(2));

    // A failing run: 500 without the internal error text; the record has it.
    let r = app.post("failing-key-01", &[], "");
    assert_eq!(r.status, 500);
    let id = r.execution();
    assert_eq!(r.json(), json!({"status": "failed", "execution_id": id}));
    let record = app.execution(&id);
    assert_eq!(record["status"], json!("failed"));
    assert!(
        record["error"]
            .as_str()
            .unwrap_or_default()
            .contains("node `boom` failed"),
        "{record}"
    );
    assert_eq!(record["jobs"][0]["status"], json!("failed"));
    assert!(!r.body.contains("undefined"));
}

#[test]
fn async_runs_are_acknowledged_then_completed() {
    let app = app();
    let r = app.post(
        "async-key-0001",
        &[
            ("content-type", "application/json"),
            ("authorization", "Bearer secret-token"),
        ],
        r#"{"n": "21"}"#,
    );
    assert_eq!((r.status, r.body.as_str()), (200, "ok"), "{r:?}");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    let record = app.finished(&r.execution(), Duration::from_secs(10));
    assert_eq!(record["status"], json!("resolved"), "{record}");
    assert_eq!(record["jobs"][0]["result"], json!(42));
    // The stored context comes back with secrets redacted.
    assert_eq!(record["trigger"]["body"], json!({"n": "21"}));
    assert_eq!(
        record["trigger"]["headers"]["authorization"],
        json!("[redacted]")
    );
    assert_eq!(record["trigger"]["method"], json!("POST"));
    assert_eq!(record["jobs"][1]["result"], json!("doubled 42"));
    assert_eq!(
        record["response"],
        json!({"status": 200, "headers": {"content-type": "text/plain; charset=utf-8"}, "body": "ok"})
    );

    let r = app.post("async-key-0002", &[], "");
    assert_eq!(r.status, 202);
    let id = r.execution();
    assert_eq!(r.json(), json!({"received": true, "id": id}));
    assert_eq!(r.header("x-kind"), Some("ack"));
    let record = app.finished(&id, Duration::from_secs(10));
    assert_eq!(record["status"], json!("failed"));
    assert_eq!(record["error"], json!("stopped on purpose"));
}

#[test]
fn a_full_queue_answers_503_and_stores_nothing() {
    let app = TestApp::spawn_with(
        &[("async-default.yaml", ASYNC_DEFAULT)],
        Options {
            args: vec!["--queue-capacity".into(), "0".into()],
            ..Options::default()
        },
    );
    let r = app.post_json("async-key-0001", &json!({"n": 1}));
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.header("retry-after"), Some("5"));
    assert_eq!(error_code(&r), "unavailable");
    assert_eq!(
        app.admin_get("/api/executions").json()["executions"],
        json!([])
    );
}

#[test]
fn admin_api() {
    let app = app();
    // Token required.
    let r = app.get("/api/workflows");
    assert_eq!(r.status, 401);
    assert_eq!(error_code(&r), "unauthorized");
    // A Bearer challenge: a Basic one would make a browser open its login
    // dialog over the page.
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"hookflow\"")
    );
    let r = app.admin_get("/api/workflows");
    assert_eq!(r.status, 200);
    let list = r.json();
    let sync = list["workflows"]
        .as_array()
        .expect("list")
        .iter()
        .find(|w| w["id"] == "sync")
        .cloned()
        .expect("sync listed");
    assert_eq!(sync["mode"], json!("sync"));
    assert_eq!(sync["loaded"], json!(true));
    assert_eq!(sync["url"], json!(app.hook("sync-key-0001")));

    let ids: Vec<String> = (0..3)
        .map(|i| {
            app.post_json("sync-key-0001", &json!({"order": {"id": format!("o{i}")}}))
                .execution()
        })
        .collect();
    // Sync records are written just after the answer: wait until all are there.
    for id in &ids {
        app.execution(id);
    }
    let page = app
        .admin_get("/api/executions?workflow=sync&limit=2")
        .json();
    let got: Vec<&str> = page["executions"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|e| e["id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(got, vec![ids[2].as_str(), ids[1].as_str()]);
    let cursor = page["next_cursor"].as_str().expect("cursor").to_string();
    let page = app
        .admin_get(&format!(
            "/api/executions?workflow=sync&limit=2&cursor={cursor}"
        ))
        .json();
    assert_eq!(page["executions"][0]["id"], json!(ids[0]));
    assert_eq!(page["next_cursor"], json!(null));
    assert_eq!(app.admin_get("/api/executions?since=yesterday").status, 400);
    assert_eq!(app.admin_get("/api/executions?limit=5000").status, 400);
    assert_eq!(
        app.admin_get("/api/executions/00000000-0000-0000-0000-000000000000")
            .status,
        404
    );

    // Retry a finished run: a new run with the same input, pointing back.
    let r = app.admin_post(&format!("/api/executions/{}/retry", ids[0]));
    assert_eq!(r.status, 201, "{r:?}");
    let new_id = r.json()["execution_id"].as_str().expect("id").to_string();
    let record = app.finished(&new_id, Duration::from_secs(10));
    assert_eq!(record["retry_of"], json!(ids[0]));
    assert_eq!(record["retries"], json!([]));
    assert_eq!(record["trigger"]["body"]["order"]["id"], json!("o0"));
    // The retried run's record names it.
    let retried = app.admin_get(&format!("/api/executions/{}", ids[0])).json();
    assert_eq!(retried["retries"], json!([new_id]), "{retried}");
    // A wrong token is 401 too.
    let r = app.get(&format!("/api/executions/{new_id}"));
    assert_eq!(r.status, 401);
    assert_ne!(ADMIN, "wrong");
}

#[test]
fn no_admin_token_means_404() {
    let app = TestApp::spawn_with(
        &[("sync.yaml", SYNC)],
        Options {
            // No token at all (an empty one is a start-up error).
            env_remove: vec!["HOOKFLOW_ADMIN_TOKEN".into()],
            ..Options::default()
        },
    );
    for path in ["/api/workflows", "/api/executions"] {
        assert_eq!(app.get(path).status, 404);
        assert_eq!(app.admin_get(path).status, 404);
    }
    // Only the token the server left in its private data folder, for
    // commands on its machine, opens it (`hookflow executions`).
    let access = app.local_access();
    assert_eq!(access["url"], json!(app.base), "{access}");
    let r = app.local_get("/api/executions");
    assert_eq!(r.status, 200, "{r:?}");
    let out = crate::test_cases::hookflow(&[
        "executions",
        "list",
        "--data",
        &app.data_path().display().to_string(),
    ]);
    assert!(out.status.success(), "{out:?}");
}

const ECHO_SYNC: &str = r#"
title: Echo sync
enabled: true
trigger: { type: webhook, mode: sync, key: echo-sync-key-1 }
nodes:
  - type: response
    status: 201
    headers: { X-Echo: "{{ trigger.query.v }}" }
    body: { ok: true }
"#;

const ECHO_ASYNC: &str = r#"
title: Echo async
enabled: true
trigger:
  type: webhook
  key: echo-async-key-1
  response:
    headers: { X-Echo: "{{ trigger.query.v }}" }
    body: { ok: true }
nodes:
  - type: log
    message: ran
"#;

/// A header value a template builds from the request cannot split the
/// answer: a sync run fails with a JSON answer that names its run; an async
/// acknowledgement is refused before anything is stored, so the sender's
/// retry does not start a second run.
#[test]
fn a_header_value_with_a_line_break_fails_cleanly() {
    let app = TestApp::spawn(&[("sync.yaml", ECHO_SYNC), ("async.yaml", ECHO_ASYNC)]);
    let r = app.post("echo-sync-key-1?v=a%0D%0AX-Injected:%201", &[], "");
    assert_eq!(r.status, 500, "{r:?}");
    assert_eq!(r.header("x-injected"), None);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let id = r.execution();
    assert_eq!(r.json()["status"], json!("failed"));
    let record = app.execution(&id);
    assert_eq!(record["status"], json!("failed"), "{record}");
    let error = record["jobs"][0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("`X-Echo` contains a carriage return (CR)"),
        "{record}"
    );
    // A clean value still goes out.
    let r = app.post("echo-sync-key-1?v=fine", &[], "");
    assert_eq!((r.status, r.header("x-echo")), (201, Some("fine")), "{r:?}");

    let r = app.post("echo-async-key-1?v=a%0AX-Injected:%201", &[], "");
    assert_eq!(r.status, 500, "{r:?}");
    assert_eq!(error_code(&r), "internal");
    assert_eq!(r.header("x-injected"), None);
    assert_eq!(
        app.admin_get("/api/executions?workflow=async").json()["executions"],
        json!([]),
        "a refused acknowledgement leaves no run"
    );
    let r = app.post("echo-async-key-1?v=fine", &[], "");
    assert_eq!((r.status, r.header("x-echo")), (200, Some("fine")), "{r:?}");
}

/// Authorization schemes are matched without regard to case (RFC 9110 §11.1).
#[test]
fn auth_schemes_are_case_insensitive() {
    let app = app();
    // shop:s3cret
    for scheme in ["Basic", "basic", "BASIC"] {
        let value = format!("{scheme} c2hvcDpzM2NyZXQ=");
        let r = app.post("auth-key-0001", &[("authorization", &value)], "");
        assert_eq!(r.status, 200, "{scheme}: {r:?}");
    }
    let r = app.post(
        "auth-key-0001",
        &[("authorization", "BASIC c2hvcDp3cm9uZw==")],
        "",
    );
    assert_eq!(r.status, 401, "{r:?}");
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let r = crate::harness::agent()
            .get(format!("http://{}/api/workflows", app.addr()))
            .header("authorization", format!("{scheme} {ADMIN}"))
            .call();
        let r = crate::harness::read(r);
        assert_eq!(r.status, 200, "{scheme}: {r:?}");
    }
}

/// A cursor that no page gave is refused, on both list routes, instead of
/// sending the client back to the first page (or to an empty one).
#[test]
fn a_cursor_that_does_not_read_is_refused() {
    let app = app();
    for path in [
        "/api/executions?cursor=zzz&limit=2",
        "/api/requests?cursor=zzz&limit=2",
    ] {
        let r = app.admin_get(path);
        assert_eq!(r.status, 400, "{path}: {r:?}");
        assert_eq!(error_code(&r), "bad_request", "{path}");
        assert!(r.json()["message"]
            .as_str()
            .unwrap_or_default()
            .contains("next_cursor"));
    }
    // Cursors that pages give still page.
    for _ in 0..3 {
        app.post_json(
            "sync-key-0001",
            &json!({"order": {"id": "A"}, "status": "SUCCESS"}),
        );
        app.post("auth-key-0001", &[], "");
    }
    for list in ["executions", "requests"] {
        let first = app.admin_get(&format!("/api/{list}?limit=2")).json();
        let next = first["next_cursor"].as_str().expect("a next page");
        let second = app.admin_get(&format!("/api/{list}?limit=2&cursor={next}"));
        assert_eq!(second.status, 200, "{list}: {second:?}");
        assert_eq!(
            second.json()[list].as_array().map(Vec::len),
            Some(1),
            "{list}"
        );
    }
}
