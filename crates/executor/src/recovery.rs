//! Runs that come back from the store: those left queued or running by the
//! last process (resumed at start, a page at a time as the queue has room),
//! and waiting runs (one timer over the store's wake-time index, not a task
//! per run: a waiting run costs disk, not memory). With a store shared by
//! several instances, runs are claimed instead: those whose lease ran out
//! (their instance died) and waiting runs that are due, by a short poll.

use crate::queue::ReadyRun;
use crate::run::Run;
use crate::scope::scope_for;
use crate::state::RunState;
use crate::{AcceptError, Executor};
use hookflow_model::time::{now_millis, Timestamp};
use hookflow_store::{ExecutionRecord, RunStatus};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Runs read from the store per call.
const PAGE: usize = 256;
/// The longest the timer sleeps without looking at the store again.
const LONGEST_SLEEP: Duration = Duration::from_secs(60);
/// How often an instance of a shared store looks for runs to take over
/// and for waiting runs that other instances saved (a short poll: no
/// notifications on the hot path).
const SHARED_POLL: Duration = Duration::from_secs(1);
/// How long the resume feeder waits for a place in a full queue.
const FULL_QUEUE_PAUSE: Duration = Duration::from_millis(20);
/// How long a run whose read failed waits before it is read again.
const READ_AGAIN: Duration = Duration::from_secs(1);

/// What reading a run to resume gave.
pub(crate) enum Loaded {
    /// Ready to drive.
    Run(Box<Run>),
    /// Nothing to run: it finished meanwhile, or it cannot run and was failed.
    Nothing,
    /// The store did not answer: read it again later. The run is still this
    /// instance's (claimed, its lease renewed): dropped here, it would stay
    /// claimed and never run until a restart.
    Later,
}

impl Executor {
    /// Starts the workers, resumes the runs left queued or running on disk
    /// (returns how many) and starts the timer of waiting runs.
    pub fn start(&self) -> Result<usize, String> {
        self.queue.start(self.clone());
        if self.store.shared() {
            // Several instances share the store: runs are claimed, those of
            // a dead instance once their lease ran out, by whoever is free.
            let count = self.claim_expired();
            if count > 0 {
                tracing::info!(message = "Took over runs whose lease ran out.", count);
            }
            tokio::spawn(self.clone().take_over());
            tokio::spawn(self.clone().wake_waiting());
            return Ok(count);
        }
        // Runs accepted from now on are queued by their request: resume only
        // the older ones (ids are time-ordered).
        let boundary = uuid::Uuid::now_v7().to_string();
        let mut count = 0usize;
        let mut after: Option<String> = None;
        loop {
            let ids = self
                .store
                .unfinished(after.as_deref(), PAGE)
                .map_err(|e| e.to_string())?;
            let Some(last) = ids.last().cloned() else {
                break;
            };
            count += ids.iter().filter(|id| **id < boundary).count();
            after = Some(last);
        }
        if count > 0 {
            tracing::info!(message = "Resuming runs left on disk.", count);
        }
        tokio::spawn(self.clone().after_start(boundary, count > 0));
        Ok(count)
    }

