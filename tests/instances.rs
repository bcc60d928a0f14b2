//! Several instances on one PostgreSQL database (SPEC §8): webhooks sent to
//! either, a run of a killed instance taken over after its lease, duplicates
//! racing on two instances, instances starting together.

use crate::harness::{eventually, postgres_db, Options, TestApp};
use crate::upstream::Upstream;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Two instances of the same workflows on database `url`.
fn pair(files: &[(&str, &str)], url: &str) -> (TestApp, TestApp) {
    let start = |_: usize| {
        TestApp::spawn_with(
            files,
            Options {
                store: Some(url.to_string()),
                ..Options::default()
            },
        )
    };
    (start(0), start(1))
}

fn post_and_reset_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .new_agent()
}

#[test]
fn webhooks_sent_to_either_instance_are_one_service() {
    let up = Upstream::start();
    let sync = "title: Sync\nenabled: true\ntrigger: { type: webhook, mode: sync }\nnodes:\n  - key: double\n    type: calculation\n    expression: trigger.body.n * 2\n";
    let calls = format!(
        "title: Calls\nenabled: true\ntrigger: {{ type: webhook, mode: async, key: shared-calls-k1 }}\nnodes:\n  - key: call\n    type: request\n    url: \"{}/echo/{{{{ trigger.body.n }}}}\"\n",
        up.base
    );
    let url = postgres_db();
    let (a, b) = pair(&[("sync.yaml", sync), ("calls.yaml", &calls)], &url);
    // The generated key is shared: both instances serve the same URL.
    let key_of = |app: &TestApp| {
        let list = app.admin_get("/api/workflows").json();
        let row = list["workflows"]
            .as_array()
            .and_then(|w| w.iter().find(|w| w["id"] == "sync").cloned())
            .expect("the sync workflow");
        let url = row["url"].as_str().expect("a url").to_string();
        url.rsplit('/').next().expect("a key").to_string()
    };
    let key = key_of(&a);
    assert_eq!(key, key_of(&b), "one key for every instance");
    // `hookflow urls` on the same database lists the same key.
    let urls = std::process::Command::new(env!("CARGO_BIN_EXE_hookflow"))
        .args(["urls", "--format", "json", "--store", &url, "--workflows"])
        .arg(a.workflows.path())
        .output()
        .expect("hookflow urls");
    let printed = String::from_utf8_lossy(&urls.stdout);
    assert!(urls.status.success(), "{urls:?}");
    assert!(
        printed.contains(&format!("/api/webhook:trigger/{key}")),
        "{printed}"
    );
    // Sync answers from both; each record is readable from the other one
    // at once (read-your-writes across instances).
    for n in 0..6 {
        let (here, there) = if n % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let r = here.post_json(&key, &json!({"n": n}));
        assert_eq!(r.status, 200, "{r:?}");
        let id = r.execution();
        let seen = there.admin_get(&format!("/api/executions/{id}"));
        assert_eq!(seen.status, 200, "{seen:?}\n{}", there.log_text());
        assert_eq!(seen.json()["jobs"][0]["result"], json!(n * 2));
    }
    // Async runs sent to both all run once.
    let mut ids = BTreeSet::new();
    for n in 0..20 {
        let app = if n % 2 == 0 { &a } else { &b };
        let r = app.post_json("shared-calls-k1", &json!({"n": n}));
        assert_eq!(r.status, 200, "{r:?}");
        ids.insert(r.execution());
    }
    for id in &ids {
        let record = b.finished(id, Duration::from_secs(20));
        assert_eq!(record["status"], json!("resolved"), "{record}");
    }
    eventually(Duration::from_secs(10), "every call", || {
        (up.hits().len() == 20).then_some(())
    });
    let runs = a
        .admin_get("/api/executions?workflow=calls&limit=100")
        .json();
    assert_eq!(
        runs["executions"].as_array().map(Vec::len),
        Some(20),
        "{runs}"
    );
    let called: BTreeSet<String> = up
        .hits()
        .iter()
        .map(|h| h.headers["idempotency-key"].clone())
        .collect();
    assert_eq!(called.len(), 20, "no run called twice: {called:?}");
    // Each instance's commits are timed in its metrics.
    let metrics = a.admin_get("/metrics").body;
    let commits: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("hookflow_store_commit_duration_seconds_count "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(commits >= 1.0, "{metrics}");
    // `hookflow executions` reads the shared store directly too.
    let listed = std::process::Command::new(env!("CARGO_BIN_EXE_hookflow"))
        .args([
            "executions",
            "list",
            "--workflow",
            "calls",
            "--limit",
            "100",
        ])
        .args([
            "--format",
            "json",
            "--listen",
            "127.0.0.1:9",
            "--store",
            &url,
        ])
        .env_remove("HOOKFLOW_ADMIN_TOKEN")
        .output()
        .expect("hookflow executions");
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success(), "{listed:?}");
    for id in &ids {
        assert!(text.contains(id.as_str()), "{id} listed: {text}");
    }
}

