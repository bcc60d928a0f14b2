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
    python(script, &[secret, body])
}

/// Runs a Python script with arguments and returns its trimmed output.
pub fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
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

    // A body over 64 KiB is taken in off the HTTP workers: the same checks
    // in the same order, the same answers.
    let items = "{\"k\":1},".repeat(10_000);
    let large = format!(r#"{{"items":[{items}{{}}],"type":"charge.refunded"}}"#);
    assert!(large.len() > 64 * 1024);
    let sig = python_stripe_signature("whsec_e2e_secret", &large);
    let r = app.post(
        "stripe-events-1",
        &[json_ct, ("stripe-signature", &sig)],
        &large,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json(), json!({"received": "charge.refunded"}));
    let tampered = large.replace("refunded", "captured");
    let r = app.post(
        "stripe-events-1",
        &[json_ct, ("stripe-signature", &sig)],
        &tampered,
    );
    assert_eq!(r.status, 401, "{r:?}");
    let broken = format!("{}!", &large[..large.len() - 1]);
    let sig = python_stripe_signature("whsec_e2e_secret", &broken);
    let r = app.post(
        "stripe-events-1",
        &[json_ct, ("stripe-signature", &sig)],
        &broken,
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("line 1"), "{r:?}");
    let r = app.post(
        "stripe-events-1",
        &[("content-type", "application/octet-stream")],
        &large,
    );
    assert_eq!(r.status, 415);
}

#[test]
fn a_workflow_whose_verifier_cannot_be_set_up_is_not_served() {
    let yaml = "title: Ali\nenabled: true\ntrigger:\n  type: webhook\n  key: alipay-notify-1\n  verify: { preset: alipay, public_key: pem }\n";
    let app = TestApp::spawn(&[("ali.yaml", yaml)]);
    assert_eq!(
        app.post("alipay-notify-1", &[], "").status,
        404,
        "fail closed: never run unverified"
    );
}

fn idempotent(key: &str, mode: &str, ttl: &str, url: &str) -> String {
    let answer = if mode == "sync" {
        "  - type: response\n    body: { order: \"{{ trigger.body.id }}\", run: \"{{ execution.id }}\" }\n"
    } else {
        ""
    };
    format!(
        "title: Idem\nenabled: true\ntrigger:\n  type: webhook\n  mode: {mode}\n  key: {key}\n  idempotency: {{ key: \"{{{{ trigger.body.id }}}}\", ttl: {ttl} }}\nnodes:\n  - {{ key: call, type: request, method: GET, url: \"{url}\" }}\n{answer}"
    )
}

