//! The store contract, checked once for every backend: each promise is one
//! test function generic over a [`Backend`], instantiated per backend at the
//! end of this file (a new backend adds one line there).
//!
//! Durable backends are also checked across restarts: a scripted run of
//! events is replayed into the backend and into an in-memory oracle, and
//! after every event the backend is closed and opened again and must show
//! what the oracle shows.

use crate::contract::{Accepted, IdempotencyClaim, Position, Saved, Store};
use crate::record::{
    ExecutionFilter, ExecutionRecord, IdempotencyEntry, JobRecord, JobStatus, ResponseRecord,
    RunInput, RunStatus,
};
use crate::{MemoryStore, SledStore};
use hookflow_model::request::TriggerRequest;
use hookflow_model::time::{now_millis, Timestamp};
use serde_json::{json, Value as Json};
use std::path::Path;
use std::sync::Arc;

/// A store implementation under test.
pub(crate) trait Backend {
    /// Whether it survives a restart.
    const DURABLE: bool;
    /// Opens the store kept in `dir` (a fresh one for a new folder).
    fn open(dir: &Path) -> Arc<dyn Store>;
    /// Damages the stored head of run `id` in the closed store in `dir`.
    fn damage_run(dir: &Path, id: &str);
    /// Damages the stored finished record of run `id`.
    fn damage_finished(dir: &Path, id: &str);
}

pub(crate) struct Memory;
pub(crate) struct Sled;

impl Backend for Memory {
    const DURABLE: bool = false;
    fn open(_dir: &Path) -> Arc<dyn Store> {
        Arc::new(MemoryStore::new())
    }
    fn damage_run(_dir: &Path, _id: &str) {}
    fn damage_finished(_dir: &Path, _id: &str) {}
}

impl Backend for Sled {
    const DURABLE: bool = true;
    fn open(dir: &Path) -> Arc<dyn Store> {
        Arc::new(SledStore::open(dir).expect("the store opens"))
    }
    fn damage_run(dir: &Path, id: &str) {
        crate::embedded::damage_for_tests(dir, id, false);
    }
    fn damage_finished(dir: &Path, id: &str) {
        crate::embedded::damage_for_tests(dir, id, true);
    }
}

// ---- building blocks ------------------------------------------------------

/// A UUID v7 execution id for a run started at `ms`.
fn id_at(ms: u64) -> String {
    let ts = uuid::Timestamp::from_unix(
        uuid::NoContext,
        ms / 1000,
        u32::try_from((ms % 1000) * 1_000_000).unwrap_or(0),
    );
    uuid::Uuid::new_v7(ts).to_string()
}

fn record_at(workflow: &str, status: RunStatus, started_ms: u64) -> ExecutionRecord {
    ExecutionRecord {
        id: id_at(started_ms),
        workflow: workflow.into(),
        version: "v1".into(),
        status,
        started_at: Timestamp(started_ms),
        finished_at: None,
        started_ms,
        trigger: None,
        jobs: Vec::new(),
        response: None,
        retry_of: None,
        error: None,
    }
}

fn input(n: u64) -> RunInput {
    RunInput {
        trigger: TriggerRequest {
            method: "POST".into(),
            path: "/api/webhook:trigger/k".into(),
            headers: vec![
                ("authorization".into(), "Basic c2VjcmV0".into()),
                ("x-n".into(), n.to_string()),
            ],
            query: json!({}),
            body: json!({"n": n}),
            raw_body: format!("{{\"n\":{n}}}"),
            ..TriggerRequest::default()
        },
        vars: json!({"n": n}),
        secret_headers: Vec::new(),
    }
}

fn job(key: &str, status: JobStatus, result: Json) -> JobRecord {
    JobRecord {
        key: Some(key.into()),
        kind: "calculation".into(),
        status,
        result,
        error: None,
        started_at: Timestamp(now_millis()),
        duration_ms: 1,
        truncated: false,
    }
}

fn ack() -> ResponseRecord {
    ResponseRecord {
        status: 200,
        headers: Default::default(),
        body: Arc::new(json!("ok")),
    }
}

