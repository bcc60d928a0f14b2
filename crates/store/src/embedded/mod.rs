//! The embedded store: the [`Store`] contract on sled, in the data folder.
//!
//! One tree holds everything about runs ([`layout`]): an unfinished run's
//! head, input, status, stack, jobs and parts under keys of its own, waiting
//! runs by wake time, finished runs packed into compressed [`pages`] per
//! second of start time, and idempotency keys with their expiry index. Events
//! are encoded by the caller and applied in order by one [`writer`] thread
//! ([`batch`] turns a turn's events into keys; finished sync runs come by
//! [`lanes`]); reads ([`reads`]) see what
//! the writer has not applied yet through the [`overlay`]. [`retention`]
//! removes old pages and expired keys. A value that does not decode is set
//! aside in the `quarantine` tree and skipped. Refused requests live in a
//! tree of their own ([`refused`]), written by the same writer without a
//! sync of their own; [`files`] opens the data folder.

mod acks;
mod backlog;
mod batch;
mod codec;
mod files;
mod hush;
mod lanes;
mod layout;
mod overlay;
mod pages;
mod queued;
mod reads;
mod refused;
mod retention;
mod room;
mod spare;
mod versions;
mod writer;

use crate::contract::{Accepted, BoxFuture, IdempotencyClaim, Resumable, Saved, Store};
use crate::record::{
    pack, ExecutionFilter, ExecutionRecord, IdempotencyEntry, RunInput, RunSummary,
};
use crate::refused::{RefusedFilter, RefusedRequest};
use crate::{db_err, StoreError, StoreResult};
use acks::Waiter;
use codec::{encode, RunState};
use files::{make_private, open_db};
use layout::id_bytes;
use overlay::Overlay;
use queued::Queued;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;
use writer::{finished_event, finished_parts, id_of_record, Event, Job, KeyWrite, Writer};

/// The longest a read waits for the writer to catch up.
const CATCH_UP_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs, idempotency keys and workflow versions in one sled database.
pub struct SledStore {
    db: sled::Db,
    runs: sled::Tree,
    versions: sled::Tree,
    /// The writer's backlog (shared, so that a record waiting for room in
    /// it, [`room`], holds it weakly and cannot keep the writer alive).
    jobs: Option<Arc<backlog::Backlog>>,
    writer: Option<std::thread::JoinHandle<()>>,
    overlay: Arc<Overlay>,
    /// Unfinished runs in queue pages ([`queued`]).
    queued: Arc<Mutex<Queued>>,
    damaged: AtomicUsize,
    /// Refused requests ([`refused`]).
    refused: sled::Tree,
    /// Told how long each sync of the disk took.
    on_commit: Arc<std::sync::OnceLock<crate::CommitHook>>,
    /// When the last write failed (Unix ms; 0: the last sync went well).
    failed_at: Arc<backlog::Alone<std::sync::atomic::AtomicU64>>,
    /// Jobs waiting for room in the [`backlog`] ([`room`]): overloaded meanwhile.
    waiting: Arc<backlog::Alone<AtomicUsize>>,
    /// Fails the writer's turns while set (a full disk, in tests).
    #[cfg(test)]
    fail_writes: Arc<std::sync::atomic::AtomicBool>,
}

/// The index of queued runs, even if a thread panicked while holding it
/// (its updates are single inserts and removals).
pub(crate) fn lock(q: &Mutex<Queued>) -> MutexGuard<'_, Queued> {
    q.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn stopped() -> StoreError {
    StoreError::Db("the store's writer has stopped".into())
}

