//! The contract of one run: accepted, saved as deltas, waiting, finished, announced.

use super::*;

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
    assert_eq!(store.count_waiting().expect("count"), 2, "due or not");
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
    assert_eq!(store.count_waiting().expect("count"), 1);
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

/// Claims of due waiting runs, page after page while the store applies the
/// wake-ups of the pages before: every run is claimed once. (The embedded
/// store's scan works on copies of sled's tree nodes: it could meet the
/// wake key of a run whose wake-up had just been applied, and the run ran
/// twice at once.)
pub(crate) async fn a_due_run_is_claimed_once<B: Backend>() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = B::open(dir.path());
    let now = now_millis();
    let mut ids = std::collections::HashSet::new();
    for i in 0..1_500 {
        let run = accept_at(store.as_ref(), "w", now - 10_000 + i, None).await;
        store.save(
            &run.id,
            saved(RunStatus::Waiting, Some(now - 1), vec![], json!({}), vec![]),
        );
        ids.insert(run.id);
    }
    store.flush().await.expect("flush");
    let mut claimed = Vec::new();
    for _ in 0..10_000 {
        let page = store.claim_due(now_millis(), 7).expect("claim");
        if page.is_empty() {
            // Every wake-up applied: nothing is left to claim (a run
            // claimed again now is counted as such).
            store.flush().await.expect("flush");
            let after = store.claim_due(now_millis(), 7).expect("claim");
            if after.is_empty() {
                break;
            }
            claimed.extend(after);
            continue;
        }
        claimed.extend(page);
    }
    let mut seen = std::collections::HashSet::new();
    let twice = claimed.iter().filter(|id| !seen.insert(*id)).count();
    assert_eq!(twice, 0, "runs claimed twice");
    assert_eq!(seen.len(), ids.len());
}

/// A sync run's record handed over by `keep_finished` (after it was
/// announced, as a run whose id went out) reads back finished: the
/// announced record gives way once the finished one is taken.
pub(crate) async fn a_kept_sync_record_reads_back_finished<B: Backend>() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = B::open(dir.path());
    let now = now_millis();
    let running = record_at("w", RunStatus::Running, now);
    store.announce(running.clone());
    let seen = store.get(&running.id).expect("get").map(|r| r.status);
    assert_eq!(seen, Some(RunStatus::Running));
    let done = finished(running, RunStatus::Resolved, now + 5);
    if let Some(room) = store.keep_finished(done.clone()) {
        room.await;
    }
    store.flush().await.expect("flush");
    let got = store.get(&done.id).expect("get").expect("the kept record");
    assert_eq!(got.status, RunStatus::Resolved);
    assert_eq!(got.finished_at, done.finished_at);
}
