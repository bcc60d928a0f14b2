//! Feishu / Lark events: the verification token, `{"encrypt": …}` bodies
//! (AES-256-CBC with the SHA-256 of the encrypt key), `X-Lark-Signature` when
//! an encrypt key is set, and the `url_verification` challenge.
//!
//! The event the workflow sees (and records keep) has its verification
//! token (`token`, or `header.token` in schema 2.0) replaced by
//! `[redacted]`: the token has been checked, and it is a secret.

use crate::{secret_eq, Freshness, Rejected, SecretDigest, Signed, Verified};
use base64::Engine;
use hookflow_model::request::REDACTED;
use serde_json::Value as Json;

pub(crate) struct Feishu {
    /// The verification token, as its digest.
    pub(crate) token: SecretDigest,
    pub(crate) encrypt_key: Option<Vec<u8>>,
}

impl Feishu {
    pub(crate) fn check(&self, req: &Signed<'_>, fresh: &Freshness) -> Result<Verified, Rejected> {
        let outer: Json = serde_json::from_slice(req.body).map_err(|_| "the body is not JSON")?;
        let encrypted = outer.get("encrypt").and_then(Json::as_str);
        let event = match (encrypted, &self.encrypt_key) {
            (Some(text), Some(key)) => decrypt(text, key)?,
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
        if !self.token.matches(&[given.as_bytes()]) {
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
        if let Some(key) = &self.encrypt_key {
            use sha2::Digest;
            let ts = req.header("x-lark-request-timestamp")?;
            let nonce = req.header("x-lark-request-nonce")?;
            let signature = req.header("x-lark-signature")?;
            fresh.check(&ts)?;
            let mut hasher = sha2::Sha256::new();
            hasher.update(ts.as_bytes());
            hasher.update(nonce.as_bytes());
            hasher.update(key);
            hasher.update(req.body);
            let expected = hex::encode(hasher.finalize());
            if !secret_eq(
                signature.trim().to_ascii_lowercase().as_bytes(),
                expected.as_bytes(),
            ) {
                return Err("`X-Lark-Signature` does not match".into());
            }
        }
        let mut event = event;
        redact_token(&mut event);
        Ok(Verified {
            body: Some(event),
            ..Verified::default()
        })
    }
}

/// Replaces the verification token of an event (`token`, `header.token`).
fn redact_token(event: &mut Json) {
    for pointer in ["/token", "/header/token"] {
        if let Some(token @ Json::String(_)) = event.pointer_mut(pointer) {
            *token = Json::String(REDACTED.to_string());
        }
    }
}

/// AES-256-CBC, key = SHA-256 of the encrypt key, IV = the first 16 bytes.
fn decrypt(text: &str, encrypt_key: &[u8]) -> Result<Json, Rejected> {
    use aes::cipher::{BlockDecryptMut, KeyIvInit};
    use sha2::Digest;
    let data = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| "`encrypt` is not base64")?;
    if data.len() < 32 {
        return Err("`encrypt` is too short".into());
    }
    let key = sha2::Sha256::digest(encrypt_key);
    let (iv, ciphertext) = data.split_at(16);
    let plain = cbc::Decryptor::<aes::Aes256>::new_from_slices(&key, iv)
        .map_err(|_| "bad key or IV")?
        .decrypt_padded_vec_mut::<aes::cipher::block_padding::Pkcs7>(ciphertext)
        .map_err(|_| "`encrypt` does not decrypt with this encrypt key")?;
    serde_json::from_slice(&plain).map_err(|_| "the decrypted event is not JSON".into())
}
