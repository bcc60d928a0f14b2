//! `POST /api/webhook:trigger/{key}`: the checks only HTTP can make, in the
//! order of SPEC §4 (key, method, Basic auth, size), then the capped body is
//! read before the read deadline and the request handed to the service,
//! which checks the rest.

use crate::error::ApiError;
use crate::AppState;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::{header, Method};
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use hookflow_executor::answer::{JSON_TYPE, TEXT_TYPE};
use hookflow_executor::Answer;
use hookflow_model::request::lossy_text;
use hookflow_service::{Delivery, Refusal, Served};
use std::time::Instant;

/// The response header marking an idempotent replay.
pub const REPLAYED_HEADER: &str = "x-hookflow-replayed";

/// The response header naming the run a response belongs to.
pub const EXECUTION_HEADER: &str = "x-hookflow-execution";

/// The webhook handler: every method, so that a known key answers 405 rather than 404.
/// The body must have arrived by `deadline`; `clock` is when handling started.
pub async fn handle(
    req: &HttpRequest,
    payload: &mut web::Payload,
    state: &AppState,
    deadline: Instant,
    clock: Instant,
) -> HttpResponse {
    // The key is the one path segment after the prefix (routing by prefix avoids a regex per request).
    let key = hookflow_service::webhook_key(req.path()).unwrap_or_default();
    let registry = state.service.local_registry();
    let served = if key.contains('/') {
        None
    } else {
        registry.get(key)
    };
    let outcome = match &served {
        // A header over the limit is refused before anything else reads them.
        _ if crate::limits::oversized_header(req) => Err(ApiError(Refusal::HeadersTooLarge(
            crate::limits::MAX_HEADER_BYTES,
        ))),
        Some(served) => run(req, payload, state, served, deadline).await,
        None => Err(ApiError(Refusal::NotFound(
            "no enabled workflow has this key".into(),
        ))),
    };
    let (response, refusal) = match outcome {
        Ok(r) => (r, None),
        Err(e) => (actix_web::ResponseError::error_response(&e), Some(e.0)),
    };
    // Counted through the workflow's handles: atomics only.
    let took = clock.elapsed();
    let status = response.status().as_u16();
    let metrics = served
        .as_ref()
        .map_or(state.service.metrics().unknown(), |s| {
            s.metrics(state.service.metrics())
        });
    metrics.request(status, took);
    if let Some(refusal) = &refusal {
        state
            .service
            .refused(served.map(|s| &**s), refusal, || refused_parts(req));
    }
    if state.http.access_log {
        let execution = response
            .headers()
            .get(EXECUTION_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        tracing::info!(
            target: crate::ACCESS_TARGET,
            message = "Webhook request.",
            workflow = served.as_ref().map_or("-", |s| s.workflow.id.as_str()),
            status,
            duration_ms = took.as_micros() as f64 / 1000.0,
            execution_id = execution,
        );
    }
    response
}

/// What a refused request's entry keeps of it (the service redacts the headers).
fn refused_parts(req: &HttpRequest) -> hookflow_service::RefusedParts {
    hookflow_service::RefusedParts {
        method: req.method().as_str().to_string(),
        remote_addr: req.peer_addr().map(|a| a.to_string()),
        headers: req
            .headers()
            .iter()
            .map(|(n, v)| {
                let value = lossy_text(v.as_bytes()).into_owned();
                (n.as_str().to_string(), value)
            })
            .collect(),
        body_size: req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    }
}

async fn run(
    req: &HttpRequest,
    payload: &mut web::Payload,
    state: &AppState,
    served: &std::sync::Arc<Served>,
    deadline: Instant,
) -> Result<HttpResponse, ApiError> {
    if req.method() != Method::POST {
        return Err(Refusal::MethodNotAllowed.into());
    }
    let _in_flight = state.in_flight.enter();
    if state.service.is_shutting_down() {
        return Err(
            Refusal::Unavailable("the server is shutting down; try again later".into()).into(),
        );
    }
    if let Some(credentials) = &served.basic {
        check_basic(req, credentials)?;
    }
    let limit = served.workflow.trigger.max_body;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(Refusal::PayloadTooLarge(limit).into());
    }
    let body = read_body_by(payload, limit, declared, deadline, state.http.read_timeout).await?;
    let request = request_parts(req, &body);
    // Values are text as sent: UTF-8 as is (`to_str` would drop anything
    // outside visible ASCII), other bytes decoded lossily, as the raw body
    // is. One pass over the headers: a UTF-8 value is borrowed, not copied.
    let headers: Vec<(&str, std::borrow::Cow<'_, str>)> = req
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str(), lossy_text(v.as_bytes())))
        .collect();
    let headers = headers.iter().map(|(n, v)| (*n, v.as_ref()));
    match state.service.deliver(served, request, headers).await? {
        // Feishu's URL check: answered here, no run.
        Delivery::Challenge(challenge) => {
            Ok(HttpResponse::Ok().json(serde_json::json!({ "challenge": challenge })))
        }
        Delivery::Answer {
            execution_id,
            answer,
            replayed,
        } => {
            let mut response = respond(execution_id, answer);
            if replayed {
                response.headers_mut().insert(
                    HeaderName::from_static(REPLAYED_HEADER),
                    HeaderValue::from_static("true"),
                );
            }
            Ok(response)
        }
    }
}

