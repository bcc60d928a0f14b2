//! Durable state of hookflow: execution records, the async queue, workflow
//! versions (sled, behind the [`Store`] trait) and URL keys (a small JSON file
//! that any process may read while a server runs).
//!
//! Only this crate imports sled.

pub mod keys;
pub mod record;
mod sled_store;

pub use keys::KeyFile;
pub use record::{
    ExecutionFilter, ExecutionRecord, JobRecord, JobStatus, Pending, ResponseRecord, RunStatus,
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

/// Result of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// A boxed future, for the one async method of the trait.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Everything hookflow keeps about runs.
///
/// Writes are not durable until [`Store::flush`] returns; many concurrent
/// callers of `flush` share one disk sync (group commit).
pub trait Store: Send + Sync + 'static {
    /// Writes an execution record and, in the same atomic batch, its pending
    /// entry (`Some`: the run is queued, running or waiting) or the removal of
    /// that entry (`None`: the run is finished).
    fn put(&self, record: &ExecutionRecord, pending: Option<&Pending>) -> StoreResult<()>;

    /// Stores a run's full input (the unredacted trigger context), kept for
    /// resume and retry until the record is removed.
    fn put_input(&self, id: &str, input: &serde_json::Value) -> StoreResult<()>;

    /// A run's full input.
    fn input(&self, id: &str) -> StoreResult<Option<serde_json::Value>>;

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

    /// Makes every write so far durable.
    fn flush(&self) -> BoxFuture<'_, StoreResult<()>>;
}
