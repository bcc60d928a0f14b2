//! Retry: a new run of a finished run with the same input, on the workflow
//! version it ran or on the one loaded now (`POST /api/executions/{id}/retry`),
//! or of every finished run matching a filter (`POST /api/executions/retry`).

use crate::{Refusal, Service};
use hookflow_executor::AcceptError;
use hookflow_model::request::RunInput;
use hookflow_model::runtime::Workflow;
use hookflow_store::{ExecutionFilter, ExecutionRecord, RunStatus};
pub(crate) use keys::Retrying;
use keys::RunKey;
use serde_json::Value as Json;
use std::sync::Arc;

mod keys;

/// Which workflow version a retry runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetryVersion {
    /// The version the run ran (the default).
    #[default]
    Recorded,
    /// The version loaded now under the run's workflow id.
    Current,
}

impl RetryVersion {
    /// Parses `recorded` or `current`.
    pub fn parse(s: &str) -> Option<RetryVersion> {
        match s {
            "recorded" => Some(RetryVersion::Recorded),
            "current" => Some(RetryVersion::Current),
            _ => None,
        }
    }

    /// The name as in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            RetryVersion::Recorded => "recorded",
            RetryVersion::Current => "current",
        }
    }
}

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
    /// The request asks for something that cannot be retried.
    #[error("{0}")]
    Invalid(String),
    /// Another run answered a request with the run's idempotency key 2xx:
    /// a retry would process the event a second time.
    #[error(
        "execution {run} is not retried: run {by} answered a request with the same idempotency \
         key with a 2xx since, so a retry would process the event twice (retry {by} itself to \
         run it again)"
    )]
    Answered {
        /// The run asked to be retried.
        run: String,
        /// The run holding the key.
        by: String,
    },
    /// A retry of another run with the same idempotency key is running.
    #[error(
        "execution {run} is not retried: a retry of run {of}, with the same idempotency key, is \
         still running; see how it ends first"
    )]
    Retrying {
        /// The run asked to be retried.
        run: String,
        /// The run whose retry holds the key.
        of: String,
    },
    /// A request with the run's idempotency key is being handled now (the
    /// sender's repeat, here or on another instance).
    #[error(
        "execution {run} is not retried: a request with the same idempotency key is being \
         handled now (the sender's repeat); see how it answers first"
    )]
    InFlight {
        /// The run asked to be retried.
        run: String,
    },
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
            RetryError::Invalid(m) => Refusal::BadRequest(m),
            RetryError::Answered { .. }
            | RetryError::Retrying { .. }
            | RetryError::InFlight { .. } => Refusal::Conflict(message),
        }
    }
}

impl Service {
    /// Starts a new run of the finished run `id` with the same input, on the
    /// workflow `version` says; returns the new run's id.
    ///
    /// Async runs kept their full input. Sync runs keep only their record, so
    /// their input is rebuilt from the recorded request (whose secret-bearing
    /// headers are redacted) by applying the parse rules of the version that
    /// runs to it.
    ///
    /// A sync run of a workflow with an idempotency key keeps the key when
    /// its retry answers 2xx (the sender's next repeat is a replay), and is
    /// not retried once another run answered the key 2xx
    /// ([`RetryError::Answered`]).
    pub async fn retry(&self, id: &str, version: RetryVersion) -> Result<String, RetryError> {
        let _turn = self.retrying.lock().await;
        let instances = self.instances_turn().await?;
        let started = async {
            let old = self.finished_record(id)?;
            let workflow = self.retry_workflow(&old, version)?;
            let input = self.retry_input(&old, &workflow)?;
            self.start_retry(&old, workflow, input).await
        }
        .await;
        self.retries_written(instances).await;
        started
    }

    /// The retry turn of the instances sharing the store (taken after this
    /// process's own): another instance's retry checks its runs after this
    /// one's are written, and sees them retried.
    async fn instances_turn(&self) -> Result<hookflow_store::RetryTurn, RetryError> {
        let store = self.executor.store().clone();
        match tokio::task::spawn_blocking(move || store.retry_turn()).await {
            Ok(Ok(Some(turn))) => Ok(turn),
            Ok(Ok(None)) => Err(RetryError::Unavailable(
                "another instance is retrying runs now; try again in a moment".into(),
            )),
            Ok(Err(e)) => Err(RetryError::Store(e.to_string())),
            Err(e) => Err(RetryError::Store(format!(
                "the retry turn was not taken: {e}"
            ))),
        }
    }

