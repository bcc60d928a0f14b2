//! Durable state of hookflow: execution records, queued runs, workflow
//! versions (sled, behind the [`Store`] trait) and URL keys (a small JSON file
//! that any process may read while a server runs).
//!
//! Only this crate imports sled.

pub mod keys;
mod memory;
mod pages;
mod queued;
pub mod record;
mod sled_store;

pub use hookflow_model::request::TriggerRequest;
pub use keys::KeyFile;
pub use memory::MemoryStore;
pub use record::{
    ExecutionFilter, ExecutionRecord, IdempotencyEntry, JobRecord, JobStatus, Pending,
    ResponseRecord, RunInput, RunStatus,
};
pub use sled_store::SledStore;

use std::future::Future;
use std::pin::Pin;

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database error: {0}")]
    Db(String),
    /// A stored value could not be read back.
    #[error("corrupt record {key}: {message}")]
    Corrupt {
        /// The key of the bad value.
        key: String,
        /// What failed.
        message: String,
    },
    /// A file (keys) could not be read or written.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What failed.
        message: String,
    },
    /// The data folder is held by another process.
    #[error("the data folder {0} is in use by another hookflow process")]
    Locked(String),
}

/// A sled failure as a store error.
pub(crate) fn db_err(e: sled::Error) -> StoreError {
    StoreError::Db(e.to_string())
}

/// Result of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// A boxed future, for the one async method of the trait.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One write of a run: its record, its pending entry (`Some` while the run is
/// queued, running or waiting; `None` removes it) and, when given, its input.
#[derive(Debug, Clone)]
pub struct Write {
    /// The record.
    pub record: ExecutionRecord,
    /// The pending entry; `None` leaves it as it is, unless `clear_pending`.
    pub pending: Option<Pending>,
    /// Remove the pending entry (the run had one, so a live record too, and
    /// is now finished).
    pub clear_pending: bool,
    /// The run's input is (or is in this write) stored: the record is kept
    /// without its trigger context, which reads rebuild from the input.
    pub input_stored: bool,
    /// The run's full input (the unredacted request and vars), kept for
    /// resume and retry until the record is removed.
    pub input: Option<RunInput>,
}

/// Everything hookflow keeps about runs.
///
/// Writes are applied in the order they were submitted (one writer's
/// backlog): a write is applied after every write submitted before it, and
/// reads see it within milliseconds. A write is
/// durable once [`Store::put_durable`] or a later [`Store::flush`] resolves;
/// many concurrent callers share one disk sync (group commit).
pub trait Store: Send + Sync + 'static {
    /// Submits a write.
    fn put(&self, write: Write);

    /// Submits a write and resolves once it is on disk.
    fn put_durable(&self, write: Write) -> BoxFuture<'_, StoreResult<()>>;

    /// Resolves once every write submitted before it is on disk.
    fn flush(&self) -> BoxFuture<'_, StoreResult<()>>;

    /// A run's full input.
    fn input(&self, id: &str) -> StoreResult<Option<RunInput>>;

    /// One execution record.
    fn get(&self, id: &str) -> StoreResult<Option<ExecutionRecord>>;

    /// Records newest first, filtered; returns the page and the cursor of the next page.
    fn list(&self, filter: &ExecutionFilter)
        -> StoreResult<(Vec<ExecutionRecord>, Option<String>)>;

    /// Every run that is queued, running or waiting, oldest first.
    fn pending(&self) -> StoreResult<Vec<(ExecutionRecord, Pending)>>;

    /// Keeps the text of a workflow version (content hash → YAML) so that runs can finish on it.
    fn put_version(&self, version: &str, source: &str) -> StoreResult<()>;

    /// The text of a workflow version.
    fn version(&self, version: &str) -> StoreResult<Option<String>>;

    /// Removes finished records (and their inputs) that started before `cutoff_ms`; returns how many.
    fn remove_finished_before(&self, cutoff_ms: u64) -> StoreResult<usize>;

    /// The entry of an idempotency key of a workflow, if it has not expired at `now_ms`.
    fn idempotency(
        &self,
        workflow: &str,
        key: &str,
        now_ms: u64,
    ) -> StoreResult<Option<IdempotencyEntry>>;

    /// Remembers an idempotency key (durable with the next flush).
    fn put_idempotency(
        &self,
        workflow: &str,
        key: &str,
        entry: &IdempotencyEntry,
    ) -> StoreResult<()>;

    /// Forgets keys that expired before `now_ms`; returns how many.
    fn remove_expired_idempotency(&self, now_ms: u64) -> StoreResult<usize>;
}
