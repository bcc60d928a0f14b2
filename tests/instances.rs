//! Several instances on one PostgreSQL database (SPEC §8): webhooks sent to
//! either, a run of a killed instance taken over after its lease, duplicates
//! racing on two instances (async and sync), instances starting together.

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

/// A table lock held by another session (the database stops answering the
/// statements that need the table), until [`TableLock::end`] ends the
/// session, or 25 s.
struct TableLock {
    db: String,
    holder: std::thread::JoinHandle<Result<String, String>>,
}

impl TableLock {
    /// Takes `mode` on `table` and returns once it is granted.
    fn take(db: &str, table: &str, mode: &str) -> TableLock {
        let holder = {
            let (db, sql) = (
                db.to_string(),
                format!("BEGIN; LOCK TABLE {table} IN {mode} MODE; SELECT pg_sleep(25); COMMIT;"),
            );
            std::thread::spawn(move || hookflow_pgtest::cluster().psql_in(&db, &sql))
        };
        let granted = format!(
            "SELECT count(*) FROM pg_locks WHERE relation = '{table}'::regclass AND mode = '{}Lock' AND granted",
            mode.split(' ').map(|w| format!("{}{}", &w[..1], w[1..].to_lowercase())).collect::<String>()
        );
        eventually(Duration::from_secs(10), "the lock", || {
            let held = hookflow_pgtest::cluster()
                .psql_in(db, &granted)
                .unwrap_or_default();
            (held.trim() == "1").then_some(())
        });
        TableLock {
            db: db.to_string(),
            holder,
        }
    }

    /// Ends the holding session (only this test's database's).
    fn end(self) {
        hookflow_pgtest::cluster()
            .psql_in(
                &self.db,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(25)%' AND datname = current_database() AND pid <> pg_backend_pid()",
            )
            .expect("end the lock");
        let _ = self.holder.join();
    }
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
    // B woke runs A put to wait: its gauge counts the database's waiting
    // runs (none now), not what B saw start or end waiting (-4).
    eventually(Duration::from_secs(10), "B's waiting gauge at 0", || {
        let r = b.admin_get("/metrics");
        assert_eq!(r.status, 200, "{r:?}");
        r.body
            .lines()
            .any(|l| l == "hookflow_runs{state=\"waiting\"} 0")
            .then_some(())
    });
}

/// An instance paused past its lease (a stopped VM, a long GC, a network
/// cut) finds on waking that another instance took its run over: it stops
/// the run there instead of running the rest of its nodes a second time
/// beside the instance that has it now. At most the nodes since its last
/// save and the one after run twice (SPEC §8: at least once).
#[test]
fn a_paused_instance_stops_a_run_taken_over_from_it() {
    let up = Upstream::start();
    let nodes: String = (1..=7)
        .map(|n| {
            format!(
                "  - key: n{n}\n    type: request\n    method: GET\n    url: \"{}/sleep/600?node={n}\"\n",
                up.base
            )
        })
        .collect();
    let flow = format!(
        "title: Chain\nenabled: true\ntrigger: {{ type: webhook, mode: async, key: paused-key-01 }}\nnodes:\n{nodes}"
    );
    let url = postgres_db();
    let (a, b) = pair(&[("chain.yaml", &flow)], &url);
    let r = a.post_json("paused-key-01", &json!({}));
    assert_eq!(r.status, 200, "{r:?}");
    let id = r.execution();
    let hits = |node: u32| {
        up.hits_on("/sleep/600")
            .iter()
            .filter(|h| h.query == format!("node={node}"))
            .count()
    };
    eventually(Duration::from_secs(10), "the second node's call", || {
        (hits(2) == 1).then_some(())
    });
    let pid = i32::try_from(a.pid()).expect("pid");
    // SAFETY: signals to our own child process.
    unsafe {
        libc::kill(pid, libc::SIGSTOP);
    }
    eventually(Duration::from_secs(15), "B to take the run over", || {
        b.log_text().contains("Taking over a run.").then_some(())
    });
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: as above.
    unsafe {
        libc::kill(pid, libc::SIGCONT);
    }
    let record = b.finished(&id, Duration::from_secs(30));
    assert_eq!(record["status"], json!("resolved"), "{record}");
    // Time for a run still going on A to call on.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        a.log_text().contains("Another instance took over a run"),
        "{}",
        a.log_text()
    );
    let counts: Vec<usize> = (1..=7).map(hits).collect();
    // B goes on from A's last save (the first node's, or none yet when the
    // pause came before it was written): nodes up to the one A had in
    // flight, and the one after, may run twice; every later node once.
    assert!(counts.iter().all(|n| (1..=2).contains(n)), "{counts:?}");
    assert!(counts[3..].iter().all(|n| *n == 1), "{counts:?}");
}

