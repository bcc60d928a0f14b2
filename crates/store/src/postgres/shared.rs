//! What the store's runtime thread and its callers share: the pool, the
//! options, the writer's progress, and the way a synchronous caller waits
//! for a future on the store's runtime.

use super::{chain, PgOptions, CALL_LIMIT};
use crate::{StoreError, StoreResult};
use deadpool_postgres::Pool;
use std::future::Future;
use std::sync::atomic::AtomicUsize;
use tokio::sync::watch;

/// What the runtime thread and the callers share.
pub(crate) struct Shared {
    pub handle: tokio::runtime::Handle,
    pub pool: Pool,
    pub options: PgOptions,
    /// The sequence number of the last write the writer committed.
    pub applied: watch::Receiver<u64>,
    /// Bytes of the writes submitted and not yet committed.
    pub pending_bytes: AtomicUsize,
    /// Values set aside since the store opened.
    pub damaged: AtomicUsize,
    /// Transactions the writer committed (group commit: fewer than writes).
    pub commits: std::sync::atomic::AtomicU64,
    /// Told how long each commit of the writer took (the metrics).
    pub on_commit: std::sync::OnceLock<crate::CommitHook>,
    /// The writer found the database unreachable and waits for it: new
    /// webhook requests are refused (503) rather than left waiting with it.
    pub away: std::sync::atomic::AtomicBool,
    /// The database's clock minus this process's, in milliseconds
    /// (`clock.rs`).
    pub offset_ms: std::sync::atomic::AtomicI64,
    /// How far this process's clock is set ahead of the machine's: in
    /// tests of instances whose clocks differ.
    #[cfg(test)]
    pub skew_ms: std::sync::atomic::AtomicI64,
}

impl Shared {
    /// Runs `f` on the store's runtime and waits for its answer.
    pub fn call<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: Future<Output = StoreResult<T>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(f.await);
        });
        let wait = move || match rx.recv_timeout(CALL_LIMIT) {
            Ok(answer) => answer,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(StoreError::Db(format!(
                "the database did not answer within {}s",
                CALL_LIMIT.as_secs()
            ))),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                Err(StoreError::Db("the store has closed".into()))
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        }
    }

    /// Resolves once every write submitted up to `seq` is committed (reads
    /// see a write from the moment it was submitted), within a bound.
    pub async fn caught_up(&self, seq: u64) {
        let mut applied = self.applied.clone();
        let _ = tokio::time::timeout(CALL_LIMIT, applied.wait_for(|a| *a >= seq)).await;
    }

    /// The database's clock minus this process's (`clock.rs`).
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How far this process's clock is set ahead (tests only; 0).
    pub fn skew(&self) -> i64 {
        #[cfg(test)]
        return self.skew_ms.load(std::sync::atomic::Ordering::Relaxed);
        #[cfg(not(test))]
        0
    }

    /// A connection from the pool.
    pub async fn conn(&self) -> StoreResult<deadpool_postgres::Object> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Db(format!("no database connection: {}", chain(&e))))
    }
}
