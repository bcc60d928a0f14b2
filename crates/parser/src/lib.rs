//! Turns an HTTP request's parts into hookflow's variables (SPEC §2).
//!
//! [`intake`] is the way in: a request as received, then (after the
//! signature check) the run's input. [`query::parse_query`] and
//! [`body::parse_body`] build `trigger.query` and `trigger.body`;
//! [`extract::extract`] applies a workflow's compiled parse rules to produce
//! `vars`. Nothing here knows HTTP servers: callers hand in plain strings and
//! bytes.

pub mod body;
pub mod extract;
pub mod intake;
pub mod pluck;
pub mod query;
pub mod sample;

pub use body::{body_kind, check_json, parse_body, BodyKind};
pub use extract::{convert, extract};
pub use intake::{build_input, parse_request, receive, Received, Request};
pub use query::parse_query;
pub use sample::{sample, SampleEntry, SampleRequest, Sampled};

pub use hookflow_model::request::TriggerRequest;

/// Why a request cannot start a run. Each variant maps to one status (415 or
/// 400) in the service crate's `Refusal`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    /// A non-empty body whose content type is not accepted (415).
    #[error("unsupported content type `{0}`; send application/json, */*+json, application/x-www-form-urlencoded, text/* or application/xml")]
    UnsupportedMediaType(String),
    /// The body is not valid JSON (400).
    #[error("malformed JSON body at line {line}, column {column}: {message}")]
    MalformedJson {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the JSON parser said.
        message: String,
    },
    /// A required value is missing (400).
    #[error("missing required field `{key}` in the {part}")]
    Missing {
        /// headers, query or body.
        part: &'static str,
        /// The key as written in the workflow.
        key: String,
    },
    /// A value cannot be converted to its declared type (400).
    #[error("field `{key}` in the {part}: {message}")]
    WrongType {
        /// headers, query or body.
        part: &'static str,
        /// The key as written in the workflow.
        key: String,
        /// What was expected and found.
        message: String,
    },
}

/// A workflow loaded from `yaml`, for tests (panics with the diagnostics
/// when it does not load).
#[cfg(test)]
pub(crate) fn test_workflow(yaml: &str) -> std::sync::Arc<hookflow_model::runtime::Workflow> {
    use hookflow_model::load::{load_source, LoadOptions, SecretPolicy};
    let env = |_: &str| None;
    let file = load_source(
        "t",
        std::path::Path::new("t.yaml"),
        yaml,
        &LoadOptions {
            secrets: SecretPolicy::Warn,
            env: &env,
        },
    );
    file.workflow
        .unwrap_or_else(|| panic!("workflow should load: {:?}", file.diagnostics))
}
