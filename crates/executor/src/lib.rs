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
mod detached;
mod held;
mod intake;
mod limit;
mod nodes;
mod panics;
pub mod policy;
mod queue;
mod record;
mod recovery;
mod responder;
mod run;
mod scope;
mod settle;
pub mod state;
pub mod stubs;
mod versions;

#[cfg(test)]
mod tests;

pub use answer::Answer;
pub use hookflow_metrics as metrics;
pub use hookflow_metrics::{Metrics, WorkflowMetrics};
pub use hookflow_store::RunInput;
pub use queue::QueueConfig;
pub use stubs::{SentRequest, Stub, StubAnswers, StubFailure, StubProblem, Stubs};

/// Locks a mutex whose data stays valid even if a holder panicked (each
/// holder leaves it whole between statements).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Told a retried sync run's id and answer once it answers (the service
/// keeps the workflow's idempotency key of a 2xx).
pub type Answered =
    Box<dyn FnOnce(String, Answer) -> hookflow_store::BoxFuture<'static, ()> + Send>;

use futures_util::FutureExt;
use hookflow_model::runtime::Workflow;
use hookflow_model::scrub::SecretSet;
use hookflow_model::template::Scope;
use hookflow_store::{ExecutionRecord, IdempotencyEntry, RunStatus, Store};
use queue::Queue;
use record::{bare_record, new_record};
use responder::Responder;
use run::Run;
use scope::{scope_copying, scope_for};
use state::RunState;
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
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
    /// Another run holds the idempotency key (another instance of a shared
    /// store claimed it first): nothing was stored; the request is a repeat.
    #[error("the idempotency key is held by run {}", .0.execution_id)]
    Duplicate(Box<IdempotencyEntry>),
}

/// A new run's id (UUID v7: ordered by time).
pub fn new_execution_id() -> String {
    // Encoded into a buffer: `to_string` goes through the formatting
    // machinery (a few hundred instructions a request).
    // Each thread counts within its millisecond on its own: `now_v7`'s one
    // context is a lock every HTTP worker took a request. Ids of one
    // thread still sort in the order they were made; ids of two threads
    // in one millisecond differ in 74 bits of counter and random
    // (docs/decisions.md).
    thread_local! {
        static V7: uuid::ContextV7 = const { uuid::ContextV7::new() };
    }
    let context = uuid::timestamp::context::ThreadLocalContext::new(&V7);
    let id = uuid::Uuid::new_v7(uuid::Timestamp::now(context));
    let mut buffer = uuid::Uuid::encode_buffer();
    String::from(&*id.hyphenated().encode_lower(&mut buffer))
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
    /// How request nodes reach other systems: the HTTP clients and the
    /// rules of where they may connect.
    pub http: policy::Outbound,
    /// Largest response body a request node reads.
    pub max_response_body: usize,
    /// Canned answers for request nodes (`hookflow test`): with them, no
    /// request node touches the network. `None` in a server and `hookflow run`.
    pub stubs: Option<Arc<Stubs>>,
    /// Largest job result kept in a record (`--max-result`).
    pub max_result: usize,
    /// What records are scrubbed of (SPEC §3).
    pub secrets: SecretSet,
    /// Counts of runs and request node tries (SPEC §7).
    pub metrics: Arc<Metrics>,
}

/// Executor settings.
#[derive(Debug, Clone, Default)]
pub struct ExecutorConfig {
    /// Workers and queue capacity.
    pub queue: QueueConfig,
    /// Request node destinations.
    pub request_policy: policy::HostRules,
    /// The proxy request nodes go through (`--request-proxy`); none by
    /// default, and never one from the environment.
    pub request_proxy: Option<policy::RequestProxy>,
    /// Canned answers for request nodes (`hookflow test`); with them, no
    /// request node touches the network.
    pub stubs: Option<Arc<Stubs>>,
    /// Largest job result kept in a record (`--max-result`); 0 for the
    /// default, 256 KiB.
    pub max_result: usize,
    /// The secret values records are scrubbed of; the service adds the
    /// secrets of the workflows it loads. Empty offline.
    pub secrets: SecretSet,
    /// Where runs are counted (`/metrics`); a private set when `None`.
    pub metrics: Option<Arc<Metrics>>,
    /// The folder where the texts of loaded versions wait until first
    /// stored (the embedded store's data folder): in a private file there,
    /// not in memory. In memory when `None`.
    pub waiting_texts_dir: Option<std::path::PathBuf>,
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
    /// Wakes the timer of waiting runs when one saves an earlier wake time.
    waker: Arc<tokio::sync::Notify>,
    /// The earliest wake time saved since the timer last looked (Unix ms;
    /// `u64::MAX` for none): the store may not show it yet.
    earliest_wake: Arc<std::sync::atomic::AtomicU64>,
    /// Sync runs going on after their caller got its answer.
    detached: Arc<detached::Detached>,
    /// Retried sync runs executing at once: as many as async runs
    /// (`--workers`), so that a bulk retry of a thousand sync runs does not
    /// call their downstream a thousand times at once.
    sync_retries: Arc<tokio::sync::Semaphore>,
    /// Durable runs being driven, checked against a shared store's owners.
    held: Arc<held::Held>,
}