impl SledStore {
    /// Opens (or creates) the database under `dir`.
    pub fn open(dir: &Path) -> StoreResult<SledStore> {
        crate::check_folder(dir)?;
        std::fs::create_dir_all(dir).map_err(|e| StoreError::File {
            path: dir.display().to_string(),
            message: e.to_string(),
        })?;
        make_private(dir)?;
        let db = open_db(dir)?;
        make_private(&dir.join("db"))?;
        let runs = db.open_tree("runs").map_err(db_err)?;
        let versions = db.open_tree("versions").map_err(db_err)?;
        let quarantine = db.open_tree("quarantine").map_err(db_err)?;
        let refused = db.open_tree("refused").map_err(db_err)?;
        layout::check_format(&db, &[&runs], dir)?;
        let queued::Rebuilt {
            index,
            spent,
            damaged,
        } = queued::rebuild(&runs)?;
        for key in spent {
            runs.remove(key).map_err(db_err)?;
        }
        for key in &damaged {
            if let Some(seq) = queued::seq_of(key) {
                for k in [
                    queued::page_key(queued::QUEUE, seq),
                    queued::page_key(queued::DONE, seq),
                ] {
                    if let Some(v) = runs.remove(k).map_err(db_err)? {
                        quarantine.insert(k, v).map_err(db_err)?;
                    }
                }
            }
        }
        let queued = Arc::new(Mutex::new(index));
        let overlay = Arc::new(Overlay::default());
        let waiting = Arc::new(backlog::Alone(AtomicUsize::new(0)));
        let (backlog, rx, held) = backlog::Backlog::new(waiting.clone());
        let on_commit = Arc::new(std::sync::OnceLock::new());
        let failed_at = Arc::new(backlog::Alone(std::sync::atomic::AtomicU64::new(0)));
        #[cfg(test)]
        let fail_writes = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = Writer {
            db: db.clone(),
            runs: runs.clone(),
            quarantine,
            overlay: overlay.clone(),
            queued: queued.clone(),
            refused: refused::Keeper::new(refused.clone()),
            on_commit: on_commit.clone(),
            failed_at: failed_at.clone(),
            held,
            #[cfg(test)]
            fail_writes: fail_writes.clone(),
        };
        let writer = std::thread::Builder::new()
            .name("hookflow-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Db(format!("cannot start the writer thread: {e}")))?;
        Ok(SledStore {
            db,
            runs,
            versions,
            jobs: Some(Arc::new(backlog)),
            writer: Some(writer),
            overlay,
            queued,
            damaged: AtomicUsize::new(damaged.len()),
            refused,
            on_commit,
            failed_at,
            waiting,
            #[cfg(test)]
            fail_writes,
        })
    }

    /// Has `hook` told how long each sync of the disk (a durable write) takes.
    /// The first hook set stays.
    pub fn on_commit(&self, hook: crate::CommitHook) {
        let _ = self.on_commit.set(hook);
    }

    /// The event of a finished run (it leaves the overlay's live runs).
    fn finish_event(&self, record: ExecutionRecord, durable: bool) -> StoreResult<Event> {
        let (id, event) = finished_event(record, durable)?;
        self.overlay.finished(&id);
        Ok(event)
    }

    /// Submits an event somebody waits on: resolves once it is on disk.
    fn durable(&self, event: StoreResult<Event>) -> BoxFuture<'_, StoreResult<()>> {
        let (tx, rx) = oneshot::channel();
        let submitted = event.map(|e| self.submit(Job::Durable(Box::new((e, Waiter::new(tx))))));
        Box::pin(async move {
            match submitted {
                Ok(true) => rx.await.map_err(|_| stopped())?,
                Ok(false) => Err(stopped()),
                Err(e) => Err(e),
            }
        })
    }

    /// Hands a job to the writer; false when the writer has stopped.
    fn submit(&self, job: Job) -> bool {
        let waited_on = !matches!(job, Job::Event(_));
        let sent = self.jobs.as_ref().is_some_and(|tx| tx.send(job).is_ok());
        if sent && waited_on {
            // Someone waits for this one: end the writer's gather now.
            if let Some(writer) = &self.writer {
                writer.thread().unpark();
            }
        }
        sent
    }

