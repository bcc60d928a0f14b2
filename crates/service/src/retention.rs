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
