//! The store's edges, end to end (SPEC §5): a long loop does not fill the
//! disk, a run outliving the retention brings nobody back, an acknowledged
//! key survives kill -9, a reset connection leaves no orphan, damage is set
//! aside. Upstreams are real local HTTP servers.

use crate::harness::{eventually, store_of, Backing, Options, TestApp};
use crate::upstream::Upstream;
use serde_json::json;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// Bytes under a folder.
fn folder_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => folder_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// One 17 KB webhook: a loop over 3,000 items, a request node each (the
/// workflow that grew the data folder by 1.7 GB when every save wrote the
/// whole record again).
#[test]
fn a_long_loop_does_not_fill_the_disk() {
    let up = Upstream::start();
    let flow = format!(
        r#"title: Long loop
enabled: true
trigger: {{ type: webhook, mode: async, key: long-loop-key-01 }}
nodes:
  - key: each
    type: loop
    over: trigger.body.items
    max_iterations: 5000
    do:
      - key: call
        type: request
        url: "{base}/echo/item"
        body: {{ sku: "{{{{ loop.item.sku }}}}", n: "{{{{ loop.index }}}}" }}
"#,
        base = up.base
    );
    let app = TestApp::spawn_with(
        &[("loop.yaml", &flow)],
        Options {
            args: vec!["--workers".into(), "1".into()],
            ..Options::default()
        },
    );
    let items: Vec<_> = (0..3000)
        .map(|i| json!({"sku": format!("S{i:04}")}))
        .collect();
    let body = json!({ "items": items });
    assert!(body.to_string().len() > 16_000, "a webhook of about 17 KB");
    let before = folder_size(app.data_path());
    let r = app.post_json("long-loop-key-01", &body);
    assert_eq!(r.status, 200, "{r:?}");
    let record = app.finished(&r.execution(), Duration::from_secs(240));
    assert_eq!(record["status"], json!("resolved"), "{}", app.log_text());
    assert_eq!(up.hits_on("/echo/item").len(), 3000);
    let jobs = record["jobs"].as_array().map(Vec::len).unwrap_or(0);
    assert_eq!(jobs, 3001, "the loop and one job per request");
    let grown = folder_size(app.data_path()).saturating_sub(before);
    eprintln!("the data folder grew by {} KiB", grown / 1024);
    assert!(
        grown < 50 * 1024 * 1024,
        "the data folder grew by {} MB",
        grown / (1024 * 1024)
    );
}

