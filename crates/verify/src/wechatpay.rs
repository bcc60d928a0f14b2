//! WeChat Pay API v3 notifications: RSA-SHA256 over
//! `timestamp\nnonce\nbody\n` with the platform public key, signature probes
//! rejected, then the AES-256-GCM `resource` decrypted with the APIv3 key.

use crate::{pubkey, Freshness, Rejected, Secrets, SetupError, Signed, Verified};
use base64::Engine;
use serde_json::Value as Json;

pub(crate) struct Wechatpay {
    public_key: Box<rsa::RsaPublicKey>,
    serial: Option<String>,
    api_v3_key: Vec<u8>,
}

impl Wechatpay {
    pub(crate) fn build(secrets: &Secrets<'_>) -> Result<Wechatpay, SetupError> {
        let api_v3_key = secrets.field("api_v3_key")?;
        if api_v3_key.len() != 32 {
            return Err(SetupError::new("api_v3_key", "must be 32 bytes"));
        }
        Ok(Wechatpay {
            public_key: Box::new(pubkey::read(&secrets.field("public_key")?)?),
            // A template like the key it names (`{{ secrets.WECHATPAY_KEY_ID }}`).
            serial: match secrets.optional("public_key_id")? {
                Some(id) => Some(
                    String::from_utf8(id)
                        .map_err(|_| SetupError::new("public_key_id", "is not UTF-8 text"))?,
                ),
                None => None,
            },
            api_v3_key,
        })
    }

    pub(crate) fn check(&self, req: &Signed<'_>, fresh: &Freshness) -> Result<Verified, Rejected> {
        let signature = req.header("wechatpay-signature")?;
        if signature.starts_with("WECHATPAY/SIGNTEST/") {
            return Err("a signature probe".into());
        }
        if let Some(expected) = &self.serial {
            if req.header("wechatpay-serial")?.trim() != expected {
                return Err("`Wechatpay-Serial` names another key".into());
            }
        }
        let ts = req.header("wechatpay-timestamp")?;
        let nonce = req.header("wechatpay-nonce")?;
        fresh.check(&ts)?;
        let mut message = Vec::with_capacity(ts.len() + nonce.len() + req.body.len() + 3);
        message.extend_from_slice(ts.as_bytes());
        message.push(b'\n');
        message.extend_from_slice(nonce.as_bytes());
        message.push(b'\n');
        message.extend_from_slice(req.body);
        message.push(b'\n');
        if !pubkey::rsa_sha256_ok(&self.public_key, &message, &signature) {
            return Err("`Wechatpay-Signature` does not verify".into());
        }
        let body: Json = serde_json::from_slice(req.body).map_err(|_| "the body is not JSON")?;
        let Some(resource) = body.get("resource") else {
            return Ok(Verified::default());
        };
        let field = |name: &str| {
            resource
                .get(name)
                .and_then(Json::as_str)
                .unwrap_or_default()
        };
        let plaintext = decrypt(
            &self.api_v3_key,
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
}

/// AEAD_AES_256_GCM with the APIv3 key.
fn decrypt(key: &[u8], nonce: &str, aad: &str, ciphertext: &str) -> Result<Vec<u8>, Rejected> {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    let cipher =
        aes_gcm::Aes256Gcm::new_from_slice(key).map_err(|_| "`api_v3_key` must be 32 bytes")?;
    if nonce.len() != 12 {
        return Err("the resource nonce must be 12 bytes".into());
    }
    let data = base64::engine::general_purpose::STANDARD
        .decode(ciphertext.trim())
        .map_err(|_| "the resource ciphertext is not base64")?;
    cipher
        .decrypt(
            aes_gcm::Nonce::from_slice(nonce.as_bytes()),
            Payload {
                msg: &data,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| "the resource does not decrypt with the APIv3 key".into())
}
