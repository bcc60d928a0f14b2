//! Retries: errors, bulk limits, idempotency keys, two retries at once.

use super::*;
use hookflow_model::time::now_millis;
use hookflow_store::IdempotencyEntry;
use std::time::Duration;

#[test]
fn retry_errors_answer_as_the_admin_api_promises() {
    let cases = [
        (RetryError::NotFound("x".into()), 404),
        (RetryError::NotFinished("x".into()), 409),
        (RetryError::Workflow("gone".into()), 409),
        (RetryError::Store("disk".into()), 500),
        (RetryError::Unavailable("full".into()), 503),
        (RetryError::Invalid("running".into()), 400),
    ];
    for (error, status) in cases {
        assert_eq!(Refusal::from(error).status(), status);
    }
    assert_eq!(RetryVersion::parse("current"), Some(RetryVersion::Current));
    assert_eq!(
        RetryVersion::parse("recorded"),
        Some(RetryVersion::Recorded)
    );
    assert_eq!(RetryVersion::parse("latest"), None);
    assert_eq!(RetryVersion::Current.as_str(), "current");
    assert_eq!(
        Refusal::from(RetryError::NotFinished("e1".into())).to_string(),
        "execution e1 has not finished"
    );
}

/// A service over a memory store serving the workflow `w` of `yaml`.
pub(crate) fn serving(dir: &std::path::Path, yaml: &str) -> Arc<Service> {
    serving_on(dir, yaml, Arc::new(hookflow_store::MemoryStore::new()))
}

/// [`serving`] on `store`.
fn serving_on(
    dir: &std::path::Path,
    yaml: &str,
    store: Arc<dyn hookflow_store::Store>,
) -> Arc<Service> {
    std::fs::write(dir.join("w.yaml"), yaml).expect("write");
    let executor =
        hookflow_executor::Executor::new(store, hookflow_executor::ExecutorConfig::default())
            .expect("executor");
    let settings = crate::Settings {
        workflows_dir: dir.to_path_buf(),
        data_dir: dir.to_path_buf(),
        public_url: "http://127.0.0.1:1".into(),
        shutdown_grace: std::time::Duration::from_secs(1),
        reload_every: std::time::Duration::from_secs(60),
        retention: std::time::Duration::from_secs(3600),
    };
    Service::load(settings, executor).expect("loads")
}

/// A service over a memory store serving one sync workflow `w`.
fn service(dir: &std::path::Path) -> Arc<Service> {
    let yaml = "title: W\nenabled: true\ntrigger: { type: webhook, mode: sync }\nnodes:\n  - type: response\n    body: ok\n";
    serving(dir, yaml)
}

#[tokio::test]
async fn a_bulk_retry_starts_at_most_a_thousand_and_counts_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = service(dir.path());
    let version = service.registry().workflows["w"].version.clone();
    let store = service.executor.store().clone();
    let now = hookflow_model::time::now_millis();
    let mut ids = Vec::new();
    for i in 0..(MAX_BULK as u64 + 3) {
        let id = uuid_v7_at(now - 10_000 + i);
        ids.push(id.clone());
        store.finish(
            ExecutionRecord {
                id,
                workflow: "w".into(),
                version: version.clone(),
                status: if i == 5 {
                    RunStatus::Resolved
                } else {
                    RunStatus::Failed
                },
                started_at: hookflow_model::time::Timestamp(now - 10_000 + i),
                finished_at: Some(hookflow_model::time::Timestamp(now)),
                started_ms: now - 10_000 + i,
                trigger: None,
                jobs: Vec::new(),
                response: None,
                retry_of: None,
                error: None,
            },
            false,
        );
    }
    let filter = BulkRetry {
        workflow: Some("w".into()),
        status: Some(RunStatus::Failed),
        ..BulkRetry::default()
    };
    let done = service.retry_matching(&filter).await.expect("retried");
    assert_eq!(done.execution_ids.len(), MAX_BULK);
    // 1002 failed: the newest 1000 retried, oldest first; 2 left.
    assert_eq!(done.not_retried, 2);
    let first = store
        .get(&done.execution_ids[0])
        .expect("read")
        .expect("the new run's record");
    assert_eq!(first.retry_of.as_deref(), Some(ids[2].as_str()));
    let unfinished = BulkRetry {
        status: Some(RunStatus::Running),
        ..BulkRetry::default()
    };
    assert!(matches!(
        service.retry_matching(&unfinished).await,
        Err(RetryError::Invalid(_))
    ));
}

