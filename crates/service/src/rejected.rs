//! What happens to a refused webhook request besides its answer: it is
//! counted (`hookflow_refused_requests_total`), logged in one line with its
//! reason, and — when its URL belongs to a served workflow and its status is
//! one SPEC §7 lists — kept by the store for `GET /api/requests`, headers
//! redacted (SPEC §3), body left out.

use crate::{Refusal, Served, Service};
use hookflow_model::request::{is_secret_header, REDACTED};
use hookflow_model::scrub::Escaped;
use hookflow_model::time::Timestamp;
use hookflow_store::RefusedRequest;

/// What the HTTP side knows of a refused request.
#[derive(Debug, Clone, Default)]
pub struct RefusedParts {
    /// The method.
    pub method: String,
    /// The sender's address.
    pub remote_addr: Option<String>,
    /// Headers in arrival order, as received.
    pub headers: Vec<(String, String)>,
    /// Body bytes declared (`Content-Length`), 0 when none was.
    pub body_size: u64,
}

/// Whether a refusal with this status is kept (SPEC §7).
fn kept(status: u16) -> bool {
    matches!(status, 400 | 401 | 405 | 408 | 413 | 415 | 503)
}

impl Service {
    /// Counts, logs and keeps a refused request; `served` is the workflow
    /// its URL belongs to (`None` for an unknown key). `parts` is called
    /// only when the request is kept.
    pub fn refused(
        &self,
        served: Option<&Served>,
        refusal: &Refusal,
        parts: impl FnOnce() -> RefusedParts,
    ) {
        let code = refusal.code();
        let metrics = served.map_or(self.metrics().unknown(), |s| s.metrics(self.metrics()));
        metrics.refused(code);
        let workflow = served.map_or("-", |s| s.workflow.id.as_str());
        match refusal {
            // Logged where it was checked, with the check's reason.
            Refusal::InvalidSignature => {}
            Refusal::Internal(error) => {
                tracing::error!(message = "Request failed.", workflow, status = refusal.status(), reason = code, error = ?Escaped(error));
            }
            _ => {
                tracing::info!(message = "Request refused.", workflow, status = refusal.status(), reason = code, error = ?Escaped(&refusal.to_string()));
            }
        }
        let Some(served) = served else {
            return;
        };
        if !kept(refusal.status()) {
            return;
        }
        let parts = parts();
        let also = &served.workflow.trigger.secret_headers;
        // Declared secret values under ordinary names too: kept on disk.
        let scrubber = self.executor.secrets().current();
        let headers = parts
            .headers
            .into_iter()
            .map(|(name, value)| {
                let secret =
                    is_secret_header(&name) || also.iter().any(|a| a.eq_ignore_ascii_case(&name));
                let value = if secret {
                    REDACTED.to_string()
                } else {
                    scrubber.str(&value).into_owned()
                };
                (name, value)
            })
            .collect();
        self.executor.store().refuse(RefusedRequest {
            at: Timestamp::now(),
            workflow: served.workflow.id.clone(),
            status: refusal.status(),
            error: refusal.to_string(),
            reason: code.to_string(),
            method: parts.method,
            remote_addr: parts.remote_addr,
            headers,
            body_size: parts.body_size,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::kept;
    use crate::Refusal;

    /// The `reason=` filter takes exactly the codes of the refusals kept.
    #[test]
    fn the_reason_filter_knows_every_kept_code() {
        let all = [
            Refusal::NotFound(String::new()),
            Refusal::MethodNotAllowed,
            Refusal::Unauthorized(String::new()),
            Refusal::TokenRequired,
            Refusal::InvalidSignature,
            Refusal::PayloadTooLarge(1),
            Refusal::UnsupportedMediaType(String::new()),
            Refusal::BadRequest(String::new()),
            Refusal::Conflict(String::new()),
            Refusal::Unavailable(String::new()),
            Refusal::StoreBehind,
            Refusal::RequestTimeout(std::time::Duration::from_secs(1)),
            Refusal::HeadersTooLarge(1),
            Refusal::Internal(String::new()),
        ];
        let mut codes: Vec<&str> = all
            .iter()
            .filter(|r| kept(r.status()))
            .map(Refusal::code)
            .collect();
        codes.sort_unstable();
        codes.dedup();
        let mut listed = Refusal::KEPT_CODES.to_vec();
        listed.sort_unstable();
        assert_eq!(codes, listed);
    }
}
