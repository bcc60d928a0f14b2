//! The presets against published test vectors and independently made
//! signatures: one helper builds a verifier from YAML, one checks a request.

use crate::*;
use base64::Engine;
use hmac::{Hmac, Mac};
use hookflow_model::load::{load_source, LoadOptions, SecretPolicy};
use hookflow_model::request::TriggerRequest;
use std::path::Path;

const NOW: u64 = 1_800_000_000;

/// A verifier built from YAML, or why it is not.
fn build(verify_yaml: &str) -> Result<Verifier, SetupError> {
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
    Verifier::build(&wf, verify)
}

fn verifier(verify_yaml: &str) -> Verifier {
    build(verify_yaml).expect("builds")
}

/// One helper per boundary: headers and body in, accepted or the reason out.
fn check(v: &Verifier, headers: &[(&str, &str)], body: &str) -> Result<(), String> {
    check_full(v, headers, body).map(|_| ())
}

fn check_full(v: &Verifier, headers: &[(&str, &str)], body: &str) -> Result<Verified, String> {
    let request = TriggerRequest {
        method: "POST".into(),
        path: "/api/webhook:trigger/k".into(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect(),
        raw_body: body.to_string(),
        ..TriggerRequest::default()
    };
    v.check(&Signed {
        request: &request,
        body: body.as_bytes(),
        now: NOW,
    })
    .map_err(|r| r.0)
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
    // Svix's own header names (Clerk, Resend), the same signature.
    let svix = [
        ("svix-id", "msg_1"),
        ("svix-timestamp", ts.as_str()),
        ("svix-signature", both.as_str()),
    ];
    assert_eq!(check(&v, &svix, body), Ok(()));
    let svix_other_id = [("svix-id", "msg_2"), svix[1], svix[2]];
    assert!(check(&v, &svix_other_id, body).is_err(), "the id is signed");
    // One family per request: a `webhook-signature` is checked with the
    // `webhook-*` id and timestamp, never with `svix-*` ones.
    let mixed = [svix[0], svix[1], ok[2]];
    assert!(check(&v, &mixed, body).is_err());
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
    // A prefix holding a separator: `HMAC-SHA256 <base64>` in an
    // Authorization header, `v1,<base64>` lists.
    let b64 = &sig["sha512=".len()..];
    let spaced = verifier("    preset: hmac\n    secret: k\n    header: Authorization\n    algorithm: sha512\n    encoding: base64\n    prefix: \"HMAC-SHA256 \"\n");
    let value = format!("HMAC-SHA256 {b64}");
    assert_eq!(check(&spaced, &[("Authorization", &value)], body), Ok(()));
    let bare = [("Authorization", b64)];
    assert!(
        check(&spaced, &bare, body).is_err(),
        "the prefix is required"
    );
    let listed = verifier("    preset: hmac\n    secret: k\n    header: X-Sig\n    algorithm: sha512\n    encoding: base64\n    prefix: \"v1,\"\n");
    let value = format!("v1,AAAA v1,{b64}");
    assert_eq!(check(&listed, &[("X-Sig", &value)], body), Ok(()));
    let value = format!("v2,{b64}");
    assert!(check(&listed, &[("X-Sig", &value)], body).is_err());
    // The prefix is looked for where a signature starts, not inside one.
    let inside = format!("x{sig}");
    assert!(check(&v, &[("X-Sig", &inside)], body).is_err());
    // A templated payload and a timestamp header.
    let v = verifier("    preset: hmac\n    secret: k\n    header: X-Sig\n    payload: \"{{ trigger.headers['x-ts'] }}.{{ trigger.raw_body }}\"\n    timestamp_header: X-Ts\n");
    // The template sees the request itself: the signed payload is `<X-Ts>.<body>`.
    let ts = NOW.to_string();
    let sig = hmac_hex(b"k", &[ts.as_bytes(), b".", body.as_bytes()]);
    assert_eq!(check(&v, &[("X-Sig", &sig), ("X-Ts", &ts)], body), Ok(()));
    let other_ts = (NOW + 1).to_string();
    assert!(
        check(&v, &[("X-Sig", &sig), ("X-Ts", &other_ts)], body).is_err(),
        "the timestamp is part of the signed payload"
    );
    let stale = (NOW - 600).to_string();
    let stale_sig = hmac_hex(b"k", &[stale.as_bytes(), b".", body.as_bytes()]);
    assert!(
        check(&v, &[("X-Sig", &stale_sig), ("X-Ts", &stale)], body).is_err(),
        "stale, though correctly signed"
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
    assert!(!v
        .body
        .as_ref()
        .expect("body")
        .to_string()
        .contains("\"tok\""));
    let v1 = r#"{"uuid":"u1","token":"tok","type":"event_callback","event":{}}"#;
    let v = check_full(&plain, &[], v1).expect("schema 1.0 token matches");
    assert_eq!(
        v.body.as_ref().and_then(|b| b.get("token")).cloned(),
        Some(serde_json::json!("[redacted]"))
    );
    assert!(
        check(&plain, &[], &event.replace("\"tok\"", "\"tokx\"")).is_err(),
        "a longer token"
    );
    assert!(
        check(&plain, &[], &event.replace("\"tok\"", "\"to\"")).is_err(),
        "a prefix of the token"
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
    // The decrypted token is checked, then neither seen nor stored.
    assert_eq!(
        v.body
            .as_ref()
            .and_then(|b| b.pointer("/header/token"))
            .cloned(),
        Some(serde_json::json!("[redacted]"))
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
    let patient =
        verifier("    preset: feishu\n    token: tok\n    encrypt_key: ekey\n    tolerance: 1h\n");
    assert_eq!(
        check(&patient, &stale, &body),
        Ok(()),
        "within its tolerance"
    );
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
        // The key id is a template, as the keys are.
        "    preset: wechatpay_v3\n    public_key_id: \"{{{{ 'SERIAL' ~ 1 }}}}\"\n    api_v3_key: {}\n    public_key: |\n{}",
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
    // The empty value is not signed: the workflow does not see it.
    let verified = check_full(&v, &[], &body).expect("verifies");
    let form_seen = verified.form.expect("a form without the empty value");
    assert!(!form_seen.contains("memo"), "{form_seen}");
    assert!(form_seen.contains("total_amount=9.90"), "{form_seen}");
    // A parameter given twice is refused, whichever copy was signed.
    for extra in [
        "&total_amount=0.01",
        "&total_amount=9.90",
        "&memo=x",
        "&sign=x",
    ] {
        let twice = format!("{body}{extra}");
        assert!(
            check(&v, &[], &twice)
                .unwrap_err()
                .contains("more than once"),
            "{extra}"
        );
    }
    // Without empty values the body stays as sent.
    let full = body.replace("&memo=", "");
    assert_eq!(check_full(&v, &[], &full).expect("verifies").form, None);
    assert!(
        check(&v, &[], &body.replace("9.90", "0.01")).is_err(),
        "tampered amount"
    );
    assert!(
        check(&v, &[], &body.replace("&sign=", "&signx=")).is_err(),
        "missing sign"
    );
    // A GBK notification (`charset=gbk`): signed over the GBK bytes of
    // 测试 (B2E2 CAD4), seen by the workflow as UTF-8 text.
    let mut content = b"body=\xB2\xE2\xCA\xD4".to_vec();
    content.extend_from_slice(b"&charset=gbk&out_trade_no=T1&total_amount=9.90");
    let sign = rsa_sign(&content);
    let mut gbk = String::from("body=%B2%E2%CA%D4&charset=gbk&out_trade_no=T1&total_amount=9.90&");
    gbk.push_str(
        &form_urlencoded::Serializer::new(String::new())
            .append_pair("sign", &sign)
            .append_pair("sign_type", "RSA2")
            .finish(),
    );
    let verified = check_full(&v, &[], &gbk).expect("a GBK notification verifies");
    let seen = verified.form.expect("the form as UTF-8 text");
    let pairs: Vec<(String, String)> = form_urlencoded::parse(seen.as_bytes())
        .into_owned()
        .collect();
    assert!(pairs.contains(&("body".into(), "测试".into())), "{pairs:?}");
    assert!(
        check(&v, &[], &gbk.replace("%CA%D4", "%CA%D5")).is_err(),
        "tampered GBK bytes"
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

/// A header sent twice reaches the verifier as one value joined with `, `
/// (RFC 9110 §5.3), as `trigger.headers` shows it: a signature on either
/// line verifies.
#[test]
fn repeated_signature_headers_are_read_as_one() {
    let body = r#"{"id":1}"#;
    let old = "0".repeat(64);
    let github = verifier("    preset: github\n    secret: gh\n");
    let sig = format!("sha256={}", hmac_hex(b"gh", &[body.as_bytes()]));
    let stale = format!("sha256={old}");
    for lines in [
        [stale.as_str(), sig.as_str()],
        [sig.as_str(), stale.as_str()],
    ] {
        let headers = [
            ("X-Hub-Signature-256", lines[0]),
            ("X-Hub-Signature-256", lines[1]),
        ];
        assert_eq!(check(&github, &headers, body), Ok(()), "github {lines:?}");
    }
    let both_wrong = [
        ("X-Hub-Signature-256", stale.as_str()),
        ("X-Hub-Signature-256", stale.as_str()),
    ];
    assert!(check(&github, &both_wrong, body).is_err());

    let key = b"0123456789abcdef0123456789abcdef";
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    );
    let standard = verifier(&format!(
        "    preset: standard_webhooks\n    secret: {secret}\n"
    ));
    let ts = NOW.to_string();
    let good = format!(
        "v1,{}",
        hmac_b64(key, &[b"msg_1", b".", ts.as_bytes(), b".", body.as_bytes()])
    );
    let other = format!("v1,{}", hmac_b64(b"old key", &[b"x"]));
    for lines in [
        [other.as_str(), good.as_str()],
        [good.as_str(), other.as_str()],
    ] {
        let headers = [
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", ts.as_str()),
            ("webhook-signature", lines[0]),
            ("webhook-signature", lines[1]),
        ];
        assert_eq!(
            check(&standard, &headers, body),
            Ok(()),
            "standard {lines:?}"
        );
    }
    let both_other = [
        ("webhook-id", "msg_1"),
        ("webhook-timestamp", ts.as_str()),
        ("webhook-signature", other.as_str()),
        ("webhook-signature", other.as_str()),
    ];
    assert!(check(&standard, &both_other, body).is_err());

    let shopify = verifier("    preset: shopify\n    secret: shp\n");
    let sig = hmac_b64(b"shp", &[body.as_bytes()]);
    let old = hmac_b64(b"old", &[body.as_bytes()]);
    let headers = [
        ("X-Shopify-Hmac-Sha256", old.as_str()),
        ("X-Shopify-Hmac-Sha256", sig.as_str()),
    ];
    assert_eq!(check(&shopify, &headers, body), Ok(()), "shopify");

    let generic = verifier("    preset: hmac\n    secret: k\n    header: X-Sig\n");
    let sig = hmac_hex(b"k", &[body.as_bytes()]);
    let headers = [("X-Sig", "00"), ("X-Sig", sig.as_str())];
    assert_eq!(check(&generic, &headers, body), Ok(()), "hmac");
}

#[test]
fn secrets_compare_equal_only_when_equal() {
    assert!(secret_eq(b"s3cret", b"s3cret"));
    for other in [&b""[..], b"s3cre", b"s3cret!", b"S3cret", b"x"] {
        assert!(!secret_eq(other, b"s3cret"), "{other:?}");
    }
    assert!(secret_eq(b"", b""));
    // Parts are length-prefixed: a Basic pair never matches a different split.
    let pair = crate::SecretDigest::of(&[b"shop", b"pa:ss"]);
    assert!(pair.matches(&[b"shop", b"pa:ss"]));
    for (user, pass) in [
        (&b"shopp"[..], &b"a:ss"[..]),
        (b"sho", b"ppa:ss"),
        (b"shop", b"pa:s"),
        (b"", b""),
        (b"shop", b""),
    ] {
        assert!(!pair.matches(&[user, pass]), "{user:?} {pass:?}");
    }
    assert!(!pair.matches(&[b"shoppa:ss"]));
}

/// Builds a verifier that must fail, for the reason it gives.
fn refused_setup(verify_yaml: &str) -> String {
    match build(verify_yaml) {
        Ok(_) => panic!("built a verifier for {verify_yaml}"),
        Err(e) => e.to_string(),
    }
}

/// `whsec_` with nothing after it (an empty variable) is an empty HMAC key,
/// which anyone can sign with: the workflow is not served. Before, it
/// verified a signature made with the empty key.
#[test]
fn standard_webhooks_refuses_an_empty_key() {
    let why = refused_setup("    preset: standard_webhooks\n    secret: whsec_\n");
    assert!(why.contains("empty key"), "{why}");
}

/// A header of thousands of signatures costs one MAC, not thousands: more
/// than 16 are refused unread, and a valid one among 16 still verifies.
/// Before, the HMAC over the whole body was computed once per candidate
/// (6.7 s for one 1 MiB request with 7,800 candidates).
#[test]
fn many_signatures_are_refused_and_a_few_compared() {
    let v = verifier("    preset: github\n    secret: s\n");
    let body = "x".repeat(1024);
    let good = format!("sha256={}", hmac_hex(b"s", &[body.as_bytes()]));
    let mut fifteen = vec!["sha256=00".to_string(); 15];
    fifteen.push(good.clone());
    assert_eq!(
        check(&v, &[("X-Hub-Signature-256", &fifteen.join(","))], &body),
        Ok(())
    );
    let mut many = vec!["sha256=00".to_string(); 5_000];
    many.push(good);
    let why = check(&v, &[("X-Hub-Signature-256", &many.join(","))], &body).expect_err("refused");
    assert!(why.contains("more than 16"), "{why}");
}

/// A templated payload signs the body's bytes, also when they are not
/// UTF-8 text (a Latin-1 or GBK form): before, it signed the lossy text,
/// so the real signature failed and one signature verified every body
/// that differed only in invalid bytes.
#[test]
fn a_templated_payload_signs_the_body_s_bytes() {
    let v = verifier("    preset: hmac\n    secret: k\n    header: X-Sig\n    payload: \"{{ trigger.headers['x-ts'] }}.{{ trigger.raw_body }}|{{ trigger.raw_body }}\"\n    timestamp_header: X-Ts\n");
    let ts = NOW.to_string();
    let check_bytes = |v: &Verifier, sig: &str, body: &[u8]| {
        let request = TriggerRequest {
            method: "POST".into(),
            path: "/api/webhook:trigger/k".into(),
            headers: vec![("x-sig", sig.to_string()), ("x-ts", ts.clone())].into(),
            raw_body: String::from_utf8_lossy(body).into_owned(),
            ..TriggerRequest::default()
        };
        v.check(&Signed {
            request: &request,
            body,
            now: NOW,
        })
        .map(|_| ())
        .map_err(|r| r.0)
    };
    let latin1: &[u8] = b"caf\xe9";
    let sig = hmac_hex(b"k", &[ts.as_bytes(), b".", latin1, b"|", latin1]);
    assert_eq!(check_bytes(&v, &sig, latin1), Ok(()));
    assert!(
        check_bytes(&v, &sig, b"caf\xe8").is_err(),
        "another invalid byte is another body"
    );
    let lossy = String::from_utf8_lossy(latin1).into_owned();
    let lossy_sig = hmac_hex(
        b"k",
        &[
            ts.as_bytes(),
            b".",
            lossy.as_bytes(),
            b"|",
            lossy.as_bytes(),
        ],
    );
    assert!(
        check_bytes(&v, &lossy_sig, latin1).is_err(),
        "the lossy text is not what is signed"
    );
    // UTF-8 bodies sign as before.
    let text = "café".as_bytes();
    let sig = hmac_hex(b"k", &[ts.as_bytes(), b".", text, b"|", text]);
    assert_eq!(check_bytes(&v, &sig, text), Ok(()));
    // A payload that changes the body's text cannot sign its bytes.
    let upper = verifier("    preset: hmac\n    secret: k\n    header: X-Sig\n    payload: \"{{ trigger.raw_body | upper }}\"\n");
    let why = check_bytes(&upper, &sig, latin1).expect_err("refused");
    assert!(why.contains("not UTF-8"), "{why}");
}
