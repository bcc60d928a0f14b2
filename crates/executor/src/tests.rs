//! The state machine: a durable run saves what changed after requests (and,
//! in these tests, before every node), and a run resumed from any saved
//! position ends exactly like the uninterrupted one.

use crate::record::new_record;
use crate::run::Run;
use crate::scope::scope_copying;
use crate::state::{Frame, RunState};
use crate::{Env, RunInput, Stub, StubAnswers, Stubs};
use hookflow_model::load::{load_source, LoadOptions, SecretPolicy};
use hookflow_model::runtime::Workflow;
use hookflow_store::{
    Accepted, BoxFuture, ExecutionFilter, ExecutionRecord, IdempotencyClaim, IdempotencyEntry,
    MemoryStore, Resumable, RunStatus, RunSummary, Saved, SledStore, Store, StoreResult,
    TriggerRequest,
};
use serde_json::{json, Value as Json};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A store that remembers the run as it was after every save.
#[derive(Default)]
struct Recording {
    inner: MemoryStore,
    saved: Mutex<Vec<Resumable>>,
    /// The next `finish` panics (a stand-in for a bug inside a run).
    panic_at_finish: std::sync::atomic::AtomicBool,
    /// This many `resumable` reads fail, as a database that does not answer.
    fail_resumable: std::sync::atomic::AtomicUsize,
    /// A read of every waiting run (the start's count) takes this long (ms).
    slow_count_ms: std::sync::atomic::AtomicU64,
    /// Reads of every waiting run done.
    counts: std::sync::atomic::AtomicUsize,
}

impl Store for Recording {
    fn accept(&self, run: Accepted) -> BoxFuture<'_, StoreResult<()>> {
        self.inner.accept(run)
    }
    fn save(&self, id: &str, saved: Saved) {
        self.inner.save(id, saved);
        if let (Ok(Some(now)), Ok(mut all)) = (self.inner.resumable(id), self.saved.lock()) {
            all.push(now);
        }
    }
    fn woke(&self, id: &str) {
        self.inner.woke(id)
    }
    fn finish(&self, record: ExecutionRecord, durable: bool) {
        if self
            .panic_at_finish
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            panic!("a bug while finishing run {}", record.id);
        }
        self.inner.finish(record, durable)
    }
    fn announce(&self, record: ExecutionRecord) {
        self.inner.announce(record)
    }
    fn flush(&self) -> BoxFuture<'_, StoreResult<()>> {
        self.inner.flush()
    }
    fn get(&self, id: &str) -> StoreResult<Option<ExecutionRecord>> {
        self.inner.get(id)
    }
    fn input(&self, id: &str) -> StoreResult<Option<RunInput>> {
        self.inner.input(id)
    }
    fn list(&self, f: &ExecutionFilter) -> StoreResult<(Vec<RunSummary>, Option<String>)> {
        self.inner.list(f)
    }
    fn unfinished(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<String>> {
        self.inner.unfinished(after, limit)
    }
    fn resumable(&self, id: &str) -> StoreResult<Option<Resumable>> {
        use std::sync::atomic::Ordering::SeqCst;
        let failing = self
            .fail_resumable
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(hookflow_store::StoreError::Db("did not answer".into()));
        }
        self.inner.resumable(id)
    }
    fn next_wake(&self) -> StoreResult<Option<u64>> {
        self.inner.next_wake()
    }
    fn due(&self, now: u64, limit: usize) -> StoreResult<Vec<String>> {
        if now == u64::MAX {
            let ms = self.slow_count_ms.load(std::sync::atomic::Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(ms));
            let due = self.inner.due(now, limit);
            self.counts
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            return due;
        }
        self.inner.due(now, limit)
    }
    fn put_version(&self, v: &str, s: &str) -> StoreResult<()> {
        self.inner.put_version(v, s)
    }
    fn version(&self, v: &str) -> StoreResult<Option<String>> {
        self.inner.version(v)
    }
    fn idempotency(&self, w: &str, k: &str, now: u64) -> StoreResult<Option<IdempotencyEntry>> {
        self.inner.idempotency(w, k, now)
    }
    fn put_idempotency(&self, claim: IdempotencyClaim) {
        self.inner.put_idempotency(claim)
    }
    fn remove_expired_idempotency(&self, now: u64) -> StoreResult<usize> {
        self.inner.remove_expired_idempotency(now)
    }
    fn remove_finished_before(&self, cutoff: u64) -> StoreResult<usize> {
        self.inner.remove_finished_before(cutoff)
    }
    fn damaged(&self) -> usize {
        0
    }
    fn refuse(&self, request: hookflow_store::RefusedRequest) {
        self.inner.refuse(request)
    }
    fn refused(
        &self,
        filter: &hookflow_store::RefusedFilter,
    ) -> hookflow_store::StoreResult<(Vec<hookflow_store::RefusedRequest>, Option<String>)> {
        self.inner.refused(filter)
    }
}

