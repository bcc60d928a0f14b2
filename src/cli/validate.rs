//! `hookflow validate [PATH…]`: workflow files or folders.

use clap::ValueEnum;
use hookflow_model::yaml::Seg;
use hookflow_model::{is_test_file, load_path, Diagnostic, LoadOptions, SecretPolicy, Severity};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

/// Output format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// `path:line:column: severity: message`, one a line.
    Text,
    /// A JSON list of `{path, line, column, severity, message}`.
    Json,
}

/// Flags of `validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Workflow files or folders of workflows (a test file named here is
    /// checked against its workflow, its cases not run).
    #[arg(default_value = "./workflows", env = "HOOKFLOW_WORKFLOWS")]
    paths: Vec<PathBuf>,
    /// Treat a declared secret that is not set in the environment as an error.
    #[arg(long)]
    require_secrets: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

/// Prints every diagnostic of every file; exit 1 when any is an error.
pub fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let policy = if args.require_secrets {
        SecretPolicy::Require
    } else {
        SecretPolicy::Warn
    };
    let opts = LoadOptions::process_env(policy);
    let mut diagnostics: Vec<Diagnostic> = Vec::new();
    let (mut files, mut failed) = (0, 0);
    for path in &args.paths {
        if !path.is_dir() && is_test_file(path) {
            // Named on purpose: its format and keys are checked; its cases
            // run with `hookflow test`.
            let problems = super::testing::check_file(path);
            files += 1;
            failed += usize::from(problems.iter().any(Diagnostic::is_error));
            diagnostics.extend(problems);
            continue;
        }
        let catalog = load_path(path, &opts);
        files += catalog.files.len();
        diagnostics.extend(catalog.diagnostics().cloned());
        for file in catalog.files.values() {
            let setup = setup_problem(file);
            failed += usize::from(file.has_errors() || setup.is_some());
            diagnostics.extend(setup);
        }
    }
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = diagnostics.len() - errors;
    // A folder without workflow files: a mistyped path in CI must not pass
    // (as `hookflow test` running no case).
    if files == 0 && errors == 0 {
        let named: Vec<String> = args.paths.iter().map(|p| p.display().to_string()).collect();
        eprintln!(
            "error: no workflow file found in {} (workflow files end in .yaml or .yml)",
            named.join(", ")
        );
        return Ok(ExitCode::from(1));
    }
    match args.format {
        Format::Text => {
            for d in &diagnostics {
                println!("{}", text_line(d));
            }
        }
        Format::Json => {
            let list: Vec<_> = diagnostics
                .iter()
                .map(|d| {
                    json!({
                        "path": d.file.display().to_string(),
                        "line": d.line,
                        "column": d.column,
                        "severity": severity(d.severity),
                        "message": d.message,
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&list)?);
        }
    }
    if errors > 0 {
        eprintln!(
            "{errors} error(s), {warnings} warning(s) in {failed} of {files} workflow file(s)"
        );
        return Ok(ExitCode::from(1));
    }
    let summary = format!("ok: {files} workflow file(s) valid, {warnings} warning(s)");
    match args.format {
        Format::Text => println!("{summary}"),
        Format::Json => eprintln!("{summary}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The error `serve` would log for an enabled workflow whose signature
/// check cannot be set up (a secret that renders empty, a key that does not
/// read): found by building the check itself, with this environment's
/// secrets, and placed at the `verify` field it names.
fn setup_problem(file: &hookflow_model::load::LoadedFile) -> Option<Diagnostic> {
    // An unset secret has its own diagnostic (a warning unless
    // `--require-secrets`); the check is built once they are all set.
    if !file.unset_secrets.is_empty() {
        return None;
    }
    let workflow = file.workflow.as_ref().filter(|w| w.enabled)?;
    let verify = workflow.trigger.verify.as_ref()?;
    let error = hookflow_verify::Verifier::build(workflow, verify).err()?;
    let pos = file
        .source
        .as_deref()
        .and_then(hookflow_model::yaml::Yaml::parse_quick)
        .map(|tree| {
            let verify = [Seg::from("trigger"), Seg::from("verify")];
            let at_field = [
                Seg::from("trigger"),
                Seg::from("verify"),
                Seg::from(error.field.as_str()),
            ];
            match tree.get(&at_field) {
                Some(_) => tree.locate_value(&at_field),
                None => tree.locate(&verify),
            }
        })
        .unwrap_or_default();
    Some(Diagnostic {
        file: file.path.clone(),
        line: pos.line.max(1),
        column: pos.column.max(1),
        severity: Severity::Error,
        message: format!(
            "the signature check cannot be set up: {error}; `serve` would not serve this workflow"
        ),
    })
}

/// `path:line:column: error: message` (or `warning:`): how the commands
/// print a problem in a file.
pub(super) fn text_line(d: &Diagnostic) -> String {
    format!(
        "{}:{}:{}: {}: {}",
        d.file.display(),
        d.line,
        d.column,
        severity(d.severity),
        d.message
    )
}

fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}
