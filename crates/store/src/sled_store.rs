//! The sled implementation of [`Store`]: one writer thread applies queued
//! writes in order, many at a time in one batch, and syncs the disk once per
//! batch that holds a durable write (group commit).

use crate::record::{ExecutionFilter, ExecutionRecord, IdempotencyEntry, Pending};
use crate::{BoxFuture, Store, StoreError, StoreResult, Write};
use serde_json::Value as Json;
use std::path::Path;
use std::sync::mpsc;
use tokio::sync::oneshot;

/// sled's page cache (its default is 1 GiB).
const CACHE_BYTES: u64 = 32 * 1024 * 1024;
/// Most writes applied in one batch.
const MAX_BATCH: usize = 4096;
/// How long the writer lets writes nobody waits on gather before a batch.
const GATHER: std::time::Duration = std::time::Duration::from_millis(1);
/// Most writes waiting for the writer; past it, submitting blocks (backpressure).
const BACKLOG: usize = 16_384;

const RECORD: u8 = b'e';
const PENDING: u8 = b'p';
const INPUT: u8 = b'i';

/// Work for the writer thread.
enum Job {
    /// A write; with a sender, answer once it is on disk.
    Write(Box<Write>, Option<oneshot::Sender<StoreResult<()>>>),
    /// Answer once everything before it is on disk.
    Barrier(oneshot::Sender<StoreResult<()>>),
}

/// Executions, pending runs and workflow versions in one sled database.
pub struct SledStore {
    db: sled::Db,
    runs: sled::Tree,
    versions: sled::Tree,
    idempotency: sled::Tree,
    jobs: Option<mpsc::SyncSender<Job>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

fn db_err(e: sled::Error) -> StoreError {
    StoreError::Db(e.to_string())
}

fn key(prefix: u8, id: &str) -> Option<[u8; 17]> {
    let uuid = uuid::Uuid::parse_str(id).ok()?;
    let mut k = [0u8; 17];
    k[0] = prefix;
    k[1..].copy_from_slice(uuid.as_bytes());
    Some(k)
}

/// `<workflow> NUL <key>`: keys of different workflows never meet.
fn idempotency_key(workflow: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(workflow.len() + key.len() + 1);
    k.extend_from_slice(workflow.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

fn id_of(key: &[u8]) -> String {
    uuid::Uuid::from_slice(key.get(1..).unwrap_or_default())
        .map(|u| u.to_string())
        .unwrap_or_default()
}

fn decode<T: serde::de::DeserializeOwned>(k: &[u8], v: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(v).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(k).into_owned(),
        message: e.to_string(),
    })
}

fn encode<T: serde::Serialize>(v: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| StoreError::Db(format!("cannot encode: {e}")))
}

impl SledStore {
    /// Opens (or creates) the database under `dir`.
    pub fn open(dir: &Path) -> StoreResult<SledStore> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::File {
            path: dir.display().to_string(),
            message: e.to_string(),
        })?;
        let db = sled::Config::new()
            .path(dir.join("db"))
            .flush_every_ms(Some(500))
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(|e| {
                let text = e.to_string();
                if text.contains("lock")
                    || text.contains("WouldBlock")
                    || text.contains("temporarily unavailable")
                {
                    StoreError::Locked(dir.display().to_string())
                } else {
                    db_err(e)
                }
            })?;
        let runs = db.open_tree("runs").map_err(db_err)?;
        let versions = db.open_tree("versions").map_err(db_err)?;
        let idempotency = db.open_tree("idempotency").map_err(db_err)?;
        let (tx, rx) = mpsc::sync_channel(BACKLOG);
        let (writer_db, writer_runs) = (db.clone(), runs.clone());
        let writer = std::thread::Builder::new()
            .name("hookflow-writer".into())
            .spawn(move || write_loop(writer_db, writer_runs, rx))
            .map_err(|e| StoreError::Db(format!("cannot start the writer thread: {e}")))?;
        Ok(SledStore {
            db,
            runs,
            versions,
            idempotency,
            jobs: Some(tx),
            writer: Some(writer),
        })
    }

    fn submit(&self, job: Job) -> Result<(), Job> {
        match &self.jobs {
            Some(tx) => tx.send(job).map_err(|e| e.0),
            None => Err(job),
        }
    }
}

