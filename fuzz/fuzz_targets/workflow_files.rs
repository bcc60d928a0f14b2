//! Workflow files: YAML → the workflow model → validation and compilation.
//! Any text gives a workflow or diagnostics, never a panic; the quick tree,
//! when there is one, is the full tree (kinds, keys, positions).
#![no_main]

use hookflow_model::yaml::Yaml;
use hookflow_model::{load_source, LoadOptions, SecretPolicy};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(quick) = Yaml::parse_quick(text) {
        match Yaml::parse_lenient(text) {
            Ok((full, duplicates)) => {
                assert!(duplicates.is_empty(), "the quick tree took a repeated key");
                assert_eq!(quick, full, "the quick tree differs from the full one");
            }
            Err(e) => panic!("the quick path read what the full one refuses: {e:?}"),
        }
    }
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
