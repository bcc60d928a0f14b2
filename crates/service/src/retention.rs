//! Retention: finished records older than `--retention` and expired
//! idempotency keys are removed in the background.

use hookflow_model::time::now_millis;
use hookflow_store::Store;
use std::sync::Arc;
use std::time::Duration;

/// How often retention runs: often, so that each pass removes little and
/// the store reuses the space at once (SPEC: at least once a minute).
const EVERY: Duration = Duration::from_secs(10);

/// Removes expired idempotency keys and old finished records at once, then
/// every ten seconds, until the task is aborted. A pass reads and deletes
/// synchronously, for a good part of a second under load: it runs on the
/// blocking pool, never on a runtime worker, where it would hold up every
/// run (and the dispatcher) that worker has.
pub async fn run(store: Arc<dyn Store>, retention: Duration) {
    loop {
        let store = store.clone();
        let pass = tokio::task::spawn_blocking(move || pass(store.as_ref(), retention));
        if let Err(error) = pass.await {
            tracing::error!(message = "A retention pass failed.", %error);
        }
        tokio::time::sleep(EVERY).await;
    }
}

fn pass(store: &dyn Store, retention: Duration) {
    let cutoff =
        now_millis().saturating_sub(u64::try_from(retention.as_millis()).unwrap_or(u64::MAX));
    if let Err(error) = store.remove_expired_idempotency(now_millis()) {
        tracing::warn!(message = "Idempotency key expiry failed.", %error);
    }
    match store.remove_finished_before(cutoff) {
        Ok(0) => {}
        Ok(n) => tracing::info!(message = "Removed old execution records.", count = n),
        Err(error) => tracing::warn!(message = "Retention failed.", %error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookflow_store::record::{
        ExecutionFilter, ExecutionRecord, IdempotencyEntry, RunInput, RunSummary,
    };
    use hookflow_store::{
        Accepted, BoxFuture, IdempotencyClaim, MemoryStore, RefusedFilter, RefusedRequest,
        Resumable, Saved, StoreResult,
    };
    use std::sync::mpsc;
    use std::sync::Mutex;

    /// A memory store whose removal of old records holds its thread until
    /// the test lets it go (or five seconds pass), as a large pass on disk
    /// holds it for a good part of a second.
    struct SlowPass {
        inner: MemoryStore,
        entered: Mutex<mpsc::Sender<()>>,
        release: Mutex<mpsc::Receiver<()>>,
        /// Whether the pass was let go by the test (not by the timeout).
        released: Mutex<Option<bool>>,
    }

    impl Store for SlowPass {
        fn remove_finished_before(&self, cutoff_ms: u64) -> StoreResult<usize> {
            let _ = self.entered.lock().map(|tx| tx.send(()));
            let released = self
                .release
                .lock()
                .map(|rx| rx.recv_timeout(Duration::from_secs(5)).is_ok())
                .unwrap_or(false);
            if let Ok(mut slot) = self.released.lock() {
                slot.get_or_insert(released);
            }
            self.inner.remove_finished_before(cutoff_ms)
        }
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
        fn list(&self, filter: &ExecutionFilter) -> StoreResult<(Vec<RunSummary>, Option<String>)> {
            self.inner.list(filter)
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
            self.inner.idempotency(workflow, key, now_ms)
        }
        fn put_idempotency(&self, claim: IdempotencyClaim) {
            self.inner.put_idempotency(claim)
        }
        fn remove_expired_idempotency(&self, now_ms: u64) -> StoreResult<usize> {
            self.inner.remove_expired_idempotency(now_ms)
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

    /// A retention pass that takes long never holds up the runtime it was
    /// started from: on a runtime of one thread, the test's own task runs
    /// (and lets the pass go) while the pass is in the store. Were the pass
    /// run on that thread, nothing else would run until the store gave up
    /// after five seconds, and the pass would report it was not let go.
    #[test]
    fn a_slow_pass_leaves_the_runtime_free() {
        let (entered_tx, entered_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel();
        let store = Arc::new(SlowPass {
            inner: MemoryStore::new(),
            entered: Mutex::new(entered_tx),
            release: Mutex::new(release_rx),
            released: Mutex::new(None),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let task = tokio::spawn(run(store.clone(), Duration::from_secs(60)));
            // Wait (on this runtime's only thread) until the pass is inside
            // the store; every step yields to the runtime, bounded.
            let mut inside = false;
            for _ in 0..500 {
                if entered_rx.try_recv().is_ok() {
                    inside = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert!(inside, "the retention pass never reached the store");
            // A timer on this runtime still fires while the pass is held.
            tokio::time::sleep(Duration::from_millis(5)).await;
            release_tx.send(()).expect("the pass is waiting");
            for _ in 0..500 {
                if store.released.lock().map(|s| s.is_some()).unwrap_or(false) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            task.abort();
        });
        let released = *store.released.lock().expect("not poisoned");
        assert_eq!(
            released,
            Some(true),
            "the pass ran on the runtime's thread: nothing else ran while it waited"
        );
    }
}
