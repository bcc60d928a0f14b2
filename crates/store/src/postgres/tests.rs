//! What only a shared store promises: claims, leases, racing keys, group
//! commit, migrations (the contract itself is checked by `conformance`).

use super::{PgOptions, PgStore};
use crate::contract::{Accepted, IdempotencyClaim, Position, Saved, Store};
use crate::record::{ExecutionRecord, IdempotencyEntry, ResponseRecord, RunInput, RunStatus};
use crate::StoreError;
use hookflow_model::time::{now_millis, Timestamp};
use std::sync::Arc;
use std::time::Duration;

fn fresh_db(name: &str) -> String {
    hookflow_pgtest::cluster().database(&format!("u_{}_{name}", std::process::id()))
}

fn open(url: &str, instance: &str, lease_ms: u64) -> PgStore {
    PgStore::open(
        url,
        PgOptions {
            lease: Duration::from_millis(lease_ms),
            instance: instance.into(),
            pool_size: 4,
        },
    )
    .expect("opens")
}

fn run(key: Option<&str>) -> Accepted {
    let id = uuid::Uuid::now_v7().to_string();
    let ack = ResponseRecord {
        status: 202,
        headers: Default::default(),
        body: Arc::new(serde_json::json!("ok")),
    };
    let now = now_millis();
    Accepted {
        record: ExecutionRecord {
            id: id.clone(),
            workflow: "w".into(),
            version: "v".into(),
            status: RunStatus::Queued,
            started_at: Timestamp(now),
            finished_at: None,
            started_ms: now,
            trigger: None,
            jobs: Vec::new(),
            response: Some(ack.clone()),
            retry_of: None,
            error: None,
        },
        input: RunInput::default(),
        idempotency: key.map(|k| IdempotencyClaim {
            workflow: "w".into(),
            key: k.into(),
            entry: IdempotencyEntry {
                execution_id: id,
                expires_ms: now + 60_000,
                response: Some(ack),
            },
        }),
    }
}

#[tokio::test]
async fn a_newer_schema_is_refused_naming_both_versions() {
    let url = fresh_db("newer");
    drop(open(&url, "a", 30_000));
    let db = url
        .rsplit('/')
        .next()
        .and_then(|s| s.split('?').next())
        .expect("db");
    hookflow_pgtest::cluster()
        .psql_in(db, "INSERT INTO hookflow_schema (version) VALUES (999)")
        .expect("a newer schema");
    let e = PgStore::open(&url, PgOptions::default())
        .err()
        .expect("a newer schema is refused");
    let text = e.to_string();
    assert!(
        text.contains("version 999")
            && text.contains(&format!("version {}", super::schema::current())),
        "{text}"
    );
}

#[tokio::test]
async fn concurrent_accepts_share_commits() {
    let url = fresh_db("group");
    let store = Arc::new(open(&url, "a", 30_000));
    let before = store.commits();
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move { store.accept(run(None)).await }));
    }
    for t in tasks {
        t.await.expect("task").expect("accepted");
    }
    let commits = store.commits() - before;
    assert!(commits <= 16, "64 accepts took {commits} commits");
    assert_eq!(store.unfinished(None, 100).expect("unfinished").len(), 64);
}

#[tokio::test]
async fn two_instances_racing_on_one_key_start_one_run() {
    let url = fresh_db("race");
    let a = Arc::new(open(&url, "a", 30_000));
    let b = Arc::new(open(&url, "b", 30_000));
    for round in 0..10 {
        let key = format!("k{round}");
        let (ra, rb) = (run(Some(&key)), run(Some(&key)));
        let (ida, idb) = (ra.record.id.clone(), rb.record.id.clone());
        let (x, y) = tokio::join!(a.accept(ra), b.accept(rb));
        let (won, lost, loser) = match (x, y) {
            (Ok(()), Err(StoreError::KeyTaken(e))) => (ida, e, idb),
            (Err(StoreError::KeyTaken(e)), Ok(())) => (idb, e, ida),
            other => panic!("one accept wins, the other is a repeat: {other:?}"),
        };
        assert_eq!(lost.execution_id, won);
        assert!(
            a.get(&loser).expect("get").is_none(),
            "the repeat stored nothing"
        );
        assert!(b.get(&won).expect("get").is_some());
    }
    assert_eq!(a.unfinished(None, 100).expect("unfinished").len(), 10);
}

