//! The workflow file format as serde types: what authors write.
//!
//! These types are read from YAML (through [`crate::yaml`]) and compiled by
//! [`crate::compile`] into the runtime [`crate::Workflow`]; nothing at run time
//! reads them. Field docs become the JSON Schema's descriptions.
//!
//! This file holds the workflow, its options and trigger (authentication,
//! parsing, answers, verification presets, idempotency); the nodes are in `nodes`.

use crate::units::{Dur, Size};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

mod nodes;

pub use nodes::{
    CalculationDef, CaseDef, Common, ConditionDef, ContentType, DelayDef, EndDef, EndStatus,
    JsonQueryDef, LogDef, LogLevel, LoopDef, NodeDef, OnError, ParallelDef, ParallelMode,
    RequestDef, ResponseNodeDef, RetryDef, SwitchDef,
};

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
#[schemars(tag = "preset", transform = crate::schema::by_preset)]
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

impl VerifyDef {
    /// The headers carrying the signature this preset checks (lower-case);
    /// their values are redacted in records (SPEC §3).
    pub fn signature_headers(&self) -> Vec<String> {
        let fixed = match self {
            VerifyDef::Hmac(h) => return vec![h.header.to_ascii_lowercase()],
            VerifyDef::StandardWebhooks(_) => "webhook-signature",
            VerifyDef::Github(_) => "x-hub-signature-256",
            VerifyDef::Stripe(_) => "stripe-signature",
            VerifyDef::Slack(_) => "x-slack-signature",
            VerifyDef::Shopify(_) => "x-shopify-hmac-sha256",
            VerifyDef::Feishu(_) => "x-lark-signature",
            VerifyDef::WechatpayV3(_) => "wechatpay-signature",
            // Alipay signs in the body (`sign`), with a public key.
            VerifyDef::Alipay(_) => return Vec::new(),
        };
        vec![fixed.to_string()]
    }
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
    /// How far `X-Lark-Request-Timestamp` may be from now when the request
    /// is signed (an encrypt key is set); default 5m.
    #[serde(default)]
    pub tolerance: Option<Dur>,
}

/// WeChat Pay v3 settings.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(inline)]
pub struct WechatpayVerifyDef {
    /// PEM of the platform public key (template).
    pub public_key: String,
    /// When set, `Wechatpay-Serial` must equal it (template).
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