/// A service whose workflow `w` (`mode` sync or async) keeps an
/// idempotency key.
fn keyed_service(dir: &std::path::Path, mode: &str) -> Arc<Service> {
    let yaml = "title: W\nenabled: true\ntrigger:\n  type: webhook\n  mode: MODE\n  idempotency: { key: \"{{ trigger.body.id }}\" }\nnodes:\n  - NODE\n"
        .replace("MODE", mode)
        .replace(
            "NODE",
            if mode == "sync" {
                "{ type: response, body: ok }"
            } else {
                "{ type: log, message: hi }"
            },
        );
    serving(dir, &yaml)
}

/// A failed run of `w` for the request body `{"id": order}`.
fn failed_run(service: &Service, order: &str, at_ms: u64) -> String {
    let version = service.registry().workflows["w"].version.clone();
    let id = uuid_v7_at(at_ms);
    let trigger = hookflow_model::request::TriggerRequest {
        method: "POST".into(),
        body: serde_json::json!({ "id": order }),
        ..Default::default()
    };
    service.executor.store().finish(
        ExecutionRecord {
            id: id.clone(),
            workflow: "w".into(),
            version,
            status: RunStatus::Failed,
            started_at: hookflow_model::time::Timestamp(at_ms),
            finished_at: Some(hookflow_model::time::Timestamp(at_ms)),
            started_ms: at_ms,
            trigger: Some(trigger),
            jobs: Vec::new(),
            response: None,
            retry_of: None,
            error: None,
        },
        false,
    );
    id
}

/// The key's entry once a run answered it (bounded wait).
async fn answered_key(service: &Service, key: &str) -> Option<IdempotencyEntry> {
    for _ in 0..200 {
        let entry = service
            .executor
            .store()
            .idempotency("w", key, now_millis())
            .expect("reads");
        if entry.is_some() {
            return entry;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

#[tokio::test]
async fn a_retried_sync_run_keeps_its_key_and_a_kept_key_stops_the_next_retry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = keyed_service(dir.path(), "sync");
    let now = now_millis();
    let old = failed_run(&service, "P1", now - 5_000);
    let retry = service
        .retry(&old, RetryVersion::Recorded)
        .await
        .expect("retried");
    // The retry answered 200: the key is its, as a first request's.
    let entry = answered_key(&service, "P1").await.expect("the key is kept");
    assert_eq!(entry.execution_id, retry);
    assert_eq!(entry.response.as_ref().map(|r| r.status), Some(200));
    // Retrying the failed run again would process P1 twice.
    match service.retry(&old, RetryVersion::Current).await {
        Err(RetryError::Answered { run, by }) => {
            assert_eq!(run, old);
            assert_eq!(by, retry);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(
        Refusal::from(RetryError::Answered {
            run: old.clone(),
            by: retry.clone()
        })
        .status(),
        409
    );
    // The run holding the key may be retried: it is the operator's choice.
    service
        .retry(&retry, RetryVersion::Recorded)
        .await
        .expect("the key's own run is retried");
    // A bulk retry leaves the failed run out and says why.
    let bulk = BulkRetry {
        workflow: Some("w".into()),
        status: Some(RunStatus::Failed),
        ..BulkRetry::default()
    };
    // The failed run's retry (resolved) stands for it anyway; a second
    // failed run of the same order, never retried, is left out for
    // its key.
    failed_run(&service, "P1", now - 4_000);
    let done = service.retry_matching(&bulk).await.expect("bulk");
    assert!(done.execution_ids.is_empty(), "{done:?}");
    assert_eq!(done.answered, 1, "{done:?}");
    assert_eq!(done.already_retried, 1, "{done:?}");
}

#[tokio::test]
async fn two_bulk_retries_at_once_retry_each_run_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Async: each start waits for the store (where the other retry
    // would run meanwhile, were they not taking turns).
    let service = keyed_service(dir.path(), "async");
    let now = now_millis();
    for i in 0..20u64 {
        failed_run(&service, &format!("order-{i}"), now - 10_000 + i);
    }
    let bulk = BulkRetry {
        workflow: Some("w".into()),
        status: Some(RunStatus::Failed),
        ..BulkRetry::default()
    };
    let (a, b) = tokio::join!(service.retry_matching(&bulk), service.retry_matching(&bulk));
    let (a, b) = (a.expect("first"), b.expect("second"));
    assert_eq!(
        a.execution_ids.len() + b.execution_ids.len(),
        20,
        "{a:?} {b:?}"
    );
    assert_eq!(a.already_retried + b.already_retried, 20, "{a:?} {b:?}");
}

/// A UUID v7 whose time is `ms` (the stores order and page runs by it).
fn uuid_v7_at(ms: u64) -> String {
    let ts =
        uuid::Timestamp::from_unix(uuid::NoContext, ms / 1000, ((ms % 1000) * 1_000_000) as u32);
    uuid::Uuid::new_v7(ts).to_string()
}

/// An upstream on 127.0.0.1 that answers its first request 200 `{}` once
/// the sender is told to (or after 20 s), and no other.
fn gate() -> (String, std::sync::mpsc::Sender<()>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("addr"));
    let (open, opened) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let _ = opened.recv_timeout(Duration::from_secs(20));
        let _ = stream.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
        );
    });
    (url, open)
}

