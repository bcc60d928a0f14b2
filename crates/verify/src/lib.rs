//! Signature verification (SPEC §4b) over the raw body, before parsing.
//!
//! A [`Verifier`] is built once when a workflow is installed (secrets
//! rendered, keys read); [`Verifier::check`] then runs per request on the
//! request as received. Every MAC comparison is the MAC crate's constant-time
//! `verify_slice`, which also checks the length. Presets that sign a timestamp
//! reject stale and future ones (`tolerance`, default 5 minutes). Headers may
//! carry several signatures (key rotation): one match is enough.
//!
//! One module per scheme family: `mac` (hmac, standard_webhooks, github,
//! stripe, slack, shopify), `feishu`, `wechatpay`, `alipay`; RSA public keys
//! are read in `pubkey`. Nothing here knows HTTP servers.

mod alipay;
mod feishu;
mod mac;
mod pubkey;
mod wechatpay;

#[cfg(test)]
mod tests;

pub use hookflow_model::request::Verified;

use hookflow_model::def::VerifyDef;
use hookflow_model::request::TriggerRequest;
use hookflow_model::runtime::{Verify, Workflow};
use hookflow_model::template::Scope;
use hookflow_model::units::Dur;
use std::time::Duration;

/// Compares what a request gave with a secret in constant time, whatever
/// their lengths: both sides are hashed (SHA-256) and the two digests
/// compared, so neither the content nor the length of the secret leaks
/// (`subtle`'s slice compare returns early when lengths differ). For the
/// admin token; secrets known when a workflow loads use [`SecretDigest`],
/// which hashes the secret once.
pub fn secret_eq(given: &[u8], expected: &[u8]) -> bool {
    SecretDigest::of(&[expected]).matches(&[given])
}

/// A secret (one or several parts, such as a Basic user name and password)
/// kept as its SHA-256 digest, computed once; a request's value is hashed
/// the same way and the digests compared in constant time. Parts are
/// length-prefixed, so `("ab", "c")` and `("a", "bc")` differ.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretDigest([u8; 32]);

impl SecretDigest {
    /// The digest of `parts`.
    pub fn of(parts: &[&[u8]]) -> SecretDigest {
        use sha2::Digest;
        let mut hash = sha2::Sha256::new();
        for part in parts {
            hash.update(u64::try_from(part.len()).unwrap_or(u64::MAX).to_be_bytes());
            hash.update(part);
        }
        SecretDigest(hash.finalize().into())
    }

    /// True when `given` is the secret (constant time in the secret).
    pub fn matches(&self, given: &[&[u8]]) -> bool {
        use subtle::ConstantTimeEq;
        bool::from(SecretDigest::of(given).0.ct_eq(&self.0))
    }
}

impl std::fmt::Debug for SecretDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretDigest(..)")
    }
}

/// Default tolerance of signed timestamps.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// A workflow's signature check cannot be set up; the workflow must not be served.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("`{field}` {problem}")]
pub struct SetupError {
    /// The `verify` field at fault (`secret`, `public_key`, …).
    pub field: String,
    /// What is wrong with it, after its name ("is missing").
    pub problem: String,
}

impl SetupError {
    pub(crate) fn new(field: &str, problem: impl Into<String>) -> SetupError {
        SetupError {
            field: field.to_string(),
            problem: problem.into(),
        }
    }
}

/// Why a request was rejected (for the log, never sent to the caller).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct Rejected(pub String);

impl From<&str> for Rejected {
    fn from(reason: &str) -> Rejected {
        Rejected(reason.to_string())
    }
}

impl From<String> for Rejected {
    fn from(reason: String) -> Rejected {
        Rejected(reason)
    }
}

/// What a request shows the verifier.
pub struct Signed<'a> {
    /// The request as received: headers by lower-case name (repeated ones
    /// joined with `, `), the query, the raw body as text. Its body need not
    /// be decoded yet.
    pub request: &'a TriggerRequest,
    /// The raw body bytes, as signed.
    pub body: &'a [u8],
    /// Now, Unix seconds.
    pub now: u64,
}

impl Signed<'_> {
    /// A header that the scheme requires.
    fn header(&self, name: &str) -> Result<String, Rejected> {
        self.request
            .header(name)
            .ok_or_else(|| Rejected(format!("missing `{name}` header")))
    }
}

/// A verifier ready for requests.
pub struct Verifier {
    scheme: Scheme,
    tolerance: Duration,
}

/// The scheme families.
enum Scheme {
    Mac(mac::MacScheme),
    Feishu(feishu::Feishu),
    Wechatpay(wechatpay::Wechatpay),
    Alipay(alipay::Alipay),
}

/// Renders a workflow's secret-bearing verify fields with only `secrets` in scope.
struct Secrets<'a> {
    workflow: &'a Workflow,
    verify: &'a Verify,
    scope: Scope,
}

