//! The interpreter: steps a run through its workflow one node at a time,
//! saving what changed after each request node when the run is durable.

mod counted;
mod finish;
mod parallel;
mod running;
mod start;

use crate::nodes::Step;
use crate::responder::{Control, Responder};
use crate::state::{
    runnable_stacks, stack_at, stack_at_mut, Branch, BranchOutcome, Frame, RunState,
};
use hookflow_model::def::OnError;
use hookflow_model::runtime::Workflow;
use hookflow_model::runtime::{DelayWait, NodeId};
use hookflow_model::template::Scope;
use hookflow_model::time::{millis_to_rfc3339, Timestamp};
use hookflow_store::{ExecutionRecord, JobRecord, JobStatus, RunStatus, Saved, Store};
use running::{any_finished, Done, Running, RunningNode};
use serde_json::{json, Value as Json};
use std::collections::BTreeSet;
use std::sync::Arc;
use tracing::Instrument;

/// What a stack does next.
enum Advance {
    /// Run this node.
    Node(NodeId),
    /// The stack is empty.
    Done,
    /// The stack waits for a parallel frame's branches.
    Parallel,
}

fn node_failure(node: &hookflow_model::Node, error: &str) -> String {
    let at = node
        .key
        .as_deref()
        .map(|k| format!("node `{k}`"))
        .unwrap_or_else(|| format!("a `{}` node", node.type_name()));
    format!("{at} failed: {error}")
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// How the interpreter's steps ended.
#[derive(Debug)]
enum Ending {
    /// Finished well.
    Resolved,
    /// A node failed or an end node said so.
    Failed(String),
    /// Stopped by a timeout.
    Aborted(String),
    /// Waiting for a delay until this time (Unix ms).
    Waiting(u64),
}

/// A run that stopped at a delay: it is saved and holds no worker; it is
/// read back from the store when it wakes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Waiting {
    /// When it wakes (Unix ms).
    pub wake_at: u64,
}

/// What changed since the last save: a save writes only this.
#[derive(Debug, Default)]
pub struct Unsaved {
    /// Jobs below this index were saved.
    saved_jobs: usize,
    /// Saved jobs changed since (a parallel node decided, a delay woke).
    changed_jobs: BTreeSet<usize>,
    /// Node results set since.
    results: BTreeSet<String>,
    /// Loops started since (their item lists).
    lists: Vec<u32>,
}

impl Unsaved {
    /// The job at `index` changed after it was kept.
    fn changed(&mut self, index: usize) {
        self.changed_jobs.insert(index);
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
    /// Save the position after request nodes (async runs).
    pub durable: bool,
    /// Also save before every node (tests that resume a run from every
    /// position it can have).
    pub save_every_node: bool,
    /// A run without a server (`hookflow run`/`test`): delays do not wait.
    pub offline: bool,
    /// Cancellation.
    pub control: Arc<Control>,
    /// The whole-run deadline.
    pub deadline: Option<tokio::time::Instant>,
    /// Where a sync run's answer goes.
    pub responder: Option<Arc<Responder>>,
    /// What the next save writes.
    pub unsaved: Unsaved,
    /// Where the run and its request node tries are counted (none in
    /// unit tests of the interpreter).
    pub metrics: Option<Arc<hookflow_metrics::WorkflowMetrics>>,
    /// Where the final record goes instead of the store (a run settled
    /// before its acknowledgement: `crate::settle`).
    pub keep_record: Option<tokio::sync::oneshot::Sender<ExecutionRecord>>,
    /// The values of the request's secret-bearing headers, when the
    /// workflow can copy them (`crate::record::header_scrubber`): scrubbed
    /// from its record and log lines.
    pub header_scrubber: Option<Arc<hookflow_model::scrub::Scrubber>>,
    /// The bytes of job results the record holds (`crate::record::BUDGET`).
    pub kept: usize,
    /// What its nodes are handed, made at the first node.
    handed: Option<Arc<start::Handed>>,
}

impl Run {
    /// A run of `workflow` from `state`: not durable, no deadline, no
    /// responder. Every job already in `record` counts as saved.
    pub fn new(
        workflow: Arc<Workflow>,
        record: ExecutionRecord,
        state: RunState,
        scope: Scope,
        store: Arc<dyn Store>,
        env: Arc<crate::Env>,
    ) -> Run {
        let unsaved = Unsaved {
            saved_jobs: record.jobs.len(),
            ..Unsaved::default()
        };
        let kept = record
            .jobs
            .iter()
            .map(JobRecord::kept_size)
            .fold(0, usize::saturating_add);
        Run {
            workflow,
            record,
            state,
            scope,
            store,
            env,
            durable: false,
            save_every_node: false,
            offline: false,
            control: Arc::new(Control::default()),
            deadline: None,
            responder: None,
            unsaved,
            metrics: None,
            keep_record: None,
            header_scrubber: None,
            kept,
            handed: None,
        }
    }