/// Runs still queued on an instance paused past their lease are taken over
/// and finished elsewhere; on waking, the paused instance does not start
/// them again (only the run it had in flight may repeat a node or two).
#[test]
fn a_paused_instance_does_not_start_runs_taken_over_while_queued() {
    let up = Upstream::start();
    let flow = format!(
        "title: Queued\nenabled: true\ntrigger: {{ type: webhook, mode: async, key: queued-key-01 }}\nnodes:\n  - key: mid\n    type: request\n    method: GET\n    url: \"{base}/sleep/400?n={{{{ trigger.body.n }}}}\"\n  - key: end\n    type: request\n    method: GET\n    url: \"{base}/echo/end-{{{{ trigger.body.n }}}}\"\n",
        base = up.base
    );
    let url = postgres_db();
    let a = TestApp::spawn_with(
        &[("queued.yaml", &flow)],
        Options {
            store: Some(url.clone()),
            args: vec!["--workers".into(), "1".into()],
            ..Options::default()
        },
    );
    let b = TestApp::spawn_with(
        &[("queued.yaml", &flow)],
        Options {
            store: Some(url),
            ..Options::default()
        },
    );
    let ids: Vec<String> = (0..10)
        .map(|n| {
            let r = a.post_json("queued-key-01", &json!({ "n": n }));
            assert_eq!(r.status, 200, "{r:?}");
            r.execution()
        })
        .collect();
    eventually(Duration::from_secs(10), "A's first call", || {
        (!up.hits_on("/sleep/400").is_empty()).then_some(())
    });
    let pid = i32::try_from(a.pid()).expect("pid");
    // SAFETY: signals to our own child process.
    unsafe {
        libc::kill(pid, libc::SIGSTOP);
    }
    for id in &ids {
        let record = b.finished(id, Duration::from_secs(60));
        assert_eq!(record["status"], json!("resolved"), "{record}");
    }
    // SAFETY: as above.
    unsafe {
        libc::kill(pid, libc::SIGCONT);
    }
    // Time for A to start what it still had queued, were it to.
    std::thread::sleep(Duration::from_secs(4));
    let count = |prefix: &str, n: u32| {
        up.hits()
            .iter()
            .filter(|h| match prefix {
                "mid" => h.path == "/sleep/400" && h.query == format!("n={n}"),
                _ => h.path == format!("/echo/end-{n}"),
            })
            .count()
    };
    let mids: Vec<usize> = (0..10).map(|n| count("mid", n)).collect();
    let ends: Vec<usize> = (0..10).map(|n| count("end", n)).collect();
    assert!(
        mids.iter().chain(&ends).all(|c| (1..=2).contains(c)),
        "{mids:?} {ends:?}"
    );
    // Only the run A had in flight may have repeated a node.
    let repeated = (0..10).filter(|&i| mids[i] > 1 || ends[i] > 1).count();
    assert!(
        repeated <= 1,
        "runs repeated: {mids:?} {ends:?}\n{}",
        a.log_text()
    );
    assert!(
        a.log_text()
            .contains("taken over by another instance while it waited here"),
        "{}",
        a.log_text()
    );
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
        let answers = race(vec![a.hook("racing-key-1"), b.hook("racing-key-1")], &body);
        assert!(answers.iter().all(|(s, ..)| *s == 200), "{answers:?}");
        assert_eq!(answers[0].2, answers[1].2, "one run: {answers:?}");
        let replays = answers
            .iter()
            .filter(|(.., r)| r.as_deref() == Some("true"))
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

/// Sends `body` to every hook at once; each answer's status, body and
/// `X-Hookflow-Execution` / `X-Hookflow-Replayed` headers.
fn race(hooks: Vec<String>, body: &str) -> Vec<(u16, String, Option<String>, Option<String>)> {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(hooks.len()));
    let senders: Vec<_> = hooks
        .into_iter()
        .map(|hook| {
            let (body, barrier) = (body.to_string(), barrier.clone());
            std::thread::spawn(move || {
                let agent = post_and_reset_agent();
                barrier.wait();
                let mut r = agent
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
                let (execution, replayed) = (
                    header("x-hookflow-execution"),
                    header("x-hookflow-replayed"),
                );
                let text = r.body_mut().read_to_string().unwrap_or_default();
                (r.status().as_u16(), text, execution, replayed)
            })
        })
        .collect();
    senders
        .into_iter()
        .map(|s| s.join().expect("sender"))
        .collect()
}

