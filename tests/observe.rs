//! SPEC §6 "Logging" and §7: `/metrics` moving with the traffic sent,
//! refused requests kept and listed, and what the log says per request.

use crate::harness::{eventually, Options, Resp, TestApp, ADMIN};
use crate::upstream::Upstream;
use serde_json::{json, Value as Json};
use std::io::{Read, Write};
use std::time::Duration;

const FAILING: &str = r#"
title: Failing
enabled: true
trigger: { type: webhook, mode: sync, key: obs-failing-01 }
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
  key: obs-auth-0001
  auth: { basic: { username: shop, password: "{{ secrets.HF_TEST_PASS }}" } }
nodes:
  - type: response
    body: "hello"
"#;

const SMALL: &str = r#"
title: Small bodies
enabled: true
trigger: { type: webhook, mode: sync, key: obs-small-001, max_body: 1KiB }
nodes:
  - type: response
    body: { ok: true }
"#;

const ASYNC: &str = r#"
title: Async
enabled: true
trigger: { type: webhook, key: obs-async-001 }
nodes:
  - type: log
    message: ran
"#;

const DISABLED: &str =
    "title: Off\nenabled: false\ntrigger: { type: webhook, key: obs-off-00001 }\n";

const BROKEN: &str = "title: [\n";

/// A sync workflow whose request node calls `upstream`.
fn calling(upstream: &str) -> String {
    format!(
        "title: Calls\nenabled: true\ntrigger: {{ type: webhook, mode: sync, key: obs-calls-001 }}\nnodes:\n  - key: call\n    type: request\n    url: \"{upstream}/status/200\"\n  - type: response\n    body: {{ ok: true }}\n"
    )
}

/// Every family of SPEC §7 with its type.
const FAMILIES: [(&str, &str); 13] = [
    ("hookflow_webhook_requests_total", "counter"),
    ("hookflow_webhook_request_duration_seconds", "histogram"),
    ("hookflow_refused_requests_total", "counter"),
    ("hookflow_runs_total", "counter"),
    ("hookflow_run_duration_seconds", "histogram"),
    ("hookflow_runs", "gauge"),
    ("hookflow_request_node_tries_total", "counter"),
    ("hookflow_store_commit_duration_seconds", "histogram"),
    ("hookflow_workflows", "gauge"),
    ("process_resident_memory_bytes", "gauge"),
    ("process_cpu_seconds_total", "counter"),
    ("process_open_fds", "gauge"),
    ("process_start_time_seconds", "gauge"),
];

fn get(url: &str, token: Option<&str>) -> Resp {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .new_agent();
    let mut req = agent.get(url);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let mut resp = req
        .call()
        .unwrap_or_else(|e| panic!("GET {url} failed: {e}"));
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                v.to_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let mut body = String::new();
    let _ = resp.body_mut().as_reader().read_to_string(&mut body);
    Resp {
        status,
        headers,
        body,
    }
}

/// The value of one series (`name{labels}` exactly as written), 0 when absent.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn assert_families(text: &str) {
    for (name, kind) in FAMILIES {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no HELP of {name}:\n{text}"
        );
        assert!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "no TYPE of {name}:\n{text}"
        );
    }
}

/// The address `--metrics-listen 127.0.0.1:0` got, from the banner.
fn metrics_url(app: &TestApp) -> String {
    app.banner
        .iter()
        .find_map(|l| l.strip_prefix("metrics on "))
        .unwrap_or_else(|| panic!("no metrics address in the banner: {:?}", app.banner))
        .trim()
        .to_string()
}

fn scrape(app: &TestApp) -> String {
    let r = app.admin_get("/metrics");
    assert_eq!(r.status, 200, "{r:?}");
    r.body
}

