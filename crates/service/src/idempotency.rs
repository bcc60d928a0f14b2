//! Idempotency (SPEC §4b): a request whose key was seen within the TTL starts
//! no new run and gets the first run's answer again. Two identical requests
//! arriving together start one run: the second waits for the first here.

use crate::Refusal;
use hookflow_executor::Answer;
use hookflow_store::{IdempotencyClaim, IdempotencyEntry, Store};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;

type Outcome = Option<(String, Answer)>;

/// The idempotency keys whose first request is still being handled, each
/// with the channel its repeats wait on.
#[derive(Default)]
pub struct Claims {
    map: Mutex<HashMap<String, watch::Receiver<Outcome>>>,
}

/// What a request with a key does.
pub enum Claim<'a> {
    /// It is the first: run, then [`First::finish`].
    First(First<'a>),
    /// It repeats an earlier one: send this again.
    Replay(String, Answer),
}

/// The first request of a key; dropping it without `finish` lets waiters try again.
pub struct First<'a> {
    claims: &'a Claims,
    slot: String,
    workflow: String,
    key: String,
    tx: watch::Sender<Outcome>,
}

fn slot(workflow: &str, key: &str) -> String {
    format!("{workflow}\0{key}")
}

impl Claims {
    /// Claims `key` for `workflow`, waiting up to `wait` for a first request still running.
    pub async fn claim<'a>(
        &'a self,
        store: &dyn Store,
        workflow: &str,
        key: &str,
        wait: Duration,
    ) -> Result<Claim<'a>, Refusal> {
        let slot = slot(workflow, key);
        let deadline = tokio::time::Instant::from_std(hookflow_model::time::deadline_after(wait));
        loop {
            let waiting = {
                let mut map = self
                    .map
                    .lock()
                    .map_err(|_| Refusal::Internal("idempotency lock poisoned".into()))?;
                match map.get(&slot) {
                    Some(rx) => rx.clone(),
                    None => {
                        let now = hookflow_model::time::now_millis();
                        let stored = store
                            .idempotency(workflow, key, now)
                            .map_err(|e| Refusal::Internal(e.to_string()))?;
                        if let Some(IdempotencyEntry {
                            execution_id,
                            response: Some(r),
                            ..
                        }) = stored
                        {
                            return Ok(Claim::Replay(execution_id, Answer::from_record(&r)));
                        }
                        let (tx, rx) = watch::channel(None);
                        map.insert(slot.clone(), rx);
                        return Ok(Claim::First(First {
                            claims: self,
                            slot,
                            workflow: workflow.to_string(),
                            key: key.to_string(),
                            tx,
                        }));
                    }
                }
            };
            let mut waiting = waiting;
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
                Err(_) => return Err(Refusal::Conflict(
                    "a request with this idempotency key is still being handled; try again later"
                        .into(),
                )),
            }
        }
    }
}

impl First<'_> {
    /// The key, as rendered.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Remembers the answer for `ttl` (unless `stored`: an async run's key
    /// went to disk with the run) and hands it to requests waiting on the
    /// same key. Only a 2xx answer is remembered: after an error the
    /// sender's retry runs again.
    pub fn finish(
        self,
        store: &dyn Store,
        execution_id: &str,
        answer: &Answer,
        ttl: Duration,
        stored: bool,
    ) {
        if !(200..300).contains(&answer.status) {
            return;
        }
        if !stored {
            store.put_idempotency(IdempotencyClaim {
                workflow: self.workflow.clone(),
                key: self.key.clone(),
                entry: IdempotencyEntry {
                    execution_id: execution_id.to_string(),
                    expires_ms: hookflow_model::time::now_millis()
                        .saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)),
                    response: Some(answer.record()),
                },
            });
        }
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
    }
}
