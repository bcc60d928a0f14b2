//! An in-memory [`Store`] for runs that need no durability (`hookflow run`,
//! `hookflow test`): the same contract, nothing on disk.

use crate::record::{ExecutionFilter, ExecutionRecord, IdempotencyEntry, Pending, RunInput};
use crate::{BoxFuture, Store, StoreResult, Write};
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Default)]
struct Data {
    records: BTreeMap<String, ExecutionRecord>,
    pending: BTreeMap<String, Pending>,
    inputs: BTreeMap<String, RunInput>,
    versions: BTreeMap<String, String>,
    idempotency: BTreeMap<(String, String), IdempotencyEntry>,
}

/// Everything in memory, lost when dropped.
#[derive(Default)]
pub struct MemoryStore {
    data: Mutex<Data>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Data) -> T) -> T {
        match self.data.lock() {
            Ok(mut d) => f(&mut d),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }
}

impl Store for MemoryStore {
    fn put(&self, w: Write) {
        self.with(|d| {
            let id = w.record.id.clone();
            match w.pending {
                Some(p) => {
                    d.pending.insert(id.clone(), p);
                }
                None if w.clear_pending => {
                    d.pending.remove(&id);
                }
                None => {}
            }
            if let Some(input) = w.input {
                d.inputs.insert(id.clone(), input);
            }
            d.records.insert(id, w.record);
        });
    }

    fn put_durable(&self, write: Write) -> BoxFuture<'_, StoreResult<()>> {
        self.put(write);
        Box::pin(async { Ok(()) })
    }

    fn flush(&self) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async { Ok(()) })
    }

    fn input(&self, id: &str) -> StoreResult<Option<RunInput>> {
        Ok(self.with(|d| d.inputs.get(id).cloned()))
    }

    fn get(&self, id: &str) -> StoreResult<Option<ExecutionRecord>> {
        Ok(self.with(|d| d.records.get(id).cloned()))
    }

    fn list(&self, f: &ExecutionFilter) -> StoreResult<(Vec<ExecutionRecord>, Option<String>)> {
        Ok(self.with(|d| {
            let rows: Vec<ExecutionRecord> = d
                .records
                .values()
                .rev()
                .filter(|r| f.workflow.as_ref().is_none_or(|w| *w == r.workflow))
                .filter(|r| f.status.is_none_or(|s| s == r.status))
                .take(f.limit.max(1))
                .cloned()
                .collect();
            (rows, None)
        }))
    }

    fn pending(&self) -> StoreResult<Vec<(ExecutionRecord, Pending)>> {
        Ok(self.with(|d| {
            d.pending
                .iter()
                .filter_map(|(id, p)| d.records.get(id).map(|r| (r.clone(), p.clone())))
                .collect()
        }))
    }

    fn put_version(&self, version: &str, source: &str) -> StoreResult<()> {
        self.with(|d| d.versions.insert(version.to_string(), source.to_string()));
        Ok(())
    }

    fn version(&self, version: &str) -> StoreResult<Option<String>> {
        Ok(self.with(|d| d.versions.get(version).cloned()))
    }

    fn remove_finished_before(&self, cutoff_ms: u64) -> StoreResult<usize> {
        Ok(self.with(|d| {
            let old: Vec<String> = d
                .records
                .values()
                .filter(|r| r.started_ms < cutoff_ms && r.status.is_finished())
                .map(|r| r.id.clone())
                .collect();
            for id in &old {
                d.records.remove(id);
                d.inputs.remove(id);
            }
            old.len()
        }))
    }

    fn idempotency(
        &self,
        workflow: &str,
        key: &str,
        now_ms: u64,
    ) -> StoreResult<Option<IdempotencyEntry>> {
        Ok(self.with(|d| {
            d.idempotency
                .get(&(workflow.to_string(), key.to_string()))
                .filter(|e| e.expires_ms > now_ms)
                .cloned()
        }))
    }

    fn put_idempotency(
        &self,
        workflow: &str,
        key: &str,
        entry: &IdempotencyEntry,
    ) -> StoreResult<()> {
        self.with(|d| {
            d.idempotency
                .insert((workflow.to_string(), key.to_string()), entry.clone())
        });
        Ok(())
    }

    fn remove_expired_idempotency(&self, now_ms: u64) -> StoreResult<usize> {
        Ok(self.with(|d| {
            let before = d.idempotency.len();
            d.idempotency.retain(|_, e| e.expires_ms > now_ms);
            before - d.idempotency.len()
        }))
    }
}