    fn send(&self, event: StoreResult<Event>) {
        match event {
            Ok(event) => {
                if !self.submit(Job::Event(Box::new(event))) {
                    tracing::error!(
                        message = "The store's writer has stopped; a run was not written."
                    );
                }
            }
            Err(error) => tracing::error!(message = "Could not write a run.", %error),
        }
    }

    /// Waits (a moment, bounded) until the writer has applied everything
    /// submitted so far: what a read sees from then on includes every write
    /// submitted before it (read-your-writes without a cost per write).
    fn catch_up(&self) {
        let (tx, rx) = mpsc::channel();
        if self.submit(Job::Applied(Box::new(tx))) {
            let _ = rx.recv_timeout(CATCH_UP_LIMIT);
        }
    }

    /// Sets damaged entries aside (in the `quarantine` tree) and logs them;
    /// a damaged queue page takes its bitmap and its runs with it.
    pub(crate) fn set_aside(&self, mut keys: Vec<Vec<u8>>, error: &StoreError) {
        for key in keys.clone() {
            tracing::error!(
                message = "A damaged entry was set aside.",
                key = %codec::show_key(&key),
                %error
            );
            if key.first() == Some(&layout::RUN) && layout::kind_of(&key) == Some(layout::HEAD) {
                // A run without its head cannot run: its other keys go too.
                if let Some(id) = layout::id_of(&key) {
                    keys.extend(
                        self.runs
                            .scan_prefix(layout::run_prefix(&id))
                            .keys()
                            .filter_map(Result::ok)
                            .map(|k| k.to_vec())
                            .filter(|k| *k != key),
                    );
                }
            }
            if key.first() == Some(&queued::QUEUE) {
                if let Some(seq) = queued::seq_of(&key) {
                    keys.push(queued::page_key(queued::DONE, seq).to_vec());
                    let mut index = lock(&self.queued);
                    index.runs.retain(|_, r| r.page != seq);
                    index.pages.remove(&seq);
                }
            }
        }
        self.damaged.fetch_add(1, Ordering::Relaxed);
        self.send(Ok(Event::Quarantine(keys)));
    }
}

fn key_write(claim: &IdempotencyClaim) -> StoreResult<KeyWrite> {
    Ok(KeyWrite {
        key: layout::idempotency_key(&claim.workflow, &claim.key),
        entry: encode(&claim.entry)?,
        expires_ms: claim.entry.expires_ms,
    })
}

