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
                let text = String::from_utf8(secret("secret")?).map_err(|_| "`secret` is not text".to_string())?;
                let encoded = text.strip_prefix("whsec_").unwrap_or(&text);
                let key = base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .map_err(|_| "`secret` must be `whsec_` followed by base64".to_string())?;
                (Kind::StandardWebhooks { key }, tolerance_of(&s.tolerance))
            }
            VerifyDef::Github(_) => (Kind::Github { secret: secret("secret")? }, DEFAULT_TOLERANCE),
            VerifyDef::Stripe(s) => (Kind::Stripe { secret: secret("secret")? }, tolerance_of(&s.tolerance)),
            VerifyDef::Slack(s) => (Kind::Slack { secret: secret("secret")? }, tolerance_of(&s.tolerance)),
            VerifyDef::Shopify(_) => (Kind::Shopify { secret: secret("secret")? }, DEFAULT_TOLERANCE),
            VerifyDef::Feishu(_) | VerifyDef::WechatpayV3(_) | VerifyDef::Alipay(_) => {
                return Err("this verify preset is not implemented yet; the workflow is not served rather than run unverified".into())
            }
        };
        Ok(Verifier {
            kind,
            tolerance,
            templates: workflow.templates.clone(),
        })
    }

    /// Checks a request; `Err` says why it is rejected (for the log, not the caller).
    pub fn check(&self, req: &Signed<'_>) -> Result<(), String> {
        let header =
            |name: &str| (req.header)(name).ok_or_else(|| format!("missing `{name}` header"));
        match &self.kind {
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
        }
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

    #[test]
    fn unimplemented_presets_refuse_to_serve() {
        let yaml = "title: v\ntrigger:\n  type: webhook\n  verify:\n    preset: alipay\n    public_key: pem\n";
        let file = load_source(
            "v",
            Path::new("v.yaml"),
            yaml,
            &LoadOptions::process_env(SecretPolicy::Warn),
        );
        let wf = file.workflow.expect("loads");
        assert!(Verifier::build(&wf, wf.trigger.verify.as_ref().expect("verify")).is_err());
    }
}
