//! Workflow files: YAML → the workflow model → validation and compilation.
//! Any text gives a workflow or diagnostics, never a panic.
#![no_main]

use hookflow_model::{load_source, LoadOptions, SecretPolicy};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = |_: &str| Some("fuzz-secret-value".to_string());
    let options = LoadOptions {
        secrets: SecretPolicy::Warn,
        env: &env,
    };
    let file = load_source("fuzz", Path::new("fuzz.yaml"), text, &options);
    // Every diagnostic points into the file (YAML breaks lines at \n, \r\n and a lone \r).
    let lines = text
        .replace("\r\n", "\n")
        .replace('\r', "\n")
        .split('\n')
        .count();
    for d in &file.diagnostics {
        assert!(
            usize::try_from(d.line).unwrap_or(usize::MAX) <= lines,
            "{d:?} in {lines} lines"
        );
    }
});
