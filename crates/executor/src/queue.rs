//! The async queue in memory: a bounded count of runs waiting to start, a
//! dispatcher, and a pool of worker permits. The store is the source of
//! truth; this only orders what is already on disk.

use crate::state::RunState;
use crate::{AcceptError, Executor};
use hookflow_model::runtime::Workflow;
use hookflow_store::ExecutionRecord;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Notify, Semaphore};

/// Queue sizes.
#[derive(Debug, Clone, Copy)]
pub struct QueueConfig {
    /// Runs executing at once.
    pub workers: usize,
    /// Runs waiting to start before requests get 503.
    pub capacity: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            workers: 2,
            capacity: 10_000,
        }
    }
}

/// A run ready for a worker: queued, resumed after a crash, or woken after a delay.
pub struct ReadyRun {
    pub record: ExecutionRecord,
    pub state: RunState,
    /// The template variables; `None` when resumed: rebuilt from the stored input.
    pub scope: Option<hookflow_model::template::Scope>,
    /// `None` when resumed: resolved by version.
    pub workflow: Option<Arc<Workflow>>,
}

pub struct Queue {
    config: QueueConfig,
    waiting: AtomicUsize,
    active: Arc<AtomicUsize>,
    idle: Arc<Notify>,
    shutting_down: AtomicBool,
    tx: mpsc::UnboundedSender<ReadyRun>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<ReadyRun>>>,
    stop: Arc<Notify>,
}

/// A reserved place in the queue; dropping it without pushing gives it back.
pub struct Slot<'a> {
    queue: &'a Queue,
    used: bool,
}

impl Slot<'_> {
    pub fn push(mut self, item: ReadyRun) {
        self.used = true;
        if self.queue.tx.send(item).is_err() {
            tracing::error!(
                message = "The dispatcher has stopped; the run stays on disk for the next start."
            );
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if !self.used {
            self.queue.waiting.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Queue {
    pub fn new(config: QueueConfig) -> Queue {
        let (tx, rx) = mpsc::unbounded_channel();
        Queue {
            config: QueueConfig {
                workers: config.workers.max(1),
                capacity: config.capacity,
            },
            waiting: AtomicUsize::new(0),
            active: Arc::new(AtomicUsize::new(0)),
            idle: Arc::new(Notify::new()),
            shutting_down: AtomicBool::new(false),
            tx,
            rx: Mutex::new(Some(rx)),
            stop: Arc::new(Notify::new()),
        }
    }

    /// Takes a place in the queue, or says why there is none.
    pub fn reserve(&self) -> Result<Slot<'_>, AcceptError> {
        if self.is_shutting_down() {
            return Err(AcceptError::ShuttingDown);
        }
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.config.capacity {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(AcceptError::QueueFull);
        }
        Ok(Slot {
            queue: self,
            used: false,
        })
    }

    /// Queues a run found on disk at start, or woken after a delay, whatever the capacity.
    pub fn push_recovered(&self, item: ReadyRun) {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        if self.tx.send(item).is_err() {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Starts the dispatcher on the current Tokio runtime.
    pub fn start(self: &Arc<Self>, executor: Executor) {
        let Some(mut rx) = self.rx.lock().ok().and_then(|mut r| r.take()) else {
            return;
        };
        let queue = self.clone();
        let permits = Arc::new(Semaphore::new(self.config.workers));
        tokio::spawn(async move {
            loop {
                let item = tokio::select! {
                    item = rx.recv() => item,
                    _ = queue.stop.notified() => None,
                };
                let Some(item) = item else { break };
                let permit = tokio::select! {
                    p = permits.clone().acquire_owned() => p,
                    _ = queue.stop.notified() => break,
                };
                let Ok(permit) = permit else { break };
                if queue.is_shutting_down() {
                    break;
                }
                queue.waiting.fetch_sub(1, Ordering::SeqCst);
                queue.active.fetch_add(1, Ordering::SeqCst);
                let exec = executor.clone();
                let active = queue.active.clone();
                let idle = queue.idle.clone();
                tokio::spawn(async move {
                    exec.execute(item).await;
                    drop(permit);
                    if active.fetch_sub(1, Ordering::SeqCst) == 1 {
                        idle.notify_waiters();
                    }
                });
            }
        });
    }

    /// Stops dispatching and waits up to `grace` for running runs.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.stop.notify_waiters();
        self.stop.notify_one();
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let idle = self.idle.notified();
            let active = self.active.load(Ordering::SeqCst);
            if active == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return self.active.load(Ordering::SeqCst);
            }
        }
    }
}
