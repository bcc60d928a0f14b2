//! A sync run's record when the writer's backlog is full.
//!
//! The backlog is bounded (`writer::BACKLOG` events), and `finish` waits
//! for room in it: a blocking send, on the thread that called it. Called
//! from an HTTP worker, that held every connection of the worker while the
//! disk stalled, `/healthz` and the admin API included (a 2 s freeze of the
//! file system under W1 kept a health probe waiting 1.8 s;
//! docs/performance.md). [`SledStore::keep_when_room`] never blocks: when
//! the backlog is full it hands back a future that tries again every
//! millisecond until the writer has taken enough, so only the requests that
//! have a record to keep wait, and they wait as tasks. While one waits the
//! store is overloaded: new webhooks are refused (503, `Retry-After`)
//! before any run, so the records waiting are those of requests already
//! admitted, and memory stays bounded. The announced record (if any) stays
//! readable until the finished one is queued.

use super::layout::Id;
use super::overlay::Overlay;
use super::writer::Job;
use super::{finished_event, SledStore};
use crate::contract::BoxFuture;
use crate::record::ExecutionRecord;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

/// How often a record waiting for room tries again. A full backlog means
/// a stalled disk; the tries cost nothing next to it.
const RETRY: Duration = Duration::from_millis(1);

impl SledStore {
    /// `Store::keep_finished` for the embedded store.
    pub(super) fn keep_when_room(&self, record: ExecutionRecord) -> Option<BoxFuture<'static, ()>> {
        let (id, event) = match finished_event(record, false) {
            Ok(made) => made,
            Err(error) => {
                tracing::error!(message = "Could not write a run.", %error);
                return None;
            }
        };
        let Some(jobs) = &self.jobs else {
            tracing::error!(message = "The store's writer has stopped; a run was not written.");
            return None;
        };
        let mut job = try_submit(jobs, &self.overlay, id, Job::Event(Box::new(event)))?;
        // The wait owns what it needs (its run's driver may outlive this
        // borrow of the store), the writer's sender weakly: a store dropped
        // meanwhile ends its writer (dropping joins it) rather than waiting
        // for this record.
        let (jobs, overlay) = (Arc::downgrade(jobs), self.overlay.clone());
        // Counted while it waits (also if its task is dropped): the store
        // is overloaded meanwhile, so new webhooks are refused (503) rather
        // than add records that wait, and memory stays bounded by the
        // requests already admitted.
        let counted = Counted::new(&self.waiting);
        Some(Box::pin(async move {
            let _counted = counted;
            loop {
                tokio::time::sleep(RETRY).await;
                let Some(sender) = jobs.upgrade() else {
                    tracing::error!(message = "The store closed; a run was not written.");
                    return;
                };
                match try_submit(&sender, &overlay, id, job) {
                    Some(again) => job = again,
                    None => break,
                }
            }
            tracing::debug!(message = "A run's record waited for room in the store's queue.");
        }))
    }
}

/// One record waiting for room, counted until it is dropped.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(waiting: &Arc<AtomicUsize>) -> Counted {
        waiting.fetch_add(1, Ordering::Relaxed);
        Counted(waiting.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Hands run `id`'s finished record to the writer if its backlog has room
/// (the announced record then gives way); the job back if it has none.
fn try_submit(jobs: &SyncSender<Job>, overlay: &Overlay, id: Id, job: Job) -> Option<Job> {
    match jobs.try_send(job) {
        Ok(()) => {
            overlay.finished(&id);
            None
        }
        Err(TrySendError::Full(job)) => Some(job),
        Err(TrySendError::Disconnected(_)) => {
            tracing::error!(message = "The store's writer has stopped; a run was not written.");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::writer::BACKLOG as BOUND;
    use super::*;
    use crate::contract::Store;
    use crate::record::RunStatus;
    use hookflow_model::time::{now_millis, Timestamp};
    use std::sync::{mpsc, Mutex};

    /// A sync run's record, resolved.
    fn finished_record() -> ExecutionRecord {
        let mut record = super::super::tests::a_run().record;
        record.status = RunStatus::Resolved;
        record.finished_at = Some(Timestamp(now_millis()));
        record
    }

    /// With the writer held inside a sync (as by a stalled disk) and its
    /// backlog full, a sync run's record is not taken and the call returns
    /// at once with a future; once the writer goes on, the future resolves
    /// and the record reads back. (The blocking `finish` would hang this
    /// test's thread instead: the first call past the bound never returns.)
    #[tokio::test(flavor = "current_thread")]
    async fn a_record_waits_for_room_without_blocking_the_thread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SledStore::open(dir.path()).expect("open");
        // The writer's first sync waits for the gate (bounded).
        let (open_gate, gate) = mpsc::channel::<()>();
        let gate = Mutex::new(Some(gate));
        let (held_tx, held) = mpsc::channel::<()>();
        let held_tx = Mutex::new(held_tx);
        store.on_commit(Box::new(move |_| {
            let first = gate.lock().ok().and_then(|mut g| g.take());
            if let Some(gate) = first {
                let _ = held_tx.lock().map(|tx| tx.send(()));
                let _ = gate.recv_timeout(Duration::from_secs(30));
            }
        }));
        // Submitted by the call: the writer's turn syncs for it and is held.
        let flushed = store.flush();
        held.recv_timeout(Duration::from_secs(10))
            .expect("the writer is held in its sync");

        let mut taken = 0usize;
        let (id, wait) = loop {
            let record = finished_record();
            let id = record.id.clone();
            match store.keep_finished(record) {
                None if taken < BOUND => taken += 1,
                None => panic!("the backlog took more than its bound"),
                Some(wait) => break (id, wait),
            }
        };
        assert_eq!(taken, BOUND, "the backlog takes exactly its bound");
        assert!(store.overloaded(), "new webhooks are refused meanwhile");
        assert!(!store.healthy(), "and /healthz says so");
        // (Not read here: a read waits for the writer to catch up, behind
        // the full backlog.)

        open_gate.send(()).expect("the writer goes on");
        tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .expect("the record is taken once the writer goes on");
        flushed.await.expect("the first flush");
        store.flush().await.expect("a flush after the record");
        let kept = store.get(&id).expect("read").expect("the record is kept");
        assert_eq!(kept.status, RunStatus::Resolved);
        assert!(
            !store.overloaded() && store.healthy(),
            "no record waits now"
        );
    }
}
