//! The nodes of the file format: [`NodeDef`], tagged by `type`, with one
//! struct per node kind and the fields every node has.

use crate::units::Dur;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// What a failing node does to the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// The run fails (default).
    #[default]
    Fail,
    /// The node's result becomes `{ error: "<message>" }` and the run goes on.
    Continue,
}

/// Defines a node struct with the common fields (`key`, `title`, `on_error`).
macro_rules! node_struct {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        #[schemars(inline)]
        pub struct $name {
            /// Unique key (`[a-z0-9_]+`); needed to use the node's result as `nodes.<key>`.
            #[serde(default)]
            pub key: Option<String>,
            /// A label for people.
            #[serde(default)]
            pub title: Option<String>,
            /// `fail` (default) or `continue`.
            #[serde(default)]
            pub on_error: OnError,
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl $name {
            /// The fields every node has.
            pub fn common(&self) -> Common<'_> {
                Common { key: self.key.as_deref(), title: self.title.as_deref(), on_error: self.on_error }
            }
        }
    };
}

/// The fields every node has.
#[derive(Debug, Clone, Copy)]
pub struct Common<'a> {
    /// The node key.
    pub key: Option<&'a str>,
    /// The title.
    pub title: Option<&'a str>,
    /// Error handling.
    pub on_error: OnError,
}

node_struct!(
    /// Branch on an expression.
    ConditionDef {
        /// The expression (no braces).
        #[serde(rename = "if")]
        #[schemars(schema_with = "crate::schema::expression")]
        test: String,
        /// Nodes run when true.
        #[serde(default)]
        then: Option<Vec<NodeDef>>,
        /// Nodes run when false.
        #[serde(default, rename = "else")]
        otherwise: Option<Vec<NodeDef>>,
        /// Without branches: false fails the run.
        #[serde(default)]
        reject_on_false: bool,
    }
);

node_struct!(
    /// Take the first case whose expression is true.
    SwitchDef {
        /// The cases, tried in order.
        cases: Vec<CaseDef>,
        /// Nodes run when no case matches.
        #[serde(default)]
        default: Option<Vec<NodeDef>>,
    }
);

/// One case of a switch.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaseDef {
    /// The expression (no braces).
    #[serde(rename = "if")]
    #[schemars(schema_with = "crate::schema::expression")]
    pub test: String,
    /// Nodes run when this case is taken.
    #[serde(rename = "do")]
    pub body: Vec<NodeDef>,
}

node_struct!(
    /// Evaluate an expression; its value is the result.
    CalculationDef {
        /// The expression (no braces).
        #[schemars(schema_with = "crate::schema::expression")]
        expression: String,
    }
);

node_struct!(
    /// Query JSON with a JSONPath.
    JsonQueryDef {
        /// The JSON to query (a template, usually `{{ nodes.x.body }}`).
        source: Value,
        /// The JSONPath.
        path: String,
        /// Give the first match instead of the list.
        #[serde(default)]
        first: bool,
    }
);

node_struct!(
    /// Call another system over HTTP.
    RequestDef {
        /// GET, POST (default), PUT, PATCH, DELETE, HEAD or OPTIONS.
        #[serde(default)]
        method: Option<String>,
        /// The URL (template).
        url: String,
        /// Request headers (templates).
        #[serde(default)]
        headers: BTreeMap<String, String>,
        /// Query parameters (templates).
        #[serde(default)]
        query: BTreeMap<String, Value>,
        /// The body (templates inside).
        #[serde(default)]
        body: Option<Value>,
        /// json (default), form or text.
        #[serde(default)]
        content_type: Option<ContentType>,
        /// Per-try timeout; default 10s.
        #[serde(default)]
        timeout: Option<Dur>,
        /// Retries of connect errors, timeouts, 429 and 5xx.
        #[serde(default)]
        retry: Option<RetryDef>,
        /// A non-2xx, timeout or connection error resolves with `error` in the result.
        #[serde(default)]
        ignore_fail: bool,
        /// Follow redirects (default true; at most 5, each checked against the
        /// server's request policy). false: a 3xx is the node's result and does
        /// not fail the node.
        #[serde(default)]
        follow_redirects: Option<bool>,
    }
);

/// How a request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContentType {
    /// application/json.
    Json,
    /// application/x-www-form-urlencoded.
    Form,
    /// text/plain.
    Text,
}

/// Retry policy of a request node.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryDef {
    /// Total tries including the first, from 1 to 100; default 1.
    #[serde(default)]
    #[schemars(range(min = 1, max = crate::compile::MAX_ATTEMPTS))]
    pub attempts: Option<u32>,
    /// The first delay, doubled each time; default 500ms.
    #[serde(default)]
    pub backoff: Option<Dur>,
}