impl Secrets<'_> {
    /// A required field, rendered; empty is an error.
    fn field(&self, field: &str) -> Result<Vec<u8>, SetupError> {
        let text = self
            .verify
            .texts
            .get(field)
            .ok_or_else(|| SetupError::new(field, "is missing"))?;
        let value = self
            .workflow
            .templates
            .render(text, &self.scope)
            .map_err(|e| SetupError::new(field, format!("does not render: {}", e.message)))?;
        if value.is_empty() {
            return Err(SetupError::new(field, "renders to an empty string"));
        }
        Ok(value.into_bytes())
    }

    /// An optional field, rendered when present.
    fn optional(&self, field: &str) -> Result<Option<Vec<u8>>, SetupError> {
        match self.verify.texts.get(field) {
            Some(_) => self.field(field).map(Some),
            None => Ok(None),
        }
    }
}

fn tolerance_of(t: &Option<Dur>) -> Duration {
    t.map(|d| d.0).unwrap_or(DEFAULT_TOLERANCE)
}

impl Verifier {
    /// Prepares the verifier of a workflow; an error means the workflow must not be served.
    pub fn build(workflow: &Workflow, verify: &Verify) -> Result<Verifier, SetupError> {
        let mut scope = Scope::new();
        scope.set("secrets", &workflow.secret_values());
        let secrets = Secrets {
            workflow,
            verify,
            scope,
        };
        let (scheme, tolerance) = match &verify.preset {
            VerifyDef::Hmac(h) => (
                Scheme::Mac(mac::MacScheme::generic(workflow, verify, h, &secrets)?),
                tolerance_of(&h.tolerance),
            ),
            VerifyDef::StandardWebhooks(s) => (
                Scheme::Mac(mac::MacScheme::standard_webhooks(&secrets)?),
                tolerance_of(&s.tolerance),
            ),
            VerifyDef::Github(_) => (
                Scheme::Mac(mac::MacScheme::Github {
                    secret: secrets.field("secret")?,
                }),
                DEFAULT_TOLERANCE,
            ),
            VerifyDef::Stripe(s) => (
                Scheme::Mac(mac::MacScheme::Stripe {
                    secret: secrets.field("secret")?,
                }),
                tolerance_of(&s.tolerance),
            ),
            VerifyDef::Slack(s) => (
                Scheme::Mac(mac::MacScheme::Slack {
                    secret: secrets.field("secret")?,
                }),
                tolerance_of(&s.tolerance),
            ),
            VerifyDef::Shopify(_) => (
                Scheme::Mac(mac::MacScheme::Shopify {
                    secret: secrets.field("secret")?,
                }),
                DEFAULT_TOLERANCE,
            ),
            VerifyDef::Feishu(f) => (
                Scheme::Feishu(feishu::Feishu {
                    token: SecretDigest::of(&[&secrets.field("token")?]),
                    encrypt_key: secrets.optional("encrypt_key")?,
                }),
                tolerance_of(&f.tolerance),
            ),
            VerifyDef::WechatpayV3(w) => (
                Scheme::Wechatpay(wechatpay::Wechatpay::build(&secrets)?),
                tolerance_of(&w.tolerance),
            ),
            VerifyDef::Alipay(_) => (
                Scheme::Alipay(alipay::Alipay {
                    public_key: Box::new(pubkey::read(&secrets.field("public_key")?)?),
                }),
                DEFAULT_TOLERANCE,
            ),
        };
        Ok(Verifier { scheme, tolerance })
    }

    /// Whether the check reads the body as JSON (Feishu's token is inside
    /// it; WeChat Pay's resource): a body that is not JSON is told as such
    /// (400), not as a signature that does not match.
    pub fn reads_json_body(&self) -> bool {
        matches!(self.scheme, Scheme::Feishu(_) | Scheme::Wechatpay(_))
    }

    /// Checks a request; `Err` says why it is rejected (for the log, not the caller).
    pub fn check(&self, req: &Signed<'_>) -> Result<Verified, Rejected> {
        let fresh = Freshness {
            tolerance: self.tolerance,
            now: req.now,
        };
        match &self.scheme {
            Scheme::Mac(m) => m.check(req, &fresh).map(|()| Verified::default()),
            Scheme::Feishu(f) => f.check(req, &fresh),
            Scheme::Wechatpay(w) => w.check(req, &fresh),
            Scheme::Alipay(a) => a.check(req),
        }
    }
}

/// Rejects signed timestamps outside the tolerance, in either direction.
struct Freshness {
    tolerance: Duration,
    now: u64,
}

impl Freshness {
    fn check(&self, ts: &str) -> Result<(), Rejected> {
        let ts: u64 = ts
            .trim()
            .parse()
            .map_err(|_| Rejected(format!("timestamp `{ts}` is not Unix seconds")))?;
        let skew = self.now.abs_diff(ts);
        if skew > self.tolerance.as_secs() {
            return Err(Rejected(format!(
                "timestamp is {skew} s away from now (tolerance {} s)",
                self.tolerance.as_secs()
            )));
        }
        Ok(())
    }
}