#[tokio::test]
async fn leases_keep_runs_and_expired_ones_are_claimed_once() {
    let url = fresh_db("lease");
    let a = open(&url, "a", 1_000);
    let b = Arc::new(open(&url, "b", 1_000));
    let r = run(None);
    let id = r.record.id.clone();
    a.accept(r).await.expect("accepted");
    assert!(
        b.claim_expired(10).expect("claim").is_empty(),
        "A's lease holds"
    );
    // A renews while it lives.
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    assert!(b.claim_expired(10).expect("claim").is_empty(), "renewed");
    drop(a);
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let (x, y) = tokio::join!(
        tokio::task::spawn_blocking({
            let b = b.clone();
            move || b.claim_expired(10)
        }),
        tokio::task::spawn_blocking({
            let url = url.clone();
            move || open(&url, "c", 1_000).claim_expired(10)
        })
    );
    let mut claimed = x.expect("task").expect("claim");
    claimed.extend(y.expect("task").expect("claim"));
    assert_eq!(claimed, vec![id.clone()], "taken over once");
    // Waiting runs are nobody's; a due one is claimed by one instance.
    b.save(
        &id,
        Saved {
            status: RunStatus::Waiting,
            wake_at: Some(now_millis() - 1),
            jobs: Vec::new(),
            position: Position::default(),
        },
    );
    b.flush().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    assert!(
        b.claim_expired(10).expect("claim").is_empty(),
        "waiting runs have no lease"
    );
    let c = open(&url, "c", 1_000);
    let mut due = c.claim_due(now_millis(), 10).expect("due");
    due.extend(b.claim_due(now_millis(), 10).expect("due"));
    assert_eq!(due, vec![id.clone()]);
    assert_eq!(
        c.get(&id).expect("get").map(|r| r.status),
        Some(RunStatus::Running)
    );
}