#[test]
fn a_killed_instance_s_runs_are_taken_over_after_the_lease() {
    let up = Upstream::start();
    // A slow upstream call, then a delay: the takeover repeats the call (at
    // least once, same Idempotency-Key), and waiting runs wake on the
    // instance that is left.
    let flow = format!(
        "title: Slow\nenabled: true\ntrigger: {{ type: webhook, mode: async, key: takeover-key-1 }}\nnodes:\n  - key: call\n    type: request\n    url: \"{base}/sleep/{{{{ trigger.body.ms }}}}\"\n  - key: pause\n    type: delay\n    duration: 2s\n  - key: after\n    type: request\n    url: \"{base}/echo/after-{{{{ trigger.body.n }}}}\"\n",
        base = up.base
    );
    let url = postgres_db();
    let store = |url: &str| Options {
        store: Some(url.to_string()),
        ..Options::default()
    };
    let mut a = TestApp::spawn_with(&[("slow.yaml", &flow)], store(&url));
    // B has another version of the file: runs taken over from A still run
    // the version they recorded (read from the database).
    let newer = flow.replace("/echo/after-", "/echo/newer-");
    let b = TestApp::spawn_with(&[("slow.yaml", &newer)], store(&url));
    // One run caught in its slow call, and runs caught waiting.
    let slow = a.post_json("takeover-key-1", &json!({"n": 0, "ms": 3000}));
    assert_eq!(slow.status, 200);
    let slow = slow.execution();
    eventually(Duration::from_secs(10), "the slow call to start", || {
        (!up.hits_on("/sleep/3000").is_empty()).then_some(())
    });
    let mut acked = vec![slow.clone()];
    for n in 1..=4 {
        let r = a.post_json("takeover-key-1", &json!({"n": n, "ms": 1}));
        assert_eq!(r.status, 200, "{r:?}");
        acked.push(r.execution());
    }
    eventually(Duration::from_secs(10), "a run to wait", || {
        acked[1..]
            .iter()
            .any(|id| a.execution(id)["status"] == "waiting")
            .then_some(())
    });
    a.kill9();
    // B takes the slow run over once its lease (1 s) ran out, and wakes the
    // waiting ones; every acknowledged run finishes.
    for id in &acked {
        let record = b.finished(id, Duration::from_secs(30));
        assert_eq!(
            record["status"],
            json!("resolved"),
            "{record}\n{}",
            b.log_text()
        );
    }
    assert!(
        b.log_text().contains("Taking over a run."),
        "{}",
        b.log_text()
    );
    // The interrupted call ran again with the same key; nothing else twice.
    let slow_calls: Vec<String> = up
        .hits_on("/sleep/3000")
        .iter()
        .map(|h| h.headers["idempotency-key"].clone())
        .collect();
    assert_eq!(slow_calls.len(), 2, "{slow_calls:?}");
    assert!(slow_calls.iter().all(|k| *k == format!("{slow}-call")));
    let mut after: BTreeMap<String, usize> = BTreeMap::new();
    for h in up.hits() {
        if h.path.starts_with("/echo/after-") {
            *after.entry(h.path.clone()).or_default() += 1;
        }
    }
    assert_eq!(after.len(), 5, "the recorded version ran: {after:?}");
    assert!(
        up.hits()
            .iter()
            .all(|h| !h.path.starts_with("/echo/newer-")),
        "no taken-over run ran B's version"
    );
    assert!(after.values().all(|n| *n == 1), "ran once each: {after:?}");
}

