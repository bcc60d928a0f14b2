//! `POST /api/webhook:trigger/{key}`: checks in the order of SPEC §4 (key,
//! method, Basic auth, size, content type, parsing), then hands the run to the
//! executor.

use crate::error::ApiError;
use crate::idempotency::Claim;
use crate::registry::Served;
use crate::verify::Verified;
use crate::AppState;
use actix_web::http::{header, Method};
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use hookflow_executor::{AcceptError, Answer, RunInput};
use hookflow_model::def::Mode;
use hookflow_model::request::BodySource;
use hookflow_parser::ParseError;
use serde_json::Value as Json;
use std::sync::Arc;
use std::time::Instant;
use subtle::ConstantTimeEq;

/// The path prefix of webhook URLs; the key follows it.
pub const PREFIX: &str = "/api/webhook:trigger";

/// The response header marking an idempotent replay.
pub const REPLAYED_HEADER: &str = "x-hookflow-replayed";
/// How long a repeat waits for a first request of an async workflow.
const IDEMPOTENT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The response header naming the run a response belongs to.
pub const EXECUTION_HEADER: &str = "x-hookflow-execution";

/// The webhook handler: every method, so that a known key answers 405 rather than 404.
pub async fn handle(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let clock = Instant::now();
    // The key is the one path segment after the prefix (routing by prefix avoids a regex per request).
    let key = req
        .path()
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.strip_prefix('/'))
        .unwrap_or_default();
    let served = if key.contains('/') {
        None
    } else {
        state.registry().get(key).cloned()
    };
    // Held for the log line (an `Arc`, not a copy of the id).
    let workflow = served.as_ref().map(|s| s.workflow.clone());
    let response = match served {
        Some(served) => match run(&req, payload, &state, served).await {
            Ok(r) => r,
            Err(e) => actix_web::ResponseError::error_response(&e),
        },
        None => actix_web::ResponseError::error_response(&ApiError::NotFound(
            "no enabled workflow has this key".into(),
        )),
    };
    let execution = response
        .headers()
        .get(EXECUTION_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info!(
        message = "Webhook request.",
        workflow = workflow.as_ref().map_or("-", |w| w.id.as_str()),
        execution_id = execution,
        status = response.status().as_u16(),
        latency_ms = format!("{:.2}", clock.elapsed().as_secs_f64() * 1000.0),
    );
    response
}

