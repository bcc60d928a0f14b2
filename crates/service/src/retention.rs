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
    every(move || pass(store.as_ref(), retention)).await
}

/// Runs `pass` on the blocking pool at once, then every [`EVERY`].
async fn every(pass: impl Fn() + Send + Sync + 'static) {
    let pass = Arc::new(pass);
    loop {
        let this = pass.clone();
        if let Err(error) = tokio::task::spawn_blocking(move || this()).await {
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
    use std::sync::mpsc;
    use std::sync::Mutex;

    /// A pass that takes long never holds up the runtime it was started
    /// from: on a runtime of one thread, the test's own task runs (and lets
    /// the pass go) while the pass waits, as a large pass on disk takes a
    /// good part of a second. Were the pass run on that thread, nothing else
    /// would run until it gave up after five seconds, and it would report
    /// that it was not let go.
    #[test]
    fn a_slow_pass_leaves_the_runtime_free() {
        let (entered_tx, entered_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (entered_tx, release_rx) = (Mutex::new(entered_tx), Mutex::new(release_rx));
        // Whether the first pass was let go by the test (not by the timeout).
        let released = Arc::new(Mutex::new(None));
        let slow = {
            let released = released.clone();
            move || {
                let _ = entered_tx.lock().map(|tx| tx.send(()));
                let let_go = release_rx
                    .lock()
                    .map(|rx| rx.recv_timeout(Duration::from_secs(5)).is_ok())
                    .unwrap_or(false);
                if let Ok(mut slot) = released.lock() {
                    slot.get_or_insert(let_go);
                }
            }
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let task = tokio::spawn(every(slow));
            // Wait (on this runtime's only thread) until the pass has begun;
            // every step yields to the runtime, bounded.
            let mut inside = false;
            for _ in 0..500 {
                if entered_rx.try_recv().is_ok() {
                    inside = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert!(inside, "the retention pass never began");
            // A timer on this runtime still fires while the pass is held.
            tokio::time::sleep(Duration::from_millis(5)).await;
            release_tx.send(()).expect("the pass is waiting");
            for _ in 0..500 {
                if released.lock().map(|s| s.is_some()).unwrap_or(false) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            task.abort();
        });
        let released = *released.lock().expect("not poisoned");
        assert_eq!(
            released,
            Some(true),
            "the pass ran on the runtime's thread: nothing else ran while it waited"
        );
    }
}
