//! The run history: each try of a request node in its job, and
//! `hookflow executions list|show` against a server and against the data
//! folder alone.

use crate::harness::{closed_port, TestApp};
use crate::upstream::Upstream;
use serde_json::{json, Value as Json};
use std::time::Duration;

#[test]
fn a_request_node_job_shows_each_try() {
    let upstream = Upstream::start();
    let closed = closed_port();
    let yaml = format!(
        r#"title: Tries
enabled: true
trigger: {{ type: webhook, mode: sync, key: tries-key-0001 }}
nodes:
  - key: erp
    type: request
    url: "{base}/flaky/1"
    retry: {{ attempts: 3, backoff: 10ms }}
  - key: down
    type: request
    url: "http://127.0.0.1:{port}/x"
    retry: {{ attempts: 2, backoff: 10ms }}
    ignore_fail: true
  - key: broken
    type: request
    url: "{base}/status/500"
    retry: {{ attempts: 2, backoff: 10ms }}
  - type: response
    body: unreachable
"#,
        base = upstream.base,
        port = closed.port,
    );
    let app = TestApp::spawn(&[("tries.yaml", &yaml)]);
    let r = app.post_json("tries-key-0001", &json!({}));
    assert_eq!(r.status, 500, "{r:?}");
    let record = app.finished(&r.execution(), Duration::from_secs(10));
    let job = |key: &str| -> Json {
        record["jobs"]
            .as_array()
            .and_then(|jobs| jobs.iter().find(|j| j["key"] == json!(key)).cloned())
            .unwrap_or_else(|| panic!("no job {key}: {record}"))
    };
    // 503, then 200: two tries with their answers.
    let erp = job("erp");
    assert_eq!(erp["status"], json!("resolved"));
    let tries = erp["tries"].as_array().expect("tries");
    assert_eq!(tries.len(), 2, "{erp}");
    assert_eq!(
        (
            tries[0]["attempt"].clone(),
            tries[0]["status"].clone(),
            tries[0]["outcome"].clone()
        ),
        (json!(1), json!(503), json!("5xx"))
    );
    assert_eq!(tries[0]["body"], json!({"try": 1}));
    assert_eq!(tries[1]["status"], json!(200));
    assert_eq!(tries[1]["outcome"], json!("2xx"));
    assert_eq!(tries[1]["body"], json!({"try": 2}));
    assert_eq!(
        tries[1]["headers"]["content-type"],
        json!("application/json")
    );
    for t in tries {
        assert!(t.get("error").is_none(), "an answer has no error: {t}");
        assert!(t["duration_ms"].is_u64(), "{t}");
        assert!(
            t["started_at"].as_str().is_some_and(|s| s.ends_with('Z')),
            "{t}"
        );
    }
    // No answer: the error, no status.
    let down = job("down");
    let tries = down["tries"].as_array().expect("tries");
    assert_eq!(tries.len(), 2, "{down}");
    for t in tries {
        assert_eq!(t["outcome"], json!("error"), "{t}");
        assert!(t.get("status").is_none(), "{t}");
        assert!(
            t["error"]
                .as_str()
                .is_some_and(|e| e.contains("could not connect")),
            "{t}"
        );
    }
    // A failed job keeps its tries too.
    let broken = job("broken");
    assert_eq!(broken["status"], json!("failed"));
    let statuses: Vec<&Json> = broken["tries"]
        .as_array()
        .expect("tries")
        .iter()
        .map(|t| &t["status"])
        .collect();
    assert_eq!(statuses, [&json!(500), &json!(500)], "{broken}");

    // `hookflow run` prints each try under its node.
    let file = app.workflows.path().join("tries.yaml");
    let out = crate::test_cases::hookflow(&["run", &file.display().to_string()]);
    let printed = String::from_utf8_lossy(&out.stdout);
    let tries: Vec<&str> = printed.lines().filter(|l| l.contains("  try ")).collect();
    // The upstream's flaky path answers 200 from now on: one try for `erp`.
    assert_eq!(tries.len(), 5, "{printed}");
    assert!(
        tries[0].contains("try 1") && tries[0].contains("2xx") && tries[0].ends_with(" 200"),
        "{printed}"
    );
    assert!(
        tries[1].contains("error") && tries[1].contains("could not connect"),
        "{printed}"
    );
    assert!(
        tries[4].contains("try 2") && tries[4].contains("5xx") && tries[4].ends_with(" 500"),
        "{printed}"
    );
}

