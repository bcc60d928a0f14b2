//! Secrets stay secret (SPEC §3): secret values, URL user info and
//! secret-bearing headers leave the process only as `[redacted]` — in the
//! log, the admin API and the data folder — while the workflow and its
//! upstreams get the real values. Plus the checks that keep doors shut: empty
//! Basic passwords and admin tokens, Alipay's duplicates, replayable hmac
//! timestamps, and log lines an attacker cannot forge.

use crate::harness::{closed_port, eventually, Options, TestApp};
use crate::trust::{openssl_sign, python};
use crate::upstream::Upstream;
use serde_json::{json, Value as Json};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The secret of the forwarding tests: in a URL's query, a header and a body.
const SECRET: &str = "SUPERSECRET123-e2e";

/// A sync workflow that sends the secret to an upstream that echoes it, then
/// fails on a second upstream call (errors carry URLs).
const FORWARD_SYNC: &str = r#"
title: Forwards a secret (sync)
enabled: true
secrets: [HF_E2E_API_TOKEN]
trigger: { type: webhook, mode: sync, key: secret-sync-01 }
nodes:
  - key: send
    type: request
    url: "{UP}/echo?access_token={{ secrets.HF_E2E_API_TOKEN }}"
    headers: { X-Api-Key: "{{ secrets.HF_E2E_API_TOKEN }}" }
    body: { token: "{{ secrets.HF_E2E_API_TOKEN }}" }
  - key: fails
    type: request
    url: "{UP}/status/500?access_token={{ secrets.HF_E2E_API_TOKEN }}"
    headers: { X-Api-Key: "{{ secrets.HF_E2E_API_TOKEN }}" }
    body: { token: "{{ secrets.HF_E2E_API_TOKEN }}" }
    retry: { attempts: 2, backoff: 10ms }
  - type: response
    body: { unreachable: true }
"#;

/// The same as an async workflow (its position is saved between nodes).
const FORWARD_ASYNC: &str = r#"
title: Forwards a secret (async)
enabled: true
secrets: [HF_E2E_API_TOKEN]
trigger: { type: webhook, mode: async, key: secret-async-01 }
nodes:
  - key: send
    type: request
    url: "{UP}/status/200?access_token={{ secrets.HF_E2E_API_TOKEN }}"
    headers: { X-Api-Key: "{{ secrets.HF_E2E_API_TOKEN }}" }
    body: { token: "{{ secrets.HF_E2E_API_TOKEN }}" }
  - key: fails
    type: request
    url: "{UP}/status/500?access_token={{ secrets.HF_E2E_API_TOKEN }}"
    headers: { X-Api-Key: "{{ secrets.HF_E2E_API_TOKEN }}" }
    body: { token: "{{ secrets.HF_E2E_API_TOKEN }}" }
"#;

/// Stops the server with SIGTERM and waits (bounded) for it to exit.
fn stop(app: &mut TestApp) {
    let mut child = app.sigterm();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait().expect("wait").is_some() {
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server did not stop; log:\n{}", app.log_text());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read file");
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(path.display().to_string());
                }
            }
        }
    }
    found
}

