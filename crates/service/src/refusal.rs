//! Why a request gets no run, and the status and JSON body it is answered
//! with (SPEC §4). The one place that maps errors to statuses: the HTTP
//! crate turns a [`Refusal`] into a response, `hookflow run`/`test` print it.

use hookflow_parser::ParseError;
use serde_json::{json, Value as Json};

/// Seconds a sender is asked to wait after a 503.
pub const RETRY_AFTER_SECS: u32 = 5;

/// Everything a request can be refused with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// Unknown key, disabled workflow, unknown record or route.
    #[error("{0}")]
    NotFound(String),
    /// Not POST.
    #[error("only POST is allowed")]
    MethodNotAllowed,
    /// Missing or wrong Basic credentials (a webhook's).
    #[error("{0}")]
    Unauthorized(String),
    /// Missing or wrong admin bearer token (the admin API, `/metrics`):
    /// `unauthorized` too, with a Bearer challenge.
    #[error("a valid admin bearer token is required")]
    TokenRequired,
    /// The signature check failed (the reason is logged, not sent).
    #[error("the request signature is missing or invalid")]
    InvalidSignature,
    /// Body over the limit.
    #[error("the body is larger than {0} bytes")]
    PayloadTooLarge(u64),
    /// Content type not accepted.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Malformed request.
    #[error("{0}")]
    BadRequest(String),
    /// State conflict (retrying an unfinished run, a key still being handled).
    #[error("{0}")]
    Conflict(String),
    /// Queue full or shutting down.
    #[error("{0}")]
    Unavailable(String),
    /// The store is too far behind to take new runs (the database is slow
    /// or unreachable): no run started.
    #[error(
        "the store cannot take runs now (its disk is full, or the database is slow or unreachable); try again later"
    )]
    StoreBehind,
    /// The request (head and body) did not arrive within the read timeout.
    #[error("the request was not received within the read timeout ({}s)", .0.as_secs_f64())]
    RequestTimeout(std::time::Duration),
    /// A request header over the size limit (its name is not echoed: an attacker chose it).
    #[error("a request header is larger than {0} bytes")]
    HeadersTooLarge(usize),
    /// Anything else; the message is logged, not sent.
    #[error("{0}")]
    Internal(String),
}

impl Refusal {
    /// The codes of the refusals a store keeps (`rejected.rs`): what the
    /// `reason=` filter of `GET /api/requests` takes.
    pub const KEPT_CODES: [&'static str; 9] = [
        "bad_request",
        "unauthorized",
        "invalid_signature",
        "method_not_allowed",
        "request_timeout",
        "payload_too_large",
        "unsupported_media_type",
        "unavailable",
        "store_unavailable",
    ];

    /// The `error` code of the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::NotFound(_) => "not_found",
            Refusal::MethodNotAllowed => "method_not_allowed",
            Refusal::Unauthorized(_) | Refusal::TokenRequired => "unauthorized",
            Refusal::InvalidSignature => "invalid_signature",
            Refusal::PayloadTooLarge(_) => "payload_too_large",
            Refusal::UnsupportedMediaType(_) => "unsupported_media_type",
            Refusal::BadRequest(_) => "bad_request",
            Refusal::Conflict(_) => "conflict",
            Refusal::Unavailable(_) => "unavailable",
            Refusal::StoreBehind => "store_unavailable",
            Refusal::RequestTimeout(_) => "request_timeout",
            Refusal::HeadersTooLarge(_) => "headers_too_large",
            Refusal::Internal(_) => "internal",
        }
    }

    /// The HTTP status this refusal answers with.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::NotFound(_) => 404,
            Refusal::MethodNotAllowed => 405,
            Refusal::Unauthorized(_) | Refusal::TokenRequired | Refusal::InvalidSignature => 401,
            Refusal::PayloadTooLarge(_) => 413,
            Refusal::UnsupportedMediaType(_) => 415,
            Refusal::BadRequest(_) => 400,
            Refusal::Conflict(_) => 409,
            Refusal::Unavailable(_) | Refusal::StoreBehind => 503,
            Refusal::RequestTimeout(_) => 408,
            Refusal::HeadersTooLarge(_) => 431,
            Refusal::Internal(_) => 500,
        }
    }

    /// The JSON body this refusal answers with (an internal error's text is not sent).
    pub fn body(&self) -> Json {
        let message = match self {
            Refusal::Internal(_) => "internal error".to_string(),
            other => other.to_string(),
        };
        json!({"error": self.code(), "message": message})
    }
}

impl From<ParseError> for Refusal {
    fn from(e: ParseError) -> Refusal {
        match e {
            ParseError::UnsupportedMediaType(_) => Refusal::UnsupportedMediaType(e.to_string()),
            other => Refusal::BadRequest(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_answer_415_or_400_and_internal_text_stays_inside() {
        let media: Refusal = ParseError::UnsupportedMediaType("image/png".into()).into();
        assert_eq!(
            (media.status(), media.code()),
            (415, "unsupported_media_type")
        );
        let missing: Refusal = ParseError::Missing {
            part: "body",
            key: "a".into(),
        }
        .into();
        assert_eq!(
            missing.body(),
            json!({"error": "bad_request", "message": "missing required field `a` in the body"})
        );
        assert_eq!(missing.status(), 400);
        let internal = Refusal::Internal("disk on fire at /secret/path".into());
        assert_eq!(
            internal.body(),
            json!({"error": "internal", "message": "internal error"})
        );
    }

    #[test]
    fn slow_and_oversized_requests_answer_408_and_431() {
        let slow = Refusal::RequestTimeout(std::time::Duration::from_millis(2500));
        assert_eq!(
            (slow.status(), slow.body()),
            (
                408,
                json!({"error": "request_timeout", "message": "the request was not received within the read timeout (2.5s)"})
            )
        );
        let big = Refusal::HeadersTooLarge(16_384);
        assert_eq!((big.status(), big.code()), (431, "headers_too_large"));
    }
}