#[test]
fn idempotent_repeats_start_no_new_run() {
    let up = crate::upstream::Upstream::start();
    let sync = idempotent(
        "idem-sync-key1",
        "sync",
        "1h",
        &format!("{}/sleep/300", up.base),
    );
    let asyn = idempotent(
        "idem-async-key",
        "async",
        "1h",
        &format!("{}/async", up.base),
    );
    let short = idempotent(
        "idem-short-key",
        "sync",
        "1s",
        &format!("{}/short", up.base),
    );
    let mut app = TestApp::spawn(&[
        ("sync.yaml", &sync),
        ("async.yaml", &asyn),
        ("short.yaml", &short),
    ]);

    // Concurrent identical requests: one run, the same answer for all, replays marked.
    let url = app.hook("idem-sync-key1");
    let senders: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .build()
                    .new_agent();
                let mut r = agent
                    .post(&url)
                    .header("content-type", "application/json")
                    .send(r#"{"id": "A-1"}"#)
                    .expect("request");
                let replayed = r.headers().get("x-hookflow-replayed").is_some();
                let exec = r
                    .headers()
                    .get("x-hookflow-execution")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                (
                    r.status().as_u16(),
                    r.body_mut().read_to_string().unwrap_or_default(),
                    exec,
                    replayed,
                )
            })
        })
        .collect();
    let results: Vec<_> = senders
        .into_iter()
        .map(|s| s.join().expect("join"))
        .collect();
    assert_eq!(
        up.hits_on("/sleep/300").len(),
        1,
        "one run for eight identical requests"
    );
    let first_exec = results[0].2.clone();
    for (status, body, exec, _) in &results {
        assert_eq!(*status, 200);
        assert_eq!(exec, &first_exec, "replays carry the first run's id");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(body).expect("json")["run"],
            json!(first_exec)
        );
    }
    assert_eq!(results.iter().filter(|r| r.3).count(), 7, "seven replays");

    // Sequential repeat; another key runs again.
    let again = app.post_json("idem-sync-key1", &json!({"id": "A-1"}));
    assert_eq!(again.header("x-hookflow-replayed"), Some("true"));
    let other = app.post_json("idem-sync-key1", &json!({"id": "A-2"}));
    assert_eq!(other.header("x-hookflow-replayed"), None);
    assert_eq!(up.hits_on("/sleep/300").len(), 2);

    // Async: the configured answer again, no new run.
    let first = app.post_json("idem-async-key", &json!({"id": "E-1"}));
    let repeat = app.post_json("idem-async-key", &json!({"id": "E-1"}));
    assert_eq!((repeat.status, repeat.body.as_str()), (200, "ok"));
    assert_eq!(repeat.header("x-hookflow-replayed"), Some("true"));
    assert_eq!(repeat.execution(), first.execution());
    app.finished(&first.execution(), std::time::Duration::from_secs(10));
    assert_eq!(up.hits_on("/async").len(), 1);

    // Keys expire after the TTL.
    app.post_json("idem-short-key", &json!({"id": "S-1"}));
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let after = app.post_json("idem-short-key", &json!({"id": "S-1"}));
    assert_eq!(
        after.header("x-hookflow-replayed"),
        None,
        "expired keys run again"
    );
    assert_eq!(up.hits_on("/short").len(), 2);

    // Keys survive a crash once flushed (sled flushes every 500 ms).
    std::thread::sleep(std::time::Duration::from_millis(1000));
    app.kill9();
    app.start();
    let after_restart = app.post_json("idem-sync-key1", &json!({"id": "A-1"}));
    assert_eq!(after_restart.header("x-hookflow-replayed"), Some("true"));
    assert_eq!(after_restart.execution(), first_exec);
    assert_eq!(up.hits_on("/sleep/300").len(), 2);
}

const FEISHU: &str = r#"
title: Feishu approvals
enabled: true
trigger:
  type: webhook
  mode: sync
  key: feishu-events-1
  verify: { preset: feishu, token: tok-123 }
  parse:
    body: [ { key: header.event_id, alias: event_id, required: true } ]
nodes:
  - type: response
    body: { event: "{{ vars.event_id }}", status: "{{ trigger.body.event.status }}" }
"#;

#[test]
fn feishu_challenge_is_answered_without_a_run_and_events_reach_templates() {
    let app = TestApp::spawn(&[("feishu.yaml", FEISHU)]);
    let json_ct = ("content-type", "application/json");
    let r = app.post(
        "feishu-events-1",
        &[json_ct],
        r#"{"challenge":"abc","token":"tok-123","type":"url_verification"}"#,
    );
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"challenge": "abc"})),
        "{r:?}"
    );
    assert!(
        r.header("x-hookflow-execution").is_none(),
        "no run for the challenge"
    );
    assert_eq!(
        app.admin_get("/api/executions").json()["executions"],
        json!([])
    );
    let r = app.post(
        "feishu-events-1",
        &[json_ct],
        r#"{"challenge":"abc","token":"wrong","type":"url_verification"}"#,
    );
    assert_eq!(r.status, 401);
    let event = r#"{"schema":"2.0","header":{"event_id":"ev-9","token":"tok-123"},"event":{"status":"APPROVED"}}"#;
    let r = app.post("feishu-events-1", &[json_ct], event);
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"event": "ev-9", "status": "APPROVED"}))
    );
    // The token is inside the body: a body that is not JSON (the seed's
    // example has a trailing comma) is told where it breaks, not that a
    // token does not match.
    let broken = "{\n  \"header\": {\"token\": \"tok-123\",\n  }\n}";
    let r = app.post("feishu-events-1", &[json_ct], broken);
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.json()["error"], "bad_request", "{r:?}");
    assert!(r.body.contains("line 3"), "{r:?}");
}