    /// Runs to the end and writes the record; `Some` when it stopped at a delay.
    ///
    /// Not an `async fn`: its future would hold the run twice, as its
    /// argument and inside the instrumented block (2.5 KiB against 1.2).
    /// Boxed where it is made: the future is copied once, into its box,
    /// rather than at each wrapper (span, unwind guard) and again into a
    /// box or a task by the caller (4 KiB copied a sync request before).
    pub fn drive(
        self: Box<Self>,
    ) -> tracing::instrument::Instrumented<
        std::pin::Pin<Box<impl std::future::Future<Output = Option<Waiting>> + Send>>,
    > {
        let span = tracing::info_span!("run", execution_id = %self.record.id, workflow = %self.record.workflow);
        // The run stays in its box: the future holds a pointer, not the
        // run's 688 bytes, and the run is not moved again to finish.
        Box::pin(async move {
            let mut driven = counted::Driven::new(self);
            let ending = {
                let run = driven.run()?;
                run.record.status = RunStatus::Running;
                run.wake_waiting_jobs();
                run.steps().await
            };
            let run = driven.done()?;
            if run.control.is_lost() {
                // Another instance has the run: this one writes nothing more.
                tracing::warn!(message = "Stopped a run another instance took over (this instance's lease on it ran out).");
                return None;
            }
            let (status, error) = match ending {
                Ending::Resolved => (RunStatus::Resolved, None),
                Ending::Failed(e) => (RunStatus::Failed, Some(e)),
                Ending::Aborted(e) => (RunStatus::Aborted, Some(e)),
                Ending::Waiting(wake_at) => return Some(run.wait(wake_at)),
            };
            if let Some(write) = run.finish(status, error) {
                write.write().await;
            }
            None
        })
        .instrument(span)
    }

    /// Saves what changed since the last save (durable runs).
    fn save(&mut self) {
        if !self.durable || self.control.is_lost() {
            return;
        }
        let saved = self.saved(RunStatus::Running, None);
        self.store.save(&self.record.id, saved);
    }

    /// The delta since the last save; from now on it counts as saved.
    fn saved(&mut self, status: RunStatus, wake_at: Option<u64>) -> Saved {
        let unsaved = std::mem::take(&mut self.unsaved);
        let jobs = unsaved
            .changed_jobs
            .iter()
            .copied()
            .filter(|i| *i < unsaved.saved_jobs)
            .chain(unsaved.saved_jobs..self.record.jobs.len())
            .filter_map(|i| self.record.jobs.get(i).map(|j| (i, j.clone())))
            .collect();
        self.unsaved.saved_jobs = self.record.jobs.len();
        Saved {
            status,
            wake_at,
            jobs,
            position: self.state.position(&unsaved.results, &unsaved.lists),
        }
    }

    /// Keeps a job in the record, scrubbed and its result cut down to
    /// `--max-result`, dropped once the record's results reach their
    /// budget (the run itself goes on with the whole value).
    fn push_job(&mut self, mut job: JobRecord) {
        let result = std::mem::take(&mut job.result);
        let headers = self.header_scrubber.as_deref();
        crate::record::keep_job(&mut job, result, &self.env, &self.workflow, headers);
        self.kept = crate::record::within_budget(&mut job, self.kept, self.env.max_result);
        self.record.jobs.push(job);
    }

    /// Moves the stack at `path` to its next node: leaves finished blocks,
    /// starts loop iterations. Does not start the node.
    fn advance(&mut self, path: &[(usize, usize)]) -> Advance {
        let workflow = &self.workflow;
        let Some(stack) = stack_at_mut(&mut self.state.frames, path) else {
            return Advance::Done;
        };
        loop {
            match stack.last_mut() {
                None => return Advance::Done,
                Some(Frame::Block { block, next }) => {
                    match workflow.blocks.get(*block).and_then(|b| b.get(*next)) {
                        Some(&node) => return Advance::Node(node),
                        None => {
                            stack.pop();
                        }
                    }
                }
                Some(Frame::Loop {
                    body, items, next, ..
                }) => {
                    if *next < items.len() {
                        *next += 1;
                        let body = *body;
                        stack.push(Frame::Block {
                            block: body,
                            next: 0,
                        });
                    } else {
                        stack.pop();
                    }
                }
                Some(Frame::Parallel { .. }) => return Advance::Parallel,
            }
        }
    }

