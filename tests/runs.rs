//! Runs over time: timeouts, concurrency, graceful shutdown, crash recovery
//! and hot reload. Upstreams are real local HTTP servers.

use crate::harness::{eventually, store_of, Backing, Options, TestApp};
use crate::upstream::Upstream;
use serde_json::json;
use std::time::{Duration, Instant};

fn slow_sync(upstream: &Upstream, key: &str, sleep_ms: u64, extra_trigger: &str) -> String {
    format!(
        r#"
title: Slow sync
enabled: true
options: {{ timeout: 500ms }}
trigger:
  type: webhook
  mode: sync
  key: {key}
{extra_trigger}
nodes:
  - key: slow
    type: request
    method: GET
    url: "{base}/sleep/{sleep_ms}"
  - type: response
    body: {{ done: true }}
"#,
        base = upstream.base
    )
}

#[test]
fn sync_timeout_answers_408_and_aborts_the_run() {
    let upstream = Upstream::start();
    let app = TestApp::spawn(&[(
        "slow.yaml",
        &slow_sync(&upstream, "slow-sync-key1", 3000, ""),
    )]);
    let clock = Instant::now();
    let r = app.post("slow-sync-key1", &[], "");
    let took = clock.elapsed();
    assert_eq!(r.status, 408, "{r:?}");
    assert!(
        took < Duration::from_millis(2500),
        "answered after {took:?}"
    );
    let id = r.execution();
    assert_eq!(
        r.json(),
        json!({"status": "aborted", "reason": "timeout", "execution_id": id})
    );
    let record = app.finished(&id, Duration::from_secs(10));
    assert_eq!(record["status"], json!("aborted"), "{record}");
    assert_eq!(record["response"]["status"], json!(408));
}

#[test]
fn timeout_response_is_sent_and_the_run_goes_on() {
    let upstream = Upstream::start();
    let extra = "  timeout_response:\n    status: 200\n    body: accepted\n";
    let app = TestApp::spawn(&[(
        "slow.yaml",
        &slow_sync(&upstream, "slow-sync-key2", 1200, extra),
    )]);
    let r = app.post("slow-sync-key2", &[], "");
    assert_eq!((r.status, r.body.as_str()), (200, "accepted"), "{r:?}");
    let record = app.finished(&r.execution(), Duration::from_secs(10));
    assert_eq!(record["status"], json!("resolved"), "{record}");
    assert_eq!(record["jobs"][0]["result"]["body"], json!({"slept": 1200}));
    // The record keeps the answer that was sent, not the later response node's.
    assert_eq!(record["response"]["body"], json!("accepted"));
}

/// A sync run busy computing (a loop of 200,000 calculations, no request
/// node) still answers at its timeout: with `timeout_response` the caller
/// gets it and the run goes on to its end; without, 408 and the run is
/// aborted. Before, the run never gave its task back, so the timer beside
/// it fired only when it had finished: 200 `done` after the whole loop.
#[test]
fn a_sync_run_busy_computing_answers_at_its_timeout() {
    let busy = |key: &str, extra: &str| {
        format!(
            "title: Busy\nenabled: true\noptions: {{ timeout: 50ms }}\ntrigger:\n  type: webhook\n  mode: sync\n  key: {key}\n{extra}nodes:\n  - key: spin\n    type: loop\n    over: \"200000\"\n    max_iterations: 1000000\n    do:\n      - {{ key: n, type: calculation, expression: \"loop.item * 2\" }}\n  - type: response\n    body: done\n"
        )
    };
    let app = TestApp::spawn(&[
        (
            "later.yaml",
            busy(
                "busy-sync-later1",
                "  timeout_response: { status: 202, body: later }\n",
            )
            .as_str(),
        ),
        ("cut.yaml", busy("busy-sync-cut001", "").as_str()),
    ]);
    let r = app.post("busy-sync-later1", &[], "");
    assert_eq!((r.status, r.body.as_str()), (202, "later"), "{r:?}");
    let record = app.finished(&r.execution(), Duration::from_secs(60));
    assert_eq!(record["status"], json!("resolved"), "{record}");
    let r = app.post("busy-sync-cut001", &[], "");
    assert_eq!(r.status, 408, "{r:?}");
    let record = app.finished(&r.execution(), Duration::from_secs(60));
    assert_eq!(record["status"], json!("aborted"), "{record}");
}

