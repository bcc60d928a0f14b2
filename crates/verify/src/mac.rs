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
use subtle::ConstantTimeEq;

/// Signatures read from one request at most: a header of thousands of
/// candidates must not cost thousands of comparisons (each costs little
/// now that the MAC is computed once, but the bound keeps a 401 cheap).
const MAX_CANDIDATES: usize = 16;

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

impl Payload {
    /// The signed bytes: the template rendered over the request. The body
    /// is signed as its bytes (SPEC §4b). When they are not UTF-8 text,
    /// `trigger.raw_body` is a lossy copy in which every invalid byte reads
    /// U+FFFD (two bodies, one text): each place the template writes it
    /// gets the bytes themselves instead. A template that changes the
    /// body's text (a filter on it) cannot sign such a body exactly: the
    /// request is refused.
    fn render(&self, req: &Signed<'_>) -> Result<Vec<u8>, Rejected> {
        let render = |raw_body: Option<&str>| {
            let mut trigger = req.request.to_json();
            if let (Some(raw), Some(m)) = (raw_body, trigger.as_object_mut()) {
                m.insert("raw_body".into(), Json::String(raw.to_string()));
            }
            let mut scope = Scope::new();
            scope.set_owned("trigger", trigger);
            scope.set("secrets", &self.secrets);
            self.templates
                .render(&self.text, &scope)
                .map_err(|e| Rejected(format!("the signed payload does not render: {}", e.message)))
        };
        if std::str::from_utf8(req.body).is_ok() {
            return Ok(render(None)?.into_bytes());
        }
        let marker = marker();
        let marked = render(Some(marker))?;
        if marked.replace(marker, "") != render(Some(""))? {
            return Err(
                "the body is not UTF-8 text and the signed payload changes `trigger.raw_body`: \
                 only its bytes as they are can be signed"
                    .into(),
            );
        }
        let mut signed = Vec::with_capacity(marked.len() + req.body.len());
        for (i, piece) in marked.split(marker).enumerate() {
            if i > 0 {
                signed.extend_from_slice(req.body);
            }
            signed.extend_from_slice(piece.as_bytes());
        }
        Ok(signed)
    }
}

/// A text no request can guess, standing for the body's bytes in a
/// rendered payload: random for each process.
fn marker() -> &'static str {
    static MARKER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    MARKER.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let random = |n: u64| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(n);
            h.finish()
        };
        format!("\u{FDD0}{:016x}{:016x}\u{FDD1}", random(1), random(2))
    })
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
        // `whsec_` alone (an empty variable after it) is an empty key: an
        // HMAC anyone can compute.
        if key.is_empty() {
            return Err(SetupError::new(
                "secret",
                "has an empty key after `whsec_` (is its secret variable empty?)",
            ));
        }
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
                        rendered = p.render(req)?;
                        &rendered
                    }
                    None => req.body,
                };
                let value = req.header(header)?;
                let expected = mac(*algorithm, secret, &[signed]);
                match prefix {
                    Some(p) => any_valid(prefixed(&value, p), *encoding, &expected),
                    None => any_valid(value.split(SEPARATORS), *encoding, &expected),
                }
            }
            MacScheme::StandardWebhooks { key } => {
                // Svix, the scheme's origin, names the headers `svix-*`
                // (Clerk and Resend send those); `webhook-*` when the
                // request has them.
                let family = match req.request.header("webhook-signature") {
                    Some(_) => "webhook",
                    None => "svix",
                };
                let id = req.header(&format!("{family}-id"))?;
                let ts = req.header(&format!("{family}-timestamp"))?;
                fresh.check(&ts)?;
                let value = req.header(&format!("{family}-signature"))?;
                // Signatures are separated by spaces; a repeated header
                // arrives joined with `, `, so a trailing comma is dropped.
                let candidates = value
                    .split(' ')
                    .filter_map(|s| s.trim_end_matches(',').strip_prefix("v1,"));
                let expected = mac(
                    HmacAlgorithm::Sha256,
                    key,
                    &[id.as_bytes(), b".", ts.as_bytes(), b".", req.body],
                );
                any_valid(candidates, SignatureEncoding::Base64, &expected)
            }
            MacScheme::Github { secret } => {
                let value = req.header("x-hub-signature-256")?;
                let candidates = value
                    .split(',')
                    .map(|s| s.trim().strip_prefix("sha256=").unwrap_or(""));
                let expected = mac(HmacAlgorithm::Sha256, secret, &[req.body]);
                any_valid(candidates, SignatureEncoding::Hex, &expected)
            }
            MacScheme::Stripe { secret } => {
                let value = req.header("stripe-signature")?;
                let mut ts = None;
                let mut sigs = Vec::new();
                for item in value.split(',') {
                    match item.trim().split_once('=') {
                        Some(("t", t)) => ts = Some(t),
                        Some(("v1", s)) => sigs.push(s),
                        _ => {}
                    }
                }
                let ts = ts.ok_or("no timestamp in `stripe-signature`")?;
                fresh.check(ts)?;
                let expected = mac(
                    HmacAlgorithm::Sha256,
                    secret,
                    &[ts.as_bytes(), b".", req.body],
                );
                any_valid(sigs.into_iter(), SignatureEncoding::Hex, &expected)
            }
            MacScheme::Slack { secret } => {
                let ts = req.header("x-slack-request-timestamp")?;
                fresh.check(&ts)?;
                let value = req.header("x-slack-signature")?;
                let candidates = value
                    .split(',')
                    .map(|s| s.trim().strip_prefix("v0=").unwrap_or(""));
                let expected = mac(
                    HmacAlgorithm::Sha256,
                    secret,
                    &[b"v0:", ts.as_bytes(), b":", req.body],
                );
                any_valid(candidates, SignatureEncoding::Hex, &expected)
            }
            MacScheme::Shopify { secret } => {
                let value = req.header("x-shopify-hmac-sha256")?;
                let candidates = value.split(',').map(str::trim);
                let expected = mac(HmacAlgorithm::Sha256, secret, &[req.body]);
                any_valid(candidates, SignatureEncoding::Base64, &expected)
            }
        }
    }
}

