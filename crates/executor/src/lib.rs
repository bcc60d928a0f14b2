//! Runs hookflow workflows.
//!
//! [`Executor::run_sync`] runs a sync workflow and returns the answer for the
//! caller (a response node's, the default 200/500, or the timeout's).
//! [`Executor::accept`] stores an async run durably, flushes, and only then
//! returns the acknowledgement; a pool of workers runs queued runs.
//! [`Executor::run_offline`] runs a workflow once in this task for
//! `hookflow run`/`test`; [`Executor::rerun`] starts a retry. Runs are
//! interpreted from a saved position ([`state::RunState`]), so that a run
//! interrupted by a crash resumes after its last finished node.

pub mod answer;
mod nodes;
pub mod policy;
mod queue;
mod record;
mod responder;
mod run;
mod scope;
pub mod state;
mod versions;

#[cfg(test)]
mod tests;

pub use answer::Answer;
pub use hookflow_store::RunInput;
pub use queue::QueueConfig;

use hookflow_model::runtime::Workflow;
use hookflow_model::template::Scope;
use hookflow_store::{ExecutionRecord, Pending, RunStatus, Store, Write};
use queue::{Queue, ReadyRun};
use record::{bare_record, new_record};
use responder::{Control, Responder};
use run::Run;
use scope::{scope_copying, scope_for};
use serde_json::Value as Json;
use state::RunState;
use std::collections::HashMap;
use std::sync::Arc;
use versions::Versions;

/// Why an async request was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// The queue is at capacity.
    #[error("the queue is full")]
    QueueFull,
    /// The server is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The run could not be stored.
    #[error("the run could not be stored: {0}")]
    Store(String),
    /// The acknowledgement could not be rendered.
    #[error("trigger.response failed: {0}")]
    Response(String),
}

/// A canned answer for a request node (`hookflow test`), by node key.
#[derive(Debug, Clone, PartialEq)]
pub struct Stub {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: serde_json::Map<String, Json>,
    /// Body (JSON, or a string).
    pub body: Json,
}

/// A run made without a server (`hookflow run`, `hookflow test`).
#[derive(Debug)]
pub struct OfflineRun {
    /// The answer the caller would get.
    pub answer: Answer,
    /// The final record, with one job per node run.
    pub record: ExecutionRecord,
}

/// Services shared by all runs.
pub struct Env {
    /// The HTTP client of request nodes.
    pub http: reqwest::Client,
    /// Where request nodes may connect.
    pub policy: Arc<policy::HostRules>,
    /// Largest response body a request node reads.
    pub max_response_body: usize,
    /// Canned answers for request nodes, by node key (tests only; empty in a server).
    pub stubs: HashMap<String, Stub>,
}

/// Executor settings.
#[derive(Debug, Clone, Default)]
pub struct ExecutorConfig {
    /// Workers and queue capacity.
    pub queue: QueueConfig,
    /// Request node destinations.
    pub request_policy: policy::HostRules,
    /// Canned answers for request nodes (`hookflow test`).
    pub stubs: HashMap<String, Stub>,
}

/// Largest response body a request node reads: 10 MiB.
pub const MAX_RESPONSE_BODY: usize = 10 * 1024 * 1024;

/// Runs workflows; cheap to clone.
#[derive(Clone)]
pub struct Executor {
    store: Arc<dyn Store>,
    queue: Arc<Queue>,
    versions: Arc<Versions>,
    env: Arc<Env>,
}

