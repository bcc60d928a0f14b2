//! Alipay notifications: RSA2 (RSA-SHA256) over the sorted form parameters
//! without `sign`, `sign_type` and empty values.

use crate::{pubkey, Rejected, Signed, Verified};

pub(crate) struct Alipay {
    pub(crate) public_key: Box<rsa::RsaPublicKey>,
}

impl Alipay {
    pub(crate) fn check(&self, req: &Signed<'_>) -> Result<Verified, Rejected> {
        let mut params: Vec<(String, String)> =
            form_urlencoded::parse(req.body).into_owned().collect();
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
        if pubkey::rsa_sha256_ok(&self.public_key, content.as_bytes(), &sign) {
            Ok(Verified::default())
        } else {
            Err("`sign` does not verify".into())
        }
    }
}
