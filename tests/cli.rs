//! The command line: `validate` and `schema`.

use std::path::Path;
use std::process::{Command, Output};

fn hookflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hookflow"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the hookflow binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_schema_file_in_docs_is_current() {
    let out = hookflow(&["schema"]);
    assert!(out.status.success());
    let kept = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/workflow.schema.json"),
    )
    .expect("docs/workflow.schema.json exists");
    assert!(
        text(&out.stdout) == kept,
        "docs/workflow.schema.json is stale: run `just schema`"
    );
}

#[test]
fn every_example_workflow_validates_and_points_at_the_schema() {
    let out = hookflow(&["validate", "workflows"]);
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("ok: "), "{}", text(&out.stdout));
    for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows"))
        .expect("workflows/")
    {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let is_test_file = name.ends_with(".test.yaml") || name.ends_with(".test.yml");
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") && !is_test_file {
            let body = std::fs::read_to_string(&path).expect("readable");
            assert!(
                body.starts_with("# yaml-language-server: $schema="),
                "{} must start with the schema line",
                path.display()
            );
        }
    }
}

#[test]
fn validate_prints_positions_and_fails_on_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("broken.yaml"),
        "title: Broken\ntrigger:\n  type: webhook\n  mode: sync\nnodes:\n  - type: delay\n    duration: 5s\n  - type: log\n    message: \"{{ vars. }}\"\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("fine.yaml"),
        "title: Fine\ntrigger: { type: webhook }\n",
    )
    .expect("write");
    let dir_arg = dir.path().to_str().expect("utf-8 path");
    let out = hookflow(&["validate", dir_arg]);
    assert_eq!(out.status.code(), Some(1), "stdout:\n{}", text(&out.stdout));
    let stdout = text(&out.stdout);
    let file = dir.path().join("broken.yaml");
    let expected = [
        format!(
            "{}:6:11: error: a `delay` node cannot be used in a sync workflow",
            file.display()
        ),
        format!(
            "{}:9:14: error: template does not compile: syntax error",
            file.display()
        ),
    ];
    for line in expected {
        assert!(stdout.contains(&line), "missing `{line}` in:\n{stdout}");
    }
    assert!(
        text(&out.stderr).contains("2 error(s)"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn validate_warns_about_unset_secrets_unless_required() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("s.yaml"),
        "title: S\nsecrets: [HOOKFLOW_TEST_SURELY_UNSET]\ntrigger: { type: webhook }\n",
    )
    .expect("write");
    let dir_arg = dir.path().to_str().expect("utf-8 path");
    let out = hookflow(&["validate", dir_arg]);
    assert!(out.status.success());
    assert!(text(&out.stdout)
        .contains(":2:11: warning: secret `HOOKFLOW_TEST_SURELY_UNSET` is declared but not set"));
    let out = hookflow(&["validate", "--require-secrets", dir_arg]);
    assert_eq!(out.status.code(), Some(1));
}

/// A sync payment callback the way a new user wrote it (issue 15), with
/// `extra` nodes after its first one.
fn callback(extra: &str) -> String {
    format!(
        "title: Pay\ntrigger:\n  type: webhook\n  mode: sync\n  parse:\n    body:\n      - {{ key: trade_status }}\n      - {{ key: total_amount }}\nnodes:\n  - type: condition\n    if: vars.trade_status == \"TRADE_SUCCESS\"\n    then:\n      - type: response\n        body: success\n    else:\n      - type: response\n        body: fail\n{extra}"
    )
}

/// `validate PATH…` in a fresh folder holding `files`; (exit code, stdout, stderr).
fn validate(
    files: &[(&str, &str)],
    args: &[&str],
) -> (Option<i32>, String, String, tempfile::TempDir) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    for (name, body) in files {
        std::fs::write(dir.join(name), body).expect("write");
    }
    let paths: Vec<String> = args
        .iter()
        .map(|a| match a.strip_prefix('@') {
            Some(name) => dir.join(name).display().to_string(),
            None => a.to_string(),
        })
        .collect();
    let mut all = vec!["validate"];
    all.extend(paths.iter().map(String::as_str));
    let out = hookflow(&all);
    (out.status.code(), text(&out.stdout), text(&out.stderr), tmp)
}

