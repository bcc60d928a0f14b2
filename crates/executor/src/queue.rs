//! The queue of SPEC §5 in memory: a bounded count of runs waiting to start,
//! a dispatcher, and a pool of worker permits. The store is the source of
//! truth; this only orders what is already on disk.

use crate::state::RunState;
use crate::{AcceptError, Executor};
use hookflow_metrics::LaneGauge;
use hookflow_model::runtime::Workflow;
use hookflow_model::template::Scope;
use hookflow_store::ExecutionRecord;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
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

/// A run just accepted: everything it needs is in memory.
pub struct NewRun {
    pub record: ExecutionRecord,
    pub state: RunState,
    pub scope: Scope,
    pub workflow: Arc<Workflow>,
    /// Its workflow's metrics, made when the workflow loaded.
    pub handles: Arc<hookflow_metrics::WorkflowMetrics>,
    /// The values of its request's secret-bearing headers to scrub
    /// (`crate::record::header_scrubber`).
    pub headers: Option<Arc<hookflow_model::scrub::Scrubber>>,
    /// When it was queued, its lease (on a shared store) just taken.
    pub leased_at: Instant,
}

/// A run ready for a worker.
pub enum ReadyRun {
    /// Just accepted.
    New(Box<NewRun>),
    /// Resumed after a restart or woken after a delay: read from the store
    /// when a worker takes it (nothing of it is held meanwhile).
    Stored {
        id: String,
        /// When this instance last took its lease (on a shared store), at
        /// the latest.
        leased_at: Instant,
    },
}

pub struct Queue {
    config: QueueConfig,
    waiting: AtomicUsize,
    active: Arc<AtomicUsize>,
    idle: Arc<Notify>,
    shutting_down: AtomicBool,
    tx: mpsc::UnboundedSender<ReadyRun>,
    /// Woken runs: taken before new ones.
    woken_tx: mpsc::UnboundedSender<ReadyRun>,
    rx: Mutex<Option<Receivers>>,
    stop: Arc<Notify>,
    /// `hookflow_runs{state="queued"}`: follows `waiting`.
    queued: LaneGauge,
}

/// A reserved place in the queue; dropping it without pushing gives it back.
pub struct Slot {
    queue: Arc<Queue>,
    used: bool,
}

impl Slot {
    pub fn push(mut self, item: ReadyRun) {
        self.used = true;
        if self.queue.tx.send(item).is_err() {
            tracing::error!(
                message = "The dispatcher has stopped; the run stays on disk for the next start."
            );
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if !self.used {
            self.queue.waiting.fetch_sub(1, Ordering::SeqCst);
            self.queue.queued.dec();
        }
    }
}

/// The dispatcher's two lanes: new (and resumed) runs, and woken runs.
struct Receivers {
    new: mpsc::UnboundedReceiver<ReadyRun>,
    woken: mpsc::UnboundedReceiver<ReadyRun>,
}

impl Queue {
    pub fn new(config: QueueConfig, queued: LaneGauge) -> Queue {
        let (tx, rx) = mpsc::unbounded_channel();
        let (woken_tx, woken_rx) = mpsc::unbounded_channel();
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
            woken_tx,
            rx: Mutex::new(Some(Receivers {
                new: rx,
                woken: woken_rx,
            })),
            stop: Arc::new(Notify::new()),
            queued,
        }
    }

    /// Takes a place in the queue, or says why there is none.
    pub fn reserve(self: &Arc<Self>) -> Result<Slot, AcceptError> {
        if self.is_shutting_down() {
            return Err(AcceptError::ShuttingDown);
        }
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.config.capacity {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(AcceptError::QueueFull);
        }
        self.queued.inc();
        Ok(Slot {
            queue: self.clone(),
            used: false,
        })
    }

    /// Queues a run woken after a delay, whatever the
    /// capacity (waiting runs do not count against it), in a lane the
    /// workers take from first: its time came, and it must not wait behind
    /// thousands of new runs.
    pub fn push_woken(&self, item: ReadyRun) {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        self.queued.inc();
        if self.woken_tx.send(item).is_err() {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            self.queued.dec();
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Resolves once shutdown began.
    pub async fn stopped(&self) {
        loop {
            let stop = self.stop.notified();
            if self.is_shutting_down() {
                return;
            }
            stop.await;
        }
    }

    /// Starts the dispatcher on the current Tokio runtime.
    pub fn start(self: &Arc<Self>, executor: Executor) {
        let Some(Receivers {
            new: mut rx,
            woken: mut woken_rx,
        }) = self.rx.lock().ok().and_then(|mut r| r.take())
        else {
            return;
        };
        let queue = self.clone();
        let permits = Arc::new(Semaphore::new(self.config.workers));
        tokio::spawn(async move {
            loop {
                let item = tokio::select! {
                    biased;
                    item = woken_rx.recv() => item,
                    item = rx.recv() => item,
                    _ = queue.stopped() => None,
                };
                let Some(item) = item else { break };
                let permit = tokio::select! {
                    p = permits.clone().acquire_owned() => p,
                    _ = queue.stopped() => break,
                };
                let Ok(permit) = permit else { break };
                if queue.is_shutting_down() {
                    break;
                }
                queue.waiting.fetch_sub(1, Ordering::SeqCst);
                queue.queued.dec();
                queue.active.fetch_add(1, Ordering::SeqCst);
                let exec = executor.clone();
                let active = queue.active.clone();
                let idle = queue.idle.clone();
                // Boxed: a run's future is kilobytes, and a task moves its
                // future (and the stage it ends in) by value several times.
                tokio::spawn(Box::pin(async move {
                    // Counted down however the task ends, a panic included:
                    // a shutdown waits for runs, not for a lost count.
                    let _done = Finished {
                        active,
                        idle,
                        _permit: permit,
                    };
                    exec.execute(item).await;
                }));
            }
        });
    }

    /// Stops dispatching and waits up to `grace` for running runs.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.stop.notify_waiters();
        let deadline = tokio::time::Instant::from_std(hookflow_model::time::deadline_after(grace));
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

/// A worker's run ended: its permit freed and the active count lowered (the
/// last one wakes a waiting shutdown). Runs on drop, so an unwinding task
/// counts down too.
struct Finished {
    active: Arc<AtomicUsize>,
    idle: Arc<tokio::sync::Notify>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Finished {
    fn drop(&mut self) {
        if self.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }
}
