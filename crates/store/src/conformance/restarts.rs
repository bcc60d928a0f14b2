//! What survives: restarts after every event, retention beside unfinished
//! runs, damaged entries.

use super::*;

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

/// A run accepted already finished ([`Store::accept_finished`]) is kept
/// whole once the future resolves: its record (showing its request, from
/// the input), its input and its idempotency key; it is never resumed, not
/// after a restart either.
pub(crate) async fn a_run_accepted_finished_is_kept_whole<B: Backend>() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = now_millis();
    let mut head = record_at("pay", RunStatus::Queued, now);
    head.response = Some(ack());
    let mut done = finished(head.clone(), RunStatus::Resolved, now + 1);
    done.jobs = vec![job("x", JobStatus::Resolved, json!(1))];
    let claim = IdempotencyClaim {
        workflow: "pay".into(),
        key: "k-1".into(),
        entry: IdempotencyEntry {
            execution_id: head.id.clone(),
            expires_ms: now + 3_600_000,
            response: Some(ack()),
        },
    };
    {
        let store = B::open(dir.path());
        let run = Accepted {
            record: head.clone(),
            input: input(now),
            idempotency: Some(claim),
        };
        store
            .accept_finished(run, done.clone())
            .await
            .expect("accepted finished");
        kept_whole(store.as_ref(), &done, now);
    }
    if B::DURABLE {
        let store = B::open(dir.path());
        kept_whole(store.as_ref(), &done, now);
    }
}

fn kept_whole(store: &dyn Store, done: &ExecutionRecord, now: u64) {
    let got = store.get(&done.id).expect("get").expect("the record");
    assert_eq!((got.status, &got.jobs), (RunStatus::Resolved, &done.jobs));
    assert_eq!(got.finished_at, done.finished_at);
    assert!(got.trigger.is_some(), "the record shows its request");
    assert_eq!(store.input(&done.id).expect("input"), Some(input(now)));
    assert!(store.unfinished(None, 10).expect("unfinished").is_empty());
    assert!(store.resumable(&done.id).expect("resumable").is_none());
    let key = store
        .idempotency("pay", "k-1", now)
        .expect("idempotency")
        .expect("the key");
    assert_eq!(key.execution_id, done.id);
    assert_eq!(key.response, Some(ack()));
}

/// A store that writes when called ([`Store::writes_when_called`]) keeps a
/// run accepted finished even when the future is dropped unpolled (its
/// caller went away): the call handed the write over. Stores that do not
/// say so promise nothing then, and are not asked to.
pub(crate) async fn a_dropped_accept_finished_still_writes_when_promised<B: Backend>() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = B::open(dir.path());
    if !store.writes_when_called() {
        return;
    }
    let now = now_millis();
    let mut head = record_at("pay", RunStatus::Queued, now);
    head.response = Some(ack());
    let done = finished(head.clone(), RunStatus::Resolved, now + 1);
    let run = Accepted {
        record: head,
        input: input(now),
        idempotency: None,
    };
    drop(store.accept_finished(run, done.clone()));
    store.flush().await.expect("flush");
    let got = store
        .get(&done.id)
        .expect("get")
        .expect("the record, though its future was dropped");
    assert_eq!(got.status, RunStatus::Resolved);
    assert_eq!(store.input(&done.id).expect("input"), Some(input(now)));
}