#[tokio::test]
async fn tls_is_used_and_checked_as_sslmode_says() {
    let cluster = hookflow_pgtest::cluster();
    let ca = cluster
        .ca_file()
        .expect("the test cluster speaks TLS (openssl makes its certificate)")
        .display()
        .to_string();
    let url = fresh_db("tls");
    let db = url
        .rsplit('/')
        .next()
        .and_then(|s| s.split('?').next())
        .expect("db");
    let port = cluster.port();
    let at = |host: &str, query: &str| format!("postgres://postgres@{host}:{port}/{db}?{query}");
    let opens = |url: String| {
        PgStore::open(&url, PgOptions::default())
            .map(drop)
            .map_err(|e| e.to_string())
    };
    let ok = [
        at(
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        ),
        at("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={ca}")),
        at("127.0.0.1", "sslmode=require"),
        at("127.0.0.1", "sslmode=disable"),
    ];
    for url in ok {
        opens(url.clone()).unwrap_or_else(|e| panic!("{url}: {e}"));
    }
    // The certificate is for localhost, not 127.0.0.1: verify-full refuses.
    let e = opens(at(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .expect_err("the host name is checked");
    assert!(e.contains("TLS") || e.contains("certificate"), "{e}");
    // Another CA: the chain does not verify.
    let other = std::env::temp_dir().join(format!("hookflow-other-ca-{}.pem", std::process::id()));
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=other", "-keyout", "/dev/null", "-out"])
        .arg(&other)
        .output()
        .expect("openssl");
    assert!(made.status.success(), "{made:?}");
    let e = opens(at(
        "localhost",
        &format!("sslmode=verify-ca&sslrootcert={}", other.display()),
    ))
    .expect_err("an unknown issuer is refused");
    let _ = std::fs::remove_file(&other);
    assert!(e.contains("TLS") || e.contains("certificate"), "{e}");
}

#[tokio::test]
async fn any_rendered_key_is_kept_nul_included() {
    let url = fresh_db("nulkey");
    let store = open(&url, "a", 30_000);
    let odd = "evt\0\u{1F600}\u{7f}";
    let r = run(Some(odd));
    let id = r.record.id.clone();
    let plain = run(None);
    let (x, y) = tokio::join!(store.accept(r), store.accept(plain));
    x.expect("a key with NUL is accepted");
    y.expect("its neighbour too");
    let entry = store
        .idempotency("w", odd, now_millis())
        .expect("read")
        .expect("kept");
    assert_eq!(entry.execution_id, id);
    assert!(store
        .idempotency("w", "evt", now_millis())
        .expect("read")
        .is_none());
}

#[tokio::test]
async fn an_instance_never_claims_its_own_runs_again() {
    let url = fresh_db("own");
    // A long lease: its renewal (every 20 s) does not come during the test.
    let a = open(&url, "a", 60_000);
    a.accept(run(None)).await.expect("accepted");
    // A renewal that comes late (a busy machine) lets the lease lapse.
    hookflow_pgtest::cluster()
        .psql_in(
            url.rsplit('/')
                .next()
                .and_then(|s| s.split('?').next())
                .expect("db"),
            "UPDATE hookflow_queue SET lease_until = 0",
        )
        .expect("lapse");
    assert!(
        a.claim_expired(10).expect("claim").is_empty(),
        "it holds the run"
    );
    let b = open(&url, "b", 1_000);
    assert_eq!(
        b.claim_expired(10).expect("claim").len(),
        1,
        "another takes it over"
    );
}

fn job(n: u64) -> crate::record::JobRecord {
    crate::record::JobRecord {
        key: Some(format!("n{n}")),
        kind: "log".into(),
        status: crate::record::JobStatus::Resolved,
        result: serde_json::json!(n),
        error: None,
        started_at: Timestamp(now_millis()),
        duration_ms: n,
        truncated: false,
        tries: Vec::new(),
    }
}

/// A turn holds several writes of one run (saves, a wait, a wake, the
/// finish) among other runs' writes: they are grouped by kind, and still
/// apply as if one by one, in order.
#[tokio::test]
async fn a_turn_with_many_writes_of_one_run_applies_them_in_order() {
    let url = fresh_db("order");
    let store = Arc::new(open(&url, "a", 30_000));
    let runs: Vec<Accepted> = (0..20).map(|_| run(None)).collect();
    for r in &runs {
        store.accept(r.clone()).await.expect("accepted");
    }
    let before = store.commits();
    let save = |status, wake_at, jobs: Vec<(usize, crate::record::JobRecord)>, part: &str| Saved {
        status,
        wake_at,
        jobs,
        position: Position {
            frames: serde_json::json!([part]),
            parts: vec![(part.to_string(), serde_json::json!(part))],
        },
    };
    for (i, r) in runs.iter().enumerate() {
        let id = &r.record.id;
        store.save(id, save(RunStatus::Running, None, vec![(0, job(0))], "a"));
        store.save(
            id,
            save(
                RunStatus::Waiting,
                Some(now_millis() + 60_000),
                vec![(1, job(1))],
                "b",
            ),
        );
        store.woke(id);
        store.save(
            id,
            save(
                RunStatus::Running,
                None,
                vec![(1, job(11)), (2, job(2))],
                "a",
            ),
        );
        if i % 2 == 0 {
            let mut record = r.record.clone();
            record.status = RunStatus::Resolved;
            record.finished_at = Some(Timestamp(now_millis()));
            record.jobs = vec![job(0), job(11), job(2)];
            store.finish(record, true);
        }
    }
    store.flush().await.expect("flushed");
    let commits = store.commits() - before;
    assert!(commits <= 20, "90 writes took {commits} commits");
    assert_eq!(
        store.next_wake().expect("next wake"),
        None,
        "every run woke"
    );
    let unfinished = store.unfinished(None, 100).expect("unfinished");
    assert_eq!(unfinished.len(), 10);
    for (i, r) in runs.iter().enumerate() {
        let id = &r.record.id;
        let got = store.get(id).expect("get").expect("kept");
        if i % 2 == 0 {
            assert_eq!(got.status, RunStatus::Resolved, "run {i}");
            assert!(store.resumable(id).expect("resumable").is_none(), "run {i}");
            assert!(!unfinished.contains(id));
            continue;
        }
        assert_eq!(got.status, RunStatus::Running, "run {i}");
        let resumable = store.resumable(id).expect("resumable").expect("live");
        let results: Vec<_> = resumable
            .record
            .jobs
            .iter()
            .map(|j| j.result.clone())
            .collect();
        assert_eq!(
            results,
            vec![
                serde_json::json!(0),
                serde_json::json!(11),
                serde_json::json!(2)
            ]
        );
        assert_eq!(resumable.frames, serde_json::json!(["a"]), "run {i}");
        assert_eq!(resumable.parts.get("a"), Some(&serde_json::json!("a")));
        assert_eq!(resumable.parts.get("b"), Some(&serde_json::json!("b")));
    }
}