async fn run(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    served: Arc<Served>,
) -> Result<HttpResponse, ApiError> {
    if req.method() != Method::POST {
        return Err(ApiError::MethodNotAllowed);
    }
    if state.is_shutting_down() {
        return Err(ApiError::Unavailable(
            "the server is shutting down; try again later".into(),
        ));
    }
    if let Some((user, pass)) = &served.basic {
        check_basic(req, user, pass)?;
    }
    let workflow = served.workflow.clone();
    let limit = workflow.trigger.max_body;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let body = read_body(payload, limit, declared).await?;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    // Content type (415) before the signature (401) before parsing (400).
    if !body.is_empty() && hookflow_parser::body_kind(content_type).is_none() {
        return Err(parse_error(ParseError::UnsupportedMediaType(
            content_type.unwrap_or("(none)").to_string(),
        )));
    }
    let verified = match &served.verifier {
        Some(verifier) => check_signature(req, verifier, &workflow, &body)?,
        None => Verified::default(),
    };
    if let Some(challenge) = verified.challenge {
        // Feishu's URL check: answered here, no run.
        return Ok(HttpResponse::Ok().json(serde_json::json!({ "challenge": challenge })));
    }
    let headers = req
        .headers()
        .iter()
        .filter_map(|(n, v)| v.to_str().ok().map(|v| (n.as_str(), v)));
    let input = build_input(
        &workflow,
        Request {
            method: req.method().as_str(),
            path: req.path(),
            query: req.query_string(),
            content_type,
            body: &body,
        },
        headers,
        verified,
    )?;
    let first = match &workflow.trigger.idempotency {
        Some(idem) => match idempotency_key(&workflow, idem, &input)? {
            Some(key) => {
                let wait = workflow.timeout.unwrap_or(IDEMPOTENT_WAIT);
                match state
                    .inflight
                    .claim(state.executor.store().as_ref(), &workflow.id, &key, wait)
                    .await?
                {
                    Claim::Replay(id, answer) => {
                        let mut response = respond(&id, answer);
                        response.headers_mut().insert(
                            actix_web::http::header::HeaderName::from_static(REPLAYED_HEADER),
                            actix_web::http::header::HeaderValue::from_static("true"),
                        );
                        return Ok(response);
                    }
                    Claim::First(first) => Some((first, idem.ttl)),
                }
            }
            None => None,
        },
        None => None,
    };
    let (id, answer) = match workflow.mode {
        Mode::Sync => state.executor.run_sync(workflow, input).await,
        Mode::Async => state
            .executor
            .accept(workflow, input)
            .await
            .map_err(|e| match e {
                AcceptError::QueueFull => {
                    ApiError::Unavailable("the queue is full; try again later".into())
                }
                AcceptError::ShuttingDown => {
                    ApiError::Unavailable("the server is shutting down; try again later".into())
                }
                AcceptError::Store(m) | AcceptError::Response(m) => ApiError::Internal(m),
            })?,
    };
    if let Some((first, ttl)) = first {
        first.finish(state.executor.store().as_ref(), &id, &answer, ttl);
    }
    Ok(respond(&id, answer))
}

/// Reads the body, never past `limit` bytes. The buffer starts at the
/// declared length (actix's own helper starts every body at 32 KiB).
async fn read_body(
    mut payload: web::Payload,
    limit: u64,
    declared: Option<u64>,
) -> Result<web::Bytes, ApiError> {
    use futures_core::Stream;
    let mut buf = web::BytesMut::with_capacity(
        usize::try_from(declared.unwrap_or(0).min(limit).min(64 * 1024)).unwrap_or(0),
    );
    while let Some(chunk) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut payload).poll_next(cx)).await
    {
        let chunk =
            chunk.map_err(|e| ApiError::BadRequest(format!("could not read the body: {e}")))?;
        if (buf.len() + chunk.len()) as u64 > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

fn parse_error(e: ParseError) -> ApiError {
    match e {
        ParseError::UnsupportedMediaType(_) => ApiError::UnsupportedMediaType(e.to_string()),
        other => ApiError::BadRequest(other.to_string()),
    }
}

/// The parts of a request that become `trigger.*`.
pub struct Request<'a> {
    /// The method.
    pub method: &'a str,
    /// The path, without the query string.
    pub path: &'a str,
    /// The raw query string.
    pub query: &'a str,
    /// The Content-Type header.
    pub content_type: Option<&'a str>,
    /// The raw body.
    pub body: &'a [u8],
}

/// Decodes a request into a run's input: `trigger.*` and the parse rules'
/// `vars` (400/415 errors name the field). `verified` carries what the
/// signature check decrypted. Used by the server and by `hookflow run`/`test`.
pub fn build_input<'a>(
    workflow: &hookflow_model::Workflow,
    request: Request<'_>,
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    verified: Verified,
) -> Result<RunInput, ApiError> {
    let mut trigger =
        hookflow_parser::parse_request(headers, request.query, request.content_type, request.body)
            .map_err(parse_error)?;
    trigger.method = request.method.to_string();
    trigger.path = request.path.to_string();
    if let Some(event) = verified.body {
        trigger.body = event;
        trigger.body_source = BodySource::Stored;
    }
    if let Some(plaintext) = verified.resource_plaintext {
        if let Some(Json::Object(resource)) = trigger.body.get_mut("resource") {
            resource.insert("plaintext".into(), plaintext);
            trigger.body_source = BodySource::Stored;
        }
    }
    let vars = hookflow_parser::extract(&workflow.trigger.parse, &trigger).map_err(parse_error)?;
    Ok(RunInput {
        trigger,
        vars: Json::Object(vars),
    })
}

