//! Request destinations (SPEC §3): redirects checked hop by hop, addresses
//! refused by default, no proxy from the environment, `--request-proxy`,
//! `follow_redirects: false`, and URLs shown without their secrets.
//! Upstreams are real local servers on 127.0.0.x.

use crate::harness::{Options, TestApp};
use crate::upstream::Upstream;
use serde_json::{json, Value as Json};
use std::time::{Duration, Instant};

fn sync_flow(key: &str, nodes: &str) -> String {
    format!("title: Destinations\nenabled: true\noptions: {{ timeout: 20s }}\ntrigger: {{ type: webhook, mode: sync, key: {key} }}\nnodes:\n{nodes}")
}

/// A workflow of one GET request node `call` to `url` (extra node fields
/// in `fields`, one per line) answering the node's result.
fn call_flow(key: &str, url: &str, fields: &str) -> String {
    sync_flow(
        key,
        &format!(
            "  - key: call\n    type: request\n    method: GET\n    url: \"{url}\"\n{fields}  - type: response\n    body: {{ result: \"{{{{ nodes.call }}}}\" }}\n"
        ),
    )
}

fn with_args(args: &[&str]) -> Options {
    Options {
        args: args.iter().map(|a| a.to_string()).collect(),
        ..Options::default()
    }
}

/// The run's error (the run must have failed).
fn run_error(app: &TestApp, key: &str) -> String {
    let r = app.post(key, &[], "");
    assert_eq!(r.status, 500, "{r:?}\n{}", app.log_text());
    let record = app.execution(&r.execution());
    record["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error: {record}"))
        .to_string()
}

/// The node's result (the run must have resolved).
fn run_result(app: &TestApp, key: &str) -> Json {
    let r = app.post(key, &[], "");
    assert_eq!(r.status, 200, "{r:?}\n{}", app.log_text());
    r.json()["result"].clone()
}

#[test]
fn a_redirect_to_a_denied_address_fails_the_node_and_reaches_nothing() {
    let internal = Upstream::start_on("127.0.0.2");
    let front = Upstream::start();
    let to_internal = format!("{}/redirect-to/{}/secret", front.base, internal.authority());
    let port = internal.authority().rsplit(':').next().expect("port");
    let to_mapped = format!(
        "{}/redirect-to/[::ffff:127.0.0.2]:{port}/mapped",
        front.base
    );
    let retried = "    retry: { attempts: 3, backoff: 10ms }\n";
    let app = TestApp::spawn_with(
        &[
            (
                "a.yaml",
                &call_flow("redirect-deny-1", &to_internal, retried),
            ),
            ("b.yaml", &call_flow("redirect-deny-2", &to_mapped, "")),
        ],
        with_args(&["--request-deny", "127.0.0.2"]),
    );
    let error = run_error(&app, "redirect-deny-1");
    assert!(
        error.contains("refused: a redirect to `127.0.0.2` is denied by the server's request policy (deny rule `127.0.0.2`)"),
        "{error}"
    );
    // A refusal is not retried: the first hop was asked once.
    assert_eq!(front.hits().len(), 1, "{:?}", front.hits());
    let error = run_error(&app, "redirect-deny-2");
    assert!(error.contains("(deny rule `127.0.0.2`)"), "{error}");
    assert!(
        internal.hits().is_empty(),
        "the denied server was reached: {:?}",
        internal.hits()
    );
}

/// A name is refused at the addresses it resolves to (DNS rebinding): the
/// resolver drops them, and the refusal is not retried.
#[test]
fn a_name_resolving_to_a_denied_address_is_refused_without_retries() {
    let up = Upstream::start();
    let port = up.authority().rsplit(':').next().expect("port").to_string();
    let retried = "    retry: { attempts: 3, backoff: 10ms }\n";
    let app = TestApp::spawn_with(
        &[(
            "named.yaml",
            &call_flow(
                "named-deny-01",
                &format!("http://localhost:{port}/named"),
                retried,
            ),
        )],
        with_args(&["--request-deny", "127.0.0.0/8,::1"]),
    );
    let error = run_error(&app, "named-deny-01");
    assert!(
        error.contains("refused: `localhost` (127.0.0.1) is denied by the server's request policy (deny rule `127.0.0.0/8`)"),
        "{error}"
    );
    assert!(up.hits().is_empty(), "{:?}", up.hits());
    let log = app.log_text();
    assert!(!log.contains("retrying"), "{log}");
}