/// Accepts a queued run of `workflow` started at `ms`; returns its record.
async fn accept_at(
    store: &dyn Store,
    workflow: &str,
    ms: u64,
    key: Option<&str>,
) -> ExecutionRecord {
    let mut record = record_at(workflow, RunStatus::Queued, ms);
    record.response = Some(ack());
    let idempotency = key.map(|k| IdempotencyClaim {
        workflow: workflow.into(),
        key: k.into(),
        entry: IdempotencyEntry {
            execution_id: record.id.clone(),
            expires_ms: ms + 3_600_000,
            response: Some(ack()),
        },
    });
    store
        .accept(Accepted {
            record: record.clone(),
            input: input(ms),
            idempotency,
        })
        .await
        .expect("accepted");
    record
}

fn saved(
    status: RunStatus,
    wake_at: Option<u64>,
    jobs: Vec<(usize, JobRecord)>,
    frames: Json,
    parts: Vec<(&str, Json)>,
) -> Saved {
    Saved {
        status,
        wake_at,
        jobs,
        position: Position {
            frames,
            parts: parts.into_iter().map(|(n, v)| (n.to_string(), v)).collect(),
        },
    }
}

fn finished(mut record: ExecutionRecord, status: RunStatus, at_ms: u64) -> ExecutionRecord {
    record.status = status;
    record.finished_at = Some(Timestamp(at_ms));
    record
}

fn all() -> ExecutionFilter {
    ExecutionFilter {
        limit: 1000,
        ..ExecutionFilter::default()
    }
}

fn ids(rows: &[crate::RunSummary]) -> Vec<String> {
    rows.iter().map(|r| r.id.clone()).collect()
}

// ---- the promises ---------------------------------------------------------

/// An accepted run is readable with its request (redacted) and kept input,
/// and its idempotency key exists from the same write.
pub(crate) async fn accepted_runs_keep_request_input_and_key<B: Backend>() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = B::open(dir.path());
    let now = now_millis();
    let r = accept_at(store.as_ref(), "pay", now, Some("order-1")).await;
    let got = store.get(&r.id).expect("get").expect("the accepted run");
    assert_eq!(got.status, RunStatus::Queued);
    assert_eq!(got.response, Some(ack()));
    let trigger = got.trigger.expect("the record shows its request");
    assert_eq!(
        trigger.header("authorization").as_deref(),
        Some("[redacted]")
    );
    assert_eq!(trigger.header("x-n"), Some(now.to_string()));
    let kept = store.input(&r.id).expect("input").expect("kept input");
    assert_eq!(kept, input(now), "the input is kept unredacted");
    let key = store
        .idempotency("pay", "order-1", now)
        .expect("idempotency")
        .expect("the key came with the run");
    assert_eq!(key.execution_id, r.id);
    assert!(store
        .idempotency("other", "order-1", now)
        .expect("idempotency")
        .is_none());
    assert_eq!(
        store.unfinished(None, 10).expect("unfinished"),
        vec![r.id.clone()]
    );
    let resumable = store
        .resumable(&r.id)
        .expect("resumable")
        .expect("unfinished");
    assert_eq!(resumable.frames, Json::Null, "never saved");
    assert!(resumable.record.jobs.is_empty());
    assert_eq!(resumable.input, Some(input(now)));
}

/// Saves are deltas: new and changed jobs by index, parts replaced by name,
/// the latest stack.
pub(crate) async fn progress_is_saved_as_deltas<B: Backend>() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = B::open(dir.path());
    let r = accept_at(store.as_ref(), "pay", now_millis(), None).await;
    let running = JobStatus::Running;
    let done = JobStatus::Resolved;
    store.save(
        &r.id,
        saved(
            RunStatus::Running,
            None,
            vec![
                (0, job("a", done, json!(1))),
                (1, job("fan", running, Json::Null)),
            ],
            json!({"at": 1}),
            vec![("r/a", json!(1)), ("l/0", json!([1, 2, 3]))],
        ),
    );
    store.save(
        &r.id,
        saved(
            RunStatus::Running,
            None,
            vec![
                (1, job("fan", done, json!(["x"]))),
                (2, job("b", done, json!(2))),
            ],
            json!({"at": 2}),
            vec![("r/a", json!(10))],
        ),
    );
    store.flush().await.expect("flush");
    let got = store
        .resumable(&r.id)
        .expect("resumable")
        .expect("unfinished");
    let keys: Vec<_> = got
        .record
        .jobs
        .iter()
        .map(|j| j.key.clone().unwrap_or_default())
        .collect();
    assert_eq!(keys, vec!["a", "fan", "b"]);
    assert_eq!(got.record.jobs[1].status, done, "a changed job is replaced");
    assert_eq!(got.record.jobs[1].result, json!(["x"]));
    assert_eq!(got.record.status, RunStatus::Running);
    assert_eq!(got.frames, json!({"at": 2}));
    assert_eq!(
        got.parts.get("r/a"),
        Some(&json!(10)),
        "a part set again is replaced"
    );
    assert_eq!(
        got.parts.get("l/0"),
        Some(&json!([1, 2, 3])),
        "a part set once stays"
    );
    let record = store.get(&r.id).expect("get").expect("record");
    assert_eq!(record.jobs, got.record.jobs);
}

