//! The PostgreSQL store (SPEC §8): the [`Store`] contract in a database
//! that several hookflow instances share.
//!
//! The store runs its own small Tokio runtime on a thread of its own
//! ("hookflow-pg"), which owns the connection pool ([`connect`]), the
//! ordered writer ([`writer`]: every write of a run, group-committed) and
//! the lease renewal ([`claims`]; the queue's times are on the database's
//! clock, [`clock`]), all sharing [`Shared`]. The contract's synchronous reads
//! ([`reads`]) are futures on that runtime: the caller waits for the answer
//! (inside a multi-threaded Tokio runtime through `block_in_place`, so that
//! the worker's other tasks move on meanwhile), never blocking the store's
//! own runtime. [`schema`] migrates at start; [`retention`] removes old
//! records in batches, one instance at a time; [`keys`] shares webhook keys.

mod apply;
mod claims;
mod clock;
mod codec;
pub mod connect;
mod keys;
mod locks;
mod pending;
mod reads;
mod retention;
mod schema;
mod shared;
#[cfg(test)]
mod tests;
mod writer;

use crate::contract::{Accepted, BoxFuture, IdempotencyClaim, KeyClaim, Resumable, Saved, Store};
use crate::keys::KeyStore;
use crate::record::{ExecutionFilter, ExecutionRecord, IdempotencyEntry, RunInput, RunSummary};
use crate::{StoreError, StoreResult};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use writer::{Submitted, Write};

pub use keys::PgKeys;
pub(crate) use shared::Shared;

/// Writes not yet committed past which refused requests are dropped.
const REFUSED_BACKLOG: u64 = 10_000;

/// Writes not yet committed past which the store is overloaded: new
/// webhook requests are refused (503) while admitted runs' writes still
/// queue (docs/decisions.md).
pub const MAX_BACKLOG: u64 = 50_000;

/// Bytes of writes not yet committed past which the store is overloaded
/// too: 50,000 small records are some 50–100 MB, but a record keeps its request's
/// body and results, and 50,000 large ones are tens of gigabytes
/// (docs/decisions.md).
pub const MAX_BACKLOG_BYTES: usize = 128 << 20;

/// The longest a synchronous call waits for the database.
const CALL_LIMIT: Duration = Duration::from_secs(30);

/// A database error as a store error, with its causes (tokio-postgres
/// says "db error" and keeps the server's message as the cause).
pub(crate) fn pg_err(e: impl std::error::Error) -> StoreError {
    StoreError::Db(chain(&e))
}

/// An error and its causes, in one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// Settings of a PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// How long a claimed run stays this instance's without a renewal
    /// (`--lease`); renewed every third of it.
    pub lease: Duration,
    /// This instance's name in the leases (unique per process).
    pub instance: String,
    /// Connections at most.
    pub pool_size: usize,
    /// Writes not yet committed past which [`Store::overloaded`] says so
    /// ([`MAX_BACKLOG`]).
    pub max_backlog: u64,
    /// Bytes of writes not yet committed past which it says so too
    /// ([`MAX_BACKLOG_BYTES`]).
    pub max_backlog_bytes: usize,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            lease: Duration::from_secs(30),
            instance: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()),
            pool_size: 8,
            max_backlog: MAX_BACKLOG,
            max_backlog_bytes: MAX_BACKLOG_BYTES,
        }
    }
}

/// The ordered writer's way in: sequence numbers given in the order of
/// the channel.
struct Submit {
    seq: u64,
    tx: Option<mpsc::UnboundedSender<Submitted>>,
}