/// An RSA-SHA256 signature (base64) by the test-only key, made by openssl.
pub fn openssl_sign(message: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let msg = dir.path().join("msg");
    std::fs::write(&msg, message).expect("write");
    let key = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crates/verify/testdata/test-only-rsa-private.pem"
    );
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign", key])
        .arg(&msg)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(out.stdout)
}

#[test]
fn wechatpay_signed_by_openssl_is_accepted_and_probes_are_rejected() {
    let public = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crates/verify/testdata/test-only-rsa-public.pem"
    ))
    .expect("key");
    let indented: String = public.lines().map(|l| format!("      {l}\n")).collect();
    let yaml = format!(
        "title: WeChat Pay\nenabled: true\ntrigger:\n  type: webhook\n  mode: sync\n  key: wechat-notify-1\n  verify:\n    preset: wechatpay_v3\n    api_v3_key: 0123456789abcdef0123456789abcdef\n    public_key: |\n{indented}nodes:\n  - type: response\n    body: {{ code: SUCCESS, id: \"{{{{ trigger.body.id }}}}\", trade: \"{{% if trigger.body.resource is defined %}}{{{{ trigger.body.resource.plaintext.out_trade_no }}}}:{{{{ trigger.body.resource.plaintext.trade_state }}}}{{% endif %}}\" }}\n"
    );
    let app = TestApp::spawn(&[("wechat.yaml", &yaml)]);
    let body = r#"{"id":"n-1","event_type":"TRANSACTION.SUCCESS"}"#;
    let encrypted = python_wechat_resource(
        "0123456789abcdef0123456789abcdef",
        r#"{"out_trade_no":"T-7","trade_state":"SUCCESS"}"#,
    );
    let ts = hookflow_model::time::now_millis() / 1000;
    let sig = openssl_sign(&format!("{ts}\nnonce-x\n{body}\n"));
    let ts = ts.to_string();
    let headers = [
        ("content-type", "application/json"),
        ("wechatpay-timestamp", ts.as_str()),
        ("wechatpay-nonce", "nonce-x"),
        ("wechatpay-signature", sig.as_str()),
        ("wechatpay-serial", "S"),
    ];
    let r = app.post("wechat-notify-1", &headers, body);
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"code": "SUCCESS", "id": "n-1", "trade": ""})),
        "{r:?}\n{}",
        app.log_text()
    );
    let probe = [
        headers[0],
        headers[1],
        headers[2],
        ("wechatpay-signature", "WECHATPAY/SIGNTEST/xyz"),
        headers[4],
    ];
    let r = app.post("wechat-notify-1", &probe, body);
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (401, json!("invalid_signature"))
    );

    // The resource, encrypted by Python's `cryptography`, reaches templates decrypted.
    let body = format!(r#"{{"id":"n-2","resource":{encrypted}}}"#);
    let ts = hookflow_model::time::now_millis() / 1000;
    let sig = openssl_sign(&format!("{ts}\nnonce-y\n{body}\n"));
    let ts = ts.to_string();
    let headers = [
        ("content-type", "application/json"),
        ("wechatpay-timestamp", ts.as_str()),
        ("wechatpay-nonce", "nonce-y"),
        ("wechatpay-signature", sig.as_str()),
    ];
    let r = app.post("wechat-notify-1", &headers, &body);
    assert_eq!(r.status, 200, "{r:?}\n{}", app.log_text());
    assert_eq!(r.json()["trade"], json!("T-7:SUCCESS"));
}