/// Waiting runs come back by wake time, earliest first, once each.
pub(crate) async fn waiting_runs_are_due_by_wake_time<B: Backend>() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = B::open(dir.path());
    let now = now_millis();
    let a = accept_at(store.as_ref(), "w", now, None).await;
    let b = accept_at(store.as_ref(), "w", now + 1, None).await;
    let c = accept_at(store.as_ref(), "w", now + 2, None).await;
    let wait = |at| {
        saved(
            RunStatus::Waiting,
            Some(at),
            vec![(0, job("d", JobStatus::Waiting, Json::Null))],
            json!({}),
            vec![],
        )
    };
    store.save(&a.id, wait(now + 100));
    store.save(&b.id, wait(now + 50));
    store.flush().await.expect("flush");
    assert_eq!(store.next_wake().expect("next"), Some(now + 50));
    assert!(store.due(now, 10).expect("due").is_empty());
    assert_eq!(store.due(now + 60, 10).expect("due"), vec![b.id.clone()]);
    assert_eq!(
        store.due(now + 500, 10).expect("due"),
        vec![b.id.clone(), a.id.clone()]
    );
    assert_eq!(store.due(now + 500, 1).expect("due"), vec![b.id.clone()]);
    assert_eq!(
        store.unfinished(None, 10).expect("unfinished"),
        vec![c.id.clone()],
        "waiting runs are not resumed at start"
    );
    assert_eq!(
        store.get(&a.id).expect("get").map(|r| r.status),
        Some(RunStatus::Waiting)
    );
    // Taken, a run leaves the waiting runs at once.
    store.woke(&b.id);
    assert_eq!(store.due(now + 500, 10).expect("due"), vec![a.id.clone()]);
    assert_eq!(store.next_wake().expect("next"), Some(now + 100));
    store.flush().await.expect("flush");
    assert_eq!(store.due(now + 500, 10).expect("due"), vec![a.id.clone()]);
    assert_eq!(
        store.get(&b.id).expect("get").map(|r| r.status),
        Some(RunStatus::Running)
    );
    assert_eq!(
        store.unfinished(None, 10).expect("unfinished"),
        vec![b.id.clone(), c.id.clone()]
    );
}

/// A finished durable run leaves no state to resume, keeps its input for
/// retries; a sync run's record is readable the moment it finishes.
pub(crate) async fn finished_runs_leave_nothing_to_resume<B: Backend>() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = B::open(dir.path());
    let now = now_millis();
    let a = accept_at(store.as_ref(), "pay", now, None).await;
    store.save(
        &a.id,
        saved(
            RunStatus::Waiting,
            Some(now + 10),
            vec![(0, job("x", JobStatus::Waiting, Json::Null))],
            json!({}),
            vec![("r/x", json!(1))],
        ),
    );
    store.woke(&a.id);
    let mut done = finished(a.clone(), RunStatus::Resolved, now + 20);
    done.jobs = vec![
        job("x", JobStatus::Resolved, json!(1)),
        job("y", JobStatus::Resolved, json!(2)),
    ];
    store.finish(done.clone(), true);
    // Readable at once, before anything was written.
    let got = store.get(&a.id).expect("get").expect("finished");
    assert_eq!((got.status, got.jobs.len()), (RunStatus::Resolved, 2));
    store.flush().await.expect("flush");
    let got = store.get(&a.id).expect("get").expect("finished");
    assert_eq!(got.status, RunStatus::Resolved);
    assert_eq!(got.jobs, done.jobs);
    assert!(got.trigger.is_some(), "the record shows its request");
    assert!(store.unfinished(None, 10).expect("unfinished").is_empty());
    assert!(store.resumable(&a.id).expect("resumable").is_none());
    assert!(store.due(u64::MAX, 10).expect("due").is_empty());
    assert_eq!(store.next_wake().expect("next"), None);
    assert_eq!(
        store.input(&a.id).expect("input"),
        Some(input(now)),
        "kept for retries"
    );

    let mut sync = finished(
        record_at("pay", RunStatus::Resolved, now),
        RunStatus::Resolved,
        now + 1,
    );
    sync.trigger = Some(input(7).trigger.redacted());
    store.finish(sync.clone(), false);
    assert_eq!(
        store.get(&sync.id).expect("get"),
        Some(sync.clone()),
        "read your writes"
    );
    store.flush().await.expect("flush");
    assert_eq!(store.get(&sync.id).expect("get"), Some(sync.clone()));
    assert_eq!(
        store.input(&sync.id).expect("input"),
        None,
        "sync runs keep no input"
    );
}