/// Runs, idempotency keys, versions and webhook keys in PostgreSQL.
pub struct PgStore {
    shared: Arc<Shared>,
    submit: Mutex<Submit>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PgStore {
    /// Connects to `url`, migrates the schema and starts the writer and the
    /// lease renewal.
    pub fn open(url: &str, options: PgOptions) -> StoreResult<PgStore> {
        let target = connect::parse_url(url)?;
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let (write_tx, write_rx) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("hookflow-pg".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(StoreError::Db(format!(
                            "cannot start the store's runtime: {e}"
                        ))));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let started = start(&target, options).await;
                    let shared = match started {
                        Ok(shared) => shared,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let (applied_tx, shared) = shared;
                    let _ = ready_tx.send(Ok(shared.clone()));
                    let renewal = tokio::spawn(claims::renew(shared.clone()));
                    writer::run(shared.clone(), write_rx, applied_tx).await;
                    renewal.abort();
                });
            })
            .map_err(|e| StoreError::Db(format!("cannot start the store's thread: {e}")))?;
        let shared = match ready_rx.recv() {
            Ok(Ok(shared)) => shared,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(StoreError::Db("the store's thread stopped".into()));
            }
        };
        Ok(PgStore {
            shared,
            submit: Mutex::new(Submit {
                seq: 0,
                tx: Some(write_tx),
            }),
            thread: Some(thread),
        })
    }

    /// Hands a write to the writer; returns its sequence number.
    fn submit(&self, write: Write) -> u64 {
        let mut submit = self
            .submit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        submit.seq += 1;
        let seq = submit.seq;
        // Given back by the writer once the write is committed.
        let weight = write.weight();
        self.shared
            .pending_bytes
            .fetch_add(weight, Ordering::Relaxed);
        let sent = submit
            .tx
            .as_ref()
            .is_some_and(|tx| tx.send(Submitted { seq, write }).is_ok());
        if !sent {
            self.shared
                .pending_bytes
                .fetch_sub(weight, Ordering::Relaxed);
            tracing::error!(message = "The store's writer has stopped; a write is lost.");
        }
        seq
    }

    /// The sequence number of the last write submitted.
    fn submitted(&self) -> u64 {
        self.submit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .seq
    }

    /// Writes submitted and not yet committed.
    fn behind(&self) -> u64 {
        self.submitted()
            .saturating_sub(*self.shared.applied.borrow())
    }

    /// Bytes of writes submitted and not yet committed past the bound.
    fn heavy(&self) -> bool {
        self.shared.pending_bytes.load(Ordering::Relaxed) > self.shared.options.max_backlog_bytes
    }

    /// Runs a read after every write submitted before it was committed.
    fn read<T, F, Fut>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Shared>) -> Fut + Send + 'static,
        Fut: Future<Output = StoreResult<T>> + Send + 'static,
    {
        let seq = self.submitted();
        let shared = self.shared.clone();
        self.shared.call(async move {
            shared.caught_up(seq).await;
            f(shared).await
        })
    }

    /// The webhook keys kept in this database.
    pub fn webhook_keys(&self) -> PgKeys {
        PgKeys::new(self.shared.clone())
    }

    /// This instance's name in the leases.
    pub fn instance(&self) -> &str {
        &self.shared.options.instance
    }

    /// Has `hook` told how long each commit of the writer takes. The first
    /// hook set stays.
    pub fn on_commit(&self, hook: crate::CommitHook) {
        let _ = self.shared.on_commit.set(hook);
    }

    /// Transactions the writer committed so far.
    pub fn commits(&self) -> u64 {
        self.shared.commits.load(Ordering::SeqCst)
    }

    /// Damages a stored record (tests of damage being set aside).
    #[cfg(test)]
    pub(crate) fn damage_for_tests(&self, id: &str) {
        let id = id.to_string();
        self.read(move |shared| async move {
            let client = shared.conn().await?;
            client
                .execute(
                    "UPDATE hookflow_runs SET record = '\\xc1c1'::bytea WHERE id = $1",
                    &[&id],
                )
                .await
                .map_err(pg_err)?;
            Ok(())
        })
        .expect("damage");
    }
}

