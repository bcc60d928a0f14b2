//! The HMAC-style presets: the generic `hmac`, `standard_webhooks`, `github`,
//! `stripe`, `slack` and `shopify`. Each reads its signatures from a header
//! (several allowed, for key rotation) and compares HMACs in constant time.

use crate::{Freshness, Rejected, Secrets, SetupError, Signed};
use base64::Engine;
use hmac::{Hmac, Mac};
use hookflow_model::def::{HmacAlgorithm, HmacVerifyDef, SignatureEncoding};
use hookflow_model::runtime::{Verify, Workflow};
use hookflow_model::template::{Scope, Templates, Text};
use serde_json::Value as Json;

/// The defaults of the generic `hmac` preset.
const DEFAULT_ALGORITHM: HmacAlgorithm = HmacAlgorithm::Sha256;
const DEFAULT_ENCODING: SignatureEncoding = SignatureEncoding::Hex;

/// A templated signed payload of the generic preset.
pub(crate) struct Payload {
    text: Text,
    templates: Templates,
    /// The declared secrets, as templates see them under `secrets`.
    secrets: Json,
}

pub(crate) enum MacScheme {
    Generic {
        secret: Vec<u8>,
        header: String,
        algorithm: HmacAlgorithm,
        encoding: SignatureEncoding,
        prefix: Option<String>,
        payload: Option<Box<Payload>>,
        timestamp_header: Option<String>,
    },
    StandardWebhooks {
        key: Vec<u8>,
    },
    Github {
        secret: Vec<u8>,
    },
    Stripe {
        secret: Vec<u8>,
    },
    Slack {
        secret: Vec<u8>,
    },
    Shopify {
        secret: Vec<u8>,
    },
}

impl MacScheme {
    /// The generic `hmac` preset.
    pub(crate) fn generic(
        workflow: &Workflow,
        verify: &Verify,
        h: &HmacVerifyDef,
        secrets: &Secrets<'_>,
    ) -> Result<MacScheme, SetupError> {
        Ok(MacScheme::Generic {
            secret: secrets.field("secret")?,
            header: h.header.to_ascii_lowercase(),
            algorithm: h.algorithm.unwrap_or(DEFAULT_ALGORITHM),
            encoding: h.encoding.unwrap_or(DEFAULT_ENCODING),
            prefix: h.prefix.clone(),
            payload: verify.texts.get("payload").map(|text| {
                Box::new(Payload {
                    text: text.clone(),
                    templates: workflow.templates.clone(),
                    secrets: workflow.secret_values(),
                })
            }),
            timestamp_header: h.timestamp_header.as_ref().map(|t| t.to_ascii_lowercase()),
        })
    }