#[test]
fn a_secret_reaches_the_upstream_and_nowhere_else() {
    let up = Upstream::start();
    let mut app = TestApp::spawn_with(
        &[
            ("forward-sync.yaml", &FORWARD_SYNC.replace("{UP}", &up.base)),
            (
                "forward-async.yaml",
                &FORWARD_ASYNC.replace("{UP}", &up.base),
            ),
        ],
        Options {
            env: vec![("HF_E2E_API_TOKEN".into(), SECRET.into())],
            ..Default::default()
        },
    );
    let sync = app.post_json("secret-sync-01", &json!({"order": 1}));
    assert_eq!(sync.status, 500, "{sync:?}\n{}", app.log_text());
    let sync_id = sync.execution();
    let accepted = app.post_json("secret-async-01", &json!({"order": 2}));
    assert_eq!(accepted.status, 200, "{accepted:?}");
    let async_id = accepted.execution();

    // The upstream got the real value, in the query, a header and the body.
    let echo = up.hits_on("/echo");
    assert_eq!(echo.len(), 1, "{echo:?}");
    assert_eq!(echo[0].query, format!("access_token={SECRET}"));
    assert_eq!(
        echo[0].headers.get("x-api-key").map(String::as_str),
        Some(SECRET)
    );
    assert!(echo[0].body.contains(SECRET), "{}", echo[0].body);
    // Two tries of the sync run's failing node, one of the async run's.
    let failing = eventually(
        Duration::from_secs(20),
        "three calls to /status/500",
        || {
            let hits = up.hits_on("/status/500");
            (hits.len() == 3).then_some(hits)
        },
    );
    assert!(failing.iter().all(|h| h.query.contains(SECRET)));
    assert_eq!(
        up.hits_on("/status/200")[0].query,
        format!("access_token={SECRET}")
    );

    // The records say what failed, without the secret.
    let mut api = Vec::new();
    for id in [&sync_id, &async_id] {
        let record = app.finished(id, Duration::from_secs(20));
        assert_eq!(record["status"], json!("failed"), "{record}");
        let failed = &record["jobs"][1];
        assert_eq!(failed["key"], json!("fails"), "{record}");
        assert!(
            failed["error"].as_str().is_some_and(|e| e.contains("500")),
            "{record}"
        );
        api.push(record.to_string());
    }
    let sync_record: Json = serde_json::from_str(&api[0]).expect("json");
    assert_eq!(
        sync_record["jobs"][0]["result"]["body"]["headers"]["x-api-key"],
        json!("[redacted]"),
        "the echoed secret is scrubbed from the stored result: {sync_record}"
    );
    for path in [
        "/api/executions".to_string(),
        "/api/workflows".to_string(),
        format!("/api/executions/{sync_id}"),
        format!("/api/executions/{async_id}"),
    ] {
        api.push(app.admin_get(&path).body);
    }
    for body in &api {
        assert!(
            !body.contains(SECRET),
            "the admin API shows the secret: {body}"
        );
    }

    // Nor in the log: the failing node and the run's end were logged.
    let log = app.log_text();
    assert!(log.contains("Node failed."), "{log}");
    assert!(log.contains("Request failed; retrying."), "{log}");
    assert!(!log.contains(SECRET), "the log shows the secret:\n{log}");

    // Nor anywhere in the data folder once the server stopped (the log is
    // in it too); finished records are compressed there, hence the API
    // checks above.
    stop(&mut app);
    let found = files_containing(app.data_path(), SECRET.as_bytes());
    assert!(found.is_empty(), "the secret is stored in {found:?}");
}

#[test]
fn url_user_info_is_scrubbed_from_errors_and_the_log() {
    let closed = closed_port();
    let port = closed.port;
    let url = format!("http://robot:hunter2-pw@127.0.0.1:{port}/x");
    let yaml = format!(
        "title: User info\nenabled: true\ntrigger: {{ type: webhook, mode: sync, key: userinfo-0001 }}\nnodes:\n  - type: log\n    message: \"calling {url}\"\n  - key: call\n    type: request\n    url: \"{url}\"\n    on_error: continue\n  - type: end\n    status: failed\n    message: \"gave up on {url}\"\n"
    );
    let app = TestApp::spawn(&[("userinfo.yaml", &yaml)]);
    let r = app.post_json(
        "userinfo-0001",
        &json!({"callback": "https://cb:cb-pass-1@example.test/done"}),
    );
    assert_eq!(r.status, 500, "{r:?}\n{}", app.log_text());
    let record = app.finished(&r.execution(), Duration::from_secs(20));
    // What the sender wrote is kept as sent; the admin API shows it scrubbed.
    assert_eq!(
        record["trigger"]["body"]["callback"],
        json!("https://[redacted]@example.test/done"),
        "{record}"
    );
    assert_eq!(
        record["error"],
        json!(format!("gave up on http://[redacted]@127.0.0.1:{port}/x")),
        "{record}"
    );
    assert!(record["jobs"][1]["result"]["error"].is_string(), "{record}");
    let text = record.to_string();
    for leak in ["hunter2-pw", "robot:", "cb-pass-1"] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
    let log = app.log_text();
    assert!(
        log.contains(&format!("calling http://[redacted]@127.0.0.1:{port}/x")),
        "{log}"
    );
    assert!(!log.contains("hunter2-pw"), "{log}");
}

/// `HMAC-SHA256(secret, body)` in hex, by Python.
fn python_hmac(secret: &str, body: &str) -> String {
    python(
        "import hmac, hashlib, sys\nprint(hmac.new(sys.argv[1].encode(), sys.argv[2].encode(), hashlib.sha256).hexdigest())",
        &[secret, body],
    )
}