/// Builds the pool and migrates, on the store's runtime.
async fn start(
    target: &connect::Target,
    options: PgOptions,
) -> StoreResult<(watch::Sender<u64>, Arc<Shared>)> {
    let pool = connect::pool(target, options.pool_size)?;
    let connect = || async {
        pool.get()
            .await
            .map_err(|e| StoreError::Db(format!("cannot connect to the database: {}", chain(&e))))
    };
    let mut client = connect().await?;
    schema::migrate(connect().await?, &mut client).await?;
    let offset = clock::offset(&client, 0).await?;
    drop(client);
    let (applied_tx, applied) = watch::channel(0);
    Ok((
        applied_tx,
        Arc::new(Shared {
            handle: tokio::runtime::Handle::current(),
            pool,
            options,
            applied,
            damaged: AtomicUsize::new(0),
            pending_bytes: AtomicUsize::new(0),
            away: std::sync::atomic::AtomicBool::new(false),
            offset_ms: std::sync::atomic::AtomicI64::new(offset),
            #[cfg(test)]
            skew_ms: std::sync::atomic::AtomicI64::new(0),
            commits: std::sync::atomic::AtomicU64::new(0),
            on_commit: std::sync::OnceLock::new(),
        }),
    ))
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // The writer commits what it has, then the thread ends.
        if let Ok(mut submit) = self.submit.lock() {
            submit.tx = None;
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Store for PgStore {
    fn accept(&self, run: Accepted) -> BoxFuture<'_, StoreResult<()>> {
        let (done, wait) = oneshot::channel();
        let write = writer::accept(run, done);
        Box::pin(async move {
            let write = write?;
            self.submit(write);
            wait.await
                .unwrap_or_else(|_| Err(StoreError::Db("the store's writer has stopped".into())))
        })
    }

    fn save(&self, id: &str, saved: Saved) {
        match writer::save(id, saved) {
            Ok(w) => {
                self.submit(w);
            }
            Err(error) => {
                tracing::error!(message = "Cannot encode a run's progress.", execution_id = %id, %error)
            }
        }
    }

    fn woke(&self, id: &str) {
        self.submit(Write::Woke { id: id.to_string() });
    }

    fn finish(&self, record: ExecutionRecord, durable: bool) {
        let id = record.id.clone();
        match writer::finish(record, durable) {
            Ok(w) => {
                self.submit(w);
            }
            Err(error) => {
                tracing::error!(message = "Cannot encode a finished run.", execution_id = %id, %error)
            }
        }
    }

    fn announce(&self, record: ExecutionRecord) {
        let id = record.id.clone();
        match writer::announce(record) {
            Ok(w) => {
                self.submit(w);
            }
            Err(error) => {
                tracing::error!(message = "Cannot encode a run.", execution_id = %id, %error)
            }
        }
    }

    fn flush(&self) -> BoxFuture<'_, StoreResult<()>> {
        let (done, wait) = oneshot::channel();
        self.submit(Write::Flush(done));
        Box::pin(async move {
            wait.await
                .unwrap_or_else(|_| Err(StoreError::Db("the store's writer has stopped".into())))
        })
    }

    fn get(&self, id: &str) -> StoreResult<Option<ExecutionRecord>> {
        let id = id.to_string();
        self.read(move |s| async move { reads::get(&s, &id).await })
    }

    fn input(&self, id: &str) -> StoreResult<Option<RunInput>> {
        let id = id.to_string();
        self.read(move |s| async move { reads::input(&s, &id).await })
    }

    fn list(&self, filter: &ExecutionFilter) -> StoreResult<(Vec<RunSummary>, Option<String>)> {
        let filter = filter.clone();
        self.read(move |s| async move { reads::list(&s, &filter).await })
    }

    fn retries_of(&self, id: &str) -> StoreResult<Vec<String>> {
        let id = id.to_string();
        self.read(move |s| async move { reads::retries_of(&s, &id).await })
    }

    fn unfinished(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<String>> {
        let after = after.map(str::to_string);
        self.read(move |s| async move { reads::unfinished(&s, after.as_deref(), limit).await })
    }

    fn resumable(&self, id: &str) -> StoreResult<Option<Resumable>> {
        let id = id.to_string();
        self.read(move |s| async move { reads::resumable(&s, &id).await })
    }

    fn next_wake(&self) -> StoreResult<Option<u64>> {
        self.read(move |s| async move { reads::next_wake(&s).await })
    }

    fn due(&self, now_ms: u64, limit: usize) -> StoreResult<Vec<String>> {
        self.read(move |s| async move { reads::due(&s, now_ms, limit).await })
    }

    fn count_waiting(&self) -> StoreResult<usize> {
        self.read(move |s| async move { reads::count_waiting(&s).await })
    }

    fn put_version(&self, version: &str, source: &str) -> StoreResult<()> {
        let (version, source) = (version.to_string(), source.to_string());
        self.read(move |s| async move { reads::put_version(&s, &version, &source).await })
    }

    fn put_versions(&self, versions: &[(&str, &str)]) -> StoreResult<()> {
        let versions: Vec<(String, String)> = versions
            .iter()
            .map(|(v, s)| (v.to_string(), s.to_string()))
            .collect();
        self.read(move |s| async move { reads::put_versions(&s, &versions).await })
    }

    fn version(&self, version: &str) -> StoreResult<Option<String>> {
        let version = version.to_string();
        self.read(move |s| async move { reads::version(&s, &version).await })
    }

    fn idempotency(
        &self,
        workflow: &str,
        key: &str,
        now_ms: u64,
    ) -> StoreResult<Option<IdempotencyEntry>> {
        let (workflow, key) = (workflow.to_string(), key.to_string());
        self.read(move |s| async move { reads::idempotency(&s, &workflow, &key, now_ms).await })
    }

    fn put_idempotency(&self, claim: IdempotencyClaim) {
        match writer::idempotency(claim) {
            Ok(w) => {
                self.submit(w);
            }
            Err(error) => tracing::error!(message = "Cannot encode an idempotency key.", %error),
        }
    }

    fn claim_key(
        &self,
        workflow: &str,
        key: &str,
        execution_id: &str,
        now_ms: u64,
        until_ms: u64,
    ) -> StoreResult<KeyClaim> {
        // Not after this instance's pending writes: a claim is its own
        // short statement (an answer of this instance is found by the
        // service's read of the key first).
        let (workflow, key, id) = (
            workflow.to_string(),
            key.to_string(),
            execution_id.to_string(),
        );
        let shared = self.shared.clone();
        self.shared.call(async move {
            pending::claim(&shared, &workflow, &key, &id, now_ms, until_ms).await
        })
    }

    fn release_key(&self, workflow: &str, key: &str, execution_id: &str) {
        let (workflow, key, id) = (
            workflow.to_string(),
            key.to_string(),
            execution_id.to_string(),
        );
        let shared = self.shared.clone();
        self.shared.handle.spawn(async move {
            if let Err(error) = pending::release(&shared, &workflow, &key, &id).await {
                // It runs out by itself.
                tracing::warn!(message = "Could not release an idempotency key's claim.", execution_id = %id, %error);
            }
        });
    }

    fn remove_expired_idempotency(&self, now_ms: u64) -> StoreResult<usize> {
        self.read(move |s| async move { retention::expire_keys(&s, now_ms).await })
    }

    fn remove_finished_before(&self, cutoff_ms: u64) -> StoreResult<usize> {
        self.read(move |s| async move { retention::remove_finished(&s, cutoff_ms).await })
    }

    fn damaged(&self) -> usize {
        self.shared.damaged.load(Ordering::SeqCst)
    }

    fn overloaded(&self) -> bool {
        self.shared.away.load(Ordering::Relaxed)
            || self.behind() > self.shared.options.max_backlog
            || self.heavy()
    }

    fn refuse(&self, request: crate::refused::RefusedRequest) {
        // Dropped when the writer is far behind: a flood of refused
        // requests never slows runs down.
        if self.behind() > REFUSED_BACKLOG.min(self.shared.options.max_backlog) || self.heavy() {
            return;
        }
        match writer::refused(&request) {
            Ok(w) => {
                self.submit(w);
            }
            Err(error) => tracing::error!(message = "Cannot encode a refused request.", %error),
        }
    }

    fn refused(
        &self,
        filter: &crate::refused::RefusedFilter,
    ) -> StoreResult<(Vec<crate::refused::RefusedRequest>, Option<String>)> {
        let filter = filter.clone();
        self.read(move |s| async move { reads::refused(&s, &filter).await })
    }

    fn retry_turn(&self) -> StoreResult<Option<crate::RetryTurn>> {
        let lock = self.shared.call({
            let shared = self.shared.clone();
            async move { locks::TxLock::try_take(&shared, locks::RETRY_LOCK).await }
        })?;
        Ok(lock.map(|lock| {
            crate::RetryTurn::held(Box::new(locks::Turn {
                lock,
                shared: self.shared.clone(),
            }))
        }))
    }

    fn lease(&self) -> Option<std::time::Duration> {
        Some(self.shared.options.lease)
    }

    fn shared(&self) -> bool {
        true
    }

    fn claim_expired(&self, limit: usize) -> StoreResult<Vec<String>> {
        self.read(move |s| async move { claims::claim_expired(&s, limit).await })
    }

    fn claim_due(&self, now_ms: u64, limit: usize) -> StoreResult<Vec<String>> {
        self.read(move |s| async move { claims::claim_due(&s, now_ms, limit).await })
    }

    fn still_held(&self, ids: Vec<String>) -> StoreResult<Vec<String>> {
        self.read(move |s| async move { claims::still_held(&s, ids).await })
    }

    fn keys(&self) -> Option<Arc<dyn KeyStore>> {
        Some(Arc::new(self.webhook_keys()))
    }
}
