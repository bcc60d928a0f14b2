//! A memory store that runs a hook once, inside its first idempotency
//! read: what a request finishing on another worker at that moment does.

use hookflow_model::request::RunInput;
use hookflow_store::record::{ExecutionFilter, ExecutionRecord, IdempotencyEntry, RunSummary};
use hookflow_store::refused::{RefusedFilter, RefusedRequest};
use hookflow_store::{
    Accepted, BoxFuture, IdempotencyClaim, MemoryStore, Resumable, Saved, Store, StoreResult,
};
use std::sync::{Arc, Mutex};

/// The hook: given the store underneath.
pub(super) type Hook = Box<dyn FnOnce(&MemoryStore) + Send>;

#[derive(Default)]
pub(super) struct ReadHook {
    pub inner: Arc<MemoryStore>,
    pub hook: Mutex<Option<Hook>>,
}

impl Store for ReadHook {
    fn accept(&self, run: Accepted) -> BoxFuture<'_, StoreResult<()>> {
        self.inner.accept(run)
    }
    fn save(&self, id: &str, saved: Saved) {
        self.inner.save(id, saved)
    }
    fn woke(&self, id: &str) {
        self.inner.woke(id)
    }
    fn finish(&self, record: ExecutionRecord, durable: bool) {
        self.inner.finish(record, durable)
    }
    fn announce(&self, record: ExecutionRecord) {
        self.inner.announce(record)
    }
    fn flush(&self) -> BoxFuture<'_, StoreResult<()>> {
        self.inner.flush()
    }
    fn get(&self, id: &str) -> StoreResult<Option<ExecutionRecord>> {
        self.inner.get(id)
    }
    fn input(&self, id: &str) -> StoreResult<Option<RunInput>> {
        self.inner.input(id)
    }
    fn list(&self, f: &ExecutionFilter) -> StoreResult<(Vec<RunSummary>, Option<String>)> {
        self.inner.list(f)
    }
    fn unfinished(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<String>> {
        self.inner.unfinished(after, limit)
    }
    fn resumable(&self, id: &str) -> StoreResult<Option<Resumable>> {
        self.inner.resumable(id)
    }
    fn next_wake(&self) -> StoreResult<Option<u64>> {
        self.inner.next_wake()
    }
    fn due(&self, now_ms: u64, limit: usize) -> StoreResult<Vec<String>> {
        self.inner.due(now_ms, limit)
    }
    fn put_version(&self, version: &str, source: &str) -> StoreResult<()> {
        self.inner.put_version(version, source)
    }
    fn version(&self, version: &str) -> StoreResult<Option<String>> {
        self.inner.version(version)
    }
    fn idempotency(
        &self,
        workflow: &str,
        key: &str,
        now_ms: u64,
    ) -> StoreResult<Option<IdempotencyEntry>> {
        let read = self.inner.idempotency(workflow, key, now_ms);
        let hook = self.hook.lock().ok().and_then(|mut h| h.take());
        if let Some(hook) = hook {
            hook(&self.inner);
        }
        read
    }
    fn put_idempotency(&self, claim: IdempotencyClaim) {
        self.inner.put_idempotency(claim)
    }
    fn remove_expired_idempotency(&self, now_ms: u64) -> StoreResult<usize> {
        self.inner.remove_expired_idempotency(now_ms)
    }
    fn remove_finished_before(&self, cutoff_ms: u64) -> StoreResult<usize> {
        self.inner.remove_finished_before(cutoff_ms)
    }
    fn damaged(&self) -> usize {
        self.inner.damaged()
    }
    fn refuse(&self, request: RefusedRequest) {
        self.inner.refuse(request)
    }
    fn refused(
        &self,
        filter: &RefusedFilter,
    ) -> StoreResult<(Vec<RefusedRequest>, Option<String>)> {
        self.inner.refused(filter)
    }
}
