//! The node library end to end: request (against a real local upstream), loop, delay.

use crate::harness::{eventually, Options, TestApp};
use crate::upstream::Upstream;
use serde_json::{json, Value as Json};
use std::time::{Duration, Instant};

fn sync_flow(key: &str, nodes: &str) -> String {
    format!("title: Nodes\nenabled: true\noptions: {{ timeout: 20s }}\ntrigger: {{ type: webhook, mode: sync, key: {key} }}\nnodes:\n{nodes}")
}

/// A repeated response header reaches `nodes.<key>.headers` joined with
/// `, `, the same rule as `trigger.headers` (RFC 9110 §5.3).
#[test]
fn repeated_response_headers_are_joined_like_request_headers() {
    let up = Upstream::start();
    let nodes = format!(
        r#"  - key: call
    type: request
    url: "{base}/repeat"
  - type: response
    body: {{ many: "{{{{ nodes.call.headers['x-many'] }}}}" }}
"#,
        base = up.base
    );
    let app = TestApp::spawn(&[("rep.yaml", &sync_flow("repeat-key-001", &nodes))]);
    let r = app.post_json("repeat-key-001", &json!({}));
    assert_eq!(r.status, 200, "{r:?}\n{}", app.log_text());
    assert_eq!(r.json(), json!({"many": "a, b"}));
}

#[test]
fn request_sends_templated_method_url_headers_query_and_body() {
    let up = Upstream::start();
    let nodes = format!(
        r#"  - key: call
    type: request
    method: "{{{{ trigger.body.method }}}}"
    url: "{base}/echo/{{{{ trigger.body.id }}}}"
    headers: {{ X-Id: "{{{{ trigger.body.id }}}}", X-Fixed: yes }}
    query: {{ q: "{{{{ trigger.body.id }}}}", many: [1, 2] }}
    body: {{ id: "{{{{ trigger.body.id }}}}", n: "{{{{ trigger.body.n }}}}", fixed: [true] }}
  - key: form
    type: request
    url: "{base}/form"
    content_type: form
    body: {{ a: 1, b: "x y", list: [p, q] }}
  - key: own
    type: request
    url: "{base}/own"
    headers: {{ Content-Type: application/vnd.api+json, Idempotency-Key: mine }}
    body: {{ data: 1 }}
  - type: response
    body: {{ echoed: "{{{{ nodes.call.body.body }}}}", status: "{{{{ nodes.call.status }}}}" }}
"#,
        base = up.base
    );
    let app = TestApp::spawn(&[("req.yaml", &sync_flow("request-key-01", &nodes))]);
    let r = app.post_json(
        "request-key-01",
        &json!({"method": "put", "id": "x1", "n": 5}),
    );
    assert_eq!(r.status, 200, "{r:?}\n{}", app.log_text());
    assert_eq!(
        r.json(),
        json!({"echoed": {"id": "x1", "n": 5, "fixed": [true]}, "status": 200})
    );
    let id = r.execution();
    let hit = &up.hits_on("/echo/x1")[0];
    assert_eq!(hit.method, "PUT");
    assert_eq!(
        hit.query, "many=1&many=2&q=x1",
        "query parameters go in name order"
    );
    assert_eq!(hit.headers["x-id"], "x1");
    assert_eq!(hit.headers["x-fixed"], "yes");
    assert_eq!(hit.headers["content-type"], "application/json");
    assert_eq!(hit.headers["idempotency-key"], format!("{id}-call"));
    assert_eq!(
        serde_json::from_str::<Json>(&hit.body).expect("json body"),
        json!({"id": "x1", "n": 5, "fixed": [true]})
    );
    let form = &up.hits_on("/form")[0];
    assert_eq!(form.method, "POST");
    assert_eq!(
        form.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(form.body, "a=1&b=x+y&list=p&list=q");
    // A node's own Content-Type and Idempotency-Key replace hookflow's.
    let own = &up.hits_on("/own")[0];
    assert_eq!(own.headers["content-type"], "application/vnd.api+json");
    assert_eq!(own.headers["idempotency-key"], "mine");
    assert_eq!(own.body, r#"{"data":1}"#);
    let record = app.execution(&id);
    assert_eq!(
        record["jobs"][0]["result"]["headers"]["content-type"],
        json!("application/json")
    );
}

#[test]
fn request_retries_503_with_the_same_idempotency_key() {
    let up = Upstream::start();
    let nodes = format!(
        "  - key: flaky\n    type: request\n    url: \"{}/flaky/2\"\n    retry: {{ attempts: 3, backoff: 100ms }}\n  - type: response\n    body: \"{{{{ nodes.flaky.body }}}}\"\n",
        up.base
    );
    let app = TestApp::spawn(&[("flaky.yaml", &sync_flow("flaky-key-001", &nodes))]);
    let r = app.post("flaky-key-001", &[], "");
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"try": 3})),
        "{}",
        app.log_text()
    );
    let hits = up.hits_on("/flaky/2");
    assert_eq!(hits.len(), 3);
    let keys: Vec<&str> = hits
        .iter()
        .map(|h| h.headers["idempotency-key"].as_str())
        .collect();
    assert!(
        keys.iter()
            .all(|k| *k == format!("{}-flaky", r.execution())),
        "{keys:?}"
    );
    // Backoff: about 100 ms, then about 200 ms (±25 %).
    let first_gap = hits[1].at - hits[0].at;
    let second_gap = hits[2].at - hits[1].at;
    assert!(
        first_gap >= Duration::from_millis(70) && first_gap < Duration::from_millis(600),
        "{first_gap:?}"
    );
    assert!(second_gap >= Duration::from_millis(145), "{second_gap:?}");
}