/// A keyed sync workflow `w` whose run waits on `gate` before it answers.
fn gated_service(dir: &std::path::Path, gate: &str) -> Arc<Service> {
    let yaml = format!(
        "title: W\nenabled: true\ntrigger:\n  type: webhook\n  mode: sync\n  key: retry-repeat-01\n  idempotency: {{ key: \"{{{{ trigger.body.id }}}}\" }}\nnodes:\n  - {{ key: call, type: request, method: GET, url: \"{gate}\", timeout: 25s }}\n  - {{ type: response, body: ok }}\n"
    );
    serving(dir, &yaml)
}

#[tokio::test]
async fn a_run_of_the_same_event_is_not_retried_while_the_first_retry_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (url, open) = gate();
    let service = gated_service(dir.path(), &url);
    let now = now_millis();
    let a = failed_run(&service, "P1", now - 5_000);
    let b = failed_run(&service, "P1", now - 4_000);
    let retry = service
        .retry(&a, RetryVersion::Recorded)
        .await
        .expect("retried");
    match service.retry(&b, RetryVersion::Recorded).await {
        Err(RetryError::Retrying { run, of }) => assert_eq!((run, of), (b.clone(), a.clone())),
        other => panic!("expected a refusal while the first retry runs, got {other:?}"),
    }
    let _ = open.send(());
    let entry = answered_key(&service, "P1").await.expect("the key is kept");
    assert_eq!(entry.execution_id, retry);
    assert!(matches!(
        service.retry(&b, RetryVersion::Recorded).await,
        Err(RetryError::Answered { .. })
    ));
}