/// One webhook whose loop copies a large value into every job: the
/// record keeps results up to 16 × `--max-result` in all, then only the
/// jobs' status and times (`truncated`, no result). Before, each job kept
/// its own `--max-result`: a 305 KB body over 1,000 items wrote a 253 MB
/// record (2.5 GB with the defaults at the most).
#[test]
fn one_webhook_cannot_grow_a_record_without_bound() {
    let flow = r#"title: Copies
enabled: true
trigger: { type: webhook, mode: async, key: big-copies-key01 }
nodes:
  - key: each
    type: loop
    over: trigger.body.items
    do:
      - { key: copy, type: calculation, expression: trigger.body.pad }
"#;
    let app = TestApp::spawn_with(
        &[("copies.yaml", flow)],
        Options {
            args: vec!["--max-result".into(), "8KiB".into()],
            ..Options::default()
        },
    );
    let body = json!({ "items": (0..100).collect::<Vec<_>>(), "pad": "p".repeat(20_000) });
    let r = app.post_json("big-copies-key01", &body);
    assert_eq!(r.status, 200, "{r:?}");
    let record = app.finished(&r.execution(), Duration::from_secs(30));
    assert_eq!(record["status"], json!("resolved"), "{record}");
    let jobs = record["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), 101, "the loop and one job per item");
    let size = record.to_string().len();
    assert!(
        size < 200 * 1024,
        "the record is {size} bytes (16 × 8 KiB of results at most)"
    );
    let kept = jobs.iter().filter(|j| !j["result"].is_null()).count();
    assert!((10..=17).contains(&kept), "{kept} results kept");
    let last = jobs
        .iter()
        .rev()
        .find(|j| j["key"] == "copy")
        .expect("a copy job");
    assert_eq!(last["status"], json!("resolved"));
    assert_eq!(last["truncated"], json!(true));
    assert!(last["result"].is_null(), "{last}");
}

/// Runs accepted together share storage; one of them waiting past the
/// retention must not bring the others back after a restart (before, their
/// shared queue page made them run a second time).
#[test]
fn a_run_outliving_the_retention_brings_nobody_back() {
    a_run_outliving_the_retention_brings_nobody_back_on(Backing::Sled);
}

#[test]
fn a_run_outliving_the_retention_brings_nobody_back_on_postgres() {
    a_run_outliving_the_retention_brings_nobody_back_on(Backing::Postgres);
}

fn a_run_outliving_the_retention_brings_nobody_back_on(backing: Backing) {
    let up = Upstream::start();
    let flow = format!(
        r#"title: Mixed
enabled: true
trigger: {{ type: webhook, mode: async, key: mixed-runs-key-1 }}
nodes:
  - key: call
    type: request
    url: "{base}/echo/{{{{ trigger.body.n }}}}"
  - key: long
    type: condition
    if: trigger.body.n == 0
    then:
      - {{ key: pause, type: delay, duration: 1h }}
"#,
        base = up.base
    );
    let mut app = TestApp::spawn_with(
        &[("mixed.yaml", &flow)],
        Options {
            args: vec!["--retention".into(), "1s".into()],
            store: store_of(backing),
            ..Options::default()
        },
    );
    let url = app.hook("mixed-runs-key-1");
    let senders: Vec<_> = (0..16)
        .map(|n| {
            let url = url.clone();
            std::thread::spawn(move || {
                let agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .build()
                    .new_agent();
                let r = agent
                    .post(&url)
                    .header("content-type", "application/json")
                    .send(json!({ "n": n }).to_string())
                    .expect("request");
                assert_eq!(r.status().as_u16(), 200);
                r.headers()
                    .get("x-hookflow-execution")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
                    .expect("an execution id")
            })
        })
        .collect();
    let ids: Vec<String> = senders
        .into_iter()
        .map(|s| s.join().expect("sender"))
        .collect();
    // Every run called once; the first one waits for an hour.
    eventually(Duration::from_secs(20), "every run to call", || {
        (up.hits().len() == 16).then_some(())
    });
    let waiting = &ids[0];
    eventually(Duration::from_secs(10), "the long run to wait", || {
        (app.execution(waiting)["status"] == "waiting").then_some(())
    });
    // Retention (1 s, a pass every 10 s) removes the finished records.
    for id in &ids[1..] {
        eventually(
            Duration::from_secs(30),
            "retention to remove a record",
            || (app.admin_get(&format!("/api/executions/{id}")).status == 404).then_some(()),
        );
    }
    app.kill9();
    app.start();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        up.hits().len(),
        16,
        "no finished run ran again after the restart\n{}",
        app.log_text()
    );
    assert_eq!(app.execution(waiting)["status"], json!("waiting"));
}

/// kill -9 right after an async acknowledgement: the provider's retry with
/// the same key is a replay, not a second run.
#[test]
fn an_acknowledged_key_survives_kill_9() {
    an_acknowledged_key_survives_kill_9_on(Backing::Sled);
}

#[test]
fn an_acknowledged_key_survives_kill_9_on_postgres() {
    an_acknowledged_key_survives_kill_9_on(Backing::Postgres);
}

