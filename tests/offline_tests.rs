//! `hookflow test` end to end: strictly offline (a real upstream that counts
//! requests sees none), list stubs, request expectations, file arguments and
//! `--case`.

use crate::upstream::Upstream;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `hookflow test ARGS…` in `dir` (at most 60 s); its exit code and output.
fn hookflow_test(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookflow"))
        .arg("test")
        .args(args)
        .current_dir(dir)
        .env_remove("HOOKFLOW_WORKFLOWS")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the hookflow binary runs");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("hookflow test did not finish in 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = out.join().expect("stdout read");
    let stderr = err.join().expect("stderr read");
    (status.code(), format!("{stdout}\n--- stderr ---\n{stderr}"))
}

/// A folder with `shop.yaml`, whose request node `inventory` points at
/// `upstream` (two tries), and `shop.test.yaml` with `cases`.
fn shop(upstream: &Upstream, cases: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let workflow = format!(
        r#"title: Shop
enabled: true
trigger: {{ type: webhook, mode: sync }}
nodes:
  - key: inventory
    type: request
    url: "{base}/reserve?shop=s1"
    headers: {{ X-Shop: s1 }}
    body: {{ sku: "{{{{ trigger.body.sku }}}}", amount: "{{{{ trigger.body.amount }}}}" }}
    retry: {{ attempts: 2, backoff: 10ms }}
  - key: done
    type: response
    body: {{ reserved: "{{{{ nodes.inventory.body.reserved }}}}" }}
"#,
        base = upstream.base
    );
    std::fs::write(dir.path().join("shop.yaml"), workflow).expect("workflow written");
    std::fs::write(dir.path().join("shop.test.yaml"), cases).expect("test file written");
    dir
}

#[test]
fn a_misspelled_stub_key_is_an_error_of_the_test_file_and_nothing_is_sent() {
    let upstream = Upstream::start();
    let dir = shop(
        &upstream,
        "cases:\n  - name: reserves\n    request: { body: { sku: a, amount: 12.5 } }\n    stubs:\n      inventroy: { body: { reserved: true } }\n    expect: { status: 200 }\n",
    );
    let (code, out) = hookflow_test(dir.path(), &["."]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("shop.test.yaml:5:7: ")
            && out.contains(
                "stub `inventroy` names no request node of workflow `shop`: did you mean `inventory`?"
            ),
        "{out}"
    );
    assert!(out.contains("0 passed, 1 failed"), "{out}");
    assert_eq!(upstream.hits().len(), 0, "{out}");
}

/// Every problem of a test file is reported at once, each at its place:
/// unknown fields at any depth, a value of the wrong kind, a case without
/// its name.
#[test]
fn a_test_file_reports_every_problem_at_once() {
    let upstream = Upstream::start();
    let dir = shop(
        &upstream,
        "cases:\n  - name: first\n    requst: { body: {} }\n    expect: { stauts: 200 }\n  - name: [not, text]\n    expect: { status: 200 }\n  - expect: { status: 201 }\n    stubs:\n      inventory: { bodyy: 1 }\n",
    );
    let (code, out) = hookflow_test(dir.path(), &["."]);
    assert_ne!(code, Some(0), "{out}");
    for (at, what) in [
        ("shop.test.yaml:3:5: ", "`requst`"),
        ("shop.test.yaml:4:15: ", "`stauts`"),
        ("shop.test.yaml:5:11: ", "invalid type"),
        ("shop.test.yaml:9:20: ", "`bodyy`"),
        ("shop.test.yaml:7:5: ", "missing field `name`"),
    ] {
        assert!(
            out.lines().any(|l| l.contains(at) && l.contains(what)),
            "{at}{what} in:\n{out}"
        );
    }
    // `name` left out after its error is not said to be missing as well.
    assert_eq!(out.matches("missing field `name`").count(), 1, "{out}");
    assert_eq!(upstream.hits().len(), 0, "{out}");

    // Problems found by reading and problems found in what was read come
    // together (before, a duplicate name or a bad status showed only once
    // the unknown field was fixed).
    let dir = shop(
        &upstream,
        "cases:\n  - name: a\n    requst: { body: {} }\n    expect: { status: 200 }\n  - name: a\n    request: { body: {} }\n    expect: { status: 99 }\n",
    );
    let (code, out) = hookflow_test(dir.path(), &["."]);
    assert_ne!(code, Some(0), "{out}");
    for (at, what) in [
        ("shop.test.yaml:3:5: ", "`requst`"),
        (
            "shop.test.yaml:5:11: ",
            "a case named `a` is already on line 2",
        ),
        ("shop.test.yaml:7:23: ", "not 99"),
    ] {
        assert!(
            out.lines().any(|l| l.contains(at) && l.contains(what)),
            "{at}{what} in:\n{out}"
        );
    }

    // Reading stops after 200, and says so.
    let many: String = (0..201)
        .map(|i| format!("  - name: c{i}\n    requst: {{}}\n"))
        .collect();
    let dir = shop(&upstream, &format!("cases:\n{many}"));
    let (code, out) = hookflow_test(dir.path(), &["."]);
    assert_ne!(code, Some(0), "{out}");
    assert_eq!(out.matches("unknown field `requst`").count(), 200, "{out}");
    assert!(out.contains("more than 200 problems"), "{out}");
}

