//! The interpreter: steps a run through its workflow one node at a time,
//! saving its position after each node when the run is durable.

use crate::answer::Answer;
use crate::nodes::{self, NodeCx, Step};
use crate::state::{Frame, RunState};
use hookflow_model::def::OnError;
use hookflow_model::runtime::Workflow;
use hookflow_model::template::Scope;
use hookflow_model::time::{millis_to_rfc3339, now_millis};
use hookflow_store::{ExecutionRecord, JobRecord, JobStatus, Pending, RunStatus, Store, Write};
use serde_json::{json, Value as Json};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use tokio::sync::Notify;
use tracing::Instrument;

/// The first answer of a sync run wins: the response node's, or the timeout's.
#[derive(Debug, Default)]
pub struct Responder {
    slot: OnceLock<Answer>,
    notify: Notify,
}

impl Responder {
    /// Offers an answer; true when it is the one sent.
    pub fn answer(&self, answer: Answer) -> bool {
        let first = self.slot.set(answer).is_ok();
        if first {
            self.notify.notify_one();
        }
        first
    }

    /// The answer sent, if any.
    pub fn sent(&self) -> Option<&Answer> {
        self.slot.get()
    }

    /// Waits for the answer.
    pub async fn wait(&self) -> Answer {
        loop {
            if let Some(a) = self.slot.get() {
                return a.clone();
            }
            self.notify.notified().await;
        }
    }
}

/// Stops a run between nodes (timeouts).
#[derive(Debug, Default)]
pub struct Control {
    cancelled: AtomicBool,
    notify: Notify,
}