fn async_calls(upstream: &Upstream, key: &str, path: &str) -> String {
    format!(
        r#"
title: Async calls
enabled: true
trigger: {{ type: webhook, key: {key} }}
nodes:
  - key: first
    type: calculation
    expression: trigger.body.n
  - key: call
    type: request
    url: "{base}{path}"
    body: {{ n: "{{{{ nodes.first }}}}" }}
  - key: last
    type: calculation
    expression: nodes.call.status
"#,
        base = upstream.base
    )
}

#[test]
fn async_runs_execute_concurrently() {
    let upstream = Upstream::start();
    let app = TestApp::spawn_with(
        &[(
            "calls.yaml",
            &async_calls(&upstream, "async-calls-k1", "/sleep/1000"),
        )],
        Options {
            args: vec!["--workers".into(), "4".into()],
            ..Options::default()
        },
    );
    let clock = Instant::now();
    let ids: Vec<String> = (0..4)
        .map(|n| {
            app.post_json("async-calls-k1", &json!({"n": n}))
                .execution()
        })
        .collect();
    for id in &ids {
        let record = app.finished(id, Duration::from_secs(10));
        assert_eq!(record["status"], json!("resolved"), "{record}");
    }
    let took = clock.elapsed();
    assert!(
        took < Duration::from_millis(2500),
        "4 runs of 1 s with 4 workers took {took:?}"
    );
    assert_eq!(upstream.hits_on("/sleep/1000").len(), 4);
}

#[test]
fn graceful_shutdown_answers_in_flight_requests_and_keeps_runs() {
    graceful_shutdown_answers_in_flight_requests_and_keeps_runs_on(Backing::Sled);
}

#[test]
fn graceful_shutdown_answers_in_flight_requests_and_keeps_runs_on_postgres() {
    graceful_shutdown_answers_in_flight_requests_and_keeps_runs_on(Backing::Postgres);
}

