//! `GET /api/requests` (SPEC §7): refused requests to known workflows,
//! newest first, filtered by workflow, reason and time, paged by cursor.

use crate::admin::{authorize, page_query, parse_time, scrubbed};
use crate::error::ApiError;
use crate::AppState;
use actix_web::{HttpRequest, HttpResponse};
use hookflow_model::request::headers_object;
use hookflow_model::scrub::Escaped;
use hookflow_service::Refusal;
use hookflow_store::{RefusedFilter, RefusedRequest};
use serde_json::{json, Value as Json};

/// One row as the API shows it: headers as an object (repeated names joined).
fn row(r: &RefusedRequest) -> Json {
    let headers = headers_object(r.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    json!({"at": r.at, "workflow": r.workflow, "status": r.status, "error": r.error,
           "reason": r.reason, "method": r.method, "remote_addr": r.remote_addr,
           "headers": headers, "body_size": r.body_size})
}

/// `GET /api/requests?workflow=&reason=&since=&limit=&cursor=`.
pub fn list(req: &HttpRequest, state: &AppState) -> Result<HttpResponse, ApiError> {
    authorize(req, state)?;
    let (query, limit) = page_query(req)?;
    if let Some(reason) = query.get("reason") {
        if !Refusal::KEPT_CODES.contains(&reason.as_str()) {
            return Err(ApiError(Refusal::BadRequest(format!(
                "`reason` is one of {}, not `{}`",
                Refusal::KEPT_CODES.join(", "),
                Escaped(reason)
            ))));
        }
    }
    let filter = RefusedFilter {
        workflow: query.get("workflow").cloned(),
        reason: query.get("reason").cloned(),
        since_ms: parse_time("since", query.get("since"))?,
        limit,
        cursor: crate::admin::cursor(&query, RefusedFilter::cursor_reads)?,
    };
    let (rows, next) = state
        .service
        .executor
        .store()
        .refused(&filter)
        .map_err(|e| Refusal::Internal(e.to_string()))?;
    let rows: Vec<Json> = rows.iter().map(row).collect();
    Ok(scrubbed(
        HttpResponse::Ok(),
        state,
        json!({"requests": rows, "next_cursor": next}),
    ))
}
