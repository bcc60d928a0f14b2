//! The compiled workflow the executor runs: node indices resolved, templates
//! and paths compiled. Nothing here is read from YAML directly.

use crate::def::{
    ContentType, EndStatus, LogLevel, Mode, OnError, ParallelMode, ValueType, VerifyDef,
};
use crate::path::{JsonPath, KeyPath};
use crate::template::{Expr, Templates, Text, ValueTemplate};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Index of a node in [`Workflow::nodes`].
pub type NodeId = usize;
/// Index of a block (a list of nodes) in [`Workflow::blocks`]; block 0 is the top level.
pub type BlockId = usize;

/// The top-level block.
pub const ROOT_BLOCK: BlockId = 0;

/// A workflow ready to run.
#[derive(Debug)]
pub struct Workflow {
    /// The id: the file name without extension.
    pub id: String,
    /// Content hash of the file (16 hex digits).
    pub version: String,
    /// Where it was loaded from.
    pub path: PathBuf,
    /// Title.
    pub title: String,
    /// Description.
    pub description: Option<String>,
    /// Whether the URL answers.
    pub enabled: bool,
    /// Sync or async.
    pub mode: Mode,
    /// Declared secrets (environment variable names).
    pub secrets: Vec<String>,
    /// Whole-run deadline.
    pub timeout: Option<Duration>,
    /// The trigger.
    pub trigger: Trigger,
    /// Every node, in document order (pre-order).
    pub nodes: Vec<Node>,
    /// Blocks of node ids; block 0 is the top level.
    pub blocks: Vec<Vec<NodeId>>,
    /// The compiled templates.
    pub templates: Templates,
    /// Set once the store keeps this version's text: the executor stores
    /// it before the first record that names it.
    pub version_kept: std::sync::atomic::AtomicBool,
}

/// The compiled trigger.
#[derive(Debug)]
pub struct Trigger {
    /// A pinned URL key.
    pub pinned_key: Option<String>,
    /// Basic auth credentials.
    pub basic_auth: Option<BasicAuth>,
    /// Body limit in bytes.
    pub max_body: u64,
    /// Extraction rules.
    pub parse: ParseSpec,
    /// Async acknowledgement (boxed, like the other parts many workflows
    /// leave out: a `Trigger` is in every loaded workflow).
    pub response: Option<Box<ResponseSpec>>,
    /// Sync answer on timeout.
    pub timeout_response: Option<Box<ResponseSpec>>,
    /// Signature verification, with its template fields compiled by name.
    pub verify: Option<Box<Verify>>,
    /// Duplicate detection.
    pub idempotency: Option<Box<Idempotency>>,
    /// The signature headers of `verify` (lower-case), redacted in records
    /// like the headers every workflow redacts.
    pub secret_headers: Vec<String>,
    /// A parse rule takes a secret-bearing header into `vars`.
    pub parses_secret_header: bool,
}

impl Trigger {
    /// Gives back the spare room of its lists.
    pub fn shrink_to_fit(&mut self) {
        self.parse.headers.shrink_to_fit();
        self.parse.query.shrink_to_fit();
        self.parse.body.shrink_to_fit();
        self.secret_headers.shrink_to_fit();
    }
}

/// Basic auth credentials (templates).
#[derive(Debug)]
pub struct BasicAuth {
    /// User name.
    pub username: Text,
    /// Password.
    pub password: Text,
}

/// Verification settings.
#[derive(Debug)]
pub struct Verify {
    /// The preset as written.
    pub preset: VerifyDef,
    /// Template fields (secret, token, payload…) compiled, by field name.
    pub texts: BTreeMap<&'static str, Text>,
}

/// Duplicate detection.
#[derive(Debug)]
pub struct Idempotency {
    /// The key template.
    pub key: Text,
    /// How long keys are kept.
    pub ttl: Duration,
}

/// Extraction rules by part of the request.
#[derive(Debug, Default)]
pub struct ParseSpec {
    /// From headers.
    pub headers: Vec<ParseEntry>,
    /// From the query.
    pub query: Vec<ParseEntry>,
    /// From the body.
    pub body: Vec<ParseEntry>,
}

impl ParseSpec {
    /// True when nothing is extracted.
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty() && self.query.is_empty() && self.body.is_empty()
    }
}

/// One extraction rule.
#[derive(Debug)]
pub struct ParseEntry {
    /// The key as written (for messages).
    pub key: String,
    /// Where to look (for headers, one step: the lower-cased name).
    pub path: KeyPath,
    /// The variable name.
    pub alias: String,
    /// Conversion.
    pub value_type: Option<ValueType>,
    /// Missing answers 400.
    pub required: bool,
    /// The value when missing.
    pub default: Option<Json>,
}

/// A configured HTTP answer.
#[derive(Debug)]
pub struct ResponseSpec {
    /// Status (default 200).
    pub status: ValueTemplate,
    /// Headers.
    pub headers: Vec<(String, Text)>,
    /// Body.
    pub body: Option<ValueTemplate>,
}

/// One node.
#[derive(Debug)]
pub struct Node {
    /// The key, if any.
    pub key: Option<String>,
    /// The title, if any.
    pub title: Option<String>,
    /// Error handling.
    pub on_error: OnError,
    /// What it does.
    pub kind: NodeKind,
}

