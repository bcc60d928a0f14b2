//! Durable state of hookflow: runs (queued, running, waiting, finished),
//! idempotency keys, workflow versions and URL keys.
//!
//! [`Store`] ([`contract`]) is what the executor tells a store and reads
//! back; [`SledStore`] keeps it in the data folder ([`embedded`], the only
//! module that imports sled), [`MemoryStore`] in memory for `hookflow
//! run`/`test`. URL keys are a small JSON file ([`keys`]) that any process
//! may read while a server runs. [`PgStore`] ([`postgres`]) keeps all of
//! it in PostgreSQL, shared by several instances.

pub mod contract;
pub mod embedded;
pub mod keys;
pub mod local;
mod memory;
pub mod postgres;
pub mod record;
pub mod refused;

#[cfg(test)]
mod conformance;

pub use contract::{
    Accepted, BoxFuture, IdempotencyClaim, KeyClaim, Position, Resumable, RetryTurn, Saved, Store,
    MAX_RETRIES_LISTED,
};
pub use embedded::SledStore;
pub use hookflow_model::request::TriggerRequest;
pub use keys::{KeyFile, KeyStore};
pub use local::LocalAccess;
pub use memory::MemoryStore;
pub use postgres::{PgOptions, PgStore};
pub use record::{
    ExecutionFilter, ExecutionRecord, IdempotencyEntry, JobRecord, JobStatus, ResponseRecord,
    RunInput, RunStatus, RunSummary, TryOutcome, TryRecord, DEFAULT_MAX_RESULT,
};
pub use refused::{RefusedFilter, RefusedRequest, KEPT_PER_WORKFLOW};

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
    /// An accepted run's idempotency key is held by another run (another
    /// instance claimed it first): nothing was stored; answer as a replay.
    #[error("the idempotency key is held by run {}", .0.execution_id)]
    KeyTaken(Box<IdempotencyEntry>),
    /// The data folder is held by another process.
    #[error("the data folder {0} is in use by another hookflow process")]
    Locked(String),
}

/// The bytes a saved run's jobs and parts hold, for a writer backlog's
/// bound in bytes.
pub(crate) fn saved_weight<N>(jobs: &[(N, Vec<u8>)], parts: &[(String, Vec<u8>)]) -> usize {
    jobs.iter().map(|(_, j)| j.capacity()).sum::<usize>()
        + parts
            .iter()
            .map(|(name, p)| name.capacity() + p.capacity())
            .sum::<usize>()
}

/// A sled failure as a store error.
pub(crate) fn db_err(e: sled::Error) -> StoreError {
    StoreError::Db(e.to_string())
}

/// Told how long a sync of the disk took (the metrics of durable writes);
/// called on the store's writer thread, so it must be quick.
pub type CommitHook = Box<dyn Fn(std::time::Duration) + Send + Sync>;

/// Result of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// An error when something other than a folder is at `dir`, the data
/// folder (which is made when it is missing): creating it would say only
/// "File exists".
pub(crate) fn check_folder(dir: &std::path::Path) -> StoreResult<()> {
    match std::fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => Err(StoreError::File {
            path: dir.display().to_string(),
            message: "this is a file, not a folder; give the data folder's path \
                      (it is made when missing)"
                .into(),
        }),
        _ => Ok(()),
    }
}