#[test]
fn more_than_five_redirects_fail_the_node() {
    let up = Upstream::start();
    let retried = "    retry: { attempts: 3, backoff: 10ms }\n";
    let app = TestApp::spawn(&[
        (
            "five.yaml",
            &call_flow("hops-five-01", &format!("{}/hops/5", up.base), ""),
        ),
        (
            "six.yaml",
            &call_flow("hops-six-001", &format!("{}/hops/6", up.base), retried),
        ),
    ]);
    let result = run_result(&app, "hops-five-01");
    assert_eq!(result["status"], json!(200), "{result}");
    assert_eq!(result["body"], json!({"hops": "done"}));
    assert_eq!(up.hits_on("/hops/0").len(), 1);

    let error = run_error(&app, "hops-six-001");
    assert!(error.contains("more than 5 redirects"), "{error}");
    assert_eq!(
        up.hits_on("/hops/0").len(),
        1,
        "the sixth redirect was followed"
    );
    assert_eq!(
        up.hits_on("/hops/6").len(),
        1,
        "too many redirects is not retried"
    );
}

#[test]
fn metadata_link_local_and_unspecified_addresses_are_refused_by_default() {
    let up = Upstream::start();
    let port = up.authority().rsplit(':').next().expect("port").to_string();
    let slow = "    timeout: 5s\n";
    let app = TestApp::spawn(&[
        (
            "meta.yaml",
            &call_flow(
                "refused-meta-1",
                "http://169.254.169.254/latest/meta-data/?token=meta-secret",
                slow,
            ),
        ),
        (
            "mapped.yaml",
            &call_flow("refused-meta-2", "http://[::ffff:a9fe:a9fe]/latest/", slow),
        ),
        (
            "ignored.yaml",
            &call_flow(
                "refused-meta-3",
                "http://169.254.10.10/",
                "    ignore_fail: true\n",
            ),
        ),
        (
            "zero.yaml",
            &call_flow("refused-zero-1", &format!("http://0.0.0.0:{port}/zero"), ""),
        ),
    ]);
    let started = Instant::now();
    let error = run_error(&app, "refused-meta-1");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the refusal waited for a connection: {:?}",
        started.elapsed()
    );
    assert!(
        error.contains("GET http://169.254.169.254/latest/meta-data/ refused: `169.254.169.254` is refused by the server's request policy: the cloud metadata endpoint"),
        "{error}"
    );
    assert!(
        error.contains(
            "(rule `169.254.169.254`), refused by default unless --request-allow names it"
        ),
        "{error}"
    );
    assert!(
        !error.contains("meta-secret") && !error.contains("connect"),
        "{error}"
    );

    let error = run_error(&app, "refused-meta-2");
    assert!(
        error.contains("(169.254.169.254) is refused by the server's request policy"),
        "{error}"
    );
    // `ignore_fail` covers the upstream's failures, not the operator's policy.
    let error = run_error(&app, "refused-meta-3");
    assert!(
        error.contains("link-local address (rule `169.254.0.0/16`)"),
        "{error}"
    );
    // 0.0.0.0 reaches the local host on Linux: refused before connecting.
    let error = run_error(&app, "refused-zero-1");
    assert!(
        error.contains("unspecified address (rule `0.0.0.0/8`)"),
        "{error}"
    );
    assert!(up.hits().is_empty(), "{:?}", up.hits());
}