const CUSTOM_SIG: &str = r#"
title: Custom signature header
enabled: true
secrets: [HF_E2E_HMAC_SECRET]
trigger:
  type: webhook
  mode: {MODE}
  key: custom-sig-{MODE}
  verify: { preset: hmac, secret: "{{ secrets.HF_E2E_HMAC_SECRET }}", header: X-Custom-Sig }
nodes:
  - key: call
    type: request
    url: "{UP}/cookie"
"#;

#[test]
fn secret_bearing_headers_are_redacted_in_records_but_not_for_the_workflow() {
    let up = Upstream::start();
    let sync =
        format!(
        "{}  - type: response\n    body: {{ key: \"{{{{ trigger.headers['x-api-key'] }}}}\" }}\n",
        CUSTOM_SIG.replace("{MODE}", "sync").replace("{UP}", &up.base)
    );
    let asynchronous = CUSTOM_SIG
        .replace("{MODE}", "async")
        .replace("{UP}", &up.base);
    let app = TestApp::spawn_with(
        &[("sig-sync.yaml", &sync), ("sig-async.yaml", &asynchronous)],
        Options {
            env: vec![("HF_E2E_HMAC_SECRET".into(), "hmac-secret-e2e".into())],
            ..Default::default()
        },
    );
    let body = r#"{"event":"paid"}"#;
    let sig = python_hmac("hmac-secret-e2e", body);
    let headers = [
        ("content-type", "application/json"),
        ("x-custom-sig", sig.as_str()),
        ("x-api-key", "k-live-0001"),
        ("cookie", "session=abc"),
        ("x-request-id", "r-1"),
    ];
    let r = app.post("custom-sig-sync", &headers, body);
    assert_eq!(r.status, 200, "{r:?}\n{}", app.log_text());
    assert_eq!(
        r.json(),
        json!({"key": "k-live-0001"}),
        "the workflow sees the value"
    );
    let sync_id = r.execution();
    let r = app.post("custom-sig-async", &headers, body);
    assert_eq!(r.status, 200, "{r:?}");
    let async_id = r.execution();
    for id in [sync_id, async_id] {
        let record = app.finished(&id, Duration::from_secs(20));
        assert_eq!(record["status"], json!("resolved"), "{record}");
        let stored = &record["trigger"]["headers"];
        for name in ["x-custom-sig", "x-api-key", "cookie"] {
            assert_eq!(stored[name], json!("[redacted]"), "{name}: {record}");
        }
        assert_eq!(stored["x-request-id"], json!("r-1"), "{record}");
        let answered = &record["jobs"][0]["result"]["headers"];
        assert_eq!(answered["set-cookie"], json!("[redacted]"), "{record}");
        assert_eq!(answered["x-auth-token"], json!("[redacted]"), "{record}");
        assert_eq!(
            answered["content-type"],
            json!("application/json"),
            "{record}"
        );
        // (The sync workflow's own answer quotes the key on purpose.)
        let text = format!("{}{}", record["trigger"], record["jobs"]);
        for value in [
            "k-live-0001",
            sig.as_str(),
            "UPSTREAM-SESSION-1",
            "UPSTREAM-TOKEN-1",
        ] {
            assert!(!text.contains(value), "{value} in {text}");
        }
    }
}

/// Runs `hookflow` with these arguments and environment; bounded, so a
/// server that starts when it should not fails the test instead of hanging.
fn hookflow(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let err = dir.path().join("err");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookflow"))
        .args(args)
        .env_remove("HOOKFLOW_ADMIN_TOKEN")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("out"))
        .stderr(std::fs::File::create(&err).expect("err"))
        .spawn()
        .expect("hookflow runs");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break child.wait().expect("reaped");
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    (status.code(), read(&out), read(&err))
}

const EMPTY_PASSWORD: &str = "title: Guarded\nenabled: true\nsecrets: [HF_E2E_BASIC_PASS]\ntrigger:\n  type: webhook\n  key: guarded-0001\n  auth:\n    basic: { username: shop, password: \"{{ secrets.HF_E2E_BASIC_PASS }}\" }\n";