#[test]
fn sync_duplicates_sent_to_both_instances_run_once() {
    let up = Upstream::start();
    // The run takes a while (a slow upstream): the copy on the other
    // instance arrives while it is going.
    let flow = format!(
        "title: Keyed sync\nenabled: true\ntrigger:\n  type: webhook\n  mode: sync\n  key: racing-sync-1\n  idempotency: {{ key: \"{{{{ trigger.body.id }}}}\", ttl: 1h }}\nnodes:\n  - key: call\n    type: request\n    url: \"{}/sleep/300?id={{{{ trigger.body.id }}}}\"\n  - key: answer\n    type: response\n    status: 201\n    body: {{ id: \"{{{{ trigger.body.id }}}}\", run: \"{{{{ execution.id }}}}\" }}\n",
        up.base
    );
    let url = postgres_db();
    let (a, b) = pair(&[("keyed.yaml", &flow)], &url);
    let (rounds, keys) = (4, 3);
    for round in 0..rounds {
        // Several keys at once, each sent to both instances together.
        let racing: Vec<_> = (0..keys)
            .map(|k| {
                let body = json!({"id": format!("evt-{round}-{k}")}).to_string();
                let hooks = vec![a.hook("racing-sync-1"), b.hook("racing-sync-1")];
                std::thread::spawn(move || (body.clone(), race(hooks, &body)))
            })
            .collect();
        for r in racing {
            let (body, answers) = r.join().expect("a race");
            assert!(
                answers.iter().all(|(s, ..)| *s == 201),
                "{body}: {answers:?}"
            );
            assert_eq!(answers[0].1, answers[1].1, "one answer: {answers:?}");
            assert_eq!(answers[0].2, answers[1].2, "one run: {answers:?}");
            let replays = answers
                .iter()
                .filter(|(.., r)| r.as_deref() == Some("true"))
                .count();
            assert_eq!(replays, 1, "one answer is a replay: {answers:?}");
        }
    }
    let runs = a
        .admin_get("/api/executions?workflow=keyed&limit=100")
        .json();
    assert_eq!(
        runs["executions"].as_array().map(Vec::len),
        Some(rounds * keys),
        "{runs}"
    );
    let mut per_key = BTreeMap::new();
    for hit in up.hits() {
        *per_key.entry(hit.query).or_insert(0) += 1;
    }
    assert_eq!(per_key.len(), rounds * keys, "{per_key:?}");
    assert!(
        per_key.values().all(|n| *n == 1),
        "one call per key: {per_key:?}"
    );
    // A later copy, on either instance, is a replay of the same run.
    let again = race(
        vec![b.hook("racing-sync-1")],
        &json!({"id": "evt-0-0"}).to_string(),
    );
    assert_eq!(
        (again[0].0, again[0].3.as_deref()),
        (201, Some("true")),
        "{again:?}"
    );
}