#[test]
fn request_honours_retry_after() {
    let up = Upstream::start();
    let nodes = format!(
        "  - key: slow_down\n    type: request\n    method: GET\n    url: \"{}/flaky/1?retry_after=1\"\n    retry: {{ attempts: 2, backoff: 10ms }}\n",
        up.base
    );
    let app = TestApp::spawn(&[("ra.yaml", &sync_flow("retry-after-k1", &nodes))]);
    let r = app.post("retry-after-k1", &[], "");
    assert_eq!(r.status, 200, "{r:?}");
    let hits = up.hits_on("/flaky/1");
    assert_eq!(hits.len(), 2);
    let gap = hits[1].at - hits[0].at;
    assert!(
        gap >= Duration::from_millis(950),
        "Retry-After: 1 was not honoured: {gap:?}"
    );
}

#[test]
fn request_failures_timeouts_and_ignore_fail() {
    let up = Upstream::start();
    let nodes = format!(
        r#"  - key: slow
    type: request
    method: GET
    url: "{base}/sleep/2000"
    timeout: 300ms
    ignore_fail: true
  - key: missing
    type: request
    method: GET
    url: "{base}/status/404"
    ignore_fail: true
  - key: refused
    type: request
    method: GET
    url: "http://127.0.0.1:9/nothing-listens-here"
    timeout: 1s
    ignore_fail: true
  - type: response
    body: {{ slow: "{{{{ nodes.slow }}}}", missing: "{{{{ nodes.missing.status }}}}", refused: "{{{{ nodes.refused.error is defined }}}}" }}
"#,
        base = up.base
    );
    let failing = format!("  - key: strict\n    type: request\n    method: GET\n    url: \"{}/status/404\"\n  - type: response\n    body: unreachable\n", up.base);
    let app = TestApp::spawn(&[
        ("soft.yaml", &sync_flow("ignore-fail-k1", &nodes)),
        ("hard.yaml", &sync_flow("non-2xx-key-1", &failing)),
    ]);
    let clock = Instant::now();
    let r = app.post("ignore-fail-k1", &[], "");
    assert!(
        clock.elapsed() < Duration::from_millis(1900),
        "the timeout did not cut the request"
    );
    assert_eq!(r.status, 200, "{r:?}\n{}", app.log_text());
    let body = r.json();
    assert!(
        body["slow"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("timed out"),
        "{body}"
    );
    assert_eq!(body["slow"].get("status"), None, "no response, no status");
    assert_eq!(body["missing"], json!(404));
    assert_eq!(body["refused"], json!(true));

    let r = app.post("non-2xx-key-1", &[], "");
    assert_eq!(r.status, 500);
    let record = app.execution(&r.execution());
    assert!(
        record["error"]
            .as_str()
            .unwrap_or_default()
            .contains("answered 404"),
        "{record}"
    );
}

#[test]
fn request_policy_denies_destinations() {
    let up = Upstream::start();
    let nodes = format!(
        "  - key: call\n    type: request\n    method: GET\n    url: \"{}/echo\"\n",
        up.base
    );
    let app = TestApp::spawn_with(
        &[("deny.yaml", &sync_flow("deny-key-0001", &nodes))],
        Options {
            args: vec!["--request-deny".into(), "127.0.0.0/8".into()],
            ..Options::default()
        },
    );
    let r = app.post("deny-key-0001", &[], "");
    assert_eq!(r.status, 500);
    let record = app.execution(&r.execution());
    assert!(
        record["error"]
            .as_str()
            .unwrap_or_default()
            .contains("denied by the server's request policy"),
        "{record}"
    );
    assert!(up.hits().is_empty());
}

#[test]
fn loops_over_lists_numbers_and_strings() {
    let nodes = r#"  - key: list
    type: loop
    over: trigger.body.items
    do:
      - { key: seen, type: calculation, expression: "loop.item ~ '@' ~ loop.index" }
  - key: count
    type: loop
    over: "3"
    do:
      - { key: n, type: calculation, expression: "loop.item * 10" }
  - key: chars
    type: loop
    over: "'hé!'"
    do:
      - key: grid
        type: loop
        over: "[1, 2]"
        do:
          - { key: cell, type: calculation, expression: "loop.item" }
      - { key: char, type: calculation, expression: "loop.item" }
  - key: empty
    type: loop
    over: "[]"
    do:
      - { type: end, status: failed }
  - type: response
    body: { list: "{{ nodes.list }}", last_seen: "{{ nodes.seen }}", n: "{{ nodes.n }}", char: "{{ nodes.char }}", cell: "{{ nodes.cell }}", empty: "{{ nodes.empty }}" }
"#;
    let too_many = "  - key: big\n    type: loop\n    over: \"20\"\n    max_iterations: 5\n    do:\n      - { type: log, message: x }\n";
    let app = TestApp::spawn(&[
        ("loops.yaml", &sync_flow("loops-key-001", nodes)),
        ("big.yaml", &sync_flow("loops-key-002", too_many)),
    ]);
    let r = app.post_json("loops-key-001", &json!({"items": ["a", "b", "c"]}));
    assert_eq!(r.status, 200, "{r:?}\n{}", app.log_text());
    assert_eq!(
        r.json(),
        json!({"list": {"count": 3}, "last_seen": "c@2", "n": 20, "char": "!", "cell": 2, "empty": {"count": 0}})
    );
    let record = app.execution(&r.execution());
    let seen: Vec<&Json> = record["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter(|j| j["key"] == "seen")
        .map(|j| &j["result"])
        .collect();
    assert_eq!(seen, vec![&json!("a@0"), &json!("b@1"), &json!("c@2")]);
    let cells = record["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter(|j| j["key"] == "cell")
        .count();
    assert_eq!(cells, 6, "3 characters × 2 cells");

    let r = app.post("loops-key-002", &[], "");
    assert_eq!(r.status, 500);
    let record = app.execution(&r.execution());
    assert!(
        record["error"]
            .as_str()
            .unwrap_or_default()
            .contains("more than max_iterations (5)"),
        "{record}"
    );
}

fn delayed(key: &str, wait: &str) -> String {
    format!(
        "title: Delayed\nenabled: true\ntrigger: {{ type: webhook, key: {key} }}\nnodes:\n  - key: before\n    type: calculation\n    expression: \"1\"\n  - key: pause\n    type: delay\n    duration: {wait}\n  - key: after\n    type: calculation\n    expression: nodes.before + 1\n  - key: seen\n    type: calculation\n    expression: nodes.pause is none\n"
    )
}

#[test]
fn a_waiting_run_survives_kill_9_and_wakes_on_time() {
    let mut app = TestApp::spawn(&[("delayed.yaml", &delayed("delay-key-0001", "3s"))]);
    let clock = Instant::now();
    let id = app.post("delay-key-0001", &[], "").execution();
    eventually(Duration::from_secs(5), "the run to wait", || {
        (app.execution(&id)["status"] == "waiting").then_some(())
    });
    let record = app.execution(&id);
    assert_eq!(record["jobs"][1]["status"], json!("waiting"));
    // While it waits, its job says when it wakes.
    assert!(record["jobs"][1]["result"]["until"].is_string(), "{record}");
    app.kill9();
    app.start();
    let record = app.finished(&id, Duration::from_secs(15));
    let took = clock.elapsed();
    assert_eq!(
        record["status"],
        json!("resolved"),
        "{record}\n{}",
        app.log_text()
    );
    assert_eq!(record["jobs"][2]["result"], json!(2));
    assert_eq!(record["jobs"][1]["status"], json!("resolved"));
    // A delay's result is null (SPEC §3), to the nodes after it too.
    assert_eq!(record["jobs"][1]["result"], json!(null), "{record}");
    assert_eq!(record["jobs"][3]["result"], json!(true), "{record}");
    assert!(
        took >= Duration::from_millis(2900),
        "woke too early: {took:?}"
    );
    assert!(took < Duration::from_secs(10), "woke too late: {took:?}");
}

#[test]
fn waiting_runs_do_not_hold_workers() {
    let app = TestApp::spawn_with(
        &[
            ("delayed.yaml", &delayed("delay-key-0002", "3s")),
            ("quick.yaml", "title: Quick\nenabled: true\ntrigger: { type: webhook, key: quick-key-001 }\nnodes:\n  - { key: x, type: calculation, expression: \"1\" }\n"),
        ],
        Options {
            args: vec!["--workers".into(), "1".into()],
            ..Options::default()
        },
    );
    let waiting: Vec<String> = (0..3)
        .map(|_| app.post("delay-key-0002", &[], "").execution())
        .collect();
    for id in &waiting {
        eventually(Duration::from_secs(5), "the run to wait", || {
            (app.execution(id)["status"] == "waiting").then_some(())
        });
    }
    let clock = Instant::now();
    let quick = app.post("quick-key-001", &[], "").execution();
    let record = app.finished(&quick, Duration::from_secs(2));
    assert_eq!(record["status"], json!("resolved"));
    assert!(
        clock.elapsed() < Duration::from_secs(2),
        "a waiting run held the only worker"
    );
    for id in &waiting {
        assert_eq!(
            app.finished(id, Duration::from_secs(10))["status"],
            json!("resolved")
        );
    }
}

#[test]
fn parallel_branches_really_run_at_the_same_time() {
    let up = Upstream::start();
    let nodes = format!(
        r#"  - key: both
    type: parallel
    branches:
      - - {{ key: one, type: request, method: GET, url: "{base}/sleep/1000" }}
      - - {{ key: two, type: request, method: GET, url: "{base}/sleep/1000" }}
  - type: response
    body: {{ one: "{{{{ nodes.one.body }}}}", two: "{{{{ nodes.two.status }}}}", both: "{{{{ nodes.both }}}}" }}
"#,
        base = up.base
    );
    let app = TestApp::spawn(&[("par.yaml", &sync_flow("parallel-key-1", &nodes))]);
    let clock = Instant::now();
    let r = app.post("parallel-key-1", &[], "");
    let took = clock.elapsed();
    assert_eq!(r.status, 200, "{r:?}\n{}", app.log_text());
    assert!(
        took < Duration::from_millis(1600),
        "two 1 s branches took {took:?}"
    );
    assert_eq!(
        r.json(),
        json!({"one": {"slept": 1000}, "two": 200, "both": [{"status": "resolved"}, {"status": "resolved"}]})
    );
}

#[test]
fn parallel_modes_and_first_response_wins() {
    let up = Upstream::start();
    let nodes = format!(
        r#"  - key: race
    type: parallel
    mode: race
    branches:
      - - {{ key: slow, type: request, method: GET, url: "{base}/sleep/1500" }}
      - - {{ key: fast, type: request, method: GET, url: "{base}/sleep/100" }}
  - key: any
    type: parallel
    mode: any
    branches:
      - - {{ key: broken, type: request, method: GET, url: "{base}/status/500" }}
      - - {{ key: fine, type: request, method: GET, url: "{base}/status/200" }}
  - key: answer
    type: parallel
    branches:
      - - {{ type: request, method: GET, url: "{base}/sleep/800" }}
        - {{ type: response, body: late }}
      - - {{ type: response, body: first }}
  - type: response
    body: unreachable
"#,
        base = up.base
    );
    let app = TestApp::spawn(&[("modes.yaml", &sync_flow("parallel-key-2", &nodes))]);
    let clock = Instant::now();
    let r = app.post("parallel-key-2", &[], "");
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "first"),
        "{r:?}\n{}",
        app.log_text()
    );
    assert!(
        clock.elapsed() < Duration::from_millis(1400),
        "race waited for the slow branch"
    );
    let record = app.finished(&r.execution(), Duration::from_secs(10));
    assert_eq!(record["status"], json!("resolved"));
    let job = |key: &str| {
        record["jobs"]
            .as_array()
            .and_then(|j| j.iter().find(|j| j["key"] == key).cloned())
            .unwrap_or(Json::Null)
    };
    assert_eq!(
        job("race")["result"],
        json!([{"status": "cancelled"}, {"status": "resolved"}])
    );
    assert_eq!(job("slow")["status"], json!("cancelled"));
    assert_eq!(job("any")["result"][1], json!({"status": "resolved"}));
    assert_eq!(job("any")["status"], json!("resolved"));
    assert_eq!(record["response"]["body"], json!("first"));
    // The parallel node whose branch answered was cut short by the run's
    // end; a finished run leaves no job open.
    assert_eq!(job("answer")["status"], json!("cancelled"), "{record}");
    let open: Vec<_> = record["jobs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|j| j["status"] == "running" || j["status"] == "waiting")
        .collect();
    assert!(open.is_empty(), "open jobs in a finished run: {open:?}");
}

#[test]
fn each_pass_of_a_loop_sends_its_own_idempotency_key() {
    let up = Upstream::start();
    let nodes = format!(
        "  - type: loop\n    over: trigger.body.items\n    do:\n      - type: loop\n        over: loop.item\n        do:\n          - key: post\n            type: request\n            url: \"{}/echo\"\n            body: {{ item: \"{{{{ loop.item }}}}\" }}\n  - type: response\n    body: done\n",
        up.base
    );
    let app = TestApp::spawn(&[("looped.yaml", &sync_flow("looped-key-001", &nodes))]);
    let r = app.post_json("looped-key-001", &json!({"items": [["A", "B"], ["C"]]}));
    assert_eq!(r.status, 200, "{r:?}\n{}", app.log_text());
    let id = r.execution();
    let mut sent: Vec<(String, String)> = up
        .hits_on("/echo")
        .iter()
        .map(|h| (h.body.clone(), h.headers["idempotency-key"].clone()))
        .collect();
    sent.sort();
    assert_eq!(
        sent,
        vec![
            (r#"{"item":"A"}"#.to_string(), format!("{id}-post-0-0")),
            (r#"{"item":"B"}"#.to_string(), format!("{id}-post-0-1")),
            (r#"{"item":"C"}"#.to_string(), format!("{id}-post-1-0")),
        ]
    );
}

#[test]
fn a_2xx_whose_body_cannot_be_read_keeps_its_status_and_is_not_sent_again() {
    let up = Upstream::start();
    // Over the 10 MiB an answer may be.
    let nodes = format!(
        "  - key: big\n    type: request\n    url: \"{}/big/10300\"\n    retry: {{ attempts: 3, backoff: 10ms }}\n    ignore_fail: true\n  - type: response\n    body: {{ status: \"{{{{ nodes.big.status }}}}\", error: \"{{{{ nodes.big.error }}}}\" }}\n",
        up.base
    );
    let app = TestApp::spawn(&[("big.yaml", &sync_flow("big-answer-01", &nodes))]);
    let r = app.post("big-answer-01", &[], "");
    assert_eq!(r.status, 200, "{r:?}\n{}", app.log_text());
    let answer = r.json();
    assert_eq!(answer["status"], json!(200), "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("larger than")),
        "{answer}"
    );
    // The upstream did what a 2xx says: not asked again.
    assert_eq!(up.hits_on("/big/10300").len(), 1);
    let record = app.execution(&r.execution());
    let tries = &record["jobs"][0]["tries"];
    assert_eq!(tries.as_array().map(Vec::len), Some(1), "{record}");
    assert_eq!(tries[0]["status"], json!(200), "{record}");
}

#[test]
fn a_header_value_with_a_line_break_fails_the_node_by_name() {
    let up = Upstream::start();
    let nodes = format!(
        "  - key: note\n    type: request\n    url: \"{}/echo\"\n    headers: {{ X-Note: \"{{{{ trigger.body.note }}}}\" }}\n    ignore_fail: true\n  - type: response\n    body: sent\n",
        up.base
    );
    let app = TestApp::spawn(&[("crlf.yaml", &sync_flow("crlf-header-01", &nodes))]);
    let r = app.post_json("crlf-header-01", &json!({"note": "a\r\nX-Injected: 1"}));
    assert_eq!(r.status, 500, "{r:?}\n{}", app.log_text());
    let record = app.execution(&r.execution());
    let error = record["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("header `X-Note` would hold a line break"),
        "{record}"
    );
    assert!(up.hits().is_empty(), "{:?}", up.hits());
}

#[test]
fn a_try_cut_off_by_the_run_s_timeout_is_recorded() {
    let up = Upstream::start();
    let nodes = format!(
        "  - key: slow\n    type: request\n    url: \"{}/sleep/3000\"\n    timeout: 60s\n  - type: response\n    body: done\n",
        up.base
    );
    let flow = sync_flow("cut-off-01", &nodes).replace("timeout: 20s", "timeout: 500ms");
    let app = TestApp::spawn(&[("cut.yaml", &flow)]);
    let r = app.post("cut-off-01", &[], "");
    assert_eq!(r.status, 408, "{r:?}\n{}", app.log_text());
    let record = app.finished(&r.execution(), Duration::from_secs(10));
    let job = &record["jobs"][0];
    assert_eq!(job["status"], json!("cancelled"), "{record}");
    let tries = job["tries"].as_array().cloned().unwrap_or_default();
    assert_eq!(tries.len(), 1, "the upstream was called: {record}");
    assert!(
        tries[0]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("cut off")),
        "{record}"
    );
    assert!(
        tries[0]["duration_ms"].as_u64().is_some_and(|d| d >= 400),
        "{record}"
    );
    assert_eq!(up.hits_on("/sleep/3000").len(), 1);
}

#[test]
fn several_set_cookie_headers_stay_apart() {
    let up = Upstream::start();
    let nodes = format!(
        "  - key: call\n    type: request\n    method: GET\n    url: \"{}/cookies\"\n  - type: response\n    body: {{ cookies: \"{{{{ nodes.call.headers['set-cookie'] }}}}\" }}\n",
        up.base
    );
    let app = TestApp::spawn(&[("cookies.yaml", &sync_flow("cookies-01", &nodes))]);
    let r = app.post("cookies-01", &[], "");
    assert_eq!(r.status, 200, "{r:?}\n{}", app.log_text());
    assert_eq!(
        r.json()["cookies"],
        json!(["a=1; Expires=Wed, 21 Oct 2037 07:28:00 GMT", "b=2; Path=/"])
    );
}
