//! The JSON Schema of the workflow format, generated from [`crate::def`].

/// The JSON Schema (draft 2020-12) of a workflow file, pretty-printed.
pub fn workflow_schema() -> String {
    let schema = schemars::schema_for!(crate::def::WorkflowDef);
    let mut text =
        serde_json::to_string_pretty(&schema).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}