#[test]
fn duplicates_sent_to_both_instances_start_one_run() {
    let up = Upstream::start();
    let flow = format!(
        "title: Keyed\nenabled: true\ntrigger:\n  type: webhook\n  mode: async\n  key: racing-key-1\n  idempotency: {{ key: \"{{{{ trigger.body.id }}}}\", ttl: 1h }}\nnodes:\n  - key: call\n    type: request\n    url: \"{}/echo/{{{{ trigger.body.id }}}}\"\n",
        up.base
    );
    let url = postgres_db();
    let (a, b) = pair(&[("keyed.yaml", &flow)], &url);
    let rounds = 12;
    for round in 0..rounds {
        let body = json!({"id": format!("evt-{round}")}).to_string();
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let senders: Vec<_> = [a.hook("racing-key-1"), b.hook("racing-key-1")]
            .into_iter()
            .map(|hook| {
                let (body, barrier) = (body.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let agent = post_and_reset_agent();
                    barrier.wait();
                    let r = agent
                        .post(&hook)
                        .header("content-type", "application/json")
                        .send(&body)
                        .expect("request");
                    let header = |n: &str| {
                        r.headers()
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string)
                    };
                    (
                        r.status().as_u16(),
                        header("x-hookflow-execution"),
                        header("x-hookflow-replayed"),
                    )
                })
            })
            .collect();
        let answers: Vec<_> = senders
            .into_iter()
            .map(|s| s.join().expect("sender"))
            .collect();
        assert!(answers.iter().all(|(s, _, _)| *s == 200), "{answers:?}");
        assert_eq!(answers[0].1, answers[1].1, "one run: {answers:?}");
        let replays = answers
            .iter()
            .filter(|(_, _, r)| r.as_deref() == Some("true"))
            .count();
        assert_eq!(replays, 1, "one answer is a replay: {answers:?}");
    }
    eventually(Duration::from_secs(20), "every event's run", || {
        (up.hits().len() >= rounds).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    let runs = a
        .admin_get("/api/executions?workflow=keyed&limit=100")
        .json();
    assert_eq!(
        runs["executions"].as_array().map(Vec::len),
        Some(rounds),
        "{runs}"
    );
    assert_eq!(up.hits().len(), rounds, "one call per event");
}

#[test]
fn instances_starting_together_on_an_empty_database_all_serve() {
    let flow = "title: Hi\nenabled: true\ntrigger: { type: webhook, mode: sync, key: together-key-1 }\nnodes:\n  - key: hi\n    type: calculation\n    expression: \"'hi'\"\n";
    let url = postgres_db();
    let starting: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                TestApp::spawn_with(
                    &[("hi.yaml", flow)],
                    Options {
                        store: Some(url),
                        ..Options::default()
                    },
                )
            })
        })
        .collect();
    let apps: Vec<TestApp> = starting
        .into_iter()
        .map(|s| s.join().expect("an instance starts"))
        .collect();
    for app in &apps {
        let r = app.post("together-key-1", &[], "");
        assert_eq!(r.status, 200, "{r:?}\n{}", app.log_text());
    }
    let runs = apps[0].admin_get("/api/executions?limit=10").json();
    assert_eq!(
        runs["executions"].as_array().map(Vec::len),
        Some(3),
        "{runs}"
    );
}
