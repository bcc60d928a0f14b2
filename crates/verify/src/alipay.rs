//! Alipay notifications: RSA2 (RSA-SHA256) over the sorted form parameters
//! without `sign`, `sign_type` and empty values.
//!
//! A parameter given twice is refused: which of the two a reader takes is
//! not what was signed. Parameters with empty values are not signed (the
//! scheme leaves them out), so they do not reach the workflow: the body it
//! sees is the signed parameters plus `sign` and `sign_type`.

use crate::{pubkey, Rejected, Signed, Verified};
use std::collections::BTreeSet;

pub(crate) struct Alipay {
    pub(crate) public_key: Box<rsa::RsaPublicKey>,
}

impl Alipay {
    pub(crate) fn check(&self, req: &Signed<'_>) -> Result<Verified, Rejected> {
        let params: Vec<(String, String)> = form_urlencoded::parse(req.body).into_owned().collect();
        let mut seen = BTreeSet::new();
        for (k, _) in &params {
            if !seen.insert(k.as_str()) {
                return Err(Rejected(format!("parameter {k:?} is given more than once")));
            }
        }
        let sign = params
            .iter()
            .find(|(k, _)| k == "sign")
            .map(|(_, v)| v.clone())
            .ok_or("missing `sign` parameter")?;
        let mut signed: Vec<&(String, String)> = params
            .iter()
            .filter(|(k, v)| k != "sign" && k != "sign_type" && !v.is_empty())
            .collect();
        signed.sort();
        let content = signed
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        if !pubkey::rsa_sha256_ok(&self.public_key, content.as_bytes(), &sign) {
            return Err("`sign` does not verify".into());
        }
        if params.iter().all(|(_, v)| !v.is_empty()) {
            return Ok(Verified::default());
        }
        // The body the workflow sees: the parameters as sent, less the unsigned empty ones.
        let mut form = form_urlencoded::Serializer::new(String::new());
        for (k, v) in params.iter().filter(|(_, v)| !v.is_empty()) {
            form.append_pair(k, v);
        }
        Ok(Verified {
            form: Some(form.finish()),
            ..Verified::default()
        })
    }
}