/// The metadata address cannot be reached from a test, but a proxy can stand
/// in for it: the request leaves only when an allow entry names the address.
#[test]
fn an_allow_entry_naming_the_metadata_address_lifts_the_refusal() {
    let proxy = Upstream::start_on("127.0.0.3");
    let meta = "http://169.254.169.254/latest/meta-data/";
    let file = call_flow("allowed-meta-1", meta, "");
    let app = TestApp::spawn_with(
        &[("meta.yaml", &file)],
        with_args(&["--request-proxy", &proxy.base]),
    );
    let error = run_error(&app, "allowed-meta-1");
    assert!(error.contains("refused by default"), "{error}");
    assert!(proxy.hits().is_empty(), "{:?}", proxy.hits());
    drop(app);

    let app = TestApp::spawn_with(
        &[("meta.yaml", &file)],
        with_args(&[
            "--request-proxy",
            &proxy.base,
            "--request-allow",
            "169.254.169.254",
        ]),
    );
    let result = run_result(&app, "allowed-meta-1");
    assert_eq!(result["status"], json!(200), "{result}");
    assert_eq!(
        proxy.hits_on("/latest/meta-data/").len(),
        1,
        "{:?}",
        proxy.hits()
    );
}

#[test]
fn follow_redirects_false_returns_the_redirect_as_the_result() {
    let target = Upstream::start_on("127.0.0.2");
    let front = Upstream::start();
    let url = format!(
        "{}/redirect-to/{}/target?x=1",
        front.base,
        target.authority()
    );
    let app = TestApp::spawn(&[
        (
            "nofollow.yaml",
            &call_flow("no-follow-001", &url, "    follow_redirects: false\n"),
        ),
        ("follow.yaml", &call_flow("follow-0001", &url, "")),
    ]);
    let result = run_result(&app, "no-follow-001");
    assert_eq!(result["status"], json!(302), "{result}");
    assert_eq!(
        result["headers"]["location"],
        json!(format!("http://{}/target?x=1", target.authority()))
    );
    assert_eq!(result["body"], json!({"redirect": true}));
    assert!(result.get("error").is_none(), "{result}");
    assert!(target.hits().is_empty(), "{:?}", target.hits());

    // By default the redirect is followed.
    let result = run_result(&app, "follow-0001");
    assert_eq!(result["status"], json!(200), "{result}");
    assert_eq!(result["body"]["path"], json!("/target"));
    assert_eq!(target.hits_on("/target").len(), 1);
    // No Referer carries the first URL's query string to the next hop.
    assert_eq!(target.hits()[0].headers.get("referer"), None);
}

#[test]
fn proxies_from_the_environment_are_ignored() {
    let proxy = Upstream::start_on("127.0.0.3");
    let up = Upstream::start();
    let mut opts = Options::default();
    for name in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        opts.env.push((name.to_string(), proxy.base.clone()));
    }
    for name in ["NO_PROXY", "no_proxy"] {
        opts.env.push((name.to_string(), String::new()));
    }
    let app = TestApp::spawn_with(
        &[(
            "direct.yaml",
            &call_flow("env-proxy-001", &format!("{}/direct", up.base), ""),
        )],
        opts,
    );
    let result = run_result(&app, "env-proxy-001");
    assert_eq!(result["body"]["path"], json!("/direct"), "{result}");
    assert_eq!(up.hits_on("/direct").len(), 1);
    assert!(proxy.hits().is_empty(), "{:?}", proxy.hits());
}

#[test]
fn request_proxy_is_used_and_its_user_info_never_logged() {
    let proxy = Upstream::start_on("127.0.0.3");
    let up = Upstream::start();
    let proxy_url = format!("http://hook:pr0xy-pass@{}", proxy.authority());
    let app = TestApp::spawn_with(
        &[(
            "via.yaml",
            &call_flow("via-proxy-001", &format!("{}/via", up.base), ""),
        )],
        with_args(&["--request-proxy", &proxy_url]),
    );
    let result = run_result(&app, "via-proxy-001");
    assert_eq!(result["status"], json!(200), "{result}");
    let hits = proxy.hits_on("/via");
    assert_eq!(hits.len(), 1, "{:?}", proxy.hits());
    assert!(
        hits[0]
            .headers
            .get("proxy-authorization")
            .is_some_and(|v| v.starts_with("Basic ")),
        "{:?}",
        hits[0].headers
    );
    assert!(up.hits().is_empty(), "{:?}", up.hits());
    let log = app.log_text();
    assert!(log.contains("Request nodes go through a proxy."), "{log}");
    assert!(
        log.contains(&format!("http://{}", proxy.authority())),
        "{log}"
    );
    assert!(!log.contains("pr0xy-pass"), "{log}");
    let banner = app.banner.join("\n");
    assert!(!banner.contains("pr0xy-pass"), "{banner}");
}

