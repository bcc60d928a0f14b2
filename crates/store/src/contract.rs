//! The store contract: what the executor tells a store about runs, and what
//! it reads back. Every backend keeps the same promises (SPEC §5), checked by
//! one conformance suite (`conformance`, in the tests of this crate).
//!
//! A run's life is a few named events: an async run is [`Store::accept`]ed
//! (durable, with its idempotency key, before the acknowledgement); a durable
//! run [`Store::save`]s what changed after each request node and when it
//! waits; a waiting run that is due [`Store::woke`]; every run
//! [`Store::finish`]es with its final record. A sync run is never durable:
//! its record is written when it finishes (or [`Store::announce`]d when
//! someone is told its id earlier). Writes after `accept` are written behind,
//! in the order they were submitted; reads see a write from the moment it
//! was submitted.

use crate::keys::KeyStore;
use crate::record::{
    ExecutionFilter, ExecutionRecord, IdempotencyEntry, JobRecord, RunInput, RunStatus, RunSummary,
};
use crate::refused::{RefusedFilter, RefusedRequest};
use crate::StoreResult;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

/// A boxed future, for the async methods of the trait.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A new async run, made durable by [`Store::accept`].
#[derive(Debug, Clone)]
pub struct Accepted {
    /// Its record: status `queued`, the acknowledgement as `response`, no
    /// `trigger` (the input keeps the request).
    pub record: ExecutionRecord,
    /// Its input: kept for resume and retry until the record is removed.
    pub input: RunInput,
    /// The idempotency key it claimed, kept in the same durable write.
    pub idempotency: Option<IdempotencyClaim>,
}

/// An idempotency key of a workflow and what it remembers.
#[derive(Debug, Clone, PartialEq)]
pub struct IdempotencyClaim {
    /// The workflow.
    pub workflow: String,
    /// The key, as rendered.
    pub key: String,
    /// The run it started, its answer and when it is forgotten.
    pub entry: IdempotencyEntry,
}

/// What [`Store::claim_key`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyClaim {
    /// The key is this run's now (pending until the run answers).
    Claimed,
    /// A run answered for this key: replay its entry's response.
    Held(IdempotencyEntry),
    /// Another run holds the key and has not answered yet (its id).
    Pending(String),
}

/// What a durable run did since it was last saved: a delta, never the whole
/// record again.
#[derive(Debug, Clone, PartialEq)]
pub struct Saved {
    /// `running`, or `waiting` (then `wake_at` is set).
    pub status: RunStatus,
    /// When a waiting run wakes (Unix ms).
    pub wake_at: Option<u64>,
    /// Jobs added or changed since the last save, by index in the record.
    pub jobs: Vec<(usize, JobRecord)>,
    /// Where the run resumes.
    pub position: Position,
}

/// Where a run resumes: the interpreter's stack, and named parts stored
/// once each and replaced when set again (node results, loop item lists), so
/// that a long run does not store what it already stored.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Position {
    /// The interpreter's stack (opaque here).
    pub frames: Json,
    /// Parts set since the last save.
    pub parts: Vec<(String, Json)>,
}

/// A run to resume, as it was last saved.
#[derive(Debug, Clone, PartialEq)]
pub struct Resumable {
    /// Its record with every job saved so far (no `trigger`: see `input`).
    pub record: ExecutionRecord,
    /// Its input.
    pub input: Option<RunInput>,
    /// The stack it resumes from; null for a run that never saved one.
    pub frames: Json,
    /// Every part saved so far, by name.
    pub parts: BTreeMap<String, Json>,
}

/// Most retries a record names (the newest when a run has more).
pub const MAX_RETRIES_LISTED: usize = 10_000;

