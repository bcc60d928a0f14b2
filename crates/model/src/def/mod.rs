//! The workflow file format as serde types: what authors write.
//!
//! These types are read from YAML (through [`crate::yaml`]) and compiled by
//! [`crate::compile`] into the runtime [`crate::Workflow`]; nothing at run time
//! reads them. Field docs become the JSON Schema's descriptions.

use crate::units::{Dur, Size};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// One workflow file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "hookflow workflow")]
pub struct WorkflowDef {
    /// Human-readable name.
    pub title: String,
    /// What the workflow does.
    #[serde(default)]
    pub description: Option<String>,
    /// A disabled workflow's URL answers 404. Default false.
    #[serde(default)]
    pub enabled: bool,
    /// Environment variables this workflow may read as `{{ secrets.NAME }}`.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Run options.
    #[serde(default)]
    pub options: OptionsDef,
    /// How the workflow is called.
    pub trigger: TriggerDef,
    /// The nodes, run top to bottom.
    #[serde(default)]
    pub nodes: Vec<NodeDef>,
}

/// Run options.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OptionsDef {
    /// Whole-run deadline; default 30s for sync workflows, none for async.
    #[serde(default)]
    pub timeout: Option<Dur>,
}

/// The trigger: how requests reach the workflow.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerDef {
    /// Always `webhook`.
    #[serde(rename = "type")]
    pub kind: TriggerKind,
    /// `sync` answers through a response node; `async` (default) answers at once.
    #[serde(default)]
    pub mode: Mode,
    /// A fixed URL key (`[A-Za-z0-9_-]{8,128}`); otherwise one is generated once and kept.
    #[serde(default)]
    pub key: Option<String>,
    /// Authentication the caller must present.
    #[serde(default)]
    pub auth: Option<AuthDef>,
    /// The largest accepted body; default 1MiB.
    #[serde(default)]
    pub max_body: Option<Size>,
    /// Values extracted from the request into `vars`.
    #[serde(default)]
    pub parse: ParseDef,
    /// Async only: the answer sent at once. Default 200 text/plain `ok`.
    #[serde(default)]
    pub response: Option<ResponseDef>,
    /// Sync only: the answer sent when `options.timeout` passes; the run goes on.
    #[serde(default)]
    pub timeout_response: Option<ResponseDef>,
    /// Signature verification.
    #[serde(default)]
    pub verify: Option<VerifyDef>,
    /// How to recognise a repeated request.
    #[serde(default)]
    pub idempotency: Option<IdempotencyDef>,
}

/// The trigger kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    /// An HTTP POST to the workflow's URL.
    Webhook,
}

/// Sync or async dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The caller waits; a `response` node answers.
    Sync,
    /// The caller gets the configured response once the run is durably queued.
    #[default]
    Async,
}

/// Caller authentication.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthDef {
    /// HTTP Basic authentication.
    pub basic: BasicAuthDef,
}

/// HTTP Basic credentials; both are templates (normally `{{ secrets.NAME }}`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthDef {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
}

/// Extraction rules, by part of the request.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParseDef {
    /// From headers (key is the header name, any case).
    #[serde(default)]
    pub headers: Vec<ParseEntryDef>,
    /// From the query string (key is a dotted path).
    #[serde(default)]
    pub query: Vec<ParseEntryDef>,
    /// From the body (a dotted path with `[n]`, or a JSONPath starting with `$`).
    #[serde(default)]
    pub body: Vec<ParseEntryDef>,
}

/// One value to extract into `vars.<alias>`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParseEntryDef {
    /// Header name, dotted path (`order.items[0].sku`) or JSONPath (`$.items[*].sku`).
    pub key: String,
    /// Variable name; defaults to the key lower-cased with `[^a-z0-9_]` replaced by `_`.
    #[serde(default)]
    pub alias: Option<String>,
    /// Convert the value to this type; without it values stay as they are.
    #[serde(default, rename = "type")]
    pub value_type: Option<ValueType>,
    /// A missing value answers 400.
    #[serde(default)]
    pub required: bool,
    /// The value when missing (otherwise null).
    #[serde(default)]
    pub default: Option<Value>,
}

/// Types a parsed value can be converted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    /// A string (numbers and booleans are turned into their text).
    String,
    /// Any number.
    Number,
    /// A whole number.
    Integer,
    /// true/false/1/0/yes/no, any case.
    Boolean,
    /// A JSON object.
    Object,
    /// A JSON array.
    Array,
    /// Anything, unchanged.
    Any,
}