impl Executor {
    /// An executor over `store`. Call [`Executor::start`] inside a Tokio runtime
    /// before accepting async runs.
    pub fn new(store: Arc<dyn Store>, config: ExecutorConfig) -> Result<Executor, String> {
        let versions = Arc::new(Versions::new(store.clone(), config.waiting_texts_dir));
        let http = policy::Outbound::new(config.request_policy, config.request_proxy.as_ref())?;
        let metrics = config.metrics.unwrap_or_default();
        let sync_retries = Arc::new(tokio::sync::Semaphore::new(config.queue.workers.max(1)));
        Ok(Executor {
            queue: Arc::new(Queue::new(config.queue, metrics.runs().queued.clone())),
            store,
            versions,
            env: Arc::new(Env {
                http,
                max_response_body: MAX_RESPONSE_BODY,
                stubs: config.stubs,
                max_result: match config.max_result {
                    0 => hookflow_store::DEFAULT_MAX_RESULT,
                    n => n,
                },
                secrets: config.secrets,
                metrics,
            }),
            waker: Arc::new(tokio::sync::Notify::new()),
            earliest_wake: Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX)),
            detached: Arc::default(),
            sync_retries,
            held: Arc::default(),
        })
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Where runs are counted.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.env.metrics
    }

    /// The secret values records (and logs, and admin answers) are scrubbed of.
    pub fn secrets(&self) -> &SecretSet {
        &self.env.secrets
    }

    /// Keeps the texts of workflow versions for the store, so that a run
    /// can finish on the version it started with (call it before
    /// [`Executor::publish`] makes the versions current): see
    /// `Versions::store_or_hold`.
    pub fn store_versions(&self, versions: &[(&Workflow, Arc<str>)]) {
        self.versions.store_or_hold(versions);
    }

    /// Makes these workflows the current versions (after a load or reload;
    /// their texts already stored with [`Executor::store_versions`]).
    pub fn publish(&self, workflows: Arc<HashMap<String, Arc<Workflow>>>) {
        self.versions.publish(workflows);
    }

    /// A run with this executor's services: not durable, no deadline, no
    /// responder; counted with `handles` (looked up by version when `None`:
    /// retries and runs from the store, not the request path).
    fn run_of(
        &self,
        workflow: Arc<Workflow>,
        handles: Option<Arc<WorkflowMetrics>>,
        record: ExecutionRecord,
        state: RunState,
        scope: Scope,
    ) -> Box<Run> {
        self.versions.keep(&workflow);
        let handles = handles.unwrap_or_else(|| self.env.metrics.workflow(&workflow));
        // Boxed once here: a run is moved from here to its driver and
        // into its future, 688 bytes at each move unboxed.
        let mut run = Run::new(
            workflow,
            record,
            state,
            scope,
            self.store.clone(),
            self.env.clone(),
        );
        run.metrics = Some(handles);
        Box::new(run)
    }

    /// Runs a sync workflow; returns the execution id and the answer for the
    /// caller. `handles` are the workflow's metrics, made when it loaded.
    pub async fn run_sync(
        &self,
        workflow: Arc<Workflow>,
        handles: Option<Arc<WorkflowMetrics>>,
        input: RunInput,
    ) -> (String, Answer) {
        self.run_sync_as(&workflow, handles, input, None).await
    }

    /// [`Executor::run_sync`] under a chosen execution id (`None`: a new
    /// one), e.g. one that claimed an idempotency key before the run.
    /// `workflow` is borrowed for as long as the run answers: the run takes
    /// a handle of its own, the only one a request takes (every HTTP worker
    /// moves the workflow's count: each handle was a contended atomic).
    pub fn run_sync_as<'a>(
        &'a self,
        workflow: &'a Arc<Workflow>,
        handles: Option<Arc<WorkflowMetrics>>,
        input: RunInput,
        id: Option<String>,
    ) -> impl Future<Output = (String, Answer)> + 'a {
        // Not an `async fn`: its future would hold the record and the input
        // beside the run's future, which holds them too.
        let id = id.unwrap_or_else(new_execution_id);
        let record = bare_record(id, workflow, RunStatus::Running);
        self.run_sync_record(workflow, handles, input, record)
    }

    ///
    /// Not an `async fn`: the run is made here, before the future, which
    /// then holds what it waits with (an `async fn`'s future kept the
    /// record, the input and the run beside the run's own future: 2.8 KiB
    /// copied as the request's future moved into its box).
    fn run_sync_record<'a>(
        &'a self,
        workflow: &'a Arc<Workflow>,
        handles: Option<Arc<WorkflowMetrics>>,
        input: RunInput,
        mut record: ExecutionRecord,
    ) -> impl Future<Output = (String, Answer)> + 'a {
        let id = record.id.clone();
        let state = RunState::start();
        let RunInput {
            trigger,
            vars,
            secret_headers,
        } = input;
        let scope = scope_for(workflow, &record, &trigger, vars, &state);
        let headers = record::header_scrubber(workflow, &trigger);
        if record.trigger.is_none() {
            // The scope has what it reads now: move the request in rather
            // than clone it, and redact it where it stays (each move of a
            // request is a copy of it).
            record.trigger = Some(trigger);
            if let Some(recorded) = &mut record.trigger {
                recorded.redact_with(&secret_headers);
            }
        }
        // A sync run's record keeps its request (an async run's is read
        // from its input): no declared secret value in it (SPEC §3).
        if let Some(recorded) = &mut record.trigger {
            self.env
                .secrets
                .with_current(|secrets| recorded.scrub(secrets));
        }
        let responder = Arc::new(Responder::default());
        let timeout = workflow.timeout;
        let timeout_response = workflow.trigger.timeout_response.as_ref().map(|spec| {
            answer::Answer::render(spec, &workflow.templates, &scope).unwrap_or_else(|e| {
                tracing::warn!(message = "timeout_response failed; answering 408.", error = ?e.message);
                Answer::timed_out(&id)
            })
        });
        // What makes the run readable should the caller get an answer
        // (a timeout's) before it finishes.
        let header = (workflow, record.started_ms, record.retry_of.clone());
        let mut run = self.run_of(workflow.clone(), handles, record, state, scope);
        run.header_scrubber = headers;
        let control = run.control.clone();
        run.responder = Some(responder.clone());
        // The run is driven here, in the request's task, until it answers;
        // whatever is left of it then (nodes after a `timeout_response`, the
        // end of an aborted run) goes on in a task of its own.
        let mut drive = AssertUnwindSafe(run.drive()).catch_unwind();
        async move {
            let answered = async {
                tokio::select! {
                    biased;
                    driven = &mut drive => {
                        if let Err(payload) = driven {
                            let (workflow, started_ms, _) = &header;
                            self.fail_panicked(&id, Some((workflow, *started_ms)), &*payload);
                            responder.answer(Answer::finished(false, &id));
                        }
                        (responder.wait().await, true)
                    }
                    answer = responder.wait() => (answer, false),
                }
            };
            let (answer, finished) = match timeout {
                None => answered.await,
                Some(limit) => match limit::within(limit, answered).await {
                    Some(answered) => answered,
                    None => match timeout_response {
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
                let (workflow, started_ms, retry_of) = header;
                let workflow = workflow.clone();
                let id_after = id.clone();
                let mut going = bare_record(id.clone(), &workflow, RunStatus::Running);
                going.started_ms = started_ms;
                going.started_at = hookflow_model::time::Timestamp(started_ms);
                // A retry stays one while it goes on.
                let going_retry_of = retry_of.clone();
                going.retry_of = retry_of;
                self.store.announce(going);
                let going = detached::Going {
                    id: id.clone(),
                    workflow: workflow.clone(),
                    started_ms,
                    retry_of: going_retry_of,
                };
                let executor = self.clone();
                self.detached.spawn(going, async move {
                    if let Err(payload) = drive.await {
                        executor.fail_panicked(&id_after, Some((&workflow, started_ms)), &*payload);
                    }
                });
            }
            self.shared_flush().await;
            (id, answer)
        }
    }

    /// With a store shared by several instances, waits until what was
    /// written so far is committed: a record whose id is about to be sent
    /// is then readable from every instance (read-your-writes).
    async fn shared_flush(&self) {
        if self.store.shared() {
            if let Err(error) = self.store.flush().await {
                tracing::warn!(message = "Could not commit a run's record.", %error);
            }
        }
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
        let headers = record::header_scrubber(&workflow, &input.trigger);
        let mut run = self.run_of(workflow, None, record, state, scope);
        run.header_scrubber = headers;
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

    /// The workflow `id` at `version`: the current one, or an older one
    /// compiled again from its stored text.
    pub fn resolve_version(&self, id: &str, version: &str) -> Result<Arc<Workflow>, String> {
        self.versions.resolve(id, version)
    }

    /// Stops taking queued runs and waits up to `grace` for running ones;
    /// returns how many async runs were still running (they stay on disk and
    /// resume at the next start). Sync runs going on without a caller (a
    /// retry, the rest of a run answered by its timeout) have the same grace;
    /// those still going then are recorded as failed, since a sync run does
    /// not resume.
    pub async fn shutdown(&self, grace: std::time::Duration) -> usize {
        let (left, going) = tokio::join!(self.queue.shutdown(grace), self.detached.settled(grace));
        if !going.is_empty() {
            tracing::warn!(
                message =
                    "Sync runs still going at shutdown are recorded as failed; they do not resume.",
                count = going.len()
            );
        }
        for run in going {
            self.fail_stopped(run);
        }
        left
    }

    /// Makes everything written so far durable.
    pub async fn flush(&self) -> Result<(), String> {
        self.store.flush().await.map_err(|e| e.to_string())
    }
}
