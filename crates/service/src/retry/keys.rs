//! The idempotency key of a retried sync run: the retry keeps it once it
//! answers 2xx (the sender's next repeat is a replay), and no run is
//! retried while another run holds its key, answered or being retried.

use super::RetryError;
use crate::idempotency::Claims;
use hookflow_executor::Answered;
use hookflow_model::def::Mode;
use hookflow_model::request::{RunInput, REDACTED};
use hookflow_model::runtime::Workflow;
use hookflow_model::time::now_millis;
use hookflow_store::{ExecutionRecord, IdempotencyClaim, IdempotencyEntry, Store};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The keys of sync retries still running, each with the run it retries.
#[derive(Default, Clone)]
pub(crate) struct Retrying {
    keys: Arc<Mutex<HashMap<String, String>>>,
}

/// A retried run's idempotency key, rendered over its input.
pub(crate) struct RunKey {
    workflow: String,
    key: String,
    ttl: Duration,
}

impl RunKey {
    /// The key of a sync run of `workflow` with `input`; `None` for async
    /// workflows (their key went to disk with the acknowledgement), for
    /// workflows without one, and for a key rendered from a redacted value
    /// (a sync run's input is its record's request, secret-bearing values
    /// `[redacted]`: every run would have the same key).
    pub fn of(workflow: &Workflow, input: &RunInput) -> Option<RunKey> {
        let idem = workflow.trigger.idempotency.as_ref()?;
        if workflow.mode != Mode::Sync {
            return None;
        }
        let key = crate::delivery::idempotency_key(workflow, idem, input).ok()??;
        if key.contains(REDACTED) {
            return None;
        }
        Some(RunKey {
            workflow: workflow.id.clone(),
            key,
            ttl: idem.ttl,
        })
    }

    /// Within one workflow, the key's slot.
    pub fn slot(&self) -> String {
        format!("{}\0{}", self.workflow, self.key)
    }

    /// Refused when a run other than `old` holds the key answered (the
    /// sender's repeat, or an earlier retry, went through), a retry
    /// holding it is still running, or a request with it is being handled
    /// (here, or pending in a shared store): the event was or is being
    /// processed.
    pub fn check(
        &self,
        old: &ExecutionRecord,
        store: &dyn Store,
        retrying: &Retrying,
        claims: &Claims,
    ) -> Result<(), RetryError> {
        self.not_retrying(old, retrying)?;
        if claims.in_flight(&self.workflow, &self.key) {
            return Err(RetryError::InFlight {
                run: old.id.clone(),
            });
        }
        self.not_answered(old, store)
    }

    /// Refused while a retry holding the key runs.
    fn not_retrying(&self, old: &ExecutionRecord, retrying: &Retrying) -> Result<(), RetryError> {
        match lock(&retrying.keys).get(&self.slot()) {
            Some(of) => Err(RetryError::Retrying {
                run: old.id.clone(),
                of: of.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Refused when the store holds the key for another run: answered, or
    /// claimed by another instance's request that runs.
    fn not_answered(&self, old: &ExecutionRecord, store: &dyn Store) -> Result<(), RetryError> {
        let held = store
            .idempotency(&self.workflow, &self.key, now_millis())
            .map_err(|e| RetryError::Store(e.to_string()))?;
        match held.filter(|e| e.execution_id != old.id) {
            Some(entry) => Err(match entry.response {
                Some(_) => RetryError::Answered {
                    run: old.id.clone(),
                    by: entry.execution_id,
                },
                None => RetryError::InFlight {
                    run: old.id.clone(),
                },
            }),
            None => Ok(()),
        }
    }

    /// Checks as [`RunKey::check`] does and holds the key for the retry of
    /// `old` until it answers, then keeps it if the answer is 2xx, as a
    /// first request's answer is kept (`idempotency.rs`). Let go when the
    /// retry does not start too. The key's slot among this process's
    /// requests is the retry's meanwhile (the sender's repeats wait for its
    /// answer and replay a 2xx), and it is taken before the store is read:
    /// a request with the key that answers in between is seen either way.
    pub fn hold(
        self,
        old: &ExecutionRecord,
        store: Arc<dyn Store>,
        retrying: &Retrying,
        claims: &Claims,
    ) -> Result<Answered, RetryError> {
        self.not_retrying(old, retrying)?;
        let taken = claims
            .take_for_retry(&self.workflow, &self.key)
            .ok_or_else(|| RetryError::InFlight {
                run: old.id.clone(),
            })?;
        // Refused: `taken` is dropped, and the slot let go.
        self.not_answered(old, store.as_ref())?;
        let slot = self.slot();
        lock(&retrying.keys).insert(slot.clone(), old.id.clone());
        let held = Held {
            keys: retrying.keys.clone(),
            slot,
        };
        Ok(Box::new(move |id, answer| {
            Box::pin(async move {
                let _held = held;
                if (200..300).contains(&answer.status) {
                    self.keep(store.as_ref(), &id, answer.record()).await;
                    taken.answered(&id, &answer);
                }
            })
        }))
    }

    async fn keep(self, store: &dyn Store, id: &str, response: hookflow_store::ResponseRecord) {
        let now = now_millis();
        match store.idempotency(&self.workflow, &self.key, now) {
            // Answered meanwhile by another run: it stays that run's.
            Ok(Some(entry)) if entry.response.is_some() => return,
            Ok(_) => {}
            Err(error) => {
                tracing::error!(message = "Could not keep a retried run's idempotency key.", workflow = %self.workflow, run = %id, %error);
                return;
            }
        }
        let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        let workflow = self.workflow;
        store.put_idempotency(IdempotencyClaim {
            workflow: workflow.clone(),
            key: self.key,
            entry: IdempotencyEntry {
                execution_id: id.to_string(),
                expires_ms: now.saturating_add(ttl_ms),
                response: Some(response),
            },
        });
        if let Err(error) = store.flush().await {
            tracing::error!(message = "Could not keep a retried run's idempotency key.", workflow = %workflow, run = %id, %error);
        }
    }
}

/// A key held for a retry; let go when dropped (answered, or never started).
struct Held {
    keys: Arc<Mutex<HashMap<String, String>>>,
    slot: String,
}

impl Drop for Held {
    fn drop(&mut self) {
        lock(&self.keys).remove(&self.slot);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