const WORKFLOW: &str = r#"
title: Branches
trigger: { type: webhook }
nodes:
  - key: a
    type: calculation
    expression: "trigger.body.x + 1"
  - key: c
    type: condition
    if: "nodes.a > 1"
    then:
      - key: b
        type: calculation
        expression: "nodes.a * 10"
      - key: s
        type: switch
        cases:
          - if: "nodes.b > 100"
            do: [ { key: big, type: log, message: "big {{ nodes.b }}" } ]
        default:
          - { key: small, type: log, message: "small {{ nodes.b }}" }
          - { key: inner, type: calculation, expression: "nodes.b + 1" }
    else:
      - { key: never, type: log, message: "not taken" }
  - key: outer
    type: loop
    over: "[1, 2]"
    do:
      - key: letters
        type: loop
        over: "'ab'"
        do:
          - key: pair
            type: calculation
            expression: "[loop.item, loop.index]"
      - key: hundred
        type: calculation
        expression: "loop.item * 100 + loop.index"
  - key: z
    type: calculation
    expression: "[nodes.a, nodes.b, nodes.inner, nodes.pair, nodes.hundred]"
"#;

fn workflow() -> Arc<Workflow> {
    compile("branches", WORKFLOW)
}

/// Compiles a workflow file's text (failing the test with its diagnostics).
fn compile(id: &str, text: &str) -> Arc<Workflow> {
    let file = load_source(
        id,
        Path::new(&format!("{id}.yaml")),
        text,
        &LoadOptions::process_env(SecretPolicy::Warn),
    );
    file.workflow
        .unwrap_or_else(|| panic!("{:?}", file.diagnostics))
}

/// A store that remembers the run after every save.
fn recording() -> Arc<Recording> {
    Arc::new(Recording::default())
}

/// A recording store holding the version of workflow `text` (runs of it
/// can be resumed), the store as a `dyn Store`, and the workflow.
fn recording_with(id: &str, text: &str) -> (Arc<Recording>, Arc<dyn Store>, Arc<Workflow>) {
    let store = recording();
    let dyn_store: Arc<dyn Store> = store.clone();
    let wf = compile(id, text);
    dyn_store
        .put_version(&wf.version, text)
        .expect("the version stored");
    (store, dyn_store, wf)
}

fn env() -> Arc<Env> {
    Arc::new(Env {
        http: crate::policy::Outbound::new(Default::default(), None).expect("client"),
        max_response_body: 1024,
        stubs: Default::default(),
        max_result: hookflow_store::DEFAULT_MAX_RESULT,
        secrets: Default::default(),
        metrics: Default::default(),
    })
}

/// A durable run from a given record and position, saving before every node.
fn run_from(
    store: Arc<dyn Store>,
    wf: &Arc<Workflow>,
    record: ExecutionRecord,
    state: RunState,
    input: &RunInput,
) -> Run {
    let scope = scope_copying(wf, &record, input, &state);
    let mut run = Run::new(wf.clone(), record, state, scope, store, env());
    run.durable = true;
    run.save_every_node = true;
    run
}

/// A run resumed from what the store had after one save.
fn resumed(store: Arc<dyn Store>, wf: &Arc<Workflow>, saved: &Resumable, input: &RunInput) -> Run {
    let state =
        RunState::resume(&saved.frames, &saved.parts).expect("the saved position reads back");
    run_from(store, wf, saved.record.clone(), state, input)
}

/// Accepts a new run of `wf` into `store`, as a request would.
async fn accepted(store: &Arc<dyn Store>, wf: &Arc<Workflow>, input: &RunInput) -> ExecutionRecord {
    let record = new_record(
        uuid::Uuid::now_v7().to_string(),
        wf,
        input,
        RunStatus::Queued,
    );
    store
        .accept(Accepted {
            record: record.clone(),
            input: input.clone(),
            idempotency: None,
        })
        .await
        .expect("accepted");
    record
}

/// Drives a run to its end and reads its final record back from the store.
async fn finish(run: Run, store: &Arc<dyn Store>) -> ExecutionRecord {
    let id = run.record.id.clone();
    if let Some(waiting) = Box::new(run).drive().await {
        panic!("the run should finish, not wait: {waiting:?}");
    }
    store.flush().await.expect("flush");
    let record = store.get(&id).expect("get").expect("the record is stored");
    assert!(
        record.status.is_finished(),
        "the stored record is finished: {:?}",
        record.status
    );
    record
}

