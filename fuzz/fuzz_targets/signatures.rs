//! Each signature scheme's reading of headers and body. The input is split
//! at newlines: the first line picks the scheme, the next lines are the
//! values of the headers the schemes read, the rest is the body. Refusals
//! are fine; panics are not (and a random input never passes).
#![no_main]

use hookflow_model::request::TriggerRequest;
use hookflow_model::{load_source, LoadOptions, SecretPolicy};
use hookflow_verify::{Signed, Verifier};
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::OnceLock;

const PUBLIC: &str = include_str!("../../crates/verify/testdata/test-only-rsa-public.pem");

/// The header names any scheme reads.
const HEADERS: [&str; 14] = [
    "x-sig",
    "x-ts",
    "x-hub-signature-256",
    "stripe-signature",
    "x-slack-signature",
    "x-slack-request-timestamp",
    "x-shopify-hmac-sha256",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "wechatpay-signature",
    "wechatpay-timestamp",
    "wechatpay-nonce",
    "wechatpay-serial",
];

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("      {l}\n")).collect()
}

fn verifiers() -> &'static Vec<Verifier> {
    static ALL: OnceLock<Vec<Verifier>> = OnceLock::new();
    ALL.get_or_init(|| {
        let blocks = [
            "    preset: hmac\n    secret: k\n    header: X-Sig\n    timestamp_header: X-Ts\n    payload: \"{{ trigger.headers['x-ts'] }}.{{ trigger.raw_body }}\"\n".to_string(),
            "    preset: hmac\n    secret: k\n    header: X-Sig\n    encoding: base64\n    algorithm: sha1\n".to_string(),
            "    preset: github\n    secret: s\n".to_string(),
            "    preset: stripe\n    secret: whsec_test\n".to_string(),
            "    preset: slack\n    secret: s\n".to_string(),
            "    preset: shopify\n    secret: s\n".to_string(),
            "    preset: standard_webhooks\n    secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n".to_string(),
            "    preset: feishu\n    token: tok\n    encrypt_key: ekey\n".to_string(),
            format!(
                "    preset: wechatpay_v3\n    public_key_id: SERIAL1\n    api_v3_key: 0123456789abcdef0123456789abcdef\n    public_key: |\n{}",
                indent(PUBLIC)
            ),
            format!("    preset: alipay\n    public_key: |\n{}", indent(PUBLIC)),
        ];
        blocks
            .iter()
            .map(|block| {
                let yaml = format!("title: v\ntrigger:\n  type: webhook\n  verify:\n{block}nodes:\n  - {{ key: one, type: log, message: x }}\n");
                let env = |_: &str| None;
                let options = LoadOptions { secrets: SecretPolicy::Warn, env: &env };
                let file = load_source("v", Path::new("v.yaml"), &yaml, &options);
                let Some(wf) = file.workflow else {
                    panic!("{yaml}: {:?}", file.diagnostics);
                };
                let Some(verify) = wf.trigger.verify.as_ref() else {
                    panic!("no verify block in {yaml}");
                };
                match Verifier::build(&wf, verify) {
                    Ok(v) => v,
                    Err(e) => panic!("{yaml}: {e}"),
                }
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(HEADERS.len() + 2, '\n');
    let pick = parts.next().map_or(0, |p| p.len());
    let all = verifiers();
    let verifier = &all[pick % all.len()];
    let headers: Vec<(String, String)> = HEADERS
        .iter()
        .zip(parts.by_ref())
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    let body = parts.next().unwrap_or_default();
    let request = TriggerRequest {
        method: "POST".into(),
        path: "/api/webhook:trigger/fuzz".into(),
        headers,
        query: serde_json::Value::Null,
        body: serde_json::Value::Null,
        raw_body: body.to_string(),
        ..Default::default()
    };
    let signed = Signed {
        request: &request,
        body: body.as_bytes(),
        now: 1_795_000_000,
    };
    let _ = verifier.check(&signed);
});
