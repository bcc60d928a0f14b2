//! How a sync run answers its request and how a run is stopped from outside:
//! [`Responder`] (the first answer wins) and [`Control`] (cancellation between nodes).

use crate::answer::Answer;
use crate::lock;
use hookflow_store::ResponseRecord;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use tokio::sync::Notify;

/// The first answer of a sync run wins: the response node's, or the timeout's.
///
/// The answer goes to its one waiter (the request) without a copy; the
/// record of it, made when it is offered, stays for the run's record.
#[derive(Debug, Default)]
pub struct Responder {
    answered: OnceLock<()>,
    recorded: Mutex<Option<ResponseRecord>>,
    slot: Mutex<Option<Answer>>,
    notify: Notify,
}

impl Responder {
    /// Offers an answer; true when it is the one sent.
    pub fn answer(&self, answer: Answer) -> bool {
        let first = self.answered.set(()).is_ok();
        if first {
            *lock(&self.recorded) = Some(answer.record());
            *lock(&self.slot) = Some(answer);
            self.notify.notify_one();
        }
        first
    }

    /// True once an answer was sent.
    pub fn is_answered(&self) -> bool {
        self.answered.get().is_some()
    }

    /// Takes the record of the answer sent (for the run's record).
    pub fn take_recorded(&self) -> Option<ResponseRecord> {
        lock(&self.recorded).take()
    }

    /// Takes the answer sent, if there is one and nobody took it yet.
    pub fn take(&self) -> Option<Answer> {
        lock(&self.slot).take()
    }

    /// Waits for the answer and takes it (there is one waiter: the request).
    pub async fn wait(&self) -> Answer {
        loop {
            if let Some(a) = self.take() {
                return a;
            }
            self.notify.notified().await;
        }
    }
}

/// Stops a run between nodes (timeouts).
#[derive(Debug, Default)]
pub struct Control {
    cancelled: AtomicBool,
    lost: AtomicBool,
    notify: Notify,
}

impl Control {
    /// Stops the run where it is, writing nothing more: another instance
    /// took it over (this one's lease ran out) and goes on with it.
    pub fn lose(&self) {
        self.lost.store(true, Ordering::SeqCst);
        self.cancel();
    }

    /// True once lost to another instance.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Asks the run to stop as aborted.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// True once cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// Resolves once cancelled.
    pub async fn cancelled(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}
