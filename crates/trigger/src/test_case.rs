//! `GET /api/executions/{id}/test-case`: a run as a test file of one case
//! (the YAML of `hookflow executions export-test`), as a download.

use crate::admin::authorize;
use crate::error::ApiError;
use crate::AppState;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use hookflow_service::test_case::{test_case, TestCaseError};
use hookflow_service::Refusal;

/// The test file made from the run `id`.
pub fn get(req: &HttpRequest, state: &AppState, id: &str) -> Result<HttpResponse, ApiError> {
    authorize(req, state)?;
    let record = state
        .service
        .executor
        .store()
        .get(id)
        .map_err(|e| Refusal::Internal(e.to_string()))?
        .ok_or_else(|| Refusal::NotFound(format!("no execution {id}")))?;
    let case = test_case(&record).map_err(|e| match e {
        TestCaseError::NotFinished(_) | TestCaseError::Cut(_) => Refusal::Conflict(e.to_string()),
        TestCaseError::Yaml(_) => Refusal::Internal(e.to_string()),
    })?;
    // Scrubbed like every admin answer (SPEC §3).
    let yaml = state
        .service
        .executor
        .secrets()
        .current()
        .str(&case.yaml)
        .into_owned();
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/yaml"))
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{}\"", case.file_name()),
        ))
        .body(yaml))
}