/// Renders the idempotency key over the request; an empty key means none.
fn idempotency_key(
    workflow: &hookflow_model::Workflow,
    idem: &hookflow_model::runtime::Idempotency,
    input: &RunInput,
) -> Result<Option<String>, ApiError> {
    let mut scope = hookflow_model::template::Scope::new();
    scope.set_owned("trigger", input.trigger.to_json());
    scope.set("vars", &input.vars);
    scope.set("secrets", &workflow.secret_values());
    let key = workflow.templates.render(&idem.key, &scope).map_err(|e| {
        ApiError::BadRequest(format!(
            "the idempotency key cannot be computed: {}",
            e.message
        ))
    })?;
    Ok((!key.is_empty()).then_some(key))
}

/// Runs the workflow's signature check on the raw request.
fn check_signature(
    req: &HttpRequest,
    verifier: &crate::verify::Verifier,
    workflow: &hookflow_model::Workflow,
    body: &[u8],
) -> Result<Verified, ApiError> {
    let header = |name: &str| {
        let values: Vec<&str> = req
            .headers()
            .get_all(name)
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!values.is_empty()).then(|| values.join(","))
    };
    let scope = || {
        let headers = req
            .headers()
            .iter()
            .filter_map(|(n, v)| v.to_str().ok().map(|v| (n.as_str(), v)));
        let mut trigger = serde_json::Map::new();
        trigger.insert(
            "method".into(),
            Json::String(req.method().as_str().to_string()),
        );
        trigger.insert("path".into(), Json::String(req.path().to_string()));
        trigger.insert(
            "headers".into(),
            Json::Object(hookflow_parser::header_map(headers)),
        );
        trigger.insert(
            "query".into(),
            hookflow_parser::parse_query(req.query_string()),
        );
        trigger.insert(
            "raw_body".into(),
            Json::String(String::from_utf8_lossy(body).into_owned()),
        );
        let mut scope = hookflow_model::template::Scope::new();
        scope.set("trigger", &Json::Object(trigger));
        scope.set("secrets", &workflow.secret_values());
        scope
    };
    let now = hookflow_model::time::now_millis() / 1000;
    verifier
        .check(&crate::verify::Signed {
            header: &header,
            body,
            scope: &scope,
            now,
        })
        .map_err(|reason| {
            tracing::info!(message = "Signature rejected.", workflow = %workflow.id, %reason);
            ApiError::InvalidSignature
        })
}

/// Compares Basic credentials in constant time (both parts, always).
fn check_basic(req: &HttpRequest, user: &[u8], pass: &[u8]) -> Result<(), ApiError> {
    let unauthorized = || ApiError::Unauthorized("valid Basic credentials are required".into());
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(unauthorized)?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))
        .ok_or_else(unauthorized)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| unauthorized())?;
    let split = decoded
        .iter()
        .position(|b| *b == b':')
        .ok_or_else(unauthorized)?;
    let (given_user, given_pass) = (&decoded[..split], &decoded[split + 1..]);
    let ok = given_user.ct_eq(user) & given_pass.ct_eq(pass);
    if bool::from(ok) {
        Ok(())
    } else {
        Err(unauthorized())
    }
}

/// Turns an answer into an HTTP response carrying the execution id.
pub fn respond(execution_id: &str, answer: Answer) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(answer.status)
        .unwrap_or(actix_web::http::StatusCode::OK);
    let mut builder = HttpResponse::build(status);
    for (name, value) in &answer.headers {
        builder.append_header((name.as_str(), value.as_str()));
    }
    builder.insert_header((EXECUTION_HEADER, execution_id));
    builder.body(answer.body)
}