#[test]
fn metrics_list_every_family_and_move_by_exactly_what_was_sent() {
    let up = Upstream::start();
    let app = TestApp::spawn_with(
        &[
            ("calls.yaml", &calling(&up.base)),
            ("failing.yaml", FAILING),
            ("auth.yaml", AUTH),
            ("async.yaml", ASYNC),
            ("off.yaml", DISABLED),
            ("broken.yaml", BROKEN),
        ],
        Options {
            args: vec!["--metrics-listen".into(), "127.0.0.1:0".into()],
            env: vec![("HF_TEST_PASS".into(), "s3cret".into())],
            ..Options::default()
        },
    );
    // Behind the admin token on the main listener.
    let r = app.get("/metrics");
    assert_eq!(r.status, 401, "{r:?}");
    let r = get(&format!("{}/metrics", app.base), Some("wrong-token"));
    assert_eq!(r.status, 401, "{r:?}");
    let r = app.admin_get("/metrics");
    assert_eq!(r.status, 200, "{r:?}");
    let content_type = r.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    // Before any traffic: every family, with HELP and TYPE.
    let before = r.body;
    assert_families(&before);
    assert_eq!(value(&before, "hookflow_workflows{state=\"loaded\"}"), 4.0);
    assert_eq!(value(&before, "hookflow_workflows{state=\"invalid\"}"), 1.0);
    assert_eq!(
        value(&before, "hookflow_workflows{state=\"disabled\"}"),
        1.0
    );
    assert!(
        value(&before, "process_resident_memory_bytes") > 1e6,
        "{before}"
    );
    // No token on the metrics listener.
    let plain = get(&metrics_url(&app), None);
    assert_eq!(plain.status, 200, "{plain:?}");
    assert_families(&plain.body);

    // The traffic.
    for _ in 0..3 {
        let r = app.post_json("obs-calls-001", &json!({}));
        assert_eq!(r.status, 200, "{r:?}\n{}", app.log_text());
    }
    for _ in 0..2 {
        assert_eq!(app.post_json("obs-failing-01", &json!({})).status, 500);
    }
    assert_eq!(app.post_json("obs-auth-0001", &json!({})).status, 401);
    assert_eq!(app.post_json("no-such-key-1", &json!({})).status, 404);
    let r = app.post_json("obs-async-001", &json!({}));
    assert_eq!(r.status, 200, "{r:?}");
    app.finished(&r.execution(), Duration::from_secs(10));

    let after = eventually(Duration::from_secs(10), "runs counted", || {
        let text = scrape(&app);
        (value(
            &text,
            "hookflow_runs_total{workflow=\"async\",status=\"resolved\"}",
        ) == 1.0
            && value(&text, "hookflow_runs{state=\"running\"}") == 0.0)
            .then_some(text)
    });
    let moved = |series: &str| value(&after, series) - value(&before, series);
    let expected = [
        (
            "hookflow_webhook_requests_total{workflow=\"calls\",status=\"200\"}",
            3.0,
        ),
        (
            "hookflow_webhook_requests_total{workflow=\"failing\",status=\"500\"}",
            2.0,
        ),
        (
            "hookflow_webhook_requests_total{workflow=\"auth\",status=\"401\"}",
            1.0,
        ),
        (
            "hookflow_webhook_requests_total{workflow=\"\",status=\"404\"}",
            1.0,
        ),
        (
            "hookflow_webhook_requests_total{workflow=\"async\",status=\"200\"}",
            1.0,
        ),
        (
            "hookflow_webhook_request_duration_seconds_count{workflow=\"calls\"}",
            3.0,
        ),
        (
            "hookflow_webhook_request_duration_seconds_count{workflow=\"failing\"}",
            2.0,
        ),
        (
            "hookflow_webhook_request_duration_seconds_count{workflow=\"auth\"}",
            1.0,
        ),
        (
            "hookflow_webhook_request_duration_seconds_count{workflow=\"\"}",
            1.0,
        ),
        (
            "hookflow_refused_requests_total{workflow=\"auth\",reason=\"unauthorized\"}",
            1.0,
        ),
        (
            "hookflow_refused_requests_total{workflow=\"\",reason=\"not_found\"}",
            1.0,
        ),
        (
            "hookflow_runs_total{workflow=\"calls\",status=\"resolved\"}",
            3.0,
        ),
        (
            "hookflow_runs_total{workflow=\"failing\",status=\"failed\"}",
            2.0,
        ),
        (
            "hookflow_runs_total{workflow=\"async\",status=\"resolved\"}",
            1.0,
        ),
        (
            "hookflow_run_duration_seconds_count{workflow=\"calls\"}",
            3.0,
        ),
        (
            "hookflow_run_duration_seconds_count{workflow=\"failing\"}",
            2.0,
        ),
        (
            "hookflow_request_node_tries_total{workflow=\"calls\",node=\"call\",outcome=\"2xx\"}",
            3.0,
        ),
    ];
    for (series, n) in expected {
        assert_eq!(moved(series), n, "{series} in\n{after}");
    }
    assert_eq!(up.hits_on("/status/200").len(), 3);
    // Refused requests start no run and try no node.
    assert_eq!(
        moved("hookflow_runs_total{workflow=\"auth\",status=\"resolved\"}"),
        0.0
    );
    // The async run was accepted by a durable write.
    assert!(
        moved("hookflow_store_commit_duration_seconds_count") >= 1.0,
        "{after}"
    );
    assert_eq!(value(&after, "hookflow_runs{state=\"queued\"}"), 0.0);
    assert!(
        !after.contains("password") && !after.contains("s3cret"),
        "{after}"
    );
}

