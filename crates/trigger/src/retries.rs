//! The retry routes of the admin API: `POST /api/executions/{id}/retry` with
//! an optional `{"version": "recorded" | "current"}`, and the bulk retry
//! `POST /api/executions/retry` by filter (SPEC §7).

use crate::admin::{authorize, parse_time, scrubbed};
use crate::error::ApiError;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use hookflow_service::retry::BulkRetry;
use hookflow_service::{Refusal, RetryVersion};
use hookflow_store::RunStatus;
use serde_json::{json, Map, Value as Json};
use std::time::Instant;

/// Largest body a retry route reads.
const MAX_BODY: u64 = 64 * 1024;

/// `POST /api/executions/{id}/retry`.
pub async fn one(
    req: &HttpRequest,
    payload: &mut web::Payload,
    state: &AppState,
    deadline: Instant,
    id: &str,
) -> Result<HttpResponse, ApiError> {
    authorize(req, state)?;
    // An unknown run is answered before its body is read.
    state
        .service
        .executor
        .store()
        .get(id)
        .map_err(|e| Refusal::Internal(e.to_string()))?
        .ok_or_else(|| Refusal::NotFound(format!("no execution {id}")))?;
    let mut fields = body_fields(req, payload, state, deadline).await?;
    let version = version_field(&mut fields)?;
    no_other_fields(&fields)?;
    let new_id = state
        .service
        .retry(id, version)
        .await
        .map_err(Refusal::from)?;
    Ok(scrubbed(
        HttpResponse::Created(),
        state,
        json!({"execution_id": new_id}),
    ))
}

/// `POST /api/executions/retry`: the finished runs matching the filter.
pub async fn bulk(
    req: &HttpRequest,
    payload: &mut web::Payload,
    state: &AppState,
    deadline: Instant,
) -> Result<HttpResponse, ApiError> {
    authorize(req, state)?;
    let mut fields = body_fields(req, payload, state, deadline).await?;
    let version = version_field(&mut fields)?;
    let workflow = text_field(&mut fields, "workflow")?;
    let status = match text_field(&mut fields, "status")? {
        None => None,
        Some(s) => Some(
            RunStatus::parse(&s)
                .filter(|s| s.is_finished())
                .ok_or_else(|| {
                    Refusal::BadRequest(format!(
                        "`status` must be resolved, failed or aborted (only finished runs are retried), not `{s}`"
                    ))
                })?,
        ),
    };
    let since = text_field(&mut fields, "since")?;
    let until = text_field(&mut fields, "until")?;
    let filter = BulkRetry {
        workflow,
        status,
        since_ms: parse_time("since", since.as_ref())?,
        until_ms: parse_time("until", until.as_ref())?,
        version,
    };
    no_other_fields(&fields)?;
    let done = state
        .service
        .retry_matching(&filter)
        .await
        .map_err(Refusal::from)?;
    let mut body = json!({"execution_ids": done.execution_ids});
    let mut messages = Vec::new();
    if let Some((why, left)) = &done.stopped {
        body["not_started"] = json!(left);
        messages.push(format!(
            "{left} matching runs were not started: {why}; the runs started are retried, so the same retry again starts only the rest"
        ));
    }
    if done.not_retried > 0 {
        body["not_retried"] = json!(done.not_retried);
        messages.push(format!(
            "{} more runs matched beyond the first {}; retry them with a narrower filter",
            done.not_retried,
            hookflow_service::retry::MAX_BULK
        ));
    }
    if done.already_retried > 0 {
        body["already_retried"] = json!(done.already_retried);
    }
    if done.answered > 0 {
        body["already_answered"] = json!(done.answered);
    }
    if !messages.is_empty() {
        body["message"] = json!(messages.join("; "));
    }
    Ok(scrubbed(HttpResponse::Created(), state, body))
}

/// The fields of a JSON object body; an empty body has none.
async fn body_fields(
    req: &HttpRequest,
    payload: &mut web::Payload,
    state: &AppState,
    deadline: Instant,
) -> Result<Map<String, Json>, ApiError> {
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY) {
        return Err(Refusal::PayloadTooLarge(MAX_BODY).into());
    }
    let body = crate::webhook::read_body_by(
        payload,
        MAX_BODY,
        declared,
        deadline,
        state.http.read_timeout,
    )
    .await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Json>(&body) {
        Ok(Json::Object(fields)) => Ok(fields),
        Ok(_) => Err(Refusal::BadRequest("the body must be a JSON object".into()).into()),
        Err(e) => Err(Refusal::BadRequest(format!("the body is not JSON: {e}")).into()),
    }
}

/// `version`: `recorded` (the default) or `current`.
fn version_field(fields: &mut Map<String, Json>) -> Result<RetryVersion, ApiError> {
    match text_field(fields, "version")? {
        None => Ok(RetryVersion::Recorded),
        Some(v) => RetryVersion::parse(&v).ok_or_else(|| {
            Refusal::BadRequest(format!(
                "`version` must be `recorded` or `current`, not `{v}`"
            ))
            .into()
        }),
    }
}

/// A string field, taken out of `fields`; null is absent.
fn text_field(fields: &mut Map<String, Json>, name: &str) -> Result<Option<String>, ApiError> {
    match fields.remove(name) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(s)),
        Some(_) => Err(Refusal::BadRequest(format!("`{name}` must be a string")).into()),
    }
}

/// Fields left over are mistakes (a misspelled filter would retry too much).
fn no_other_fields(fields: &Map<String, Json>) -> Result<(), ApiError> {
    match fields.keys().next() {
        None => Ok(()),
        Some(name) => Err(Refusal::BadRequest(format!("unknown field `{name}`")).into()),
    }
}