/// An announced sync run is readable (and listed) until its finish replaces it.
pub(crate) async fn announced_runs_are_readable<B: Backend>() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = B::open(dir.path());
    let r = record_at("slow", RunStatus::Running, now_millis());
    store.announce(r.clone());
    assert_eq!(store.get(&r.id).expect("get"), Some(r.clone()));
    assert_eq!(
        ids(&store.list(&all()).expect("list").0),
        vec![r.id.clone()]
    );
    let done = finished(r.clone(), RunStatus::Failed, now_millis());
    store.finish(done.clone(), false);
    store.flush().await.expect("flush");
    assert_eq!(store.get(&r.id).expect("get"), Some(done));
    let rows = store.list(&all()).expect("list").0;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, RunStatus::Failed);
}

/// Lists are newest first, filtered, and paged by cursor without gaps or repeats.
pub(crate) async fn lists_are_newest_first_filtered_and_paged<B: Backend>() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = B::open(dir.path());
    let base = now_millis() - 60_000;
    let mut expected = Vec::new();
    for i in 0..9u64 {
        let at = base + i * 1_500;
        let workflow = if i % 2 == 0 { "even" } else { "odd" };
        let id = match i % 3 {
            0 => {
                let mut r = finished(
                    record_at(workflow, RunStatus::Resolved, at),
                    RunStatus::Resolved,
                    at + 5,
                );
                r.response = Some(ResponseRecord {
                    status: 201,
                    ..ack()
                });
                store.finish(r.clone(), false);
                r.id
            }
            1 => accept_at(store.as_ref(), workflow, at, None).await.id,
            _ => {
                let r = accept_at(store.as_ref(), workflow, at, None).await;
                store.finish(finished(r.clone(), RunStatus::Failed, at + 9), true);
                r.id
            }
        };
        expected.push(id);
    }
    store.flush().await.expect("flush");
    expected.reverse();
    let (rows, next) = store.list(&all()).expect("list");
    assert_eq!(ids(&rows), expected, "newest first");
    assert_eq!(next, None);
    assert_eq!(
        rows[8].response_status,
        Some(201),
        "rows carry the answer's status"
    );
    // Pages of 4: every run once, in order.
    let mut seen = Vec::new();
    let mut cursor = None;
    for _ in 0..10 {
        let (rows, next) = store
            .list(&ExecutionFilter {
                limit: 4,
                cursor: cursor.clone(),
                ..ExecutionFilter::default()
            })
            .expect("list");
        assert!(rows.len() <= 4);
        seen.extend(ids(&rows));
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, expected, "paging");
    let only = |f: ExecutionFilter| {
        ids(&store
            .list(&ExecutionFilter { limit: 100, ..f })
            .expect("list")
            .0)
    };
    let odd = only(ExecutionFilter {
        workflow: Some("odd".into()),
        ..Default::default()
    });
    assert_eq!(
        odd,
        expected
            .iter()
            .enumerate()
            .filter(|(i, _)| (8 - i) % 2 == 1)
            .map(|(_, id)| id.clone())
            .collect::<Vec<_>>()
    );
    let failed = only(ExecutionFilter {
        status: Some(RunStatus::Failed),
        ..Default::default()
    });
    assert_eq!(failed.len(), 3);
    let queued = only(ExecutionFilter {
        status: Some(RunStatus::Queued),
        ..Default::default()
    });
    assert_eq!(queued.len(), 3);
    let window = only(ExecutionFilter {
        since_ms: Some(base + 3_000),
        until_ms: Some(base + 6_000),
        ..Default::default()
    });
    assert_eq!(
        window,
        vec![
            expected[4].clone(),
            expected[5].clone(),
            expected[6].clone()
        ]
    );
}