    /// Waits until the retries just started are written, then lets the
    /// instances' turn go, before this process's: the next retry here finds
    /// it free.
    async fn retries_written(&self, instances: hookflow_store::RetryTurn) {
        if let Err(error) = self.executor.store().flush().await {
            tracing::error!(message = "Could not write the retries just started.", %error);
        }
        match tokio::task::spawn_blocking(move || instances.release()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(message = "Could not let the retry turn go; its connection is closed.", %error);
            }
            Err(error) => {
                tracing::warn!(message = "Could not let the retry turn go.", %error);
            }
        }
    }

    /// Starts the retry of `old`; a sync run's idempotency key is checked,
    /// then held until the retry answers ([`RunKey`]).
    async fn start_retry(
        &self,
        old: &ExecutionRecord,
        workflow: Arc<Workflow>,
        input: RunInput,
    ) -> Result<String, RetryError> {
        let store = self.executor.store();
        let answered = match RunKey::of(&workflow, &input) {
            Some(key) => Some(key.hold(old, store.clone(), &self.retry_keys, &self.claims)?),
            None => None,
        };
        self.executor
            .rerun(workflow, input, &old.id, answered)
            .await
            .map_err(|e| match e {
                AcceptError::Store(s) => RetryError::Store(s),
                other => RetryError::Unavailable(other.to_string()),
            })
    }

    /// The record of a finished run.
    pub(crate) fn finished_record(&self, id: &str) -> Result<ExecutionRecord, RetryError> {
        let old = self
            .executor
            .store()
            .get(id)
            .map_err(|e| RetryError::Store(e.to_string()))?
            .ok_or_else(|| RetryError::NotFound(id.to_string()))?;
        if !old.status.is_finished() {
            return Err(RetryError::NotFinished(id.to_string()));
        }
        Ok(old)
    }

    /// The workflow a retry of `old` runs.
    pub(crate) fn retry_workflow(
        &self,
        old: &ExecutionRecord,
        version: RetryVersion,
    ) -> Result<Arc<Workflow>, RetryError> {
        match version {
            RetryVersion::Recorded => self
                .executor
                .resolve_version(&old.workflow, &old.version)
                .map_err(RetryError::Workflow),
            RetryVersion::Current => {
                let registry = self.registry();
                let workflow = registry.workflows.get(&old.workflow).ok_or_else(|| {
                    RetryError::Workflow(format!(
                        "workflow `{}` is not loaded now: no current version to retry on \
                         (retry on the recorded version, or fix its file)",
                        old.workflow
                    ))
                })?;
                if !workflow.enabled {
                    return Err(RetryError::Workflow(format!(
                        "workflow `{}` is disabled now: enable it to retry on its current version",
                        old.workflow
                    )));
                }
                Ok(workflow.clone())
            }
        }
    }

    /// The input of a retry of `old` on `workflow`.
    fn retry_input(
        &self,
        old: &ExecutionRecord,
        workflow: &Workflow,
    ) -> Result<RunInput, RetryError> {
        let stored = self
            .executor
            .store()
            .input(&old.id)
            .map_err(|e| RetryError::Store(e.to_string()))?;
        if let Some(input) = stored {
            return Ok(input);
        }
        let trigger = old.trigger.clone().unwrap_or_default();
        let vars = hookflow_parser::extract(&workflow.trigger.parse, &trigger).map_err(|e| {
            RetryError::Workflow(format!("the recorded request no longer parses: {e}"))
        })?;
        Ok(RunInput {
            vars: Json::Object(vars),
            trigger,
            secret_headers: workflow.trigger.secret_headers.clone(),
        })
    }
}

/// Most runs one bulk retry starts.
pub const MAX_BULK: usize = 1000;

/// How many runs a bulk retry looks at, at most, to count those past
/// [`MAX_BULK`].
const MAX_SCANNED: usize = 100 * MAX_BULK;

/// The filter of a bulk retry (`POST /api/executions/retry`).
#[derive(Debug, Clone, Default)]
pub struct BulkRetry {
    /// Only runs of this workflow.
    pub workflow: Option<String>,
    /// Only runs that finished so (any finished status when `None`).
    pub status: Option<RunStatus>,
    /// Started at or after (Unix ms).
    pub since_ms: Option<u64>,
    /// Started at or before (Unix ms).
    pub until_ms: Option<u64>,
    /// The version each retry runs.
    pub version: RetryVersion,
}

/// What a bulk retry started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BulkRetried {
    /// The new runs, in the order of the runs they retry (oldest first).
    pub execution_ids: Vec<String>,
    /// Runs that matched past the first [`MAX_BULK`] (not retried).
    pub not_retried: usize,
    /// Runs that matched but were retried before (their retry stands for
    /// them; it is retried itself when it matches).
    pub already_retried: usize,
    /// Runs that matched but whose idempotency key another run answered
    /// 2xx since ([`RetryError::Answered`]).
    pub answered: usize,
    /// Why the runs after `execution_ids` were not started, when starting
    /// one failed after others had started, and how many were left.
    pub stopped: Option<(String, usize)>,
}

