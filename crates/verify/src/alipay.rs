//! Alipay notifications: RSA2 (RSA-SHA256) over the sorted form parameters
//! without `sign`, `sign_type` and empty values.
//!
//! A parameter given twice is refused: which of the two a reader takes is
//! not what was signed. Parameters with empty values are not signed (the
//! scheme leaves them out), so they do not reach the workflow: the body it
//! sees is the signed parameters plus `sign` and `sign_type`.
//!
//! The signature is over the parameters' bytes in the charset of the
//! notification (its `charset` parameter: GBK for many merchants); the
//! workflow sees them as UTF-8 text.

use crate::{pubkey, Rejected, Signed, Verified};
use std::collections::BTreeSet;

/// A form's pairs as sent: percent-decoded bytes, `+` a space.
type RawPairs = Vec<(Vec<u8>, Vec<u8>)>;

pub(crate) struct Alipay {
    pub(crate) public_key: Box<rsa::RsaPublicKey>,
}

impl Alipay {
    pub(crate) fn check(&self, req: &Signed<'_>) -> Result<Verified, Rejected> {
        let raw = raw_pairs(req.body);
        let mut seen = BTreeSet::new();
        for (k, _) in &raw {
            if !seen.insert(k.as_slice()) {
                let k = String::from_utf8_lossy(k);
                return Err(Rejected(format!("parameter {k:?} is given more than once")));
            }
        }
        let mut signed: Vec<&(Vec<u8>, Vec<u8>)> = raw
            .iter()
            .filter(|(k, v)| k != b"sign" && k != b"sign_type" && !v.is_empty())
            .collect();
        signed.sort();
        let mut content = Vec::with_capacity(req.body.len());
        for (i, (k, v)) in signed.iter().enumerate() {
            if i > 0 {
                content.push(b'&');
            }
            content.extend_from_slice(k);
            content.push(b'=');
            content.extend_from_slice(v);
        }
        let (params, converted) = as_text(&raw);
        let sign = params
            .iter()
            .find(|(k, _)| k == "sign")
            .map(|(_, v)| v.clone())
            .ok_or("missing `sign` parameter")?;
        if !pubkey::rsa_sha256_ok(&self.public_key, &content, &sign) {
            return Err("`sign` does not verify".into());
        }
        if !converted && params.iter().all(|(_, v)| !v.is_empty()) {
            return Ok(Verified::default());
        }
        // The body the workflow sees: the parameters as sent (as UTF-8
        // text), less the unsigned empty ones.
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

/// The pairs of a form body as sent, not yet read as text.
fn raw_pairs(body: &[u8]) -> RawPairs {
    let decode = |part: &[u8]| -> Vec<u8> {
        let spaced: Vec<u8> = part
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect();
        percent_encoding::percent_decode(&spaced).collect()
    };
    body.split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.iter().position(|&b| b == b'=') {
            Some(i) => (decode(&pair[..i]), decode(&pair[i + 1..])),
            None => (decode(pair), Vec::new()),
        })
        .collect()
}

/// The pairs as text in the charset the `charset` parameter names (UTF-8
/// when it names none, or one not known), and whether that was another
/// charset than UTF-8.
fn as_text(raw: &RawPairs) -> (Vec<(String, String)>, bool) {
    let encoding = raw
        .iter()
        .find(|(k, _)| k == b"charset")
        .and_then(|(_, v)| encoding_rs::Encoding::for_label(v))
        .filter(|e| *e != encoding_rs::UTF_8);
    let text = |bytes: &[u8]| match encoding {
        Some(e) => e.decode_without_bom_handling(bytes).0.into_owned(),
        None => String::from_utf8_lossy(bytes).into_owned(),
    };
    let pairs = raw.iter().map(|(k, v)| (text(k), text(v))).collect();
    (pairs, encoding.is_some())
}
