//! Lists and their cursors, retention, idempotency keys, versions.

use super::*;

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

/// `retry_of` lists the retries of one run, finished or not, newest first,
/// before and after the writer has put them on disk.
pub(crate) async fn lists_find_the_retries_of_a_run<B: Backend>() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = B::open(dir.path());
    let base = now_millis() - 30_000;
    let original = finished_sync(store.as_ref(), RunStatus::Failed, base);
    let other = finished_sync(store.as_ref(), RunStatus::Failed, base + 1_000);
    let first = finished_retry(store.as_ref(), &original.id, base + 2_000);
    let unrelated = finished_retry(store.as_ref(), &other.id, base + 2_500);
    let mut second = record_at("w", RunStatus::Queued, base + 3_000);
    second.retry_of = Some(original.id.clone());
    store
        .accept(Accepted {
            record: second.clone(),
            input: input(3),
            idempotency: None,
        })
        .await
        .expect("accepted");
    let retries_of = |id: &str, limit: usize, cursor: Option<String>| {
        store
            .list(&ExecutionFilter {
                retry_of: Some(id.to_string()),
                limit,
                cursor,
                ..ExecutionFilter::default()
            })
            .expect("list")
    };
    for moment in ["before the flush", "after the flush"] {
        let (rows, next) = retries_of(&original.id, 100, None);
        assert_eq!(
            ids(&rows),
            vec![second.id.clone(), first.id.clone()],
            "{moment}"
        );
        assert_eq!(next, None, "{moment}");
        let (page, next) = retries_of(&original.id, 1, None);
        assert_eq!(ids(&page), vec![second.id.clone()], "{moment}");
        let (page, next) = retries_of(&original.id, 1, next);
        assert_eq!(
            (ids(&page), next),
            (vec![first.id.clone()], None),
            "{moment}"
        );
        let (rows, _) = retries_of(&other.id, 100, None);
        assert_eq!(ids(&rows), vec![unrelated.id.clone()], "{moment}");
        assert!(retries_of(&first.id, 100, None).0.is_empty(), "{moment}");
        store.flush().await.expect("flush");
    }
}

/// A run's retries, oldest first: sync ones while they run and once they
/// finished, queued and settled ones; across a restart; each as long as its
/// own record is kept, whether or not the retried run's is.
pub(crate) async fn a_record_names_its_retries<B: Backend>() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = B::open(dir.path());
    let base = now_millis() - 30_000;
    let original = finished_sync(store.as_ref(), RunStatus::Failed, base);
    let other = finished_sync(store.as_ref(), RunStatus::Failed, base + 500);
    let retries = |store: &Arc<dyn Store>, id: &str| store.retries_of(id).expect("retries");
    assert!(retries(&store, &original.id).is_empty());

    // A sync retry, readable while it runs, then finished.
    let mut first = record_at("w", RunStatus::Running, base + 1_000);
    first.retry_of = Some(original.id.clone());
    store.announce(first.clone());
    assert_eq!(retries(&store, &original.id), vec![first.id.clone()]);
    let mut answered = finished(first.clone(), RunStatus::Resolved, base + 1_005);
    // A sync retry's record keeps the answer it made; it answered no one.
    answered.response = Some(ack());
    store.finish(answered, false);
    // An async retry, queued; one that settled before its acknowledgement.
    let mut second = record_at("w", RunStatus::Queued, base + 2_000);
    second.retry_of = Some(original.id.clone());
    let accepted = |record: &ExecutionRecord| Accepted {
        record: record.clone(),
        input: input(2),
        idempotency: None,
    };
    store.accept(accepted(&second)).await.expect("accepted");
    let mut third = record_at("w", RunStatus::Queued, base + 3_000);
    third.retry_of = Some(original.id.clone());
    let done = finished(third.clone(), RunStatus::Resolved, base + 4_000);
    store
        .accept_finished(accepted(&third), done)
        .await
        .expect("accepted finished");
    let unrelated = finished_retry(store.as_ref(), &other.id, base + 2_500);

    let all = vec![first.id.clone(), second.id.clone(), third.id.clone()];
    assert_eq!(retries(&store, &original.id), all, "before the flush");
    store.flush().await.expect("flush");
    assert_eq!(retries(&store, &original.id), all, "after the flush");
    assert_eq!(retries(&store, &other.id), vec![unrelated.id.clone()]);
    assert!(retries(&store, &first.id).is_empty(), "a retry of none");
    assert!(retries(&store, &id_at(base)).is_empty(), "an unknown run");
    assert!(retries(&store, "not an id").is_empty());
    let (rows, _) = store
        .list(&ExecutionFilter {
            retry_of: Some(original.id.clone()),
            limit: 10,
            ..ExecutionFilter::default()
        })
        .expect("list");
    assert_eq!(rows.len(), 3);
    assert!(
        rows.iter().all(|r| r.response_status.is_none()),
        "a retry answered no caller: {rows:?}"
    );
    let record = store.get(&first.id).expect("get").expect("the sync retry");
    assert_eq!(record.response.map(|r| r.status), Some(200));
    if B::DURABLE {
        drop(store);
        store = B::open(dir.path());
        assert_eq!(retries(&store, &original.id), all, "after a restart");
    }

    // Retention takes the retried runs and the first retry; the queued
    // retry and the later one stay, and still name the run they retried.
    store
        .remove_finished_before(base + 3_000)
        .expect("retention");
    assert!(store.get(&original.id).expect("get").is_none());
    assert_eq!(
        retries(&store, &original.id),
        vec![second.id.clone(), third.id.clone()]
    );
    assert!(retries(&store, &other.id).is_empty());
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
    // A sync run announced (its id sent) and still going: started long
    // before the cutoff, it keeps its record like any unfinished run.
    let going = record_at("r", RunStatus::Running, old + 3);
    store.announce(going.clone());
    store.flush().await.expect("flush");
    let removed = store
        .remove_finished_before(now - 50_000)
        .expect("retention");
    assert_eq!(removed, 1);
    assert!(
        store.get(&going.id).expect("get").is_some(),
        "a sync run still going: kept"
    );
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