#[tokio::test]
async fn a_sender_s_repeat_during_a_retry_replays_the_retry_s_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (url, open) = gate();
    let service = gated_service(dir.path(), &url);
    let now = now_millis();
    let old = failed_run(&service, "P1", now - 5_000);
    let retry = service
        .retry(&old, RetryVersion::Recorded)
        .await
        .expect("retried");
    // The sender repeats the request while the retry waits on the gate:
    // the repeat waits for the retry's answer (it would run the workflow
    // again, and wait on the gate for 20 s, were it a first request).
    let repeat = {
        let service = service.clone();
        tokio::spawn(async move {
            let served = service
                .registry()
                .get("retry-repeat-01")
                .cloned()
                .expect("served");
            let request = hookflow_parser::Request {
                method: "POST",
                path: "/api/webhook:trigger/retry-repeat-01",
                query: "",
                content_type: Some("application/json"),
                body: br#"{"id":"P1"}"#,
            };
            service.deliver(&served, request, []).await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!repeat.is_finished(), "the repeat waits for the retry");
    let _ = open.send(());
    match tokio::time::timeout(Duration::from_secs(10), repeat).await {
        Ok(Ok(Ok(crate::delivery::Delivery::Answer {
            execution_id,
            replayed,
            ..
        }))) => {
            assert_eq!(execution_id, retry, "the retry's answer, not a new run");
            assert!(replayed);
        }
        other => panic!("expected a replay of the retry, got {other:?}"),
    }
    // While a request with a key is being handled, no retry of its event
    // starts.
    let other = failed_run(&service, "P2", now - 4_000);
    let taken = service.claims.take_for_retry("w", "P2").expect("free");
    match service.retry(&other, RetryVersion::Recorded).await {
        Err(RetryError::InFlight { run }) => assert_eq!(run, other),
        other => panic!("expected a refusal while the repeat runs, got {other:?}"),
    }
    drop(taken);
}

#[tokio::test]
async fn several_failed_runs_of_one_event_are_retried_once_in_bulk() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Its retries answer once this task gives the runtime's thread up.
    let service = keyed_service(dir.path(), "sync");
    let now = now_millis();
    let first = failed_run(&service, "P1", now - 5_000);
    failed_run(&service, "P1", now - 4_000);
    failed_run(&service, "P1", now - 3_000);
    failed_run(&service, "P2", now - 2_000);
    let bulk = BulkRetry {
        workflow: Some("w".into()),
        status: Some(RunStatus::Failed),
        ..BulkRetry::default()
    };
    let done = service.retry_matching(&bulk).await.expect("bulk");
    assert_eq!(done.execution_ids.len(), 2, "{done:?}");
    assert_eq!(done.answered, 2, "{done:?}");
    assert!(done.stopped.is_none(), "{done:?}");
    // The oldest run of P1 stands for its event.
    let retried = service
        .executor
        .store()
        .get(&done.execution_ids[0])
        .expect("read")
        .expect("the retry's record");
    assert_eq!(retried.retry_of.as_deref(), Some(first.as_str()));
}

#[tokio::test]
async fn a_request_that_answers_while_the_retry_reads_the_store_is_not_run_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(super::read_hook::ReadHook::default());
    let yaml = "title: W\nenabled: true\ntrigger:\n  type: webhook\n  mode: sync\n  idempotency: { key: \"{{ trigger.body.id }}\" }\nnodes:\n  - { type: response, body: ok }\n";
    let service = serving_on(dir.path(), yaml, store.clone());
    let old = failed_run(&service, "P1", now_millis() - 5_000);
    // The sender's repeat is being handled here; it answers 2xx, keeps the
    // key and lets its slot go while the retry reads the store.
    let repeat = service.claims.take_for_retry("w", "P1").expect("free");
    let hook: super::read_hook::Hook = Box::new(move |inner| {
        use hookflow_store::Store as _;
        inner.put_idempotency(hookflow_store::IdempotencyClaim {
            workflow: "w".into(),
            key: "P1".into(),
            entry: IdempotencyEntry {
                execution_id: "the-repeat".into(),
                expires_ms: now_millis() + 60_000,
                response: Some(hookflow_store::record::ResponseRecord {
                    status: 200,
                    headers: Default::default(),
                    body: Arc::new(serde_json::json!("ok")),
                }),
            },
        });
        drop(repeat);
    });
    *store.hook.lock().expect("hook") = Some(hook);
    match service.retry(&old, RetryVersion::Recorded).await {
        Err(RetryError::InFlight { run }) => assert_eq!(run, old),
        other => panic!("expected a refusal (the repeat processes the event), got {other:?}"),
    }
    // The repeat answers (if it has not while the retry read), and asked
    // again, the retry is refused for the repeat's answer.
    let pending = store.hook.lock().expect("hook").take();
    if let Some(hook) = pending {
        hook(&store.inner);
    }
    assert!(matches!(
        service.retry(&old, RetryVersion::Recorded).await,
        Err(RetryError::Answered { .. })
    ));
}
