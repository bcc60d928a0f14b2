//! The state machine: a durable run saves its position after every node, and a
//! run resumed from any saved position ends exactly like the uninterrupted one.

use crate::run::{new_record, scope_for, Control, Run, RunInput};
use crate::state::{Frame, RunState};
use crate::Env;
use hookflow_model::load::{load_source, LoadOptions, SecretPolicy};
use hookflow_model::runtime::Workflow;
use hookflow_store::{
    BoxFuture, ExecutionFilter, ExecutionRecord, Pending, RunStatus, SledStore, Store, StoreResult,
    Write,
};
use serde_json::{json, Value as Json};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A store that remembers every saved position.
struct Recording {
    inner: SledStore,
    saved: Mutex<Vec<(ExecutionRecord, Pending)>>,
}

impl Store for Recording {
    fn put(&self, write: Write) {
        if let (Some(p), Ok(mut saved)) = (&write.pending, self.saved.lock()) {
            saved.push((write.record.clone(), p.clone()));
        }
        self.inner.put(write)
    }
    fn put_durable(&self, write: Write) -> BoxFuture<'_, StoreResult<()>> {
        self.inner.put_durable(write)
    }
    fn input(&self, id: &str) -> StoreResult<Option<Json>> {
        self.inner.input(id)
    }
    fn get(&self, id: &str) -> StoreResult<Option<ExecutionRecord>> {
        self.inner.get(id)
    }
    fn list(&self, f: &ExecutionFilter) -> StoreResult<(Vec<ExecutionRecord>, Option<String>)> {
        self.inner.list(f)
    }
    fn pending(&self) -> StoreResult<Vec<(ExecutionRecord, Pending)>> {
        self.inner.pending()
    }
    fn put_version(&self, v: &str, s: &str) -> StoreResult<()> {
        self.inner.put_version(v, s)
    }
    fn version(&self, v: &str) -> StoreResult<Option<String>> {
        self.inner.version(v)
    }
    fn remove_finished_before(&self, c: u64) -> StoreResult<usize> {
        self.inner.remove_finished_before(c)
    }
    fn flush(&self) -> BoxFuture<'_, StoreResult<()>> {
        self.inner.flush()
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
    let file = load_source(
        "branches",
        Path::new("branches.yaml"),
        WORKFLOW,
        &LoadOptions::process_env(SecretPolicy::Warn),
    );
    file.workflow
        .unwrap_or_else(|| panic!("{:?}", file.diagnostics))
}

fn env() -> Arc<Env> {
    Arc::new(Env {
        http: reqwest::Client::new(),
        policy: Arc::new(Default::default()),
        max_response_body: 1024,
    })
}

fn run_from(
    store: Arc<dyn Store>,
    wf: &Arc<Workflow>,
    record: ExecutionRecord,
    state: RunState,
    input: &RunInput,
) -> Run {
    Run {
        workflow: wf.clone(),
        scope: scope_for(wf, &record, input, &state),
        record,
        state,
        store,
        env: env(),
        durable: true,
        control: Arc::new(Control::default()),
        deadline: None,
        responder: None,
    }
}

/// Drives a run to its end and reads its final record back from the store.
async fn finish(run: Run, store: &Arc<dyn Store>) -> ExecutionRecord {
    let id = run.record.id.clone();
    let status = match run.drive().await {
        crate::run::Outcome::Finished(status) => status,
        other => panic!("the run should finish, not {other:?}"),
    };
    store.flush().await.expect("flush");
    let record = store.get(&id).expect("get").expect("the record is stored");
    assert_eq!(record.status, status);
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
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Recording {
        inner: SledStore::open(dir.path()).expect("open"),
        saved: Mutex::new(Vec::new()),
    });
    let wf = workflow();
    let input = RunInput {
        trigger: json!({"body": {"x": 4}}),
        vars: json!({}),
    };
    let record = new_record(
        uuid::Uuid::now_v7().to_string(),
        &wf,
        &input,
        RunStatus::Queued,
    );
    let full = finish(
        run_from(store.clone(), &wf, record, RunState::start(), &input),
        &(store.clone() as Arc<dyn Store>),
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
    let after_switch = RunState::from_json(&saved[4].1.state).expect("state");
    assert_eq!(after_switch.frames.len(), 3);
    assert!(matches!(
        after_switch.frames[2],
        Frame::Block { next: 0, .. }
    ));

    for (i, (record, pending)) in saved.iter().enumerate() {
        let state = RunState::from_json(&pending.state).expect("saved state reads back");
        let resumed = finish(
            run_from(store.clone(), &wf, record.clone(), state, &input),
            &(store.clone() as Arc<dyn Store>),
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
    let file = load_source(
        "f",
        Path::new("f.yaml"),
        text,
        &LoadOptions::process_env(SecretPolicy::Warn),
    );
    let wf = file.workflow.expect("loads");
    let input = RunInput {
        trigger: json!({}),
        vars: json!({}),
    };
    let record = new_record(
        uuid::Uuid::now_v7().to_string(),
        &wf,
        &input,
        RunStatus::Queued,
    );
    let done = finish(
        run_from(store.clone(), &wf, record, RunState::start(), &input),
        &(store.clone() as Arc<dyn Store>),
    )
    .await;
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
    // A finished run leaves nothing pending.
    store.flush().await.expect("flush");
    assert!(store.pending().expect("pending").is_empty());
}