/// Everything hookflow keeps about runs, idempotency keys and workflow versions.
pub trait Store: Send + Sync + 'static {
    /// Makes a new async run durable, with its idempotency key, and resolves
    /// once both are on disk. From then on the run is the store's: it is
    /// handed to the workers whatever happens to the request. Await the
    /// future in the task that called this (the embedded store answers a
    /// task of a current-thread runtime through that runtime).
    fn accept(&self, run: Accepted) -> BoxFuture<'_, StoreResult<()>>;

    /// A new async run that finished before its acknowledgement (it needed
    /// nothing outside the process): `record` is its final record, `run`
    /// what [`Store::accept`] would have taken. Resolves once the run is on
    /// disk with its idempotency key; it is never handed to the workers.
    /// By default it is accepted, finished, then flushed; a store may write
    /// it in one go (the finished record, its input and the key).
    fn accept_finished(
        &self,
        run: Accepted,
        record: ExecutionRecord,
    ) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            self.accept(run).await?;
            self.finish(record, true);
            self.flush().await
        })
    }

    /// A durable run saved its progress (written behind, in order).
    fn save(&self, id: &str, saved: Saved);

    /// A waiting run is due and runs again: it leaves the waiting runs.
    fn woke(&self, id: &str);

    /// A run finished: `record` is its final record with every job. `durable`
    /// when the run was accepted (its saved state goes, its input stays with
    /// the record); a sync run's record is simply kept.
    fn finish(&self, record: ExecutionRecord, durable: bool);

    /// A sync run's record kept, as `finish(record, false)`, without
    /// blocking the calling thread (an HTTP worker, which serves other
    /// connections meanwhile): `None` once the store has taken it; `Some`
    /// while its queue of writes is full (a stalled disk), a future that
    /// resolves once it has. Stores whose `finish` never blocks keep the
    /// default.
    fn keep_finished(&self, record: ExecutionRecord) -> Option<BoxFuture<'static, ()>> {
        self.finish(record, false);
        None
    }

    /// A durable run finished: resolves once its final record is on disk.
    /// No read shows it finished before then, so a run anybody saw
    /// finished never runs again after a crash.
    fn finish_durably(&self, record: ExecutionRecord) -> BoxFuture<'_, StoreResult<()>> {
        self.finish(record, true);
        self.flush()
    }

    /// Makes a sync run's record readable before it finishes (its id was
    /// sent to someone); not durable.
    fn announce(&self, record: ExecutionRecord);

    /// Resolves once every write submitted before it is on disk; awaited
    /// as `accept`'s future is.
    fn flush(&self) -> BoxFuture<'_, StoreResult<()>>;

    /// One run's record, finished or not (with its request, redacted).
    fn get(&self, id: &str) -> StoreResult<Option<ExecutionRecord>>;

    /// A run's full input (unredacted), while its record is kept.
    fn input(&self, id: &str) -> StoreResult<Option<RunInput>>;

    /// Runs newest first, filtered; the page and the cursor of the next one.
    fn list(&self, filter: &ExecutionFilter) -> StoreResult<(Vec<RunSummary>, Option<String>)>;

    /// The ids of the runs started as retries of run `id` whose records are
    /// kept, oldest first (a record's `retries`), at most
    /// [`MAX_RETRIES_LISTED`]; reads its writes as `get` does. By default,
    /// pages of `list` filtered by `retry_of`.
    fn retries_of(&self, id: &str) -> StoreResult<Vec<String>> {
        let mut filter = ExecutionFilter {
            retry_of: Some(id.to_string()),
            limit: 1000,
            ..ExecutionFilter::default()
        };
        let mut ids = Vec::new();
        while ids.len() < MAX_RETRIES_LISTED {
            let (rows, next) = self.list(&filter)?;
            ids.extend(rows.into_iter().map(|r| r.id));
            match next {
                // A cursor that does not move on ends the walk.
                Some(cursor) if filter.cursor.as_ref() != Some(&cursor) => {
                    filter.cursor = Some(cursor)
                }
                _ => break,
            }
        }
        // Ids are time-ordered; the list is newest first: the oldest go
        // when there are more.
        ids.truncate(MAX_RETRIES_LISTED);
        ids.reverse();
        Ok(ids)
    }

    /// Ids of runs that are queued or running (not waiting), oldest first,
    /// after `after`: the runs to resume at start.
    fn unfinished(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<String>>;

    /// A run that is not finished, as it was last saved.
    fn resumable(&self, id: &str) -> StoreResult<Option<Resumable>>;

    /// The earliest wake time of a waiting run.
    fn next_wake(&self) -> StoreResult<Option<u64>>;

    /// Waiting runs due at `now_ms`, earliest first, at most `limit`.
    fn due(&self, now_ms: u64, limit: usize) -> StoreResult<Vec<String>>;

    /// How many runs wait (due or not).
    fn count_waiting(&self) -> StoreResult<usize> {
        self.due(u64::MAX, usize::MAX).map(|ids| ids.len())
    }

    /// Keeps the text of a workflow version (content hash → YAML) so that runs can finish on it.
    fn put_version(&self, version: &str, source: &str) -> StoreResult<()>;

    /// Keeps the texts of many workflow versions at once (a folder's
    /// worth at start-up): as [`Store::put_version`] for each, in one
    /// round trip where the backend can.
    fn put_versions(&self, versions: &[(&str, &str)]) -> StoreResult<()> {
        for (version, source) in versions {
            self.put_version(version, source)?;
        }
        Ok(())
    }

    /// The text of a workflow version.
    fn version(&self, version: &str) -> StoreResult<Option<String>>;

    /// The entry of an idempotency key of a workflow, if it has not expired at `now_ms`.
    fn idempotency(
        &self,
        workflow: &str,
        key: &str,
        now_ms: u64,
    ) -> StoreResult<Option<IdempotencyEntry>>;

    /// Remembers an idempotency key of a sync run: readable at once (a
    /// repeat may follow the answer immediately), durable with the next flush.
    fn put_idempotency(&self, claim: IdempotencyClaim);

    /// Claims an idempotency key for a sync run about to start
    /// (`execution_id`), pending until it answers or until `until_ms`,
    /// whichever comes first; the answer is stored over the claim by
    /// [`Store::put_idempotency`] with the same execution id. A key held
    /// by an answered run is [`KeyClaim::Held`]; one claimed by another
    /// run that has not answered and whose claim has not run out is
    /// [`KeyClaim::Pending`]; an expired key is claimed again.
    ///
    /// A store of one process keeps no pending claims (the service's own
    /// claims serialise the requests of its process): by default a key is
    /// held once answered, claimed otherwise.
    fn claim_key(
        &self,
        workflow: &str,
        key: &str,
        execution_id: &str,
        now_ms: u64,
        until_ms: u64,
    ) -> StoreResult<KeyClaim> {
        let _ = (execution_id, until_ms);
        Ok(match self.idempotency(workflow, key, now_ms)? {
            Some(entry) if entry.response.is_some() => KeyClaim::Held(entry),
            _ => KeyClaim::Claimed,
        })
    }

    /// Gives up the pending claim of `execution_id` on a key (its run did
    /// not answer 2xx, or its request went away): another request may
    /// claim it at once. Changes nothing if the key is no longer that
    /// run's pending claim. Written behind; a claim not released runs out.
    fn release_key(&self, workflow: &str, key: &str, execution_id: &str) {
        let _ = (workflow, key, execution_id);
    }

    /// Forgets keys that expired at `now_ms`; returns how many.
    fn remove_expired_idempotency(&self, now_ms: u64) -> StoreResult<usize>;

    /// Removes the records (and inputs) of runs that finished before
    /// `cutoff_ms`; returns how many. Unfinished runs are never touched.
    fn remove_finished_before(&self, cutoff_ms: u64) -> StoreResult<usize>;

    /// How many damaged entries were set aside since the store opened.
    fn damaged(&self) -> usize;

    /// Keeps a refused request (SPEC §7), the last
    /// [`KEPT_PER_WORKFLOW`](crate::refused::KEPT_PER_WORKFLOW) per workflow.
    /// Written behind and never synced on its own: it reaches the disk with
    /// the next sync (a flush, a durable write, or the backend's own
    /// periodic one), and readable once the write is applied (after
    /// [`Store::flush`] at the latest). May be dropped when the store is
    /// overloaded: a flood of refused requests never slows runs down.
    fn refuse(&self, request: RefusedRequest);

    /// Refused requests newest first, filtered; the page and the cursor of the next one.
    fn refused(&self, filter: &RefusedFilter)
        -> StoreResult<(Vec<RefusedRequest>, Option<String>)>;

    /// Whether the store is too far behind to take new runs (its writes
    /// not yet on disk passed a bound, e.g. during a database outage):
    /// new webhook requests are then refused (503) before any run
    /// starts, while the writes of runs already admitted are still kept.
    fn overloaded(&self) -> bool {
        false
    }

    /// Whether the store can take runs, for `/healthz`: false while it is
    /// overloaded, and (the embedded store) from a failed write until a
    /// write is on disk again, even with no request trying meanwhile.
    fn healthy(&self) -> bool {
        !self.overloaded()
    }

    /// Whether [`Store::accept_finished`] hands its write over before it
    /// returns (its future only waits for it to be on disk): a caller that
    /// drops the future then cancels nothing, and need not keep it in a
    /// task of its own. False by default, as the default
    /// [`Store::accept_finished`] writes when first polled.
    fn writes_when_called(&self) -> bool {
        false
    }

    /// Whether several instances share this store (PostgreSQL): runs are
    /// then claimed with leases ([`Store::claim_expired`]) rather than all
    /// resumed at start, and a write is seen by the other instances once
    /// flushed.
    fn shared(&self) -> bool {
        false
    }

    /// The turn of retries among the instances sharing this store: held
    /// (until dropped) while a retry checks which runs it retries and starts
    /// them. `Ok(None)` when another instance holds it; a store of one
    /// process has no other instance, and its turn is the service's own.
    fn retry_turn(&self) -> StoreResult<Option<RetryTurn>> {
        Ok(Some(RetryTurn::own()))
    }

    /// How long a run's lease lasts without renewal (a shared store's);
    /// `None` for a store of one process.
    fn lease(&self) -> Option<std::time::Duration> {
        None
    }

    /// Claims for this instance up to `limit` queued or running runs whose
    /// lease ran out (their instance died); ids oldest first. A store of
    /// one process has no leases and claims nothing: its runs are resumed
    /// at start through [`Store::unfinished`].
    fn claim_expired(&self, limit: usize) -> StoreResult<Vec<String>> {
        let _ = limit;
        Ok(Vec::new())
    }

    /// Of `ids` (runs this instance is running), those it still holds: a
    /// run missing from the answer was taken over by another instance (its
    /// lease ran out while this one was paused or cut off from the store)
    /// or has left the queue. A store of one process holds them all.
    fn still_held(&self, ids: Vec<String>) -> StoreResult<Vec<String>> {
        Ok(ids)
    }

    /// Claims for this instance the waiting runs due at `now_ms`, earliest
    /// first, at most `limit`: each leaves the waiting runs as with
    /// [`Store::woke`], and no other instance gets it.
    fn claim_due(&self, now_ms: u64, limit: usize) -> StoreResult<Vec<String>> {
        let due = self.due(now_ms, limit)?;
        for id in &due {
            self.woke(id);
        }
        Ok(due)
    }

    /// The webhook keys this store keeps for every instance; `None` when
    /// they are kept in the data folder's key file.
    fn keys(&self) -> Option<std::sync::Arc<dyn KeyStore>> {
        None
    }
}

/// A retry turn ([`Store::retry_turn`]): let go by [`RetryTurn::release`]
/// (or, later, when dropped).
pub struct RetryTurn {
    /// What holds the turn across instances (a database transaction's lock).
    held: Option<Box<dyn Held>>,
}

/// What holds a turn across instances.
pub(crate) trait Held: Send + Sync {
    /// Lets it go, and returns once another instance can take it.
    fn release(self: Box<Self>) -> StoreResult<()>;
}

impl RetryTurn {
    /// A turn no other instance can hold (a store of one process).
    pub(crate) fn own() -> RetryTurn {
        RetryTurn { held: None }
    }

    /// A turn `held` across instances.
    pub(crate) fn held(held: Box<dyn Held>) -> RetryTurn {
        RetryTurn { held: Some(held) }
    }

    /// Lets the turn go and returns once another instance can take it.
    /// Blocks (on a shared store, for a round trip to the database).
    pub fn release(mut self) -> StoreResult<()> {
        match self.held.take() {
            Some(held) => held.release(),
            None => Ok(()),
        }
    }
}

impl std::fmt::Debug for RetryTurn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RetryTurn")
    }
}