#[test]
fn a_request_node_without_a_stub_fails_the_case_and_nothing_is_sent() {
    let upstream = Upstream::start();
    let dir = shop(
        &upstream,
        "cases:\n  - name: forgot the stub\n    request: { body: { sku: a, amount: 12.5 } }\n    expect: { status: 200, run: resolved }\n",
    );
    let (code, out) = hookflow_test(dir.path(), &["shop.test.yaml"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FAIL shop › forgot the stub"), "{out}");
    assert!(
        out.contains("request node `inventory` has no stub, and tests send nothing: add one to the case, e.g. `stubs: { inventory: { status: 200, body: {} } }`"),
        "{out}"
    );
    assert_eq!(upstream.hits().len(), 0, "{out}");
}

#[test]
fn a_list_stub_answers_one_try_each_and_running_out_fails_the_case() {
    let upstream = Upstream::start();
    let dir = shop(
        &upstream,
        r#"cases:
  - name: the inventory recovers on the second try
    request: { body: { sku: a, amount: 12.5 } }
    stubs:
      inventory:
        - { status: 500 }
        - { status: 200, body: { reserved: true } }
    expect:
      status: 200
      body: { reserved: true }
      run: resolved
      requests:
        inventory: { method: POST, body: { sku: a } }
  - name: the inventory stays down
    request: { body: { sku: a, amount: 12.5 } }
    stubs:
      inventory: [ { status: 500 } ]
    expect: { run: failed }
"#,
    );
    let (code, out) = hookflow_test(dir.path(), &["shop.yaml"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("ok   shop › the inventory recovers on the second try"),
        "{out}"
    );
    // The run failed as expected, but a list that runs out fails the case.
    assert!(
        out.contains("FAIL shop › the inventory stays down"),
        "{out}"
    );
    assert!(
        out.contains(
            "request node `inventory` was tried more often than its stub list has answers (1)"
        ),
        "{out}"
    );
    assert!(out.contains("1 passed, 1 failed"), "{out}");
    assert_eq!(upstream.hits().len(), 0, "{out}");
}

#[test]
fn request_expectations_check_what_was_sent_types_included() {
    let upstream = Upstream::start();
    let dir = shop(
        &upstream,
        r#"cases:
  - name: amount goes out as a number
    request: { body: { sku: a, amount: 12.5 } }
    stubs:
      inventory: { body: { reserved: true } }
    expect:
      requests:
        inventory:
          - method: post
            url: URL
            query: { shop: s1 }
            headers: { x-shop: s1, content-type: application/json }
            body: { sku: a, amount: 12.5 }
  - name: amount expected as a string
    request: { body: { sku: a, amount: 12.5 } }
    stubs:
      inventory: { body: { reserved: true } }
    expect:
      requests:
        inventory:
          - { query: { shop: s2 }, headers: { X-Shop: s2 }, body: { amount: "12.5" } }
  - name: one request expected twice
    request: { body: { sku: a, amount: 12.5 } }
    stubs:
      inventory: { body: { reserved: true } }
    expect:
      requests:
        inventory: [ {}, {} ]
"#
        .replace("URL", &format!("{}/reserve?shop=s1", upstream.base))
        .as_str(),
    );
    let (code, out) = hookflow_test(dir.path(), &["."]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("ok   shop › amount goes out as a number"),
        "{out}"
    );
    assert!(
        out.contains("FAIL shop › amount expected as a string"),
        "{out}"
    );
    for part in [
        "the request of `inventory` differs:",
        r#"query shop: expected "s2", sent "s1""#,
        r#"header X-Shop: expected "s2", sent "s1""#,
        r#"body.amount: expected "12.5" (a string), sent 12.5 (a number)"#,
        &format!(
            r#"sent: POST {}/reserve?shop=s1 {{"amount":12.5,"sku":"a"}}"#,
            upstream.base
        ),
        "FAIL shop › one request expected twice",
        "requests `inventory`: expected 2 requests, 1 was sent",
        "1 passed, 2 failed",
    ] {
        assert!(out.contains(part), "{part}\n in {out}");
    }
    assert_eq!(upstream.hits().len(), 0, "{out}");
}

#[test]
fn files_and_case_names_select_what_runs() {
    let upstream = Upstream::start();
    let cases = r#"cases:
  - name: first
    request: { body: { sku: a, amount: 1 } }
    stubs: { inventory: { body: { reserved: true } } }
    expect: { body: { reserved: true } }
  - name: second
    request: { body: { sku: b, amount: 2 } }
    stubs: { inventory: { body: { reserved: false } } }
    expect: { body: { reserved: false } }
  - name: third
    request: { body: { sku: c, amount: 3 } }
    stubs: { inventory: { body: { reserved: false } } }
    expect: { body: { reserved: true } }
"#;
    let dir = shop(&upstream, cases);
    std::fs::write(
        dir.path().join("other.yaml"),
        "title: Other\ntrigger: { type: webhook }\nnodes: []\n",
    )
    .expect("workflow written");
    let (code, out) = hookflow_test(dir.path(), &["shop.yaml", "--case", "second"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("ok   shop › second"), "{out}");
    assert!(
        !out.contains("› first") && !out.contains("› third"),
        "{out}"
    );
    assert!(out.contains("1 passed, 0 failed"), "{out}");

    let (code, out) = hookflow_test(
        dir.path(),
        &["shop.test.yaml", "--case", "first", "--case", "second"],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("2 passed, 0 failed"), "{out}");

    // The whole file (the folder names it once); the third case fails.
    let (code, out) = hookflow_test(dir.path(), &["shop.test.yaml", "."]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("2 passed, 1 failed"), "{out}");

    let (code, out) = hookflow_test(dir.path(), &[".", "--case", "fourth"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(r#"FAIL --case "fourth": no case has this name in the test files run"#),
        "{out}"
    );

    let (code, out) = hookflow_test(dir.path(), &["other.yaml"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(
            "no test file for this workflow: write its cases in other.test.yaml next to it"
        ),
        "{out}"
    );
    assert_eq!(upstream.hits().len(), 0, "{out}");
}

/// Runs `hookflow validate ARGS…` in `dir`: its exit code and output.
fn hookflow_validate(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hookflow"))
        .arg("validate")
        .args(args)
        .current_dir(dir)
        .env_remove("HOOKFLOW_WORKFLOWS")
        .output()
        .expect("the hookflow binary runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        out.status.code(),
        format!(
            "{}\n--- stderr ---\n{}",
            text(&out.stdout),
            text(&out.stderr)
        ),
    )
}

/// `expect.run` is one of resolved, failed or aborted: anything else is an
/// error of the test file at its place, from `test` and `validate` alike.
#[test]
fn an_unknown_run_status_is_an_error_at_its_place() {
    let upstream = Upstream::start();
    let dir = shop(
        &upstream,
        "cases:\n  - name: reserves\n    request: { body: { sku: a, amount: 12.5 } }\n    stubs:\n      inventory: { body: { reserved: true } }\n    expect: { status: 200, run: resolve }\n",
    );
    let (code, out) = hookflow_test(dir.path(), &["."]);
    assert_eq!(code, Some(1), "{out}");
    let said = "shop.test.yaml:6:33: unknown value `resolve`; did you mean `resolved`?";
    assert!(out.contains(said), "{out}");
    assert!(!out.contains("run: expected"), "{out}");
    let (code, out) = hookflow_validate(dir.path(), &["shop.test.yaml"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("shop.test.yaml:6:33: error: unknown value `resolve`"),
        "{out}"
    );
    assert_eq!(upstream.hits().len(), 0, "{out}");
}

/// What a case could only find when it runs is an error of the test file at
/// its place, from `test` and `validate` alike, before anything runs: two
/// bodies, a missing `body_file`, a status that is not one, a case name
/// given twice.
#[test]
fn mistakes_found_before_a_case_runs_are_errors_at_their_place() {
    let upstream = Upstream::start();
    let dir = shop(
        &upstream,
        "cases:\n  - name: two bodies\n    request: { body: { n: 1 }, raw_body: \"{}\" }\n  - name: no file\n    request: { body_file: nope.json }\n  - name: odd statuses\n    stubs:\n      inventory:\n        - { status: 503 }\n        - { status: 99 }\n    expect: { status: 700 }\n  - name: two bodies\n",
    );
    let said = [
        (
            "shop.test.yaml:3:42: ",
            "give one of `body`, `body_file` or `raw_body`",
        ),
        (
            "shop.test.yaml:5:27: ",
            "body_file `nope.json` is not a file",
        ),
        ("shop.test.yaml:10:21: ", "from 100 to 599, not 99"),
        ("shop.test.yaml:11:23: ", "from 100 to 599, not 700"),
        (
            "shop.test.yaml:12:11: ",
            "a case named `two bodies` is already on line 2",
        ),
    ];
    let (code, out) = hookflow_test(dir.path(), &["."]);
    assert_eq!(code, Some(1), "{out}");
    let (vcode, vout) = hookflow_validate(dir.path(), &["shop.test.yaml"]);
    assert_eq!(vcode, Some(1), "{vout}");
    for (at, what) in said {
        for out in [&out, &vout] {
            assert!(
                out.lines().any(|l| l.contains(at) && l.contains(what)),
                "{at}{what} in:\n{out}"
            );
        }
    }
    assert!(!out.contains("ok   "), "no case runs: {out}");
    assert_eq!(upstream.hits().len(), 0, "{out}");
}

/// A test file without its workflow says so, in the same words from `test`
/// as from `validate`.
#[test]
fn a_test_file_without_its_workflow_says_which_is_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("orphan.test.yaml"),
        "cases:\n  - name: c\n    expect: { status: 200 }\n",
    )
    .expect("written");
    let said = "no workflow `orphan` next to this test file (expected orphan.yaml)";
    let (code, out) = hookflow_test(dir.path(), &["orphan.test.yaml"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(said), "{out}");
    assert!(!out.contains("cannot read"), "{out}");
    let (code, out) = hookflow_validate(dir.path(), &["orphan.test.yaml"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(said), "{out}");
}

/// What a case compares, as the server would answer: a swapped value is
/// named by its path (before, a line diff cancelled it out and printed an
/// empty diff), 25 equals 25.0, a refused request that the case expects
/// only a body of passes (before: "expected None"), its headers are
/// checked (before: never), the method and `max_body` are checked as the
/// server does (before: 200 for GET and for a body over the limit), and
/// `trigger.path` carries the pinned key (before: the file's id).
#[test]
fn cases_compare_answers_as_the_server_gives_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("calc.yaml"),
        r#"title: Calc
enabled: true
trigger:
  type: webhook
  mode: sync
  key: calc-pinned-key1
  max_body: 100B
  parse:
    body: [ { key: amount, required: true } ]
nodes:
  - key: total
    type: calculation
    expression: vars.amount * 2
  - type: response
    body:
      total: "{{ nodes.total }}"
      a: { x: 2 }
      b: { x: 1 }
      path: "{{ trigger.path }}"
"#,
    )
    .expect("workflow written");
    std::fs::write(
        dir.path().join("calc.test.yaml"),
        r#"cases:
  - name: a decimal total equals its whole number
    request: { body: { amount: 12.5 } }
    expect:
      status: 200
      body: { total: 25, path: /api/webhook:trigger/calc-pinned-key1 }
  - name: swapped values are named
    request: { body: { amount: 1 } }
    expect: { body: { a: { x: 1 }, b: { x: 2 } } }
  - name: a refused request matches on its body alone
    request: { body: {} }
    expect: { body: { error: bad_request } }
  - name: a refused request's headers are checked
    request: { body: {} }
    expect: { status: 400, headers: { x-never: sent } }
  - name: another method is refused
    request: { method: GET }
    expect: { status: 405 }
  - name: a body over max_body is refused
    request: { body: { amount: 1, pad: "ppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppp" } }
    expect: { status: 413 }
"#,
    )
    .expect("test file written");
    let (code, out) = hookflow_test(dir.path(), &["calc.yaml"]);
    assert_eq!(code, Some(1), "{out}");
    for passed in [
        "ok   calc › a decimal total equals its whole number",
        "ok   calc › a refused request matches on its body alone",
        "ok   calc › another method is refused",
        "ok   calc › a body over max_body is refused",
        "FAIL calc › swapped values are named",
        "body.a.x: expected 1 (a number), sent 2 (a number)",
        "body.b.x: expected 2 (a number), sent 1 (a number)",
        "FAIL calc › a refused request's headers are checked",
        "header x-never: expected \"sent\", not sent",
        "4 passed, 2 failed",
    ] {
        assert!(out.contains(passed), "{passed:?} in\n{out}");
    }
    assert!(!out.contains("Some("), "{out}");
}

/// A failing case prints no secret: a secret-bearing header's values are
/// not shown, and a declared secret's value is `[redacted]` wherever it
/// appears (a body, a URL). Before, `header authorization: expected
/// "Bearer abd", sent "Bearer sk_live_…"` went to the CI log.
#[test]
fn a_failing_case_prints_no_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("pay.yaml"),
        r#"title: Pay
enabled: true
secrets: [API_TOKEN]
trigger: { type: webhook, mode: sync }
nodes:
  - key: charge
    type: request
    url: https://psp.example/charge
    headers: { Authorization: "Bearer {{ secrets.API_TOKEN }}" }
    body: { token: "{{ secrets.API_TOKEN }}" }
"#,
    )
    .expect("workflow written");
    std::fs::write(
        dir.path().join("pay.test.yaml"),
        r#"cases:
  - name: charges with the token
    request: { body: {} }
    stubs: { charge: { status: 200 } }
    expect:
      requests:
        charge: { headers: { Authorization: "Bearer wrong" }, body: { token: wrong } }
"#,
    )
    .expect("test file written");
    let out = Command::new(env!("CARGO_BIN_EXE_hookflow"))
        .args(["test", "pay.yaml"])
        .current_dir(dir.path())
        .env("API_TOKEN", "sk_live_4f9a2c")
        .output()
        .expect("hookflow test runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL pay › charges with the token"), "{text}");
    assert!(
        text.contains("a secret-bearing header: its values are not shown"),
        "{text}"
    );
    assert!(text.contains("[redacted]"), "{text}");
    assert!(!text.contains("sk_live_4f9a2c"), "{text}");
}

/// Running no case is a failure, not a pass: a folder without test files
/// (a mistyped path in CI) or test files without cases. Before: "0 passed,
/// 0 failed" and exit 0.
#[test]
fn running_no_case_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, out) = hookflow_test(dir.path(), &["."]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FAIL no test case was run from ."), "{out}");
    std::fs::write(
        dir.path().join("a.yaml"),
        "title: A\ntrigger: { type: webhook }\nnodes:\n  - { type: log, message: a }\n",
    )
    .expect("workflow");
    std::fs::write(dir.path().join("a.test.yaml"), "cases: []\n").expect("test file");
    let (code, out) = hookflow_test(dir.path(), &["."]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("0 passed, 1 failed"), "{out}");
}

#[test]
fn a_test_file_s_env_is_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    for id in ["a", "b"] {
        std::fs::write(
            dir.path().join(format!("{id}.yaml")),
            "title: T\nsecrets: [HF_SHARED_S]\ntrigger: { type: webhook, mode: sync }\nnodes:\n  - type: response\n    body: { s: \"{{ secrets.HF_SHARED_S }}\" }\n",
        )
        .expect("workflow");
    }
    std::fs::write(
        dir.path().join("a.test.yaml"),
        "env: { HF_SHARED_S: from-a }\ncases:\n  - name: sees its env\n    expect: { body: { s: from-a } }\n",
    )
    .expect("test file");
    // b sets nothing: the secret is unset for it, whatever ran before.
    std::fs::write(
        dir.path().join("b.test.yaml"),
        "cases:\n  - name: sees no env of a\n    expect: { body: { s: \"\" } }\n",
    )
    .expect("test file");
    let (code, out) = hookflow_test(dir.path(), &["."]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("2 passed, 0 failed"), "{out}");
}

#[test]
fn a_case_that_expects_nothing_is_an_error_at_its_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("a.yaml"),
        "title: A\ntrigger: { type: webhook, mode: sync }\nnodes:\n  - { type: response, status: 500 }\n",
    )
    .expect("workflow");
    std::fs::write(
        dir.path().join("a.test.yaml"),
        "cases:\n  - name: no expect at all\n  - name: a null body\n    expect: { body: null }\n",
    )
    .expect("test file");
    let (code, out) = hookflow_test(dir.path(), &["."]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("a.test.yaml:2:5: case `no expect at all` expects nothing, so it cannot fail"),
        "{out}"
    );
    assert!(
        out.contains("a.test.yaml:4:15: `body: null` expects nothing"),
        "{out}"
    );
}