fn an_acknowledged_key_survives_kill_9_on(backing: Backing) {
    let up = Upstream::start();
    let flow = format!(
        r#"title: Keyed
enabled: true
trigger:
  type: webhook
  mode: async
  key: keyed-async-key1
  idempotency: {{ key: "{{{{ trigger.body.id }}}}", ttl: 1h }}
nodes:
  - key: call
    type: request
    url: "{base}/sleep/200"
"#,
        base = up.base
    );
    let mut app = TestApp::spawn_with(
        &[("keyed.yaml", &flow)],
        Options {
            store: store_of(backing),
            ..Options::default()
        },
    );
    let first = app.post_json("keyed-async-key1", &json!({"id": "pay-1"}));
    assert_eq!(first.status, 200, "{first:?}");
    app.kill9();
    app.start();
    let again = app.post_json("keyed-async-key1", &json!({"id": "pay-1"}));
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.header("x-hookflow-replayed"), Some("true"));
    assert_eq!(again.execution(), first.execution());
    let record = app.finished(&first.execution(), Duration::from_secs(20));
    assert_eq!(record["status"], json!("resolved"));
    let runs = app.admin_get("/api/executions?workflow=keyed").json();
    assert_eq!(
        runs["executions"].as_array().map(Vec::len),
        Some(1),
        "one run for the event: {runs}"
    );
    // The kill may interrupt its request, which is then sent again by the
    // same run (at least once), with the same Idempotency-Key.
    let keys: Vec<String> = up
        .hits_on("/sleep/200")
        .iter()
        .map(|h| h.headers["idempotency-key"].clone())
        .collect();
    assert!(!keys.is_empty());
    assert!(
        keys.iter()
            .all(|k| *k == format!("{}-call", first.execution())),
        "{keys:?}"
    );
}

/// kill -9 the moment the API shows a run finished: the run does not run
/// again after the restart (its request node is not sent a second time).
/// Before, a durable run's final record was written behind and synced
/// within half a second: 7 of 7 tries in the first 0.2 s ran it again.
#[test]
fn a_run_seen_finished_never_runs_again_after_kill_9() {
    let up = Upstream::start();
    let flow = format!(
        r#"title: Seen
enabled: true
trigger: {{ type: webhook, mode: async, key: seen-finished-k1 }}
nodes:
  - key: call
    type: request
    url: "{base}/echo/{{{{ trigger.body.n }}}}"
  - key: after
    type: log
    message: done
"#,
        base = up.base
    );
    let mut app = TestApp::spawn(&[("seen.yaml", &flow)]);
    for n in 0..3 {
        let r = app.post_json("seen-finished-k1", &json!({ "n": n }));
        assert_eq!(r.status, 200, "{r:?}");
        let id = r.execution();
        eventually(Duration::from_secs(10), "the run to finish", || {
            let got = app.admin_get(&format!("/api/executions/{id}"));
            (got.status == 200 && got.json()["status"] == "resolved").then_some(())
        });
        app.kill9();
        app.start();
        std::thread::sleep(Duration::from_millis(1500));
        let path = format!("/echo/{n}");
        assert_eq!(
            up.hits_on(&path).len(),
            1,
            "run {n} ran again after the restart\n{}",
            app.log_text()
        );
        assert_eq!(app.execution(&id)["status"], json!("resolved"));
    }
}

/// kill -9 right after a sync run answered 2xx: the sender's retry with
/// the same key is a replay, not a second run (and no second call to the
/// system the run called). Before, the key was written behind and lost.
#[test]
fn a_sync_key_survives_kill_9_after_its_answer() {
    let up = Upstream::start();
    let flow = format!(
        r#"title: Sync keyed
enabled: true
trigger:
  type: webhook
  mode: sync
  key: sync-keyed-kill1
  idempotency: {{ key: "{{{{ trigger.body.id }}}}", ttl: 1h }}
nodes:
  - key: call
    type: request
    url: "{base}/echo/charge"
  - type: response
    body: {{ charged: true }}
"#,
        base = up.base
    );
    let mut app = TestApp::spawn(&[("synckeyed.yaml", &flow)]);
    for n in 0..3 {
        let id = format!("pay-{n}");
        let first = app.post_json("sync-keyed-kill1", &json!({ "id": id }));
        assert_eq!(first.status, 200, "{first:?}");
        app.kill9();
        app.start();
        let again = app.post_json("sync-keyed-kill1", &json!({ "id": id }));
        assert_eq!(again.status, 200, "{again:?}");
        assert_eq!(
            again.header("x-hookflow-replayed"),
            Some("true"),
            "the retry of {id} after the restart"
        );
        assert_eq!(again.execution(), first.execution());
        assert_eq!(
            up.hits_on("/echo/charge").len(),
            n + 1,
            "one call per event"
        );
    }
}