#[test]
fn request_errors_and_logs_show_urls_without_query_strings_or_user_info() {
    let up = Upstream::start();
    let base = &up.base;
    let with_user = base.replace("http://", "http://someone:pw-secret-1@");
    let nodes = format!(
        r#"  - key: failing
    type: request
    method: POST
    url: "{with_user}/status/500?token=tok-secret-1"
    query: {{ api_key: tok-secret-2 }}
    retry: {{ attempts: 2, backoff: 10ms }}
    on_error: continue
  - key: closed
    type: request
    url: "http://127.0.0.1:1/closed?token=tok-secret-3"
    on_error: continue
  - key: denied
    type: request
    url: "http://127.0.0.2:1/denied?token=tok-secret-4"
    on_error: continue
  - key: invalid
    type: request
    url: "http://someone:pw-secret-2@exa mple.com/x?token=tok-secret-5"
    on_error: continue
  - key: ignored
    type: request
    url: "{base}/status/404?token=tok-secret-6"
    ignore_fail: true
  - type: response
    body:
      failing: "{{{{ nodes.failing.error }}}}"
      closed: "{{{{ nodes.closed.error }}}}"
      denied: "{{{{ nodes.denied.error }}}}"
      invalid: "{{{{ nodes.invalid.error }}}}"
      ignored: "{{{{ nodes.ignored.error }}}}"
"#
    );
    let app = TestApp::spawn_with(
        &[("tokens.yaml", &sync_flow("token-urls-01", &nodes))],
        with_args(&["--request-deny", "127.0.0.2"]),
    );
    let r = app.post("token-urls-01", &[], "");
    assert_eq!(r.status, 200, "{r:?}\n{}", app.log_text());
    let errors = r.json();
    let port = up.authority().rsplit(':').next().expect("port");
    assert_eq!(
        errors["failing"],
        json!(format!(
            "POST http://127.0.0.1:{port}/status/500 answered 500"
        ))
    );
    let closed = errors["closed"].as_str().unwrap_or_default();
    assert!(
        closed.starts_with("POST http://127.0.0.1:1/closed failed: could not connect"),
        "{closed}"
    );
    assert_eq!(
        errors["denied"],
        json!("POST http://127.0.0.2:1/denied refused: `127.0.0.2` is denied by the server's request policy (deny rule `127.0.0.2`)")
    );
    let invalid = errors["invalid"].as_str().unwrap_or_default();
    assert!(
        invalid.starts_with("invalid url `http://[redacted]@exa mple.com/x`"),
        "{invalid}"
    );
    assert_eq!(
        errors["ignored"],
        json!(format!(
            "POST http://127.0.0.1:{port}/status/404 answered 404"
        ))
    );
    // The upstream did get the tokens: they were sent, only not shown.
    assert!(up.hits_on("/status/500")[0].query.contains("tok-secret-1"));

    let record = app.execution(&r.execution()).to_string();
    let log = app.log_text();
    assert!(log.contains("Request failed; retrying."), "{log}");
    assert!(log.contains("Node failed."), "{log}");
    for secret in ["tok-secret", "pw-secret", "token="] {
        assert!(!log.contains(secret), "`{secret}` in the log:\n{log}");
        assert!(
            !record.contains(secret),
            "`{secret}` in the record:\n{record}"
        );
    }
}

/// A workflow like [`call_flow`] whose node sends `header: value` and
/// declares the secret `HF_DEST_KEY`.
fn credential_flow(key: &str, url: &str, header: &str, value: &str) -> String {
    call_flow(
        key,
        url,
        &format!("    headers: {{ {header}: \"{value}\" }}\n"),
    )
    .replacen(
        "enabled: true\n",
        "enabled: true\nsecrets: [HF_DEST_KEY]\n",
        1,
    )
}

