//! Delivery: a request that passed the HTTP checks (key, method, Basic auth,
//! size) → a run and its answer, in SPEC §4's order: content type (415),
//! signature (401), parsing (400) (these three in [`crate::intake`]), a
//! store too far behind (503), idempotency, run.

use crate::idempotency::{Claim, Hold};
use crate::intake::Intake;
use crate::{Refusal, Served, Service};
use hookflow_executor::{AcceptError, Answer};
use hookflow_model::def::Mode;
use hookflow_model::request::RunInput;
use hookflow_model::runtime::{Idempotency, Workflow};
use hookflow_model::template::Scope;
use hookflow_parser::Request;
use std::sync::Arc;
use std::time::Duration;

/// How long a repeat waits for a first request of an async workflow.
const IDEMPOTENT_WAIT: Duration = Duration::from_secs(30);

/// How much longer than its run's limit a sync run's pending claim of an
/// idempotency key lasts in a shared store (docs/decisions.md): time to
/// commit its answer, and to write it, after the run answered.
const HOLD_MARGIN: Duration = Duration::from_secs(10);

/// What a delivered request is answered with.
#[derive(Debug)]
pub enum Delivery {
    /// Feishu's URL check: answer 200 `{"challenge": …}`; no run.
    Challenge(String),
    /// A run's answer, or a replay of the first run's answer for the same
    /// idempotency key.
    Answer {
        /// The run the answer belongs to.
        execution_id: String,
        /// The answer.
        answer: Answer,
        /// True for an idempotent replay.
        replayed: bool,
    },
}

impl Service {
    /// Delivers a request to `served`'s workflow; `headers` are the request's
    /// name/value pairs in arrival order.
    pub async fn deliver<'h>(
        &self,
        served: &Arc<Served>,
        request: Request<'_>,
        headers: impl IntoIterator<Item = (&'h str, &'h str)>,
    ) -> Result<Delivery, Refusal> {
        // Borrowed: a run takes the one handle of its own a request takes.
        let workflow = &served.workflow;
        let mode = workflow.mode;
        let input = match self.large_bodies.take_in(served, request, headers).await? {
            Intake::Challenge(challenge) => return Ok(Delivery::Challenge(challenge)),
            Intake::Input(input) => input,
        };
        let store = self.executor.store();
        if store.overloaded() {
            return Err(Refusal::StoreBehind);
        }
        // A sync run on a shared store claims its key in the store under
        // the id it will have: repeats on other instances wait for it.
        let mut sync_id = None;
        let first = match &workflow.trigger.idempotency {
            Some(idem) => match idempotency_key(workflow, idem, &input)? {
                Some(key) => {
                    let wait = workflow.timeout.unwrap_or(IDEMPOTENT_WAIT);
                    let hold = (mode == Mode::Sync && store.shared()).then(|| {
                        let execution_id = hookflow_executor::new_execution_id();
                        sync_id = Some(execution_id.clone());
                        Hold {
                            execution_id,
                            lasts: wait.saturating_add(HOLD_MARGIN),
                        }
                    });
                    // Boxed, like the runs below: a request's future is
                    // as large as its largest path, and this one is rare.
                    match Box::pin(self.claims.claim(store, &workflow.id, &key, wait, hold)).await?
                    {
                        Claim::Replay(execution_id, answer) => {
                            return Ok(Delivery::Answer {
                                execution_id,
                                answer,
                                replayed: true,
                            })
                        }
                        Claim::First(first) => Some((first, idem.ttl)),
                    }
                }
                None => None,
            },
            None => None,
        };
        let (execution_id, answer) = match workflow.mode {
            Mode::Sync => {
                let handles = Some(served.metrics(self.metrics()).clone());
                Box::pin(self.executor.run_sync_as(workflow, handles, input, sync_id)).await
            }
            Mode::Async => {
                // The key goes to disk with the run, before the acknowledgement.
                let key = first.as_ref().map(|(f, ttl)| (f.key().to_string(), *ttl));
                match Box::pin(self.executor.accept(
                    workflow.clone(),
                    Some(served.metrics(self.metrics()).clone()),
                    input,
                    key,
                ))
                .await
                {
                    Ok(accepted) => accepted,
                    // Another instance of a shared store claimed the key
                    // first: this request is a repeat of that run.
                    Err(AcceptError::Duplicate(entry)) => {
                        let answer = entry
                            .response
                            .as_ref()
                            .map_or_else(Answer::default_ack, Answer::from_record);
                        return Ok(Delivery::Answer {
                            execution_id: entry.execution_id,
                            answer,
                            replayed: true,
                        });
                    }
                    Err(e) => return Err(accept_refusal(e)),
                }
            }
        };
        if let Some((first, ttl)) = first {
            let stored = mode == Mode::Async;
            Box::pin(first.finish(&execution_id, &answer, ttl, stored)).await;
        }
        Ok(Delivery::Answer {
            execution_id,
            answer,
            replayed: false,
        })
    }
}

