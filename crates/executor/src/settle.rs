//! Async runs that settle before their acknowledgement.
//!
//! A workflow whose nodes need nothing outside the process (conditions,
//! switches, calculations, JSON queries, logs, ends) runs in microseconds.
//! Queuing its runs would write each twice (accepted, then finished) and
//! hand it to another thread; instead a new run goes to its end in the
//! request's task, and its finished record is written once, together with
//! its input and idempotency key, before the acknowledgement
//! ([`Store::accept_finished`](hookflow_store::Store::accept_finished)). The
//! caller gets the same answer, sent under the same promise and more: the
//! run is on disk, finished. The queue's capacity still decides whether it
//! is taken (503 when full), and a retry of such a run is queued as any.

use crate::intake::{deadline_of, not_taken, Fresh};
use crate::{AcceptError, Executor};
use futures_util::future::Either;
use futures_util::FutureExt;
use hookflow_metrics::WorkflowMetrics;
use hookflow_model::runtime::{NodeKind, Workflow};
use hookflow_model::time::Timestamp;
use hookflow_store::{Accepted, IdempotencyClaim, RunInput, RunStatus};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

/// Whether every node of `workflow` is of a kind that needs nothing outside
/// the process and ends at once: no request, delay, loop, parallel or
/// response node.
pub(crate) fn settles_at_once(workflow: &Workflow) -> bool {
    workflow.nodes.iter().all(|node| {
        matches!(
            node.kind,
            NodeKind::Condition { .. }
                | NodeKind::Switch { .. }
                | NodeKind::Calculation { .. }
                | NodeKind::JsonQuery { .. }
                | NodeKind::Log { .. }
                | NodeKind::End { .. }
        )
    })
}

impl Executor {
    /// Runs a new run of a workflow that [`settles_at_once`] to its end in
    /// this task, then writes it finished, durably. A run that panics is
    /// written failed, with the panic's message, as a queued run would be.
    /// The run is made here; the future runs it and writes it (it borrows
    /// the executor's store for the write).
    pub(crate) fn settle(
        &self,
        workflow: Arc<Workflow>,
        handles: Option<Arc<WorkflowMetrics>>,
        input: RunInput,
        fresh: Fresh,
        idempotency: Option<IdempotencyClaim>,
    ) -> Result<impl Future<Output = Result<(), AcceptError>> + '_, AcceptError> {
        let Fresh {
            record,
            state,
            scope,
            headers,
        } = fresh;
        // As for a queued run: refused when the queue is full, and the text
        // of the version the record names is stored first.
        let slot = self.queue.reserve()?;
        self.versions.keep(&workflow);
        let head = record.clone();
        let (keep, mut kept) = tokio::sync::oneshot::channel();
        let deadline = deadline_of(&workflow, head.started_ms);
        let mut run = self.run_of(workflow, handles, record, state, scope);
        run.header_scrubber = headers;
        run.durable = true;
        run.deadline = deadline;
        run.keep_record = Some(keep);
        // Combinators rather than an `async` block: a block would keep the
        // run's future it awaits beside the copy it captured (3.2 KiB
        // against 2).
        let store = &self.store;
        Ok(AssertUnwindSafe(run.drive())
            .catch_unwind()
            .then(move |driven| {
                let finished = match (driven, kept.try_recv()) {
                    (Ok(None), Ok(record)) => record,
                    // A bug: the run is failed, as a queued run that panics is.
                    (driven, _) => {
                        let why = match &driven {
                            Err(payload) => crate::panics::panic_message(&**payload),
                            Ok(_) => "the run stopped before its end",
                        };
                        tracing::error!(message = "A run did not settle; it is failed.", execution_id = %head.id, why = ?why);
                        let mut failed = head.clone();
                        failed.status = RunStatus::Failed;
                        failed.error = Some(format!("internal error (a bug in hookflow): {why}"));
                        failed.finished_at = Some(Timestamp::now());
                        failed
                    }
                };
                drop(slot);
                let accepted = Accepted {
                    record: head,
                    input,
                    idempotency,
                };
                if store.writes_when_called() {
                    // Handed to the store by this call, in the poll that
                    // finished the run: a caller that goes away now cancels
                    // nothing, so the write needs no task of its own.
                    Either::Left(store.accept_finished(accepted, finished).map(Ok))
                } else {
                    // In a task of its own, as a queued run's hand-off: a
                    // caller that goes away cancels nothing a store has
                    // begun to write.
                    let store = store.clone();
                    Either::Right(tokio::spawn(Box::pin(async move {
                        store.accept_finished(accepted, finished).await
                    })))
                }
            })
            .map(|written| match written {
                Ok(written) => written.map_err(not_taken),
                Err(e) => Err(AcceptError::Store(format!("the write failed: {e}"))),
            }))
    }
}