fn add_to_batch(batch: &mut sled::Batch, mut w: Write) -> StoreResult<()> {
    if w.input_stored {
        // The input holds the trigger context; do not store it twice.
        w.record.trigger = Json::Null;
    }
    let id = &w.record.id;
    let (Some(rk), Some(pk), Some(ik)) = (key(RECORD, id), key(PENDING, id), key(INPUT, id)) else {
        return Err(StoreError::Db(format!("invalid execution id {id}")));
    };
    batch.insert(&rk[..], encode(&w.record)?);
    match &w.pending {
        Some(p) => batch.insert(&pk[..], encode(p)?),
        None if w.clear_pending => batch.remove(&pk[..]),
        None => {}
    }
    if let Some(input) = &w.input {
        batch.insert(&ik[..], encode(input)?);
    }
    Ok(())
}

/// The writer: takes every job waiting, applies the writes as one batch,
/// syncs once if anyone waits for durability, then answers them.
fn write_loop(db: sled::Db, runs: sled::Tree, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        if matches!(first, Job::Write(_, None)) {
            // Nobody waits on this one: let a batch gather. Under load the
            // writer is then rarely parked, so submitters seldom pay to wake it.
            std::thread::sleep(GATHER);
        }
        let mut batch = sled::Batch::default();
        let mut waiters = Vec::new();
        let mut failed: Vec<(oneshot::Sender<StoreResult<()>>, StoreError)> = Vec::new();
        for job in std::iter::once(first).chain(rx.try_iter().take(MAX_BATCH - 1)) {
            match job {
                Job::Write(w, waiter) => match (add_to_batch(&mut batch, *w), waiter) {
                    (Ok(()), Some(tx)) => waiters.push(tx),
                    (Ok(()), None) => {}
                    (Err(e), Some(tx)) => failed.push((tx, e)),
                    (Err(error), None) => {
                        tracing::error!(message = "Could not write an execution record.", %error)
                    }
                },
                Job::Barrier(tx) => waiters.push(tx),
            }
        }
        let mut result = runs.apply_batch(batch).map_err(|e| e.to_string());
        if result.is_ok() && !waiters.is_empty() {
            result = db.flush().map(|_| ()).map_err(|e| e.to_string());
        }
        if let Err(error) = &result {
            tracing::error!(message = "Could not write execution records.", %error);
        }
        for tx in waiters {
            let _ = tx.send(result.clone().map_err(StoreError::Db));
        }
        for (tx, e) in failed {
            let _ = tx.send(Err(e));
        }
    }
}

fn stopped() -> StoreError {
    StoreError::Db("the store's writer has stopped".into())
}

impl Store for SledStore {
    fn put(&self, write: Write) {
        if self.submit(Job::Write(Box::new(write), None)).is_err() {
            tracing::error!(message = "The store's writer has stopped; a record was not written.");
        }
    }