#[test]
fn an_empty_basic_password_is_a_load_error_for_validate_and_serve() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("guarded.yaml"), EMPTY_PASSWORD).expect("write");
    let written = EMPTY_PASSWORD
        .replace("\"{{ secrets.HF_E2E_BASIC_PASS }}\"", "\"\"")
        .replace("guarded-0001", "guarded-0002");
    std::fs::write(dir.path().join("written.yaml"), &written).expect("write");
    let dir_arg = dir.path().to_str().expect("utf-8");
    let (code, stdout, _) = hookflow(&["validate", dir_arg], &[("HF_E2E_BASIC_PASS", "")]);
    assert_eq!(code, Some(1), "{stdout}");
    for name in ["guarded.yaml", "written.yaml"] {
        let line = format!(
            "{}:8:40: error: the Basic password is empty",
            dir.path().join(name).display()
        );
        assert!(stdout.contains(&line), "missing `{line}` in:\n{stdout}");
    }
    std::fs::remove_file(dir.path().join("written.yaml")).expect("remove");
    let (code, stdout, _) = hookflow(
        &["validate", dir_arg],
        &[("HF_E2E_BASIC_PASS", "a-real-password")],
    );
    assert_eq!(code, Some(0), "a password makes it valid: {stdout}");

    let app = TestApp::spawn_with(
        &[("guarded.yaml", EMPTY_PASSWORD)],
        Options {
            env: vec![("HF_E2E_BASIC_PASS".into(), String::new())],
            ..Default::default()
        },
    );
    let banner = app.banner.join("\n");
    assert!(
        banner.contains("not served: the Basic password is empty"),
        "{banner}"
    );
    assert_eq!(app.post("guarded-0001", &[], "").status, 404, "not served");
    let log = app.log_text();
    assert!(
        log.contains("guarded.yaml:8:40: the Basic password is empty"),
        "{log}"
    );
}

const EMPTY_SIGNING_SECRET: &str = "title: Signed\nenabled: true\nsecrets: [HF_E2E_GH_SECRET]\ntrigger:\n  type: webhook\n  key: signed-00001\n  verify:\n    preset: github\n    secret: \"{{ secrets.HF_E2E_GH_SECRET }}\"\nnodes:\n  - type: log\n    message: hi\n";

/// A signature check that `serve` cannot set up (its secret set but empty)
/// is an error from `validate`, at the field, and `serve` lists the
/// workflow as not served instead of with a URL that answers 404.
#[test]
fn a_signature_check_that_cannot_be_set_up_fails_validate_and_is_not_listed() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("signed.yaml"), EMPTY_SIGNING_SECRET).expect("write");
    let dir_arg = dir.path().to_str().expect("utf-8");
    let (code, stdout, _) = hookflow(&["validate", dir_arg], &[("HF_E2E_GH_SECRET", "")]);
    assert_eq!(code, Some(1), "{stdout}");
    let line = format!(
        "{}:9:13: error: the signature check cannot be set up: `secret` renders to an empty string",
        dir.path().join("signed.yaml").display()
    );
    assert!(stdout.contains(&line), "missing `{line}` in:\n{stdout}");
    let (code, stdout, _) = hookflow(
        &["validate", dir_arg],
        &[("HF_E2E_GH_SECRET", "a-real-secret")],
    );
    assert_eq!(code, Some(0), "a secret makes it valid: {stdout}");

    let app = TestApp::spawn_with(
        &[("signed.yaml", EMPTY_SIGNING_SECRET)],
        Options {
            env: vec![("HF_E2E_GH_SECRET".into(), String::new())],
            ..Default::default()
        },
    );
    let banner = app.banner.join("\n");
    assert!(
        banner.contains("signed")
            && banner.contains("not served: its signature check cannot be set up"),
        "{banner}"
    );
    assert!(!banner.contains("signed-00001"), "no URL for it: {banner}");
    assert_eq!(app.post("signed-00001", &[], "").status, 404, "not served");
}

