//! The admin API (SPEC §4 "Other routes"), behind a bearer token.

use crate::error::ApiError;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use hookflow_executor::RetryError;
use hookflow_store::{ExecutionFilter, ExecutionRecord, RunStatus};
use serde_json::{json, Value as Json};
use std::collections::HashMap;
use subtle::ConstantTimeEq;

/// Default and largest page sizes of the executions list.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;

/// Routes under `/api`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/workflows", web::get().to(workflows))
        .route("/api/executions", web::get().to(executions))
        .route("/api/executions/{id}", web::get().to(execution))
        .route("/api/executions/{id}/retry", web::post().to(retry));
}

/// 404 when no token is configured; 401 without the right one.
fn authorize(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let Some(token) = state.settings.admin_token.as_deref() else {
        return Err(ApiError::NotFound("not found".into()));
    };
    let given = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized(
            "a valid admin bearer token is required".into(),
        ))
    }
}

async fn workflows(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let registry = state.registry();
    Ok(HttpResponse::Ok().json(json!({"workflows": registry.listing})))
}

/// The record as the API shows it.
pub fn record_json(record: &ExecutionRecord) -> Json {
    let mut v = serde_json::to_value(record).unwrap_or(Json::Null);
    if let Json::Object(m) = &mut v {
        m.remove("started_ms");
    }
    v
}

fn parse_time(name: &str, value: Option<&String>) -> Result<Option<u64>, ApiError> {
    value
        .map(|v| {
            hookflow_model::time::parse_rfc3339(v)
                .ok_or_else(|| ApiError::BadRequest(format!("`{name}` must be an RFC 3339 time")))
        })
        .transpose()
}

async fn executions(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let limit = match query.get("limit") {
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| {
                ApiError::BadRequest(format!("`limit` must be a number from 1 to {MAX_LIMIT}"))
            })?,
        None => DEFAULT_LIMIT,
    };
    let status = match query.get("status") {
        Some(s) => Some(
            RunStatus::parse(s)
                .ok_or_else(|| ApiError::BadRequest(format!("unknown status `{s}`")))?,
        ),
        None => None,
    };
    let filter = ExecutionFilter {
        workflow: query.get("workflow").cloned(),
        status,
        since_ms: parse_time("since", query.get("since"))?,
        until_ms: parse_time("until", query.get("until"))?,
        limit,
        cursor: query.get("cursor").cloned(),
    };
    let (records, next) = state
        .executor
        .store()
        .list(&filter)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let rows: Vec<Json> = records
        .iter()
        .map(|r| {
            json!({"id": r.id, "workflow": r.workflow, "version": r.version, "status": r.status,
                   "started_at": r.started_at, "finished_at": r.finished_at})
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"executions": rows, "next_cursor": next})))
}

async fn execution(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let record = state
        .executor
        .store()
        .get(&id)
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .ok_or_else(|| ApiError::NotFound(format!("no execution {id}")))?;
    Ok(HttpResponse::Ok().json(record_json(&record)))
}

async fn retry(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    match state.executor.retry(&id).await {
        Ok(new_id) => Ok(HttpResponse::Created().json(json!({"execution_id": new_id}))),
        Err(RetryError::NotFound(m)) => Err(ApiError::NotFound(m)),
        Err(RetryError::NotFinished(m)) => Err(ApiError::Conflict(m)),
        Err(RetryError::Unavailable(m)) => Err(ApiError::Unavailable(m)),
        Err(RetryError::Workflow(m)) => Err(ApiError::Conflict(m)),
        Err(RetryError::Store(m)) => Err(ApiError::Internal(m)),
    }
}