fn job_keys(record: &ExecutionRecord) -> Vec<String> {
    record
        .jobs
        .iter()
        .map(|j| j.key.clone().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn resuming_from_every_saved_position_gives_the_same_run() {
    let store = recording();
    let dyn_store: Arc<dyn Store> = store.clone();
    let wf = workflow();
    let input = RunInput {
        trigger: TriggerRequest {
            body: json!({"x": 4}),
            ..TriggerRequest::default()
        },
        vars: json!({}),
        secret_headers: Vec::new(),
    };
    let record = accepted(&dyn_store, &wf, &input).await;
    let full = finish(
        run_from(dyn_store.clone(), &wf, record, RunState::start(), &input),
        &dyn_store,
    )
    .await;
    assert_eq!(full.status, RunStatus::Resolved, "{:?}", full.error);
    assert_eq!(
        job_keys(&full),
        vec![
            "a", "c", "b", "s", "small", "inner", "outer", "letters", "pair", "pair", "hundred",
            "letters", "pair", "pair", "hundred", "z"
        ]
    );
    let pairs: Vec<&Json> = full
        .jobs
        .iter()
        .filter(|j| j.key.as_deref() == Some("pair"))
        .map(|j| &j.result)
        .collect();
    assert_eq!(
        pairs,
        vec![
            &json!(["a", 0]),
            &json!(["b", 1]),
            &json!(["a", 0]),
            &json!(["b", 1])
        ]
    );
    assert_eq!(full.jobs[6].result, json!({"count": 2}));
    assert_eq!(
        full.jobs.last().map(|j| j.result.clone()),
        Some(json!([5, 50, 51, ["b", 1], 201]))
    );

    let saved = store.saved.lock().expect("saved").clone();
    // One save when the run starts and one before each further node.
    assert_eq!(saved.len(), full.jobs.len());
    // Positions are plain data: the save after `s` is inside the switch's default block.
    let after_switch = RunState::resume(&saved[4].frames, &saved[4].parts).expect("state");
    assert_eq!(after_switch.frames.len(), 3);
    assert!(matches!(
        after_switch.frames[2],
        Frame::Block { next: 0, .. }
    ));

    // Saves are deltas: each writes the jobs since the one before, and the
    // loop's items once, not at every step.
    for (i, snapshot) in saved.iter().enumerate() {
        assert!(
            full.jobs.starts_with(&snapshot.record.jobs),
            "save {i} holds the jobs run before it"
        );
    }
    for (i, snapshot) in saved.iter().enumerate() {
        let resumed = finish(
            resumed(dyn_store.clone(), &wf, snapshot, &input),
            &dyn_store,
        )
        .await;
        assert_eq!(resumed.status, RunStatus::Resolved, "resume from save {i}");
        assert_eq!(job_keys(&resumed), job_keys(&full), "resume from save {i}");
        let results: Vec<&Json> = resumed.jobs.iter().map(|j| &j.result).collect();
        let expected: Vec<&Json> = full.jobs.iter().map(|j| &j.result).collect();
        assert_eq!(results, expected, "resume from save {i}");
    }
}

#[tokio::test]
async fn a_failing_node_ends_the_run_unless_it_continues() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).expect("open"));
    let text = "title: f\ntrigger: { type: webhook }\nnodes:\n  - { key: soft, type: calculation, expression: \"nope.x\", on_error: continue }\n  - { key: hard, type: calculation, expression: \"nope.y\" }\n  - { key: never, type: log, message: x }\n";
    let done = run_text(text, &store).await;
    assert_eq!(done.status, RunStatus::Failed);
    assert_eq!(job_keys(&done), vec!["soft", "hard"]);
    assert!(
        done.jobs[0].result["error"]
            .as_str()
            .unwrap_or_default()
            .contains("undefined"),
        "{:?}",
        done.jobs[0]
    );
    assert!(
        done.error
            .as_deref()
            .unwrap_or_default()
            .starts_with("node `hard` failed"),
        "{:?}",
        done.error
    );
    // A finished run leaves nothing to resume.
    store.flush().await.expect("flush");
    assert!(store.unfinished(None, 10).expect("unfinished").is_empty());
    assert!(store.resumable(&done.id).expect("resumable").is_none());
}

const PARALLEL: &str = r#"
title: Parallel
trigger: { type: webhook }
nodes:
  - key: fan
    type: parallel
    mode: all
    branches:
      - - { key: left, type: calculation, expression: "'L'" }
        - { key: left2, type: calculation, expression: "nodes.left ~ '2'" }
      - - key: each
          type: loop
          over: "[1, 2, 3]"
          do:
            - { key: item, type: calculation, expression: "loop.item" }
  - key: after
    type: calculation
    expression: "[nodes.left2, nodes.item, nodes.fan]"
"#;

async fn run_text(text: &str, store: &Arc<dyn Store>) -> ExecutionRecord {
    let wf = compile("p", text);
    finish(new_run(store, &wf, &empty_input()).await, store).await
}

fn empty_input() -> RunInput {
    RunInput {
        trigger: TriggerRequest::default(),
        vars: json!({}),
        secret_headers: Vec::new(),
    }
}

/// A run of `wf` accepted into `store`, at its start.
async fn new_run(store: &Arc<dyn Store>, wf: &Arc<Workflow>, input: &RunInput) -> Run {
    let record = accepted(store, wf, input).await;
    run_from(store.clone(), wf, record, RunState::start(), input)
}