pub(crate) async fn a_sync_key_is_claimed_then_held_by_its_answer<B: Backend>() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = B::open(dir.path());
    let now = now_millis();
    let (first, other) = (id_at(now), id_at(now + 1));
    let until = now + 60_000;
    assert_eq!(
        store
            .claim_key("pay", "k", &first, now, until)
            .expect("claim"),
        KeyClaim::Claimed
    );
    let answer = IdempotencyEntry {
        execution_id: first.clone(),
        expires_ms: now + 1_000,
        response: Some(ack()),
    };
    store.put_idempotency(IdempotencyClaim {
        workflow: "pay".into(),
        key: "k".into(),
        entry: answer.clone(),
    });
    store.flush().await.expect("flush");
    assert_eq!(
        store
            .claim_key("pay", "k", &other, now, until)
            .expect("claim"),
        KeyClaim::Held(answer.clone()),
        "the answer is replayed"
    );
    // Releasing an answered key changes nothing.
    store.release_key("pay", "k", &first);
    store.flush().await.expect("flush");
    assert_eq!(
        store
            .claim_key("pay", "k", &other, now, until)
            .expect("claim"),
        KeyClaim::Held(answer)
    );
    // Once the answer expired the key is claimed again.
    assert_eq!(
        store
            .claim_key("pay", "k", &other, now + 1_000, until)
            .expect("claim"),
        KeyClaim::Claimed
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
    // Many at once: new ones kept, a kept one unchanged, a repeat within
    // the call harmless.
    let many: Vec<(String, String)> = (0..1500)
        .map(|i| (format!("m{i}"), format!("title: m{i}")))
        .collect();
    let mut batch: Vec<(&str, &str)> = many.iter().map(|(v, s)| (v.as_str(), s.as_str())).collect();
    batch.push(("h1", "title: ignored"));
    batch.push(("m7", "title: m7"));
    store.put_versions(&batch).expect("put many");
    for i in [0, 999, 1000, 1499] {
        assert_eq!(
            store.version(&format!("m{i}")).expect("get").as_deref(),
            Some(format!("title: m{i}").as_str())
        );
    }
    assert_eq!(
        store.version("h1").expect("get").as_deref(),
        Some("title: one")
    );
}
