//! hookflow: counts of the answers the dispatcher gives on its own, before a
//! request reaches the service (a malformed head, a head over the size cap, a
//! head slower than the read timeout), so that the server can report them.
//! Process-wide: a process serves one server's webhooks.

use std::sync::atomic::{AtomicU64, Ordering};

use http::StatusCode;

static BAD_REQUEST: AtomicU64 = AtomicU64::new(0);
static REQUEST_TIMEOUT: AtomicU64 = AtomicU64::new(0);
static HEADERS_TOO_LARGE: AtomicU64 = AtomicU64::new(0);

/// The dispatcher's own refusals since the process started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refusals {
    /// 400: a head that is not valid HTTP/1.1.
    pub bad_request: u64,
    /// 408: a head that did not arrive within the read timeout.
    pub request_timeout: u64,
    /// 431: a head over the size cap.
    pub headers_too_large: u64,
}

/// The dispatcher's own refusals since the process started.
pub fn refusals() -> Refusals {
    Refusals {
        bad_request: BAD_REQUEST.load(Ordering::Relaxed),
        request_timeout: REQUEST_TIMEOUT.load(Ordering::Relaxed),
        headers_too_large: HEADERS_TOO_LARGE.load(Ordering::Relaxed),
    }
}

/// Counts one refusal answered with `status` (others are not counted).
pub(crate) fn count(status: StatusCode) {
    let counter = match status {
        StatusCode::BAD_REQUEST => &BAD_REQUEST,
        StatusCode::REQUEST_TIMEOUT => &REQUEST_TIMEOUT,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => &HEADERS_TOO_LARGE,
        _ => return,
    };
    counter.fetch_add(1, Ordering::Relaxed);
}