/// Retention counts from the finish and never touches unfinished runs.
pub(crate) async fn retention_counts_from_the_finish<B: Backend>() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = B::open(dir.path());
    let now = now_millis();
    let old = now - 100_000;
    let early = finished(
        record_at("r", RunStatus::Resolved, old),
        RunStatus::Resolved,
        old + 10,
    );
    store.finish(early.clone(), false);
    let long = accept_at(store.as_ref(), "r", old + 1, None).await;
    store.finish(finished(long.clone(), RunStatus::Resolved, now - 10), true);
    let stuck = accept_at(store.as_ref(), "r", old + 2, None).await;
    store.save(
        &stuck.id,
        saved(
            RunStatus::Waiting,
            Some(now + 3_600_000),
            vec![],
            json!({}),
            vec![],
        ),
    );
    store.flush().await.expect("flush");
    let removed = store
        .remove_finished_before(now - 50_000)
        .expect("retention");
    assert_eq!(removed, 1);
    assert!(
        store.get(&early.id).expect("get").is_none(),
        "finished long ago: gone"
    );
    assert!(
        store.get(&long.id).expect("get").is_some(),
        "started long ago, finished lately: kept"
    );
    assert_eq!(store.input(&long.id).expect("input"), Some(input(old + 1)));
    let waiting = store
        .get(&stuck.id)
        .expect("get")
        .expect("unfinished runs stay");
    assert_eq!(waiting.status, RunStatus::Waiting);
    assert_eq!(
        store.due(u64::MAX, 10).expect("due"),
        vec![stuck.id.clone()]
    );
    // Everything finished goes with a cutoff in the future; the waiting run stays.
    assert_eq!(
        store
            .remove_finished_before(now + 1_000)
            .expect("retention"),
        1
    );
    assert!(store.get(&long.id).expect("get").is_none());
    assert!(
        store.input(&long.id).expect("input").is_none(),
        "the input goes with the record"
    );
    assert!(store.resumable(&stuck.id).expect("resumable").is_some());
}

/// Idempotency keys expire, and a key claimed again outlives its old expiry.
pub(crate) async fn idempotency_keys_expire<B: Backend>() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = B::open(dir.path());
    let now = now_millis();
    let claim = |key: &str, expires_ms| IdempotencyClaim {
        workflow: "pay".into(),
        key: key.into(),
        entry: IdempotencyEntry {
            execution_id: id_at(now),
            expires_ms,
            response: Some(ack()),
        },
    };
    store.put_idempotency(claim("a", now + 1_000));
    store.put_idempotency(claim("b", now + 1_000));
    store.put_idempotency(claim("b", now + 9_000));
    store.flush().await.expect("flush");
    assert!(store.idempotency("pay", "a", now).expect("get").is_some());
    assert!(
        store
            .idempotency("pay", "a", now + 1_000)
            .expect("get")
            .is_none(),
        "expired"
    );
    assert_eq!(
        store
            .remove_expired_idempotency(now + 2_000)
            .expect("expire"),
        1
    );
    assert!(
        store.idempotency("pay", "a", now).expect("get").is_none(),
        "removed"
    );
    let b = store
        .idempotency("pay", "b", now + 2_000)
        .expect("get")
        .expect("claimed again");
    assert_eq!(b.expires_ms, now + 9_000);
    assert_eq!(
        store
            .remove_expired_idempotency(now + 10_000)
            .expect("expire"),
        1
    );
}

pub(crate) async fn versions_are_kept<B: Backend>() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = B::open(dir.path());
    store.put_version("h1", "title: one").expect("put");
    store
        .put_version("h1", "title: ignored")
        .expect("put again");
    assert_eq!(
        store.version("h1").expect("get").as_deref(),
        Some("title: one")
    );
    assert_eq!(store.version("h2").expect("get"), None);
}

