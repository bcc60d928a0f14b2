//! What a new user meets first: the schemas editors read, a clean first
//! `serve` of the repository's example workflows, and the reference page.

use crate::harness::{eventually, Options, TestApp};
use hookflow_model::def::WorkflowDef;
use hookflow_model::yaml::{from_yaml, Yaml};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn hookflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hookflow"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("the hookflow binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The files directly in the repository's `workflows/` folder: (name, text).
fn example_files() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(repo().join("workflows"))
        .expect("workflows/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file())
        .map(|p: PathBuf| {
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .expect("a UTF-8 name")
                .to_string();
            (name, std::fs::read_to_string(&p).expect("readable"))
        })
        .collect();
    files.sort();
    files
}

/// The secrets each example workflow declares, by workflow id (only those that declare some).
fn declared_secrets(files: &[(String, String)]) -> BTreeMap<String, Vec<String>> {
    files
        .iter()
        .filter(|(name, _)| {
            hookflow_model::load::workflow_id_of(Path::new(name.as_str())).is_some()
        })
        .filter_map(|(name, body)| {
            let tree = Yaml::parse(body).expect("the example is YAML");
            let def: WorkflowDef = from_yaml(&tree).expect("the example is a workflow");
            let id = hookflow_model::load::workflow_id_of(Path::new(name.as_str()))?;
            (!def.secrets.is_empty()).then_some((id, def.secrets))
        })
        .collect()
}

const NOT_SERVED: &str = "Workflow not served until its secrets are set.";

fn lines_with<'l>(log: &'l str, what: &str) -> Vec<&'l str> {
    log.lines().filter(|l| l.contains(what)).collect()
}

/// Waits for the `n`th "Workflows reloaded." line.
fn reloaded(app: &TestApp, n: usize) {
    eventually(Duration::from_secs(15), "a hot reload", || {
        (lines_with(&app.log_text(), "Workflows reloaded.").len() >= n).then_some(())
    });
}

#[test]
fn a_first_serve_of_the_examples_warns_once_per_workflow_and_never_errs() {
    let files = example_files();
    let secrets = declared_secrets(&files);
    assert!(secrets.len() >= 5, "{secrets:?}");
    let borrowed: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let app = TestApp::spawn_with(
        &borrowed,
        Options {
            env_remove: secrets.values().flatten().cloned().collect(),
            ..Options::default()
        },
    );
    let log = app.log_text();
    assert!(
        lines_with(&log, "ERROR").is_empty(),
        "no ERROR at a first serve:\n{log}"
    );
    let warned = lines_with(&log, NOT_SERVED);
    assert_eq!(warned.len(), secrets.len(), "one line per workflow:\n{log}");
    for (id, names) in &secrets {
        let line = warned
            .iter()
            .find(|l| l.contains(&format!("workflow={id} ")))
            .unwrap_or_else(|| panic!("no warning for {id}:\n{log}"));
        assert!(line.contains(" WARN "), "{line}");
        for name in names {
            assert!(line.contains(name.as_str()), "{name} not named: {line}");
            assert!(
                line.contains(&format!("{name}=... ")),
                "no way to set {name}: {line}"
            );
        }
        let banner = app
            .banner
            .iter()
            .find(|l| l.trim_start().starts_with(&format!("{id} ")))
            .unwrap_or_else(|| panic!("{id} not listed: {:?}", app.banner));
        assert!(banner.contains("not served until"), "{banner}");
    }

    // A hot reload caused by another file says nothing again.
    app.write_workflow(
        "unrelated.yaml",
        "title: Unrelated\ntrigger: { type: webhook }\n",
    );
    reloaded(&app, 1);
    let log = app.log_text();
    assert_eq!(lines_with(&log, NOT_SERVED).len(), secrets.len(), "{log}");
    assert!(lines_with(&log, "ERROR").is_empty(), "{log}");

    // A real error is an ERROR, once; a changed file is reported again.
    let (id, _) = secrets.iter().next().expect("a workflow with secrets");
    let (name, body) = files
        .iter()
        .find(|(n, _)| n.starts_with(&format!("{id}.")))
        .expect("its file");
    app.write_workflow(name, &format!("{body}\n# edited\n"));
    app.write_workflow("broken.yaml", "title: Broken\ntrigger: { type: webhok }\n");
    reloaded(&app, 2);
    app.write_workflow(
        "unrelated.yaml",
        "title: Unrelated again\ntrigger: { type: webhook }\n",
    );
    reloaded(&app, 3);
    let log = app.log_text();
    let errors = lines_with(&log, "ERROR");
    assert_eq!(errors.len(), 1, "{log}");
    assert!(errors[0].contains("broken.yaml:2:"), "{}", errors[0]);
    assert_eq!(
        lines_with(&log, NOT_SERVED).len(),
        secrets.len() + 1,
        "{log}"
    );
    assert_eq!(
        lines_with(&log, &format!("workflow={id} ")).len(),
        2,
        "{log}"
    );
}

#[test]
fn the_test_schema_file_in_docs_is_current() {
    let out = hookflow(&["schema", "--tests"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let kept = std::fs::read_to_string(repo().join("docs/test.schema.json"))
        .expect("docs/test.schema.json exists");
    assert!(
        text(&out.stdout) == kept,
        "docs/test.schema.json is stale: run `just schema`"
    );
    let schema: serde_json::Value = serde_json::from_str(&kept).expect("JSON");
    assert_eq!(schema["title"], "hookflow test file");
}

#[test]
fn every_example_test_file_points_at_the_test_schema() {
    let tests: Vec<(String, String)> = example_files()
        .into_iter()
        .filter(|(n, _)| n.ends_with(".test.yaml") || n.ends_with(".test.yml"))
        .collect();
    assert!(tests.len() >= 3, "{tests:?}");
    for (name, body) in tests {
        assert!(
            body.starts_with("# yaml-language-server: $schema=../docs/test.schema.json\n"),
            "{name} must start with the test schema line"
        );
    }
}