fn graceful_shutdown_answers_in_flight_requests_and_keeps_runs_on(backing: Backing) {
    let upstream = Upstream::start();
    let mut app = TestApp::spawn_with(
        &[
            (
                "slow.yaml",
                &slow_sync(&upstream, "slow-sync-key3", 1000, "").replace("500ms", "5s"),
            ),
            (
                "calls.yaml",
                &async_calls(&upstream, "async-calls-k2", "/sleep/4000"),
            ),
        ],
        Options {
            args: vec!["--shutdown-grace".into(), "2s".into()],
            store: store_of(backing),
            ..Options::default()
        },
    );
    // An async run that will outlive the grace period.
    let long_run = app
        .post_json("async-calls-k2", &json!({"n": 1}))
        .execution();
    eventually(
        Duration::from_secs(5),
        "the long run to call upstream",
        || (!upstream.hits_on("/sleep/4000").is_empty()).then_some(()),
    );
    // A sync request in flight when SIGTERM arrives.
    let base = app.base.clone();
    let in_flight = std::thread::spawn(move || {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        let mut r = agent
            .post(format!("{base}/api/webhook:trigger/slow-sync-key3"))
            .send_empty()
            .expect("in-flight request");
        (
            r.status().as_u16(),
            r.body_mut().read_to_string().unwrap_or_default(),
        )
    });
    eventually(
        Duration::from_secs(5),
        "the sync request to reach upstream",
        || (!upstream.hits_on("/sleep/1000").is_empty()).then_some(()),
    );
    let clock = Instant::now();
    let mut child = app.sigterm();
    // While the grace runs, a new request is told to come back (SPEC §5)
    // rather than finding no listener.
    eventually(Duration::from_secs(5), "the shutdown to begin", || {
        app.log_text().contains("Shutting down.").then_some(())
    });
    let r = app.post_json("slow-sync-key3", &json!({}));
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.json()["error"], json!("unavailable"), "{r:?}");
    assert!(r.header("retry-after").is_some(), "{r:?}");
    // A load balancer polling /healthz stops sending here.
    let health = app.get("/healthz");
    assert_eq!(health.status, 503, "{health:?}");
    assert_eq!(
        health.json()["status"],
        json!("shutting_down"),
        "{health:?}"
    );
    let (status, body) = in_flight.join().expect("join");
    assert_eq!((status, body.as_str()), (200, r#"{"done":true}"#));
    let exit = child.wait().expect("wait");
    let took = clock.elapsed();
    assert!(exit.success(), "exit status {exit:?}\n{}", app.log_text());
    assert!(took < Duration::from_millis(3900), "shutdown took {took:?}");
    // The long run was still going: it stays on disk and completes after a restart.
    app.start();
    let record = app.finished(&long_run, Duration::from_secs(15));
    assert_eq!(
        record["status"],
        json!("resolved"),
        "{record}\n{}",
        app.log_text()
    );
    assert_eq!(
        upstream.hits_on("/sleep/4000").len(),
        2,
        "the interrupted request node ran again"
    );
    let keys: Vec<String> = upstream
        .hits_on("/sleep/4000")
        .iter()
        .map(|h| h.headers["idempotency-key"].clone())
        .collect();
    assert_eq!(
        keys[0], keys[1],
        "a re-run request carries the same Idempotency-Key"
    );
    assert_eq!(keys[0], format!("{long_run}-call"));
}

/// Sync runs that go on without a caller (the rest of a run answered by
/// its `timeout_response`, a retry whose id was answered at once) have the
/// shutdown's grace like any run, and one still going after it is recorded
/// as failed: an id someone was given never disappears.
#[test]
fn graceful_shutdown_waits_for_sync_runs_without_a_caller() {
    graceful_shutdown_waits_for_sync_runs_without_a_caller_on(Backing::Sled);
}

#[test]
fn graceful_shutdown_waits_for_sync_runs_without_a_caller_on_postgres() {
    graceful_shutdown_waits_for_sync_runs_without_a_caller_on(Backing::Postgres);
}

fn graceful_shutdown_waits_for_sync_runs_without_a_caller_on(backing: Backing) {
    let upstream = Upstream::start();
    let answered = "  timeout_response: { status: 202, body: later }\n";
    let late = slow_sync(&upstream, "late-sync-0001", 1500, answered).replace("500ms", "300ms");
    let stuck = slow_sync(&upstream, "stuck-sync-001", 9000, answered).replace("500ms", "300ms");
    let again = slow_sync(&upstream, "again-sync-001", 10, answered).replace("500ms", "300ms");
    let mut app = TestApp::spawn_with(
        &[
            ("late.yaml", &late),
            ("stuck.yaml", &stuck),
            ("again.yaml", &again),
        ],
        Options {
            args: vec!["--shutdown-grace".into(), "3s".into()],
            store: store_of(backing),
            ..Options::default()
        },
    );
    // A run to retry, finished; then its workflow made slow.
    let first = app.post("again-sync-001", &[], "");
    assert_eq!(first.status, 200, "{first:?}");
    let first_id = first.execution();
    let version = |app: &TestApp| app.workflow_version("again");
    let v1 = version(&app);
    app.write_workflow("again.yaml", &again.replace("/sleep/10", "/sleep/9000"));
    eventually(Duration::from_secs(10), "the slow version", || {
        (version(&app) != v1).then_some(())
    });
    let retry = app.admin_post_json(
        &format!("/api/executions/{first_id}/retry"),
        &json!({"version": "current"}),
    );
    assert_eq!(retry.status, 201, "{retry:?}");
    let retry_id = retry.json()["execution_id"]
        .as_str()
        .expect("an id")
        .to_string();
    // Two runs answered by their timeout, going on.
    let late_run = app.post("late-sync-0001", &[], "");
    assert_eq!(late_run.status, 202, "{late_run:?}");
    let stuck_run = app.post("stuck-sync-001", &[], "");
    assert_eq!(stuck_run.status, 202, "{stuck_run:?}");
    eventually(Duration::from_secs(5), "both slow calls to start", || {
        (upstream.hits_on("/sleep/9000").len() == 2).then_some(())
    });

    let clock = Instant::now();
    let mut child = app.sigterm();
    let exit = child.wait().expect("wait");
    let took = clock.elapsed();
    assert!(exit.success(), "exit status {exit:?}\n{}", app.log_text());
    // The grace was given (the late run needed ~1.2 s of it) and kept to.
    assert!(
        took >= Duration::from_millis(1000) && took < Duration::from_millis(5500),
        "shutdown took {took:?}\n{}",
        app.log_text()
    );
    app.start();
    let done = app.execution(&late_run.execution());
    assert_eq!(done["status"], json!("resolved"), "{done}");
    for id in [stuck_run.execution(), retry_id.clone()] {
        let record = app.execution(&id);
        assert_eq!(record["status"], json!("failed"), "{record}");
        let error = record["error"].as_str().unwrap_or_default();
        assert!(error.contains("the server stopped"), "{record}");
    }
    assert_eq!(app.execution(&retry_id)["retry_of"], json!(first_id));
    assert_eq!(app.execution(&first_id)["retries"], json!([retry_id]));
}

#[test]
fn acknowledged_runs_survive_kill_9() {
    acknowledged_runs_survive_kill_9_on(Backing::Sled);
}

#[test]
fn acknowledged_runs_survive_kill_9_on_postgres() {
    acknowledged_runs_survive_kill_9_on(Backing::Postgres);
}

fn acknowledged_runs_survive_kill_9_on(backing: Backing) {
    let upstream = Upstream::start();
    let mut app = TestApp::spawn_with(
        &[(
            "calls.yaml",
            &async_calls(&upstream, "async-calls-k3", "/sleep/20"),
        )],
        Options {
            args: vec!["--workers".into(), "2".into()],
            store: store_of(backing),
            ..Options::default()
        },
    );
    let key_url = app.hook("async-calls-k3");
    let mut senders = Vec::new();
    for t in 0..8 {
        let url = key_url.clone();
        senders.push(std::thread::spawn(move || {
            let agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .new_agent();
            let mut acked = Vec::new();
            for i in 0..40 {
                let body = json!({"n": t * 100 + i}).to_string();
                let Ok(r) = agent
                    .post(&url)
                    .header("content-type", "application/json")
                    .send(&body)
                else {
                    break;
                };
                if r.status().as_u16() == 200 {
                    if let Some(id) = r
                        .headers()
                        .get("x-hookflow-execution")
                        .and_then(|v| v.to_str().ok())
                    {
                        acked.push(id.to_string());
                    }
                }
            }
            acked
        }));
    }
    let acked: Vec<String> = senders
        .into_iter()
        .flat_map(|s| s.join().expect("sender"))
        .collect();
    assert_eq!(
        acked.len(),
        320,
        "every request was acknowledged before the kill"
    );
    app.kill9();
    let before = upstream.hits_on("/sleep/20").len();
    assert!(
        before < 320,
        "the kill should interrupt the backlog ({before} of 320 already done)"
    );
    app.start();
    for id in &acked {
        let record = app.finished(id, Duration::from_secs(60));
        assert_eq!(record["status"], json!("resolved"), "{record}");
        assert_eq!(record["jobs"].as_array().map(Vec::len), Some(3));
    }
}

#[test]
fn hot_reload_swaps_good_files_and_keeps_the_last_good_version() {
    let v1 = "title: Hot\nenabled: true\ntrigger: { type: webhook, mode: sync, key: hot-reload-k1 }\nnodes:\n  - type: response\n    body: v1\n";
    let app = TestApp::spawn(&[("hot.yaml", v1)]);
    assert_eq!(app.post("hot-reload-k1", &[], "").body, "v1");
    app.write_workflow("hot.yaml", &v1.replace("v1", "v2"));
    eventually(Duration::from_secs(10), "v2 to be served", || {
        (app.post("hot-reload-k1", &[], "").body == "v2").then_some(())
    });
    // A broken edit keeps v2 and reports the problem with its position.
    app.write_workflow(
        "hot.yaml",
        &v1.replace("v1", "v2")
            .replace("type: response", "type: responze"),
    );
    eventually(
        Duration::from_secs(10),
        "the reload to report the error",
        || {
            app.log_text()
                .contains("hot.yaml:5:11: unknown node type `responze`")
                .then_some(())
        },
    );
    assert_eq!(app.post("hot-reload-k1", &[], "").body, "v2");
    let listing = app.admin_get("/api/workflows").json();
    let hot = &listing["workflows"][0];
    assert_eq!(hot["loaded"], json!(true));
    assert_eq!(hot["diagnostics"][0]["line"], json!(5));
    // A new file is served; a removed file is not.
    app.write_workflow(
        "new.yaml",
        &v1.replace("hot-reload-k1", "hot-reload-k2")
            .replace("v1", "new"),
    );
    eventually(Duration::from_secs(10), "the new workflow", || {
        (app.post("hot-reload-k2", &[], "").body == "new").then_some(())
    });
    std::fs::remove_file(app.workflows.path().join("new.yaml")).expect("remove");
    eventually(
        Duration::from_secs(10),
        "the removed workflow to go",
        || (app.post("hot-reload-k2", &[], "").status == 404).then_some(()),
    );
}

#[test]
fn queued_runs_finish_on_the_version_they_started_with() {
    queued_runs_finish_on_the_version_they_started_with_on(Backing::Sled);
}

#[test]
fn queued_runs_finish_on_the_version_they_started_with_on_postgres() {
    queued_runs_finish_on_the_version_they_started_with_on(Backing::Postgres);
}

fn queued_runs_finish_on_the_version_they_started_with_on(backing: Backing) {
    let upstream = Upstream::start();
    let v1 = format!(
        "title: Versioned\nenabled: true\ntrigger: {{ type: webhook, key: versioned-k1 }}\nnodes:\n  - type: request\n    url: \"{}/sleep/1500\"\n  - key: which\n    type: calculation\n    expression: \"'v1'\"\n",
        upstream.base
    );
    let app = TestApp::spawn_with(
        &[("versioned.yaml", &v1)],
        Options {
            args: vec!["--workers".into(), "1".into()],
            store: store_of(backing),
            ..Options::default()
        },
    );
    let first = app.post("versioned-k1", &[], "").execution();
    let second = app.post("versioned-k1", &[], "").execution();
    app.write_workflow("versioned.yaml", &v1.replace("'v1'", "'v2'"));
    eventually(Duration::from_secs(10), "the edit to load", || {
        let l = app.admin_get("/api/workflows").json();
        (l["workflows"][0]["version"] != app.execution(&first)["version"]).then_some(())
    });
    let third = app.post("versioned-k1", &[], "").execution();
    for (id, expected) in [(&first, "v1"), (&second, "v1"), (&third, "v2")] {
        let record = app.finished(id, Duration::from_secs(20));
        assert_eq!(
            record["jobs"][1]["result"],
            json!(expected),
            "{id}: {record}"
        );
    }
}