impl Control {
    /// Asks the run to stop as aborted.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// True once cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// Resolves once cancelled.
    pub async fn cancelled(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The input of a run: the full trigger context and the parsed variables.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInput {
    /// `trigger`: method, path, headers, query, body, raw_body.
    pub trigger: Json,
    /// `vars`.
    pub vars: Json,
}

impl RunInput {
    /// As stored.
    pub fn into_json(self) -> Json {
        let mut m = serde_json::Map::with_capacity(2);
        m.insert("trigger".into(), self.trigger);
        m.insert("vars".into(), self.vars);
        Json::Object(m)
    }

    /// From storage.
    pub fn from_json(v: &Json) -> RunInput {
        RunInput {
            trigger: v.get("trigger").cloned().unwrap_or(Json::Null),
            vars: v.get("vars").cloned().unwrap_or_else(|| json!({})),
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// Finished well.
    Resolved,
    /// A node failed or an end node said so.
    Failed(String),
    /// Stopped by a timeout.
    Aborted(String),
    /// Waiting for a delay until this time (Unix ms).
    Waiting(u64),
}

/// What a driven run left behind.
#[derive(Debug)]
pub enum Outcome {
    /// It finished with this status.
    Finished(RunStatus),
    /// It waits for a delay; it is saved and holds no worker.
    Waiting {
        /// The record as saved.
        record: Box<ExecutionRecord>,
        /// The position after the delay node.
        state: RunState,
        /// When to wake (Unix ms).
        wake_at: u64,
    },
}

/// Builds the template variables of a run.
pub fn scope_for(
    workflow: &Workflow,
    record: &ExecutionRecord,
    input: &RunInput,
    state: &RunState,
) -> Scope {
    let mut scope = Scope::new();
    scope.set("trigger", &input.trigger);
    scope.set("vars", &input.vars);
    scope.set(
        "execution",
        &json!({"id": record.id, "workflow": record.workflow, "started_at": record.started_at}),
    );
    let secrets: serde_json::Map<String, Json> = workflow
        .secrets
        .iter()
        .map(|name| {
            (
                name.clone(),
                Json::String(std::env::var(name).unwrap_or_default()),
            )
        })
        .collect();
    scope.set("secrets", &Json::Object(secrets));
    for (k, v) in &state.results {
        scope.set_node(k, v);
    }
    for (item, index) in state.loop_scopes() {
        scope.push_loop(&item, index);
    }
    scope
}

/// A new execution record.
pub fn new_record(
    id: String,
    workflow: &Workflow,
    input: &RunInput,
    status: RunStatus,
) -> ExecutionRecord {
    let started_ms = now_millis();
    let mut trigger = input.trigger.clone();
    if let Some(Json::Object(headers)) = trigger.get_mut("headers") {
        hookflow_store::record::redact_headers(headers);
    }
    ExecutionRecord {
        id,
        workflow: workflow.id.clone(),
        version: workflow.version.clone(),
        status,
        started_at: millis_to_rfc3339(started_ms),
        finished_at: None,
        started_ms,
        trigger,
        jobs: Vec::new(),
        response: None,
        retry_of: None,
        error: None,
    }
}

/// One run in progress.
pub struct Run {
    /// The workflow version the run uses.
    pub workflow: Arc<Workflow>,
    /// The record being written.
    pub record: ExecutionRecord,
    /// The position.
    pub state: RunState,
    /// Template variables.
    pub scope: Scope,
    /// Where records go.
    pub store: Arc<dyn Store>,
    /// Shared services (HTTP client, request policy).
    pub env: Arc<crate::Env>,
    /// Save the position after each node (async runs).
    pub durable: bool,
    /// Cancellation.
    pub control: Arc<Control>,
    /// The whole-run deadline.
    pub deadline: Option<tokio::time::Instant>,
    /// Where a sync run's answer goes.
    pub responder: Option<Arc<Responder>>,
}

impl Run {
    /// Runs to the end (or to a delay) and writes the record.
    pub async fn drive(mut self) -> Outcome {
        let span = tracing::info_span!("run", execution_id = %self.record.id, workflow = %self.record.workflow);
        async move {
            self.record.status = RunStatus::Running;
            self.wake_waiting_jobs();
            self.save();
            let ending = self.steps().await;
            if let Ending::Waiting(wake_at) = ending {
                return self.wait(wake_at);
            }
            Outcome::Finished(self.finish(ending))
        }
        .instrument(span)
        .await
    }

    /// A run resumed after a delay: its waiting job is done.
    fn wake_waiting_jobs(&mut self) {
        let now = now_millis();
        for job in self
            .record
            .jobs
            .iter_mut()
            .filter(|j| j.status == JobStatus::Waiting)
        {
            job.status = JobStatus::Resolved;
            let started = hookflow_model::time::parse_rfc3339(&job.started_at).unwrap_or(now);
            job.duration_ms = now.saturating_sub(started);
        }
    }

    /// Saves the run as waiting; the caller schedules the wake-up.
    fn wait(mut self, wake_at: u64) -> Outcome {
        self.record.status = RunStatus::Waiting;
        tracing::info!(message = "Run waits.", until = %millis_to_rfc3339(wake_at));
        self.store.put(Write {
            record: self.record.clone(),
            pending: Some(Pending {
                status: RunStatus::Waiting,
                state: self.state.to_json(),
                wake_at: Some(wake_at),
            }),
            clear_pending: false,
            input: None,
        });
        Outcome::Waiting {
            record: Box::new(self.record),
            state: self.state,
            wake_at,
        }
    }

    /// Makes `loop.*` follow the loop frames.
    fn sync_loop_scope(&mut self) {
        self.scope.clear_loops();
        for (item, index) in self.state.loop_scopes() {
            self.scope.push_loop(&item, index);
        }
    }

    fn save(&self) {
        if !self.durable {
            return;
        }
        self.store.put(Write {
            record: self.record.clone(),
            pending: Some(Pending {
                status: RunStatus::Running,
                state: self.state.to_json(),
                wake_at: None,
            }),
            clear_pending: false,
            input: None,
        });
    }

    async fn steps(&mut self) -> Ending {
        let workflow = self.workflow.clone();
        // The position is saved just before the next node starts (so the
        // last node's save is the final record instead).
        let mut unsaved = false;
        loop {
            if self.control.is_cancelled() {
                return Ending::Aborted("timeout".into());
            }
            if self
                .deadline
                .is_some_and(|d| tokio::time::Instant::now() >= d)
            {
                return Ending::Aborted("timeout".into());
            }
            let (block, next) = match self.state.frames.last_mut() {
                None => return Ending::Resolved,
                Some(Frame::Block { block, next }) => (*block, *next),
                Some(Frame::Loop { body, items, next }) => {
                    // Between iterations: start the next one, or leave the loop.
                    if *next < items.len() {
                        *next += 1;
                        let body = *body;
                        self.state.frames.push(Frame::Block {
                            block: body,
                            next: 0,
                        });
                    } else {
                        self.state.frames.pop();
                    }
                    self.sync_loop_scope();
                    continue;
                }
            };
            let Some(&node_id) = workflow.blocks.get(block).and_then(|b| b.get(next)) else {
                self.state.frames.pop();
                if matches!(self.state.frames.last(), Some(Frame::Loop { .. })) {
                    self.sync_loop_scope();
                }
                continue;
            };
            if unsaved {
                self.save();
            }
            if let Some(Frame::Block { next, .. }) = self.state.frames.last_mut() {
                *next += 1;
            }
            let node = &workflow.nodes[node_id];
            let started_ms = now_millis();
            let clock = Instant::now();
            let outcome = {
                let cx = NodeCx {
                    workflow: &workflow,
                    scope: &self.scope,
                    execution_id: &self.record.id,
                    env: &self.env,
                };
                let work = nodes::run(node_id, node, &cx);
                tokio::select! {
                    outcome = work => outcome,
                    _ = self.control.cancelled() => return Ending::Aborted("timeout".into()),
                    _ = sleep_until_opt(self.deadline) => return Ending::Aborted("timeout".into()),
                }
            };
            let mut job = JobRecord {
                key: node.key.clone(),
                kind: node.type_name().to_string(),
                status: JobStatus::Resolved,
                result: Json::Null,
                error: None,
                started_at: millis_to_rfc3339(started_ms),
                duration_ms: u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX),
            };
            let mut ending = None;
            match outcome {
                Ok(Step::Next(result)) => job.result = result,
                Ok(Step::Enter(result, block)) => {
                    job.result = result;
                    if let Some(block) = block {
                        self.state.frames.push(Frame::Block { block, next: 0 });
                    }
                }
                Ok(Step::Loop { items, body }) => {
                    job.result = json!({"count": items.len()});
                    if !items.is_empty() {
                        self.state.frames.push(Frame::Loop {
                            body,
                            items,
                            next: 0,
                        });
                    }
                }
                Ok(Step::Wait { until_ms }) => {
                    job.status = JobStatus::Waiting;
                    job.result = json!({"until": millis_to_rfc3339(until_ms)});
                    ending = Some(if self.durable {
                        Ending::Waiting(until_ms)
                    } else {
                        Ending::Failed("a delay cannot run in a sync run".into())
                    });
                }
                Ok(Step::Respond(answer)) => {
                    if let Some(r) = &self.responder {
                        r.answer(answer);
                    }
                    ending = Some(Ending::Resolved);
                }
                Ok(Step::End { resolved, message }) => {
                    job.result = message.clone().map(Json::String).unwrap_or(Json::Null);
                    ending = Some(if resolved {
                        Ending::Resolved
                    } else {
                        Ending::Failed(message.unwrap_or_else(|| "ended by an end node".into()))
                    });
                }
                Err(error) => {
                    job.status = JobStatus::Failed;
                    job.error = Some(error.0.clone());
                    tracing::warn!(message = "Node failed.", node = node.key.as_deref().unwrap_or(node.type_name()), error = %error.0);
                    match node.on_error {
                        OnError::Continue => job.result = json!({"error": error.0}),
                        OnError::Fail => {
                            let at = node
                                .key
                                .as_deref()
                                .map(|k| format!("node `{k}`"))
                                .unwrap_or_else(|| format!("a `{}` node", node.type_name()));
                            ending = Some(Ending::Failed(format!("{at} failed: {}", error.0)));
                        }
                    }
                }
            }
            if let Some(key) = &node.key {
                self.state.results.insert(key.clone(), job.result.clone());
                self.scope.set_node(key, &job.result);
            }
            self.record.jobs.push(job);
            if let Some(ending) = ending {
                return ending;
            }
            unsaved = true;
        }
    }

    fn finish(mut self, ending: Ending) -> RunStatus {
        let (status, error) = match ending {
            Ending::Resolved => (RunStatus::Resolved, None),
            Ending::Failed(e) => (RunStatus::Failed, Some(e)),
            Ending::Aborted(e) => (RunStatus::Aborted, Some(e)),
            // Handled by `wait` before a run is finished.
            Ending::Waiting(_) => (RunStatus::Waiting, None),
        };
        if let Some(r) = &self.responder {
            // A sync run that ended without a response node answers with its status.
            r.answer(Answer::finished(
                status == RunStatus::Resolved,
                &self.record.id,
            ));
            self.record.response = r.sent().map(Answer::record);
        }
        self.record.status = status;
        self.record.error = error;
        self.record.finished_at = Some(millis_to_rfc3339(now_millis()));
        match &self.record.error {
            Some(error) => {
                tracing::info!(message = "Run finished.", status = status.as_str(), %error)
            }
            None => tracing::info!(message = "Run finished.", status = status.as_str()),
        }
        // Nobody waits for the final record to be durable: it is written behind.
        // A durable run removes its pending entry; a sync run never had one.
        self.store.put(Write {
            record: self.record,
            pending: None,
            clear_pending: self.durable,
            input: None,
        });
        status
    }
}