    /// `standard_webhooks`: the secret is `whsec_` followed by the base64 of the key.
    pub(crate) fn standard_webhooks(secrets: &Secrets<'_>) -> Result<MacScheme, SetupError> {
        let text = String::from_utf8(secrets.field("secret")?)
            .map_err(|_| SetupError::new("secret", "is not text"))?;
        let encoded = text.strip_prefix("whsec_").unwrap_or(&text);
        let key = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| SetupError::new("secret", "must be `whsec_` followed by base64"))?;
        Ok(MacScheme::StandardWebhooks { key })
    }

    pub(crate) fn check(&self, req: &Signed<'_>, fresh: &Freshness) -> Result<(), Rejected> {
        match self {
            MacScheme::Generic {
                secret,
                header,
                algorithm,
                encoding,
                prefix,
                payload,
                timestamp_header,
            } => {
                if let Some(ts) = timestamp_header {
                    fresh.check(&req.header(ts)?)?;
                }
                let rendered;
                let signed: &[u8] = match payload {
                    Some(p) => {
                        let mut scope = Scope::new();
                        scope.set_owned("trigger", req.request.to_json());
                        scope.set("secrets", &p.secrets);
                        rendered = p.templates.render(&p.text, &scope).map_err(|e| {
                            Rejected(format!("the signed payload does not render: {}", e.message))
                        })?;
                        rendered.as_bytes()
                    }
                    None => req.body,
                };
                let value = req.header(header)?;
                let candidates =
                    value
                        .split([',', ' '])
                        .filter(|s| !s.is_empty())
                        .map(|s| match prefix {
                            Some(p) => s.strip_prefix(p.as_str()).unwrap_or(""),
                            None => s,
                        });
                any_valid(candidates, *encoding, |sig| {
                    mac_ok(*algorithm, secret, &[signed], sig)
                })
            }
            MacScheme::StandardWebhooks { key } => {
                let id = req.header("webhook-id")?;
                let ts = req.header("webhook-timestamp")?;
                fresh.check(&ts)?;
                let value = req.header("webhook-signature")?;
                // Signatures are separated by spaces; a repeated header
                // arrives joined with `, `, so a trailing comma is dropped.
                let candidates = value
                    .split(' ')
                    .filter_map(|s| s.trim_end_matches(',').strip_prefix("v1,"));
                any_valid(candidates, SignatureEncoding::Base64, |sig| {
                    mac_ok(
                        HmacAlgorithm::Sha256,
                        key,
                        &[id.as_bytes(), b".", ts.as_bytes(), b".", req.body],
                        sig,
                    )
                })
            }
            MacScheme::Github { secret } => {
                let value = req.header("x-hub-signature-256")?;
                let candidates = value
                    .split(',')
                    .map(|s| s.trim().strip_prefix("sha256=").unwrap_or(""));
                any_valid(candidates, SignatureEncoding::Hex, |sig| {
                    mac_ok(HmacAlgorithm::Sha256, secret, &[req.body], sig)
                })
            }
            MacScheme::Stripe { secret } => {
                let value = req.header("stripe-signature")?;
                let mut ts = None;
                let mut sigs = Vec::new();
                for item in value.split(',') {
                    match item.trim().split_once('=') {
                        Some(("t", t)) => ts = Some(t.to_string()),
                        Some(("v1", s)) => sigs.push(s.to_string()),
                        _ => {}
                    }
                }
                let ts = ts.ok_or("no timestamp in `stripe-signature`")?;
                fresh.check(&ts)?;
                any_valid(
                    sigs.iter().map(String::as_str),
                    SignatureEncoding::Hex,
                    |sig| {
                        mac_ok(
                            HmacAlgorithm::Sha256,
                            secret,
                            &[ts.as_bytes(), b".", req.body],
                            sig,
                        )
                    },
                )
            }
            MacScheme::Slack { secret } => {
                let ts = req.header("x-slack-request-timestamp")?;
                fresh.check(&ts)?;
                let value = req.header("x-slack-signature")?;
                let candidates = value
                    .split(',')
                    .map(|s| s.trim().strip_prefix("v0=").unwrap_or(""));
                any_valid(candidates, SignatureEncoding::Hex, |sig| {
                    mac_ok(
                        HmacAlgorithm::Sha256,
                        secret,
                        &[b"v0:", ts.as_bytes(), b":", req.body],
                        sig,
                    )
                })
            }
            MacScheme::Shopify { secret } => {
                let value = req.header("x-shopify-hmac-sha256")?;
                let candidates = value.split(',').map(str::trim);
                any_valid(candidates, SignatureEncoding::Base64, |sig| {
                    mac_ok(HmacAlgorithm::Sha256, secret, &[req.body], sig)
                })
            }
        }
    }
}

/// Tries each candidate signature; an empty or undecodable one never matches.
fn any_valid<'a>(
    candidates: impl Iterator<Item = &'a str>,
    encoding: SignatureEncoding,
    check: impl Fn(&[u8]) -> bool,
) -> Result<(), Rejected> {
    for c in candidates {
        let c = c.trim();
        if c.is_empty() {
            continue;
        }
        let decoded = match encoding {
            SignatureEncoding::Hex => hex::decode(c).ok(),
            SignatureEncoding::Base64 => base64::engine::general_purpose::STANDARD.decode(c).ok(),
        };
        if let Some(sig) = decoded {
            if check(&sig) {
                return Ok(());
            }
        }
    }
    Err("no signature matches".into())
}

/// HMAC over the concatenated parts, compared in constant time (length included).
fn mac_ok(algorithm: HmacAlgorithm, key: &[u8], parts: &[&[u8]], sig: &[u8]) -> bool {
    macro_rules! check {
        ($digest:ty) => {{
            let Ok(mut mac) = <Hmac<$digest> as Mac>::new_from_slice(key) else {
                return false;
            };
            for p in parts {
                mac.update(p);
            }
            mac.verify_slice(sig).is_ok()
        }};
    }
    match algorithm {
        HmacAlgorithm::Sha1 => check!(sha1::Sha1),
        HmacAlgorithm::Sha256 => check!(sha2::Sha256),
        HmacAlgorithm::Sha512 => check!(sha2::Sha512),
    }
}