/// A WeChat Pay `resource` (AEAD_AES_256_GCM) built by Python's `cryptography`.
fn python_wechat_resource(api_v3_key: &str, plaintext: &str) -> String {
    let script = r#"
import base64, json, sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
key, plain = sys.argv[1].encode(), sys.argv[2].encode()
nonce, aad = b"abcdefghijkl", b"transaction"
ct = AESGCM(key).encrypt(nonce, plain, aad)
print(json.dumps({"algorithm": "AEAD_AES_256_GCM", "ciphertext": base64.b64encode(ct).decode(), "nonce": nonce.decode(), "associated_data": aad.decode()}))
"#;
    python(script, &[api_v3_key, plaintext])
}

/// The example workflows in `workflows/` run as shipped, given their secrets.
#[test]
fn example_payment_workflows_run() {
    let public = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crates/verify/testdata/test-only-rsa-public.pem"
    ))
    .expect("key");
    let app = TestApp::spawn_with(
        &[
            (
                "alipay-notify.yaml",
                include_str!("../workflows/alipay-notify.yaml"),
            ),
            (
                "wechatpay-notify.yaml",
                include_str!("../workflows/wechatpay-notify.yaml"),
            ),
        ],
        crate::harness::Options {
            env: vec![
                ("ALIPAY_PUBLIC_KEY".into(), public.clone()),
                ("WECHATPAY_PLATFORM_PUBLIC_KEY".into(), public),
                (
                    "WECHATPAY_API_V3_KEY".into(),
                    "0123456789abcdef0123456789abcdef".into(),
                ),
            ],
            ..Default::default()
        },
    );
    let urls = app.admin_get("/api/workflows").json();
    let key_of = |id: &str| {
        urls["workflows"]
            .as_array()
            .and_then(|l| l.iter().find(|w| w["id"] == id))
            .and_then(|w| w["url"].as_str())
            .and_then(|u| u.rsplit('/').next())
            .map(str::to_string)
            .unwrap_or_else(|| panic!("{id} is listed: {urls}"))
    };

    // Alipay: form parameters sorted and signed (RSA2) by openssl; the answer is plain `success`.
    let content = "notify_id=N1&out_trade_no=T1&total_amount=9.90&trade_status=TRADE_SUCCESS";
    let sign = openssl_sign(content);
    let form = {
        let mut f = String::from("trade_status=TRADE_SUCCESS&sign_type=RSA2&out_trade_no=T1&total_amount=9.90&notify_id=N1&sign=");
        f.push_str(
            &sign
                .replace('+', "%2B")
                .replace('/', "%2F")
                .replace('=', "%3D"),
        );
        f
    };
    let r = app.post(
        &key_of("alipay-notify"),
        &[("content-type", "application/x-www-form-urlencoded")],
        &form,
    );
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "success"),
        "{r:?}\n{}",
        app.log_text()
    );
    let r = app.post(
        &key_of("alipay-notify"),
        &[("content-type", "application/x-www-form-urlencoded")],
        &form.replace("9.90", "0.01"),
    );
    assert_eq!(r.status, 401, "a tampered amount is rejected");

    // WeChat Pay: SUCCESS answers 200, another trade state answers 500 FAIL (WeChat retries).
    for (state, status, code) in [("SUCCESS", 200, "SUCCESS"), ("NOTPAY", 500, "FAIL")] {
        let resource = python_wechat_resource(
            "0123456789abcdef0123456789abcdef",
            &format!(r#"{{"out_trade_no":"T-{state}","trade_state":"{state}"}}"#),
        );
        let body = format!(r#"{{"id":"n-{state}","resource":{resource}}}"#);
        let ts = hookflow_model::time::now_millis() / 1000;
        let sig = openssl_sign(&format!("{ts}\nn\n{body}\n"));
        let ts = ts.to_string();
        let headers = [
            ("content-type", "application/json"),
            ("wechatpay-timestamp", ts.as_str()),
            ("wechatpay-nonce", "n"),
            ("wechatpay-signature", sig.as_str()),
        ];
        let r = app.post(&key_of("wechatpay-notify"), &headers, &body);
        assert_eq!(
            (r.status, r.json()["code"].clone()),
            (status, json!(code)),
            "{r:?}"
        );
    }
}
