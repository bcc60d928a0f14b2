//! `hookflow test [PATH…] [--case NAME]`: runs `<id>.test.yaml` files against
//! workflow `<id>` strictly offline (request nodes answered by the cases'
//! stubs, never the network; no signatures, no idempotency) and reports each
//! case, with what differs when it fails.
//!
//! `format.rs` is the test file format and its checks against the workflow,
//! `checks.rs` what else can be checked before a case runs (bodies, statuses, names),
//! `case.rs` runs one case and compares what it saw, `requests.rs` compares
//! what request nodes sent.

mod case;
mod checks;
mod format;
mod requests;

use super::offline::load_workflow;
use anyhow::Context;
use hookflow_model::diag::Diagnostic;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Flags of `test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Test files (`<id>.test.yaml`), workflow files (their test file is run)
    /// or folders (every test file in them).
    #[arg(default_value = "./workflows", env = "HOOKFLOW_WORKFLOWS")]
    paths: Vec<PathBuf>,
    /// Run only the case with this name (repeatable).
    #[arg(long = "case", value_name = "NAME")]
    cases: Vec<String>,
}

/// Counts of a whole `test` command.
#[derive(Default)]
struct Tally {
    passed: usize,
    failed: usize,
}

/// Runs the test files `args` name; exit 1 when anything failed.
pub fn run(args: TestArgs) -> anyhow::Result<ExitCode> {
    let mut tally = Tally::default();
    let mut files = Vec::new();
    // A file named twice (`x.test.yaml` and its folder) runs once.
    let mut named = BTreeSet::new();
    for path in &args.paths {
        match test_files_of(path) {
            Ok(found) => {
                for file in found {
                    if named.insert(std::fs::canonicalize(&file).unwrap_or_else(|_| file.clone())) {
                        files.push(file);
                    }
                }
            }
            Err(e) => {
                tally.failed += 1;
                println!("FAIL {}: {e:#}", path.display());
            }
        }
    }
    let wanted: BTreeSet<&str> = args.cases.iter().map(String::as_str).collect();
    let mut seen = BTreeSet::new();
    for file in &files {
        run_file(file, &wanted, &mut seen, &mut tally);
    }
    for name in wanted.iter().filter(|n| !seen.contains(**n)) {
        tally.failed += 1;
        println!("FAIL --case {name:?}: no case has this name in the test files run");
    }
    // Nothing run is not a pass: a mistyped folder, or test files without
    // cases, would otherwise pass in CI without testing anything.
    if tally.passed == 0 && tally.failed == 0 {
        tally.failed += 1;
        let given: Vec<String> = args.paths.iter().map(|p| p.display().to_string()).collect();
        println!(
            "FAIL no test case was run from {}: write `<workflow>.test.yaml` files with `cases:` \
             next to the workflows (`hookflow new` writes one)",
            given.join(", ")
        );
    }
    println!();
    println!("{} passed, {} failed", tally.passed, tally.failed);
    Ok(if tally.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Whether `name` is a test file's.
fn is_test_file(name: &str) -> bool {
    name.ends_with(".test.yaml") || name.ends_with(".test.yml")
}

/// The test files `path` stands for: itself, the test file of a workflow
/// file, or every test file of a folder (sorted).
fn test_files_of(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(is_test_file)
            })
            .collect();
        files.sort();
        return Ok(files);
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if !path.exists() {
        anyhow::bail!("no such file or folder");
    }
    if is_test_file(name) {
        return Ok(vec![path.to_path_buf()]);
    }
    let stem = name
        .strip_suffix(".yaml")
        .or_else(|| name.strip_suffix(".yml"))
        .with_context(|| {
            "give a test file (`<id>.test.yaml`), a workflow file (`<id>.yaml`) or a folder"
        })?;
    ["test.yaml", "test.yml"]
        .iter()
        .map(|ext| path.with_file_name(format!("{stem}.{ext}")))
        .find(|p| p.is_file())
        .map(|p| vec![p])
        .with_context(|| {
            format!(
                "no test file for this workflow: write its cases in {stem}.test.yaml next to it"
            )
        })
}

/// The id of the workflow a test file tests (`pay.test.yaml` → `pay`) and
/// the folder both are in.
fn workflow_of(file: &Path) -> (&str, &Path) {
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let id = name
        .trim_end_matches(".test.yaml")
        .trim_end_matches(".test.yml");
    (id, file.parent().unwrap_or(Path::new(".")))
}

/// The workflow file a test file tests: `<id>.yaml` (or `.yml`) beside it.
fn workflow_file(file: &Path) -> anyhow::Result<PathBuf> {
    let (id, dir) = workflow_of(file);
    ["yaml", "yml"]
        .iter()
        .map(|ext| dir.join(format!("{id}.{ext}")))
        .find(|p| p.exists())
        .with_context(|| format!("no workflow `{id}` next to this test file (expected {id}.yaml)"))
}

/// Runs the selected cases of one test file (all when `wanted` is empty),
/// noting in `seen` the names found.
fn run_file(file: &Path, wanted: &BTreeSet<&str>, seen: &mut BTreeSet<String>, tally: &mut Tally) {
    let (id, dir) = workflow_of(file);
    if !file.is_file() {
        tally.failed += 1;
        println!(
            "FAIL {}: {}",
            file.display(),
            hookflow_model::load::NOT_A_FILE
        );
        return;
    }
    let text = match std::fs::read(file).map(hookflow_model::load::utf8_text) {
        Ok(Ok(text)) => text,
        Ok(Err((pos, message))) => {
            tally.failed += 1;
            println!(
                "FAIL {}:{}:{}: {message}",
                file.display(),
                pos.line,
                pos.column
            );
            return;
        }
        Err(e) => {
            tally.failed += 1;
            println!("FAIL {}: cannot read it: {e}", file.display());
            return;
        }
    };
    let (tests, tree) = match format::read(file, &text) {
        Ok(read) => read,
        Err(problems) => return file_failed(&problems, tally),
    };
    let cases: Vec<&format::Case> = tests
        .cases
        .iter()
        .filter(|c| wanted.is_empty() || wanted.contains(c.name.as_str()))
        .collect();
    seen.extend(cases.iter().map(|c| c.name.clone()));
    if cases.is_empty() && !wanted.is_empty() {
        return;
    }
    // For this file only: the next file sees the environment as it was.
    let _env = FileEnv::set(&tests.env);
    let workflow = match workflow_file(file).and_then(|path| {
        let path = path.to_str().context("the workflow's path is not UTF-8")?;
        load_workflow(path, dir)
    }) {
        Ok(workflow) => workflow,
        Err(e) => {
            tally.failed += 1;
            println!("FAIL {}: {e:#}", file.display());
            return;
        }
    };
    let problems = format::check_keys(file, &tests, &tree, &workflow);
    if !problems.is_empty() {
        return file_failed(&problems, tally);
    }
    for case in cases {
        let problems = match case::run(&workflow, case, dir) {
            Ok(p) => p,
            Err(e) => vec![format!("{e:#}")],
        };
        if problems.is_empty() {
            tally.passed += 1;
            println!("ok   {id} › {}", case.name);
        } else {
            tally.failed += 1;
            println!("FAIL {id} › {}", case.name);
            for p in problems {
                for line in p.lines() {
                    println!("       {line}");
                }
            }
        }
    }
}

/// What `validate` says of a test file given by name: its own problems
/// (positions, unknown fields) and its keys checked against the workflow
/// next to it, loaded with the file's `env` over the process environment.
/// Nothing runs.
pub fn check_file(file: &Path) -> Vec<Diagnostic> {
    let at_start = |message: String| {
        vec![Diagnostic {
            file: file.to_path_buf(),
            line: 1,
            column: 1,
            severity: hookflow_model::Severity::Error,
            message,
        }]
    };
    if file.exists() && !file.is_file() {
        return at_start(hookflow_model::load::NOT_A_FILE.into());
    }
    let text = match std::fs::read(file).map(hookflow_model::load::utf8_text) {
        Ok(Ok(text)) => text,
        Ok(Err((pos, message))) => {
            return vec![Diagnostic {
                file: file.to_path_buf(),
                line: pos.line,
                column: pos.column,
                severity: hookflow_model::Severity::Error,
                message,
            }]
        }
        Err(e) => return at_start(format!("cannot read the file: {e}")),
    };
    let (tests, tree) = match format::read(file, &text) {
        Ok(read) => read,
        Err(problems) => return problems,
    };
    let (id, _) = workflow_of(file);
    let path = match workflow_file(file) {
        Ok(path) => path,
        Err(e) => return at_start(format!("{e:#}")),
    };
    let Ok(source) = std::fs::read_to_string(&path) else {
        return at_start(format!("cannot read its workflow {}", path.display()));
    };
    let env = |name: &str| {
        tests
            .env
            .get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok())
    };
    let options = hookflow_model::LoadOptions {
        secrets: hookflow_model::SecretPolicy::Warn,
        env: &env,
    };
    let loaded = hookflow_model::load_source(id, &path, &source, &options);
    match loaded.workflow {
        Some(workflow) => format::check_keys(file, &tests, &tree, &workflow),
        None => at_start(format!(
            "its workflow {} has errors; validate it first",
            path.display()
        )),
    }
}

/// A test file with errors: each printed as `path:line:column: message`;
/// none of its cases run.
fn file_failed(problems: &[Diagnostic], tally: &mut Tally) {
    tally.failed += 1;
    for p in problems {
        println!("{p}");
    }
}

/// A test file's `env`, set for as long as the file runs, then put back.
struct FileEnv(Vec<(String, Option<std::ffi::OsString>)>);

impl FileEnv {
    fn set<'a>(env: impl IntoIterator<Item = (&'a String, &'a String)>) -> FileEnv {
        let mut before = Vec::new();
        for (k, v) in env {
            before.push((k.clone(), std::env::var_os(k)));
            std::env::set_var(k, v);
        }
        FileEnv(before)
    }
}

impl Drop for FileEnv {
    fn drop(&mut self) {
        // In reverse, so that a name given twice ends as it began.
        for (k, v) in self.0.drain(..).rev() {
            match v {
                Some(v) => std::env::set_var(&k, v),
                None => std::env::remove_var(&k),
            }
        }
    }
}
