//! `GET /api/executions/{id}/parse-entries`: the `parse:` block of a recorded
//! run's request (`hookflow sample --execution`), for the run page.

use crate::admin::authorize;
use crate::error::ApiError;
use crate::AppState;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use hookflow_service::parse_entries::parse_entries;
use hookflow_service::Refusal;

/// The parse entries of the run `id`'s request, as YAML text.
pub fn get(req: &HttpRequest, state: &AppState, id: &str) -> Result<HttpResponse, ApiError> {
    authorize(req, state)?;
    let record = state
        .service
        .executor
        .store()
        .get(id)
        .map_err(|e| Refusal::Internal(e.to_string()))?
        .ok_or_else(|| Refusal::NotFound(format!("no execution {id}")))?;
    let yaml = parse_entries(&record)
        .ok_or_else(|| Refusal::NotFound(format!("execution {id} kept no request")))?
        .map_err(Refusal::Internal)?;
    // Scrubbed like every admin answer (SPEC §3).
    let yaml = state
        .service
        .executor
        .secrets()
        .current()
        .str(&yaml)
        .into_owned();
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/yaml; charset=utf-8"))
        .body(yaml))
}