/// The parts of the request that become `trigger.*`.
fn request_parts<'a>(req: &'a HttpRequest, body: &'a [u8]) -> hookflow_service::Request<'a> {
    hookflow_service::Request {
        method: req.method().as_str(),
        path: req.path(),
        query: req.query_string(),
        content_type: req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| std::str::from_utf8(v.as_bytes()).ok()),
        body,
    }
}

/// Reads the body ([`read_body`]) by `deadline`, or answers 408. A body
/// already in the connection's buffer is complete at the read's first
/// poll (the vendored actix-http first polls a request with a body after
/// handing over what its buffer holds), and at the latest at its second,
/// so only a read still pending then arms a timer: a timer-wheel entry
/// per request otherwise.
pub(crate) async fn read_body_by(
    payload: &mut web::Payload,
    limit: u64,
    declared: Option<u64>,
    deadline: Instant,
    read_timeout: std::time::Duration,
) -> Result<web::Bytes, ApiError> {
    use std::future::Future;
    use std::task::Poll;
    let mut read = std::pin::pin!(read_body(payload, limit, declared));
    let mut polled = false;
    let early = std::future::poll_fn(|cx| match read.as_mut().poll(cx) {
        Poll::Ready(body) => Poll::Ready(Some(body)),
        Poll::Pending if !polled => {
            // Come back at once, whether or not the body comes: a sender
            // that sends nothing more must still meet the timer.
            polled = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
        Poll::Pending => Poll::Ready(None),
    })
    .await;
    match early {
        Some(body) => body,
        None => tokio::time::timeout_at(deadline.into(), read)
            .await
            .map_err(|_| Refusal::RequestTimeout(read_timeout))?,
    }
}

/// Reads the body, never past `limit` bytes. The buffer starts at the
/// declared length (actix's own helper starts every body at 32 KiB).
async fn read_body(
    payload: &mut web::Payload,
    limit: u64,
    declared: Option<u64>,
) -> Result<web::Bytes, ApiError> {
    use futures_core::Stream;
    let mut buf = web::BytesMut::with_capacity(
        usize::try_from(declared.unwrap_or(0).min(limit).min(64 * 1024)).unwrap_or(0),
    );
    while let Some(chunk) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut *payload).poll_next(cx)).await
    {
        let chunk = chunk.map_err(|e| Refusal::BadRequest(body_error(&e).into()))?;
        if (buf.len() + chunk.len()) as u64 > limit {
            return Err(Refusal::PayloadTooLarge(limit).into());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Why a body could not be read, in the sender's terms (actix's own text
/// ends in `: None`).
fn body_error(e: &actix_web::error::PayloadError) -> &'static str {
    use actix_web::error::PayloadError;
    match e {
        PayloadError::Incomplete(_) => {
            "could not read the body: it ended before its declared length, or its chunked framing is broken"
        }
        PayloadError::Overflow => "could not read the body: it is longer than it declared",
        PayloadError::EncodingCorrupted => "could not read the body: its encoding is corrupt",
        _ => "could not read the body",
    }
}

/// Compares Basic credentials in constant time (both parts at once, over
/// digests, so that neither content nor length leaks).
fn check_basic(
    req: &HttpRequest,
    credentials: &hookflow_service::SecretDigest,
) -> Result<(), ApiError> {
    let unauthorized = || {
        ApiError(Refusal::Unauthorized(
            "valid Basic credentials are required".into(),
        ))
    };
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(unauthorized)?;
    let encoded = crate::scheme::credentials(value, "Basic")
        .ok_or_else(unauthorized)?
        .trim();
    // Decoded on the stack when it fits (every credential seen in
    // practice), else into a buffer of its own.
    let mut stack = [0u8; 192];
    let heap;
    let engine = &base64::engine::general_purpose::STANDARD;
    let decoded: &[u8] = match engine.decode_slice(encoded, &mut stack) {
        Ok(n) => &stack[..n],
        Err(base64::DecodeSliceError::OutputSliceTooSmall) => {
            heap = engine.decode(encoded).map_err(|_| unauthorized())?;
            &heap
        }
        Err(base64::DecodeSliceError::DecodeError(_)) => return Err(unauthorized()),
    };
    let split = decoded
        .iter()
        .position(|b| *b == b':')
        .ok_or_else(unauthorized)?;
    let (given_user, given_pass) = (&decoded[..split], &decoded[split + 1..]);
    if credentials.matches(&[given_user, given_pass]) {
        Ok(())
    } else {
        Err(unauthorized())
    }
}

/// Turns an answer into an HTTP response carrying the execution id (whose
/// text becomes the header's value without a copy).
pub fn respond(execution_id: String, answer: Answer) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(answer.status)
        .unwrap_or(actix_web::http::StatusCode::OK);
    let mut builder = HttpResponse::build(status);
    for (name, value) in &answer.headers {
        // The content types hookflow sets itself are not parsed again
        // (a header name and value parsed from text cost every answer
        // ~1 % of a sync request's instructions).
        match (&**name, &**value) {
            ("content-type", JSON_TYPE) => {
                builder.append_header((header::CONTENT_TYPE, HeaderValue::from_static(JSON_TYPE)))
            }
            ("content-type", TEXT_TYPE) => {
                builder.append_header((header::CONTENT_TYPE, HeaderValue::from_static(TEXT_TYPE)))
            }
            (name, value) => builder.append_header((name, value)),
        };
    }
    builder.insert_header((execution_header(), execution_id));
    builder.body(answer.body)
}