#[test]
fn an_empty_admin_token_is_a_start_up_error() {
    let data = tempfile::tempdir().expect("tempdir");
    let workflows = tempfile::tempdir().expect("tempdir");
    let place = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data",
        data.path().to_str().expect("utf-8"),
        "--workflows",
        workflows.path().to_str().expect("utf-8"),
    ];
    let with_flag: Vec<&str> = place.iter().copied().chain(["--admin-token", ""]).collect();
    for (args, env) in [
        (with_flag.as_slice(), vec![]),
        (&place[..], vec![("HOOKFLOW_ADMIN_TOKEN", "")]),
        (&place[..], vec![("HOOKFLOW_ADMIN_TOKEN", "  ")]),
    ] {
        let (code, stdout, stderr) = hookflow(args, &env);
        // 1: it cannot start (2 is for a wrong command line).
        assert_eq!(code, Some(1), "{env:?}\n{stdout}\n{stderr}");
        assert!(
            stderr.contains("the admin token is set but empty"),
            "{stderr}"
        );
        assert!(!stdout.contains("listening"), "{stdout}");
    }
    // A token starts (no token at all too: `http::no_admin_token_means_404`).
    let app = TestApp::spawn(&[]);
    assert_eq!(app.admin_get("/api/workflows").status, 200);
    assert_eq!(app.get("/api/workflows").status, 401);
}

#[test]
fn validate_warns_when_an_hmac_timestamp_is_not_signed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = "title: T\ntrigger:\n  type: webhook\n  verify:\n    preset: hmac\n    secret: s\n    header: X-Sig\n    timestamp_header: X-Ts\n";
    std::fs::write(dir.path().join("ts.yaml"), yaml).expect("write");
    let signed = format!(
        "{yaml}    payload: \"{{{{ trigger.headers['x-ts'] }}}}.{{{{ trigger.raw_body }}}}\"\n"
    );
    std::fs::write(dir.path().join("signed.yaml"), signed).expect("write");
    let (code, stdout, _) = hookflow(&["validate", dir.path().to_str().expect("utf-8")], &[]);
    assert_eq!(code, Some(0), "a warning does not fail validate: {stdout}");
    let line = format!(
        "{}:8:23: warning: `timestamp_header` X-Ts is checked for freshness but `payload` does not sign it",
        dir.path().join("ts.yaml").display()
    );
    assert!(stdout.contains(&line), "missing `{line}` in:\n{stdout}");
    assert!(!stdout.contains("signed.yaml"), "{stdout}");
}

fn alipay_app() -> TestApp {
    let public = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crates/verify/testdata/test-only-rsa-public.pem"
    ))
    .expect("key");
    let indented: String = public.lines().map(|l| format!("      {l}\n")).collect();
    let yaml = format!(
        "title: Alipay\nenabled: true\ntrigger:\n  type: webhook\n  mode: sync\n  key: alipay-dup-01\n  verify:\n    preset: alipay\n    public_key: |\n{indented}nodes:\n  - type: response\n    body: {{ memo_seen: \"{{{{ trigger.body.memo is defined }}}}\", amount: \"{{{{ trigger.body.total_amount }}}}\" }}\n"
    );
    TestApp::spawn(&[("alipay.yaml", &yaml)])
}

/// A form body with these parameters and `sign` over `content`.
fn alipay_form(params: &[(&str, &str)], content: &str) -> String {
    let sign = openssl_sign(content);
    let mut form: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    form.push(format!(
        "sign={}",
        sign.replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D")
    ));
    form.join("&")
}

#[test]
fn alipay_refuses_duplicate_parameters_and_hides_unsigned_empty_ones() {
    let app = alipay_app();
    let form_ct = [("content-type", "application/x-www-form-urlencoded")];
    let content = "out_trade_no=T1&total_amount=9.90&trade_status=TRADE_SUCCESS";
    let params = [
        ("trade_status", "TRADE_SUCCESS"),
        ("sign_type", "RSA2"),
        ("out_trade_no", "T1"),
        ("total_amount", "9.90"),
    ];
    let good = alipay_form(&params, content);
    let r = app.post("alipay-dup-01", &form_ct, &good);
    assert_eq!(r.status, 200, "{r:?}\n{}", app.log_text());
    assert_eq!(r.json(), json!({"memo_seen": false, "amount": "9.90"}));

    // An empty parameter is not signed: it does not reach the workflow.
    let with_empty = alipay_form(
        &[params[0], params[1], ("memo", ""), params[2], params[3]],
        content,
    );
    let r = app.post("alipay-dup-01", &form_ct, &with_empty);
    assert_eq!(r.status, 200, "{r:?}\n{}", app.log_text());
    assert_eq!(r.json(), json!({"memo_seen": false, "amount": "9.90"}));

    // A parameter given twice is refused, the signed copy first or last.
    for twice in [
        format!("{good}&total_amount=0.01"),
        format!("total_amount=0.01&{good}"),
        format!("{good}&memo=&memo="),
    ] {
        let r = app.post("alipay-dup-01", &form_ct, &twice);
        assert_eq!(r.status, 401, "{twice}: {r:?}");
        assert_eq!(r.json()["error"], json!("invalid_signature"));
        assert!(r.header("x-hookflow-execution").is_none());
    }
    let log = app.log_text();
    assert!(log.contains("is given more than once"), "{log}");
}