/// A run of a workflow that needs nothing outside the process finishes
/// before its acknowledgement, and is on disk finished with its key: a
/// kill -9 right after the answer loses nothing, the record shows its jobs
/// and request, and the same key replays the answer (one run for the event).
#[test]
fn a_settled_run_survives_kill_9_finished() {
    a_settled_run_survives_kill_9_finished_on(Backing::Sled);
}

#[test]
fn a_settled_run_survives_kill_9_finished_on_postgres() {
    a_settled_run_survives_kill_9_finished_on(Backing::Postgres);
}

fn a_settled_run_survives_kill_9_finished_on(backing: Backing) {
    let flow = r#"title: Settles
enabled: true
trigger:
  type: webhook
  mode: async
  key: settles-key-0001
  idempotency: { key: "{{ trigger.body.id }}", ttl: 1h }
  response: { status: 202, body: { id: "{{ execution.id }}" } }
nodes:
  - { key: double, type: calculation, expression: trigger.body.n * 2 }
  - { key: said, type: log, message: "doubled {{ nodes.double }}" }
"#;
    let mut app = TestApp::spawn_with(
        &[("settles.yaml", flow)],
        Options {
            store: store_of(backing),
            ..Options::default()
        },
    );
    let first = app.post_json("settles-key-0001", &json!({"id": "pay-7", "n": 21}));
    assert_eq!(first.status, 202, "{first:?}");
    app.kill9();
    app.start();
    let record = app.execution(&first.execution());
    assert_eq!(record["status"], json!("resolved"), "{record}");
    assert_eq!(record["jobs"][0]["result"], json!(42), "{record}");
    assert_eq!(record["jobs"][1]["result"], json!("doubled 42"), "{record}");
    assert_eq!(record["trigger"]["body"]["n"], json!(21), "{record}");
    assert_eq!(record["response"]["status"], json!(202), "{record}");
    let again = app.post_json("settles-key-0001", &json!({"id": "pay-7", "n": 21}));
    assert_eq!(again.status, 202, "{again:?}");
    assert_eq!(again.header("x-hookflow-replayed"), Some("true"));
    assert_eq!(again.execution(), first.execution());
    let runs = app.admin_get("/api/executions?workflow=settles").json();
    assert_eq!(
        runs["executions"].as_array().map(Vec::len),
        Some(1),
        "one run for the event: {runs}"
    );
}

/// Sends a whole request and resets the connection `after` it (SO_LINGER
/// 0: the close sends RST), as a client that gives up would.
fn post_and_reset(addr: &str, key: &str, body: &str, after: Duration) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    let request = format!(
        "POST /api/webhook:trigger/{key} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("send");
    std::thread::sleep(after);
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::linger>()).expect("size");
    // SAFETY: a valid socket descriptor we own and a correctly sized option.
    unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&stream),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::addr_of!(linger).cast(),
            len,
        );
    }
    drop(stream);
}

