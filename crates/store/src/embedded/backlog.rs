//! The writer's backlog: events submitted and not yet applied, bounded in
//! number ([`BACKLOG`]) and in bytes ([`BACKLOG_BYTES`]).
//!
//! The number alone bounded the memory only for small events: a record
//! holds its request's body (up to `max_body`) and results (up to 16 ×
//! `--max-result`), so 8,192 of them could hold gigabytes whenever the
//! disk was slower than the requests (900 KB bodies at 350 requests a
//! second grew the server by 300 MiB a second, to 3.6 GiB in 10 s;
//! docs/performance.md). Each job is weighed (its encoded bytes) as it is
//! submitted, and given back by the writer once the turn that took it is
//! applied, so what waits for the writer and what its turn holds stay under
//! both bounds.
//!
//! A job that finds no room: [`Backlog::try_send`] hands it back (a sync
//! run's record then waits as a task, [`super::room`]); [`Backlog::send`]
//! tries again every millisecond. Either is counted in `waiting` while it
//! waits, and while any waits the store is overloaded: new webhooks are
//! refused (503) before they add more.

use super::lanes::Lanes;
use super::layout::Id;
use super::writer::Job;
use crate::record::ExecutionRecord;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, SendError, TrySendError};
use std::sync::Arc;
use std::time::Duration;

/// Most jobs waiting for the writer. Events wait encoded (about a kilobyte
/// each for a small webhook's record): ~10 MiB of small ones; larger ones
/// meet [`BACKLOG_BYTES`] first.
pub(crate) const BACKLOG: usize = 8192;
/// Most bytes of jobs submitted and not yet applied. One job larger than
/// this is still taken when nothing else waits, so that it cannot wait for
/// ever.
pub(crate) const BACKLOG_BYTES: usize = 32 << 20;
/// How often a blocking send tries again. No room means a stalled or slow
/// disk; the tries cost nothing next to it.
const RETRY: Duration = Duration::from_millis(1);

/// A value alone in its cache line (128 bytes, as the in-flight slots:
/// two lines on CPUs that fetch lines in pairs): an atomic read by every
/// request is not slowed by a neighbour another thread writes (a small
/// allocation shares its line with whatever the allocator puts beside it,
/// often a request's own short-lived blocks).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Alone<T>(pub(crate) T);

impl<T> std::ops::Deref for Alone<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// What the senders and the writer share (alone in its lines: every sync
/// request takes room in it).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Held {
    /// Bytes submitted and not yet applied.
    bytes: AtomicUsize,
    /// Set once the writer has stopped (also by a panic): no room will come.
    stopped: AtomicBool,
    /// Finished sync runs' records, by thread ([`super::lanes`]).
    pub(crate) lanes: Lanes,
}

impl Held {
    /// The writer has applied jobs of `bytes` bytes.
    pub(crate) fn applied(&self, bytes: usize) {
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Takes room for `weight` bytes if there is room.
    fn take(&self, weight: usize) -> bool {
        weight == 0
            || self
                .bytes
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                    (held == 0 || held.saturating_add(weight) <= BACKLOG_BYTES)
                        .then(|| held.saturating_add(weight))
                })
                .is_ok()
    }
}

/// Marks the writer stopped when dropped, also when its thread panics.
pub(crate) struct Stopped(pub Arc<Held>);

impl Drop for Stopped {
    fn drop(&mut self) {
        self.0.stopped.store(true, Ordering::Release);
    }
}

/// The senders' side of the backlog.
pub(crate) struct Backlog {
    tx: mpsc::SyncSender<Job>,
    held: Arc<Held>,
    /// Jobs waiting for room; the store is overloaded while any waits.
    waiting: Arc<Alone<AtomicUsize>>,
}

impl Backlog {
    /// A backlog whose waits are counted in `waiting`; the writer's end.
    pub(crate) fn new(
        waiting: Arc<Alone<AtomicUsize>>,
    ) -> (Backlog, mpsc::Receiver<Job>, Arc<Held>) {
        let (tx, rx) = mpsc::sync_channel(BACKLOG);
        let held = Arc::new(Held::default());
        let backlog = Backlog {
            tx,
            held: held.clone(),
            waiting,
        };
        (backlog, rx, held)
    }