const TIMESTAMPED: &str = "title: T\nenabled: true\ntrigger:\n  type: webhook\n  key: stamped-0001\n  verify:\n    preset: hmac\n    secret: s3cret-value\n    header: X-Sig\n    timestamp_header: X-Ts\n    payload: \"{{ trigger.headers['x-ts'] }}.{{ trigger.raw_body }}\"\n";

#[test]
fn values_an_attacker_sent_are_escaped_in_the_rejection_log_line() {
    let mut app = alipay_app();
    app.write_workflow("stamped.yaml", TIMESTAMPED);
    eventually(Duration::from_secs(10), "the new workflow", || {
        (app.post("stamped-0001", &[], "").status != 404).then_some(())
    });
    // A header value with a control character (a tab is what HTTP lets through).
    let r = app.post(
        "stamped-0001",
        &[("x-ts", "17\tINFO forged"), ("x-sig", "00")],
        "",
    );
    assert_eq!(r.status, 401, "{r:?}");
    // A form key with a line break, from the body.
    let r = app.post(
        "alipay-dup-01",
        &[("content-type", "application/x-www-form-urlencoded")],
        "a%0AINFO+forged=1&a%0AINFO+forged=2&sign=x",
    );
    assert_eq!(r.status, 401, "{r:?}");
    let log = eventually(Duration::from_secs(5), "two rejections logged", || {
        let log = app.log_text();
        (log.matches("Signature rejected.").count() >= 2).then_some(log)
    });
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Signature rejected."))
        .collect();
    assert!(
        lines.iter().any(|l| l.contains(r"17\tINFO forged")),
        "the header value is escaped: {lines:#?}"
    );
    assert!(!log.contains('\t'), "a raw tab reached the log:\n{log}");
    assert!(
        !log.lines().any(|l| l.starts_with("INFO forged")),
        "a forged line:\n{log}"
    );
    stop(&mut app);
}

/// A Feishu event encrypted the published way (AES-256-CBC, key = SHA-256 of
/// the encrypt key, IV first), by Python's `cryptography`; with its
/// `X-Lark-Signature` for timestamp `ts` and nonce `n1`.
fn python_feishu(encrypt_key: &str, event: &str, ts: &str) -> (String, String) {
    let script = r#"
import base64, hashlib, os, sys, json
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives import padding
key, event, ts = sys.argv[1], sys.argv[2], sys.argv[3]
iv = os.urandom(16)
p = padding.PKCS7(128).padder()
data = p.update(event.encode()) + p.finalize()
e = Cipher(algorithms.AES(hashlib.sha256(key.encode()).digest()), modes.CBC(iv)).encryptor()
body = json.dumps({"encrypt": base64.b64encode(iv + e.update(data) + e.finalize()).decode()})
print(body)
print(hashlib.sha256((ts + "n1" + key + body).encode()).hexdigest())
"#;
    let out = python(script, &[encrypt_key, event, ts]);
    let (body, sig) = out.split_once('\n').expect("two lines");
    (body.to_string(), sig.to_string())
}

const FEISHU_SECRET: &str = r#"
title: Feishu with secrets
enabled: true
secrets: [HF_E2E_FEISHU_TOKEN, HF_E2E_FEISHU_KEY]
trigger:
  type: webhook
  mode: sync
  key: feishu-secret-01
  verify:
    preset: feishu
    token: "{{ secrets.HF_E2E_FEISHU_TOKEN }}"
    encrypt_key: "{{ secrets.HF_E2E_FEISHU_KEY }}"
nodes:
  - type: response
    body: { token: "{{ trigger.body.header.token }}", event: "{{ trigger.body.header.event_id }}" }
"#;