fn out_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn stdout(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{}", out_text(out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn executions_list_and_show_with_and_without_a_server() {
    use crate::harness::ADMIN;
    use crate::test_cases::hookflow;
    let upstream = Upstream::start();
    let yaml = format!(
        r#"title: Listed
enabled: true
trigger: {{ type: webhook, mode: sync, key: listed-key-0001 }}
nodes:
  - key: check
    type: condition
    if: "trigger.body.ok"
    reject_on_false: true
  - key: erp
    type: request
    url: "{base}/flaky/1"
    retry: {{ attempts: 2, backoff: 10ms }}
  - type: response
    body: {{ done: true }}
"#,
        base = upstream.base
    );
    let mut app = TestApp::spawn(&[("listed.yaml", &yaml)]);
    let mut ids = Vec::new();
    for ok in [true, false, true] {
        let id = app
            .post_json("listed-key-0001", &json!({"ok": ok}))
            .execution();
        app.finished(&id, Duration::from_secs(10));
        ids.push(id);
    }
    let server = ["--server", app.base.as_str(), "--admin-token", ADMIN];
    let with = |args: &[&str], extra: &[&str]| {
        let mut all = vec!["executions"];
        all.extend_from_slice(args);
        all.extend_from_slice(extra);
        hookflow(&all)
    };

    // A readable table: a header and one aligned row per run, newest first.
    let table = stdout(&with(&["list"], &server));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(
        lines[0].starts_with("ID")
            && lines[0].contains("WORKFLOW")
            && lines[0].ends_with("DURATION"),
        "{table}"
    );
    let column = lines[0].find("STATUS").expect("a STATUS column");
    for (line, id) in lines[1..].iter().zip(ids.iter().rev()) {
        assert!(line.starts_with(id.as_str()), "{table}");
        assert!(line.contains("listed"), "{table}");
        assert!(
            line[column..].starts_with("resolved") || line[column..].starts_with("failed"),
            "columns line up: {table}"
        );
    }
    assert!(
        lines[2][column..].starts_with("failed  ") && lines[2].contains(" 500 "),
        "{table}"
    );
    // JSON, filtered.
    let failed: Json = serde_json::from_str(&stdout(&with(
        &["list", "--status", "failed", "--format", "json"],
        &server,
    )))
    .expect("JSON");
    assert_eq!(
        failed["executions"].as_array().map(Vec::len),
        Some(1),
        "{failed}"
    );
    assert_eq!(failed["executions"][0]["id"], json!(ids[1]));
    let listed = stdout(&with(
        &["list", "--format", "json", "--limit", "2"],
        &server,
    ));
    let listed: Json = serde_json::from_str(&listed).expect("JSON");
    assert_eq!(listed["executions"].as_array().map(Vec::len), Some(2));

    // One run: its nodes, each try, its answer.
    let shown = stdout(&with(&["show", &ids[0]], &server));
    for part in [
        "execution  ",
        "status     resolved",
        "request",
        "nodes",
        "erp",
        "try 1",
        "5xx",
        "try 2",
        "2xx",
        "answer 200",
    ] {
        assert!(shown.contains(part), "`{part}` missing:\n{shown}");
    }
    let record: Json = serde_json::from_str(&stdout(&with(
        &["show", &ids[0], "--format", "json"],
        &server,
    )))
    .expect("JSON");
    assert_eq!(
        record,
        app.admin_get(&format!("/api/executions/{}", ids[0])).json()
    );

    // A server answers but no token is given: said so.
    let out = with(&["list"], &["--server", app.base.as_str()]);
    assert!(!out.status.success());
    assert!(out_text(&out).contains("admin token"), "{}", out_text(&out));

    // No token and no server named, but the data folder the running server
    // holds (SPEC §6: commands that read state work whether or not a
    // server runs on it): through the server, with the token it left there.
    let data = app.data_path().display().to_string();
    let nobody = closed_port();
    let elsewhere = format!("127.0.0.1:{}", nobody.port);
    let out = with(
        &["list", "--format", "json"],
        &["--listen", elsewhere.as_str(), "--data", data.as_str()],
    );
    let through: Json = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(
        through["executions"].as_array().map(Vec::len),
        Some(3),
        "{through}"
    );
    // The token it left opens the admin API besides the admin token.
    let r = app.local_get("/api/executions");
    assert_eq!(r.status, 200, "{r:?}");

    // The server stops: the same from the data folder.
    let mut stopped = app.sigterm();
    let _ = stopped.wait();
    assert!(
        !app.data_path().join("server.json").exists(),
        "a stopped server takes its file away"
    );
    let listen = format!("127.0.0.1:{}", nobody.port);
    let local = ["--listen", listen.as_str(), "--data", data.as_str()];
    let from_store: Json =
        serde_json::from_str(&stdout(&with(&["list", "--format", "json"], &local))).expect("JSON");
    let all: Vec<&Json> = from_store["executions"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| &r["id"])
        .collect();
    assert_eq!(
        all,
        ids.iter()
            .rev()
            .map(|i| Json::from(i.as_str()))
            .collect::<Vec<_>>()
            .iter()
            .collect::<Vec<_>>()
    );
    assert_eq!(from_store["executions"][1]["response_status"], json!(500));
    let table = stdout(&with(&["list", "--status", "resolved"], &local));
    assert_eq!(table.lines().count(), 3, "{table}");
    let shown: Json = serde_json::from_str(&stdout(&with(
        &["show", &ids[0], "--format", "json"],
        &local,
    )))
    .expect("JSON");
    assert_eq!(shown, record);
    assert!(stdout(&with(&["show", &ids[1]], &local)).contains("status     failed"));
    // A retry needs a server's workers: refused, saying what to do.
    let out = with(&["retry", &ids[1]], &local);
    assert!(!out.status.success());
    assert!(
        out_text(&out).contains("hookflow serve"),
        "{}",
        out_text(&out)
    );
    let out = with(&["show", "00000000-0000-0000-0000-000000000000"], &local);
    assert!(
        out_text(&out).contains("no execution"),
        "{}",
        out_text(&out)
    );

    // Retries from the CLI, one and in bulk, through a server again.
    app.start();
    let server = ["--server", app.base.as_str(), "--admin-token", ADMIN];
    let retried = stdout(&with(&["retry", &ids[1], "--current"], &server));
    let new_id = retried
        .trim()
        .strip_prefix("started execution ")
        .unwrap_or_else(|| panic!("{retried}"))
        .to_string();
    let again = app.finished(&new_id, Duration::from_secs(10));
    assert_eq!(again["retry_of"], json!(ids[1]));
    let bulk: Json = serde_json::from_str(&stdout(&with(
        &[
            "retry",
            "--workflow",
            "listed",
            "--status",
            "failed",
            "--since",
            "2020-01-01T00:00:00Z",
            "--format",
            "json",
        ],
        &server,
    )))
    .expect("JSON");
    // The failed run was retried before: only its latest retry (failed
    // too) is retried, once.
    assert_eq!(
        bulk["execution_ids"].as_array().map(Vec::len),
        Some(1),
        "{bulk}"
    );
    assert_eq!(bulk["already_retried"], json!(1), "{bulk}");
    let latest = bulk["execution_ids"][0].as_str().expect("an id");
    assert_eq!(
        app.finished(latest, Duration::from_secs(10))["retry_of"],
        json!(new_id)
    );
}
