//! No panic is reachable from a request, a workflow file or a flag (SPEC
//! §5): a bad time or duration is an error of that run, file or flag.

use crate::harness::{Options, TestApp};
use serde_json::json;
use std::process::Command;
use std::time::Duration;

const UNTIL: &str = r#"title: Waits until a time the sender gives
enabled: true
trigger: { type: webhook, mode: async, key: until-from-request-01 }
nodes:
  - { key: pause, type: delay, until: "{{ trigger.body.at }}" }
  - { key: after, type: log, message: "woke" }
"#;

/// A multi-byte character where the time's offset belongs used to split a
/// character inside the parser: a panic in the worker, and the run stayed
/// queued and panicked again after every restart. Now the run fails once,
/// with the reason, and a restart brings nothing back.
#[test]
fn a_multi_byte_until_fails_the_run_once_and_the_server_restarts_clean() {
    let mut app = TestApp::spawn(&[("until.yaml", UNTIL)]);
    let r = app.post_json(
        "until-from-request-01",
        &json!({"at": "2026-11-22T10:00:00+时00"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.execution();
    let record = app.finished(&id, Duration::from_secs(10));
    assert_eq!(record["status"], "failed", "{record}");
    let error = record["jobs"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(error.contains("not an RFC 3339 time"), "{record}");
    assert!(!app.log_text().contains("panicked"), "{}", app.log_text());

    let mut stopped = app.sigterm();
    let _ = stopped.wait();
    app.start();
    std::thread::sleep(Duration::from_millis(500));
    let again = app.execution(&id);
    assert_eq!(again["status"], "failed");
    assert_eq!(again["jobs"], record["jobs"], "the run did not run again");
    let log = app.log_text();
    assert!(!log.contains("panicked"), "{log}");
    assert!(!log.contains("Resuming runs"), "nothing to resume: {log}");
}

/// The admin API's `since`/`until` filters take the same parser.
#[test]
fn multi_byte_admin_time_filters_are_a_400() {
    let app = TestApp::spawn(&[("until.yaml", UNTIL)]);
    for query in [
        "since=2026-11-22T10%3A00%3A00%2B%E6%97%B600",
        "until=2026-11-22T10%3A00%3A00%2B0%C3%A9%3A0",
    ] {
        let r = app.admin_get(&format!("/api/executions?{query}"));
        assert_eq!(r.status, 400, "{query}: {}", r.body);
        assert_eq!(r.json()["error"], "bad_request");
    }
    assert_eq!(app.get("/healthz").status, 200);
    assert!(!app.log_text().contains("panicked"));
}

/// A duration too long for the clock is an error of the file (the workflow
/// is not served) or of the flag (the server does not start), never a
/// panic at the first request or at shutdown.
#[test]
fn durations_too_long_for_the_clock_are_errors_of_the_file_or_flag() {
    let long_timeout = r#"title: Waits forever
enabled: true
trigger: { type: webhook, key: long-timeout-key-01 }
options: { timeout: 99999999999d }
nodes:
  - { key: one, type: log, message: "hi" }
"#;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("long.yaml"), long_timeout).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_hookflow"))
        .args(["validate"])
        .arg(dir.path())
        .output()
        .expect("run validate");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("long.yaml:4:") && text.contains("too long"),
        "{text}"
    );
    assert!(!text.contains("panicked"), "{text}");

    let app = TestApp::spawn_with(&[("long.yaml", long_timeout)], Options::default());
    let r = app.post_json("long-timeout-key-01", &json!({}));
    assert_eq!(r.status, 404, "not served: {}", r.body);
    assert!(!app.log_text().contains("panicked"));

    let data = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_hookflow"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--shutdown-grace",
            "99999999999d",
            "--data",
        ])
        .arg(data.path())
        .arg("--workflows")
        .arg(dir.path())
        .output()
        .expect("run serve");
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success());
    assert!(
        text.contains("shutdown-grace") && text.contains("too long"),
        "{text}"
    );
    assert!(!text.contains("panicked"), "{text}");
}