    /// Counts the runs the last process left waiting, then resumes the
    /// runs it left queued and starts the timer of waiting runs. A run that
    /// reaches a delay counts itself: the count reads the store before any
    /// resumed run can, and leaves out the runs of this process (ids past
    /// `boundary`), which new requests may put to wait meanwhile. Off the
    /// start: the count reads every waiting run.
    async fn after_start(self, boundary: String, resume: bool) {
        let store = self.store.clone();
        let left = boundary.clone();
        let counted = tokio::task::spawn_blocking(move || {
            store
                .due(u64::MAX, usize::MAX)
                .map(|ids| ids.iter().filter(|id| **id < left).count())
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        match counted {
            Ok(n) => {
                let n = i64::try_from(n).unwrap_or(i64::MAX);
                self.env.metrics.runs().waiting.inc_by(n);
            }
            Err(error) => tracing::error!(message = "Could not count the waiting runs.", %error),
        }
        if resume {
            tokio::spawn(self.clone().feed_resumed(boundary));
        }
        self.wake_waiting().await;
    }

    /// Queues the runs left on disk, oldest first, as places free up.
    async fn feed_resumed(self, boundary: String) {
        let mut after: Option<String> = None;
        loop {
            let ids = match self.store.unfinished(after.as_deref(), PAGE) {
                Ok(ids) => ids,
                Err(error) => {
                    tracing::error!(message = "Could not read the runs to resume.", %error);
                    return;
                }
            };
            let Some(last) = ids.last().cloned() else {
                return;
            };
            for id in ids {
                if id >= boundary || !self.queue_stored(id, Instant::now()).await {
                    return;
                }
            }
            after = Some(last);
        }
    }

    /// Claims runs whose lease ran out, as many as the queue has room for;
    /// returns how many were queued.
    fn claim_expired(&self) -> usize {
        let mut slots = Vec::new();
        while slots.len() < PAGE {
            match self.queue.reserve() {
                Ok(slot) => slots.push(slot),
                Err(_) => break,
            }
        }
        if slots.is_empty() {
            return 0;
        }
        let ids = match self.store.claim_expired(slots.len()) {
            Ok(ids) => ids,
            Err(error) => {
                tracing::error!(message = "Could not claim runs whose lease ran out.", %error);
                return 0;
            }
        };
        let count = ids.len();
        for (id, slot) in ids.into_iter().zip(slots) {
            tracing::info!(message = "Taking over a run.", execution_id = %id);
            slot.push(ReadyRun::Stored {
                id,
                leased_at: Instant::now(),
            });
        }
        count
    }

    /// Whether a queued run is still this instance's to start. On a shared
    /// store a run waits in this queue under a lease taken when it was
    /// queued; if it waited long enough for that lease to have run out (the
    /// process was paused, the database away), another instance may have
    /// claimed, run and finished it meanwhile: the store is asked. A run
    /// that waited less than a quarter of the lease is surely still held
    /// (no round trip). When the store cannot tell, the run is read again
    /// later and asked about again.
    pub(crate) fn still_ours(&self, item: &ReadyRun) -> bool {
        let Some(lease) = self.store.lease() else {
            return true;
        };
        let (id, leased_at) = match item {
            ReadyRun::New(new) => (&new.record.id, new.leased_at),
            ReadyRun::Stored { id, leased_at } => (id, *leased_at),
        };
        if leased_at.elapsed() < lease / 4 {
            return true;
        }
        match self.store.still_held(vec![id.clone()]) {
            Ok(held) if held.is_empty() => {
                tracing::warn!(message = "A queued run was taken over by another instance while it waited here; not starting it.", execution_id = %id);
                false
            }
            Ok(_) => true,
            Err(error) => {
                tracing::warn!(message = "Could not check that a queued run is still this instance's; reading it again later.", execution_id = %id, %error);
                self.load_later(id.clone(), leased_at);
                false
            }
        }
    }

    /// Stops the runs this instance drives that another instance took over.
    fn stop_lost(&self) {
        let ids = self.held.ids();
        if ids.is_empty() {
            return;
        }
        let kept: std::collections::HashSet<String> = match self.store.still_held(ids.clone()) {
            Ok(kept) => kept.into_iter().collect(),
            Err(error) => {
                tracing::warn!(message = "Could not check which runs this instance still holds.", %error);
                return;
            }
        };
        for id in ids.iter().filter(|id| !kept.contains(*id)) {
            if self.held.lose(id) {
                tracing::warn!(message = "Another instance took over a run this one was running; stopping it here.", execution_id = %id);
            }
        }
    }

    /// A shared store's short poll for runs to take over (and for runs
    /// taken over from this instance).
    async fn take_over(self) {
        loop {
            if self.queue.is_shutting_down() {
                return;
            }
            self.stop_lost();
            if self.claim_expired() == PAGE {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(SHARED_POLL) => {}
                _ = self.queue.stopped() => return,
            }
        }
    }

    /// The timer of waiting runs: queues each when its time comes. With a
    /// store of its own the count of waiting runs is kept up as runs wait
    /// and wake (the start's count is in [`Executor::after_start`]); with a
    /// shared store it is read from the store at every turn.
    async fn wake_waiting(self) {
        loop {
            if self.queue.is_shutting_down() {
                return;
            }
            let due = match self.store.claim_due(now_millis(), PAGE) {
                Ok(due) => due,
                Err(error) => {
                    tracing::error!(message = "Could not read the waiting runs.", %error);
                    Vec::new()
                }
            };
            let shared = self.store.shared();
            for id in &due {
                if !shared {
                    self.env.metrics.runs().waiting.dec();
                }
                self.queue.push_woken(ReadyRun::Stored {
                    id: id.clone(),
                    leased_at: Instant::now(),
                });
            }
            if due.len() == PAGE {
                continue;
            }
            let saved = self.earliest_wake.swap(u64::MAX, Ordering::SeqCst);
            let next = match self.store.next_wake() {
                Ok(Some(at)) => at.min(saved),
                _ => saved,
            };
            if shared {
                // Every instance's waiting runs, as the store counts them:
                // one instance puts a run to wait, another wakes it.
                match self.store.count_waiting() {
                    Ok(n) => {
                        let n = i64::try_from(n).unwrap_or(i64::MAX);
                        self.env.metrics.runs().waiting.set(n);
                    }
                    Err(error) => {
                        tracing::warn!(message = "Could not count the waiting runs.", %error)
                    }
                }
            }
            // Other instances add waiting runs to a shared store: look often.
            let longest = if self.store.shared() {
                SHARED_POLL
            } else {
                LONGEST_SLEEP
            };
            let sleep = Duration::from_millis(next.saturating_sub(now_millis())).min(longest);
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = self.waker.notified() => {}
                _ = self.queue.stopped() => return,
            }
        }
    }

    /// A run saved itself as waiting: the timer looks again (its wake time
    /// may come before the one it sleeps until).
    pub(crate) fn waiting_saved(&self, wake_at: u64) {
        self.earliest_wake.fetch_min(wake_at, Ordering::SeqCst);
        self.waker.notify_one();
    }

    /// A run from the store, ready to drive.
    pub(crate) fn load(&self, id: &str) -> Loaded {
        let saved = match self.store.resumable(id) {
            Ok(Some(saved)) => saved,
            Ok(None) => return Loaded::Nothing,
            Err(error @ hookflow_store::StoreError::Corrupt { .. }) => {
                tracing::error!(message = "A run to resume does not read; it stays aside.", execution_id = %id, %error);
                return Loaded::Nothing;
            }
            Err(error) => {
                tracing::error!(message = "Could not read a run to resume; reading it again shortly.", execution_id = %id, %error);
                return Loaded::Later;
            }
        };
        let record = saved.record;
        let workflow = match self.versions.resolve(&record.workflow, &record.version) {
            Ok(w) => w,
            Err(error) => return self.fail_unrunnable(record, error),
        };
        let Some(state) = RunState::resume(&saved.frames, &saved.parts) else {
            return self.fail_unrunnable(record, "the run's saved position does not read".into());
        };
        let Some(input) = saved.input else {
            return self
                .fail_unrunnable(record, "the run's input is missing from the store".into());
        };
        let scope = scope_for(&workflow, &record, &input.trigger, input.vars, &state);
        let headers = crate::record::header_scrubber(&workflow, &input.trigger);
        let mut run = self.run_of(workflow, None, record, state, scope);
        run.header_scrubber = headers;
        Loaded::Run(run)
    }

    /// Queues a run whose read failed again after a pause, as a place in
    /// the queue frees up (unless the server is stopping: then it stays on
    /// disk, and its lease runs out for another instance).
    pub(crate) fn load_later(&self, id: String, leased_at: Instant) {
        let exec = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(READ_AGAIN).await;
            exec.queue_stored(id, leased_at).await;
        });
    }

    /// Queues a run read from the store as soon as the queue has room;
    /// false when the queue takes no more runs (the server is stopping).
    async fn queue_stored(&self, id: String, leased_at: Instant) -> bool {
        loop {
            match self.queue.reserve() {
                Ok(slot) => {
                    slot.push(ReadyRun::Stored { id, leased_at });
                    return true;
                }
                Err(AcceptError::QueueFull) => tokio::time::sleep(FULL_QUEUE_PAUSE).await,
                Err(_) => return false,
            }
        }
    }

    /// Ends a run that cannot start as failed, with the reason in its record.
    fn fail_unrunnable(&self, mut record: ExecutionRecord, error: String) -> Loaded {
        tracing::error!(message = "Run cannot start.", execution_id = %record.id, workflow = %record.workflow, %error);
        record.status = RunStatus::Failed;
        record.error = Some(error);
        crate::record::scrub_text(&mut record.error, &self.env.secrets.current());
        record.finished_at = Some(Timestamp::now());
        self.store.finish(record, true);
        Loaded::Nothing
    }
}
