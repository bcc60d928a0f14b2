//! Signature verification (SPEC §4b) over the raw body, before parsing.
//!
//! Secrets are rendered once when a workflow is installed. Every comparison is
//! the MAC crate's constant-time `verify_slice`, which also checks the length.
//! Presets that sign a timestamp reject stale and future ones (`tolerance`,
//! default 5 minutes). Headers may carry several signatures (key rotation):
//! one match is enough.

use base64::Engine;
use hmac::{Hmac, Mac};
use hookflow_model::def::{HmacAlgorithm, SignatureEncoding, VerifyDef};
use hookflow_model::runtime::{Verify, Workflow};
use hookflow_model::template::{Scope, Templates, Text};
use std::time::Duration;

/// Default tolerance of signed timestamps.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// A verifier ready for requests.
pub struct Verifier {
    kind: Kind,
    tolerance: Duration,
    templates: Templates,
}

enum Kind {
    Hmac {
        secret: Vec<u8>,
        header: String,
        algorithm: HmacAlgorithm,
        encoding: SignatureEncoding,
        prefix: Option<String>,
        payload: Option<Text>,
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
    Feishu {
        token: Vec<u8>,
        encrypt_key: Option<Vec<u8>>,
    },
    WechatpayV3 {
        public_key: Box<rsa::RsaPublicKey>,
        serial: Option<String>,
        api_v3_key: Vec<u8>,
    },
    Alipay {
        public_key: Box<rsa::RsaPublicKey>,
    },
}

/// What a passed check hands on to the request.
#[derive(Debug, Default, PartialEq)]
pub struct Verified {
    /// Replaces `trigger.body` (Feishu's decrypted event).
    pub body: Option<serde_json::Value>,
    /// Goes to `trigger.body.resource.plaintext` (WeChat Pay's decrypted resource).
    pub resource_plaintext: Option<serde_json::Value>,
    /// Answer this challenge and start no run (Feishu's `url_verification`).
    pub challenge: Option<String>,
}

/// Reads an RSA public key: PEM (SPKI or PKCS#1) or the bare base64 of SPKI.
fn public_key(text: &[u8]) -> Result<rsa::RsaPublicKey, String> {
    use rsa::pkcs1::DecodeRsaPublicKey;
    use rsa::pkcs8::DecodePublicKey;
    let text = String::from_utf8_lossy(text).trim().to_string();
    let pem = if text.contains("-----BEGIN") {
        text
    } else {
        format!("-----BEGIN PUBLIC KEY-----\n{text}\n-----END PUBLIC KEY-----\n")
    };
    rsa::RsaPublicKey::from_public_key_pem(&pem)
        .or_else(|_| rsa::RsaPublicKey::from_pkcs1_pem(&pem))
        .map_err(|e| format!("`public_key` is not an RSA public key: {e}"))
}

/// RSA PKCS#1 v1.5 with SHA-256 (WeChat Pay, Alipay RSA2).
fn rsa_sha256_ok(key: &rsa::RsaPublicKey, message: &[u8], signature_b64: &str) -> bool {
    use sha2::Digest;
    let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(signature_b64.trim()) else {
        return false;
    };
    let digest = sha2::Sha256::digest(message);
    key.verify(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &digest, &sig)
        .is_ok()
}

/// What a request shows the verifier.
pub struct Signed<'a> {
    /// Header lookup by lower-case name.
    pub header: &'a dyn Fn(&str) -> Option<String>,
    /// The raw body.
    pub body: &'a [u8],
    /// Builds the template variables for a templated payload (generic hmac only).
    pub scope: &'a dyn Fn() -> Scope,
    /// Now, Unix seconds.
    pub now: u64,
}

fn render_secret(
    workflow: &Workflow,
    verify: &Verify,
    field: &str,
    scope: &Scope,
) -> Result<Vec<u8>, String> {
    let text = verify
        .texts
        .get(field)
        .ok_or_else(|| format!("`{field}` is missing"))?;
    let value = workflow
        .templates
        .render(text, scope)
        .map_err(|e| format!("`{field}`: {}", e.message))?;
    if value.is_empty() {
        return Err(format!("`{field}` renders to an empty string"));
    }
    Ok(value.into_bytes())
}