/// What a node does.
#[derive(Debug)]
pub enum NodeKind {
    /// Branch.
    Condition {
        /// The test.
        test: Expr,
        /// Run when true.
        then: Option<BlockId>,
        /// Run when false.
        otherwise: Option<BlockId>,
        /// False fails the run.
        reject_on_false: bool,
    },
    /// Multi-way branch.
    Switch {
        /// Cases in order.
        cases: Vec<(Expr, BlockId)>,
        /// When none matches.
        default: Option<BlockId>,
    },
    /// Compute a value.
    Calculation {
        /// The expression.
        expression: Expr,
    },
    /// JSONPath query.
    JsonQuery {
        /// The JSON to query.
        source: ValueTemplate,
        /// The path.
        path: JsonPath,
        /// Only the first match.
        first: bool,
    },
    /// Outbound HTTP.
    Request(Box<RequestSpec>),
    /// Loop.
    Loop {
        /// What to iterate.
        over: Expr,
        /// The body.
        body: BlockId,
        /// Iteration limit.
        max_iterations: u64,
    },
    /// Concurrent branches.
    Parallel {
        /// The branches.
        branches: Vec<BlockId>,
        /// How the outcome is decided.
        mode: ParallelMode,
    },
    /// Durable wait.
    Delay(DelayWait),
    /// Answer the caller.
    Response(Box<ResponseSpec>),
    /// End the run.
    End {
        /// How.
        status: EndStatus,
        /// Why.
        message: Option<Text>,
    },
    /// Log.
    Log {
        /// The message.
        message: Text,
        /// The level.
        level: LogLevel,
    },
}

/// How long a delay waits.
#[derive(Debug)]
pub enum DelayWait {
    /// A fixed duration.
    For(Duration),
    /// Until a time (RFC 3339 template).
    Until(Text),
}

impl DelayWait {
    /// Where a `delay` node may stand: in an async workflow (the caller of a
    /// sync one is waiting) and outside parallel branches (a waiting run saves
    /// one position). The one statement of the rule: the compiler refuses a
    /// workflow that breaks it, so the interpreter never meets such a delay,
    /// and should it, the run fails with the same message.
    pub fn placement(mode: Mode, in_parallel_branch: bool) -> Result<(), &'static str> {
        if mode == Mode::Sync {
            Err("a `delay` node cannot be used in a sync workflow (the caller is waiting)")
        } else if in_parallel_branch {
            Err("a `delay` node cannot be used inside a parallel branch")
        } else {
            Ok(())
        }
    }
}

/// An outbound request.
#[derive(Debug)]
pub struct RequestSpec {
    /// Method (template).
    pub method: Text,
    /// URL (template).
    pub url: Text,
    /// Headers.
    pub headers: Vec<(String, Text)>,
    /// Query parameters.
    pub query: Vec<(String, ValueTemplate)>,
    /// Body.
    pub body: Option<ValueTemplate>,
    /// Body encoding.
    pub content_type: ContentType,
    /// Per-try timeout.
    pub timeout: Duration,
    /// Total tries.
    pub attempts: u32,
    /// First retry delay.
    pub backoff: Duration,
    /// Failures resolve with `error`.
    pub ignore_fail: bool,
    /// Follow redirects; when false a 3xx is the result.
    pub follow_redirects: bool,
}

impl Node {
    /// True for nodes with effects outside the run (requests), after which a
    /// durable run saves its position. A delay saves itself as it waits; loops
    /// and parallels are judged by the nodes inside them.
    pub fn acts_outside(&self) -> bool {
        matches!(self.kind, NodeKind::Request(_))
    }

    /// The `type` as written in files.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            NodeKind::Condition { .. } => "condition",
            NodeKind::Switch { .. } => "switch",
            NodeKind::Calculation { .. } => "calculation",
            NodeKind::JsonQuery { .. } => "json_query",
            NodeKind::Request(_) => "request",
            NodeKind::Loop { .. } => "loop",
            NodeKind::Parallel { .. } => "parallel",
            NodeKind::Delay(_) => "delay",
            NodeKind::Response(_) => "response",
            NodeKind::End { .. } => "end",
            NodeKind::Log { .. } => "log",
        }
    }
}

impl Workflow {
    /// The node with this key.
    pub fn node_by_key(&self, key: &str) -> Option<NodeId> {
        self.nodes
            .iter()
            .position(|n| n.key.as_deref() == Some(key))
    }

    /// The keyed nodes, by key: `(key, id)` in key order.
    pub fn keyed_nodes(&self) -> Vec<(&str, NodeId)> {
        let mut keyed: Vec<(&str, NodeId)> = self
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.key.as_deref().map(|k| (k, i)))
            .collect();
        keyed.sort_unstable();
        keyed
    }

    /// The declared secrets with their values from the environment (empty when unset),
    /// as templates see them under `secrets`.
    pub fn secret_values(&self) -> Json {
        Json::Object(
            self.secrets
                .iter()
                .map(|name| {
                    (
                        name.clone(),
                        Json::String(std::env::var(name).unwrap_or_default()),
                    )
                })
                .collect(),
        )
    }
}

/// A stable content hash (FNV-1a, 64 bits) as 16 hex digits; names a workflow version.
pub fn content_hash(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}
