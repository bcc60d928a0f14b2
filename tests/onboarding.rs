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
        .find(|(n, _)| *n == format!("{id}.yaml") || *n == format!("{id}.yml"))
        .expect("its file (not its test file)");
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

/// The fenced code blocks of a Markdown text: (language, content).
fn code_blocks(markdown: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, String)> = None;
    for line in markdown.lines() {
        match (line.strip_prefix("```"), open.take()) {
            (Some(lang), None) => open = Some((lang.trim().to_string(), String::new())),
            (Some(_), Some(block)) => blocks.push(block),
            (None, Some((lang, mut body))) => {
                body.push_str(line);
                body.push('\n');
                open = Some((lang, body));
            }
            (None, None) => {}
        }
    }
    blocks
}

/// The commands of a shell block, lines joined at a trailing `\`, each with
/// the `# ` lines after it (what it prints).
fn commands(block: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    let mut pending = String::new();
    for line in block.lines() {
        if let Some(printed) = line.strip_prefix("# ") {
            if let Some((_, lines)) = out.last_mut() {
                lines.push(printed.to_string());
            }
            continue;
        }
        let line = line.split(" # ").next().unwrap_or_default().trim_end();
        if line.trim().is_empty() {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => pending.push_str(head),
            None => {
                pending.push_str(line);
                out.push((std::mem::take(&mut pending), Vec::new()));
            }
        }
    }
    out
}

/// Splits a command into words; quotes are single quotes, as the README writes them.
fn words(command: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word: Option<String> = None;
    let mut quoted = false;
    for c in command.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                word.get_or_insert_with(String::new);
            }
            c if c.is_whitespace() && !quoted => out.extend(word.take()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    out.extend(word);
    out
}

#[test]
fn the_readme_tour_works_as_written() {
    use base64::Engine;
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let serving = readme
        .split("### Serving")
        .nth(1)
        .and_then(|rest| rest.split("\n### ").next())
        .expect("a Serving section");
    let blocks = code_blocks(serving);
    let [(serve_lang, serve), (_, banner), (curl_lang, curls), ..] = blocks.as_slice() else {
        panic!("the Serving section has a serve command, its output and curl commands: {blocks:?}");
    };
    assert_eq!((serve_lang.as_str(), curl_lang.as_str()), ("sh", "sh"));
    // `NAME=value hookflow serve`: the secrets are set before the first request.
    let serve_words = words(&commands(serve)[0].0);
    let (env, rest): (Vec<&String>, Vec<&String>) =
        serve_words.iter().partition(|w| w.contains('='));
    assert_eq!(rest, ["hookflow", "serve"], "{serve}");
    let env: Vec<(String, String)> = env
        .iter()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let files = example_files();
    let set: Vec<&String> = env.iter().map(|(k, _)| k).collect();
    let borrowed: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let app = TestApp::spawn_with(
        &borrowed,
        Options {
            env: env.clone(),
            env_remove: declared_secrets(&files)
                .into_values()
                .flatten()
                .filter(|n| !set.contains(&n))
                .collect(),
            ..Options::default()
        },
    );
    // The listing shown is the one printed (URLs aside: the test listens elsewhere).
    for shown in banner.lines().filter(|l| l.starts_with("  ")) {
        let id = shown.split_whitespace().next().unwrap_or_default();
        let printed = app
            .banner
            .iter()
            .find(|l| l.split_whitespace().next() == Some(id))
            .unwrap_or_else(|| panic!("{id} is not printed: {:?}", app.banner));
        if shown.contains("not served") {
            assert_eq!(shown, printed);
        } else {
            let columns = |l: &str| l.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
            assert_eq!(columns(shown), columns(printed), "{printed}");
        }
    }
    // Each curl answers what the README says it prints.
    let mut count = 0;
    for (command, printed) in commands(curls) {
        let words = words(&command);
        assert_eq!(words.first().map(String::as_str), Some("curl"), "{command}");
        let mut headers: Vec<(String, String)> = Vec::new();
        let mut body = String::new();
        let mut url = String::new();
        let mut args = words.iter().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().cloned().unwrap_or_default();
            match arg.as_str() {
                "-u" => {
                    let encoded = base64::engine::general_purpose::STANDARD.encode(value());
                    headers.push(("authorization".into(), format!("Basic {encoded}")));
                }
                "-H" => {
                    let header = value();
                    let (name, v) = header.split_once(':').expect("Name: value");
                    headers.push((name.trim().to_string(), v.trim().to_string()));
                }
                "-d" => body = value(),
                other if other.starts_with("http://") => url = other.to_string(),
                other => panic!("unexpected curl argument {other}"),
            }
        }
        let key = url.rsplit('/').next().expect("a webhook URL").to_string();
        let expected = printed.first().expect("what the command prints");
        let (expected_body, status) = match expected.split_once("(status ") {
            Some((body, status)) => (
                body.trim(),
                status.trim_end_matches(')').parse::<u16>().ok(),
            ),
            None => (expected.trim(), None),
        };
        let header_refs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let resp = app.post(&key, &header_refs, &body);
        assert_eq!(
            resp.body,
            expected_body,
            "{command}\nlog:\n{}",
            app.log_text()
        );
        if let Some(status) = status {
            assert_eq!(resp.status, status, "{command}");
        }
        count += 1;
    }
    assert!(count >= 2, "{curls}");
}

#[test]
fn the_readme_points_at_the_reference_and_how_to_install() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    assert!(readme.contains("cargo install --path ."), "{readme}");
    assert!(readme.contains("(docs/reference.md)"));
    assert!(
        !readme.contains("SPEC"),
        "the SPEC is not in the repository"
    );
    assert!(readme.contains("pip install rust-just"));
    // Every relative link of the README and the reference leads to a file.
    for (page, base) in [
        ("README.md", repo().to_path_buf()),
        ("docs/reference.md", repo().join("docs")),
    ] {
        let text = std::fs::read_to_string(repo().join(page)).expect("readable");
        for link in text.split("](").skip(1).filter_map(|r| r.split(')').next()) {
            if link.starts_with('#') || link.contains("://") {
                continue;
            }
            let path = base.join(link.split('#').next().unwrap_or_default());
            assert!(
                path.exists(),
                "{page} links to {link}, which does not exist"
            );
        }
    }
}

#[test]
fn the_reference_names_every_command_flag_and_variable() {
    let reference =
        std::fs::read_to_string(repo().join("docs/reference.md")).expect("docs/reference.md");
    let top = text(&hookflow(&["--help"]).stdout);
    let commands: Vec<&str> = top
        .split("Commands:")
        .nth(1)
        .and_then(|r| r.split("Options:").next())
        .expect("a command list")
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 6, "{top}");
    for command in commands {
        assert!(
            reference.contains(&format!("### `hookflow {command}`")),
            "docs/reference.md has no section for `hookflow {command}`"
        );
        let help = text(&hookflow(&[command, "--help"]).stdout);
        for word in help.split(|c: char| c.is_whitespace() || matches!(c, '[' | ']' | ',' | '=')) {
            let named = (word.starts_with("--") && word.len() > 2 && word != "--help")
                || word.starts_with("HOOKFLOW_");
            if named {
                assert!(
                    reference.contains(&format!("`{word}"))
                        || reference.contains(&format!("{word}`")),
                    "docs/reference.md does not name `{word}` of `hookflow {command}`"
                );
            }
        }
    }
}
