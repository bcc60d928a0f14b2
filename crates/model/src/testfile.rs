//! The test file format (`<id>.test.yaml`, SPEC §6) as serde types: what
//! `hookflow schema --tests` describes. Field docs become the schema's
//! descriptions; unknown fields are errors, as in workflows.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// One test file: cases for `hookflow test`, run strictly offline against
/// the workflow `<id>.yaml` of the same folder.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "hookflow test file")]
pub struct TestFileDef {
    /// Environment variables (the workflow's secrets) set for the cases.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The cases, run in order.
    pub cases: Vec<TestCaseDef>,
}

/// One case: a request, answers for request nodes, and what to expect.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestCaseDef {
    /// What the case checks (`hookflow test --case NAME` runs only this one).
    pub name: String,
    /// The webhook request sent to the workflow.
    #[serde(default)]
    pub request: TestRequestDef,
    /// Answers for request nodes, by node key: nothing leaves the machine.
    /// A request node reached without a stub fails the case.
    #[serde(default)]
    pub stubs: BTreeMap<String, StubDef>,
    /// What the case expects; only what is written is checked.
    #[serde(default)]
    pub expect: ExpectDef,
}

/// The request of a case.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestRequestDef {
    /// The method; default POST.
    #[serde(default)]
    pub method: Option<String>,
    /// Request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The query string, e.g. `source=shop&page=2`.
    #[serde(default)]
    pub query: Option<String>,
    /// A JSON body (sent as application/json unless a `content-type` header says otherwise).
    #[serde(default)]
    pub body: Option<Value>,
    /// A body read from a file, relative to the test file.
    #[serde(default)]
    pub body_file: Option<String>,
    /// A body sent as written (give its `content-type` header).
    #[serde(default)]
    pub raw_body: Option<String>,
}

/// The stub of one request node: one answer for every try, or a list with
/// one answer per try, in order (a list that runs out fails the case).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(transform = crate::schema::one_or_list)]
pub enum StubDef {
    /// One answer per try, in order.
    Tries(Vec<StubAnswerDef>),
    /// The answer to every try.
    Every(StubAnswerDef),
}

/// What one try of a request node gets.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StubAnswerDef {
    /// The status; default 200.
    #[serde(default)]
    pub status: Option<u16>,
    /// Response headers.
    #[serde(default)]
    pub headers: Map<String, Value>,
    /// The response body (a mapping or list is JSON).
    #[serde(default)]
    pub body: Option<Value>,
    /// The try fails without an answer, e.g. `timeout`.
    #[serde(default)]
    pub error: Option<String>,
}

/// Expectations of a case; mappings match as subsets, types included.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectDef {
    /// The status answered.
    #[serde(default)]
    pub status: Option<u16>,
    /// The body answered (a mapping matches as a subset).
    #[serde(default)]
    pub body: Option<Value>,
    /// Headers the answer carries (names in any case).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The run's final status.
    #[serde(default)]
    pub run: Option<RunOutcomeDef>,
    /// The keys of the nodes that ran, in order.
    #[serde(default)]
    pub nodes: Option<Vec<String>>,
    /// What request nodes sent, by node key: one mapping that every request
    /// of the node must match, or a list with one entry per request (its
    /// length checked too).
    #[serde(default)]
    pub requests: BTreeMap<String, SentRequestsDef>,
}

/// The expectation of one request node's requests.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(transform = crate::schema::one_or_list)]
pub enum SentRequestsDef {
    /// One entry per request, in order.
    Each(Vec<SentRequestDef>),
    /// What every request of the node matches.
    Every(SentRequestDef),
}

/// A run's final status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcomeDef {
    /// The run resolved.
    Resolved,
    /// The run failed.
    Failed,
    /// The run was aborted (a sync timeout).
    Aborted,
}

impl RunOutcomeDef {
    /// The name written in a test file, which is also the run's recorded status.
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcomeDef::Resolved => "resolved",
            RunOutcomeDef::Failed => "failed",
            RunOutcomeDef::Aborted => "aborted",
        }
    }
}

/// One try of a request node as it was sent; only what is written is checked.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SentRequestDef {
    /// The method.
    #[serde(default)]
    pub method: Option<String>,
    /// The whole URL, query string included (exact match).
    #[serde(default)]
    pub url: Option<String>,
    /// Query parameters sent (a subset; a list for a repeated name).
    #[serde(default)]
    pub query: Map<String, Value>,
    /// Headers sent (a subset; names in any case).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The body sent (a mapping matches as a subset, types included: `12.5` is not `"12.5"`).
    #[serde(default)]
    pub body: Option<Value>,
}