#[test]
fn a_sync_run_that_fails_gives_its_key_up_to_the_copy_on_the_other_instance() {
    let up = Upstream::start();
    // The run takes a while, then fails (500): its answer is not kept.
    let flow = format!(
        "title: Failing sync\nenabled: true\ntrigger:\n  type: webhook\n  mode: sync\n  key: failing-sync-1\n  idempotency: {{ key: \"{{{{ trigger.body.id }}}}\", ttl: 1h }}\nnodes:\n  - key: wait\n    type: request\n    url: \"{0}/sleep/300\"\n  - key: fail\n    type: request\n    url: \"{0}/status/500\"\n",
        up.base
    );
    let url = postgres_db();
    let (a, b) = pair(&[("failing.yaml", &flow)], &url);
    let started = std::time::Instant::now();
    let answers = race(
        vec![a.hook("failing-sync-1"), b.hook("failing-sync-1")],
        &json!({"id": "evt-1"}).to_string(),
    );
    // The copy waited for the first run, which gave the key up at once
    // (not after the 30 s wait): the sender's retry runs again.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(answers.iter().all(|(s, ..)| *s == 500), "{answers:?}");
    assert!(
        answers.iter().all(|(.., r)| r.is_none()),
        "no replay: {answers:?}"
    );
    assert_ne!(answers[0].2, answers[1].2, "two runs: {answers:?}");
    let (waits, fails) = (up.hits_on("/sleep/300"), up.hits_on("/status/500"));
    assert_eq!((waits.len(), fails.len()), (2, 2));
    assert!(
        waits[1].at >= fails[0].at,
        "the copy ran after the first run failed, not beside it"
    );
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

/// A process's resident memory in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// One POST: status, `Retry-After`, body.
fn send(hook: &str, body: &str) -> (u16, Option<String>, String) {
    let mut r = post_and_reset_agent()
        .post(hook)
        .header("content-type", "application/json")
        .send(body)
        .expect("request");
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = r.body_mut().read_to_string().unwrap_or_default();
    (r.status().as_u16(), retry, text)
}

#[test]
fn a_database_that_stops_answering_refuses_new_requests_past_the_backlog() {
    let flow = "title: Queued\nenabled: true\ntrigger: { type: webhook, mode: async, key: backlog-async-1 }\nnodes:\n  - key: n\n    type: calculation\n    expression: trigger.body.n\n";
    let sync = "title: Now\nenabled: true\ntrigger: { type: webhook, mode: sync, key: backlog-sync-1 }\nnodes:\n  - key: n\n    type: calculation\n    expression: trigger.body.n\n";
    let url = postgres_db();
    let db = url
        .rsplit('/')
        .next()
        .and_then(|s| s.split('?').next())
        .expect("db")
        .to_string();
    let bound = 20;
    let app = TestApp::spawn_with(
        &[("queued.yaml", flow), ("now.yaml", sync)],
        Options {
            store: Some(url),
            args: vec!["--store-backlog".into(), bound.to_string()],
            ..Options::default()
        },
    );
    // The database stops answering the writer: another session holds a
    // lock on the runs table (released by ending that session).
    let lock = TableLock::take(&db, "hookflow_runs", "EXCLUSIVE");
    // Requests are admitted (and wait for their commit) until the writes
    // not yet committed pass the bound; then they are refused at once.
    let hook = app.hook("backlog-async-1");
    let mut admitted = Vec::new();
    let refused = loop {
        assert!(admitted.len() < 3 * bound, "never refused");
        let (hook, n) = (hook.clone(), admitted.len());
        let sender = std::thread::spawn(move || send(&hook, &json!({ "n": n }).to_string()));
        std::thread::sleep(Duration::from_millis(150));
        if sender.is_finished() {
            break sender.join().expect("sender");
        }
        admitted.push(sender);
    };
    let assert_refused = |(status, retry, body): (u16, Option<String>, String)| {
        assert_eq!((status, retry.as_deref()), (503, Some("5")), "{body}");
        let error: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(error["error"], "store_unavailable", "{body}");
    };
    assert_refused(refused);
    // A refusal slower than the 150 ms above (a busy machine) looked
    // admitted: what has finished while the table is still locked was
    // refused, as an admitted request waits for its commit.
    std::thread::sleep(Duration::from_millis(500));
    let (late, admitted): (Vec<_>, Vec<_>) = admitted
        .into_iter()
        .partition(|sender| sender.is_finished());
    for sender in late {
        assert_refused(sender.join().expect("sender"));
    }
    assert!(
        admitted.len() > bound && admitted.len() <= bound + 3,
        "{} admitted with a bound of {bound}",
        admitted.len()
    );
    // Health says so meanwhile (a load balancer takes the instance out).
    let health = app.get("/healthz");
    assert_eq!(health.status, 503, "{health:?}");
    assert_eq!(health.json()["status"], "store_unavailable");
    // Past the bound nothing more is taken in: a sync request is refused
    // before it runs, and a flood of large requests leaves memory flat.
    assert_eq!(send(&app.hook("backlog-sync-1"), "{\"n\": 1}").0, 503);
    let big = json!({ "n": 0, "pad": "x".repeat(64 * 1024) }).to_string();
    for _ in 0..50 {
        assert_eq!(send(&hook, &big).0, 503);
    }
    let before = rss_kib(app.pid());
    for _ in 0..500 {
        assert_eq!(send(&hook, &big).0, 503);
    }
    let grown = rss_kib(app.pid()).saturating_sub(before);
    assert!(
        grown < 16 * 1024,
        "memory grew by {grown} KiB over 500 refused requests"
    );
    // The database answers again: every admitted request gets its
    // acknowledgement and every admitted run finishes.
    lock.end();
    let count = admitted.len();
    for sender in admitted {
        let (status, _, body) = sender.join().expect("sender");
        assert_eq!(status, 200, "{body}");
    }
    eventually(Duration::from_secs(20), "every admitted run", || {
        let runs = app
            .admin_get("/api/executions?workflow=queued&status=resolved&limit=100")
            .json();
        (runs["executions"].as_array().map(Vec::len) == Some(count)).then_some(())
    });
    assert_eq!(send(&hook, "{\"n\": 1}").0, 200, "taken in again");
    assert_eq!(app.get("/healthz").status, 200);
}

/// An idempotency key's read waits on a database that does not answer
/// (another session holds its table): the request waits, but the HTTP
/// worker it came on goes on serving `/healthz` and other requests.
#[test]
fn a_hung_idempotency_read_holds_up_no_other_request() {
    let keyed = "title: Keyed\nenabled: true\ntrigger:\n  type: webhook\n  mode: sync\n  key: hung-keyed-01\n  idempotency: { key: \"{{ trigger.body.id }}\" }\nnodes:\n  - type: response\n    body: { ok: true }\n";
    let url = postgres_db();
    let db = url
        .rsplit('/')
        .next()
        .and_then(|s| s.split('?').next())
        .expect("db")
        .to_string();
    let app = TestApp::spawn_with(
        &[("keyed.yaml", keyed)],
        Options {
            store: Some(url),
            ..Options::default()
        },
    );
    let lock = TableLock::take(&db, "hookflow_idempotency", "ACCESS EXCLUSIVE");
    // More keyed requests than the server has HTTP workers, each waiting.
    let keyed_hook = app.hook("hung-keyed-01");
    let senders: Vec<_> = (0..4)
        .map(|n| {
            let hook = keyed_hook.clone();
            std::thread::spawn(move || send(&hook, &json!({ "id": format!("k{n}") }).to_string()))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        senders.iter().all(|s| !s.is_finished()),
        "the keyed requests wait"
    );
    let quick = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .new_agent();
    let health = quick
        .get(format!("http://{}/healthz", app.addr()))
        .call()
        .expect("/healthz answers while the keyed requests wait");
    assert_eq!(health.status().as_u16(), 200);
    // (A webhook that writes waits for the store's writer, which waits for
    // the table too; one that does not is answered.)
    let unknown = quick
        .post(format!(
            "http://{}/api/webhook:trigger/no-such-key-1",
            app.addr()
        ))
        .header("content-type", "application/json")
        .send("{}")
        .expect("a webhook answered while the keyed requests wait");
    assert_eq!(unknown.status().as_u16(), 404);
    lock.end();
    for sender in senders {
        let (status, _, body) = sender.join().expect("sender");
        assert_eq!(status, 200, "{body}");
    }
}

/// Bulk retries asked of two instances at the same moment retry each run
/// once: the instances take turns (a database lock), and the second sees
/// the first's retries.
#[test]
fn bulk_retries_on_two_instances_at_once_retry_each_run_once() {
    let flow = "title: Failing\nenabled: true\ntrigger: { type: webhook, mode: sync, key: bulk-pair-key-1 }\nnodes:\n  - type: end\n    status: failed\n    message: down\n";
    let url = postgres_db();
    let (a, b) = pair(&[("failing.yaml", flow)], &url);
    let mut failed = BTreeSet::new();
    for n in 0..12 {
        let app = if n % 2 == 0 { &a } else { &b };
        let r = app.post_json("bulk-pair-key-1", &json!({ "n": n }));
        assert_eq!(r.status, 500, "{r:?}");
        failed.insert(r.execution());
    }
    let filter = json!({"workflow": "failing", "status": "failed"});
    for round in 0..3 {
        let (fa, fb) = (filter.clone(), filter.clone());
        let answers: Vec<_> = std::thread::scope(|s| {
            let ta = s.spawn(|| a.admin_post_json("/api/executions/retry", &fa));
            let tb = s.spawn(|| b.admin_post_json("/api/executions/retry", &fb));
            vec![ta.join().expect("a"), tb.join().expect("b")]
        });
        let started: usize = answers
            .iter()
            .map(|r| {
                assert!(
                    [201, 503].contains(&r.status),
                    "a bulk retry is started or told to wait its turn: {r:?}"
                );
                r.json()["execution_ids"].as_array().map_or(0, Vec::len)
            })
            .sum();
        if round == 0 {
            assert_eq!(started, failed.len(), "{answers:?}");
        }
        for r in &answers {
            for id in r.json()["execution_ids"].as_array().into_iter().flatten() {
                let id = id.as_str().expect("an id");
                a.finished(id, Duration::from_secs(10));
            }
        }
    }
    // Each run has at most one retry: the rounds after the first retried
    // the retries (they failed too), never a run twice.
    let all = a
        .admin_get("/api/executions?workflow=failing&limit=1000")
        .json();
    let mut retried: BTreeMap<String, usize> = BTreeMap::new();
    for e in all["executions"].as_array().expect("executions") {
        if let Some(of) = e["retry_of"].as_str() {
            *retried.entry(of.to_string()).or_default() += 1;
        }
    }
    assert!(retried.values().all(|n| *n == 1), "{retried:?}");
    assert!(
        failed.iter().all(|id| retried.contains_key(id)),
        "every failed run retried: {retried:?}"
    );
}

#[test]
fn retries_asked_at_once_of_one_instance_take_turns_without_a_503() {
    let flow = "title: Failing\nenabled: true\ntrigger: { type: webhook, mode: sync, key: turns-pair-key-1 }\nnodes:\n  - type: end\n    status: failed\n    message: down\n";
    let url = postgres_db();
    let a = TestApp::spawn_with(
        &[("failing.yaml", flow)],
        Options {
            store: Some(url.clone()),
            ..Options::default()
        },
    );
    let mut failed = Vec::new();
    for n in 0..24 {
        let r = a.post_json("turns-pair-key-1", &json!({ "n": n }));
        assert_eq!(r.status, 500, "{r:?}");
        failed.push(r.execution());
    }
    // One instance: a 503 "another instance is retrying" would be this
    // instance's own turn, let go but not yet free in the database.
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = failed
            .iter()
            .map(|id| {
                let a = &a;
                s.spawn(move || a.admin_post(&format!("/api/executions/{id}/retry")))
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("joined").status)
            .collect()
    });
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
}