/// A finished run never comes back as unfinished: not after a restart, not
/// after retention removed its record.
pub(crate) async fn a_finished_run_never_runs_again<B: Backend>() {
    if !B::DURABLE {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let now = now_millis();
    let (done, going) = {
        let store = B::open(dir.path());
        let mut runs = Vec::new();
        for i in 0..20 {
            runs.push(accept_at(store.as_ref(), "q", now + i, None).await);
        }
        // All but one finish; the last one keeps going past the retention.
        for r in &runs[..19] {
            store.finish(finished(r.clone(), RunStatus::Resolved, now + 100), true);
        }
        store.save(
            &runs[19].id,
            saved(
                RunStatus::Waiting,
                Some(now + 86_400_000),
                vec![],
                json!({}),
                vec![],
            ),
        );
        store.flush().await.expect("flush");
        assert_eq!(
            store
                .remove_finished_before(now + 1_000)
                .expect("retention"),
            19
        );
        (runs[..19].to_vec(), runs[19].clone())
    };
    let store = B::open(dir.path());
    assert!(store.unfinished(None, 100).expect("unfinished").is_empty());
    assert_eq!(
        store.due(u64::MAX, 100).expect("due"),
        vec![going.id.clone()]
    );
    for r in &done {
        assert!(store.resumable(&r.id).expect("resumable").is_none());
        assert!(store.get(&r.id).expect("get").is_none());
    }
}

/// Runs accepted together (they may share storage) finish apart: after a
/// restart, and after retention removed the finished ones, exactly the
/// unfinished ones come back.
pub(crate) async fn runs_accepted_together_finish_apart<B: Backend>() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = now_millis();
    let store = B::open(dir.path());
    let mut tasks = Vec::new();
    for i in 0..24u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            accept_at(store.as_ref(), "t", now + i, None).await
        }));
    }
    let mut runs = Vec::new();
    for t in tasks {
        runs.push(t.await.expect("accepted"));
    }
    runs.sort_by(|a, b| a.id.cmp(&b.id));
    for r in runs.iter().step_by(2) {
        store.finish(finished(r.clone(), RunStatus::Resolved, now + 100), true);
    }
    let open: Vec<String> = runs
        .iter()
        .skip(1)
        .step_by(2)
        .map(|r| r.id.clone())
        .collect();
    store.save(
        &open[0],
        saved(
            RunStatus::Running,
            None,
            vec![(0, job("x", JobStatus::Resolved, json!(1)))],
            json!({"at": 1}),
            vec![],
        ),
    );
    store.flush().await.expect("flush");
    assert_eq!(
        store
            .remove_finished_before(now + 1_000)
            .expect("retention"),
        12
    );
    assert_eq!(store.unfinished(None, 100).expect("unfinished"), open);
    let store = if B::DURABLE {
        drop(store);
        B::open(dir.path())
    } else {
        store
    };
    assert_eq!(
        store.unfinished(None, 100).expect("unfinished"),
        open,
        "after a restart"
    );
    for r in runs.iter().step_by(2) {
        assert!(store.resumable(&r.id).expect("resumable").is_none());
    }
    for id in &open {
        let saved = store.resumable(id).expect("resumable").expect("unfinished");
        assert_eq!(saved.input, Some(input(saved.record.started_ms)));
    }
    assert_eq!(
        store
            .resumable(&open[0])
            .expect("resumable")
            .map(|r| r.record.jobs.len()),
        Some(1)
    );
    // The rest finish; their inputs stay with their records.
    for r in runs.iter().skip(1).step_by(2) {
        store.finish(finished(r.clone(), RunStatus::Failed, now + 200), true);
    }
    store.flush().await.expect("flush");
    let store = if B::DURABLE {
        drop(store);
        B::open(dir.path())
    } else {
        store
    };
    assert!(store.unfinished(None, 100).expect("unfinished").is_empty());
    for id in &open {
        let record = store.get(id).expect("get").expect("finished");
        assert_eq!(record.status, RunStatus::Failed);
        assert!(
            store.input(id).expect("input").is_some(),
            "kept for retries"
        );
        assert_eq!(record.jobs.len(), 0, "the final record is what finish said");
    }
}

/// What the caller can observe of a store, for comparing two of them.
async fn observe(store: &dyn Store, runs: &[String]) -> Json {
    let mut out = serde_json::Map::new();
    out.insert(
        "unfinished".into(),
        json!(store.unfinished(None, 1000).expect("unfinished")),
    );
    out.insert("due".into(), json!(store.due(u64::MAX, 1000).expect("due")));
    out.insert(
        "next_wake".into(),
        json!(store.next_wake().expect("next wake")),
    );
    out.insert(
        "key".into(),
        json!(store
            .idempotency("s", "k1", 0)
            .expect("key")
            .map(|e| e.execution_id)),
    );
    for id in runs {
        let record = store.get(id).expect("get");
        let resumable = store.resumable(id).expect("resumable");
        out.insert(
            id.clone(),
            json!({
                "record": serde_json::to_value(&record).expect("json"),
                "input": serde_json::to_value(store.input(id).expect("input")).expect("json"),
                "frames": resumable.as_ref().map(|r| r.frames.clone()),
                "parts": resumable.as_ref().map(|r| json!(r.parts)),
                "jobs": resumable.as_ref().map(|r| serde_json::to_value(&r.record.jobs).expect("json")),
            }),
        );
    }
    Json::Object(out)
}