/// An HTTP answer configured in the file.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResponseDef {
    /// Status code (default 200); may be a template.
    #[serde(default)]
    pub status: Option<Value>,
    /// Response headers; values are templates.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A mapping or list is sent as JSON; a string as is.
    #[serde(default)]
    pub body: Option<Value>,
}

/// Signature verification, by provider preset.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(tag = "preset")]
pub enum VerifyDef {
    /// Generic HMAC over a templated payload.
    Hmac(HmacVerifyDef),
    /// Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature).
    StandardWebhooks(SecretToleranceDef),
    /// GitHub `X-Hub-Signature-256`.
    Github(SecretOnlyDef),
    /// Stripe `Stripe-Signature`.
    Stripe(SecretToleranceDef),
    /// Slack v0 signatures.
    Slack(SecretToleranceDef),
    /// Shopify `X-Shopify-Hmac-Sha256`.
    Shopify(SecretOnlyDef),
    /// Feishu / Lark events: token, encryption, challenge.
    Feishu(FeishuVerifyDef),
    /// WeChat Pay API v3 notifications.
    WechatpayV3(WechatpayVerifyDef),
    /// Alipay RSA2 notifications.
    Alipay(AlipayVerifyDef),
}

/// Generic HMAC settings.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(inline)]
pub struct HmacVerifyDef {
    /// The shared secret (template).
    pub secret: String,
    /// The header carrying the signature.
    pub header: String,
    /// sha1, sha256 (default) or sha512.
    #[serde(default)]
    pub algorithm: Option<HmacAlgorithm>,
    /// hex (default) or base64.
    #[serde(default)]
    pub encoding: Option<SignatureEncoding>,
    /// A prefix before the signature, such as `sha256=`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// The signed bytes as a template; default `{{ trigger.raw_body }}`.
    #[serde(default)]
    pub payload: Option<String>,
    /// A header with the Unix time the sender signed at.
    #[serde(default)]
    pub timestamp_header: Option<String>,
    /// How far the timestamp may be from now; default 5m.
    #[serde(default)]
    pub tolerance: Option<Dur>,
}

/// HMAC digest algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HmacAlgorithm {
    /// HMAC-SHA1.
    Sha1,
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

/// How a signature is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SignatureEncoding {
    /// Lower- or upper-case hex.
    Hex,
    /// Standard base64.
    Base64,
}

/// A preset that needs only a secret.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(inline)]
pub struct SecretOnlyDef {
    /// The signing secret (template).
    pub secret: String,
}

/// A preset with a secret and a signed timestamp.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(inline)]
pub struct SecretToleranceDef {
    /// The signing secret (template).
    pub secret: String,
    /// How far the signed timestamp may be from now; default 5m.
    #[serde(default)]
    pub tolerance: Option<Dur>,
}

/// Feishu settings.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(inline)]
pub struct FeishuVerifyDef {
    /// The verification token (template).
    pub token: String,
    /// The encrypt key, when event encryption is on (template).
    #[serde(default)]
    pub encrypt_key: Option<String>,
}

/// WeChat Pay v3 settings.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(inline)]
pub struct WechatpayVerifyDef {
    /// PEM of the platform public key (template).
    pub public_key: String,
    /// When set, `Wechatpay-Serial` must equal it.
    #[serde(default)]
    pub public_key_id: Option<String>,
    /// The APIv3 key that decrypts `resource` (template).
    pub api_v3_key: String,
    /// How far `Wechatpay-Timestamp` may be from now; default 5m.
    #[serde(default)]
    pub tolerance: Option<Dur>,
}

/// Alipay settings.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(inline)]
pub struct AlipayVerifyDef {
    /// PEM of Alipay's public key (template).
    pub public_key: String,
}

/// Duplicate detection.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdempotencyDef {
    /// A template over the request naming the event, e.g. `{{ trigger.body.id }}`.
    pub key: String,
    /// How long a key is remembered; default 24h.
    #[serde(default)]
    pub ttl: Option<Dur>,
}

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
    pub test: String,
    /// Nodes run when this case is taken.
    #[serde(rename = "do")]
    pub body: Vec<NodeDef>,
}

node_struct!(
    /// Evaluate an expression; its value is the result.
    CalculationDef {
        /// The expression (no braces).
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
    /// Total tries including the first; default 1.
    #[serde(default)]
    pub attempts: Option<u32>,
    /// The first delay, doubled each time; default 500ms.
    #[serde(default)]
    pub backoff: Option<Dur>,
}

node_struct!(
    /// Run nodes for each item.
    LoopDef {
        /// An expression giving a list, an integer n, or a string.
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
#[schemars(tag = "type")]
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