node_struct!(
    /// Run nodes for each item.
    LoopDef {
        /// An expression giving a list, an integer n, or a string.
        #[schemars(schema_with = "crate::schema::expression")]
        over: String,
        /// The loop body.
        #[serde(rename = "do")]
        body: Vec<NodeDef>,
        /// Fail past this many iterations; default 10000.
        #[serde(default)]
        max_iterations: Option<u64>,
    }
);

node_struct!(
    /// Run branches concurrently.
    ParallelDef {
        /// The branches.
        branches: Vec<Vec<NodeDef>>,
        /// all (default), any or race.
        #[serde(default)]
        mode: ParallelMode,
    }
);

/// How parallel branches decide the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParallelMode {
    /// Every branch must resolve.
    #[default]
    All,
    /// One resolved branch is enough.
    Any,
    /// The first branch to finish decides.
    Race,
}

node_struct!(
    /// Wait (async only).
    DelayDef {
        /// How long, e.g. 90s.
        #[serde(default)]
        duration: Option<Dur>,
        /// Until an RFC 3339 time (template).
        #[serde(default)]
        until: Option<String>,
    }
);

node_struct!(
    /// Answer the caller (sync only); ends the run as resolved.
    ResponseNodeDef {
        /// Status code (default 200).
        #[serde(default)]
        status: Option<Value>,
        /// Headers (templates).
        #[serde(default)]
        headers: BTreeMap<String, String>,
        /// A mapping or list is sent as JSON; a string as is.
        #[serde(default)]
        body: Option<Value>,
    }
);

node_struct!(
    /// End the run.
    EndDef {
        /// resolved or failed.
        status: EndStatus,
        /// Why (template).
        #[serde(default)]
        message: Option<String>,
    }
);

/// How an end node ends the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndStatus {
    /// Successfully.
    Resolved,
    /// As a failure.
    Failed,
}

node_struct!(
    /// Write a message to the run and the server log.
    LogDef {
        /// The message (template).
        message: String,
        /// debug, info (default), warn or error.
        #[serde(default)]
        level: LogLevel,
    }
);

/// Log levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    /// Debug.
    Debug,
    /// Info (default).
    #[default]
    Info,
    /// Warning.
    Warn,
    /// Error.
    Error,
}

/// A node, tagged by `type`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(tag = "type", transform = crate::schema::by_type)]
pub enum NodeDef {
    /// Branch on an expression.
    Condition(ConditionDef),
    /// Multi-way branch.
    Switch(SwitchDef),
    /// Compute a value.
    Calculation(CalculationDef),
    /// JSONPath query.
    JsonQuery(JsonQueryDef),
    /// Outbound HTTP request.
    Request(RequestDef),
    /// Loop.
    Loop(LoopDef),
    /// Concurrent branches.
    Parallel(ParallelDef),
    /// Durable wait (async only).
    Delay(DelayDef),
    /// Answer the caller (sync only).
    Response(ResponseNodeDef),
    /// End the run.
    End(EndDef),
    /// Log a message.
    Log(LogDef),
}

impl NodeDef {
    /// The `type` as written in files.
    pub fn type_name(&self) -> &'static str {
        match self {
            NodeDef::Condition(_) => "condition",
            NodeDef::Switch(_) => "switch",
            NodeDef::Calculation(_) => "calculation",
            NodeDef::JsonQuery(_) => "json_query",
            NodeDef::Request(_) => "request",
            NodeDef::Loop(_) => "loop",
            NodeDef::Parallel(_) => "parallel",
            NodeDef::Delay(_) => "delay",
            NodeDef::Response(_) => "response",
            NodeDef::End(_) => "end",
            NodeDef::Log(_) => "log",
        }
    }

    /// The fields every node has.
    pub fn common(&self) -> Common<'_> {
        match self {
            NodeDef::Condition(n) => n.common(),
            NodeDef::Switch(n) => n.common(),
            NodeDef::Calculation(n) => n.common(),
            NodeDef::JsonQuery(n) => n.common(),
            NodeDef::Request(n) => n.common(),
            NodeDef::Loop(n) => n.common(),
            NodeDef::Parallel(n) => n.common(),
            NodeDef::Delay(n) => n.common(),
            NodeDef::Response(n) => n.common(),
            NodeDef::End(n) => n.common(),
            NodeDef::Log(n) => n.common(),
        }
    }
}
