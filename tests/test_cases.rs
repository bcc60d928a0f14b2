//! A run becomes a test case: `hookflow executions export-test` and
//! `GET /api/executions/{id}/test-case` write a test file of one case that
//! passes `hookflow test` against the workflow that ran, and fails once the
//! workflow is broken.

use crate::harness::{closed_port, TestApp, ADMIN};
use crate::upstream::Upstream;
use serde_json::json;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

/// Runs the binary without the `HOOKFLOW_*` variables of the environment.
pub fn hookflow(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookflow"));
    cmd.args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("HOOKFLOW_") {
            cmd.env_remove(name);
        }
    }
    cmd.output().expect("the hookflow binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn workflow(upstream: &Upstream) -> String {
    format!(
        r#"title: Forward an order
enabled: true
trigger:
  type: webhook
  mode: sync
  key: export-test-key-1
  parse:
    body:
      - {{ key: order.id, alias: order }}
nodes:
  - key: paid
    type: condition
    if: "trigger.body.status == 'SUCCESS'"
    reject_on_false: true
  - key: erp
    type: request
    url: "{base}/flaky/1"
    retry: {{ attempts: 3, backoff: 10ms }}
    body: {{ order: "{{{{ vars.order }}}}" }}
  - key: reply
    type: response
    body:
      code: SUCCESS
      order: "{{{{ vars.order }}}}"
      erp_try: "{{{{ nodes.erp.body.try }}}}"
      execution: "{{{{ execution.id }}}}"
      at: "{{{{ execution.started_at }}}}"
"#,
        base = upstream.base
    )
}

/// `hookflow test` on the folder: (passed, output).
fn test_folder(dir: &Path) -> (bool, String) {
    let out = hookflow(&["test", &dir.display().to_string()]);
    (
        out.status.success(),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

#[test]
fn a_run_with_retries_becomes_a_passing_test_case() {
    let upstream = Upstream::start();
    let source = workflow(&upstream);
    let mut app = TestApp::spawn(&[("fwd.yaml", &source)]);
    let r = app.post_json(
        "export-test-key-1",
        &json!({"order": {"id": "A-1"}, "status": "SUCCESS"}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let id = r.execution();
    let record = app.finished(&id, Duration::from_secs(10));
    assert_eq!(record["jobs"][1]["tries"].as_array().map(Vec::len), Some(2));

    // The CLI, through the server's admin API.
    let out = hookflow(&[
        "executions",
        "export-test",
        &id,
        "--server",
        &app.base,
        "--admin-token",
        ADMIN,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let yaml = text(&out.stdout);
    assert!(yaml.contains("erp:"), "{yaml}");
    assert!(!yaml.contains("x-hookflow"), "{yaml}");
    // The admin route: the same file, as a download.
    let r = app.admin_get(&format!("/api/executions/{id}/test-case"));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/yaml"));
    assert_eq!(
        r.header("content-disposition"),
        Some("attachment; filename=\"fwd.test.yaml\"")
    );
    assert_eq!(r.body, yaml);
    let r = app.admin_get("/api/executions/00000000-0000-0000-0000-000000000000/test-case");
    assert_eq!(r.status, 404);

    // Saved beside the workflow, it passes `hookflow test`.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("fwd.yaml"), &source).expect("write");
    std::fs::write(dir.path().join("fwd.test.yaml"), &yaml).expect("write");
    let (passed, output) = test_folder(dir.path());
    assert!(passed, "{output}\n{yaml}");
    assert!(output.contains("1 passed, 0 failed"), "{output}");

    // A changed answer, a node added on the path, one try fewer: each fails.
    let broken = [
        source.replace("code: SUCCESS", "code: DONE"),
        source.replace(
            "  - key: erp\n",
            "  - key: note\n    type: log\n    message: hi\n  - key: erp\n",
        ),
        source.replace("attempts: 3", "attempts: 1"),
    ];
    for workflow in broken {
        std::fs::write(dir.path().join("fwd.yaml"), &workflow).expect("write");
        let (passed, output) = test_folder(dir.path());
        assert!(!passed, "a broken workflow passed:\n{workflow}\n{output}");
        assert!(output.contains("0 passed, 1 failed"), "{output}");
    }

    // Without a server, from the data folder: the same file.
    let mut stopped = app.sigterm();
    let _ = stopped.wait();
    let data = app.data_path().display().to_string();
    let nobody = closed_port();
    let out = hookflow(&[
        "executions",
        "export-test",
        &id,
        "--listen",
        &format!("127.0.0.1:{}", nobody.port),
        "--data",
        &data,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), yaml);
    app.start();
}

/// A run whose workflow requires a secret-bearing header becomes a case
/// that sends the header as `[redacted]`: the case passes, and the value
/// is not in it.
#[test]
fn a_case_keeps_a_required_secret_bearing_header_without_its_value() {
    let source = "title: Token\nenabled: true\ntrigger:\n  type: webhook\n  mode: sync\n  key: export-token-key\n  parse:\n    headers: [ { key: X-Shop-Token, required: true } ]\nnodes:\n  - type: response\n    body: { ok: true }\n";
    let app = TestApp::spawn(&[("tok.yaml", source)]);
    let r = app.post(
        "export-token-key",
        &[("x-shop-token", "shop-42-SECRET")],
        "",
    );
    assert_eq!(r.status, 200, "{r:?}");
    let id = r.execution();
    app.finished(&id, Duration::from_secs(10));
    let case = app.admin_get(&format!("/api/executions/{id}/test-case"));
    assert_eq!(case.status, 200, "{case:?}");
    assert!(!case.body.contains("shop-42-SECRET"), "{}", case.body);
    assert!(case.body.contains("x-shop-token"), "{}", case.body);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("tok.yaml"), source).expect("write");
    std::fs::write(dir.path().join("tok.test.yaml"), &case.body).expect("write");
    let (passed, output) = test_folder(dir.path());
    assert!(passed, "{output}\n{}", case.body);
}