impl Store for SledStore {
    fn accept(&self, run: Accepted) -> BoxFuture<'_, StoreResult<()>> {
        self.durable((|| {
            Ok(Event::Accept {
                id: id_of_record(&run.record.id)?,
                head: spare::fitted(pack::record(codec::fresh(), &run.record)),
                input: spare::fitted(pack::input(codec::fresh(), &run.input)),
                key: run.idempotency.as_ref().map(key_write).transpose()?,
                retry_of: run.record.retry_of.as_deref().and_then(id_bytes),
            })
        })())
    }

    fn accept_finished(
        &self,
        run: Accepted,
        record: ExecutionRecord,
    ) -> BoxFuture<'_, StoreResult<()>> {
        self.durable((|| {
            let id = id_of_record(&record.id)?;
            let (header, bytes) = finished_parts(record)?;
            self.overlay.finished(&id);
            Ok(Event::Settled {
                id,
                header,
                record: bytes,
                input: spare::fitted(pack::input(spare::take(), &run.input)),
                key: run.idempotency.as_ref().map(key_write).transpose()?,
            })
        })())
    }

    fn save(&self, id: &str, saved: Saved) {
        let event = (|| {
            let jobs = saved
                .jobs
                .iter()
                .map(|(i, job)| Ok((u32::try_from(*i).unwrap_or(u32::MAX), encode(job)?)))
                .collect::<StoreResult<Vec<_>>>()?;
            let parts = saved
                .position
                .parts
                .iter()
                .map(|(name, value)| Ok((name.clone(), encode(value)?)))
                .collect::<StoreResult<Vec<_>>>()?;
            Ok(Event::Save {
                id: id_of_record(id)?,
                state: encode(&RunState {
                    status: saved.status,
                    wake_at: saved.wake_at,
                })?,
                wake_at: saved.wake_at,
                jobs,
                frames: encode(&saved.position.frames)?,
                parts,
            })
        })();
        self.send(event);
    }

    fn woke(&self, id: &str) {
        match id_of_record(id) {
            Ok(id) => {
                self.overlay.woke(id);
                self.send(Ok(Event::Woke { id }));
            }
            Err(error) => tracing::error!(message = "Could not write a run.", %error),
        }
    }

    fn finish(&self, record: ExecutionRecord, durable: bool) {
        self.send(self.finish_event(record, durable));
    }

    fn keep_finished(&self, record: ExecutionRecord) -> Option<BoxFuture<'static, ()>> {
        self.keep_when_room(record)
    }

    fn finish_durably(&self, record: ExecutionRecord) -> BoxFuture<'_, StoreResult<()>> {
        // One job with its waiter: the turn that applies it syncs, and the
        // reads of that turn are answered after the sync.
        let event = self.finish_event(record, true);
        self.durable(event)
    }

    fn announce(&self, record: ExecutionRecord) {
        let retry_of = record.retry_of.as_deref().and_then(id_bytes);
        match (id_of_record(&record.id), encode(&record)) {
            (Ok(id), Ok(bytes)) => self.overlay.announce(id, bytes, retry_of),
            (Err(error), _) | (_, Err(error)) => {
                tracing::error!(message = "Could not announce a run.", %error)
            }
        }
    }

    fn flush(&self) -> BoxFuture<'_, StoreResult<()>> {
        let (tx, rx) = oneshot::channel();
        let submitted = self.submit(Job::Barrier(Box::new(Waiter::new(tx))));
        Box::pin(async move {
            if !submitted {
                return Err(stopped());
            }
            rx.await.map_err(|_| stopped())?
        })
    }

    fn get(&self, id: &str) -> StoreResult<Option<ExecutionRecord>> {
        let Some(id) = id_bytes(id) else {
            return Ok(None);
        };
        // Everything submitted before this read is applied first.
        self.catch_up();
        self.read_record(&id)
    }

    fn input(&self, id: &str) -> StoreResult<Option<RunInput>> {
        let Some(id) = id_bytes(id) else {
            return Ok(None);
        };
        self.catch_up();
        self.read_input(&id)
    }

    fn list(&self, filter: &ExecutionFilter) -> StoreResult<(Vec<RunSummary>, Option<String>)> {
        self.catch_up();
        self.read_list(filter)
    }

    fn retries_of(&self, id: &str) -> StoreResult<Vec<String>> {
        let Some(id) = id_bytes(id) else {
            return Ok(Vec::new());
        };
        self.catch_up();
        self.read_retries(&id)
    }

    fn unfinished(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<String>> {
        let after = after.and_then(id_bytes);
        self.read_unfinished(after.as_ref(), limit)
    }

    fn resumable(&self, id: &str) -> StoreResult<Option<Resumable>> {
        match id_bytes(id) {
            Some(id) => self.read_resumable(&id),
            None => Ok(None),
        }
    }

    fn next_wake(&self) -> StoreResult<Option<u64>> {
        let scan = self.overlay.begin_scan();
        Ok(self
            .read_due(&scan, u64::MAX, 1)?
            .first()
            .map(|(ms, _)| *ms))
    }

    fn due(&self, now_ms: u64, limit: usize) -> StoreResult<Vec<String>> {
        let scan = self.overlay.begin_scan();
        Ok(self
            .read_due(&scan, now_ms, limit)?
            .iter()
            .map(|(_, id)| layout::id_string(id))
            .collect())
    }

    fn claim_due(&self, now_ms: u64, limit: usize) -> StoreResult<Vec<String>> {
        // Read and taken in one scan: no other scan lists them meanwhile.
        let scan = self.overlay.begin_scan();
        let due = self.read_due(&scan, now_ms, limit)?;
        let mut ids = Vec::with_capacity(due.len());
        for (_, id) in due {
            self.overlay.woke(id);
            self.send(Ok(Event::Woke { id }));
            ids.push(layout::id_string(&id));
        }
        Ok(ids)
    }

    fn put_version(&self, version: &str, source: &str) -> StoreResult<()> {
        versions::put(&self.versions, version, source)
    }

    fn put_versions(&self, batch: &[(&str, &str)]) -> StoreResult<()> {
        versions::put_many(&self.versions, batch)
    }

    fn version(&self, version: &str) -> StoreResult<Option<String>> {
        Ok(self
            .versions
            .get(version.as_bytes())
            .map_err(db_err)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn idempotency(
        &self,
        workflow: &str,
        key: &str,
        now_ms: u64,
    ) -> StoreResult<Option<IdempotencyEntry>> {
        let k = layout::idempotency_key(workflow, key);
        match self.runs.get(&k).map_err(db_err)? {
            Some(v) => Ok(self
                .decoded::<IdempotencyEntry>(&k, &v)
                .filter(|e| e.expires_ms > now_ms)),
            None => Ok(None),
        }
    }

    fn put_idempotency(&self, claim: IdempotencyClaim) {
        // Written here, not behind: a repeat may come right after the answer.
        let written = key_write(&claim).and_then(|w| {
            let expiry = layout::expiry_key(w.expires_ms, &w.key);
            self.runs.insert(w.key, w.entry).map_err(db_err)?;
            self.runs.insert(expiry, &[][..]).map_err(db_err)?;
            Ok(())
        });
        if let Err(error) = written {
            tracing::error!(message = "Could not store an idempotency key.", %error);
        }
    }

    fn remove_expired_idempotency(&self, now_ms: u64) -> StoreResult<usize> {
        self.expire_keys(now_ms)
    }

    fn remove_finished_before(&self, cutoff_ms: u64) -> StoreResult<usize> {
        self.retain(cutoff_ms)
    }

    fn overloaded(&self) -> bool {
        // A write failed (a full disk): new webhooks are refused (503) for
        // a while instead of each failing in turn; then one is let through
        // to try again.
        // So is a writer whose backlog is full (a stalled disk): records
        // wait for room, and new webhooks would add to them.
        let at = self.failed_at.load(Ordering::Relaxed);
        self.waiting.load(Ordering::Relaxed) > 0
            || at != 0
                && hookflow_model::time::now_millis().saturating_sub(at) < writer::FAILED_PAUSE_MS
    }

    fn healthy(&self) -> bool {
        self.failed_at.load(Ordering::Relaxed) == 0 && self.waiting.load(Ordering::Relaxed) == 0
    }

    fn writes_when_called(&self) -> bool {
        // `accept_finished` encodes and submits its event to the writer
        // before it returns (`durable`).
        true
    }

    fn damaged(&self) -> usize {
        self.damaged.load(Ordering::Relaxed)
    }

    fn refuse(&self, request: RefusedRequest) {
        // Never waits for the writer: when its backlog is full, dropped.
        let event = refused::Pending::of(&request).map(Event::Refused);
        let sent = event.map(|e| {
            self.jobs
                .as_ref()
                .is_some_and(|tx| tx.try_send(Job::Event(Box::new(e))).is_ok())
        });
        if !matches!(sent, Ok(true)) {
            tracing::debug!(message = "A refused request was not kept (the writer is busy).");
        }
    }

    fn refused(
        &self,
        filter: &RefusedFilter,
    ) -> StoreResult<(Vec<RefusedRequest>, Option<String>)> {
        self.catch_up();
        refused::list(&self.refused, filter)
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        // Let the writer apply what is submitted, then release its handle on
        // the database and sync.
        self.jobs.take();
        if let Some(t) = self.writer.take() {
            let _ = t.join();
        }
        let _ = self.db.flush();
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) use tests::damage_for_tests;