    /// Hands `job` to the writer if both bounds have room; back if not.
    pub(crate) fn try_send(&self, job: Job) -> Result<(), TrySendError<Job>> {
        if self.held.stopped.load(Ordering::Acquire) {
            return Err(TrySendError::Disconnected(job));
        }
        let weight = job.weight();
        if !self.held.take(weight) {
            return Err(TrySendError::Full(job));
        }
        self.tx
            .try_send(job)
            .inspect_err(|_| self.held.applied(weight))
    }

    /// Puts a finished sync run's record in this thread's lane (waking the
    /// writer for the first of a turn): its id, or `None` when it is to
    /// take the backlog's path ([`super::lanes`]).
    pub(crate) fn keep_finished(&self, record: &ExecutionRecord) -> Option<Id> {
        if self.held.stopped.load(Ordering::Acquire) {
            return None;
        }
        let (id, first) = self.held.lanes.keep(record)?;
        if first {
            // Full: the writer has a turn to take anyway. Gone: it stopped,
            // and records in lanes go with it, as those in its backlog do.
            let _ = self.tx.try_send(Job::Lanes);
        }
        Some(id)
    }

    /// Hands `job` to the writer, waiting (counted) for room; an error once
    /// the writer has stopped.
    pub(crate) fn send(&self, mut job: Job) -> Result<(), SendError<Job>> {
        let mut counted = None;
        loop {
            match self.try_send(job) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Disconnected(back)) => return Err(SendError(back)),
                Err(TrySendError::Full(back)) => {
                    job = back;
                    counted.get_or_insert_with(|| Counted::new(&self.waiting));
                    std::thread::sleep(RETRY);
                }
            }
        }
    }
}

/// One job waiting for room, counted until it is dropped.
pub(crate) struct Counted(Arc<Alone<AtomicUsize>>);

impl Counted {
    pub(crate) fn new(waiting: &Arc<Alone<AtomicUsize>>) -> Counted {
        waiting.fetch_add(1, Ordering::Relaxed);
        Counted(waiting.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_taken_up_to_the_bound_and_given_back() {
        let held = Held::default();
        assert!(held.take(BACKLOG_BYTES - 10));
        assert!(held.take(10), "exactly the bound");
        assert!(!held.take(1), "past it");
        assert!(held.take(0), "a job of no bytes always has room");
        held.applied(10);
        assert!(!held.take(11));
        assert!(held.take(10));
        held.applied(BACKLOG_BYTES);
        assert!(
            held.take(BACKLOG_BYTES * 3),
            "one job past the bound, alone"
        );
        assert!(!held.take(1), "and nothing beside it");
        held.applied(BACKLOG_BYTES * 3);
        assert!(held.take(1));
    }

    #[test]
    fn a_stopped_writer_ends_the_wait() {
        let waiting = Arc::new(Alone(AtomicUsize::new(0)));
        let (backlog, rx, held) = Backlog::new(waiting.clone());
        assert!(held.take(BACKLOG_BYTES), "no room left");
        let job = || {
            Job::Event(Box::new(super::super::writer::Event::Quarantine(vec![
                vec![0; 64],
            ])))
        };
        let sent = std::thread::scope(|s| {
            let sender = s.spawn(|| backlog.send(job()));
            // Bounded: the sender is seen waiting, then the writer stops.
            let start = std::time::Instant::now();
            while waiting.load(Ordering::Relaxed) == 0 {
                assert!(start.elapsed() < Duration::from_secs(10), "never waited");
                std::thread::sleep(Duration::from_millis(1));
            }
            drop(Stopped(held.clone()));
            sender.join().expect("the sender")
        });
        assert!(sent.is_err(), "the job is handed back");
        assert_eq!(waiting.load(Ordering::Relaxed), 0, "no longer counted");
        drop(rx);
    }
}