impl Executor {
    /// An executor over `store`. Call [`Executor::start`] inside a Tokio runtime
    /// before accepting async runs.
    pub fn new(store: Arc<dyn Store>, config: ExecutorConfig) -> Result<Executor, String> {
        let versions = Arc::new(Versions::new(store.clone()));
        let policy = Arc::new(config.request_policy);
        let http = reqwest::Client::builder()
            .dns_resolver(Arc::new(policy::PolicyResolver(policy.clone())))
            .connect_timeout(std::time::Duration::from_secs(10))
            .user_agent(concat!("hookflow/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Executor {
            queue: Arc::new(Queue::new(config.queue)),
            store,
            versions,
            env: Arc::new(Env {
                http,
                policy,
                max_response_body: MAX_RESPONSE_BODY,
                stubs: config.stubs,
            }),
        })
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Makes these workflows the current versions (after a load or reload).
    pub fn publish(&self, workflows: HashMap<String, Arc<Workflow>>) {
        for wf in workflows.values() {
            if let Err(error) = self.store.put_version(&wf.version, &wf.source) {
                tracing::error!(message = "Could not store a workflow version.", workflow = %wf.id, %error);
            }
        }
        self.versions.publish(workflows);
    }

    /// Starts the workers and resumes every run left on disk (queued, running, waiting).
    pub fn start(&self) -> Result<usize, String> {
        self.queue.start(self.clone());
        let pending = self.store.pending().map_err(|e| e.to_string())?;
        let count = pending.len();
        for (record, pending) in pending {
            self.resume(record, pending);
        }
        if count > 0 {
            tracing::info!(message = "Resuming runs left on disk.", count);
        }
        Ok(count)
    }

    fn resume(&self, record: ExecutionRecord, pending: Pending) {
        let state = RunState::from_json(&pending.state).unwrap_or_else(RunState::start);
        let item = ReadyRun {
            record,
            state,
            scope: None,
            workflow: None,
        };
        match (pending.status, pending.wake_at) {
            (RunStatus::Waiting, Some(wake_at)) => self.wake_later(item, wake_at),
            _ => self.queue.push_recovered(item),
        }
    }

    /// Queues a waiting run again at `wake_at` (Unix ms; at once if it has passed).
    /// Until then it holds no worker and no queue place.
    fn wake_later(&self, item: ReadyRun, wake_at: u64) {
        let queue = self.queue.clone();
        let wait = std::time::Duration::from_millis(
            wake_at.saturating_sub(hookflow_model::time::now_millis()),
        );
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            if !queue.is_shutting_down() {
                queue.push_recovered(item);
            }
        });
    }

    /// A run with this executor's services: not durable, no deadline, no responder.
    fn run_of(
        &self,
        workflow: Arc<Workflow>,
        record: ExecutionRecord,
        state: RunState,
        scope: Scope,
    ) -> Run {
        Run {
            workflow,
            record,
            state,
            scope,
            store: self.store.clone(),
            env: self.env.clone(),
            durable: false,
            save_every_node: false,
            offline: false,
            control: Arc::new(Control::default()),
            deadline: None,
            responder: None,
        }
    }

    /// Runs a sync workflow; returns the execution id and the answer for the caller.
    pub async fn run_sync(&self, workflow: Arc<Workflow>, input: RunInput) -> (String, Answer) {
        let id = uuid::Uuid::now_v7().to_string();
        let record = bare_record(id, &workflow, RunStatus::Running);
        self.run_sync_record(workflow, input, record).await
    }

    async fn run_sync_record(
        &self,
        workflow: Arc<Workflow>,
        input: RunInput,
        mut record: ExecutionRecord,
    ) -> (String, Answer) {
        let id = record.id.clone();
        let state = RunState::start();
        let RunInput { trigger, vars } = input;
        let scope = scope_for(&workflow, &record, &trigger, vars, &state);
        if record.trigger.is_none() {
            // The scope has what it reads now: move the request in rather than clone it.
            record.trigger = Some(trigger.redacted());
        }
        let responder = Arc::new(Responder::default());
        let control = Arc::new(Control::default());
        let timeout = workflow.timeout;
        let timeout_response = workflow.trigger.timeout_response.as_ref().map(|spec| {
            answer::Answer::render(spec, &workflow.templates, &scope).unwrap_or_else(|e| {
                tracing::warn!(message = "timeout_response failed; answering 408.", error = %e.message);
                Answer::timed_out(&id)
            })
        });
        let mut run = self.run_of(workflow, record, state, scope);
        run.control = control.clone();
        run.responder = Some(responder.clone());
        // The run is driven here, in the request's task, until it answers;
        // whatever is left of it then (nodes after a `timeout_response`, the
        // end of an aborted run) goes on in a task of its own.
        let mut drive = Box::pin(run.drive());
        let answered = async {
            tokio::select! {
                biased;
                _ = &mut drive => (responder.wait().await, true),
                answer = responder.wait() => (answer, false),
            }
        };
        let (answer, finished) = match timeout {
            None => answered.await,
            Some(limit) => match tokio::time::timeout(limit, answered).await {
                Ok(answered) => answered,
                Err(_) => match timeout_response {
                    // The caller gets the configured answer; the run goes on.
                    Some(answer) => {
                        responder.answer(answer);
                        (responder.wait().await, false)
                    }
                    None => {
                        if responder.answer(Answer::timed_out(&id)) {
                            control.cancel();
                        }
                        (responder.wait().await, false)
                    }
                },
            },
        };
        if !finished {
            tokio::spawn(drive);
        }
        (id, answer)
    }

    /// Runs a workflow once to its end in this task, without queue or
    /// durability; delays do not wait. For `hookflow run` and `hookflow test`.
    pub async fn run_offline(
        &self,
        workflow: Arc<Workflow>,
        input: RunInput,
    ) -> Result<OfflineRun, String> {
        let id = uuid::Uuid::now_v7().to_string();
        let record = new_record(id.clone(), &workflow, &input, RunStatus::Running);
        let state = RunState::start();
        let scope = scope_copying(&workflow, &record, &input, &state);
        let ack = match (&workflow.mode, &workflow.trigger.response) {
            (hookflow_model::def::Mode::Async, Some(spec)) => Some(
                Answer::render(spec, &workflow.templates, &scope)
                    .unwrap_or_else(|e| Answer::json(500, serde_json::json!({"error": e.message}))),
            ),
            (hookflow_model::def::Mode::Async, None) => Some(Answer::default_ack()),
            _ => None,
        };
        let responder = Arc::new(Responder::default());
        let mut run = self.run_of(workflow, record, state, scope);
        run.offline = true;
        run.responder = ack.is_none().then(|| responder.clone());
        run.drive().await;
        let _ = self.store.flush().await;
        let record = self
            .store
            .get(&id)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "the run left no record".to_string())?;
        let answer = ack
            .or_else(|| responder.take())
            .unwrap_or_else(|| Answer::finished(record.status == RunStatus::Resolved, &id));
        Ok(OfflineRun { answer, record })
    }

    /// Stores an async run durably and queues it; returns the execution id and
    /// the acknowledgement. Returns only after the run is on disk.
    pub async fn accept(
        &self,
        workflow: Arc<Workflow>,
        input: RunInput,
    ) -> Result<(String, Answer), AcceptError> {
        let id = uuid::Uuid::now_v7().to_string();
        // The stored input keeps the request; the record needs none.
        let mut record = bare_record(id.clone(), &workflow, RunStatus::Queued);
        let state = RunState::start();
        // The worker uses the same scope; build it once.
        let scope = scope_copying(&workflow, &record, &input, &state);
        let ack = match &workflow.trigger.response {
            Some(spec) => Answer::render(spec, &workflow.templates, &scope)
                .map_err(|e| AcceptError::Response(e.message))?,
            None => Answer::default_ack(),
        };
        record.response = Some(ack.record());
        self.enqueue(workflow, input, record, state, scope).await?;
        Ok((id, ack))
    }

    async fn enqueue(
        &self,
        workflow: Arc<Workflow>,
        input: RunInput,
        record: ExecutionRecord,
        state: RunState,
        scope: Scope,
    ) -> Result<(), AcceptError> {
        let slot = self.queue.reserve()?;
        let pending = Pending {
            status: RunStatus::Queued,
            state: state.to_json(),
            wake_at: None,
        };
        // The stored input holds the trigger context; the record needs no copy.
        let mut record = record;
        record.trigger = None;
        self.store
            .put_durable(Write {
                record: record.clone(),
                pending: Some(pending),
                clear_pending: false,
                input_stored: true,
                input: Some(input),
            })
            .await
            .map_err(|e| AcceptError::Store(e.to_string()))?;
        slot.push(ReadyRun {
            record,
            state,
            scope: Some(scope),
            workflow: Some(workflow),
        });
        Ok(())
    }

    /// The workflow `id` at `version`: the current one, or an older one
    /// compiled again from its stored text.
    pub fn resolve_version(&self, id: &str, version: &str) -> Result<Arc<Workflow>, String> {
        self.versions.resolve(id, version)
    }

    /// Starts a new run of `workflow` with `input`, recorded as a retry of
    /// the run `retry_of`; returns the new run's id. A sync workflow runs in
    /// a task of its own (nobody waits for its answer); an async one is
    /// queued durably.
    pub async fn rerun(
        &self,
        workflow: Arc<Workflow>,
        input: RunInput,
        retry_of: &str,
    ) -> Result<String, AcceptError> {
        let new_id = uuid::Uuid::now_v7().to_string();
        match workflow.mode {
            hookflow_model::def::Mode::Sync => {
                let mut record = new_record(new_id.clone(), &workflow, &input, RunStatus::Running);
                record.retry_of = Some(retry_of.to_string());
                let exec = self.clone();
                tokio::spawn(async move {
                    exec.run_sync_record(workflow, input, record).await;
                });
            }
            hookflow_model::def::Mode::Async => {
                let mut record = new_record(new_id.clone(), &workflow, &input, RunStatus::Queued);
                record.retry_of = Some(retry_of.to_string());
                let state = RunState::start();
                let scope = scope_copying(&workflow, &record, &input, &state);
                self.enqueue(workflow, input, record, state, scope).await?;
            }
        }
        Ok(new_id)
    }

    /// Runs a queued or resumed run to its end (called by a worker).
    async fn execute(&self, item: ReadyRun) {
        let ReadyRun {
            record,
            state,
            scope,
            workflow,
        } = item;
        let id = record.id.clone();
        let workflow = match workflow
            .map(Ok)
            .unwrap_or_else(|| self.versions.resolve(&record.workflow, &record.version))
        {
            Ok(w) => w,
            Err(error) => return self.fail_unrunnable(record, error),
        };
        let scope = match scope {
            Some(scope) => scope,
            None => match self.store.input(&id) {
                Ok(Some(input)) => {
                    scope_for(&workflow, &record, &input.trigger, input.vars, &state)
                }
                _ => {
                    return self.fail_unrunnable(
                        record,
                        "the run's input is missing from the store".into(),
                    )
                }
            },
        };
        let deadline = workflow.timeout.map(|t| {
            let elapsed = hookflow_model::time::now_millis().saturating_sub(record.started_ms);
            tokio::time::Instant::now()
                + t.saturating_sub(std::time::Duration::from_millis(elapsed))
        });
        let mut run = self.run_of(workflow, record, state, scope);
        run.durable = true;
        run.deadline = deadline;
        if let Some(run::Waiting {
            record,
            state,
            wake_at,
        }) = run.drive().await
        {
            self.wake_later(
                ReadyRun {
                    record: *record,
                    state,
                    // Read again from the store on waking: nothing is kept in memory.
                    scope: None,
                    workflow: None,
                },
                wake_at,
            );
        }
    }

    fn fail_unrunnable(&self, mut record: ExecutionRecord, error: String) {
        tracing::error!(message = "Run cannot start.", execution_id = %record.id, workflow = %record.workflow, %error);
        record.status = RunStatus::Failed;
        record.error = Some(error);
        record.finished_at = Some(hookflow_model::time::Timestamp::now());
        self.store.put(Write {
            record,
            pending: None,
            clear_pending: true,
            input_stored: true,
            input: None,
        });
    }

    /// Stops taking queued runs and waits up to `grace` for running ones;
    /// returns how many were still running (they stay on disk and resume at the next start).
    pub async fn shutdown(&self, grace: std::time::Duration) -> usize {
        self.queue.shutdown(grace).await
    }

    /// Makes everything written so far durable.
    pub async fn flush(&self) -> Result<(), String> {
        self.store.flush().await.map_err(|e| e.to_string())
    }
}
