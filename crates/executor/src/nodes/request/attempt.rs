//! One try of a request node: send, check where the answer came from, read
//! the answer; or say why there is none, without the URL.

use crate::policy::{CrossOriginRedirect, Outbound, Refused, TooManyRedirects};
use hookflow_model::request::join_header;
use hookflow_model::time::Timestamp;
use hookflow_store::{TryOutcome, TryRecord};
use serde_json::{Map, Value as Json};
use std::time::{Duration, SystemTime};

/// One try's outcome.
pub(super) enum Try {
    /// A response arrived.
    Response {
        status: u16,
        headers: Map<String, Json>,
        body: Json,
        retry_after: Option<Duration>,
    },
    /// No response, or one whose body could not be read (too large, cut
    /// off, too many JSON values): connect error, timeout, too many
    /// redirects. `retry` is false when another try cannot help; `status`
    /// is the answer's when its head arrived.
    Failed {
        reason: String,
        retry: bool,
        status: Option<u16>,
    },
    /// The destination (the first, a redirect hop, or the address connected
    /// to) is refused by the server's request policy: never retried.
    Refused(String),
}

/// The error of a try's record while it waits for its answer.
pub(super) const IN_FLIGHT: &str = "in flight";

/// The record of try `attempt` (from 1), sent and not answered yet.
pub(super) fn in_flight(attempt: u32, started_ms: u64) -> TryRecord {
    TryRecord {
        attempt,
        started_at: Timestamp(started_ms),
        duration_ms: 0,
        outcome: TryOutcome::Error,
        status: None,
        headers: Map::new(),
        body: Json::Null,
        error: Some(IN_FLIGHT.into()),
    }
}

impl Try {
    /// The try as the job's record keeps it (`attempt` counts from 1).
    pub(super) fn record(&self, attempt: u32, started_ms: u64, took: Duration) -> TryRecord {
        let mut record = TryRecord {
            attempt,
            started_at: Timestamp(started_ms),
            duration_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
            outcome: TryOutcome::Error,
            status: None,
            headers: Map::new(),
            body: Json::Null,
            error: None,
        };
        match self {
            Try::Response {
                status,
                headers,
                body,
                ..
            } => {
                record.outcome = TryOutcome::of_status(*status);
                record.status = Some(*status);
                record.headers = headers.clone();
                record.body = body.clone();
            }
            Try::Failed { reason, status, .. } => {
                record.status = *status;
                record.error = Some(reason.clone());
            }
            Try::Refused(reason) => {
                record.outcome = TryOutcome::Refused;
                record.error = Some(reason.clone());
            }
        }
        record
    }

    /// Worth another try: connect errors and timeouts, 429 and 5xx.
    pub(super) fn retryable(&self) -> bool {
        match self {
            Try::Response { status, .. } => *status == 429 || *status >= 500,
            Try::Failed { retry, .. } => *retry,
            Try::Refused(_) => false,
        }
    }
}

/// Sends `req` and reads the answer, at most `max_body` bytes of body.
pub(super) async fn attempt_once(
    req: reqwest::RequestBuilder,
    outbound: &Outbound,
    max_body: usize,
) -> Try {
    let mut resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return failure(&e),
    };
    // The resolver let only allowed addresses through; check the one the
    // answer came from all the same, before reading a byte of its body.
    if let Err(refused) = outbound.check_peer(resp.url(), resp.remote_addr()) {
        return Try::Refused(refused.to_string());
    }
    let status = resp.status().as_u16();
    let mut headers = Map::new();
    for (name, value) in resp.headers() {
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match headers.get_mut(name.as_str()) {
            // Cookies are never joined (RFC 9110 §5.3: an `Expires` date
            // has a comma): several are a list.
            Some(first) if name == reqwest::header::SET_COOKIE => match first {
                Json::Array(list) => list.push(Json::String(v)),
                other => *other = Json::Array(vec![other.take(), Json::String(v)]),
            },
            Some(Json::String(joined)) => join_header(joined, &v),
            _ => {
                headers.insert(name.as_str().to_string(), Json::String(v));
            }
        }
    }
    let retry_after = headers
        .get("retry-after")
        .and_then(Json::as_str)
        .and_then(parse_retry_after);
    let is_json = headers
        .get("content-type")
        .and_then(Json::as_str)
        .and_then(|ct| ct.split(';').next())
        .map(|m| {
            let m = m.trim().to_ascii_lowercase();
            m == "application/json" || m.ends_with("+json")
        })
        .unwrap_or(false);
    // An answer whose body cannot be read is a failed try with its status;
    // tried again only when the status itself would be (the upstream
    // may have done what a 2xx says: a new try would do it again).
    let unread = |reason: String| Try::Failed {
        reason,
        retry: status == 429 || status >= 500,
        status: Some(status),
    };
    let mut bytes = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if bytes.len() + chunk.len() > max_body {
                    return unread(format!("the response body is larger than {max_body} bytes"));
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => return unread(format!("reading the response body: {}", describe(&e))),
        }
    }
    let body = if bytes.is_empty() {
        Json::Null
    } else if is_json {
        match super::json_body::parse(bytes).await {
            Ok(body) => body,
            Err(reason) => return unread(reason),
        }
    } else {
        Json::String(String::from_utf8_lossy(&bytes).into_owned())
    };
    Try::Response {
        status,
        headers,
        body,
        retry_after,
    }
}

/// What a client error means for the node: a refusal (from the resolver or
/// the redirect policy), too many redirects, or a failed try.
fn failure(e: &reqwest::Error) -> Try {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(refused) = s.downcast_ref::<Refused>() {
            return Try::Refused(refused.to_string());
        }
        if let Some(too_many) = s.downcast_ref::<TooManyRedirects>() {
            return Try::Failed {
                reason: too_many.to_string(),
                retry: false,
                status: None,
            };
        }
        if let Some(cross) = s.downcast_ref::<CrossOriginRedirect>() {
            return Try::Failed {
                reason: cross.to_string(),
                retry: false,
                status: None,
            };
        }
        source = s.source();
    }
    Try::Failed {
        reason: describe(e),
        retry: !e.is_redirect() && !e.is_builder(),
        status: None,
    }
}

/// The error and its causes, without the URL: a `reqwest::Error` shows its
/// URL (query string included), so none is shown, only what it wraps.
fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "could not connect".to_string()
    } else if e.is_redirect() {
        "could not follow a redirect".to_string()
    } else {
        "request error".to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if !s.is::<reqwest::Error>() {
            text.push_str(": ");
            text.push_str(&s.to_string());
        }
        source = s.source();
    }
    text
}

/// `Retry-After` as seconds or an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        let d = parse_retry_after(&later).expect("date parses");
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