#[tokio::test]
async fn parallel_branches_run_and_resume_from_every_position() {
    let store = recording();
    let dyn_store: Arc<dyn Store> = store.clone();
    let full = run_text(PARALLEL, &dyn_store).await;
    assert_eq!(full.status, RunStatus::Resolved, "{:?}", full.error);
    let last = full
        .jobs
        .iter()
        .find(|j| j.key.as_deref() == Some("after"))
        .expect("after ran");
    assert_eq!(
        last.result,
        json!(["L2", 3, [{"status": "resolved"}, {"status": "resolved"}]])
    );
    let fan = full
        .jobs
        .iter()
        .find(|j| j.key.as_deref() == Some("fan"))
        .expect("fan");
    assert_eq!(fan.status, hookflow_store::JobStatus::Resolved);
    let mut keys = job_keys(&full);
    keys.sort();
    assert_eq!(
        keys,
        vec!["after", "each", "fan", "item", "item", "item", "left", "left2"]
    );

    let wf = compile("p", PARALLEL);
    let input = empty_input();
    let saved = store.saved.lock().expect("saved").clone();
    assert!(
        saved.len() >= 6,
        "positions were saved inside the branches: {}",
        saved.len()
    );
    for (i, snapshot) in saved.iter().enumerate() {
        let resumed = finish(
            resumed(dyn_store.clone(), &wf, snapshot, &input),
            &dyn_store,
        )
        .await;
        assert_eq!(resumed.status, RunStatus::Resolved, "resume from save {i}");
        let last = resumed
            .jobs
            .iter()
            .find(|j| j.key.as_deref() == Some("after"))
            .expect("after ran");
        assert_eq!(
            last.result,
            json!(["L2", 3, [{"status": "resolved"}, {"status": "resolved"}]]),
            "resume from save {i}"
        );
    }
}

#[tokio::test]
async fn parallel_modes_decide_the_outcome() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).expect("open"));
    let flow = |mode: &str, on_error: &str| {
        format!(
            "title: m\ntrigger: {{ type: webhook }}\nnodes:\n  - key: fan\n    type: parallel\n    mode: {mode}\n    on_error: {on_error}\n    branches:\n      - - {{ key: bad, type: calculation, expression: \"nope.x\" }}\n      - - {{ key: good, type: calculation, expression: \"1\" }}\n  - {{ key: after, type: calculation, expression: \"nodes.fan\" }}\n"
        )
    };
    // all: one failed branch fails the node, and the run.
    let r = run_text(&flow("all", "fail"), &store).await;
    assert_eq!(r.status, RunStatus::Failed);
    assert!(
        r.error
            .as_deref()
            .unwrap_or_default()
            .starts_with("node `fan` failed"),
        "{:?}",
        r.error
    );
    // all with on_error: continue: the run goes on with the error.
    let r = run_text(&flow("all", "continue"), &store).await;
    assert_eq!(r.status, RunStatus::Resolved);
    let after = r
        .jobs
        .iter()
        .find(|j| j.key.as_deref() == Some("after"))
        .expect("after");
    assert!(after.result["error"].is_string(), "{}", after.result);
    // any: one resolved branch is enough.
    let r = run_text(&flow("any", "fail"), &store).await;
    assert_eq!(r.status, RunStatus::Resolved, "{:?}", r.error);
    let fan = r
        .jobs
        .iter()
        .find(|j| j.key.as_deref() == Some("fan"))
        .expect("fan");
    let statuses: Vec<&str> = fan
        .result
        .as_array()
        .expect("list")
        .iter()
        .map(|b| b["status"].as_str().unwrap_or_default())
        .collect();
    assert!(statuses.contains(&"resolved"), "{statuses:?}");
    // race: the first branch to finish decides (the failing one is first here).
    let r = run_text(&flow("race", "fail"), &store).await;
    assert_eq!(r.status, RunStatus::Failed, "{:?}", r.jobs);
}

const SAVES: &str = r#"
title: Saves
trigger: { type: webhook }
nodes:
  - { key: a, type: calculation, expression: "1 + 1" }
  - { key: b, type: log, message: "a is {{ nodes.a }}" }
  - { key: call, type: request, url: "http://127.0.0.1:9/never-called" }
  - { key: c, type: calculation, expression: "nodes.a + 1" }
  - { key: d, type: log, message: "done" }
"#;

#[tokio::test]
async fn a_durable_run_saves_its_position_only_after_requests() {
    let store = recording();
    let dyn_store: Arc<dyn Store> = store.clone();
    let wf = compile("saves", SAVES);
    let input = empty_input();
    let mut run = new_run(&dyn_store, &wf, &input).await;
    run.save_every_node = false;
    run.env = stubbed_env();
    let full = finish(run, &dyn_store).await;
    assert_eq!(full.status, RunStatus::Resolved, "{:?}", full.error);
    assert_eq!(job_keys(&full), vec!["a", "b", "call", "c", "d"]);
    // Computing nodes cost no writes; the request is followed by one save
    // whose position is past it.
    let saved = store.saved.lock().expect("saved").clone();
    assert_eq!(saved.len(), 1, "one save, after the request");
    let snapshot = &saved[0];
    assert_eq!(job_keys(&snapshot.record), vec!["a", "b", "call"]);
    assert_eq!(snapshot.record.status, RunStatus::Running);
    // Resuming from it (as after a crash) does not send the request again.
    let mut resumed = resumed(dyn_store.clone(), &wf, snapshot, &input);
    resumed.save_every_node = false;
    resumed.env = stubbed_env();
    let again = finish(resumed, &dyn_store).await;
    assert_eq!(job_keys(&again), vec!["a", "b", "call", "c", "d"]);
    assert_eq!(again.jobs[3].result, full.jobs[3].result);
}

