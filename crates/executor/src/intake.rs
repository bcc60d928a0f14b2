//! Async runs: accepted (run here and stored finished when they
//! [settle](crate::settle), else stored and queued), retried, and run by the
//! workers.

use crate::queue::{NewRun, ReadyRun};
use crate::record::{bare_record, new_record};
use crate::scope::scope_copying;
use crate::{record, settle, AcceptError, Answer, Executor, RunInput, RunState, WorkflowMetrics};
use futures_util::future::Either;
use futures_util::FutureExt;
use hookflow_model::runtime::Workflow;
use hookflow_model::template::Scope;
use hookflow_store::{
    Accepted, ExecutionRecord, IdempotencyClaim, IdempotencyEntry, RunStatus, StoreError,
};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

/// The error of a store that did not take a new run.
pub(crate) fn not_taken(error: StoreError) -> AcceptError {
    match error {
        StoreError::KeyTaken(entry) => AcceptError::Duplicate(entry),
        e => AcceptError::Store(e.to_string()),
    }
}

/// When an async run started at `started_ms` must have ended.
pub(crate) fn deadline_of(workflow: &Workflow, started_ms: u64) -> Option<tokio::time::Instant> {
    workflow.timeout.map(|t| {
        let elapsed = hookflow_model::time::now_millis().saturating_sub(started_ms);
        tokio::time::Instant::from_std(hookflow_model::time::deadline_after(
            t.saturating_sub(std::time::Duration::from_millis(elapsed)),
        ))
    })
}

/// A new async run before it is stored: its record, its start, its
/// variables, and the scrubber of its request's header values.
pub(crate) struct Fresh {
    pub record: ExecutionRecord,
    pub state: RunState,
    pub scope: Scope,
    pub headers: Option<Arc<hookflow_model::scrub::Scrubber>>,
}

