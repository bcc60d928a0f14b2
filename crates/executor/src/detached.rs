//! Sync runs that go on after their caller has its answer: a retried sync
//! run (the caller got its id at once) and the rest of a sync run answered
//! by its timeout. No request waits for them, so they are kept here: a
//! graceful shutdown gives them its grace, and records the ones still going
//! then as failed (a sync run does not resume), so that an id someone was
//! given never disappears from the history.

use hookflow_model::runtime::Workflow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::{AbortHandle, JoinHandle};

/// What a detached run's failed record is made from.
#[derive(Clone)]
pub(crate) struct Going {
    pub id: String,
    pub workflow: Arc<Workflow>,
    pub started_ms: u64,
    pub retry_of: Option<String>,
}

/// The last token given, and each held run by token with the task that
/// runs it (once spawned).
type Runs = (u64, HashMap<u64, (Going, Option<AbortHandle>)>);

/// The sync runs going on without a caller.
#[derive(Default)]
pub(crate) struct Detached {
    runs: Mutex<Runs>,
    idle: Notify,
}

/// A detached run's place; dropped when its task ends, however it ends.
pub(crate) struct Held {
    detached: Arc<Detached>,
    token: u64,
}

impl Detached {
    fn runs(&self) -> MutexGuard<'_, Runs> {
        self.runs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `going` until the returned place is dropped. One run may be
    /// held twice (a retry whose run then answers by its timeout).
    pub fn hold(self: &Arc<Self>, going: Going) -> Held {
        let mut runs = self.runs();
        runs.0 += 1;
        let token = runs.0;
        runs.1.insert(token, (going, None));
        Held {
            detached: self.clone(),
            token,
        }
    }

    /// Waits up to `grace` for every detached run to end; stops the tasks
    /// of those still going then (so that none of them finishes after the
    /// record that says it stopped), and returns them, each once.
    pub async fn settled(&self, grace: Duration) -> Vec<Going> {
        let deadline = tokio::time::Instant::from_std(hookflow_model::time::deadline_after(grace));
        loop {
            let idle = self.idle.notified();
            if self.runs().1.is_empty() {
                return Vec::new();
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                let runs = self.runs();
                let mut left: Vec<Going> = Vec::with_capacity(runs.1.len());
                for (going, task) in runs.1.values() {
                    if let Some(task) = task {
                        task.abort();
                    }
                    left.push(going.clone());
                }
                left.sort_by(|a, b| a.id.cmp(&b.id));
                left.dedup_by(|a, b| a.id == b.id);
                return left;
            }
        }
    }
}

impl Detached {
    /// Runs `run` in a task of its own, held as `going` until the task
    /// ends, however it ends (and stopped after the shutdown's grace).
    pub fn spawn<F>(self: &Arc<Self>, going: Going, run: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let held = self.hold(going);
        // The place moves into the task once the task is known (its handle
        // is what the shutdown stops).
        let (tx, rx) = tokio::sync::oneshot::channel::<Held>();
        let task = tokio::spawn(async move {
            let _held = rx.await;
            run.await;
        });
        held.runs_in(&task);
        let _ = tx.send(held);
    }
}

impl Held {
    /// Keeps the task that runs this run, to stop it after the grace.
    pub fn runs_in<T>(&self, task: &JoinHandle<T>) {
        if let Some(entry) = self.detached.runs().1.get_mut(&self.token) {
            entry.1 = Some(task.abort_handle());
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut runs = self.detached.runs();
        runs.1.remove(&self.token);
        if runs.1.is_empty() {
            self.detached.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookflow_model::load::{load_source, LoadOptions};
    use hookflow_model::SecretPolicy;

    fn going(id: &str) -> Going {
        let text = "title: T\nenabled: true\ntrigger: { type: webhook, mode: sync }\nnodes:\n  - type: log\n    message: x\n";
        let loaded = load_source(
            "t",
            std::path::Path::new("t.yaml"),
            text,
            &LoadOptions::process_env(SecretPolicy::Warn),
        );
        Going {
            id: id.to_string(),
            workflow: loaded.workflow.expect("loads"),
            started_ms: 1,
            retry_of: None,
        }
    }

    #[tokio::test]
    async fn a_shutdown_waits_for_held_runs_and_names_those_left() {
        let detached = Arc::new(Detached::default());
        assert!(detached.settled(Duration::from_secs(5)).await.is_empty());

        // A run that ends within the grace is waited for, and not left.
        let held = detached.hold(going("a"));
        let ends = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(held);
        });
        assert!(detached.settled(Duration::from_secs(5)).await.is_empty());
        ends.await.expect("ends");

        // A run held twice and still going after the grace is named once,
        // and its task is stopped (it must not finish after its record).
        let _outer = detached.hold(going("b"));
        let _inner = detached.hold(going("b"));
        let other = detached.hold(going("c"));
        let task = tokio::spawn(tokio::time::sleep(Duration::from_secs(30)));
        other.runs_in(&task);
        let left = detached.settled(Duration::from_millis(50)).await;
        let ids: Vec<&str> = left.iter().map(|g| g.id.as_str()).collect();
        assert_eq!(ids, ["b", "c"]);
        let stopped = tokio::time::timeout(Duration::from_secs(5), task).await;
        assert!(
            stopped.is_ok_and(|r| r.is_err_and(|e| e.is_cancelled())),
            "the task was stopped"
        );
    }
}
