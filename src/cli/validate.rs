//! `hookflow validate [DIR]`.

use hookflow_model::{load_dir, LoadOptions, SecretPolicy};
use std::path::Path;
use std::process::ExitCode;

/// Prints every diagnostic of the folder; exit 1 when any is an error.
pub fn run(dir: &Path, require_secrets: bool) -> anyhow::Result<ExitCode> {
    let policy = if require_secrets {
        SecretPolicy::Require
    } else {
        SecretPolicy::Warn
    };
    let catalog = load_dir(dir, &LoadOptions::process_env(policy));
    let mut errors = 0;
    let mut warnings = 0;
    for d in catalog.diagnostics() {
        println!("{d}");
        if d.is_error() {
            errors += 1;
        } else {
            warnings += 1;
        }
    }
    let files = catalog.files.len();
    if errors > 0 {
        let failed = catalog.files.values().filter(|f| f.has_errors()).count();
        eprintln!(
            "{errors} error(s), {warnings} warning(s) in {failed} of {files} workflow file(s)"
        );
        return Ok(ExitCode::from(1));
    }
    println!("ok: {files} workflow file(s) valid, {warnings} warning(s)");
    Ok(ExitCode::SUCCESS)
}
