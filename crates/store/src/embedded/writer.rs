//! The writer thread: applies submitted events in order, many per turn, and
//! syncs the disk once per turn that someone waits on (group commit).
//!
//! Events are encoded by the thread that submits them; the writer only turns
//! them into keys ([`super::batch`]) and applies them.

use super::acks::{self, Waiter};
use super::backlog::{Held, Stopped};
use super::batch::Batch;
use super::hush::{Hush, Kind};
use super::lanes::LANES;
use super::layout::{id_bytes, Id};
use super::overlay::Overlay;
use super::queued::Queued;
use super::spare;
use crate::record::{pack, ExecutionRecord};
use crate::{StoreError, StoreResult};
use std::sync::{mpsc, Arc};

/// Most events applied in one turn.
pub(crate) const MAX_BATCH: usize = 4096;
/// How long the writer lets events nobody waits on gather before a turn; a
/// durable write cuts the wait short (it wakes the writer). Longer gathers
/// mean fewer, larger pages and fewer wake-ups: 4 ms against 1 ms cut 3–9 %
/// of a sync request's CPU in two paired runs.
pub(crate) const GATHER: std::time::Duration = std::time::Duration::from_millis(4);

/// An idempotency key and its entry, encoded.
#[derive(Debug)]
pub(crate) struct KeyWrite {
    /// The `k` key.
    pub key: Vec<u8>,
    /// The entry.
    pub entry: Vec<u8>,
    /// When it expires (Unix ms).
    pub expires_ms: u64,
}

/// What the finished page's entry header says of a run.
#[derive(Debug)]
pub(crate) struct FinishedHeader {
    pub started_ms: u64,
    pub finished_ms: u64,
    pub status: crate::record::RunStatus,
    pub workflow: String,
    /// The run it retries.
    pub retry_of: Option<Id>,
}

/// One event, encoded.
#[derive(Debug)]
pub(crate) enum Event {
    /// A new async run: head, input, its idempotency key and the run it
    /// retries.
    Accept {
        id: Id,
        head: Vec<u8>,
        input: Vec<u8>,
        key: Option<KeyWrite>,
        retry_of: Option<Id>,
    },
    /// A durable run's progress.
    Save {
        id: Id,
        state: Vec<u8>,
        wake_at: Option<u64>,
        jobs: Vec<(u32, Vec<u8>)>,
        frames: Vec<u8>,
        parts: Vec<(String, Vec<u8>)>,
    },
    /// A waiting run runs again.
    Woke { id: Id },
    /// A run finished: its final record, encoded; `durable` when it was
    /// accepted (its queue bit and own keys go).
    Finish {
        id: Id,
        header: FinishedHeader,
        record: Vec<u8>,
        durable: bool,
    },
    /// A new async run that finished before it was acknowledged: its
    /// finished record and input, and its idempotency key, in one turn.
    Settled {
        id: Id,
        header: FinishedHeader,
        record: Vec<u8>,
        input: Vec<u8>,
        key: Option<KeyWrite>,
    },
    /// Damaged entries to move aside.
    Quarantine(Vec<Vec<u8>>),
    /// A refused request to keep (in its own tree, never synced for itself).
    Refused(super::refused::Pending),
}

impl KeyWrite {
    fn weight(&self) -> usize {
        self.key.capacity() + self.entry.capacity()
    }
}

impl Event {
    /// The bytes it holds (what it weighs in the backlog's bound).
    fn weight(&self) -> usize {
        let key = |k: &Option<KeyWrite>| k.as_ref().map_or(0, KeyWrite::weight);
        match self {
            Event::Accept {
                head,
                input,
                key: k,
                ..
            } => head.capacity() + input.capacity() + key(k),
            Event::Save {
                state,
                jobs,
                frames,
                parts,
                ..
            } => state.capacity() + frames.capacity() + crate::saved_weight(jobs, parts),
            Event::Woke { .. } => 0,
            Event::Finish { header, record, .. } => header.workflow.capacity() + record.capacity(),
            Event::Settled {
                header,
                record,
                input,
                key: k,
                ..
            } => header.workflow.capacity() + record.capacity() + input.capacity() + key(k),
            Event::Quarantine(keys) => keys.iter().map(Vec::capacity).sum(),
            Event::Refused(pending) => pending.workflow.capacity() + pending.value.capacity(),
        }
    }
}

