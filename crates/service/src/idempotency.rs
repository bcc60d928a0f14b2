//! Idempotency (SPEC §4b): a request whose key was seen within the TTL starts
//! no new run and gets the first run's answer again. Two identical requests
//! arriving together start one run: the second waits for the first here.

use crate::Refusal;
use hookflow_executor::Answer;
use hookflow_store::{IdempotencyClaim, IdempotencyEntry, KeyClaim, Store, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

type Outcome = Option<(String, Answer)>;

/// How often a repeat looks again at a key another instance holds.
const POLL: Duration = Duration::from_millis(50);

/// The idempotency keys whose first request is still being handled, each
/// with the channel its repeats wait on.
#[derive(Default)]
pub struct Claims {
    map: Arc<Mutex<HashMap<String, watch::Receiver<Outcome>>>>,
}

/// A key's slot taken by a retry (`retry/keys.rs`) rather than by a
/// request: the sender's repeats arriving meanwhile wait for the retry's
/// answer and replay a 2xx, as they would a first request's. Let go when
/// dropped.
pub(crate) struct RetrySlot {
    map: Arc<Mutex<HashMap<String, watch::Receiver<Outcome>>>>,
    slot: String,
    tx: watch::Sender<Outcome>,
}

impl RetrySlot {
    /// Hands the retry's 2xx answer to the repeats waiting for it.
    pub(crate) fn answered(self, execution_id: &str, answer: &Answer) {
        let _ = self
            .tx
            .send(Some((execution_id.to_string(), answer.clone())));
    }
}

impl Drop for RetrySlot {
    fn drop(&mut self) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(&self.slot);
        }
    }
}

/// What a request with a key does.
pub enum Claim<'a> {
    /// It is the first: run, then [`First::finish`].
    First(First<'a>),
    /// It repeats an earlier one: send this again.
    Replay(String, Answer),
}

/// A claim of the key in a store shared by several instances, for a sync
/// run: pending (other instances' repeats wait) until the run answers.
#[derive(Debug, Clone)]
pub struct Hold {
    /// The id the run will have.
    pub execution_id: String,
    /// How long the claim lasts should the run never answer (its instance died).
    pub lasts: Duration,
}

/// The first request of a key; dropping it without `finish` lets waiters
/// try again (here and, through the store, on other instances).
pub struct First<'a> {
    claims: &'a Claims,
    store: &'a Arc<dyn Store>,
    slot: String,
    workflow: String,
    key: String,
    tx: watch::Sender<Outcome>,
    /// The run whose pending claim of the key is in the store, until it
    /// answers or is released.
    held: Option<String>,
}

/// A store call from a request's task. On a shared store it is a database
/// round trip, which can hang up to the store's call limit: it runs on the
/// blocking pool, so that the HTTP worker's other requests (and
/// `/healthz`) go on meanwhile. The embedded store answers from memory or
/// its files, here.
async fn call<T, F>(store: &Arc<dyn Store>, f: F) -> Result<T, Refusal>
where
    T: Send + 'static,
    F: FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
{
    let answered = if store.shared() {
        let store = store.clone();
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .map_err(|_| Refusal::Internal("an idempotency key's store call stopped".into()))?
    } else {
        f(store.as_ref())
    };
    answered.map_err(|error| {
        // The store is away: the sender is to try again later (503 with
        // Retry-After), as when its writer knows it.
        tracing::error!(message = "Could not read an idempotency key; the request is refused (503).", %error);
        Refusal::StoreBehind
    })
}

fn slot(workflow: &str, key: &str) -> String {
    format!("{workflow}\0{key}")
}

