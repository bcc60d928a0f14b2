//! Retry: a new run of a finished run's workflow version with the same input
//! (`POST /api/executions/{id}/retry`).

use crate::{Refusal, Service};
use hookflow_executor::AcceptError;
use hookflow_model::request::RunInput;
use serde_json::Value as Json;

/// Why a retry was refused.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    /// No such execution.
    #[error("no execution {0}")]
    NotFound(String),
    /// The run has not finished.
    #[error("execution {0} has not finished")]
    NotFinished(String),
    /// The run's workflow version cannot be loaded, or its request no longer parses.
    #[error("{0}")]
    Workflow(String),
    /// Storage failed.
    #[error("{0}")]
    Store(String),
    /// The server is shutting down or the queue is full.
    #[error("{0}")]
    Unavailable(String),
}

impl From<RetryError> for Refusal {
    fn from(e: RetryError) -> Refusal {
        let message = e.to_string();
        match e {
            RetryError::NotFound(_) => Refusal::NotFound(message),
            RetryError::NotFinished(_) => Refusal::Conflict(message),
            RetryError::Workflow(m) => Refusal::Conflict(m),
            RetryError::Store(m) => Refusal::Internal(m),
            RetryError::Unavailable(m) => Refusal::Unavailable(m),
        }
    }
}

impl Service {
    /// Starts a new run of the finished run `id`'s workflow version with the
    /// same input; returns the new run's id.
    ///
    /// Async runs kept their full input. Sync runs keep only their record, so
    /// their input is rebuilt from the recorded request (whose secret-bearing
    /// headers are redacted) by applying the workflow's parse rules to it.
    pub async fn retry(&self, id: &str) -> Result<String, RetryError> {
        let executor = &self.executor;
        let store = executor.store();
        let old = store
            .get(id)
            .map_err(|e| RetryError::Store(e.to_string()))?
            .ok_or_else(|| RetryError::NotFound(id.to_string()))?;
        if !old.status.is_finished() {
            return Err(RetryError::NotFinished(id.to_string()));
        }
        let workflow = executor
            .resolve_version(&old.workflow, &old.version)
            .map_err(RetryError::Workflow)?;
        let input = match store
            .input(id)
            .map_err(|e| RetryError::Store(e.to_string()))?
        {
            Some(input) => input,
            None => {
                let trigger = old.trigger.clone().unwrap_or_default();
                let vars =
                    hookflow_parser::extract(&workflow.trigger.parse, &trigger).map_err(|e| {
                        RetryError::Workflow(format!("the recorded request no longer parses: {e}"))
                    })?;
                RunInput {
                    vars: Json::Object(vars),
                    trigger,
                    secret_headers: workflow.trigger.secret_headers.clone(),
                }
            }
        };
        executor
            .rerun(workflow, input, id)
            .await
            .map_err(|e| match e {
                AcceptError::Store(s) => RetryError::Store(s),
                other => RetryError::Unavailable(other.to_string()),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_errors_answer_as_the_admin_api_promises() {
        let cases = [
            (RetryError::NotFound("x".into()), 404),
            (RetryError::NotFinished("x".into()), 409),
            (RetryError::Workflow("gone".into()), 409),
            (RetryError::Store("disk".into()), 500),
            (RetryError::Unavailable("full".into()), 503),
        ];
        for (error, status) in cases {
            assert_eq!(Refusal::from(error).status(), status);
        }
        assert_eq!(
            Refusal::from(RetryError::NotFinished("e1".into())).to_string(),
            "execution e1 has not finished"
        );
    }
}
