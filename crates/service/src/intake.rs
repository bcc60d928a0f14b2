//! A request's intake before its run: received (415), its signature checked
//! (401), its body decoded and its fields extracted (400).
//!
//! A large body is taken in on tokio's blocking pool, a few at a time: a
//! megabyte of small JSON values takes tens of milliseconds to decode, and on
//! the HTTP worker that holds every other request of its connections (a
//! payment provider's small callback waited behind it). The few at a time
//! keep the memory the decoding holds as bounded as on the workers, where
//! one decoded per worker at once.

use crate::{Refusal, Served};
use hookflow_model::request::{RunInput, Verified};
use hookflow_model::runtime::Workflow;
use hookflow_parser::{Received, Request};
use hookflow_verify::{Signed, Verifier};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Bodies longer than this are taken in off the HTTP workers.
pub(crate) const OFF_WORKER_BODY: usize = 64 * 1024;

/// What the intake makes of a request. Returned and taken apart at once:
/// an input boxed to keep the rare challenge small would cost every
/// request an allocation.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Intake {
    /// Feishu's URL check: answered without a run.
    Challenge(String),
    /// The run's input.
    Input(RunInput),
}

/// Turns for taking in large bodies: as many at once as the machine has
/// cores.
pub(crate) struct LargeBodies(Semaphore);

impl Default for LargeBodies {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        LargeBodies(Semaphore::new(cores))
    }
}

impl LargeBodies {
    /// Takes `request` in: here for a small body, on the blocking pool (in
    /// turn) for a large one.
    pub(crate) async fn take_in<'h>(
        &self,
        served: &Arc<Served>,
        request: Request<'_>,
        headers: impl IntoIterator<Item = (&'h str, &'h str)>,
    ) -> Result<Intake, Refusal> {
        if request.body.len() <= OFF_WORKER_BODY {
            return take_in(served, request, headers);
        }
        // Boxed: every request's future would otherwise be as large as
        // this rare path's.
        Box::pin(self.take_in_off_worker(served, request, headers)).await
    }

    /// [`LargeBodies::take_in`] on the blocking pool, in turn.
    async fn take_in_off_worker<'h>(
        &self,
        served: &Arc<Served>,
        request: Request<'_>,
        headers: impl IntoIterator<Item = (&'h str, &'h str)>,
    ) -> Result<Intake, Refusal> {
        // The semaphore is never closed. The turn is taken before the body
        // is copied for the pool: a request waiting for one holds no copy.
        let _turn = self.0.acquire().await.map_err(|_| lost())?;
        let owned = OwnedRequest::new(request, headers);
        let served = served.clone();
        tokio::task::spawn_blocking(move || owned.take_in(&served))
            .await
            .map_err(|_| lost())?
    }
}

/// The intake's task ended without an answer (it panicked): nothing was
/// taken in.
fn lost() -> Refusal {
    Refusal::Internal("the request's intake stopped".into())
}

/// The stages of SPEC §4 in order, on this thread.
fn take_in<'h>(
    served: &Served,
    request: Request<'_>,
    headers: impl IntoIterator<Item = (&'h str, &'h str)>,
) -> Result<Intake, Refusal> {
    let workflow = &served.workflow;
    let received = hookflow_parser::receive(request, headers)?;
    let mut verified = match &served.verifier {
        Some(verifier) => {
            if verifier.reads_json_body() {
                hookflow_parser::check_json(received.body)?;
            }
            check_signature(verifier, workflow, &received)?
        }
        None => Verified::default(),
    };
    if let Some(challenge) = verified.challenge.take() {
        return Ok(Intake::Challenge(challenge));
    }
    Ok(Intake::Input(hookflow_parser::build_input(
        workflow, received, verified,
    )?))
}

/// Runs the workflow's signature check on the request as received.
fn check_signature(
    verifier: &Verifier,
    workflow: &Workflow,
    received: &Received<'_>,
) -> Result<Verified, Refusal> {
    let now = hookflow_model::time::now_millis() / 1000;
    verifier
        .check(&Signed {
            request: &received.request,
            body: received.body,
            now,
        })
        .map_err(|reason| {
            // The reason may quote what the sender wrote: escaped, so that
            // it cannot forge log lines.
            // The one line of this refused request (`rejected` logs the others).
            tracing::info!(message = "Signature rejected.", workflow = %workflow.id, status = 401, reason = "invalid_signature", detail = ?reason.0);
            Refusal::InvalidSignature
        })
}

/// A request's parts copied out of the HTTP server's buffers, for another
/// thread.
struct OwnedRequest {
    method: String,
    path: String,
    query: String,
    content_type: Option<String>,
    body: Vec<u8>,
    headers: Vec<(String, String)>,
}

impl OwnedRequest {
    fn new<'h>(
        request: Request<'_>,
        headers: impl IntoIterator<Item = (&'h str, &'h str)>,
    ) -> Self {
        OwnedRequest {
            method: request.method.to_string(),
            path: request.path.to_string(),
            query: request.query.to_string(),
            content_type: request.content_type.map(str::to_string),
            body: request.body.to_vec(),
            headers: headers
                .into_iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn take_in(&self, served: &Served) -> Result<Intake, Refusal> {
        let request = Request {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            content_type: self.content_type.as_deref(),
            body: &self.body,
        };
        let headers = self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str()));
        take_in(served, request, headers)
    }
}