/// A run that reached the disk is handed to the workers whatever the client
/// does: 200 requests, each connection reset between at once and 100 ms
/// after sending, so that resets land before the request is read, while it
/// is stored and after the answer (all reset at once, a loaded CI machine
/// once read none of them, and the test proved nothing).
#[test]
fn reset_connections_leave_no_orphan() {
    const AFTER_US: [u64; 8] = [0, 100, 300, 1_000, 3_000, 10_000, 30_000, 100_000];
    let up = Upstream::start();
    let flow = format!(
        r#"title: Reset
enabled: true
trigger: {{ type: webhook, mode: async, key: reset-conns-key1 }}
nodes:
  - key: call
    type: request
    url: "{base}/echo/{{{{ trigger.body.n }}}}"
"#,
        base = up.base
    );
    let app = TestApp::spawn(&[("reset.yaml", &flow)]);
    let addr = app.base.trim_start_matches("http://").to_string();
    for n in 0..200 {
        let after = Duration::from_micros(AFTER_US[n % AFTER_US.len()]);
        post_and_reset(
            &addr,
            "reset-conns-key1",
            &json!({ "n": n }).to_string(),
            after,
        );
    }
    // Whatever reached the disk runs, within seconds.
    let listed = eventually(
        Duration::from_secs(30),
        "every stored run to finish",
        || {
            let r = app.admin_get("/api/executions?workflow=reset&limit=1000");
            let rows = r.json()["executions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let unfinished = rows
                .iter()
                .filter(|row| !matches!(row["status"].as_str(), Some("resolved" | "failed")))
                .count();
            (unfinished == 0).then_some(rows.len())
        },
    );
    eventually(Duration::from_secs(10), "every stored run to call", || {
        (up.hits().len() == listed).then_some(())
    });
    assert!(listed > 0, "some requests reached the disk");
}

/// Garbage written into one stored entry while the server is stopped: the
/// server starts, logs the damage, and serves.
#[test]
fn a_damaged_entry_does_not_stop_the_server() {
    let flow = "title: Waits\nenabled: true\ntrigger: { type: webhook, mode: async, key: waits-key-0001 }\nnodes:\n  - { key: pause, type: delay, duration: 1h }\n";
    let mut app = TestApp::spawn(&[("waits.yaml", flow)]);
    let first = app.post_json("waits-key-0001", &json!({"n": 1}));
    let second = app.post_json("waits-key-0001", &json!({"n": 2}));
    for id in [first.execution(), second.execution()] {
        eventually(Duration::from_secs(10), "the run to wait", || {
            (app.execution(&id)["status"] == "waiting").then_some(())
        });
    }
    let mut child = app.sigterm();
    let _ = child.wait();
    {
        // The first waiting run's head (`r`, its id, `h`) gets garbage for a value.
        let db = sled::open(app.data_path().join("db")).expect("open the stopped store");
        let runs = db.open_tree("runs").expect("runs");
        let key = runs
            .scan_prefix(b"r")
            .keys()
            .filter_map(Result::ok)
            .find(|k| k.get(17) == Some(&b'h'))
            .expect("a waiting run's head");
        runs.insert(key, &b"\x00garbage, not a page"[..])
            .expect("write");
        db.flush().expect("flush");
    }
    app.start();
    assert_eq!(app.get("/healthz").status, 200);
    // Reading the damaged run sets it aside (and reports it) instead of failing.
    let gone = app.admin_get(&format!("/api/executions/{}", first.execution()));
    assert_eq!(gone.status, 404, "{gone:?}");
    let log = app.log_text();
    assert!(
        log.contains("damaged") && log.contains("set aside"),
        "the damage is reported:\n{log}"
    );
    // The other run is still there, and new requests are served.
    assert_eq!(
        app.execution(&second.execution())["status"],
        json!("waiting")
    );
    let third = app.post_json("waits-key-0001", &json!({"n": 3}));
    assert_eq!(third.status, 200);
}

/// The data folder holds request bodies and credentials of unfinished runs:
/// it is 0700 and its files 0600, also when it existed with other modes.
#[test]
fn the_data_folder_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let flow = "title: P\nenabled: true\ntrigger: { type: webhook, mode: async, key: private-key-001 }\nnodes:\n  - { key: pause, type: delay, duration: 1h }\n";
    let mut app = TestApp::spawn(&[("p.yaml", flow)]);
    let mut child = app.sigterm();
    let _ = child.wait();
    std::fs::set_permissions(app.data_path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    std::fs::set_permissions(
        app.data_path().join("keys.json"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    app.start();
    assert_eq!(app.post_json("private-key-001", &json!({})).status, 200);
    fn check(path: &Path, found: &mut Vec<String>) {
        let meta = std::fs::symlink_metadata(path).expect("metadata");
        let mode = meta.permissions().mode() & 0o777;
        let want = if meta.is_dir() { 0o700 } else { 0o600 };
        if mode != want {
            found.push(format!("{} {mode:o}", path.display()));
        }
        if meta.is_dir() {
            for e in std::fs::read_dir(path).expect("read_dir").flatten() {
                check(&e.path(), found);
            }
        }
    }
    let mut wrong = Vec::new();
    check(app.data_path(), &mut wrong);
    assert!(wrong.is_empty(), "not private: {wrong:?}");
}