/// What separates signatures in one header value (hex and base64 have
/// neither).
const SEPARATORS: [char; 2] = [',', ' '];

/// The signatures of a header value that follow `prefix`, each up to the
/// next separator. The prefix is found where a signature may start (at the
/// value's start or after a separator), so that a prefix holding a
/// separator itself (`HMAC-SHA256 `, `v1,`) still matches.
fn prefixed<'a>(value: &'a str, prefix: &'a str) -> impl Iterator<Item = &'a str> {
    value
        .match_indices(prefix)
        .filter(|(i, _)| *i == 0 || value[..*i].ends_with(SEPARATORS))
        .map(move |(i, _)| {
            value[i + prefix.len()..]
                .split(SEPARATORS)
                .next()
                .unwrap_or("")
        })
}

/// Compares each candidate signature with the expected MAC (computed
/// once), in constant time; an empty, undecodable or wrongly sized one
/// never matches. More than [`MAX_CANDIDATES`] is refused unread.
fn any_valid<'a>(
    candidates: impl Iterator<Item = &'a str>,
    encoding: SignatureEncoding,
    expected: &[u8],
) -> Result<(), Rejected> {
    let mut seen = 0;
    for c in candidates {
        let c = c.trim();
        if c.is_empty() {
            continue;
        }
        seen += 1;
        if seen > MAX_CANDIDATES {
            return Err(format!("more than {MAX_CANDIDATES} signatures").into());
        }
        let decoded = match encoding {
            SignatureEncoding::Hex => hex::decode(c).ok(),
            SignatureEncoding::Base64 => base64::engine::general_purpose::STANDARD.decode(c).ok(),
        };
        if let Some(sig) = decoded {
            if !expected.is_empty() && bool::from(sig.as_slice().ct_eq(expected)) {
                return Ok(());
            }
        }
    }
    Err("no signature matches".into())
}

/// The HMAC of the concatenated parts; empty when the key is refused
/// (which no signature then matches).
fn mac(algorithm: HmacAlgorithm, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    macro_rules! compute {
        ($digest:ty) => {{
            let Ok(mut mac) = <Hmac<$digest> as Mac>::new_from_slice(key) else {
                return Vec::new();
            };
            for p in parts {
                mac.update(p);
            }
            mac.finalize().into_bytes().to_vec()
        }};
    }
    match algorithm {
        HmacAlgorithm::Sha1 => compute!(sha1::Sha1),
        HmacAlgorithm::Sha256 => compute!(sha2::Sha256),
        HmacAlgorithm::Sha512 => compute!(sha2::Sha512),
    }
}
