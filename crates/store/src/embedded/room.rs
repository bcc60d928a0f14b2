//! A sync run's record when the writer's backlog is full.
//!
//! The backlog is bounded ([`super::backlog`]: in events and in bytes), and
//! `finish` waits for room in it on the thread that called it. Called from
//! an HTTP worker, that held every connection of the worker while the disk
//! stalled, `/healthz` and the admin API included (a 2 s freeze of the
//! file system under W1 kept a health probe waiting 1.8 s;
//! docs/performance.md). [`SledStore::keep_when_room`] never blocks: when
//! the backlog is full it hands back a future that tries again every
//! millisecond until the writer has taken enough, so only the requests that
//! have a record to keep wait, and they wait as tasks. While one waits the
//! store is overloaded: new webhooks are refused (503, `Retry-After`)
//! before any run, so the records waiting are those of requests already
//! admitted, and memory stays bounded. The announced record (if any) stays
//! readable until the finished one is queued.

use super::backlog::{Backlog, Counted};
use super::layout::Id;
use super::overlay::Overlay;
use super::writer::Job;
use super::{finished_event, SledStore};
use crate::contract::BoxFuture;
use crate::record::ExecutionRecord;
use std::sync::mpsc::TrySendError;
use std::sync::Arc;
use std::time::Duration;

/// How often a record waiting for room tries again. A full backlog means
/// a stalled disk; the tries cost nothing next to it.
const RETRY: Duration = Duration::from_millis(1);

impl SledStore {
    /// `Store::keep_finished` for the embedded store.
    pub(super) fn keep_when_room(&self, record: ExecutionRecord) -> Option<BoxFuture<'static, ()>> {
        let Some(jobs) = &self.jobs else {
            tracing::error!(message = "The store's writer has stopped; a run was not written.");
            return None;
        };
        // Most go into the thread's lane; what does not goes as an event.
        if let Some(id) = jobs.keep_finished(&record) {
            self.overlay.finished(&id);
            return None;
        }
        let (id, event) = match finished_event(record, false) {
            Ok(made) => made,
            Err(error) => {
                tracing::error!(message = "Could not write a run.", %error);
                return None;
            }
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

/// Hands run `id`'s finished record to the writer if its backlog has room
/// (the announced record then gives way); the job back if it has none.
fn try_submit(jobs: &Backlog, overlay: &Overlay, id: Id, job: Job) -> Option<Job> {
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
    use super::super::backlog::BACKLOG as BOUND;
    use super::super::lanes::LANE_BYTES;
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

    /// A sync run's record holding `bytes` bytes of error text.
    fn large_record(bytes: usize) -> ExecutionRecord {
        let mut record = finished_record();
        record.error = Some("e".repeat(bytes));
        record
    }

    /// Holds the writer inside its first sync (as a stalled disk does)
    /// until the sender returned is used or dropped; the flush it is held
    /// in resolves after.
    fn hold_the_writer(
        store: &SledStore,
    ) -> (mpsc::Sender<()>, BoxFuture<'_, crate::StoreResult<()>>) {
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
        (open_gate, flushed)
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
        let (open_gate, flushed) = hold_the_writer(&store);

        // This thread's lane takes records up to its bytes (the first wakes
        // the writer: one job in the backlog), then the backlog its bound.
        let mut entry = Vec::new();
        let sample = finished_record();
        let id = super::super::layout::id_bytes(&sample.id).expect("an id");
        super::super::pages::push_record(&mut entry, &id, &sample);
        let in_lane = LANE_BYTES.div_ceil(entry.len());
        let mut taken = 0usize;
        let (id, wait) = loop {
            let record = finished_record();
            let id = record.id.clone();
            match store.keep_finished(record) {
                None if taken < in_lane + BOUND - 1 => taken += 1,
                None => panic!("the lane and the backlog took more than their bounds"),
                Some(wait) => break (id, wait),
            }
        };
        assert_eq!(
            taken,
            in_lane + BOUND - 1,
            "the lane takes exactly its bytes, the backlog exactly its bound"
        );
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

    /// The backlog's bytes are bounded too: records of a megabyte each,
    /// with the writer held, are taken up to `BACKLOG_BYTES` (about 32 of
    /// them, not 8,192: gigabytes), and both kinds of send then wait, the
    /// store overloaded meanwhile. Once the writer goes on, every one of
    /// them reads back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_records_wait_past_the_backlogs_bytes() {
        use super::super::backlog::BACKLOG_BYTES;
        const MIB: usize = 1 << 20;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SledStore::open(dir.path()).expect("open");
        let (open_gate, flushed) = hold_the_writer(&store);

        let mut ids = Vec::new();
        let wait = loop {
            let record = large_record(MIB);
            ids.push(record.id.clone());
            match store.keep_finished(record) {
                None => assert!(ids.len() <= BACKLOG_BYTES / MIB, "taken past the bytes"),
                Some(wait) => break wait,
            }
        };
        let taken = ids.len() - 1;
        assert!(taken >= BACKLOG_BYTES / MIB / 2, "only {taken} taken");
        assert!(store.overloaded(), "new webhooks are refused meanwhile");

        // The blocking send waits too (on its own thread), counted.
        let blocked = large_record(MIB);
        ids.push(blocked.id.clone());
        std::thread::scope(|s| {
            let sender = s.spawn(|| store.finish(blocked, false));
            let start = std::time::Instant::now();
            while store.waiting.load(std::sync::atomic::Ordering::Relaxed) < 2 {
                assert!(start.elapsed() < Duration::from_secs(10), "never waited");
                std::thread::sleep(Duration::from_millis(1));
            }
            assert!(!sender.is_finished(), "a blocking send waits for room");
            open_gate.send(()).expect("the writer goes on");
            sender.join().expect("the blocking send returns");
        });
        tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .expect("the record is taken once the writer goes on");
        flushed.await.expect("the first flush");
        store.flush().await.expect("a flush after the records");
        for id in &ids {
            let kept = store.get(id).expect("read").expect("every record is kept");
            assert_eq!(kept.error.map(|e| e.len()), Some(MIB), "{id}");
        }
        assert!(!store.overloaded() && store.healthy(), "nothing waits now");
    }
}