/// [`EXECUTION_HEADER`], parsed once.
fn execution_header() -> HeaderName {
    static NAME: std::sync::LazyLock<HeaderName> =
        std::sync::LazyLock::new(|| HeaderName::from_static(EXECUTION_HEADER));
    NAME.clone()
}

#[cfg(test)]
mod tests {
    use super::check_basic;
    use actix_web::test::TestRequest;
    use base64::Engine;
    use hookflow_service::SecretDigest;

    fn with_credentials(user: &str, password: &str) -> actix_web::HttpRequest {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        TestRequest::default()
            .insert_header(("authorization", format!("Basic {encoded}")))
            .to_http_request()
    }

    /// Credentials that decode on the stack and ones too long for it are
    /// checked alike; what does not decode is refused.
    #[test]
    fn credentials_of_any_length_are_checked() {
        let long = "p".repeat(400);
        for password in ["s3cret", long.as_str()] {
            let digest = SecretDigest::of(&[b"shop", password.as_bytes()]);
            let req = with_credentials("shop", password);
            assert!(
                check_basic(&req, &digest).is_ok(),
                "{} bytes",
                password.len()
            );
            let wrong = format!("{password}x");
            assert!(check_basic(&with_credentials("shop", &wrong), &digest).is_err());
            assert!(check_basic(&with_credentials("shoq", password), &digest).is_err());
        }
        let digest = SecretDigest::of(&[b"shop", b"s3cret"]);
        for value in [
            "Basic !!!notbase64",
            "Basic c2hvcA==",
            "Bearer c2hvcDpzM2NyZXQ=",
        ] {
            let req = TestRequest::default()
                .insert_header(("authorization", value))
                .to_http_request();
            assert!(check_basic(&req, &digest).is_err(), "{value}");
        }
        let long_garbage = format!("Basic {}!", "A".repeat(400));
        let req = TestRequest::default()
            .insert_header(("authorization", long_garbage))
            .to_http_request();
        assert!(check_basic(&req, &digest).is_err());
    }
}
