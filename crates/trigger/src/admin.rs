//! The admin API (SPEC §4 "Other routes"), behind a bearer token.

use crate::error::ApiError;
use crate::{parse_entries, retries, test_case, AppState};
use actix_web::{web, HttpRequest, HttpResponse};
use hookflow_service::{overview, Refusal};
use hookflow_store::{ExecutionFilter, RunStatus};
use serde_json::{json, Value as Json};
use std::collections::HashMap;
use std::time::Instant;

/// Default and largest page sizes of the executions list.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;

/// Dispatches `/api/workflows` and `/api/executions…`; `None` when the path is not an admin route.
/// A request body the route reads (a retry's) must arrive by `deadline`.
pub async fn dispatch(
    req: &HttpRequest,
    payload: &mut web::Payload,
    state: &AppState,
    deadline: Instant,
) -> Option<Result<HttpResponse, ApiError>> {
    let path = req.path();
    let method = req.method().clone();
    let get = method == actix_web::http::Method::GET;
    let post = method == actix_web::http::Method::POST;
    let not_allowed = || Some(Err(ApiError(Refusal::NotFound("no such route".into()))));
    if path == "/api/workflows" {
        return if get {
            Some(workflows(req, state))
        } else {
            not_allowed()
        };
    }
    if path == "/api/requests" {
        return if get {
            Some(crate::requests::list(req, state))
        } else {
            not_allowed()
        };
    }
    if path == "/api/executions" {
        return if get {
            Some(executions(req, state))
        } else {
            not_allowed()
        };
    }
    let rest = path.strip_prefix("/api/executions/")?;
    match rest.split('/').collect::<Vec<_>>().as_slice() {
        ["retry"] if post => Some(retries::bulk(req, payload, state, deadline).await),
        [id] if get && !id.is_empty() => Some(execution(req, state, id)),
        [id, "test-case"] if get && !id.is_empty() => Some(test_case::get(req, state, id)),
        [id, "parse-entries"] if get && !id.is_empty() => Some(parse_entries::get(req, state, id)),
        [id, "retry"] if post && !id.is_empty() => {
            Some(retries::one(req, payload, state, deadline, id).await)
        }
        _ => not_allowed(),
    }
}

/// 404 when no token is configured (unless the local token is given); 401
/// without the right one.
pub(crate) fn authorize(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let given = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| crate::scheme::credentials(v, "Bearer"))
        .unwrap_or_default();
    let matches = |token: &Option<String>| {
        token
            .as_deref()
            .is_some_and(|t| hookflow_service::secret_eq(given.as_bytes(), t.as_bytes()))
    };
    if matches(&state.http.admin_token) || matches(&state.http.local_token) {
        Ok(())
    } else if state.http.admin_token.is_none() {
        Err(Refusal::NotFound("not found".into()).into())
    } else {
        Err(Refusal::TokenRequired.into())
    }
}

fn workflows(req: &HttpRequest, state: &AppState) -> Result<HttpResponse, ApiError> {
    authorize(req, state)?;
    let registry = state.service.registry();
    let since = hookflow_model::time::now_millis().saturating_sub(overview::RECENT_MS);
    let counts = overview::recent_counts(
        state.service.executor.store().as_ref(),
        since,
        overview::MAX_COUNTED,
    )
    .map_err(|e| Refusal::Internal(e.to_string()))?;
    let rows: Vec<Json> = registry
        .listing
        .iter()
        .map(|w| {
            let mut row = serde_json::to_value(w).unwrap_or(Json::Null);
            if let Json::Object(m) = &mut row {
                let c = counts.by_workflow.get(&w.id);
                m.insert("counts_24h".into(), json!(c.cloned().unwrap_or_default()));
            }
            row
        })
        .collect();
    Ok(scrubbed(
        HttpResponse::Ok(),
        state,
        json!({"workflows": rows, "counts_24h_cut": counts.cut,
               "problems": overview::problems(&registry)}),
    ))
}

/// An admin answer, scrubbed of secret values and URL user info (SPEC §3):
/// whatever a record or a listing holds, the admin API never shows them.
pub(crate) fn scrubbed(
    mut builder: actix_web::HttpResponseBuilder,
    state: &AppState,
    mut body: Json,
) -> HttpResponse {
    state.service.executor.secrets().current().json(&mut body);
    builder.json(body)
}

pub(crate) fn parse_time(name: &str, value: Option<&String>) -> Result<Option<u64>, ApiError> {
    value
        .map(|v| {
            hookflow_model::time::parse_rfc3339(v).ok_or_else(|| {
                Refusal::BadRequest(format!("`{name}` must be an RFC 3339 time")).into()
            })
        })
        .transpose()
}

/// A list route's query string and its `limit` (default 50, at most 1000).
pub(crate) fn page_query(req: &HttpRequest) -> Result<(HashMap<String, String>, usize), ApiError> {
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map_err(|e| Refusal::BadRequest(format!("bad query string: {e}")))?
        .into_inner();
    let limit = match query.get("limit") {
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| {
                Refusal::BadRequest(format!("`limit` must be a number from 1 to {MAX_LIMIT}"))
            })?,
        None => DEFAULT_LIMIT,
    };
    Ok((query, limit))
}

/// The `cursor` parameter, when `reads` accepts it: a cursor that does not
/// read is refused (400), not taken for the first page, which would send a
/// client that pages until `next_cursor` is null round for ever.
pub(crate) fn cursor(
    query: &HashMap<String, String>,
    reads: fn(&str) -> bool,
) -> Result<Option<String>, ApiError> {
    match query.get("cursor") {
        Some(c) if !reads(c) => Err(Refusal::BadRequest(
            "`cursor` must be the `next_cursor` of an earlier page".into(),
        )
        .into()),
        other => Ok(other.cloned()),
    }
}

fn executions(req: &HttpRequest, state: &AppState) -> Result<HttpResponse, ApiError> {
    authorize(req, state)?;
    let (query, limit) = page_query(req)?;
    let status = match query.get("status") {
        Some(s) => Some(
            RunStatus::parse(s)
                .ok_or_else(|| Refusal::BadRequest(format!("unknown status `{s}`")))?,
        ),
        None => None,
    };
    let filter = ExecutionFilter {
        workflow: query.get("workflow").cloned(),
        status,
        since_ms: parse_time("since", query.get("since"))?,
        until_ms: parse_time("until", query.get("until"))?,
        limit,
        cursor: cursor(&query, ExecutionFilter::cursor_reads)?,
        retry_of: query.get("retry_of").cloned(),
    };
    let (records, next) = state
        .service
        .executor
        .store()
        .list(&filter)
        .map_err(|e| Refusal::Internal(e.to_string()))?;
    let rows: Vec<Json> = records
        .iter()
        .map(hookflow_service::views::summary_json)
        .collect();
    Ok(scrubbed(
        HttpResponse::Ok(),
        state,
        json!({"executions": rows, "next_cursor": next}),
    ))
}

fn execution(req: &HttpRequest, state: &AppState, id: &str) -> Result<HttpResponse, ApiError> {
    authorize(req, state)?;
    let store = state.service.executor.store();
    let record = hookflow_service::views::record_of(store.as_ref(), id)
        .map_err(|e| Refusal::Internal(e.to_string()))?
        .ok_or_else(|| Refusal::NotFound(format!("no execution {id}")))?;
    Ok(scrubbed(HttpResponse::Ok(), state, record))
}