impl Verifier {
    /// Prepares the verifier of a workflow; an error means the workflow must not be served.
    pub fn build(workflow: &Workflow, verify: &Verify) -> Result<Verifier, String> {
        let mut scope = Scope::new();
        scope.set("secrets", &workflow.secret_values());
        let secret = |field: &str| render_secret(workflow, verify, field, &scope);
        let tolerance_of =
            |t: &Option<hookflow_model::units::Dur>| t.map(|d| d.0).unwrap_or(DEFAULT_TOLERANCE);
        let (kind, tolerance) = match &verify.preset {
            VerifyDef::Hmac(h) => (
                Kind::Hmac {
                    secret: secret("secret")?,
                    header: h.header.to_ascii_lowercase(),
                    algorithm: h.algorithm.unwrap_or(HmacAlgorithm::Sha256),
                    encoding: h.encoding.unwrap_or(SignatureEncoding::Hex),
                    prefix: h.prefix.clone(),
                    payload: verify.texts.get("payload").cloned(),
                    timestamp_header: h.timestamp_header.as_ref().map(|t| t.to_ascii_lowercase()),
                },
                tolerance_of(&h.tolerance),
            ),
            VerifyDef::StandardWebhooks(s) => {
                let text = String::from_utf8(secret("secret")?)
                    .map_err(|_| "`secret` is not text".to_string())?;
                let encoded = text.strip_prefix("whsec_").unwrap_or(&text);
                let key = base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .map_err(|_| "`secret` must be `whsec_` followed by base64".to_string())?;
                (Kind::StandardWebhooks { key }, tolerance_of(&s.tolerance))
            }
            VerifyDef::Github(_) => (
                Kind::Github {
                    secret: secret("secret")?,
                },
                DEFAULT_TOLERANCE,
            ),
            VerifyDef::Stripe(s) => (
                Kind::Stripe {
                    secret: secret("secret")?,
                },
                tolerance_of(&s.tolerance),
            ),
            VerifyDef::Slack(s) => (
                Kind::Slack {
                    secret: secret("secret")?,
                },
                tolerance_of(&s.tolerance),
            ),
            VerifyDef::Shopify(_) => (
                Kind::Shopify {
                    secret: secret("secret")?,
                },
                DEFAULT_TOLERANCE,
            ),
            VerifyDef::Feishu(_) => (
                Kind::Feishu {
                    token: secret("token")?,
                    encrypt_key: match verify.texts.get("encrypt_key") {
                        Some(_) => Some(secret("encrypt_key")?),
                        None => None,
                    },
                },
                DEFAULT_TOLERANCE,
            ),
            VerifyDef::WechatpayV3(w) => {
                let api_v3_key = secret("api_v3_key")?;
                if api_v3_key.len() != 32 {
                    return Err("`api_v3_key` must be 32 bytes".into());
                }
                (
                    Kind::WechatpayV3 {
                        public_key: Box::new(public_key(&secret("public_key")?)?),
                        serial: w.public_key_id.clone(),
                        api_v3_key,
                    },
                    tolerance_of(&w.tolerance),
                )
            }
            VerifyDef::Alipay(_) => (
                Kind::Alipay {
                    public_key: Box::new(public_key(&secret("public_key")?)?),
                },
                DEFAULT_TOLERANCE,
            ),
        };
        Ok(Verifier {
            kind,
            tolerance,
            templates: workflow.templates.clone(),
        })
    }