    async fn steps(&mut self) -> Ending {
        let mut running = Running::new();
        // The position is saved as soon as a node that acts outside the run
        // (a request) finishes, so that a crash never sends a finished request
        // again; a node running at a crash runs again (at least once). Other
        // nodes only compute from the run's own data: after a crash they are
        // recomputed from the last save with the same results, so a run made
        // only of them costs no writes between its queueing and its end.
        // (`save_every_node`, for tests, also saves before every node.)
        let mut changed = true;
        // One set of stacks for all the steps (one made per step was an allocation each).
        let mut stacks = crate::state::Stacks::new();
        loop {
            // Nodes that compute finish at their first poll: a long chain of
            // them (a loop of thousands) never gave the task back, so a sync
            // run's timeout, a timer polled beside this future, could not
            // fire until the run ended. Every so many steps the task yields.
            tokio::task::consume_budget().await;
            if self.control.is_cancelled()
                || self
                    .deadline
                    .is_some_and(|d| tokio::time::Instant::now() >= d)
            {
                self.cancel_all(&mut running);
                return Ending::Aborted("timeout".into());
            }
            // Start a node on every stack that has none running.
            stacks.clear();
            runnable_stacks(&self.state.frames, &mut Vec::new(), &mut stacks);
            let mut progressed = false;
            for path in stacks.drain(..) {
                if running.iter().any(|r| r.path == path) {
                    continue;
                }
                match self.advance(&path) {
                    Advance::Node(node_id) => {
                        if changed && self.save_every_node {
                            self.save();
                            changed = false;
                        }
                        running.push(self.start(path, node_id));
                    }
                    Advance::Done if path.is_empty() => return Ending::Resolved,
                    Advance::Done => {
                        progressed = true;
                        if let Some(ending) =
                            self.branch_ended(&path, BranchOutcome::Resolved, &mut running)
                        {
                            return ending;
                        }
                        break;
                    }
                    Advance::Parallel => {
                        // A parallel frame whose branches were all decided
                        // before a restart: settle it now.
                        progressed = true;
                        let mut parallel = path.clone();
                        let top = stack_at(&self.state.frames, &path)
                            .map(|s| s.len().saturating_sub(1))
                            .unwrap_or(0);
                        parallel.push((top, 0));
                        if let Some(ending) = self.decide(&parallel, &mut running) {
                            return ending;
                        }
                        break;
                    }
                }
            }
            if progressed {
                continue;
            }
            if running.is_empty() {
                return Ending::Failed("the run has nothing left to run but did not finish".into());
            }
            // Biased: a node that finished at its first poll (all but
            // requests) is taken without setting up the other branches.
            let (index, outcome) = tokio::select! {
                biased;
                done = any_finished(&mut running, |id, scope, passes| self.compute(id, scope, passes)) => done,
                _ = self.control.cancelled() => continue,
                _ = sleep_until_opt(self.deadline) => continue,
            };
            let done = running.swap_remove(index);
            let acted = self.workflow.nodes[done.node_id].acts_outside();
            if let Some(ending) = self.apply(done, outcome, &mut running) {
                self.cancel_all(&mut running);
                return ending;
            }
            changed = true;
            if acted {
                // On disk before the next node starts: a node that acted
                // outside (a request) is not sent again after a crash.
                self.save();
                changed = false;
                if self.durable && !self.control.is_lost() {
                    if let Err(error) = self.store.flush().await {
                        tracing::error!(message = "Could not write a run's progress to disk.", %error);
                    }
                }
            }
        }
    }

    /// Records the jobs of nodes still running as cancelled and drops them.
    fn cancel_all(&mut self, running: &mut Running) {
        for r in running.drain(..) {
            let job = self.job_of(&r, JobStatus::Cancelled);
            self.push_job(job);
        }
    }