/// Why an async run was not accepted, as the sender sees it.
fn accept_refusal(e: AcceptError) -> Refusal {
    match e {
        AcceptError::QueueFull => Refusal::Unavailable("the queue is full; try again later".into()),
        AcceptError::ShuttingDown => {
            Refusal::Unavailable("the server is shutting down; try again later".into())
        }
        // The run is not stored (a full disk, a database away): the sender
        // is to try again later, as when the store is known to be failing.
        AcceptError::Store(m) => {
            tracing::error!(message = "A run could not be stored; the request is refused (503).", error = %m);
            Refusal::StoreBehind
        }
        AcceptError::Response(m) => Refusal::Internal(m),
        AcceptError::Duplicate(entry) => Refusal::Conflict(format!(
            "a request with this idempotency key started run {}",
            entry.execution_id
        )),
    }
}

/// Renders the idempotency key over the request; an empty key means none.
pub(crate) fn idempotency_key(
    workflow: &Workflow,
    idem: &Idempotency,
    input: &RunInput,
) -> Result<Option<String>, Refusal> {
    let mut scope = Scope::new();
    scope.set_owned("trigger", input.trigger.to_json());
    scope.set("vars", &input.vars);
    scope.set("secrets", &workflow.secret_values());
    let key = workflow.templates.render(&idem.key, &scope).map_err(|e| {
        Refusal::BadRequest(format!(
            "the idempotency key cannot be computed: {}",
            e.message
        ))
    })?;
    Ok((!key.is_empty()).then(|| bounded_key(key)))
}

/// Longest idempotency key kept as rendered.
const MAX_KEY_BYTES: usize = 256;

/// A key as stored: a longer one (a sender's whole body, say) by its
/// SHA-256, so that no sender grows the store's keys and memory with its
/// key's length.
fn bounded_key(key: String) -> String {
    use sha2::Digest;
    if key.len() <= MAX_KEY_BYTES {
        return key;
    }
    format!("sha256:{:x}", sha2::Sha256::digest(key.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A webhook request's future is as large as the largest path through
    /// `deliver`, and each request allocates it and copies it in: the
    /// runs' own futures are boxed, so that a sync request does not carry
    /// the async path's (6.5 KiB, against 1.4 KiB for all of `deliver` now).
    #[tokio::test]
    async fn a_delivery_carries_no_runs_future_inline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = "title: W\nenabled: true\ntrigger: { type: webhook, mode: sync }\n\
                    nodes:\n  - type: response\n    body: ok\n";
        let service = crate::retry::tests::serving(dir.path(), yaml);
        let registry = service.registry();
        let url = &registry.listing[0].url;
        let served = registry.get(url.rsplit('/').next().unwrap_or_default());
        let request = Request {
            method: "POST",
            path: url,
            query: "",
            content_type: None,
            body: b"",
        };
        let delivery = service.deliver(served.expect("served"), request, [("x-a", "b")]);
        let size = std::mem::size_of_val(&delivery);
        assert!(size <= 2048, "deliver's future takes {size} bytes");
    }

    #[test]
    fn long_idempotency_keys_are_kept_by_their_digest() {
        assert_eq!(bounded_key("evt_1".into()), "evt_1");
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        let kept = bounded_key(long.clone());
        assert!(
            kept.starts_with("sha256:") && kept.len() == 7 + 64,
            "{kept}"
        );
        assert_eq!(kept, bounded_key(long), "the same key, the same digest");
        assert_ne!(kept, bounded_key("j".repeat(MAX_KEY_BYTES + 1)));
    }
}
