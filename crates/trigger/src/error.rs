//! Refusals as HTTP responses: the status and JSON body the service's
//! [`Refusal`] names, plus the headers HTTP asks for (`Allow`,
//! `WWW-Authenticate`, `Retry-After`, `Connection: close`).

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use hookflow_service::{Refusal, RETRY_AFTER_SECS};

/// A refusal, answerable by actix-web.
#[derive(Debug)]
pub struct ApiError(pub Refusal);

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> ApiError {
        ApiError(refusal)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let mut builder = HttpResponse::build(self.status_code());
        match &self.0 {
            Refusal::MethodNotAllowed => {
                builder.insert_header((header::ALLOW, "POST"));
            }
            Refusal::Unauthorized(_) => {
                builder.insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"hookflow\""));
            }
            // Not Basic: a browser would answer a Basic challenge to the
            // page's own requests with its login dialog.
            Refusal::TokenRequired => {
                builder.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"hookflow\""));
            }
            Refusal::Unavailable(_) | Refusal::StoreBehind => {
                builder.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS.to_string()));
            }
            // The sender is too slow or too large: its connection is not kept.
            Refusal::RequestTimeout(_) | Refusal::HeadersTooLarge(_) => {
                builder.force_close();
            }
            _ => {}
        }
        builder.json(self.0.body())
    }
}
