//! The one place where errors become HTTP statuses and JSON bodies.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

/// Seconds a sender is asked to wait after a 503.
pub const RETRY_AFTER_SECS: u32 = 5;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Unknown key, disabled workflow, unknown record or route.
    #[error("{0}")]
    NotFound(String),
    /// Not POST.
    #[error("only POST is allowed")]
    MethodNotAllowed,
    /// Missing or wrong credentials.
    #[error("{0}")]
    Unauthorized(String),
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
    /// State conflict (retrying an unfinished run).
    #[error("{0}")]
    Conflict(String),
    /// Queue full or shutting down.
    #[error("{0}")]
    Unavailable(String),
    /// Anything else; the message is logged, not sent.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The `error` code of the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::InvalidSignature => "invalid_signature",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Conflict(_) => "conflict",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl ApiError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> u16 {
        self.status_code().as_u16()
    }

    /// The JSON body this error answers with.
    pub fn body(&self) -> serde_json::Value {
        let message = match self {
            ApiError::Internal(_) => "internal error".to_string(),
            other => other.to_string(),
        };
        json!({"error": self.code(), "message": message})
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unauthorized(_) | ApiError::InvalidSignature => StatusCode::UNAUTHORIZED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut builder = HttpResponse::build(self.status_code());
        match self {
            ApiError::MethodNotAllowed => {
                builder.insert_header((header::ALLOW, "POST"));
            }
            ApiError::Unauthorized(_) => {
                builder.insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"hookflow\""));
            }
            ApiError::Unavailable(_) => {
                builder.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS.to_string()));
            }
            _ => {}
        }
        let message = match self {
            ApiError::Internal(_) => "internal error".to_string(),
            other => other.to_string(),
        };
        builder.json(json!({"error": self.code(), "message": message}))
    }
}