fn conflict() -> Refusal {
    Refusal::Conflict(
        "a request with this idempotency key is still being handled; try again later".into(),
    )
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Claims {
    /// Whether a request (or a retry) with `key` is being handled now.
    pub(crate) fn in_flight(&self, workflow: &str, key: &str) -> bool {
        self.map
            .lock()
            .map_or(true, |map| map.contains_key(&slot(workflow, key)))
    }

    /// Takes the slot of `key` for a retry, unless a request (or another
    /// retry) with the key is being handled now.
    pub(crate) fn take_for_retry(&self, workflow: &str, key: &str) -> Option<RetrySlot> {
        let slot = slot(workflow, key);
        let mut map = self.map.lock().ok()?;
        if map.contains_key(&slot) {
            return None;
        }
        let (tx, rx) = watch::channel(None);
        map.insert(slot.clone(), rx);
        Some(RetrySlot {
            map: self.map.clone(),
            slot,
            tx,
        })
    }

    /// Claims `key` for `workflow`, waiting up to `wait` for a first request
    /// still running. With `hold` (a sync run on a shared store) the key is
    /// also claimed in the store, waiting for another instance's first
    /// request the same way.
    pub async fn claim<'a>(
        &'a self,
        store: &'a Arc<dyn Store>,
        workflow: &str,
        key: &str,
        wait: Duration,
        hold: Option<Hold>,
    ) -> Result<Claim<'a>, Refusal> {
        let deadline = Instant::from_std(hookflow_model::time::deadline_after(wait));
        let first = match self.claim_here(store, workflow, key, deadline).await? {
            Claim::First(first) => first,
            replay => return Ok(replay),
        };
        match hold {
            Some(hold) => first.hold(hold, deadline).await,
            None => Ok(Claim::First(first)),
        }
    }

    /// The claim among this process's requests.
    async fn claim_here<'a>(
        &'a self,
        store: &'a Arc<dyn Store>,
        workflow: &str,
        key: &str,
        deadline: Instant,
    ) -> Result<Claim<'a>, Refusal> {
        let slot = slot(workflow, key);
        loop {
            // The slot is taken before the store is read, and the lock let
            // go for the read: a repeat arriving meanwhile waits for this
            // request's outcome, and requests of other keys are not held up.
            let taken = {
                let mut map = self
                    .map
                    .lock()
                    .map_err(|_| Refusal::Internal("idempotency lock poisoned".into()))?;
                match map.get(&slot) {
                    Some(rx) => Err(rx.clone()),
                    None => {
                        let (tx, rx) = watch::channel(None);
                        map.insert(slot.clone(), rx);
                        Ok(tx)
                    }
                }
            };
            let mut waiting = match taken {
                Ok(tx) => {
                    // Dropped without `finish` (a store error below), it
                    // frees the slot for the waiters.
                    let first = First {
                        claims: self,
                        store,
                        slot: slot.clone(),
                        workflow: workflow.to_string(),
                        key: key.to_string(),
                        tx,
                        held: None,
                    };
                    let (w, k) = (workflow.to_string(), key.to_string());
                    let now = hookflow_model::time::now_millis();
                    let stored = call(store, move |s| s.idempotency(&w, &k, now)).await?;
                    if let Some(IdempotencyEntry {
                        execution_id,
                        response: Some(r),
                        ..
                    }) = stored
                    {
                        let answer = Answer::from_record(&r);
                        let _ = first.tx.send(Some((execution_id.clone(), answer.clone())));
                        return Ok(Claim::Replay(execution_id, answer));
                    }
                    return Ok(Claim::First(first));
                }
                Err(waiting) => waiting,
            };
            let outcome =
                match tokio::time::timeout_at(deadline, waiting.wait_for(Option::is_some)).await {
                    Ok(Ok(done)) => Ok(Ok(done.clone())),
                    Ok(Err(e)) => Ok(Err(e)),
                    Err(e) => Err(e),
                };
            match outcome {
                Ok(Ok(done)) => {
                    if let Some((id, answer)) = done {
                        return Ok(Claim::Replay(id, answer));
                    }
                }
                // The first request gave up without an answer: try to become the first.
                Ok(Err(_)) => continue,
                Err(_) => return Err(conflict()),
            }
        }
    }
}

impl<'a> First<'a> {
    /// Claims the key in the store too, waiting while another instance's
    /// run holds it: its answer is replayed (and handed to this process's
    /// waiters); a claim released or run out is taken.
    async fn hold(mut self, hold: Hold, deadline: Instant) -> Result<Claim<'a>, Refusal> {
        loop {
            let now = hookflow_model::time::now_millis();
            let until = now.saturating_add(millis(hold.lasts));
            let (w, k, id) = (
                self.workflow.clone(),
                self.key.clone(),
                hold.execution_id.clone(),
            );
            let claimed = call(self.store, move |s| s.claim_key(&w, &k, &id, now, until)).await?;
            match claimed {
                KeyClaim::Claimed => {
                    self.held = Some(hold.execution_id);
                    return Ok(Claim::First(self));
                }
                KeyClaim::Held(IdempotencyEntry {
                    execution_id,
                    response: Some(r),
                    ..
                }) => {
                    let answer = Answer::from_record(&r);
                    let _ = self.tx.send(Some((execution_id.clone(), answer.clone())));
                    return Ok(Claim::Replay(execution_id, answer));
                }
                KeyClaim::Held(_) | KeyClaim::Pending(_) => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(conflict());
            }
            tokio::time::sleep(POLL.min(left)).await;
        }
    }

    /// The key, as rendered.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Remembers the answer for `ttl` (unless `stored`: an async run's key
    /// went to disk with the run) and hands it to requests waiting on the
    /// same key. Only a 2xx answer is remembered: after an error the
    /// sender's retry runs again (the store's pending claim is released).
    pub async fn finish(
        mut self,
        execution_id: &str,
        answer: &Answer,
        ttl: Duration,
        stored: bool,
    ) {
        if !(200..300).contains(&answer.status) {
            return;
        }
        if !stored {
            // On disk before the 2xx goes out: the sender's retry after a
            // crash is a replay, not a second run.
            self.store.put_idempotency(IdempotencyClaim {
                workflow: self.workflow.clone(),
                key: self.key.clone(),
                entry: IdempotencyEntry {
                    execution_id: execution_id.to_string(),
                    expires_ms: hookflow_model::time::now_millis().saturating_add(millis(ttl)),
                    response: Some(answer.record()),
                },
            });
            if let Err(error) = self.store.flush().await {
                tracing::error!(message = "Could not write an idempotency key to disk.", workflow = %self.workflow, %error);
            }
        }
        // The answer replaces the pending claim: nothing to release.
        self.held = None;
        let _ = self
            .tx
            .send(Some((execution_id.to_string(), answer.clone())));
    }
}

impl Drop for First<'_> {
    fn drop(&mut self) {
        if let Ok(mut map) = self.claims.map.lock() {
            map.remove(&self.slot);
        }
        if let Some(id) = self.held.take() {
            self.store.release_key(&self.workflow, &self.key, &id);
        }
    }
}
