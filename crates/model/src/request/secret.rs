//! Which headers carry secrets (SPEC §3): their values are redacted in
//! records and never logged. Every header of every request is checked,
//! several times, so the check is a pass over the name's bytes.

/// True for headers whose values must not be stored or logged (SPEC §3):
/// `authorization`, `proxy-authorization`, `cookie`, `set-cookie`, the
/// named presets' signature headers, and every name containing `token`,
/// `secret`, `signature`, `password`, `api-key`, `apikey` or `api_key` (the
/// last beyond SPEC's list: the usual query parameter). A custom `hmac`
/// header is added per workflow ([`RunInput::secret_headers`]).
pub fn is_secret_header(name: &str) -> bool {
    // Compared in place, without a lower-cased copy: every header of every
    // request is checked, several times.
    let n = name.as_bytes();
    if COMMON_HEADERS.contains(&n) {
        return false;
    }
    let whole: &[u8] = match n.len() {
        6 => b"cookie",
        10 => b"set-cookie",
        13 => b"authorization",
        19 => b"proxy-authorization",
        21 => b"x-shopify-hmac-sha256",
        _ => b"",
    };
    (!whole.is_empty() && n.eq_ignore_ascii_case(whole)) || has_secret_word(n)
}

/// Header names most requests carry, as HTTP/1 servers hand them over
/// (lower case), none of them secret-bearing: answered by one comparison
/// each rather than a pass over the name (~250 instructions a name). A
/// unit test holds that the pass agrees.
const COMMON_HEADERS: [&[u8]; 12] = [
    b"host",
    b"content-type",
    b"content-length",
    b"user-agent",
    b"accept",
    b"accept-encoding",
    b"connection",
    b"x-request-id",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-real-ip",
    b"date",
];

/// True when the name contains `signature`, `secret`, `token`, `password`,
/// `api-key`, `apikey` or `api_key`: one pass over the name's bytes (these checks run
/// for every header of every request).
fn has_secret_word(name: &[u8]) -> bool {
    (0..name.len()).any(|i| {
        let rest = &name[i..];
        match rest.first().map(u8::to_ascii_lowercase) {
            Some(b's') => starts_with_word(rest, b"signature") || starts_with_word(rest, b"secret"),
            Some(b't') => starts_with_word(rest, b"token"),
            Some(b'p') => starts_with_word(rest, b"password"),
            Some(b'a') => {
                starts_with_word(rest, b"api-key")
                    || starts_with_word(rest, b"apikey")
                    || starts_with_word(rest, b"api_key")
            }
            _ => false,
        }
    })
}

/// Whether `text` starts with the lower-case `word`, in any case.
fn starts_with_word(text: &[u8], word: &[u8]) -> bool {
    text.get(..word.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_header_names() {
        for (name, secret) in [
            ("authorization", true),
            ("Cookie", true),
            ("stripe-signature", true),
            ("X-Api-Token", true),
            ("x-secret", true),
            ("x-shopify-hmac-sha256", true),
            ("x-slack-signature", true),
            ("proxy-authorization", true),
            ("set-cookie", true),
            ("token", true),
            ("secrets-x", true),
            ("x-tokens", true),
            ("x-api-key", true),
            ("X-ApiKey", true),
            ("apikey", true),
            ("x-password", true),
            ("x-api-keys-used", true),
            ("x-api-ke", false),
            // Beyond SPEC's list: query parameters are named so (`?api_key=`).
            ("x-api_key", true),
            ("api_key", true),
            ("x-passwd", false),
            ("x-tok", false),
            ("sig", false),
            ("x-signed-by", false),
            ("x-signatur", false),
            ("a-secre", false),
            ("host", false),
        ] {
            assert_eq!(is_secret_header(name), secret, "{name}");
        }
    }

    #[test]
    fn the_common_names_answered_at_once_are_answered_as_the_pass_would() {
        for name in COMMON_HEADERS {
            let whole = [
                &b"cookie"[..],
                b"set-cookie",
                b"authorization",
                b"proxy-authorization",
                b"x-shopify-hmac-sha256",
            ];
            let secret =
                whole.iter().any(|w| name.eq_ignore_ascii_case(w)) || has_secret_word(name);
            assert!(!secret, "{}", String::from_utf8_lossy(name));
        }
    }
}
