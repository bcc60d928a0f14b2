//! Signatures end to end, cross-checked against an independent implementation
//! (Python's `hmac` module computes the signatures the test sends).

use crate::harness::TestApp;
use serde_json::json;
use std::process::Command;

/// Stripe's scheme computed by Python: `t=<ts>,v1=hex(HMAC-SHA256(secret, "<ts>.<body>"))`.
fn python_stripe_signature(secret: &str, body: &str) -> String {
    let script = r#"
import hmac, hashlib, sys, time
secret, body = sys.argv[1], sys.argv[2]
t = str(int(time.time()))
sig = hmac.new(secret.encode(), (t + "." + body).encode(), hashlib.sha256).hexdigest()
print(f"t={t},v1={sig}")
"#;
    let out = Command::new("python3")
        .args(["-c", script, secret, body])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

const STRIPE: &str = r#"
title: Stripe events
enabled: true
secrets: [HF_STRIPE_SECRET]
trigger:
  type: webhook
  mode: sync
  key: stripe-events-1
  verify:
    preset: stripe
    secret: "{{ secrets.HF_STRIPE_SECRET }}"
  parse:
    body: [ { key: type, required: true } ]
nodes:
  - type: response
    body: { received: "{{ vars.type }}" }
"#;

#[test]
fn stripe_signatures_from_an_independent_implementation() {
    let app = TestApp::spawn_with(
        &[("stripe.yaml", STRIPE)],
        crate::harness::Options {
            env: vec![("HF_STRIPE_SECRET".into(), "whsec_e2e_secret".into())],
            ..Default::default()
        },
    );
    let body = r#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;
    let sig = python_stripe_signature("whsec_e2e_secret", body);
    let json_ct = ("content-type", "application/json");
    let r = app.post(
        "stripe-events-1",
        &[json_ct, ("stripe-signature", &sig)],
        body,
    );
    assert_eq!(r.status, 200, "{r:?}\n{}", app.log_text());
    assert_eq!(r.json(), json!({"received": "payment_intent.succeeded"}));

    // Tampered body, wrong secret, missing header: 401 invalid_signature and no run.
    let tampered = body.replace("evt_1", "evt_2");
    let wrong = python_stripe_signature("whsec_other", body);
    for (headers, b) in [
        (
            vec![json_ct, ("stripe-signature", sig.as_str())],
            tampered.as_str(),
        ),
        (vec![json_ct, ("stripe-signature", wrong.as_str())], body),
        (vec![json_ct], body),
    ] {
        let r = app.post("stripe-events-1", &headers, b);
        assert_eq!(r.status, 401, "{r:?}");
        assert_eq!(r.json()["error"], json!("invalid_signature"));
        assert!(r.header("x-hookflow-execution").is_none());
    }
    // Order of checks: content type (415) before the signature, the signature before parsing (400).
    let r = app.post(
        "stripe-events-1",
        &[("content-type", "application/octet-stream")],
        body,
    );
    assert_eq!(r.status, 415);
    let r = app.post(
        "stripe-events-1",
        &[json_ct, ("stripe-signature", "t=1,v1=00")],
        "{not json",
    );
    assert_eq!(r.status, 401);
    let broken = "{not json";
    let sig = python_stripe_signature("whsec_e2e_secret", broken);
    let r = app.post(
        "stripe-events-1",
        &[json_ct, ("stripe-signature", &sig)],
        broken,
    );
    assert_eq!(r.status, 400);
    assert!(
        !app.log_text().contains("whsec_e2e_secret"),
        "the secret never reaches the log"
    );
}

#[test]
fn a_workflow_whose_preset_is_not_available_is_not_served() {
    let yaml = "title: Ali\nenabled: true\ntrigger:\n  type: webhook\n  key: alipay-notify-1\n  verify: { preset: alipay, public_key: pem }\n";
    let app = TestApp::spawn(&[("ali.yaml", yaml)]);
    assert_eq!(
        app.post("alipay-notify-1", &[], "").status,
        404,
        "fail closed: never run unverified"
    );
}
