//! Test files as the commands that write them build them (`hookflow new`,
//! a run exported as a test case): the format of [`crate::testfile`], for
//! serializing. The writers' tests read what they write back through the
//! reading types, so the two cannot drift apart silently.

use crate::yaml::write::{FlowMap, FlowSeq};
use serde::Serialize;
use serde_json::{Map, Value as Json};
use std::collections::BTreeMap;

/// A test file.
#[derive(Debug, Serialize)]
pub struct TestFileOut {
    /// Secrets for the cases, in flow style.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<FlowMap<BTreeMap<String, String>>>,
    /// The cases.
    pub cases: Vec<CaseOut>,
}

/// One case.
#[derive(Debug, Serialize)]
pub struct CaseOut {
    /// Its name.
    pub name: String,
    /// The request sent.
    pub request: RequestOut,
    /// The answers of request nodes, by node key: one per try.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub stubs: BTreeMap<String, Vec<StubOut>>,
    /// What is expected.
    pub expect: ExpectOut,
}

/// The request of a case.
#[derive(Debug, Serialize, Default)]
pub struct RequestOut {
    /// The method (POST when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Headers.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The query string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// A JSON body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Json>,
    /// A body sent as it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_body: Option<String>,
}

/// One try's answer: a response, or an `error` (`timeout`, `connect`).
#[derive(Debug, Serialize)]
pub struct StubOut {
    /// The status answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The headers answered.
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub headers: Map<String, Json>,
    /// The body answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Json>,
    /// A try that failed without an answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
}

/// The expectations of a case.
#[derive(Debug, Serialize)]
pub struct ExpectOut {
    /// The status answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The body answered (mappings match as subsets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Json>,
    /// The run's final status.
    pub run: &'static str,
    /// The keys of the nodes that ran, in order, in flow style.
    pub nodes: FlowSeq<Vec<String>>,
}