#[test]
fn credentials_are_not_carried_to_another_origin_by_a_redirect() {
    let elsewhere = Upstream::start_on("127.0.0.2");
    let front = Upstream::start();
    let away = format!("{}/redirect-to/{}/took", front.base, elsewhere.authority());
    let home = format!("{}/redirect-to/{}/kept", front.base, front.authority());
    let secret = "{{ secrets.HF_DEST_KEY }}";
    let mut opts = Options::default();
    opts.env
        .push(("HF_DEST_KEY".to_string(), "dest-key-1f9e3a".to_string()));
    let app = TestApp::spawn_with(
        &[
            // By its name, whatever its value.
            (
                "a.yaml",
                &credential_flow("cred-away-1", &away, "X-Api-Key", "plain"),
            ),
            // By its value: a secret under an ordinary name.
            (
                "b.yaml",
                &credential_flow("cred-away-2", &away, "X-Partner", secret),
            ),
            // Within the origin, followed with the credential.
            (
                "c.yaml",
                &credential_flow("cred-home-1", &home, "X-Partner", secret),
            ),
            // No credential: followed anywhere the policy allows.
            (
                "d.yaml",
                &credential_flow("cred-none-1", &away, "X-Partner", "plain"),
            ),
            // A secret in the body (a 307 or 308 would send it again).
            (
                "e.yaml",
                &call_flow(
                    "cred-away-3",
                    &away,
                    "    body: { app_secret: \"{{ secrets.HF_DEST_KEY }}\" }\n",
                )
                .replacen(
                    "enabled: true\n",
                    "enabled: true\nsecrets: [HF_DEST_KEY]\n",
                    1,
                ),
            ),
        ],
        opts,
    );
    for key in ["cred-away-1", "cred-away-2", "cred-away-3"] {
        let error = run_error(&app, key);
        assert!(
            error.contains(&format!(
                "redirected to another origin (http://{}); not followed because the request sends credentials",
                elsewhere.authority()
            )),
            "{key}: {error}"
        );
        assert!(!error.contains("dest-key"), "{error}");
    }
    assert!(elsewhere.hits().is_empty(), "{:?}", elsewhere.hits());

    let result = run_result(&app, "cred-home-1");
    assert_eq!(result["status"], json!(200), "{result}");
    let kept = front.hits_on("/kept");
    assert_eq!(kept.len(), 1);
    assert_eq!(
        kept[0].headers.get("x-partner").map(String::as_str),
        Some("dest-key-1f9e3a")
    );

    let result = run_result(&app, "cred-none-1");
    assert_eq!(result["status"], json!(200), "{result}");
    assert_eq!(elsewhere.hits_on("/took").len(), 1);
}

#[test]
fn a_node_s_own_authorization_header_wins_over_url_user_info() {
    let up = Upstream::start();
    let with_user = up.base.replacen("http://", "http://robot:pw-9d1c@", 1);
    let app = TestApp::spawn_with(
        &[
            (
                "a.yaml",
                &call_flow(
                    "own-auth-1",
                    &format!("{with_user}/own"),
                    "    headers: { Authorization: \"Bearer tok-1\" }\n",
                ),
            ),
            (
                "b.yaml",
                &call_flow("url-auth-1", &format!("{with_user}/url"), ""),
            ),
        ],
        Options::default(),
    );
    run_result(&app, "own-auth-1");
    run_result(&app, "url-auth-1");
    let sent = |path: &str| {
        let hits = up.hits_on(path);
        assert_eq!(hits.len(), 1, "{hits:?}");
        hits[0].headers.get("authorization").cloned()
    };
    // One header, the node's: not Basic from the URL beside it.
    assert_eq!(sent("/own").as_deref(), Some("Bearer tok-1"));
    // Without one, the URL's user info is sent as Basic credentials.
    assert_eq!(sent("/url").as_deref(), Some("Basic cm9ib3Q6cHctOWQxYw=="));
}