const STUBBED: &str = r#"
title: Stubbed
trigger: { type: webhook, mode: sync }
nodes:
  - key: call
    type: request
    url: "http://127.0.0.1:9/orders?x=1"
    headers: { X-Trace: t-1 }
    body: { amount: 12.5 }
    retry: { attempts: 2, backoff: 30s }
  - { key: other, type: request, url: "http://127.0.0.1:9/other", ignore_fail: true }
"#;

/// Offline, a request node's tries take the answers of its stub list in
/// order, without waiting between them, and are written down as sent; a node
/// without a stub fails without sending anything, `ignore_fail` or not.
#[tokio::test]
async fn stubbed_tries_take_the_list_in_order_and_send_nothing() {
    let wf = compile("stubbed", STUBBED);
    let answer = |status| Stub::Response {
        status,
        headers: Default::default(),
        body: json!({"status": status}),
    };
    let stubs = Arc::new(Stubs::new(HashMap::from([(
        "call".to_string(),
        StubAnswers::Each(vec![answer(503), answer(200)]),
    )])));
    let executor = crate::Executor::new(
        Arc::new(MemoryStore::new()),
        crate::ExecutorConfig {
            stubs: Some(stubs.clone()),
            ..Default::default()
        },
    )
    .expect("executor");
    let started = std::time::Instant::now();
    let run = executor
        .run_offline(wf, empty_input())
        .await
        .expect("offline run");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "the 30 s backoff was skipped"
    );
    let record = run.record;
    assert_eq!(record.status, RunStatus::Failed, "{:?}", record.jobs);
    assert_eq!(record.jobs[0].result["status"], json!(200));
    let other = record.jobs[1].error.clone().unwrap_or_default();
    assert!(other.contains("`other` has no stub"), "{other}");
    let sent = stubs.sent();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[1].node, "call");
    assert_eq!(sent[1].method, "POST");
    assert_eq!(sent[1].url, "http://127.0.0.1:9/orders?x=1");
    assert!(sent[1]
        .headers
        .contains(&("X-Trace".to_string(), "t-1".to_string())));
    assert_eq!(sent[1].body.as_deref(), Some(&br#"{"amount":12.5}"#[..]));
    assert_eq!(
        stubs.problems(),
        vec![crate::StubProblem::Missing {
            node: "other".into(),
            keyed: true
        }]
    );
}

/// An environment whose request node `call` answers 200 `{"ok": true}`.
fn stubbed_env() -> Arc<Env> {
    let stubs = HashMap::from([(
        "call".to_string(),
        StubAnswers::Every(Stub::Response {
            status: 200,
            headers: Default::default(),
            body: json!({"ok": true}),
        }),
    )]);
    Arc::new(Env {
        http: crate::policy::Outbound::new(Default::default(), None).expect("client"),
        max_response_body: 1024,
        stubs: Some(Arc::new(Stubs::new(stubs))),
        max_result: hookflow_store::DEFAULT_MAX_RESULT,
        secrets: Default::default(),
        metrics: Default::default(),
    })
}

/// An executor over `store` with one worker, started.
fn started_executor(store: Arc<dyn Store>) -> crate::Executor {
    let executor = executor_of(store);
    executor.start().expect("start");
    executor
}

/// An executor over `store` with one worker, not started: a queued run
/// stays queued.
fn executor_of(store: Arc<dyn Store>) -> crate::Executor {
    let config = crate::ExecutorConfig {
        queue: crate::queue::QueueConfig {
            workers: 1,
            capacity: 16,
        },
        request_policy: Default::default(),
        request_proxy: None,
        secrets: Default::default(),
        stubs: Default::default(),
        max_result: 0,
        metrics: None,
        waiting_texts_dir: None,
    };
    crate::Executor::new(store, config).expect("executor")
}

/// A started executor over a recording store whose next `finish` panics.
fn executor_whose_first_finish_panics() -> (Arc<dyn Store>, crate::Executor) {
    let store = recording();
    store
        .panic_at_finish
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let dyn_store: Arc<dyn Store> = store;
    let executor = started_executor(dyn_store.clone());
    (dyn_store, executor)
}

/// A workflow that is queued (a loop: not one that settles at once).
const QUEUED: &str = "title: Queued\ntrigger: { type: webhook, mode: async }\nnodes:\n  - key: each\n    type: loop\n    over: \"[1]\"\n    do: [ { key: one, type: calculation, expression: \"1 + 1\" } ]\n";

/// The same without the loop: it settles at once.
const SETTLES: &str = "title: Settles\ntrigger: { type: webhook, mode: async }\nnodes:\n  - { key: one, type: calculation, expression: \"1 + 1\" }\n  - { key: said, type: log, message: \"{{ nodes.one }}\" }\n";

/// A panic inside an async run fails that run (durably, with the panic's
/// message) and frees its worker: the next run runs, and a shutdown does
/// not wait for a worker that will never come back.
#[tokio::test]
async fn a_panic_inside_an_async_run_fails_that_run_and_frees_its_worker() {
    let (dyn_store, executor) = executor_whose_first_finish_panics();
    let wf = compile("queued", QUEUED);
    let input = empty_input();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (id, _) = executor
            .accept(wf.clone(), None, input.clone(), None)
            .await
            .expect("accepted");
        ids.push(id);
    }
    let mut records = Vec::new();
    for id in &ids {
        let mut finished = None;
        for _ in 0..200 {
            match dyn_store.get(id).expect("get") {
                Some(r) if r.finished_at.is_some() => {
                    finished = Some(r);
                    break;
                }
                _ => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
        records.push(finished.expect("the run finished within 2 s"));
    }
    assert_eq!(records[0].status, RunStatus::Failed);
    let error = records[0].error.clone().unwrap_or_default();
    assert!(
        error.contains("internal error") && error.contains("a bug while finishing"),
        "{error}"
    );
    assert_eq!(
        records[1].status,
        RunStatus::Resolved,
        "the worker took the next run"
    );
    let started = std::time::Instant::now();
    assert_eq!(
        executor.shutdown(std::time::Duration::from_secs(3)).await,
        0
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
}

/// A run whose read fails when it is resumed (the store did not answer) is
/// read again shortly, not dropped: dropped, it stayed claimed by this
/// instance (its lease renewed) and never ran until a restart.
#[tokio::test]
async fn a_run_whose_read_fails_is_read_again() {
    let (store, dyn_store, wf) = recording_with("queued", QUEUED);
    let (id, _) = executor_of(dyn_store.clone())
        .accept(wf, None, empty_input(), None)
        .await
        .expect("accepted");
    store
        .fail_resumable
        .store(2, std::sync::atomic::Ordering::SeqCst);
    let executor = started_executor(dyn_store.clone());
    let mut finished = None;
    for _ in 0..600 {
        match dyn_store.get(&id).expect("get") {
            Some(r) if r.finished_at.is_some() => {
                finished = Some(r);
                break;
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
    let record = finished.expect("the run finished within 6 s");
    assert_eq!(record.status, RunStatus::Resolved, "{record:?}");
    assert_eq!(
        store
            .fail_resumable
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    executor.shutdown(std::time::Duration::from_secs(1)).await;
}

/// A panic inside a sync run answers 500 `failed` and fails its record.
#[tokio::test]
async fn a_panic_inside_a_sync_run_answers_500_and_fails_the_record() {
    let (dyn_store, executor) = executor_whose_first_finish_panics();
    let input = empty_input();
    let (id, answer) = executor.run_sync(workflow(), None, input).await;
    assert_eq!(answer.status, 500);
    let record = dyn_store
        .get(&id)
        .expect("get")
        .expect("the failed run is stored");
    assert_eq!(record.status, RunStatus::Failed);
    assert!(record
        .error
        .unwrap_or_default()
        .contains("a bug while finishing"));
}

/// Which workflows settle at once: only nodes that need nothing outside the
/// process and end by themselves.
#[test]
fn only_workflows_of_local_nodes_settle_at_once() {
    assert!(crate::settle::settles_at_once(&compile("settles", SETTLES)));
    assert!(!crate::settle::settles_at_once(&workflow()));
    assert!(!crate::settle::settles_at_once(&compile("queued", QUEUED)));
    let delay = "title: D\ntrigger: { type: webhook, mode: async }\nnodes:\n  - { key: d, type: delay, duration: 1s }\n";
    assert!(!crate::settle::settles_at_once(&compile("delay", delay)));
    let call = "title: C\ntrigger: { type: webhook, mode: async }\nnodes:\n  - { key: n, type: calculation, expression: \"1\" }\n  - { key: call, type: request, url: \"http://127.0.0.1:9/x\" }\n";
    assert!(!crate::settle::settles_at_once(&compile("call", call)));
}

/// A run of a workflow that settles at once is finished, with every job,
/// when `accept` returns, on an executor whose workers never started; a run
/// of a workflow with a loop is only queued there.
#[tokio::test]
async fn a_run_that_settles_is_finished_before_its_acknowledgement() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let executor = executor_of(store.clone());
    let (id, ack) = executor
        .accept(compile("settles", SETTLES), None, empty_input(), None)
        .await
        .expect("accepted");
    assert_eq!(ack.status, 200);
    let record = store.get(&id).expect("get").expect("the record");
    assert_eq!(record.status, RunStatus::Resolved);
    assert!(record.finished_at.is_some());
    let jobs: Vec<_> = record.jobs.iter().map(|j| j.key.clone()).collect();
    assert_eq!(
        jobs,
        vec![Some("one".to_string()), Some("said".to_string())]
    );
    assert_eq!(record.jobs[1].result, json!("2"));
    assert_eq!(record.response.map(|r| r.status), Some(200));
    assert!(
        store.input(&id).expect("input").is_some(),
        "kept for retries"
    );
    assert!(store.unfinished(None, 10).expect("unfinished").is_empty());

    let (queued, _) = executor
        .accept(compile("queued", QUEUED), None, empty_input(), None)
        .await
        .expect("accepted");
    let record = store.get(&queued).expect("get").expect("the record");
    assert_eq!(record.status, RunStatus::Queued);
    assert_eq!(
        store.unfinished(None, 10).expect("unfinished"),
        vec![queued]
    );
}

/// A subscriber whose events panic when their message says "boom": a
/// stand-in for a bug met inside a settling run (a log node logs through it).
struct PanicsOnBoom;

impl tracing::Subscriber for PanicsOnBoom {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Boom(bool);
        impl tracing::field::Visit for Boom {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0 |= field.name() == "message" && format!("{value:?}") == "boom";
            }
        }
        let mut boom = Boom(false);
        event.record(&mut boom);
        if boom.0 {
            panic!("a bug met while logging boom");
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// A run that panics while it settles is written failed, with the panic's
/// message, its input kept for a retry; the acknowledgement follows the
/// write, as for any settled run.
#[tokio::test]
async fn a_settling_run_that_panics_is_written_failed() {
    let _guard = tracing::subscriber::set_default(PanicsOnBoom);
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let executor = executor_of(store.clone());
    let workflow = compile(
        "boom",
        "title: Boom\ntrigger: { type: webhook, mode: async }\nnodes:\n  - { key: said, type: log, message: boom }\n",
    );
    let (id, ack) = executor
        .accept(workflow, None, empty_input(), None)
        .await
        .expect("accepted: the failed run is on disk");
    assert_eq!(ack.status, 200);
    let record = store.get(&id).expect("get").expect("the record");
    assert_eq!(record.status, RunStatus::Failed);
    assert!(record.finished_at.is_some());
    let error = record.error.unwrap_or_default();
    assert!(
        error.contains("internal error") && error.contains("a bug met while logging boom"),
        "{error}"
    );
    assert!(
        store.input(&id).expect("input").is_some(),
        "kept for a retry"
    );
    assert!(store.unfinished(None, 10).expect("unfinished").is_empty());
}

/// The values of secret-bearing headers are scrubbed per run only when the
/// workflow can copy them: its templates read `trigger.headers` (or the
/// whole `trigger`), or a parse rule takes such a header. Other runs pay
/// nothing.
#[test]
fn only_runs_that_can_copy_secret_headers_scrub_them() {
    let trigger = TriggerRequest {
        headers: vec![
            ("authorization", "Bearer topsecretvalue1"),
            ("x-request-id", "r-000001"),
        ]
        .into(),
        ..TriggerRequest::default()
    };
    let of = |text: &str| crate::record::header_scrubber(&compile("w", text), &trigger);
    let vars_only = "title: V\ntrigger: { type: webhook, mode: sync, parse: { headers: [ { key: x-request-id, alias: rid } ] } }\nnodes:\n  - { type: log, message: \"{{ vars.rid }}\" }\n";
    assert!(of(vars_only).is_none());
    let log = |message: &str| {
        format!("title: T\ntrigger: {{ type: webhook, mode: sync }}\nnodes:\n  - {{ type: log, message: \"{message}\" }}\n")
    };
    assert!(of(&log("{{ trigger.body.x }} {{ trigger.raw_body }}")).is_none());
    let reads_headers = log("{{ trigger.headers['x-a'] }}");
    let reads_trigger = log("{{ trigger | tojson }}");
    let parses_it = "title: P\ntrigger: { type: webhook, mode: sync, parse: { headers: [ { key: Authorization, alias: auth } ] } }\nnodes:\n  - { type: log, message: \"{{ vars.auth }}\" }\n";
    for text in [reads_headers.as_str(), reads_trigger.as_str(), parses_it] {
        let scrubber = of(text).expect("a scrubber");
        assert_eq!(
            scrubber.str("a=Bearer topsecretvalue1 b=topsecretvalue1 c=r-000001"),
            "a=[redacted] b=[redacted] c=r-000001"
        );
    }
}

/// `execution.*` reads the run's id, workflow and start whichever way a
/// template names them (the scope makes the workflow and the start only
/// for templates that can read them).
#[tokio::test]
async fn templates_read_the_execution_fields_they_name() {
    let store: Arc<dyn Store> = recording();
    let executor = executor_of(store);
    for (body, fields) in [
        ("{ id: \"{{ execution.id }}\" }", &["id"][..]),
        (
            "{ w: \"{{ execution.workflow }}\", at: \"{{ execution.started_at }}\" }",
            &["w", "at"][..],
        ),
        ("{ all: \"{{ execution | tojson }}\" }", &["all"][..]),
    ] {
        let text = format!(
            "title: t\ntrigger:\n  type: webhook\n  mode: sync\n  key: exec-fields\nnodes:\n  \
             - type: response\n    body: {body}\n"
        );
        let wf = compile("exec-fields", &text);
        let (id, answer) = executor.run_sync(wf, None, empty_input()).await;
        assert_eq!(answer.status, 200, "{body}");
        let got: Json = serde_json::from_slice(&answer.body).expect("a JSON answer");
        let record = executor.store().get(&id).expect("get").expect("stored");
        let started = record.started_at.to_string();
        for field in fields {
            let value = got[field].as_str().unwrap_or_default();
            match *field {
                "id" => assert_eq!(value, id),
                "w" => assert_eq!(value, "exec-fields"),
                "at" => assert_eq!(value, started),
                _ => {
                    let all: Json = serde_json::from_str(value).expect("execution as JSON");
                    assert_eq!(
                        all,
                        serde_json::json!({"id": id, "workflow": "exec-fields", "started_at": started})
                    );
                }
            }
        }
    }
}

/// A workflow whose runs wait an hour at their first node.
const WAITS_AN_HOUR: &str = "title: Waits\ntrigger: { type: webhook, mode: async }\nnodes:\n  - { key: pause, type: delay, duration: 1h }\n";

/// The waiting runs a start finds on disk are counted once, whatever runs
/// reach a delay while the count reads the store: runs left queued by the
/// last process (resumed only after the count) and runs of new requests
/// (made after the start: not in the count).
#[tokio::test]
async fn waiting_runs_are_counted_once_at_a_start_however_slow_the_count() {
    let (store, dyn_store, wf) = recording_with("waits", WAITS_AN_HOUR);
    // The last process accepted two runs and stopped before they ran.
    let before = executor_of(dyn_store.clone());
    for _ in 0..2 {
        before
            .accept(wf.clone(), None, empty_input(), None)
            .await
            .expect("accepted");
    }
    drop(before);
    assert_eq!(store.unfinished(None, 10).expect("unfinished").len(), 2);
    // This start's count of waiting runs reads the store slowly.
    store
        .slow_count_ms
        .store(300, std::sync::atomic::Ordering::SeqCst);
    let executor = started_executor(dyn_store.clone());
    executor
        .accept(wf.clone(), None, empty_input(), None)
        .await
        .expect("accepted");
    let waiting = || executor.env.metrics.runs().waiting.get();
    let counted = || store.counts.load(std::sync::atomic::Ordering::SeqCst);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.due(u64::MAX - 1, 10).expect("due").len() < 3 || counted() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "three runs waiting and the count done: {} waiting, {} counts, the gauge at {}",
            store.due(u64::MAX - 1, 10).expect("due").len(),
            counted(),
            waiting()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(waiting(), 3);
}

/// A run's future is boxed where it is made, with the run in its own box:
/// callers wrap, await or spawn a pointer, not 1–2 KiB copied at each
/// move (4.7 KiB of a sync request's 20 KiB of copies went this way).
#[tokio::test]
async fn a_run_s_future_is_a_pointer_wherever_it_goes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).expect("open"));
    let wf = workflow();
    let run = Box::new(new_run(&store, &wf, &empty_input()).await);
    let driving = run.drive();
    let size = std::mem::size_of_val(&driving);
    assert!(
        size <= 64,
        "a run's future takes {size} bytes where it is held"
    );
    assert!(driving.await.is_none(), "the run finishes");
}

/// A run counts in the `running` gauge from when it is driven until it
/// drops, however it ends: finished, or dropped while a request node waits
/// (a caller gone, a shutdown).
#[tokio::test]
async fn a_run_counts_as_running_until_it_drops() {
    // An upstream that takes connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let addr = listener.local_addr().expect("its address");
    let upstream = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let text = format!(
        "title: Gauge\ntrigger: {{ type: webhook }}\nnodes:\n  - {{ key: a, type: calculation, expression: \"1\" }}\n  - {{ key: call, type: request, url: \"http://{addr}/slow\" }}\n"
    );
    let store: Arc<dyn Store> = recording();
    let wf = compile("gauge", &text);
    let input = empty_input();

    let run = Box::new(new_run(&store, &wf, &input).await);
    let metrics = run.env.metrics.clone();
    assert_eq!(
        metrics.runs().running.get(),
        0,
        "not counted before it is driven"
    );
    let mut driving = run.drive();
    let waited = tokio::time::timeout(std::time::Duration::from_millis(300), &mut driving).await;
    assert!(
        waited.is_err(),
        "the request node waits for an answer that never comes"
    );
    assert_eq!(metrics.runs().running.get(), 1, "counted while it waits");
    drop(driving);
    assert_eq!(metrics.runs().running.get(), 0, "counted out when dropped");

    // A run that finishes is counted out too.
    let quick = compile(
        "quick",
        "title: Quick\ntrigger: { type: webhook }\nnodes:\n  - { key: a, type: calculation, expression: \"1\" }\n",
    );
    let run = Box::new(new_run(&store, &quick, &input).await);
    let metrics = run.env.metrics.clone();
    run.drive().await;
    assert_eq!(metrics.runs().running.get(), 0);
    upstream.abort();
}
