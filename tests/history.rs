//! The run history: each try of a request node in its job, and
//! `hookflow executions list|show` against a server and against the data
//! folder alone.

use crate::harness::TestApp;
use crate::upstream::Upstream;
use serde_json::{json, Value as Json};
use std::time::Duration;

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    port
}

#[test]
fn a_request_node_job_shows_each_try() {
    let upstream = Upstream::start();
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
        port = closed_port(),
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
}
