//! RSA public keys and RSA-SHA256 (PKCS#1 v1.5) signatures, shared by the
//! WeChat Pay and Alipay presets.

use crate::SetupError;
use base64::Engine;

/// Reads an RSA public key: PEM (SPKI or PKCS#1) or the bare base64 of SPKI.
pub(crate) fn read(text: &[u8]) -> Result<rsa::RsaPublicKey, SetupError> {
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
        .map_err(|e| SetupError::new("public_key", format!("is not an RSA public key: {e}")))
}

/// RSA PKCS#1 v1.5 with SHA-256 (WeChat Pay, Alipay RSA2) over `message`.
pub(crate) fn rsa_sha256_ok(key: &rsa::RsaPublicKey, message: &[u8], signature_b64: &str) -> bool {
    use sha2::Digest;
    let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(signature_b64.trim()) else {
        return false;
    };
    let digest = sha2::Sha256::digest(message);
    key.verify(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &digest, &sig)
        .is_ok()
}