impl Service {
    /// Retries every finished run matching `filter` that has not been
    /// retried before, at most [`MAX_BULK`] (the newest); oldest first, so
    /// that the new runs keep their order. When the version or the input a
    /// run needs cannot run, nothing is started. An error is returned only
    /// when nothing started: one after the first start ends the batch, and
    /// the answer names the runs started and why the rest were not.
    pub async fn retry_matching(&self, filter: &BulkRetry) -> Result<BulkRetried, RetryError> {
        if filter.status.is_some_and(|s| !s.is_finished()) {
            return Err(RetryError::Invalid(
                "only finished runs (resolved, failed, aborted) are retried".into(),
            ));
        }
        let _turn = self.retrying.lock().await;
        let instances = self.instances_turn().await?;
        let retried = self.retry_matching_in_turn(filter).await;
        self.retries_written(instances).await;
        retried
    }

    /// [`Service::retry_matching`] with both turns held.
    async fn retry_matching_in_turn(&self, filter: &BulkRetry) -> Result<BulkRetried, RetryError> {
        let store = self.executor.store();
        let mut matched = Vec::new();
        let mut not_retried = 0usize;
        let mut already_retried = 0usize;
        let mut scanned = 0usize;
        let mut cursor = None;
        loop {
            let page = ExecutionFilter {
                workflow: filter.workflow.clone(),
                status: filter.status,
                since_ms: filter.since_ms,
                until_ms: filter.until_ms,
                limit: MAX_BULK,
                cursor: cursor.take(),
                ..ExecutionFilter::default()
            };
            let (rows, next) = store
                .list(&page)
                .map_err(|e| RetryError::Store(e.to_string()))?;
            scanned += rows.len();
            for row in rows.into_iter().filter(|r| r.status.is_finished()) {
                if matched.len() >= MAX_BULK {
                    not_retried += 1;
                    continue;
                }
                // A run retried before is not retried again: retrying "every
                // failed run" twice would run each order twice, and a run
                // whose retry resolved again.
                let retries = store
                    .retries_of(&row.id)
                    .map_err(|e| RetryError::Store(e.to_string()))?;
                if retries.is_empty() {
                    matched.push(row.id);
                } else {
                    already_retried += 1;
                }
            }
            match next {
                Some(next) if scanned < MAX_SCANNED => cursor = Some(next),
                _ => break,
            }
        }
        // Every run's workflow version and input must be there before any
        // starts (the inputs are read again when each starts: a thousand of
        // them are not all held at once).
        let mut runs = Vec::with_capacity(matched.len());
        let mut answered = 0usize;
        // Several failed runs of one event (the sender repeated a request
        // that failed) are retried once: the oldest.
        let mut keys = std::collections::HashSet::new();
        for id in matched.iter().rev() {
            let old = self.finished_record(id)?;
            let workflow = self.retry_workflow(&old, filter.version)?;
            let input = self.retry_input(&old, &workflow)?;
            if let Some(key) = RunKey::of(&workflow, &input) {
                if !keys.insert(key.slot()) {
                    answered += 1;
                    continue;
                }
                match key.check(&old, store.as_ref(), &self.retry_keys, &self.claims) {
                    Ok(()) => {}
                    Err(
                        RetryError::Answered { .. }
                        | RetryError::Retrying { .. }
                        | RetryError::InFlight { .. },
                    ) => {
                        answered += 1;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            runs.push((old, workflow));
        }
        let total = runs.len();
        let mut execution_ids = Vec::with_capacity(total);
        let mut stopped = None;
        for (i, (old, workflow)) in runs.into_iter().enumerate() {
            let started = match self.retry_input(&old, &workflow) {
                Ok(input) => self.start_retry(&old, workflow, input).await,
                Err(e) => Err(e),
            };
            match started {
                Ok(id) => execution_ids.push(id),
                // Its key was answered since the checks (a retry of this
                // batch went through first): left out, the batch goes on.
                Err(
                    RetryError::Answered { .. }
                    | RetryError::Retrying { .. }
                    | RetryError::InFlight { .. },
                ) => answered += 1,
                Err(e) if execution_ids.is_empty() => return Err(e),
                Err(e) => {
                    stopped = Some((e.to_string(), total - i));
                    break;
                }
            }
        }
        Ok(BulkRetried {
            execution_ids,
            not_retried,
            already_retried,
            answered,
            stopped,
        })
    }
}

#[cfg(test)]
mod read_hook;
#[cfg(test)]
pub(crate) mod tests;