#[test]
fn validate_takes_files_as_well_as_folders() {
    let good = callback("");
    let (code, stdout, stderr, dir) = validate(
        &[
            ("pay.yaml", &good),
            ("pay.test.yaml", "cases: []\n"),
            ("broken.yaml", "title: [\n"),
        ],
        &["@pay.yaml", "@pay.test.yaml"],
    );
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("ok: 2 workflow file(s) valid"),
        "only the files named (the workflow and its test file), not their folder: {stdout}"
    );
    // A test file named on purpose is checked against its workflow: a stub
    // key naming no request node is an error at its position, with a hint.
    let stubbed = "cases:\n  - name: paid\n    stubs:\n      inventroy: { status: 200 }\n";
    let (code, stdout, _, _) = validate(
        &[("pay.yaml", &good), ("pay.test.yaml", stubbed)],
        &["@pay.test.yaml"],
    );
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("pay.test.yaml:4:7: error: stub `inventroy` names no request node"),
        "{stdout}"
    );
    // A file and a folder together; a path that is not there.
    let missing = dir.path().join("nope.yaml");
    let out = hookflow(&[
        "validate",
        dir.path().join("pay.yaml").to_str().expect("utf-8"),
        missing.to_str().expect("utf-8"),
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON list");
    assert_eq!(
        list,
        serde_json::json!([{
            "path": missing.display().to_string(),
            "line": 1,
            "column": 1,
            "severity": "error",
            "message": "no such file or folder",
        }])
    );
}

#[test]
fn validate_reports_every_error_of_a_file() {
    // Three independent errors: a misspelt field, a value of the wrong type,
    // an unknown node type. The first two used to hide the others.
    let three = callback(
        "  - type: log\n    message: paid\n    levle: warn\n  - type: loop\n    over: \"[1]\"\n    do: []\n    max_iterations: many\n  - type: sleep\n    duration: 5s\n",
    );
    let (code, stdout, stderr, dir) = validate(&[("pay.yaml", &three)], &["@pay.yaml"]);
    assert_eq!(code, Some(1), "{stdout}");
    let file = dir.path().join("pay.yaml").display().to_string();
    for line in [
        format!("{file}:20:5: error: unknown field `levle` in a `log` node; did you mean `level`?"),
        format!("{file}:24:21: error: invalid type: expected a whole number (0 or more), found the text `many`"),
        format!("{file}:25:11: error: unknown node type `sleep`; expected one of: condition, switch"),
    ] {
        assert!(stdout.contains(&line), "missing `{line}` in:\n{stdout}");
    }
    assert!(stderr.contains("3 error(s)"), "{stderr}");
}

#[test]
fn validate_catches_misspelt_vars_and_filters() {
    let typos = callback(
        "  - type: log\n    message: \"{{ vars.trade_stauts }} {{ vars.total_amount | rond(2) }}\"\n",
    );
    let (code, stdout, _, dir) = validate(&[("pay.yaml", &typos)], &["@pay.yaml"]);
    assert_eq!(code, Some(1), "{stdout}");
    let file = dir.path().join("pay.yaml").display().to_string();
    for line in [
        format!("{file}:19:18: error: `vars.trade_stauts` is not defined by any parse entry; did you mean `vars.trade_status`?"),
        format!("{file}:19:62: error: unknown filter `rond`; did you mean `round`?"),
    ] {
        assert!(stdout.contains(&line), "missing `{line}` in:\n{stdout}");
    }
}

#[test]
fn validate_warns_about_a_sync_path_without_a_response() {
    // The `else` mis-indented away: unpaid callbacks would get 200
    // {"status":"resolved"} instead of the literal the provider needs.
    let lost_else = callback("").replace(
        "    else:\n      - type: response\n        body: fail\n",
        "  - type: log\n    message: unpaid\n",
    );
    let (code, stdout, _, dir) = validate(&[("pay.yaml", &lost_else)], &["@pay.yaml"]);
    assert_eq!(code, Some(0), "a warning does not fail validate: {stdout}");
    let line = format!(
        "{}:10:5: warning: when `if` is false this condition has no `else`, and the run can finish without a `response` node",
        dir.path().join("pay.yaml").display()
    );
    assert!(stdout.contains(&line), "missing `{line}` in:\n{stdout}");
}

#[test]
fn validate_accepts_scalar_expressions() {
    let scalars = callback(
        "  - type: calculation\n    expression: 1\n  - type: condition\n    if: true\n    reject_on_false: true\n",
    );
    let (code, stdout, stderr, _dir) = validate(&[("pay.yaml", &scalars)], &["@pay.yaml"]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("ok: 1 workflow file(s) valid, 0 warning(s)"),
        "{stdout}"
    );
}

#[test]
fn urls_lists_the_keys_the_running_server_uses() {
    let app = crate::harness::TestApp::spawn(&[
        ("generated.yaml", "title: Generated\nenabled: true\ntrigger: { type: webhook, mode: sync }\nnodes:\n  - type: response\n    body: hi\n"),
        ("pinned.yaml", "title: Pinned\ntrigger: { type: webhook, key: pinned-key-123 }\n"),
    ]);
    let served = app.admin_get("/api/workflows").json();
    let served_url = served["workflows"]
        .as_array()
        .and_then(|l| l.iter().find(|w| w["id"] == "generated"))
        .map(|w| w["url"].as_str().unwrap_or_default().to_string())
        .expect("generated is listed");
    // While the server holds the data folder.
    let out = hookflow(&[
        "urls",
        "--format",
        "json",
        "--workflows",
        app.workflows.path().to_str().expect("utf-8"),
        "--data",
        app.data_path().to_str().expect("utf-8"),
        "--public-url",
        &app.base,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON list");
    let generated = list
        .as_array()
        .and_then(|l| l.iter().find(|w| w["id"] == "generated"))
        .expect("generated");
    assert_eq!(generated["url"].as_str(), Some(served_url.as_str()));
    assert_eq!(generated["mode"], serde_json::json!("sync"));
    assert_eq!(generated["enabled"], serde_json::json!(true));
    let pinned = list
        .as_array()
        .and_then(|l| l.iter().find(|w| w["id"] == "pinned"))
        .expect("pinned");
    assert_eq!(
        pinned["url"].as_str(),
        Some(app.hook("pinned-key-123").as_str())
    );
    assert_eq!(pinned["enabled"], serde_json::json!(false));
    // The URL really answers.
    let key = served_url.rsplit('/').next().expect("key");
    assert_eq!(app.post(key, &[], "").body, "hi");
}

#[test]
fn workflow_examples_in_the_integration_docs_validate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/integrations");
    let mut count = 0;
    for entry in std::fs::read_dir(&docs).expect("docs/integrations") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("readable");
        for (i, block) in text.split("```yaml\n").skip(1).enumerate() {
            let yaml = block.split("```").next().unwrap_or_default();
            // Fragments (no title) illustrate a field, not a whole workflow.
            if !yaml.contains("title:") {
                continue;
            }
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("doc")
                .replace('_', "-");
            std::fs::write(dir.path().join(format!("{stem}-{i}.yaml")), yaml).expect("write");
            count += 1;
        }
    }
    assert!(count >= 5, "found {count} examples");
    let out = hookflow(&["validate", dir.path().to_str().expect("utf-8")]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn run_prints_the_answer_and_the_trace_and_sets_the_exit_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let body = dir.path().join("paid.json");
    std::fs::write(&body, r#"{"order": {"id": "A-1"}, "status": "SUCCESS"}"#).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_hookflow"))
        .args(["run", "payment-callback", "--body"])
        .arg(&body)
        .args(["-H", "X-Request-Id: r-9"])
        .env("PAY_PASSWORD", "pw")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("runs");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("response 200"), "{stdout}");
    assert!(
        stdout.contains(r#"{"code":"SUCCESS","order":"A-1"}"#),
        "{stdout}"
    );
    assert!(stdout.contains("resolved"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("paid") && l.contains("condition") && l.contains("true")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("response") && l.contains("resolved")),
        "{stdout}"
    );

    // A run that fails exits non-zero; so does a request that is refused.
    std::fs::write(&body, r#"{"order": {"id": "A-1"}, "status": "SUCCESS"}"#).expect("write");
    let failing = dir.path().join("fails.yaml");
    std::fs::write(&failing, "title: F\ntrigger: { type: webhook }\nnodes:\n  - { key: boom, type: end, status: failed, message: no }\n").expect("write");
    let out = hookflow(&[
        "run",
        failing.to_str().expect("utf-8"),
        "--body",
        body.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("failed"),
        "{}",
        text(&out.stdout)
    );
    std::fs::write(&body, "{broken").expect("write");
    let out = hookflow(&[
        "run",
        failing.to_str().expect("utf-8"),
        "--body",
        body.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("response 400 (no run)"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn test_reports_a_failing_case_with_a_diff() {
    let out = hookflow(&["test", "tests/fixtures/failing"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("ok   echo › passes"), "{stdout}");
    assert!(stdout.contains("FAIL echo › fails on purpose"), "{stdout}");
    assert!(stdout.contains("status: expected 201, got 200"), "{stdout}");
    // The body's difference, named by its path.
    assert!(
        stdout.contains(
            r#"body.greeting: expected "hello alice" (a string), sent "hello bob" (a string)"#
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(r#"nodes: expected ["greet", "missing"], got ["greet"]"#),
        "{stdout}"
    );
    assert!(stdout.contains("1 passed, 1 failed"), "{stdout}");
}

#[test]
fn the_example_workflows_pass_their_test_files() {
    let out = hookflow(&["test", "workflows"]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains(" 0 failed"),
        "{}",
        text(&out.stdout)
    );
}

/// Exit codes (docs/reference.md): 1 when a command cannot do its work,
/// 2 only for a wrong command line.
#[test]
fn commands_that_cannot_do_their_work_exit_1_and_a_wrong_command_line_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let at = |name: &str| dir.path().join(name).display().to_string();
    std::fs::create_dir(dir.path().join("workflows")).expect("mkdir");
    std::fs::write(
        dir.path().join("workflows/taken.yaml"),
        "title: T\ntrigger: { type: webhook }\n",
    )
    .expect("write");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy = busy.local_addr().expect("addr").to_string();
    let workflows = at("workflows");
    let data = at("data");
    let nope = at("nope.json");
    std::fs::create_dir(dir.path().join("empty")).expect("mkdir");
    let empty = at("empty");
    let missing_yaml = format!("cannot read {}", at("workflows/missing.yaml"));
    let test_file = at("workflows/taken.test.yaml");
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["validate", &empty], 1, "no workflow file found in"),
        (
            vec!["run", &test_file],
            1,
            "is a test file: run its cases with `hookflow test",
        ),
        (
            vec!["run", "taken", "--workflows", &workflows, "-H", ": v"],
            1,
            "has no name",
        ),
        (
            vec![
                "serve",
                "--listen",
                &busy,
                "--workflows",
                &workflows,
                "--data",
                &data,
            ],
            1,
            "cannot listen on",
        ),
        (
            vec!["run", "missing", "--workflows", &workflows],
            1,
            // Both names it looked for.
            &missing_yaml,
        ),
        (vec!["sample", "--body", &nope], 1, "cannot read"),
        (
            vec!["new", "taken", "--workflows", &workflows],
            1,
            "already exists",
        ),
        (
            vec!["new", "Bad Id", "--workflows", &workflows],
            1,
            "cannot be a workflow id",
        ),
        (vec!["validate", "--no-such-flag"], 2, "--no-such-flag"),
        (vec!["new"], 2, "ID"),
    ];
    for (args, code, said) in cases {
        let out = hookflow(&args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}\n{stderr}");
        assert!(stderr.contains(said), "{args:?}\n{stderr}");
    }
}

/// `urls` lists what loads; a file with errors is left out, its errors on
/// stderr as `validate` prints them, and the exit code is 1 (as
/// `validate`'s); a folder that cannot be read is an error, not an empty
/// table.
#[test]
fn urls_leaves_out_files_with_errors_and_fails_like_validate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let workflows = dir.path().join("workflows");
    std::fs::create_dir(&workflows).expect("mkdir");
    std::fs::write(
        workflows.join("good.yaml"),
        "title: Good\nenabled: true\ntrigger: { type: webhook, mode: sync }\nnodes:\n  - type: response\n    body: hi\n",
    )
    .expect("write");
    std::fs::write(
        workflows.join("bad.yaml"),
        "title: Bad\nenabled: true\ntrigger: { type: webhook, mode: snyc }\n",
    )
    .expect("write");
    let data = dir.path().join("data").display().to_string();
    let workflows = workflows.display().to_string();
    let out = hookflow(&["urls", "--workflows", &workflows, "--data", &data]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.lines().any(|l| l.starts_with("good ")), "{stdout}");
    assert!(!stdout.contains("bad"), "{stdout}");
    assert!(stderr.contains("bad.yaml:3:"), "{stderr}");
    assert!(stderr.contains("error: unknown value `snyc`"), "{stderr}");
    assert!(
        stderr.contains("not listed") && stderr.contains("bad"),
        "{stderr}"
    );

    let nope = dir.path().join("nope").display().to_string();
    let out = hookflow(&["urls", "--workflows", &nope, "--data", &data]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("cannot read the workflows folder"),
        "{stderr}"
    );
}

/// `hookflow ARGS…` that must finish within 20 s (a named pipe once made
/// `validate` wait for ever): exit code, stdout, stderr.
fn hookflow_in_time(args: &[&str]) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookflow"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the hookflow binary runs");
    let started = std::time::Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > std::time::Duration::from_secs(20) {
            let _ = child.kill();
            panic!("hookflow {args:?} did not finish in 20 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// What is not a workflow file is said: a named pipe (refused, not read), a
/// link to nothing in a folder; a data folder that is a file says so.
#[test]
fn pipes_dangling_links_and_a_data_file_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipe = dir.path().join("fifo.yaml");
    let made = Command::new("mkfifo")
        .arg(&pipe)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    let pipe = pipe.display().to_string();
    let (code, stdout, stderr) = hookflow_in_time(&["validate", &pipe]);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("fifo.yaml:1:1: error: not a regular file"),
        "{stdout}"
    );

    let folder = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(
        folder.path().join("gone.yaml"),
        folder.path().join("x.yaml"),
    )
    .expect("symlink");
    std::fs::write(
        folder.path().join("ok.yaml"),
        "title: Ok\ntrigger: { type: webhook }\n",
    )
    .expect("write");
    let path = folder.path().display().to_string();
    let (code, stdout, stderr) = hookflow_in_time(&["validate", &path]);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("x.yaml:1:1: error: a link to ")
            && stdout.contains("gone.yaml, which does not exist"),
        "{stdout}"
    );

    let data = dir.path().join("data-file");
    std::fs::write(&data, "not a folder").expect("write");
    let data = data.display().to_string();
    for command in ["urls", "serve"] {
        let (code, stdout, stderr) = hookflow_in_time(&[
            command,
            "--workflows",
            &path,
            "--data",
            &data,
            "--listen",
            "127.0.0.1:0",
        ]);
        assert_eq!(code, Some(1), "{command}\n{stdout}\n{stderr}");
        assert!(
            stderr.contains("this is a file, not a folder"),
            "{command}\n{stderr}"
        );
        assert!(!stderr.contains("os error"), "{command}\n{stderr}");
    }
}

/// No `--help` prints a secret taken from the environment (SPEC §3: URL
/// user info, tokens): every command and subcommand, with each secret
/// variable set.
#[test]
fn no_help_text_shows_a_secret_from_the_environment() {
    let commands: &[&[&str]] = &[
        &[],
        &["serve"],
        &["urls"],
        &["validate"],
        &["run"],
        &["test"],
        &["sample"],
        &["new"],
        &["executions"],
        &["executions", "list"],
        &["executions", "show"],
        &["executions", "retry"],
        &["executions", "export-test"],
        &["schema"],
    ];
    for command in commands {
        let out = Command::new(env!("CARGO_BIN_EXE_hookflow"))
            .args(*command)
            .arg("--help")
            .env("HOOKFLOW_STORE", "postgres://u:pw-MARKER-1@127.0.0.1:9/db")
            .env("HOOKFLOW_ADMIN_TOKEN", "token-MARKER-2")
            .env("HOOKFLOW_REQUEST_PROXY", "http://u:pw-MARKER-3@127.0.0.1:9")
            .output()
            .expect("the hookflow binary runs");
        let shown = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "{command:?}: {shown}");
        assert!(!shown.contains("MARKER"), "{command:?} --help:\n{shown}");
    }
}