#[test]
fn without_an_admin_token_metrics_are_only_on_their_own_listener() {
    let app = TestApp::spawn_with(
        &[("auth.yaml", AUTH)],
        Options {
            args: vec!["--metrics-listen".into(), "127.0.0.1:0".into()],
            env: vec![("HF_TEST_PASS".into(), "s3cret".into())],
            env_remove: vec!["HOOKFLOW_ADMIN_TOKEN".into()],
            ..Options::default()
        },
    );
    assert_eq!(app.get("/metrics").status, 404);
    assert_eq!(app.admin_get("/metrics").status, 404);
    let r = get(&metrics_url(&app), None);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r
        .header("content-type")
        .unwrap_or_default()
        .starts_with("text/plain; version=0.0.4"));
    assert_families(&r.body);
    // Only /metrics there.
    let url = metrics_url(&app).replace("/metrics", "/api/workflows");
    assert_eq!(get(&url, Some(ADMIN)).status, 404);
}

/// Sends a head declaring a body and only part of it; returns the answer's status.
fn dribble(app: &TestApp, key: &str) -> u16 {
    let mut stream = std::net::TcpStream::connect(app.addr()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let head = format!(
        "POST /api/webhook:trigger/{key} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\nX-Slow: yes\r\n\r\n{{\"a\":"
    );
    stream.write_all(head.as_bytes()).expect("write");
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    while !received.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&received);
    text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn requests(app: &TestApp, query: &str) -> Json {
    let r = app.admin_get(&format!("/api/requests{query}"));
    assert_eq!(r.status, 200, "{r:?}");
    let j = r.json();
    assert!(
        !r.body.contains("c2hvcDp3cm9uZw") && !r.body.contains("tok-123"),
        "a secret header value in the answer: {}",
        r.body
    );
    j
}

#[test]
fn refused_requests_are_kept_with_their_reasons_and_no_secret_headers() {
    let app = TestApp::spawn_with(
        &[("auth.yaml", AUTH), ("small.yaml", SMALL)],
        Options {
            args: vec!["--read-timeout".into(), "1s".into()],
            env: vec![("HF_TEST_PASS".into(), "s3cret".into())],
            ..Options::default()
        },
    );
    assert_eq!(
        requests(&app, ""),
        json!({"requests": [], "next_cursor": null})
    );
    // A wrong password (shop:wrong), with a secret-bearing header and a plain one.
    let r = app.post(
        "obs-auth-0001",
        &[
            ("authorization", "Basic c2hvcDp3cm9uZw=="),
            ("x-api-token", "tok-123"),
            ("x-trace", "t1"),
            ("content-type", "application/json"),
        ],
        "{}",
    );
    assert_eq!(r.status, 401, "{r:?}");
    let big = "x".repeat(2048);
    let r = app.post("obs-small-001", &[("content-type", "text/plain")], &big);
    assert_eq!(r.status, 413, "{r:?}");
    // An unknown key is not a known workflow's: not kept.
    assert_eq!(app.post_json("no-such-key-1", &json!({})).status, 404);
    // A body that does not arrive in time.
    assert_eq!(dribble(&app, "obs-small-001"), 408);

    let all = eventually(Duration::from_secs(10), "three refused requests", || {
        let j = requests(&app, "");
        (j["requests"].as_array().map_or(0, Vec::len) == 3).then_some(j)
    });
    let rows = all["requests"].as_array().cloned().unwrap_or_default();
    let reasons: Vec<&str> = rows.iter().filter_map(|r| r["reason"].as_str()).collect();
    assert_eq!(
        reasons,
        ["request_timeout", "payload_too_large", "unauthorized"],
        "newest first: {all:#}"
    );
    let unauthorized = &rows[2];
    assert_eq!(unauthorized["workflow"], "auth");
    assert_eq!(unauthorized["status"], 401);
    assert_eq!(
        unauthorized["error"],
        "valid Basic credentials are required"
    );
    assert_eq!(unauthorized["method"], "POST");
    assert_eq!(unauthorized["headers"]["authorization"], "[redacted]");
    assert_eq!(unauthorized["headers"]["x-api-token"], "[redacted]");
    assert_eq!(unauthorized["headers"]["x-trace"], "t1");
    assert!(
        unauthorized["remote_addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{unauthorized}"
    );
    assert!(unauthorized["at"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    let too_large = &rows[1];
    assert_eq!(too_large["workflow"], "small");
    assert_eq!(too_large["status"], 413);
    assert_eq!(too_large["error"], "the body is larger than 1024 bytes");
    assert_eq!(too_large["body_size"], 2048);
    assert!(too_large.get("body").is_none(), "bodies are not kept");
    assert_eq!(rows[0]["status"], 408);
    assert_eq!(rows[0]["headers"]["x-slow"], "yes");

    // Filters and paging.
    let only = requests(&app, "?reason=unauthorized");
    assert_eq!(only["requests"].as_array().map(Vec::len), Some(1));
    assert_eq!(only["requests"][0]["workflow"], "auth");
    let small = requests(&app, "?workflow=small");
    let statuses: Vec<u64> = small["requests"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["status"].as_u64()).collect())
        .unwrap_or_default();
    assert_eq!(statuses, [408, 413]);
    let first = requests(&app, "?limit=2");
    assert_eq!(first["requests"].as_array().map(Vec::len), Some(2));
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let second = requests(&app, &format!("?limit=2&cursor={cursor}"));
    assert_eq!(second["requests"][0]["reason"], "unauthorized");
    assert_eq!(second["next_cursor"], Json::Null);
    let future = requests(&app, "?since=2999-01-01T00:00:00Z");
    assert_eq!(future["requests"], json!([]));
    assert_eq!(app.admin_get("/api/requests?since=yesterday").status, 400);
    assert_eq!(app.get("/api/requests").status, 401);
}

const OK: &str = r#"
title: Ok
enabled: true
trigger: { type: webhook, mode: sync, key: obs-ok-000001 }
nodes:
  - type: response
    body: { ok: true }
"#;

/// Lines of the log written since `from` bytes.
fn new_lines(app: &TestApp, from: usize) -> Vec<String> {
    app.log_text()
        .get(from..)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn the_default_log_says_nothing_of_a_successful_webhook() {
    let app = TestApp::spawn_with(
        &[("ok.yaml", OK), ("auth.yaml", AUTH)],
        Options {
            env: vec![("HF_TEST_PASS".into(), "s3cret".into())],
            ..Options::default()
        },
    );
    let start = app.log_text().len();
    for _ in 0..5 {
        assert_eq!(app.post_json("obs-ok-000001", &json!({})).status, 200);
    }
    // A refused request is one line, with its reason.
    assert_eq!(app.post_json("obs-auth-0001", &json!({})).status, 401);
    eventually(Duration::from_secs(5), "the refusal's line", || {
        new_lines(&app, start)
            .iter()
            .any(|l| l.contains("unauthorized"))
            .then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    let lines = new_lines(&app, start);
    assert_eq!(lines.len(), 1, "only the refusal's line: {lines:#?}");
    assert!(
        lines[0].contains("Request refused.") && lines[0].contains("workflow=\"auth\""),
        "{lines:#?}"
    );
}

#[test]
fn the_access_log_writes_one_line_per_webhook_request() {
    let app = TestApp::spawn_with(
        &[("ok.yaml", OK), ("auth.yaml", AUTH)],
        Options {
            args: vec!["--access-log".into()],
            env: vec![("HF_TEST_PASS".into(), "s3cret".into())],
            ..Options::default()
        },
    );
    let start = app.log_text().len();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = app.post_json("obs-ok-000001", &json!({}));
        assert_eq!(r.status, 200);
        ids.push(r.execution());
    }
    assert_eq!(app.post_json("obs-auth-0001", &json!({})).status, 401);
    let access = |lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l.contains("Webhook request."))
            .cloned()
            .collect()
    };
    eventually(Duration::from_secs(5), "four access lines", || {
        (access(&new_lines(&app, start)).len() >= 4).then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    let lines = access(&new_lines(&app, start));
    assert_eq!(lines.len(), 4, "{lines:#?}");
    for id in &ids {
        let line = lines
            .iter()
            .find(|l| l.contains(id.as_str()))
            .unwrap_or_else(|| panic!("no line for {id}: {lines:#?}"));
        assert!(
            line.contains("workflow=\"ok\"") && line.contains("status=200"),
            "{line}"
        );
        assert!(line.contains("duration_ms="), "{line}");
    }
    assert!(lines
        .iter()
        .any(|l| l.contains("workflow=\"auth\"") && l.contains("status=401")));
}

const WAITS: &str = "title: Waits\nenabled: true\ntrigger: { type: webhook, key: obs-waits-001 }\nnodes:\n  - key: pause\n    type: delay\n    duration: 1h\n";

#[test]
fn waiting_runs_are_counted_and_counted_again_after_a_restart() {
    let mut app = TestApp::spawn(&[("waits.yaml", WAITS)]);
    for _ in 0..2 {
        assert_eq!(app.post_json("obs-waits-001", &json!({})).status, 200);
    }
    let gauge = |app: &TestApp, state: &str| {
        value(&scrape(app), &format!("hookflow_runs{{state=\"{state}\"}}"))
    };
    eventually(Duration::from_secs(10), "two waiting runs", || {
        (gauge(&app, "waiting") == 2.0).then_some(())
    });
    assert_eq!(gauge(&app, "running"), 0.0);
    assert_eq!(gauge(&app, "queued"), 0.0);
    app.kill9();
    app.start();
    eventually(
        Duration::from_secs(10),
        "the waiting runs counted again",
        || (gauge(&app, "waiting") == 2.0).then_some(()),
    );
    assert_eq!(gauge(&app, "running"), 0.0);
}