    fn job_of(&self, r: &RunningNode, status: JobStatus) -> JobRecord {
        let node = &self.workflow.nodes[r.node_id];
        JobRecord {
            key: node.key.clone(),
            kind: node.type_name().into(),
            status,
            result: Json::Null,
            error: None,
            started_at: Timestamp(r.started_ms),
            duration_ms: u64::try_from(r.clock.elapsed().as_millis()).unwrap_or(u64::MAX),
            truncated: false,
            tries: running::cut_off(r.tries.as_ref()),
        }
    }

    fn set_result(&mut self, node_id: NodeId, result: &Json) {
        if let Some(key) = &self.workflow.nodes[node_id].key {
            // Kept for a durable run's saves only: templates read results
            // from the scope, and a run is made durable before it starts.
            if self.durable {
                self.state.results.insert(key.clone(), result.clone());
                self.unsaved.results.insert(key.clone());
            }
            if self.workflow.templates.reads("nodes") {
                self.scope.set_node(key, result);
            }
        }
    }

    /// Applies a finished node to its stack; returns an ending for the whole run.
    fn apply(
        &mut self,
        done: RunningNode,
        (outcome, tries): Done,
        running: &mut Running,
    ) -> Option<Ending> {
        let node_id = done.node_id;
        let path = done.path.clone();
        let mut job = self.job_of(&done, JobStatus::Resolved);
        job.tries = tries;
        let node = &self.workflow.nodes[node_id];
        // The node is done: its stack moves past it.
        let stack = stack_at_mut(&mut self.state.frames, &path)?;
        if let Some(Frame::Block { next, .. }) = stack.last_mut() {
            *next += 1;
        }
        let mut ending = None;
        let mut failure = None;
        match outcome {
            Ok(Step::Next(result)) => job.result = result,
            Ok(Step::Enter(result, block)) => {
                job.result = result;
                if let Some(block) = block {
                    stack.push(Frame::Block { block, next: 0 });
                }
            }
            Ok(Step::Loop { items, body }) => {
                job.result = json!({"count": items.len()});
                if !items.is_empty() {
                    // Its items are saved once, with the next position.
                    let list = self.state.next_list;
                    self.state.next_list += 1;
                    if self.durable {
                        self.unsaved.lists.push(list);
                    }
                    stack.push(Frame::Loop {
                        body,
                        list,
                        items: Arc::new(items),
                        next: 0,
                    });
                }
            }
            Ok(Step::Parallel { branches, mode }) => {
                job.status = JobStatus::Running;
                let branches: Vec<Branch> = branches
                    .into_iter()
                    .map(|b| Branch {
                        frames: vec![Frame::Block { block: b, next: 0 }],
                        outcome: None,
                    })
                    .collect();
                let job_index = self.record.jobs.len();
                let frame_index = stack.len();
                let empty = branches.is_empty();
                stack.push(Frame::Parallel {
                    node: node_id,
                    job: job_index,
                    mode,
                    branches,
                });
                self.push_job(job);
                if empty {
                    let mut p = path.clone();
                    p.push((frame_index, 0));
                    return self.decide(&p, running);
                }
                return None;
            }
            Ok(Step::Wait { until_ms }) => {
                // Null as a variable (SPEC §3); while it waits, its job shows
                // when it wakes.
                job.status = JobStatus::Resolved;
                if !self.offline {
                    job.status = JobStatus::Waiting;
                    job.result = json!({"until": millis_to_rfc3339(until_ms)});
                }
                ending = if self.offline {
                    None
                } else {
                    Some(
                        match DelayWait::placement(self.workflow.mode, !path.is_empty()) {
                            Ok(()) => Ending::Waiting(until_ms),
                            Err(rule) => Ending::Failed(rule.into()),
                        },
                    )
                };
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
                let shown = crate::record::scrubbed(self.header_scrubber.as_deref(), &error.0);
                tracing::warn!(message = "Node failed.", node = node.key.as_deref().unwrap_or(node.type_name()), error = ?shown);
                match node.on_error {
                    OnError::Continue => job.result = json!({"error": error.0}),
                    OnError::Fail => failure = Some(node_failure(node, &error.0)),
                }
            }
        }
        let variable = match job.status {
            JobStatus::Waiting => &Json::Null,
            _ => &job.result,
        };
        self.set_result(node_id, variable);
        self.push_job(job);
        if ending.is_some() {
            return ending;
        }
        match failure {
            Some(error) => self.stack_failed(&path, error, running),
            None => None,
        }
    }
}