    /// Checks a request; `Err` says why it is rejected (for the log, not the caller).
    pub fn check(&self, req: &Signed<'_>) -> Result<Verified, String> {
        let header =
            |name: &str| (req.header)(name).ok_or_else(|| format!("missing `{name}` header"));
        let plain: Result<(), String> = match &self.kind {
            Kind::Feishu { token, encrypt_key } => {
                return self.feishu(req, token, encrypt_key.as_deref())
            }
            Kind::WechatpayV3 {
                public_key,
                serial,
                api_v3_key,
            } => return self.wechatpay(req, public_key, serial.as_deref(), api_v3_key),
            Kind::Alipay { public_key } => return alipay(req, public_key),
            Kind::Hmac {
                secret,
                header: name,
                algorithm,
                encoding,
                prefix,
                payload,
                timestamp_header,
            } => {
                if let Some(ts) = timestamp_header {
                    self.fresh(&header(ts)?, req.now)?;
                }
                let rendered;
                let signed: &[u8] = match payload {
                    Some(t) => {
                        rendered = self.templates.render(t, &(req.scope)()).map_err(|e| {
                            format!("the signed payload does not render: {}", e.message)
                        })?;
                        rendered.as_bytes()
                    }
                    None => req.body,
                };
                let value = header(name)?;
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
            Kind::StandardWebhooks { key } => {
                let id = header("webhook-id")?;
                let ts = header("webhook-timestamp")?;
                self.fresh(&ts, req.now)?;
                let value = header("webhook-signature")?;
                let candidates = value.split(' ').filter_map(|s| s.strip_prefix("v1,"));
                any_valid(candidates, SignatureEncoding::Base64, |sig| {
                    mac_ok(
                        HmacAlgorithm::Sha256,
                        key,
                        &[id.as_bytes(), b".", ts.as_bytes(), b".", req.body],
                        sig,
                    )
                })
            }
            Kind::Github { secret } => {
                let value = header("x-hub-signature-256")?;
                let candidates = value
                    .split(',')
                    .map(|s| s.trim().strip_prefix("sha256=").unwrap_or(""));
                any_valid(candidates, SignatureEncoding::Hex, |sig| {
                    mac_ok(HmacAlgorithm::Sha256, secret, &[req.body], sig)
                })
            }
            Kind::Stripe { secret } => {
                let value = header("stripe-signature")?;
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
                self.fresh(&ts, req.now)?;
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
            Kind::Slack { secret } => {
                let ts = header("x-slack-request-timestamp")?;
                self.fresh(&ts, req.now)?;
                let value = header("x-slack-signature")?;
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
            Kind::Shopify { secret } => {
                let value = header("x-shopify-hmac-sha256")?;
                let candidates = value.split(',').map(str::trim);
                any_valid(candidates, SignatureEncoding::Base64, |sig| {
                    mac_ok(HmacAlgorithm::Sha256, secret, &[req.body], sig)
                })
            }
        };
        plain.map(|()| Verified::default())
    }

    /// Feishu: token, optional decryption, `X-Lark-Signature`, the challenge.
    fn feishu(
        &self,
        req: &Signed<'_>,
        token: &[u8],
        encrypt_key: Option<&[u8]>,
    ) -> Result<Verified, String> {
        use serde_json::Value as Json;
        use subtle::ConstantTimeEq;
        let outer: Json =
            serde_json::from_slice(req.body).map_err(|_| "the body is not JSON".to_string())?;
        let encrypted = outer.get("encrypt").and_then(Json::as_str);
        let event = match (encrypted, encrypt_key) {
            (Some(text), Some(key)) => feishu_decrypt(text, key)?,
            (Some(_), None) => {
                return Err("the event is encrypted but no `encrypt_key` is set".into())
            }
            (None, _) => outer,
        };
        let given = event
            .pointer("/header/token")
            .or_else(|| event.get("token"))
            .and_then(Json::as_str)
            .unwrap_or_default();
        if !bool::from(given.as_bytes().ct_eq(token)) {
            return Err("the verification token does not match".into());
        }
        if event.get("type").and_then(Json::as_str) == Some("url_verification") {
            let challenge = event
                .get("challenge")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_string();
            return Ok(Verified {
                challenge: Some(challenge),
                ..Verified::default()
            });
        }
        if let Some(key) = encrypt_key {
            use sha2::Digest;
            let header =
                |name: &str| (req.header)(name).ok_or_else(|| format!("missing `{name}` header"));
            let ts = header("x-lark-request-timestamp")?;
            let nonce = header("x-lark-request-nonce")?;
            let signature = header("x-lark-signature")?;
            self.fresh(&ts, req.now)?;
            let mut hasher = sha2::Sha256::new();
            hasher.update(ts.as_bytes());
            hasher.update(nonce.as_bytes());
            hasher.update(key);
            hasher.update(req.body);
            let expected = hex::encode(hasher.finalize());
            if !bool::from(
                expected
                    .as_bytes()
                    .ct_eq(signature.trim().to_ascii_lowercase().as_bytes()),
            ) {
                return Err("`X-Lark-Signature` does not match".into());
            }
        }
        Ok(Verified {
            body: Some(event),
            ..Verified::default()
        })
    }

    /// WeChat Pay v3: RSA-SHA256 over `timestamp\nnonce\nbody\n`, then the resource decrypted.
    fn wechatpay(
        &self,
        req: &Signed<'_>,
        key: &rsa::RsaPublicKey,
        serial: Option<&str>,
        api_v3_key: &[u8],
    ) -> Result<Verified, String> {
        use serde_json::Value as Json;
        let header =
            |name: &str| (req.header)(name).ok_or_else(|| format!("missing `{name}` header"));
        let signature = header("wechatpay-signature")?;
        if signature.starts_with("WECHATPAY/SIGNTEST/") {
            return Err("a signature probe".into());
        }
        if let Some(expected) = serial {
            if header("wechatpay-serial")?.trim() != expected {
                return Err("`Wechatpay-Serial` names another key".into());
            }
        }
        let ts = header("wechatpay-timestamp")?;
        let nonce = header("wechatpay-nonce")?;
        self.fresh(&ts, req.now)?;
        let mut message = Vec::with_capacity(ts.len() + nonce.len() + req.body.len() + 3);
        message.extend_from_slice(ts.as_bytes());
        message.push(b'\n');
        message.extend_from_slice(nonce.as_bytes());
        message.push(b'\n');
        message.extend_from_slice(req.body);
        message.push(b'\n');
        if !rsa_sha256_ok(key, &message, &signature) {
            return Err("`Wechatpay-Signature` does not verify".into());
        }
        let body: Json =
            serde_json::from_slice(req.body).map_err(|_| "the body is not JSON".to_string())?;
        let Some(resource) = body.get("resource") else {
            return Ok(Verified::default());
        };
        let field = |name: &str| {
            resource
                .get(name)
                .and_then(Json::as_str)
                .unwrap_or_default()
        };
        let plaintext = wechatpay_decrypt(
            api_v3_key,
            field("nonce"),
            field("associated_data"),
            field("ciphertext"),
        )?;
        Ok(Verified {
            resource_plaintext: Some(serde_json::from_slice(&plaintext).unwrap_or_else(|_| {
                Json::String(String::from_utf8_lossy(&plaintext).into_owned())
            })),
            ..Verified::default()
        })
    }

    /// Rejects timestamps outside the tolerance, in either direction.
    fn fresh(&self, ts: &str, now: u64) -> Result<(), String> {
        let ts: u64 = ts
            .trim()
            .parse()
            .map_err(|_| format!("timestamp `{ts}` is not Unix seconds"))?;
        let skew = now.abs_diff(ts);
        if skew > self.tolerance.as_secs() {
            return Err(format!(
                "timestamp is {skew} s away from now (tolerance {} s)",
                self.tolerance.as_secs()
            ));
        }
        Ok(())
    }
}

/// Alipay: RSA2 over the sorted form parameters without `sign`, `sign_type` and empty values.
fn alipay(req: &Signed<'_>, key: &rsa::RsaPublicKey) -> Result<Verified, String> {
    let mut params: Vec<(String, String)> = form_urlencoded::parse(req.body).into_owned().collect();
    let sign = params
        .iter()
        .find(|(k, _)| k == "sign")
        .map(|(_, v)| v.clone())
        .ok_or("missing `sign` parameter")?;
    params.retain(|(k, v)| k != "sign" && k != "sign_type" && !v.is_empty());
    params.sort();
    let content = params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    if rsa_sha256_ok(key, content.as_bytes(), &sign) {
        Ok(Verified::default())
    } else {
        Err("`sign` does not verify".into())
    }
}

/// Feishu: AES-256-CBC, key = SHA-256 of the encrypt key, IV = the first 16 bytes.
fn feishu_decrypt(text: &str, encrypt_key: &[u8]) -> Result<serde_json::Value, String> {
    use aes::cipher::{BlockDecryptMut, KeyIvInit};
    use sha2::Digest;
    let data = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| "`encrypt` is not base64".to_string())?;
    if data.len() < 32 {
        return Err("`encrypt` is too short".into());
    }
    let key = sha2::Sha256::digest(encrypt_key);
    let (iv, ciphertext) = data.split_at(16);
    let plain = cbc::Decryptor::<aes::Aes256>::new_from_slices(&key, iv)
        .map_err(|_| "bad key or IV".to_string())?
        .decrypt_padded_vec_mut::<aes::cipher::block_padding::Pkcs7>(ciphertext)
        .map_err(|_| "`encrypt` does not decrypt with this encrypt key".to_string())?;
    serde_json::from_slice(&plain).map_err(|_| "the decrypted event is not JSON".to_string())
}

/// WeChat Pay: AEAD_AES_256_GCM with the APIv3 key.
fn wechatpay_decrypt(
    key: &[u8],
    nonce: &str,
    aad: &str,
    ciphertext: &str,
) -> Result<Vec<u8>, String> {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    let cipher = aes_gcm::Aes256Gcm::new_from_slice(key)
        .map_err(|_| "`api_v3_key` must be 32 bytes".to_string())?;
    if nonce.len() != 12 {
        return Err("the resource nonce must be 12 bytes".into());
    }
    let data = base64::engine::general_purpose::STANDARD
        .decode(ciphertext.trim())
        .map_err(|_| "the resource ciphertext is not base64".to_string())?;
    cipher
        .decrypt(
            aes_gcm::Nonce::from_slice(nonce.as_bytes()),
            Payload {
                msg: &data,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| "the resource does not decrypt with the APIv3 key".to_string())
}

/// Tries each candidate signature; an empty or undecodable one never matches.
fn any_valid<'a>(
    candidates: impl Iterator<Item = &'a str>,
    encoding: SignatureEncoding,
    check: impl Fn(&[u8]) -> bool,
) -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use hookflow_model::load::{load_source, LoadOptions, SecretPolicy};
    use std::collections::HashMap;
    use std::path::Path;

    const NOW: u64 = 1_800_000_000;

    fn verifier(verify_yaml: &str) -> Verifier {
        let yaml = format!("title: v\ntrigger:\n  type: webhook\n  verify:\n{verify_yaml}");
        let file = load_source(
            "v",
            Path::new("v.yaml"),
            &yaml,
            &LoadOptions::process_env(SecretPolicy::Warn),
        );
        let wf = file
            .workflow
            .unwrap_or_else(|| panic!("{:?}", file.diagnostics));
        let verify = wf.trigger.verify.as_ref().expect("verify");
        Verifier::build(&wf, verify).expect("builds")
    }

    /// One helper per boundary: headers and body in, accepted or the reason out.
    fn check(v: &Verifier, headers: &[(&str, &str)], body: &str) -> Result<(), String> {
        check_full(v, headers, body).map(|_| ())
    }

    fn check_full(v: &Verifier, headers: &[(&str, &str)], body: &str) -> Result<Verified, String> {
        let map: HashMap<String, String> = headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect();
        let header = |name: &str| map.get(name).cloned();
        let raw = body.to_string();
        let scope = move || {
            let mut s = Scope::new();
            s.set(
                "trigger",
                &serde_json::json!({"raw_body": raw, "headers": {"x-ts": "77"}}),
            );
            s
        };
        v.check(&Signed {
            header: &header,
            body: body.as_bytes(),
            scope: &scope,
            now: NOW,
        })
    }

    fn hmac_hex(key: &[u8], parts: &[&[u8]]) -> String {
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("key");
        for p in parts {
            mac.update(p);
        }
        hex::encode(mac.finalize().into_bytes())
    }

    fn hmac_b64(key: &[u8], parts: &[&[u8]]) -> String {
        let bytes = hex::decode(hmac_hex(key, parts)).expect("hex");
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn github_published_test_vector() {
        let v = verifier("    preset: github\n    secret: \"It's a Secret to Everybody\"\n");
        let good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(
            check(&v, &[("X-Hub-Signature-256", good)], "Hello, World!"),
            Ok(())
        );
        assert!(
            check(&v, &[("X-Hub-Signature-256", good)], "Hello, World?").is_err(),
            "tampered body"
        );
        assert!(check(&v, &[], "Hello, World!").is_err(), "missing header");
        assert!(
            check(&v, &[("X-Hub-Signature-256", "sha256=")], "Hello, World!").is_err(),
            "empty signature"
        );
        assert!(
            check(&v, &[("X-Hub-Signature-256", &good[..40])], "Hello, World!").is_err(),
            "a prefix of the right signature"
        );
        assert!(
            check(&v, &[("X-Hub-Signature-256", &good[7..])], "Hello, World!").is_err(),
            "without the sha256= prefix"
        );
        let wrong = verifier("    preset: github\n    secret: other\n");
        let several = format!("sha256={}, {good}", "0".repeat(64));
        assert_eq!(
            check(&v, &[("X-Hub-Signature-256", &several)], "Hello, World!"),
            Ok(()),
            "one of several"
        );
        assert!(
            check(&wrong, &[("X-Hub-Signature-256", good)], "Hello, World!").is_err(),
            "wrong secret"
        );
    }

    #[test]
    fn stripe() {
        let v = verifier("    preset: stripe\n    secret: whsec_test\n");
        let body = r#"{"id":"evt_1"}"#;
        let t = NOW.to_string();
        let sig = hmac_hex(b"whsec_test", &[t.as_bytes(), b".", body.as_bytes()]);
        let header = format!("t={t},v1={sig}");
        assert_eq!(check(&v, &[("Stripe-Signature", &header)], body), Ok(()));
        // Several signatures (secret rotation): one valid is enough.
        let rotated = format!("t={t},v1={},v1={sig},v0=abc", "0".repeat(64));
        assert_eq!(check(&v, &[("Stripe-Signature", &rotated)], body), Ok(()));
        assert!(
            check(&v, &[("Stripe-Signature", &header)], "{}").is_err(),
            "tampered"
        );
        assert!(check(&v, &[], body).is_err(), "missing");
        let stale_t = (NOW - 301).to_string();
        let stale = format!(
            "t={stale_t},v1={}",
            hmac_hex(b"whsec_test", &[stale_t.as_bytes(), b".", body.as_bytes()])
        );
        assert!(
            check(&v, &[("Stripe-Signature", &stale)], body)
                .unwrap_err()
                .contains("tolerance"),
            "stale"
        );
        let future_t = (NOW + 301).to_string();
        let future = format!(
            "t={future_t},v1={}",
            hmac_hex(b"whsec_test", &[future_t.as_bytes(), b".", body.as_bytes()])
        );
        assert!(
            check(&v, &[("Stripe-Signature", &future)], body).is_err(),
            "future"
        );
        let wrong = verifier("    preset: stripe\n    secret: whsec_other\n");
        assert!(
            check(&wrong, &[("Stripe-Signature", &header)], body).is_err(),
            "wrong secret"
        );
    }

    #[test]
    fn slack() {
        let v = verifier("    preset: slack\n    secret: slack-secret\n    tolerance: 1m\n");
        let body = "token=x&team_id=T1";
        let ts = NOW.to_string();
        let sig = format!(
            "v0={}",
            hmac_hex(
                b"slack-secret",
                &[b"v0:", ts.as_bytes(), b":", body.as_bytes()]
            )
        );
        let ok = [
            ("X-Slack-Request-Timestamp", ts.as_str()),
            ("X-Slack-Signature", sig.as_str()),
        ];
        assert_eq!(check(&v, &ok, body), Ok(()));
        assert!(check(&v, &ok, "token=y&team_id=T1").is_err());
        assert!(check(&v, &ok[1..], body).is_err(), "missing timestamp");
        let wrong = verifier("    preset: slack\n    secret: other\n");
        assert!(check(&wrong, &ok, body).is_err(), "wrong secret");
        let rotated = format!("v0={},{sig}", "ab".repeat(32));
        assert_eq!(
            check(&v, &[ok[0], ("X-Slack-Signature", rotated.as_str())], body),
            Ok(()),
            "one of several"
        );
        let old = (NOW - 61).to_string();
        let old_sig = format!(
            "v0={}",
            hmac_hex(
                b"slack-secret",
                &[b"v0:", old.as_bytes(), b":", body.as_bytes()]
            )
        );
        assert!(
            check(
                &v,
                &[
                    ("X-Slack-Request-Timestamp", &old),
                    ("X-Slack-Signature", &old_sig)
                ],
                body
            )
            .is_err(),
            "stale"
        );
    }

    #[test]
    fn shopify() {
        let v = verifier("    preset: shopify\n    secret: shpss\n");
        let body = r#"{"id":1}"#;
        let sig = hmac_b64(b"shpss", &[body.as_bytes()]);
        assert_eq!(check(&v, &[("X-Shopify-Hmac-Sha256", &sig)], body), Ok(()));
        assert!(check(&v, &[("X-Shopify-Hmac-Sha256", &sig)], r#"{"id":2}"#).is_err());
        assert!(check(&v, &[("X-Shopify-Hmac-Sha256", "")], body).is_err());
        let several = format!("{}, {sig}", hmac_b64(b"old", &[body.as_bytes()]));
        assert_eq!(
            check(&v, &[("X-Shopify-Hmac-Sha256", &several)], body),
            Ok(()),
            "one of several"
        );
        let wrong = verifier("    preset: shopify\n    secret: other\n");
        assert!(
            check(&wrong, &[("X-Shopify-Hmac-Sha256", &sig)], body).is_err(),
            "wrong secret"
        );
        assert!(check(&v, &[], body).is_err());
    }

    #[test]
    fn standard_webhooks() {
        let key = b"0123456789abcdef0123456789abcdef";
        let secret = format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(key)
        );
        let v = verifier(&format!(
            "    preset: standard_webhooks\n    secret: {secret}\n"
        ));
        let body = r#"{"type":"x"}"#;
        let ts = NOW.to_string();
        let sig = hmac_b64(key, &[b"msg_1", b".", ts.as_bytes(), b".", body.as_bytes()]);
        let both = format!("v1,{} v1,{sig}", hmac_b64(b"old key", &[b"x"]));
        let ok = [
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", ts.as_str()),
            ("webhook-signature", both.as_str()),
        ];
        assert_eq!(check(&v, &ok, body), Ok(()));
        assert!(check(&v, &ok, r#"{"type":"y"}"#).is_err());
        let other_id = [("webhook-id", "msg_2"), ok[1], ok[2]];
        assert!(check(&v, &other_id, body).is_err(), "the id is signed");
        assert!(check(&v, &ok[..2], body).is_err(), "missing signature");
        let other = format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(b"another key entirely, 32 bytes!!")
        );
        let wrong = verifier(&format!(
            "    preset: standard_webhooks\n    secret: {other}\n"
        ));
        assert!(check(&wrong, &ok, body).is_err(), "wrong secret");
        let stale_ts = (NOW - 301).to_string();
        let stale_sig = format!(
            "v1,{}",
            hmac_b64(
                key,
                &[b"msg_1", b".", stale_ts.as_bytes(), b".", body.as_bytes()]
            )
        );
        let stale = [
            ok[0],
            ("webhook-timestamp", stale_ts.as_str()),
            ("webhook-signature", stale_sig.as_str()),
        ];
        assert!(check(&v, &stale, body).is_err(), "stale");
    }

    #[test]
    fn generic_hmac_with_prefix_timestamp_and_template() {
        let v = verifier("    preset: hmac\n    secret: k\n    header: X-Sig\n    algorithm: sha512\n    encoding: base64\n    prefix: \"sha512=\"\n");
        let body = "payload";
        let mut mac = <Hmac<sha2::Sha512> as Mac>::new_from_slice(b"k").expect("key");
        mac.update(body.as_bytes());
        let sig = format!(
            "sha512={}",
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        );
        assert_eq!(check(&v, &[("X-Sig", &sig)], body), Ok(()));
        assert!(check(&v, &[("X-Sig", &sig)], "other").is_err());
        assert!(check(&v, &[], body).is_err(), "missing header");
        let wrong = verifier("    preset: hmac\n    secret: other\n    header: X-Sig\n    algorithm: sha512\n    encoding: base64\n    prefix: \"sha512=\"\n");
        assert!(
            check(&wrong, &[("X-Sig", &sig)], body).is_err(),
            "wrong secret"
        );
        let several = format!("sha512=AAAA {sig}");
        assert_eq!(
            check(&v, &[("X-Sig", &several)], body),
            Ok(()),
            "one of several"
        );
        // A templated payload and a timestamp header.
        let v = verifier("    preset: hmac\n    secret: k\n    header: X-Sig\n    payload: \"{{ trigger.headers['x-ts'] }}.{{ trigger.raw_body }}\"\n    timestamp_header: X-Ts\n");
        let sig = hmac_hex(b"k", &[b"77.", body.as_bytes()]);
        let ts = NOW.to_string();
        assert_eq!(check(&v, &[("X-Sig", &sig), ("X-Ts", &ts)], body), Ok(()));
        let stale = (NOW - 600).to_string();
        assert!(
            check(&v, &[("X-Sig", &sig), ("X-Ts", &stale)], body).is_err(),
            "stale"
        );
        let sha1 =
            verifier("    preset: hmac\n    secret: k\n    header: X-Sig\n    algorithm: sha1\n");
        let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(b"k").expect("key");
        mac.update(body.as_bytes());
        assert_eq!(
            check(
                &sha1,
                &[("X-Sig", &hex::encode(mac.finalize().into_bytes()))],
                body
            ),
            Ok(())
        );
    }

    const PRIVATE: &str = include_str!("../testdata/test-only-rsa-private.pem");
    const PUBLIC: &str = include_str!("../testdata/test-only-rsa-public.pem");

    fn rsa_sign(message: &[u8]) -> String {
        use rsa::pkcs8::DecodePrivateKey;
        use sha2::Digest;
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(PRIVATE).expect("test key");
        let sig = key
            .sign(
                rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
                &sha2::Sha256::digest(message),
            )
            .expect("signs");
        base64::engine::general_purpose::STANDARD.encode(sig)
    }

    fn indent(pem: &str) -> String {
        pem.lines().map(|l| format!("      {l}\n")).collect()
    }

    #[test]
    fn feishu_published_decryption_vector() {
        // From Feishu's event subscription docs: key "test key" decrypts this to "hello world".
        let key = sha2_digest(b"test key");
        let data = base64::engine::general_purpose::STANDARD
            .decode("P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk=")
            .expect("b64");
        use aes::cipher::{BlockDecryptMut, KeyIvInit};
        let plain = cbc::Decryptor::<aes::Aes256>::new_from_slices(&key, &data[..16])
            .expect("iv")
            .decrypt_padded_vec_mut::<aes::cipher::block_padding::Pkcs7>(&data[16..])
            .expect("decrypts");
        assert_eq!(plain, b"hello world");
    }

    fn sha2_digest(b: &[u8]) -> Vec<u8> {
        use sha2::Digest;
        sha2::Sha256::digest(b).to_vec()
    }

    fn feishu_encrypt(key: &str, plain: &str) -> String {
        use aes::cipher::{BlockEncryptMut, KeyIvInit};
        let iv = [7u8; 16];
        let ct = cbc::Encryptor::<aes::Aes256>::new_from_slices(&sha2_digest(key.as_bytes()), &iv)
            .expect("iv")
            .encrypt_padded_vec_mut::<aes::cipher::block_padding::Pkcs7>(plain.as_bytes());
        base64::engine::general_purpose::STANDARD.encode([iv.as_slice(), &ct].concat())
    }

    #[test]
    fn feishu_token_encryption_signature_and_challenge() {
        let plain = verifier("    preset: feishu\n    token: tok\n");
        let event = r#"{"schema":"2.0","header":{"event_id":"e1","token":"tok","event_type":"approval_instance"},"event":{"status":"APPROVED"}}"#;
        let v = check_full(&plain, &[], event).expect("token matches");
        assert_eq!(
            v.body
                .as_ref()
                .and_then(|b| b.pointer("/event/status"))
                .cloned(),
            Some(serde_json::json!("APPROVED"))
        );
        assert!(
            check(&plain, &[], &event.replace("tok", "bad")).is_err(),
            "wrong token"
        );
        let challenge = r#"{"challenge":"c-123","token":"tok","type":"url_verification"}"#;
        assert_eq!(
            check_full(&plain, &[], challenge)
                .expect("challenge")
                .challenge
                .as_deref(),
            Some("c-123")
        );
        assert!(
            check(&plain, &[], &challenge.replace("\"tok\"", "\"x\"")).is_err(),
            "challenge with a wrong token"
        );

        let enc = verifier("    preset: feishu\n    token: tok\n    encrypt_key: ekey\n");
        let body = format!(r#"{{"encrypt":"{}"}}"#, feishu_encrypt("ekey", event));
        let ts = NOW.to_string();
        let sig = hex::encode(sha2_digest(format!("{ts}nonce1ekey{body}").as_bytes()));
        let headers = [
            ("X-Lark-Request-Timestamp", ts.as_str()),
            ("X-Lark-Request-Nonce", "nonce1"),
            ("X-Lark-Signature", sig.as_str()),
        ];
        let v = check_full(&enc, &headers, &body).expect("decrypts and verifies");
        assert_eq!(
            v.body
                .as_ref()
                .and_then(|b| b.pointer("/header/event_id"))
                .cloned(),
            Some(serde_json::json!("e1"))
        );
        assert!(
            check(&enc, &headers[..2], &body).is_err(),
            "missing signature"
        );
        let old = (NOW - 600).to_string();
        let old_sig = hex::encode(sha2_digest(format!("{old}nonce1ekey{body}").as_bytes()));
        let stale = [
            ("X-Lark-Request-Timestamp", old.as_str()),
            headers[1],
            ("X-Lark-Signature", old_sig.as_str()),
        ];
        assert!(check(&enc, &stale, &body).is_err(), "stale timestamp");
        let wrong_sig = [headers[0], headers[1], ("X-Lark-Signature", "00")];
        assert!(check(&enc, &wrong_sig, &body).is_err(), "wrong signature");
        let other_key = format!(r#"{{"encrypt":"{}"}}"#, feishu_encrypt("other", event));
        assert!(
            check(&enc, &headers, &other_key).is_err(),
            "encrypted with another key"
        );
        // An encrypted challenge is answered without a signature.
        let enc_challenge = format!(r#"{{"encrypt":"{}"}}"#, feishu_encrypt("ekey", challenge));
        assert_eq!(
            check_full(&enc, &[], &enc_challenge)
                .expect("challenge")
                .challenge
                .as_deref(),
            Some("c-123")
        );
    }

    fn wechat_body(api_key: &[u8]) -> String {
        use aes_gcm::aead::{Aead, KeyInit, Payload};
        let cipher = aes_gcm::Aes256Gcm::new_from_slice(api_key).expect("key");
        let plain = r#"{"out_trade_no":"T1","trade_state":"SUCCESS"}"#;
        let ct = cipher
            .encrypt(
                aes_gcm::Nonce::from_slice(b"0123456789ab"),
                Payload {
                    msg: plain.as_bytes(),
                    aad: b"transaction",
                },
            )
            .expect("encrypts");
        format!(
            r#"{{"id":"n1","event_type":"TRANSACTION.SUCCESS","resource":{{"algorithm":"AEAD_AES_256_GCM","ciphertext":"{}","nonce":"0123456789ab","associated_data":"transaction"}}}}"#,
            base64::engine::general_purpose::STANDARD.encode(ct)
        )
    }

    #[test]
    fn wechatpay_v3_signature_probe_and_resource() {
        let api_key = b"0123456789abcdef0123456789abcdef";
        let v = verifier(&format!(
            "    preset: wechatpay_v3\n    public_key_id: SERIAL1\n    api_v3_key: {}\n    public_key: |\n{}",
            std::str::from_utf8(api_key).expect("utf8"),
            indent(PUBLIC)
        ));
        let body = wechat_body(api_key);
        let ts = NOW.to_string();
        let sig = rsa_sign(format!("{ts}\nnonce-1\n{body}\n").as_bytes());
        let headers = [
            ("Wechatpay-Timestamp", ts.as_str()),
            ("Wechatpay-Nonce", "nonce-1"),
            ("Wechatpay-Signature", sig.as_str()),
            ("Wechatpay-Serial", "SERIAL1"),
        ];
        let verified = check_full(&v, &headers, &body).expect("verifies");
        assert_eq!(
            verified.resource_plaintext,
            Some(serde_json::json!({"out_trade_no": "T1", "trade_state": "SUCCESS"}))
        );
        assert!(
            check(&v, &headers, &body.replace("n1", "n2")).is_err(),
            "tampered"
        );
        let probe = [
            headers[0],
            headers[1],
            ("Wechatpay-Signature", "WECHATPAY/SIGNTEST/abc"),
            headers[3],
        ];
        assert!(check(&v, &probe, &body).unwrap_err().contains("probe"));
        let other_serial = [
            headers[0],
            headers[1],
            headers[2],
            ("Wechatpay-Serial", "SERIAL2"),
        ];
        assert!(
            check(&v, &other_serial, &body).is_err(),
            "another key's serial"
        );
        let old = (NOW - 600).to_string();
        let old_sig = rsa_sign(format!("{old}\nnonce-1\n{body}\n").as_bytes());
        let stale = [
            ("Wechatpay-Timestamp", old.as_str()),
            headers[1],
            ("Wechatpay-Signature", old_sig.as_str()),
            headers[3],
        ];
        assert!(check(&v, &stale, &body).is_err(), "stale");
        assert!(
            check(&v, &headers[1..], &body).is_err(),
            "missing timestamp"
        );
        let wrong_key = verifier(&format!(
            "    preset: wechatpay_v3\n    api_v3_key: {}\n    public_key: |\n{}",
            "x".repeat(32),
            indent(PUBLIC)
        ));
        assert!(
            check(&wrong_key, &headers, &body)
                .unwrap_err()
                .contains("APIv3"),
            "wrong APIv3 key"
        );
    }

    #[test]
    fn alipay_rsa2_over_sorted_parameters() {
        let v = verifier(&format!(
            "    preset: alipay\n    public_key: |\n{}",
            indent(PUBLIC)
        ));
        let content = "buyer_id=2088&out_trade_no=T1&total_amount=9.90&trade_status=TRADE_SUCCESS";
        let sign = rsa_sign(content.as_bytes());
        let mut form = form_urlencoded::Serializer::new(String::new());
        // Unsorted, with sign_type and an empty value, which are not signed.
        for (k, val) in [
            ("trade_status", "TRADE_SUCCESS"),
            ("sign_type", "RSA2"),
            ("total_amount", "9.90"),
            ("memo", ""),
            ("out_trade_no", "T1"),
            ("buyer_id", "2088"),
            ("sign", sign.as_str()),
        ] {
            form.append_pair(k, val);
        }
        let body = form.finish();
        assert_eq!(check(&v, &[], &body), Ok(()));
        assert!(
            check(&v, &[], &body.replace("9.90", "0.01")).is_err(),
            "tampered amount"
        );
        assert!(
            check(&v, &[], &body.replace("&sign=", "&signx=")).is_err(),
            "missing sign"
        );
        let bad_key = "title: v\ntrigger:\n  type: webhook\n  verify:\n    preset: alipay\n    public_key: not-a-key\n";
        let file = load_source(
            "v",
            Path::new("v.yaml"),
            bad_key,
            &LoadOptions::process_env(SecretPolicy::Warn),
        );
        let wf = file.workflow.expect("loads");
        assert!(
            Verifier::build(&wf, wf.trigger.verify.as_ref().expect("verify")).is_err(),
            "a bad key is not served"
        );
    }
}