    fn put_durable(&self, write: Write) -> BoxFuture<'_, StoreResult<()>> {
        let (tx, rx) = oneshot::channel();
        let submitted = self.submit(Job::Write(Box::new(write), Some(tx))).is_ok();
        Box::pin(async move {
            if !submitted {
                return Err(stopped());
            }
            rx.await.map_err(|_| stopped())?
        })
    }

    fn flush(&self) -> BoxFuture<'_, StoreResult<()>> {
        let (tx, rx) = oneshot::channel();
        let submitted = self.submit(Job::Barrier(tx)).is_ok();
        Box::pin(async move {
            if !submitted {
                return Err(stopped());
            }
            rx.await.map_err(|_| stopped())?
        })
    }

    fn input(&self, id: &str) -> StoreResult<Option<Json>> {
        let Some(k) = key(INPUT, id) else {
            return Ok(None);
        };
        match self.runs.get(k).map_err(db_err)? {
            Some(v) => decode(&k, &v).map(Some),
            None => Ok(None),
        }
    }

    fn get(&self, id: &str) -> StoreResult<Option<ExecutionRecord>> {
        let Some(k) = key(RECORD, id) else {
            return Ok(None);
        };
        let Some(v) = self.runs.get(k).map_err(db_err)? else {
            return Ok(None);
        };
        let mut record: ExecutionRecord = decode(&k, &v)?;
        if record.trigger.is_null() {
            // Kept with the input: rebuild it, redacted.
            if let Some(mut trigger) = self
                .input(id)?
                .and_then(|mut i| i.get_mut("trigger").map(Json::take))
            {
                if let Some(Json::Object(headers)) = trigger.get_mut("headers") {
                    crate::record::redact_headers(headers);
                }
                record.trigger = trigger;
            }
        }
        Ok(Some(record))
    }
    fn list(&self, f: &ExecutionFilter) -> StoreResult<(Vec<ExecutionRecord>, Option<String>)> {
        let start = [RECORD];
        let end = match f.cursor.as_deref().and_then(|c| key(RECORD, c)) {
            Some(k) => k.to_vec(),
            None => vec![RECORD + 1],
        };
        let limit = f.limit.max(1);
        let mut out = Vec::new();
        let mut more = false;
        for item in self.runs.range(start.to_vec()..end).rev() {
            let (k, v) = item.map_err(db_err)?;
            let record: ExecutionRecord = decode(&k, &v)?;
            if f.since_ms.is_some_and(|s| record.started_ms < s) {
                // Ids are time-ordered: everything further back is older still.
                break;
            }
            if f.until_ms.is_some_and(|u| record.started_ms > u)
                || f.workflow.as_ref().is_some_and(|w| *w != record.workflow)
                || f.status.is_some_and(|s| s != record.status)
            {
                continue;
            }
            if out.len() == limit {
                more = true;
                break;
            }
            out.push(record);
        }
        let cursor = if more {
            out.last().map(|r| r.id.clone())
        } else {
            None
        };
        Ok((out, cursor))
    }

    fn pending(&self) -> StoreResult<Vec<(ExecutionRecord, Pending)>> {
        let mut out = Vec::new();
        for item in self.runs.scan_prefix([PENDING]) {
            let (k, v) = item.map_err(db_err)?;
            let pending: Pending = decode(&k, &v)?;
            let id = id_of(&k);
            match self.get(&id)? {
                Some(record) => out.push((record, pending)),
                None => {
                    tracing::warn!(message = "Pending run without a record; skipped.", execution_id = %id)
                }
            }
        }
        Ok(out)
    }

    fn put_version(&self, version: &str, source: &str) -> StoreResult<()> {
        if self
            .versions
            .contains_key(version.as_bytes())
            .map_err(db_err)?
        {
            return Ok(());
        }
        self.versions
            .insert(version.as_bytes(), source.as_bytes())
            .map_err(db_err)?;
        Ok(())
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
        let k = idempotency_key(workflow, key);
        match self.idempotency.get(&k).map_err(db_err)? {
            Some(v) => {
                let entry: IdempotencyEntry = decode(&k, &v)?;
                Ok((entry.expires_ms > now_ms).then_some(entry))
            }
            None => Ok(None),
        }
    }

    fn put_idempotency(
        &self,
        workflow: &str,
        key: &str,
        entry: &IdempotencyEntry,
    ) -> StoreResult<()> {
        self.idempotency
            .insert(idempotency_key(workflow, key), encode(entry)?)
            .map_err(db_err)?;
        Ok(())
    }

    fn remove_expired_idempotency(&self, now_ms: u64) -> StoreResult<usize> {
        let mut batch = sled::Batch::default();
        let mut removed = 0;
        for item in self.idempotency.iter() {
            let (k, v) = item.map_err(db_err)?;
            let entry: IdempotencyEntry = decode(&k, &v)?;
            if entry.expires_ms <= now_ms {
                batch.remove(k);
                removed += 1;
            }
        }
        self.idempotency.apply_batch(batch).map_err(db_err)?;
        Ok(removed)
    }

    fn remove_finished_before(&self, cutoff_ms: u64) -> StoreResult<usize> {
        let mut removed = 0;
        let mut batch = sled::Batch::default();
        for item in self.runs.scan_prefix([RECORD]) {
            let (k, v) = item.map_err(db_err)?;
            let record: ExecutionRecord = decode(&k, &v)?;
            if record.started_ms >= cutoff_ms {
                break;
            }
            if record.status.is_finished() {
                batch.remove(k.clone());
                if let Some(ik) = key(INPUT, &record.id) {
                    batch.remove(&ik[..]);
                }
                removed += 1;
            }
        }
        self.runs.apply_batch(batch).map_err(db_err)?;
        Ok(removed)
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        // Let the writer apply what is queued, then release its handle on the
        // database and sync.
        self.jobs.take();
        if let Some(t) = self.writer.take() {
            let _ = t.join();
        }
        let _ = self.db.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RunStatus;
    use serde_json::json;

    fn record(id: &str, workflow: &str, status: RunStatus, started_ms: u64) -> ExecutionRecord {
        ExecutionRecord {
            id: id.into(),
            workflow: workflow.into(),
            version: "v1".into(),
            status,
            started_at: String::new(),
            finished_at: None,
            started_ms,
            trigger: json!({}),
            jobs: Vec::new(),
            response: None,
            retry_of: None,
            error: None,
        }
    }

    fn write(record: ExecutionRecord, pending: Option<Pending>, input: Option<Json>) -> Write {
        Write {
            record,
            clear_pending: pending.is_none(),
            input_stored: input.is_some(),
            pending,
            input,
        }
    }

    /// Opens a database just closed. sled's own background threads release
    /// the folder's lock shortly after the store is dropped, so wait a little.
    fn reopen(dir: &Path) -> SledStore {
        for _ in 0..100 {
            match SledStore::open(dir) {
                Ok(store) => return store,
                Err(StoreError::Locked(_)) => {
                    std::thread::sleep(std::time::Duration::from_millis(50))
                }
                Err(e) => panic!("reopen: {e}"),
            }
        }
        panic!("the database stayed locked for 5 s after it was closed")
    }

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|_| uuid::Uuid::now_v7().to_string()).collect()
    }

    #[tokio::test]
    async fn durable_writes_survive_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ids = ids(3);
        {
            let store = SledStore::open(dir.path()).expect("open");
            let p = Pending {
                status: RunStatus::Queued,
                state: json!({"at": 1}),
                wake_at: None,
            };
            store
                .put_durable(write(
                    record(&ids[0], "a", RunStatus::Queued, 1),
                    Some(p),
                    Some(json!({"body": 1})),
                ))
                .await
                .expect("durable put");
            store.put(write(
                record(&ids[1], "a", RunStatus::Resolved, 2),
                None,
                None,
            ));
            store.put_version("v1", "title: x").expect("version");
            // Dropping the store applies what is queued.
        }
        let store = reopen(dir.path());
        let pending = store.pending().expect("pending");
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].0.id, ids[0]);
        assert_eq!(pending[0].1.state, json!({"at": 1}));
        assert_eq!(
            store.get(&ids[1]).expect("get").map(|r| r.status),
            Some(RunStatus::Resolved)
        );
        assert_eq!(
            store.input(&ids[0]).expect("input"),
            Some(json!({"body": 1}))
        );
        assert_eq!(
            store.version("v1").expect("version").as_deref(),
            Some("title: x")
        );
        // Writes apply in order: finishing removes the pending entry.
        store.put(write(
            record(&ids[0], "a", RunStatus::Running, 1),
            Some(Pending {
                status: RunStatus::Running,
                state: json!({"at": 2}),
                wake_at: None,
            }),
            None,
        ));
        store.put(write(
            record(&ids[0], "a", RunStatus::Resolved, 1),
            None,
            None,
        ));
        store.flush().await.expect("flush");
        assert!(store.pending().expect("pending").is_empty());
        assert_eq!(
            store.get(&ids[0]).expect("get").map(|r| r.status),
            Some(RunStatus::Resolved)
        );
        assert_eq!(store.get("not-a-uuid").expect("get"), None);
    }

    #[tokio::test]
    async fn listing_filters_and_pages_newest_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SledStore::open(dir.path()).expect("open");
        let ids = ids(5);
        for (i, id) in ids.iter().enumerate() {
            let wf = if i % 2 == 0 { "even" } else { "odd" };
            store.put(write(
                record(id, wf, RunStatus::Resolved, 100 + i as u64),
                None,
                Some(json!(i)),
            ));
        }
        store.flush().await.expect("flush");
        let page = |f: ExecutionFilter| {
            let (recs, cursor) = store.list(&f).expect("list");
            (recs.into_iter().map(|r| r.id).collect::<Vec<_>>(), cursor)
        };
        let (first, cursor) = page(ExecutionFilter {
            limit: 2,
            ..Default::default()
        });
        assert_eq!(first, vec![ids[4].clone(), ids[3].clone()]);
        assert_eq!(cursor.as_deref(), Some(ids[3].as_str()));
        let (second, cursor) = page(ExecutionFilter {
            limit: 2,
            cursor,
            ..Default::default()
        });
        assert_eq!(second, vec![ids[2].clone(), ids[1].clone()]);
        let (third, cursor) = page(ExecutionFilter {
            limit: 2,
            cursor,
            ..Default::default()
        });
        assert_eq!(third, vec![ids[0].clone()]);
        assert_eq!(cursor, None);
        let (even, _) = page(ExecutionFilter {
            limit: 10,
            workflow: Some("even".into()),
            ..Default::default()
        });
        assert_eq!(even, vec![ids[4].clone(), ids[2].clone(), ids[0].clone()]);
        let (window, _) = page(ExecutionFilter {
            limit: 10,
            since_ms: Some(101),
            until_ms: Some(103),
            ..Default::default()
        });
        assert_eq!(window, vec![ids[3].clone(), ids[2].clone(), ids[1].clone()]);
        assert_eq!(store.remove_finished_before(102).expect("retention"), 2);
        let (left, _) = page(ExecutionFilter {
            limit: 10,
            ..Default::default()
        });
        assert_eq!(left.len(), 3);
        assert_eq!(
            store.input(&ids[0]).expect("input"),
            None,
            "retention removes inputs too"
        );
        assert_eq!(store.input(&ids[2]).expect("input"), Some(json!(2)));
    }

    #[tokio::test]
    async fn idempotency_keys_expire_and_survive_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let entry = IdempotencyEntry {
            execution_id: "e1".into(),
            expires_ms: 1000,
            response: None,
        };
        {
            let store = SledStore::open(dir.path()).expect("open");
            store.put_idempotency("wf", "k", &entry).expect("put");
            store.flush().await.expect("flush");
        }
        let store = reopen(dir.path());
        assert_eq!(
            store.idempotency("wf", "k", 999).expect("get"),
            Some(entry.clone())
        );
        assert_eq!(
            store.idempotency("other", "k", 999).expect("get"),
            None,
            "keys are per workflow"
        );
        assert_eq!(
            store.idempotency("wf", "k", 1000).expect("get"),
            None,
            "expired"
        );
        assert_eq!(store.remove_expired_idempotency(1000).expect("purge"), 1);
        assert_eq!(store.idempotency("wf", "k", 0).expect("get"), None);
    }

    #[tokio::test]
    async fn concurrent_durable_writes_share_syncs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = std::sync::Arc::new(SledStore::open(dir.path()).expect("open"));
        let mut tasks = Vec::new();
        for id in ids(64) {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                s.put_durable(write(record(&id, "a", RunStatus::Resolved, 1), None, None))
                    .await
            }));
        }
        for t in tasks {
            t.await.expect("join").expect("durable");
        }
        let (all, _) = store
            .list(&ExecutionFilter {
                limit: 100,
                ..Default::default()
            })
            .expect("list");
        assert_eq!(all.len(), 64);
    }
}