#[test]
fn a_decrypted_feishu_token_is_neither_seen_nor_stored() {
    let token = "feishu-verify-tok-1";
    let mut app = TestApp::spawn_with(
        &[("feishu.yaml", FEISHU_SECRET)],
        Options {
            env: vec![
                ("HF_E2E_FEISHU_TOKEN".into(), token.into()),
                ("HF_E2E_FEISHU_KEY".into(), "feishu-encrypt-key-1".into()),
            ],
            ..Default::default()
        },
    );
    let event = format!(
        r#"{{"schema":"2.0","header":{{"event_id":"ev-1","token":"{token}"}},"event":{{"status":"APPROVED"}}}}"#
    );
    let ts = (hookflow_model::time::now_millis() / 1000).to_string();
    let (body, sig) = python_feishu("feishu-encrypt-key-1", &event, &ts);
    let headers = [
        ("content-type", "application/json"),
        ("x-lark-request-timestamp", ts.as_str()),
        ("x-lark-request-nonce", "n1"),
        ("x-lark-signature", sig.as_str()),
    ];
    let r = app.post("feishu-secret-01", &headers, &body);
    assert_eq!(r.status, 200, "{r:?}\n{}", app.log_text());
    assert_eq!(r.json(), json!({"token": "[redacted]", "event": "ev-1"}));
    let record = app.finished(&r.execution(), Duration::from_secs(10));
    assert_eq!(
        record["trigger"]["body"]["header"]["token"],
        json!("[redacted]"),
        "{record}"
    );
    assert!(!record.to_string().contains(token), "{record}");
    stop(&mut app);
    let found = files_containing(app.data_path(), token.as_bytes());
    assert!(found.is_empty(), "the token is stored in {found:?}");
}

const COPIES: &str = r#"
title: Copies
enabled: true
trigger:
  type: webhook
  mode: {MODE}
  key: copies-{MODE}-0001
{ACK}nodes:
  - key: copied
    type: calculation
    expression: trigger.headers
  - key: said
    type: log
    message: "auth={{ trigger.headers.authorization }} tok={{ trigger.headers['x-api-token'] }}"
{END}"#;

/// SPEC §2: no value of a secret-bearing header in a log line or a stored
/// record, even when the workflow copies it (into a result, a log message,
/// its answer, its error). The workflow itself sees the values.
#[test]
fn secret_bearing_header_values_a_workflow_copies_stay_out_of_records_and_logs() {
    let sync = COPIES
        .replace("{MODE}", "sync")
        .replace("{ACK}", "")
        .replace(
            "{END}",
            "  - type: response\n    body: { seen: \"{{ trigger.headers['x-api-token'] }}\" }\n",
        );
    let ack = "  response: { body: { echo: \"{{ trigger.headers['x-api-token'] }}\" } }\n";
    let asynchronous = COPIES.replace("{MODE}", "async").replace("{ACK}", ack).replace(
        "{END}",
        "  - { key: pause, type: delay, duration: 2s }\n  - type: end\n    status: failed\n    message: \"refused {{ trigger.headers['x-api-token'] }}\"\n",
    );
    let app = TestApp::spawn(&[
        ("copies-sync.yaml", &sync),
        ("copies-async.yaml", &asynchronous),
    ]);
    let headers = [
        ("content-type", "application/json"),
        ("authorization", "Bearer topsecretvalue1"),
        ("x-api-token", "tokval-998877"),
    ];
    let r = app.post("copies-sync-0001", &headers, "{}");
    assert_eq!(r.status, 200, "{r:?}\n{}", app.log_text());
    assert_eq!(
        r.json(),
        json!({"seen": "tokval-998877"}),
        "the workflow sees it"
    );
    let sync_id = r.execution();
    let r = app.post("copies-async-0001", &headers, "{}");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.json(),
        json!({"echo": "tokval-998877"}),
        "the ack quotes it"
    );
    let async_id = r.execution();
    // While it waits, its record holds the acknowledgement and the results
    // so far: scrubbed already.
    let waiting = eventually(Duration::from_secs(10), "the run to wait", || {
        let record = app.execution(&async_id);
        (record["status"] == "waiting").then_some(record)
    });
    let text = waiting.to_string();
    for value in ["topsecretvalue1", "tokval-998877"] {
        assert!(!text.contains(value), "{value} while waiting: {text}");
    }
    for (id, status) in [(sync_id, "resolved"), (async_id, "failed")] {
        let record = app.finished(&id, Duration::from_secs(20));
        assert_eq!(record["status"], json!(status), "{record}");
        assert_eq!(
            record["jobs"][0]["result"]["x-api-token"],
            json!("[redacted]"),
            "{record}"
        );
        let text = record.to_string();
        for value in ["topsecretvalue1", "tokval-998877"] {
            assert!(!text.contains(value), "{value} in {text}");
        }
    }
    let log = app.log_text();
    assert!(log.contains("tok=[redacted]"), "{log}");
    for value in ["topsecretvalue1", "tokval-998877"] {
        assert!(!log.contains(value), "{value} in the log:\n{log}");
    }
}