/// Work for the writer thread. Each kind is one pointer: the backlog's
/// slots are as large as a job, and every slot is touched as the ring goes
/// round (an event unboxed made a slot 144 bytes: 1.2 MiB resident; a
/// waiter beside the box, 32).
pub(crate) enum Job {
    /// An event nobody waits on.
    Event(Box<Event>),
    /// An event to answer once it is on disk.
    Durable(Box<(Event, Waiter)>),
    /// Answer once everything before it is on disk.
    Barrier(Box<Waiter>),
    /// Answer once everything before it is applied (readable), without a sync.
    Applied(Box<mpsc::Sender<()>>),
    /// Records wait in the lanes ([`super::lanes`]), nobody waits on them.
    Lanes,
}

impl Job {
    /// The bytes its event holds; a waiter alone weighs nothing.
    pub(crate) fn weight(&self) -> usize {
        match self {
            Job::Event(event) => event.weight(),
            Job::Durable(pair) => pair.0.weight(),
            Job::Barrier(_) | Job::Applied(_) | Job::Lanes => 0,
        }
    }
}

/// What the writer works on.
pub(crate) struct Writer {
    pub db: sled::Db,
    pub runs: sled::Tree,
    pub quarantine: sled::Tree,
    pub overlay: Arc<Overlay>,
    pub queued: Arc<std::sync::Mutex<Queued>>,
    /// Refused requests and their bound.
    pub refused: super::refused::Keeper,
    /// Told how long each sync of the disk took.
    pub on_commit: Arc<std::sync::OnceLock<crate::CommitHook>>,
    /// When the last write failed (Unix ms), 0 once a sync went well.
    pub failed_at: Arc<super::backlog::Alone<std::sync::atomic::AtomicU64>>,
    /// The backlog's bytes, given back as turns are applied.
    pub held: Arc<Held>,
    /// Fails the turns while set (a full disk, in tests).
    #[cfg(test)]
    pub fail_writes: Arc<std::sync::atomic::AtomicBool>,
}

/// How long after a failed write new webhooks are refused before one is
/// let through to try again.
pub(crate) const FAILED_PAUSE_MS: u64 = 5_000;