/// Events of two runs, replayed into the backend and into the in-memory
/// oracle; after each one the backend restarts and must show what the
/// oracle shows.
pub(crate) async fn restarts_at_every_point_lose_nothing<B: Backend>() {
    if !B::DURABLE {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let oracle = MemoryStore::new();
    let now = now_millis();
    let mut a = record_at("s", RunStatus::Queued, now);
    a.response = Some(ack());
    let mut b = record_at("s", RunStatus::Queued, now + 1);
    b.response = Some(ack());
    let claim = IdempotencyClaim {
        workflow: "s".into(),
        key: "k1".into(),
        entry: IdempotencyEntry {
            execution_id: a.id.clone(),
            expires_ms: now + 3_600_000,
            response: Some(ack()),
        },
    };
    let jobs = |n: usize, status| {
        (0..n)
            .map(|i| (i, job(&format!("n{i}"), status, json!(i))))
            .collect::<Vec<_>>()
    };
    let mut done_a = finished(a.clone(), RunStatus::Resolved, now + 50);
    done_a.jobs = jobs(3, JobStatus::Resolved)
        .into_iter()
        .map(|(_, j)| j)
        .collect();
    let done_b = finished(b.clone(), RunStatus::Failed, now + 60);
    type Step = Box<dyn Fn(&dyn Store) -> Option<Accepted>>;
    let steps: Vec<(&str, Step)> = vec![
        ("accept a", {
            let (a, claim) = (a.clone(), claim.clone());
            Box::new(move |_| {
                Some(Accepted {
                    record: a.clone(),
                    input: input(1),
                    idempotency: Some(claim.clone()),
                })
            })
        }),
        ("accept b", {
            let b = b.clone();
            Box::new(move |_| {
                Some(Accepted {
                    record: b.clone(),
                    input: input(2),
                    idempotency: None,
                })
            })
        }),
        ("a saves", {
            let (id, j) = (a.id.clone(), jobs(1, JobStatus::Resolved));
            Box::new(move |s| {
                s.save(
                    &id,
                    saved(
                        RunStatus::Running,
                        None,
                        j.clone(),
                        json!({"at": 1}),
                        vec![("r/n0", json!(0))],
                    ),
                );
                None
            })
        }),
        ("a waits", {
            let id = a.id.clone();
            let j = vec![(1, job("n1", JobStatus::Waiting, Json::Null))];
            Box::new(move |s| {
                s.save(
                    &id,
                    saved(
                        RunStatus::Waiting,
                        Some(now + 40),
                        j.clone(),
                        json!({"at": 2}),
                        vec![("l/0", json!([1, 2]))],
                    ),
                );
                None
            })
        }),
        ("a wakes", {
            let id = a.id.clone();
            Box::new(move |s| {
                s.woke(&id);
                None
            })
        }),
        ("a saves again", {
            let id = a.id.clone();
            let j = vec![
                (1, job("n1", JobStatus::Resolved, json!(1))),
                (2, job("n2", JobStatus::Resolved, json!(2))),
            ];
            Box::new(move |s| {
                s.save(
                    &id,
                    saved(
                        RunStatus::Running,
                        None,
                        j.clone(),
                        json!({"at": 3}),
                        vec![("r/n0", json!(10))],
                    ),
                );
                None
            })
        }),
        ("a finishes", {
            let r = done_a.clone();
            Box::new(move |s| {
                s.finish(r.clone(), true);
                None
            })
        }),
        ("b finishes", {
            let r = done_b.clone();
            Box::new(move |s| {
                s.finish(r.clone(), true);
                None
            })
        }),
    ];
    let runs = vec![a.id.clone(), b.id.clone()];
    for (name, step) in &steps {
        {
            let store = B::open(dir.path());
            for (target, label) in [
                (store.as_ref(), "backend"),
                (&oracle as &dyn Store, "oracle"),
            ] {
                if let Some(accepted) = step(target) {
                    target
                        .accept(accepted)
                        .await
                        .unwrap_or_else(|e| panic!("{label}: {e}"));
                }
            }
            store.flush().await.expect("flush");
        }
        let store = B::open(dir.path());
        assert_eq!(
            observe(store.as_ref(), &runs).await,
            observe(&oracle, &runs).await,
            "after `{name}` and a restart"
        );
    }
}

/// A damaged entry is set aside: the store opens, the other runs go on,
/// retention goes on.
pub(crate) async fn damage_is_set_aside<B: Backend>() {
    if !B::DURABLE {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let now = now_millis();
    let (bad, good, gone) = {
        let store = B::open(dir.path());
        let bad = accept_at(store.as_ref(), "d", now, None).await;
        let good = accept_at(store.as_ref(), "d", now + 1, None).await;
        let gone = finished(
            record_at("d", RunStatus::Resolved, now - 100_000),
            RunStatus::Resolved,
            now - 99_000,
        );
        store.finish(gone.clone(), false);
        store.flush().await.expect("flush");
        (bad, good, gone)
    };
    B::damage_run(dir.path(), &bad.id);
    B::damage_finished(dir.path(), &gone.id);
    let store = B::open(dir.path());
    let unfinished = store.unfinished(None, 10).expect("unfinished");
    assert!(unfinished.contains(&good.id));
    for id in &unfinished {
        // Reading the damaged run sets it aside; it cannot be resumed.
        let _ = store.resumable(id).expect("resumable reads do not fail");
    }
    assert!(store.resumable(&bad.id).expect("resumable").is_none());
    assert!(store.get(&bad.id).expect("get").is_none());
    assert!(store
        .get(&gone.id)
        .expect("a damaged page reads as absent")
        .is_none());
    assert!(
        store.damaged() >= 2,
        "damage is counted: {}",
        store.damaged()
    );
    assert!(store.resumable(&good.id).expect("resumable").is_some());
    store
        .remove_finished_before(now + 1_000)
        .expect("retention goes on");
    store.flush().await.expect("flush");
    drop(store);
    let store = B::open(dir.path());
    assert_eq!(
        store.unfinished(None, 10).expect("unfinished"),
        vec![good.id.clone()],
        "set aside for good"
    );
}

macro_rules! conformance {
    ($backend:ty, $name:ident) => {
        mod $name {
            use super::*;
            #[tokio::test]
            async fn accepted_runs_keep_request_input_and_key() {
                super::accepted_runs_keep_request_input_and_key::<$backend>().await
            }
            #[tokio::test]
            async fn progress_is_saved_as_deltas() {
                super::progress_is_saved_as_deltas::<$backend>().await
            }
            #[tokio::test]
            async fn waiting_runs_are_due_by_wake_time() {
                super::waiting_runs_are_due_by_wake_time::<$backend>().await
            }
            #[tokio::test]
            async fn finished_runs_leave_nothing_to_resume() {
                super::finished_runs_leave_nothing_to_resume::<$backend>().await
            }
            #[tokio::test]
            async fn announced_runs_are_readable() {
                super::announced_runs_are_readable::<$backend>().await
            }
            #[tokio::test]
            async fn lists_are_newest_first_filtered_and_paged() {
                super::lists_are_newest_first_filtered_and_paged::<$backend>().await
            }
            #[tokio::test]
            async fn retention_counts_from_the_finish() {
                super::retention_counts_from_the_finish::<$backend>().await
            }
            #[tokio::test]
            async fn idempotency_keys_expire() {
                super::idempotency_keys_expire::<$backend>().await
            }
            #[tokio::test]
            async fn versions_are_kept() {
                super::versions_are_kept::<$backend>().await
            }
            #[tokio::test]
            async fn a_finished_run_never_runs_again() {
                super::a_finished_run_never_runs_again::<$backend>().await
            }
            #[tokio::test]
            async fn restarts_at_every_point_lose_nothing() {
                super::restarts_at_every_point_lose_nothing::<$backend>().await
            }
            #[tokio::test]
            async fn runs_accepted_together_finish_apart() {
                super::runs_accepted_together_finish_apart::<$backend>().await
            }
            #[tokio::test]
            async fn damage_is_set_aside() {
                super::damage_is_set_aside::<$backend>().await
            }
        }
    };
}

conformance!(Memory, memory);
conformance!(Sled, sled_store);
