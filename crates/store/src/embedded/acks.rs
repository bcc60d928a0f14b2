//! Answers to durable writes, one wake per thread per turn.
//!
//! A task on a current-thread runtime (actix's HTTP workers) that waits for
//! a durable write is woken from the writer's thread, and Tokio wakes such a
//! runtime with a write to its event fd for every task woken from outside,
//! whether the runtime sleeps or not: one system call per acknowledgement,
//! ~18 per turn under load. So a waiter submitted from a task on such a
//! runtime names that runtime's inbox, a task of its own there; the writer
//! hands each inbox its turn's answers at once (one wake), and the inbox
//! answers its waiters from inside the runtime, where a wake is a push to a
//! local queue. Anywhere else the writer answers the waiter itself.
//!
//! So an answer through an inbox arrives only while its runtime runs: a
//! durable write's future is awaited in the task that submitted it (as
//! every caller does), never blocked on from inside one of that runtime's
//! tasks.

use crate::{StoreError, StoreResult};
use std::cell::RefCell;
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::{mpsc, oneshot};

type Reply = oneshot::Sender<StoreResult<()>>;
type Answers = Vec<(Reply, StoreResult<()>)>;

/// Where a durable write's answer goes.
#[derive(Debug)]
pub(crate) struct Waiter {
    reply: Reply,
    inbox: Option<Inbox>,
}

impl Waiter {
    /// A waiter answered on `reply`, through the inbox of the runtime whose
    /// task calls this, if it has one.
    pub(crate) fn new(reply: Reply) -> Waiter {
        Waiter {
            reply,
            inbox: Inbox::here(),
        }
    }
}

/// A current-thread runtime's inbox: a channel to its answering task.
#[derive(Debug, Clone)]
struct Inbox(mpsc::UnboundedSender<Answers>);

thread_local! {
    /// This thread's inbox and the runtime it lives in.
    static HERE: RefCell<Option<(tokio::runtime::Id, Inbox)>> = const { RefCell::new(None) };
}

impl Inbox {
    /// The inbox of the current-thread runtime driving the task that calls
    /// this, started on first use; `None` outside a task (a `block_on`, a
    /// plain thread, a blocking pool thread) or on a multi-thread runtime,
    /// which wakes a thread only when one sleeps.
    fn here() -> Option<Inbox> {
        // Inside a task's poll on a current-thread runtime, that runtime is
        // being driven by this very thread: the inbox's task will run.
        tokio::task::try_id()?;
        let handle = Handle::try_current().ok()?;
        if handle.runtime_flavor() != RuntimeFlavor::CurrentThread {
            return None;
        }
        let runtime = handle.id();
        HERE.try_with(|here| {
            let mut here = here.try_borrow_mut().ok()?;
            if let Some((id, inbox)) = here.as_ref() {
                if *id == runtime && !inbox.0.is_closed() {
                    return Some(inbox.clone());
                }
            }
            let (tx, mut rx) = mpsc::unbounded_channel::<Answers>();
            handle.spawn(async move {
                while let Some(answers) = rx.recv().await {
                    answer_all(answers);
                }
            });
            let inbox = Inbox(tx);
            *here = Some((runtime, inbox.clone()));
            Some(inbox)
        })
        .ok()
        .flatten()
    }
}

fn answer_all(answers: Answers) {
    for (reply, result) in answers {
        let _ = reply.send(result);
    }
}

/// Answers every waiter of a turn with `result`: each inbox gets its
/// answers in one message, the rest are answered from here.
pub(crate) fn answer(waiters: Vec<Waiter>, result: &Result<(), String>) {
    let answer = || result.clone().map_err(StoreError::Db);
    // A turn's waiters come from a few runtimes (one per HTTP worker).
    let mut inboxes: Vec<(Inbox, Answers)> = Vec::new();
    for waiter in waiters {
        match waiter.inbox {
            Some(inbox) => match inboxes.iter_mut().find(|(i, _)| i.0.same_channel(&inbox.0)) {
                Some((_, answers)) => answers.push((waiter.reply, answer())),
                None => inboxes.push((inbox, vec![(waiter.reply, answer())])),
            },
            None => {
                let _ = waiter.reply.send(answer());
            }
        }
    }
    for (inbox, answers) in inboxes {
        // Its runtime has ended: whoever waited there is gone too, but
        // answer from here all the same.
        if let Err(returned) = inbox.0.send(answers) {
            answer_all(returned.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_a_task_the_writer_answers_itself() {
        let (tx, mut rx) = oneshot::channel();
        let waiter = Waiter::new(tx);
        assert!(waiter.inbox.is_none());
        answer(vec![waiter], &Ok(()));
        assert!(matches!(rx.try_recv(), Ok(Ok(()))));
    }

    #[test]
    fn a_current_thread_task_is_answered_through_its_inbox() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let (waiters, receivers): (Vec<_>, Vec<_>) = runtime.block_on(async {
            tokio::spawn(async {
                (0..3)
                    .map(|_| {
                        let (tx, rx) = oneshot::channel();
                        (Waiter::new(tx), rx)
                    })
                    .unzip()
            })
            .await
            .expect("task")
        });
        // One inbox for all three, and the same one.
        let first = waiters[0].inbox.clone().expect("an inbox");
        assert!(waiters
            .iter()
            .all(|w| w.inbox.as_ref().is_some_and(|i| i.0.same_channel(&first.0))));
        // Answered from another thread, as the writer does.
        std::thread::spawn(move || answer(waiters, &Err("disk full".into())))
            .join()
            .expect("writer thread");
        let answers = runtime.block_on(async {
            let mut all = Vec::new();
            for rx in receivers {
                all.push(rx.await.expect("answered"));
            }
            all
        });
        assert_eq!(answers.len(), 3);
        assert!(answers
            .iter()
            .all(|a| matches!(a, Err(StoreError::Db(m)) if m == "disk full")));
    }

    #[test]
    fn a_new_runtime_on_the_same_thread_gets_its_own_inbox() {
        let make = || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime");
            let inbox = runtime.block_on(async {
                tokio::spawn(async { Inbox::here() })
                    .await
                    .expect("task")
                    .expect("an inbox")
            });
            (runtime, inbox)
        };
        let (first_runtime, first) = make();
        // The first runtime is still alive but not driven: a waiter on the
        // second must not be answered through the first's inbox.
        let (_second_runtime, second) = make();
        assert!(!first.0.same_channel(&second.0));
        // A runtime that ended leaves a closed inbox; its answers are sent
        // from the writer's thread instead of being lost.
        drop(first_runtime);
        let (tx, mut rx) = oneshot::channel();
        answer(
            vec![Waiter {
                reply: tx,
                inbox: Some(first),
            }],
            &Ok(()),
        );
        assert!(matches!(rx.try_recv(), Ok(Ok(()))));
    }

    #[test]
    fn a_multi_thread_runtime_has_no_inbox() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .expect("runtime");
        let inbox = runtime.block_on(async {
            tokio::spawn(async { Inbox::here().is_some() })
                .await
                .expect("task")
        });
        assert!(!inbox);
    }
}