/// Applies writes one by one: cheaper than sled's `apply_batch`, which
/// rolls the log buffer twice per call.
fn apply_each(runs: &sled::Tree, ops: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> sled::Result<()> {
    for (k, v) in ops {
        match v {
            Some(v) => runs.insert(k, v)?,
            None => runs.remove(k)?,
        };
    }
    Ok(())
}

/// Applies writes atomically (all or none after a crash).
fn apply_atomic(runs: &sled::Tree, ops: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> sled::Result<()> {
    let mut batch = sled::Batch::default();
    for (k, v) in ops {
        match v {
            Some(v) => batch.insert(k, v),
            None => batch.remove(k),
        }
    }
    runs.apply_batch(batch)
}

impl Writer {
    /// Takes every job waiting, applies the events as one turn, syncs once
    /// if anyone waits for durability, then answers them. Ends when every
    /// sender is gone.
    pub fn run(mut self, rx: mpsc::Receiver<Job>) {
        // Page sequence numbers only need to differ between pages of one
        // second: start from the clock so that a restarted writer never
        // reuses one.
        let mut seq = now_micros();
        let mut hush = Hush::default();
        let mut lanes: [Vec<u8>; LANES] = Default::default();
        // Senders waiting for room give up once this is gone.
        let _stopped = Stopped(self.held.clone());
        while let Ok(first) = rx.recv() {
            if matches!(first, Job::Event(_) | Job::Lanes) {
                // Nobody waits on this one: let a turn gather, until a write
                // somebody waits for wakes the writer. (Returns early when
                // unparked, or spuriously: a shorter gather.)
                std::thread::park_timeout(GATHER);
            }
            let jobs = std::iter::once(first).chain(rx.try_iter().take(MAX_BATCH - 1));
            self.turn(jobs, &mut lanes, &mut seq, &mut hush);
        }
        // Every sender is gone: what the lanes still hold is written.
        self.turn(std::iter::empty(), &mut lanes, &mut seq, &mut hush);
    }

    /// Applies `jobs` and what the lanes hold as one turn, syncs once if
    /// anyone waits for durability, then answers them.
    fn turn(
        &mut self,
        jobs: impl Iterator<Item = Job>,
        lanes: &mut [Vec<u8>; LANES],
        seq: &mut u64,
        hush: &mut Hush,
    ) {
        let mut batch = Batch::default();
        let mut waiters = Vec::new();
        let mut readers = Vec::new();
        let mut refused = Vec::new();
        let mut taken = 0;
        for job in jobs {
            taken += job.weight();
            let (event, waiter) = match job {
                Job::Event(event) => (*event, None),
                Job::Durable(pair) => {
                    let (event, waiter) = *pair;
                    (event, Some(waiter))
                }
                Job::Barrier(tx) => {
                    waiters.push(*tx);
                    continue;
                }
                Job::Applied(tx) => {
                    readers.push(*tx);
                    continue;
                }
                Job::Lanes => continue,
            };
            let event = match event {
                Event::Refused(pending) => {
                    refused.push(pending);
                    continue;
                }
                event => event,
            };
            let added = batch.add(&self.runs, &mut super::lock(&self.queued), seq, event);
            if let Err(error) = added {
                hush.error(Kind::Run, &error);
            }
            if let Some(tx) = waiter {
                waiters.push(tx);
            }
        }
        // After the jobs: a reader or a flush among them sees every record
        // kept in a lane before it asked.
        self.held.lanes.take(lanes);
        for entries in lanes.iter() {
            if let Err(error) = batch.finished_entries(entries) {
                hush.error(Kind::Run, &error);
            }
        }
        let turn = batch.finish(seq);
        let mut result = if turn.atomic {
            apply_atomic(&self.runs, turn.ops)
        } else {
            apply_each(&self.runs, turn.ops)
        }
        .map_err(|e| e.to_string());
        if result.is_ok() {
            for (key, value) in &turn.quarantine {
                if let Err(error) = self.quarantine.insert(key, value.as_slice()) {
                    hush.error(Kind::Quarantine, &error);
                }
            }
        }
        for pending in refused {
            if let Err(error) = self.refused.insert(pending) {
                hush.error(Kind::Refused, &error);
            }
        }
        // The turn's events are in sled's own pages now (or failed):
        // their room goes back to the senders before the sync, which is
        // where a slow disk waits.
        self.held.applied(taken);
        if result.is_ok() && !waiters.is_empty() {
            let clock = std::time::Instant::now();
            result = self.db.flush().map(|_| ()).map_err(|e| e.to_string());
            if let Some(hook) = self.on_commit.get() {
                hook(clock.elapsed());
            }
        }
        // After the sync: a read never shows what a waiter was promised
        // before it is on disk (a run seen finished, then a crash, would
        // run again).
        for tx in readers {
            let _ = tx.send(());
        }
        #[cfg(test)]
        if self.fail_writes.load(std::sync::atomic::Ordering::SeqCst) {
            result = Err("No space left on device (os error 28)".into());
        }
        match &result {
            Err(error) => {
                hush.error(Kind::Turn, error);
                let now = hookflow_model::time::now_millis().max(1);
                self.failed_at
                    .store(now, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(()) if !waiters.is_empty() => {
                self.failed_at
                    .store(0, std::sync::atomic::Ordering::Relaxed);
                hush.recovered();
            }
            Ok(()) => {}
        }
        // A failed turn left the wake keys: the runs stay taken (they
        // were handed to the workers), hidden from the scans.
        if result.is_ok() {
            for id in &turn.woken {
                self.overlay.woke_written(id);
            }
        }
        acks::answer(waiters, &result);
    }
}

/// A finished record encoded, and what its page entry's header says of it.
pub(crate) fn finished_parts(record: ExecutionRecord) -> StoreResult<(FinishedHeader, Vec<u8>)> {
    let bytes = spare::fitted(pack::record(spare::take(), &record));
    let header = FinishedHeader {
        started_ms: record.started_ms,
        finished_ms: record
            .finished_at
            .map_or_else(hookflow_model::time::now_millis, |t| t.millis()),
        status: record.status,
        retry_of: record.retry_of.as_deref().and_then(id_bytes),
        workflow: record.workflow,
    };
    Ok((header, bytes))
}

/// A finished run's event and its id (the overlay left as it is).
pub(crate) fn finished_event(record: ExecutionRecord, durable: bool) -> StoreResult<(Id, Event)> {
    let id = id_of_record(&record.id)?;
    let (header, record) = finished_parts(record)?;
    let event = Event::Finish {
        id,
        header,
        record,
        durable,
    };
    Ok((id, event))
}

pub(crate) fn id_of_record(id: &str) -> StoreResult<Id> {
    id_bytes(id).ok_or_else(|| StoreError::Db(format!("invalid execution id {id}")))
}

pub(crate) fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    /// A slot of the writer's backlog is a pointer and the kind.
    #[test]
    fn a_job_is_two_words() {
        assert_eq!(std::mem::size_of::<super::Job>(), 16);
    }
}