/// A workflow waiting for its secrets is listed as it declares itself: its
/// pinned key's URL (the one to give the sender), its mode and `enabled`,
/// with `loaded: false`; not a generated key that will never be served.
#[test]
fn a_workflow_waiting_for_secrets_is_listed_with_its_own_url() {
    let waiting = "title: Waiting\nenabled: true\nsecrets: [NOT_SET_SECRET_E2E]\ntrigger:\n  type: webhook\n  mode: sync\n  key: needs-pinned-key\n  auth: { basic: { username: u, password: \"{{ secrets.NOT_SET_SECRET_E2E }}\" } }\nnodes:\n  - type: response\n    body: ok\n";
    let app = TestApp::spawn(&[("waiting.yaml", waiting)]);
    let listing = app.admin_get("/api/workflows").json();
    let entry = listing["workflows"]
        .as_array()
        .and_then(|l| l.iter().find(|w| w["id"] == json!("waiting")).cloned())
        .unwrap_or_else(|| panic!("listed: {listing}"));
    assert_eq!(entry["loaded"], json!(false), "{entry}");
    assert_eq!(entry["url"], json!(app.hook("needs-pinned-key")), "{entry}");
    assert_eq!(entry["mode"], json!("sync"), "{entry}");
    assert_eq!(entry["enabled"], json!(true), "{entry}");
    assert_eq!(app.post("needs-pinned-key", &[], "").status, 404);
}

/// A sync workflow whose caller authenticates with a declared secret in the
/// query string and the body.
const QUERY_TOKEN: &str = r#"
title: Token in the query
enabled: true
secrets: [HF_E2E_QUERY_TOKEN]
trigger: { type: webhook, mode: sync, key: query-token-01 }
nodes:
  - type: condition
    if: trigger.query.key == secrets.HF_E2E_QUERY_TOKEN and trigger.body.pin == secrets.HF_E2E_QUERY_TOKEN
    then:
      - type: response
        body: { ok: true }
    else:
      - type: response
        status: 401
        body: { ok: false }
"#;

#[test]
fn a_secret_the_caller_sends_is_not_kept_in_the_stored_record() {
    let token = "QRYSECRET-e2e-9f3c1";
    let mut app = TestApp::spawn_with(
        &[("query-token.yaml", QUERY_TOKEN)],
        Options {
            env: vec![("HF_E2E_QUERY_TOKEN".into(), token.into())],
            ..Default::default()
        },
    );
    let sent = app.post(
        &format!("query-token-01?key={token}&access_token=plain-but-named-0042&order=7"),
        &[("content-type", "application/json")],
        &json!({ "pin": token, "order": 7 }).to_string(),
    );
    assert_eq!(sent.status, 200, "{sent:?}\n{}", app.log_text());
    let id = sent.execution();
    app.finished(&id, Duration::from_secs(20));
    stop(&mut app);
    // The record as the store keeps it, read with no server (and no
    // secret in the environment to scrub it with on the way out).
    let data = app.data_path().display().to_string();
    let closed = closed_port();
    let listen = format!("127.0.0.1:{}", closed.port);
    let (code, out, err) = hookflow(
        &[
            "executions",
            "show",
            &id,
            "--data",
            &data,
            "--listen",
            &listen,
            "--format",
            "json",
        ],
        &[],
    );
    assert_eq!(code, Some(0), "{out}\n{err}");
    let record: Json = serde_json::from_str(&out).expect("json");
    let trigger = &record["trigger"];
    assert_eq!(trigger["query"]["key"], json!("[redacted]"), "{record}");
    assert_eq!(
        trigger["query"]["access_token"],
        json!("[redacted]"),
        "a parameter named like a token: {record}"
    );
    assert_eq!(trigger["query"]["order"], json!("7"), "{record}");
    assert_eq!(trigger["body"]["pin"], json!("[redacted]"), "{record}");
    assert_eq!(trigger["body"]["order"], json!(7), "{record}");
    assert!(!out.contains(token), "{out}");
    assert!(!out.contains("plain-but-named-0042"), "{out}");
}
