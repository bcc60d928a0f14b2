//! What only a shared store promises: claims, leases, racing keys, group
//! commit, migrations (the contract itself is checked by `conformance`).

use super::{PgOptions, PgStore};
use crate::contract::{Accepted, IdempotencyClaim, KeyClaim, Position, Saved, Store};
use crate::record::{ExecutionRecord, IdempotencyEntry, ResponseRecord, RunInput, RunStatus};
use crate::StoreError;
use hookflow_model::time::{now_millis, Timestamp};
use std::sync::Arc;
use std::time::Duration;

fn fresh_db(name: &str) -> String {
    hookflow_pgtest::cluster().database(&format!("u_{}_{name}", std::process::id()))
}

/// The database name of a test database's URL.
fn db_of(url: &str) -> &str {
    url.rsplit('/')
        .next()
        .and_then(|s| s.split('?').next())
        .expect("db")
}

fn open(url: &str, instance: &str, lease_ms: u64) -> PgStore {
    PgStore::open(
        url,
        PgOptions {
            lease: Duration::from_millis(lease_ms),
            instance: instance.into(),
            pool_size: 4,
            ..PgOptions::default()
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
    let db = db_of(&url);
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
    let db = db_of(&url);
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
        .psql_in(db_of(&url), "UPDATE hookflow_queue SET lease_until = 0")
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

/// An instance that lost a run (its lease ran out while it was paused,
/// and another took the run over) and saves or finishes it late changes
/// nothing: not the position, not the owner (a wait would free the run to
/// be claimed a third time), not the queue row, not the record.
#[tokio::test]
async fn a_late_save_or_finish_from_an_instance_that_lost_the_run_changes_nothing() {
    let url = fresh_db("lost");
    let a = open(&url, "a", 60_000);
    let b = open(&url, "b", 60_000);
    let r = run(None);
    let id = r.record.id.clone();
    a.accept(r.clone()).await.expect("accepted");
    let saved = |status, wake_at, n: u64, at: &str| Saved {
        status,
        wake_at,
        jobs: vec![(n as usize % 10, job(n))],
        position: Position {
            frames: serde_json::json!([at]),
            parts: vec![(at.to_string(), serde_json::json!(n))],
        },
    };
    a.save(&id, saved(RunStatus::Running, None, 0, "a0"));
    a.flush().await.expect("flush");
    hookflow_pgtest::cluster()
        .psql_in(db_of(&url), "UPDATE hookflow_queue SET lease_until = 0")
        .expect("lapse");
    assert_eq!(b.claim_expired(10).expect("claim"), vec![id.clone()]);
    b.save(&id, saved(RunStatus::Running, None, 10, "b0"));
    b.flush().await.expect("flush");
    // A wakes up and goes on: a node later it waits, then it finishes.
    a.save(
        &id,
        saved(RunStatus::Waiting, Some(now_millis() - 1), 1, "a1"),
    );
    a.flush().await.expect("flush");
    let live = b.resumable(&id).expect("resumable").expect("live");
    assert_eq!(live.frames, serde_json::json!(["b0"]), "B's position stays");
    assert_eq!(live.parts.get("a1"), None, "A's part is not added");
    let results: Vec<_> = live.record.jobs.iter().map(|j| j.result.clone()).collect();
    assert_eq!(results, vec![serde_json::json!(10)], "A's job is not added");
    assert_eq!(
        b.get(&id).expect("get").map(|r| r.status),
        Some(RunStatus::Running)
    );
    assert_eq!(b.next_wake().expect("next wake"), None, "not waiting");
    let c = open(&url, "c", 60_000);
    assert!(
        c.claim_due(now_millis(), 10).expect("due").is_empty(),
        "nobody else can claim it"
    );
    assert_eq!(
        b.still_held(vec![id.clone()]).expect("held"),
        vec![id.clone()]
    );
    let mut late = r.record.clone();
    late.status = RunStatus::Failed;
    late.finished_at = Some(Timestamp(now_millis()));
    late.jobs = vec![job(0), job(1)];
    a.finish(late, true);
    a.flush().await.expect("flush");
    assert_eq!(
        b.get(&id).expect("get").map(|r| r.status),
        Some(RunStatus::Running),
        "A's finish does not end B's run"
    );
    assert_eq!(
        b.unfinished(None, 10).expect("unfinished"),
        vec![id.clone()]
    );
    assert!(b.resumable(&id).expect("resumable").is_some());
    let mut done = r.record.clone();
    done.status = RunStatus::Resolved;
    done.finished_at = Some(Timestamp(now_millis()));
    done.jobs = vec![job(10)];
    b.finish(done, true);
    b.flush().await.expect("flush");
    let got = a.get(&id).expect("get").expect("kept");
    assert_eq!(got.status, RunStatus::Resolved, "B's finish is the record");
    assert_eq!(got.jobs.len(), 1);
    assert!(b.resumable(&id).expect("resumable").is_none());
    assert!(b.unfinished(None, 10).expect("unfinished").is_empty());
}

/// A turn tried again after its commit's answer was lost (the database
/// committed, the connection dropped before it said so) stands: the
/// accept's own key is not "taken" by itself, and the run is kept once.
/// Before, the accept failed with its own run as the holder of the key:
/// the caller got a replay of a run that, queued under this instance and
/// never handed to a worker, stayed queued for as long as it lived.
#[tokio::test]
async fn a_turn_tried_again_after_its_commit_keeps_its_accepts() {
    let url = fresh_db("again");
    let store = open(&url, "a", 60_000);
    let r = run(Some("evt-1"));
    let id = r.record.id.clone();
    let (done, _wait) = tokio::sync::oneshot::channel();
    let batch = vec![super::writer::Submitted {
        seq: 1,
        write: super::writer::accept(r, done).expect("encodes"),
    }];
    let first = super::apply::apply(&store.shared, &batch)
        .await
        .expect("applies");
    assert!(first[0].is_ok(), "{:?}", first[0]);
    let again = super::apply::apply(&store.shared, &batch)
        .await
        .expect("applies again");
    assert!(again[0].is_ok(), "{:?}", again[0]);
    assert_eq!(
        store.unfinished(None, 10).expect("unfinished"),
        vec![id.clone()]
    );
    let entry = store
        .idempotency("w", "evt-1", now_millis())
        .expect("read")
        .expect("kept");
    assert_eq!(entry.execution_id, id);
    // Another run with the key is still a duplicate.
    match store.accept(run(Some("evt-1"))).await {
        Err(StoreError::KeyTaken(held)) => assert_eq!(held.execution_id, id),
        got => panic!("expected the key taken, got {got:?}"),
    }
}

/// Wake times are kept on the database's clock: an instance whose clock
/// runs two minutes ahead does not wake a run a minute early, and one
/// whose clock is behind does not wake it late. Before, each compared the
/// wake time another instance wrote with its own clock.
#[tokio::test]
async fn waits_are_timed_on_the_database_s_clock_across_instances() {
    use std::sync::atomic::Ordering;
    let url = fresh_db("skew");
    let a = open(&url, "a", 60_000);
    let ahead = open(&url, "ahead", 60_000);
    let behind = open(&url, "behind", 60_000);
    for (store, skew) in [(&ahead, 120_000), (&behind, -120_000)] {
        store.shared.skew_ms.store(skew, Ordering::Relaxed);
        let shared = store.shared.clone();
        store
            .read(move |s| async move { super::clock::refresh(&s).await })
            .expect("the clocks compared again");
        assert!((shared.offset_ms() + skew).abs() < 1_000);
    }
    let local = |s: &PgStore| (now_millis() as i64 + s.shared.skew()) as u64;
    let wait = |wake_at| Saved {
        status: RunStatus::Waiting,
        wake_at: Some(wake_at),
        jobs: Vec::new(),
        position: Position::default(),
    };
    let later = run(None);
    a.accept(later.clone()).await.expect("accepted");
    a.save(&later.record.id, wait(now_millis() + 60_000));
    a.flush().await.expect("flush");
    assert!(ahead.due(local(&ahead), 10).expect("due").is_empty());
    assert!(
        ahead
            .claim_due(local(&ahead), 10)
            .expect("claim")
            .is_empty(),
        "a clock ahead does not wake it early"
    );
    let next = ahead.next_wake().expect("next wake").expect("one waits");
    let left = next.saturating_sub(local(&ahead));
    assert!(
        (55_000..=60_000).contains(&left),
        "the wait has {left} ms left on the clock ahead"
    );
    let due = run(None);
    a.accept(due.clone()).await.expect("accepted");
    a.save(&due.record.id, wait(now_millis() - 1_000));
    a.flush().await.expect("flush");
    assert_eq!(
        behind.claim_due(local(&behind), 10).expect("claim"),
        vec![due.record.id.clone()],
        "a clock behind wakes it on time"
    );
}

/// Every instance polls for runs whose lease ran out every second: the
/// poll reads only the expired leases, not the whole queue (before, it
/// walked the queue in id order, waiting runs included, filtering each
/// row: 40,000 rows read a poll for a queue of 40,000).
#[tokio::test]
async fn the_takeover_poll_reads_only_expired_leases() {
    let url = fresh_db("poll");
    let store = open(&url, "a", 60_000);
    hookflow_pgtest::cluster()
        .psql_in(
            db_of(&url),
            "INSERT INTO hookflow_queue (id, status, owner, lease_until, wake_at)
             SELECT 'r' || lpad(g::text, 6, '0'),
               CASE WHEN g % 2 = 0 THEN 'waiting' ELSE 'running' END,
               CASE WHEN g % 2 = 0 THEN NULL ELSE 'b' END,
               hookflow_now_ms() + 600000,
               CASE WHEN g % 2 = 0 THEN hookflow_now_ms() + 600000 + g END
             FROM generate_series(1, 40000) g;
             ANALYZE hookflow_queue;",
        )
        .expect("fill");
    let mut client = store.shared.conn().await.expect("conn");
    let tx = client.transaction().await.expect("tx");
    let lease: i64 = 60_000;
    let limit: i64 = 100;
    let rows = tx
        .query(
            &format!("EXPLAIN ANALYZE {}", super::claims::CLAIM_EXPIRED),
            &[&"a", &lease, &limit],
        )
        .await
        .expect("explain");
    let plan: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let read: u64 = plan
        .iter()
        .filter_map(|line| line.split_once("Rows Removed by ").map(|(_, rest)| rest))
        .filter_map(|rest| rest.rsplit(": ").next()?.trim().parse::<u64>().ok())
        .sum();
    assert!(
        plan.iter().any(|l| l.contains("hookflow_queue_lease")),
        "the lease index is used: {plan:#?}"
    );
    assert!(read < 1_000, "the poll read {read} rows: {plan:#?}");
    drop(tx);
    // Expired ones are claimed, those whose lease ran out first.
    hookflow_pgtest::cluster()
        .psql_in(
            db_of(&url),
            "UPDATE hookflow_queue SET lease_until = 0 WHERE id IN ('r000003', 'r000005')",
        )
        .expect("lapse");
    assert_eq!(
        store.claim_expired(10).expect("claim"),
        vec!["r000003".to_string(), "r000005".to_string()]
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
/// A sync run's answer for `key`, kept until `expires_ms`.
fn answer(key: &str, execution_id: &str, expires_ms: u64) -> IdempotencyClaim {
    IdempotencyClaim {
        workflow: "w".into(),
        key: key.into(),
        entry: IdempotencyEntry {
            execution_id: execution_id.into(),
            expires_ms,
            response: Some(ResponseRecord {
                status: 201,
                headers: Default::default(),
                body: Arc::new(serde_json::json!({"made": execution_id})),
            }),
        },
    }
}

/// Claims `key` for `id` until it is claimed, within a bound; false if not.
async fn claimed_within(store: &PgStore, key: &str, id: &str, limit: Duration) -> bool {
    let end = std::time::Instant::now() + limit;
    while std::time::Instant::now() < end {
        let now = now_millis();
        if store
            .claim_key("w", key, id, now, now + 60_000)
            .expect("claim")
            == KeyClaim::Claimed
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn sync_keys_are_claimed_pending_until_answered_or_released() {
    let url = fresh_db("pending");
    let a = open(&url, "a", 30_000);
    let b = open(&url, "b", 30_000);
    let now = now_millis();
    let until = now + 60_000;
    let hour = now + 3_600_000;
    // Claimed, and claimed again by the same run; another run waits.
    assert_eq!(
        a.claim_key("w", "k1", "ra", now, until).expect("claim"),
        KeyClaim::Claimed
    );
    assert_eq!(
        a.claim_key("w", "k1", "ra", now, until).expect("claim"),
        KeyClaim::Claimed
    );
    assert_eq!(
        b.claim_key("w", "k1", "rb", now, until).expect("claim"),
        KeyClaim::Pending("ra".into())
    );
    // The read of the key sees a claim without an answer.
    let seen = b.idempotency("w", "k1", now).expect("read").expect("kept");
    assert_eq!((seen.execution_id.as_str(), seen.response), ("ra", None));
    // The answer replaces the claim: held, with the response to replay.
    let held = answer("k1", "ra", hour);
    a.put_idempotency(held.clone());
    a.flush().await.expect("flush");
    assert_eq!(
        b.claim_key("w", "k1", "rb", now_millis(), until)
            .expect("claim"),
        KeyClaim::Held(held.entry.clone())
    );

    // Another run's answer does not replace a live claim.
    assert_eq!(
        b.claim_key("w", "k2", "rb", now, until).expect("claim"),
        KeyClaim::Claimed
    );
    a.put_idempotency(answer("k2", "ra", hour));
    a.flush().await.expect("flush");
    assert_eq!(
        a.claim_key("w", "k2", "rc", now_millis(), until)
            .expect("claim"),
        KeyClaim::Pending("rb".into())
    );
    // A release by another run changes nothing; the holder's frees the key.
    a.release_key("w", "k2", "ra");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        a.claim_key("w", "k2", "rc", now_millis(), until)
            .expect("claim"),
        KeyClaim::Pending("rb".into())
    );
    b.release_key("w", "k2", "rb");
    assert!(
        claimed_within(&a, "k2", "rc", Duration::from_secs(10)).await,
        "released"
    );
    // An answered key is never released.
    b.release_key("w", "k1", "ra");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(matches!(
        b.claim_key("w", "k1", "rb", now_millis(), until)
            .expect("claim"),
        KeyClaim::Held(_)
    ));

    // A pending claim that ran out (its instance died) is claimed again.
    let soon = now_millis() + 200;
    assert_eq!(
        b.claim_key("w", "k3", "rb", now_millis(), soon)
            .expect("claim"),
        KeyClaim::Claimed
    );
    assert_eq!(
        a.claim_key("w", "k3", "ra", now_millis(), until)
            .expect("claim"),
        KeyClaim::Pending("rb".into())
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        a.claim_key("w", "k3", "ra", now_millis(), until)
            .expect("claim"),
        KeyClaim::Claimed
    );
    // ... and the late answer of the run that lost it changes nothing.
    b.put_idempotency(answer("k3", "rb", hour));
    b.flush().await.expect("flush");
    assert_eq!(
        b.claim_key("w", "k3", "rd", now_millis(), until)
            .expect("claim"),
        KeyClaim::Pending("ra".into())
    );

    // An expired answer is claimed again.
    a.put_idempotency(answer("k4", "ra", now_millis() + 200));
    a.flush().await.expect("flush");
    assert!(matches!(
        b.claim_key("w", "k4", "rb", now_millis(), until)
            .expect("claim"),
        KeyClaim::Held(_)
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        b.claim_key("w", "k4", "rb", now_millis(), until)
            .expect("claim"),
        KeyClaim::Claimed
    );

    // An async run's key (claimed by its accept) is held with its acknowledgement.
    let r = run(Some("k5"));
    let id = r.record.id.clone();
    a.accept(r).await.expect("accepted");
    match b
        .claim_key("w", "k5", "rb", now_millis(), until)
        .expect("claim")
    {
        KeyClaim::Held(entry) => {
            assert_eq!(entry.execution_id, id);
            assert_eq!(entry.response.map(|r| r.status), Some(202));
        }
        other => panic!("held by the accepted run: {other:?}"),
    }
    // An accept over another run's live claim is a repeat of it.
    assert_eq!(
        a.claim_key("w", "k6", "ra", now_millis(), until)
            .expect("claim"),
        KeyClaim::Claimed
    );
    match b.accept(run(Some("k6"))).await {
        Err(StoreError::KeyTaken(e)) => assert_eq!(e.execution_id, "ra"),
        other => panic!("the key is taken: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_far_behind_is_overloaded_and_keeps_every_write() {
    let url = fresh_db("backlog");
    let db = db_of(&url).to_string();
    let bound = 10;
    let store = Arc::new(
        PgStore::open(
            &url,
            PgOptions {
                instance: "a".into(),
                max_backlog: bound,
                ..PgOptions::default()
            },
        )
        .expect("opens"),
    );
    assert!(!store.overloaded());
    let holder = hold_runs_table(&db).await;
    // Accepts wait for their commit; past the bound the store says so.
    let mut accepts = Vec::new();
    for _ in 0..=bound {
        let store = store.clone();
        accepts.push(tokio::spawn(async move {
            let r = run(None);
            let id = r.record.id.clone();
            store.accept(r).await.map(|()| id)
        }));
    }
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while !store.overloaded() {
        assert!(std::time::Instant::now() < end, "overloaded past the bound");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Writes of runs already admitted are still kept (a sync run's record).
    let mut sync = run(None).record;
    sync.status = RunStatus::Resolved;
    sync.finished_at = Some(Timestamp(now_millis()));
    let sync_id = sync.id.clone();
    store.finish(sync, false);
    assert!(store.overloaded());
    // The database answers again: every write is committed, in order.
    release_runs_table(&db, holder);
    for accept in accepts {
        let id = accept.await.expect("task").expect("accepted");
        assert!(store.get(&id).expect("get").is_some());
    }
    store.flush().await.expect("flush");
    assert!(!store.overloaded());
    assert_eq!(store.unfinished(None, 100).expect("unfinished").len(), 11);
    assert_eq!(
        store.get(&sync_id).expect("get").map(|r| r.status),
        Some(RunStatus::Resolved)
    );
}

/// The database stops answering the writer: another session holds a lock
/// on the runs table until [`release_runs_table`] ends it (20 s at most).
/// (Locks and sessions are looked for in this database only: another test
/// may hold its own, and tables of databases made from one template share
/// their OIDs.)
async fn hold_runs_table(db: &str) -> std::thread::JoinHandle<Result<String, String>> {
    let holder = {
        let db = db.to_string();
        std::thread::spawn(move || {
            hookflow_pgtest::cluster().psql_in(
                &db,
                "BEGIN; LOCK TABLE hookflow_runs IN EXCLUSIVE MODE; SELECT pg_sleep(20); COMMIT;",
            )
        })
    };
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while hookflow_pgtest::cluster()
        .psql_in(
            db,
            "SELECT count(*) FROM pg_locks WHERE relation = 'hookflow_runs'::regclass AND granted AND mode = 'ExclusiveLock' \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .unwrap_or_default()
        .trim()
        != "1"
    {
        assert!(std::time::Instant::now() < end, "the lock is taken");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    holder
}

/// Ends the session [`hold_runs_table`] started.
fn release_runs_table(db: &str, holder: std::thread::JoinHandle<Result<String, String>>) {
    hookflow_pgtest::cluster()
        .psql_in(
            db,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(20)%' \
             AND pid <> pg_backend_pid() AND datname = current_database()",
        )
        .expect("end the lock");
    let _ = holder.join();
}

/// Past the backlog's bytes the store is overloaded too, far from its
/// count of writes: records of a megabyte each while the database does not
/// answer (50,000 of them would be 50 GB). Every write is still kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_behind_by_many_bytes_is_overloaded_and_keeps_every_write() {
    const MIB: usize = 1 << 20;
    let url = fresh_db("bytes");
    let db = db_of(&url).to_string();
    let store = PgStore::open(
        &url,
        PgOptions {
            instance: "a".into(),
            max_backlog_bytes: 4 * MIB,
            ..PgOptions::default()
        },
    )
    .expect("opens");
    let holder = hold_runs_table(&db).await;
    let mut ids = Vec::new();
    while !store.overloaded() {
        assert!(ids.len() < 8, "not overloaded past the bytes");
        let mut record = run(None).record;
        record.status = RunStatus::Resolved;
        record.finished_at = Some(Timestamp(now_millis()));
        record.error = Some("e".repeat(MIB));
        ids.push(record.id.clone());
        store.finish(record, false);
    }
    assert_eq!(ids.len(), 4, "records of a megabyte past 4 MiB");
    release_runs_table(&db, holder);
    store.flush().await.expect("flush");
    assert!(!store.overloaded(), "taking requests again");
    for id in &ids {
        let kept = store.get(id).expect("get").expect("kept");
        assert_eq!(kept.error.map(|e| e.len()), Some(MIB), "{id}");
    }
}

/// The database refuses connections for longer than the writer's tries of
/// one write: the writes of a run already accepted wait for it and are
/// applied when it is back, never given up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_wait_for_a_database_that_refuses_connections() {
    let url = fresh_db("away");
    let db = db_of(&url).to_string();
    let store = Arc::new(open(&url, "a", 30_000));
    let accepted = run(None);
    let id = accepted.record.id.clone();
    store.accept(accepted.clone()).await.expect("accepted");
    let cluster = hookflow_pgtest::cluster();
    cluster
        .psql_in(
            "postgres",
            &format!(
                "ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS false; \
                 SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'"
            ),
        )
        .expect("connections refused");
    let mut record = accepted.record.clone();
    record.status = RunStatus::Resolved;
    record.finished_at = Some(Timestamp(now_millis()));
    store.finish(record, true);
    // New webhook requests are refused (503) while the database is away,
    // rather than left waiting with the writer.
    let refused = tokio::time::timeout(Duration::from_secs(15), async {
        while !store.overloaded() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(refused.is_ok(), "the store never said it was unavailable");
    // Longer than the tries of one write (100 + 200 + 400 + 800 ms).
    tokio::time::sleep(Duration::from_secs(4)).await;
    cluster
        .psql_in(
            "postgres",
            &format!("ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS true"),
        )
        .expect("connections allowed");
    tokio::time::timeout(Duration::from_secs(30), store.flush())
        .await
        .expect("the writer caught up")
        .expect("flushed");
    let got = store.get(&id).expect("get").expect("kept");
    assert_eq!(got.status, RunStatus::Resolved, "the finish was kept");
    assert!(!store.overloaded(), "taking requests again");
    assert!(store.unfinished(None, 10).expect("unfinished").is_empty());
}

/// A folder's worth of webhook keys is made in one go, kept, and the same
/// for every instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_keys_of_many_workflows_are_made_once_and_shared() {
    let url = fresh_db("keys");
    let a = open(&url, "a", 30_000);
    let b = open(&url, "b", 30_000);
    let ids: Vec<String> = (0..2500).map(|i| format!("w{i:04}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let keys_a = a.keys().expect("shared keys");
    let first = tokio::task::block_in_place(|| keys_a.ensure(&refs)).expect("ensure");
    assert_eq!(first.len(), 2500);
    let again = tokio::task::block_in_place(|| keys_a.ensure(&refs[..10])).expect("ensure");
    assert_eq!(again, first, "kept, not made again");
    let keys_b = b.keys().expect("shared keys");
    let seen = tokio::task::block_in_place(|| keys_b.ensure(&refs[2400..])).expect("ensure");
    assert_eq!(seen, first, "the other instance sees the same keys");
    let distinct: std::collections::BTreeSet<&String> = first.values().collect();
    assert_eq!(distinct.len(), 2500);
}

/// Takes the retry turn off the async workers, as the service does.
async fn turn_of(store: &Arc<PgStore>) -> Option<crate::RetryTurn> {
    let s = store.clone();
    tokio::task::spawn_blocking(move || s.retry_turn())
        .await
        .expect("joined")
        .expect("no error")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_retry_turn_is_one_instance_s_and_free_the_moment_it_is_let_go() {
    let url = fresh_db("retry_turn");
    let a = Arc::new(open(&url, "a", 30_000));
    let b = Arc::new(open(&url, "b", 30_000));
    let held = turn_of(&a).await.expect("free at first");
    assert!(turn_of(&b).await.is_none(), "held by a");
    assert!(turn_of(&a).await.is_none(), "held by a's other request");
    tokio::task::spawn_blocking(move || held.release())
        .await
        .expect("joined")
        .expect("released");
    // Let go and free at once, each time, on either instance.
    for n in 0..100 {
        let store = if n % 2 == 0 { &a } else { &b };
        let turn = turn_of(store).await;
        assert!(turn.is_some(), "refused at take {n}");
        if let Some(turn) = turn {
            tokio::task::spawn_blocking(move || turn.release())
                .await
                .expect("joined")
                .expect("released");
        }
    }
    // Dropped without a release (a panic, an early return): its connection
    // closes, and the turn is free again within moments.
    drop(turn_of(&a).await.expect("free"));
    let mut free = false;
    for _ in 0..100 {
        if let Some(turn) = turn_of(&b).await {
            free = true;
            drop(turn);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(free, "a dropped turn stayed held");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_turn_outlasts_the_server_s_timeout_of_idle_transactions() {
    let url = fresh_db("turn_idle");
    hookflow_pgtest::cluster()
        .psql_in(
            db_of(&url),
            &format!(
                "ALTER DATABASE {} SET idle_in_transaction_session_timeout = '300ms'",
                db_of(&url)
            ),
        )
        .expect("set the timeout");
    // Opened after: their sessions have the timeout.
    let a = Arc::new(open(&url, "a", 30_000));
    let b = Arc::new(open(&url, "b", 30_000));
    let held = turn_of(&a).await.expect("free");
    // A retry's work runs on other connections meanwhile.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(
        turn_of(&b).await.is_none(),
        "the turn went with a timed-out session"
    );
    tokio::task::spawn_blocking(move || held.release())
        .await
        .expect("joined")
        .expect("released without an error");
    assert!(turn_of(&b).await.is_some(), "free once released");
}