impl Executor {
    /// Stores an async run durably and queues it (a run of a workflow that
    /// needs nothing outside the process is run here and stored finished:
    /// [`settle`]); returns the execution id and the acknowledgement.
    /// Returns only after the run is on disk, together with its idempotency
    /// key (`key`, kept for `ttl`) when it has one.
    ///
    /// Not an `async fn`: the run is made here (a queued run's hand-off task
    /// started), and the future holds only what is waited on (an `async
    /// fn`'s future held the input, the record and the run beside the
    /// settling run's own future: 5 KiB, moved into the request's box).
    pub fn accept(
        &self,
        workflow: Arc<Workflow>,
        handles: Option<Arc<WorkflowMetrics>>,
        input: RunInput,
        key: Option<(String, std::time::Duration)>,
    ) -> impl Future<Output = Result<(String, Answer), AcceptError>> + '_ {
        // Combinators rather than an `async` block, which would keep the
        // write's future twice (captured, and awaited).
        match self.start_accept(workflow, handles, input, key) {
            Ok((id, ack, written)) => {
                Either::Left(written.map(move |written| written.map(|()| (id, ack))))
            }
            Err(e) => Either::Right(std::future::ready(Err(e))),
        }
    }

    /// [`Executor::accept`] up to the write: the run's id, its
    /// acknowledgement and the future of its write.
    fn start_accept(
        &self,
        workflow: Arc<Workflow>,
        handles: Option<Arc<WorkflowMetrics>>,
        input: RunInput,
        key: Option<(String, std::time::Duration)>,
    ) -> Result<
        (
            String,
            Answer,
            impl Future<Output = Result<(), AcceptError>> + '_,
        ),
        AcceptError,
    > {
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
        let mut stored =
            record::stored_response(ack.record(), &self.env.secrets.current(), &workflow);
        // The acknowledgement may quote a header the run will scrub.
        let headers = record::header_scrubber(&workflow, &input.trigger);
        if let Some(headers) = &headers {
            record::scrub_response(&mut stored, headers);
        }
        record.response = Some(stored);
        // Only a 2xx answer is remembered: after an error the sender's retry runs again.
        let remembered = (200..300).contains(&ack.status);
        let idempotency = key
            .filter(|_| remembered)
            .map(|(key, ttl)| IdempotencyClaim {
                workflow: workflow.id.clone(),
                key,
                entry: IdempotencyEntry {
                    execution_id: id.clone(),
                    expires_ms: hookflow_model::time::now_millis()
                        .saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)),
                    response: Some(ack.record()),
                },
            });
        let fresh = Fresh {
            record,
            state,
            scope,
            headers,
        };
        let written = if settle::settles_at_once(&workflow) {
            Either::Left(self.settle(workflow, handles, input, fresh, idempotency)?)
        } else {
            Either::Right(self.enqueue(workflow, handles, input, fresh, idempotency)?)
        };
        Ok((id, ack, written))
    }

    /// Writes a new async run durably, then hands it to the workers. Both
    /// happen in a task of their own, started here: a caller that goes away
    /// (a client that resets its connection) cancels neither, so a run on
    /// disk is never left behind until the next start. The future answers
    /// when the run is on disk.
    fn enqueue(
        &self,
        workflow: Arc<Workflow>,
        handles: Option<Arc<WorkflowMetrics>>,
        input: RunInput,
        fresh: Fresh,
        idempotency: Option<IdempotencyClaim>,
    ) -> Result<impl Future<Output = Result<(), AcceptError>>, AcceptError> {
        let Fresh {
            mut record,
            state,
            scope,
            headers,
        } = fresh;
        // The text of the version the record names is stored first.
        self.versions.keep(&workflow);
        let slot = self.queue.reserve()?;
        // The stored input holds the trigger context; the record needs no copy.
        record.trigger = None;
        let store = self.store.clone();
        let handles = handles.unwrap_or_else(|| self.env.metrics.workflow(&workflow));
        // Boxed, as a run's task is (queue.rs): moved by value otherwise.
        let handoff = tokio::spawn(Box::pin(async move {
            store
                .accept(Accepted {
                    record: record.clone(),
                    input,
                    idempotency,
                })
                .await
                .map_err(not_taken)?;
            slot.push(ReadyRun::New(Box::new(NewRun {
                record,
                state,
                scope,
                workflow,
                handles,
                headers,
                // After the accept committed, its lease with it.
                leased_at: std::time::Instant::now(),
            })));
            Ok(())
        }));
        Ok(async move {
            handoff
                .await
                .map_err(|e| AcceptError::Store(format!("the hand-off failed: {e}")))?
        })
    }

    /// Starts a new run of `workflow` with `input`, recorded as a retry of
    /// the run `retry_of`; returns the new run's id. A sync workflow runs in
    /// a task of its own (nobody waits for its answer; `answered` is told
    /// it); an async one is queued durably.
    pub async fn rerun(
        &self,
        workflow: Arc<Workflow>,
        input: RunInput,
        retry_of: &str,
        answered: Option<crate::Answered>,
    ) -> Result<String, AcceptError> {
        let new_id = uuid::Uuid::now_v7().to_string();
        self.versions.keep(&workflow);
        match workflow.mode {
            hookflow_model::def::Mode::Sync => {
                // Queued until one of the places of retried sync runs is free.
                let mut record = new_record(new_id.clone(), &workflow, &input, RunStatus::Queued);
                record.retry_of = Some(retry_of.to_string());
                // Announced (a shared store writes it): scrubbed as its
                // final record will be.
                let secrets = self.env.secrets.current();
                if let Some(trigger) = &mut record.trigger {
                    trigger.scrub(&secrets);
                }
                // Its id is sent to the caller before it finishes.
                self.store.announce(record.clone());
                self.shared_flush().await;
                let going = crate::detached::Going {
                    id: new_id.clone(),
                    workflow: workflow.clone(),
                    started_ms: record.started_ms,
                    retry_of: record.retry_of.clone(),
                };
                let exec = self.clone();
                let places = self.sync_retries.clone();
                self.detached.spawn(going, async move {
                    let _place = places.acquire_owned().await;
                    record.status = RunStatus::Running;
                    exec.store.announce(record.clone());
                    let (id, answer) = exec.run_sync_record(&workflow, None, input, record).await;
                    if let Some(answered) = answered {
                        answered(id, answer).await;
                    }
                });
            }
            hookflow_model::def::Mode::Async => {
                let mut record = new_record(new_id.clone(), &workflow, &input, RunStatus::Queued);
                record.retry_of = Some(retry_of.to_string());
                let state = RunState::start();
                let scope = scope_copying(&workflow, &record, &input, &state);
                let headers = record::header_scrubber(&workflow, &input.trigger);
                let fresh = Fresh {
                    record,
                    state,
                    scope,
                    headers,
                };
                self.enqueue(workflow, None, input, fresh, None)?.await?;
            }
        }
        Ok(new_id)
    }

    /// Runs a queued, resumed or woken run to its end (called by a worker).
    pub(crate) async fn execute(&self, item: ReadyRun) {
        let (id, workflow) = match &item {
            ReadyRun::New(new) => (
                new.record.id.clone(),
                Some((new.workflow.clone(), new.record.started_ms)),
            ),
            ReadyRun::Stored { id, .. } => (id.clone(), None),
        };
        let driven = AssertUnwindSafe(self.execute_unguarded(item))
            .catch_unwind()
            .await;
        if let Err(payload) = driven {
            let workflow = workflow.as_ref().map(|(w, started)| (&**w, *started));
            self.fail_panicked(&id, workflow, &*payload);
        }
    }

    async fn execute_unguarded(&self, item: ReadyRun) {
        if !self.still_ours(&item) {
            return;
        }
        let run = match item {
            ReadyRun::New(new) => {
                let NewRun {
                    record,
                    state,
                    scope,
                    workflow,
                    handles,
                    headers,
                    leased_at: _,
                } = *new;
                let mut run = self.run_of(workflow, Some(handles), record, state, scope);
                run.header_scrubber = headers;
                run
            }
            ReadyRun::Stored { id, leased_at } => match self.load(&id) {
                crate::recovery::Loaded::Run(run) => run,
                crate::recovery::Loaded::Nothing => return,
                crate::recovery::Loaded::Later => {
                    self.load_later(id, leased_at);
                    return;
                }
            },
        };
        let mut run = run;
        run.durable = true;
        run.deadline = deadline_of(&run.workflow, run.record.started_ms);
        let holding = self
            .store
            .shared()
            .then(|| self.held.hold(&run.record.id, run.control.clone()));
        let waiting = run.drive().await;
        drop(holding);
        if let Some(waiting) = waiting {
            // A waiting run is on disk before its worker moves on: a crash
            // does not make it wait again from the start.
            if let Err(error) = self.store.flush().await {
                tracing::error!(message = "Could not save a waiting run.", %error);
            }
            self.waiting_saved(waiting.wake_at);
        }
    }
}
