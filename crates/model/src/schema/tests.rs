//! The generated schemas against the repository's example files and against
//! typos, with a JSON Schema validator as an editor would use it.

use super::{test_schema, workflow_schema};
use crate::testfile::TestFileDef;
use crate::yaml::{from_yaml, Pos, Seg, Yaml};
use jsonschema::error::ValidationErrorKind;
use jsonschema::{ValidationError, Validator};
use std::path::{Path, PathBuf};

fn validator(schema: &str) -> Validator {
    let schema: serde_json::Value = serde_json::from_str(schema).expect("the schema is JSON");
    jsonschema::validator_for(&schema).expect("the schema is a valid JSON Schema")
}

/// The repository's `workflows/` folder: (workflow files, test files).
fn examples() -> (Vec<PathBuf>, Vec<PathBuf>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../workflows");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("the workflows folder")
        .map(|e| e.expect("a folder entry").path())
        .collect();
    paths.sort();
    let is_test = |p: &PathBuf| {
        p.to_str()
            .is_some_and(|p| p.ends_with(".test.yaml") || p.ends_with(".test.yml"))
    };
    let tests: Vec<PathBuf> = paths.iter().filter(|p| is_test(p)).cloned().collect();
    let workflows = paths
        .into_iter()
        .filter(|p| crate::load::workflow_id_of(p).is_some())
        .collect();
    (workflows, tests)
}

fn tree(text: &str) -> Yaml {
    Yaml::parse(text).expect("valid YAML")
}

/// Every error of `text` against `schema`, as `pointer: message` lines.
fn problems(schema: &Validator, text: &str) -> Vec<String> {
    schema
        .iter_errors(&tree(text).to_json())
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

/// Where an editor puts the error in the YAML text: the instance path, and
/// for an unknown field the field's own key.
fn position(tree: &Yaml, error: &ValidationError<'_>) -> Pos {
    let mut path: Vec<Seg> = error
        .instance_path()
        .as_str()
        .split('/')
        .skip(1)
        .map(|s| match s.parse::<usize>() {
            Ok(i) => Seg::Index(i),
            Err(_) => Seg::Key(s.replace("~1", "/").replace("~0", "~")),
        })
        .collect();
    if let ValidationErrorKind::AdditionalProperties { unexpected } = error.kind() {
        if let [one] = unexpected.as_slice() {
            path.push(Seg::Key(one.clone()));
        }
    }
    tree.locate(&path)
}

/// The only error of `text`: its position and message.
fn single_error(schema: &Validator, text: &str) -> (Pos, String, Vec<String>) {
    let tree = tree(text);
    let json = tree.to_json();
    let errors: Vec<ValidationError<'_>> = schema.iter_errors(&json).collect();
    assert_eq!(
        errors.len(),
        1,
        "expected one error, got {:?}",
        errors.iter().map(ToString::to_string).collect::<Vec<_>>()
    );
    let unexpected = match errors[0].kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => unexpected.clone(),
        _ => Vec::new(),
    };
    (
        position(&tree, &errors[0]),
        errors[0].to_string(),
        unexpected,
    )
}

#[test]
fn every_example_workflow_matches_the_workflow_schema() {
    let schema = validator(&workflow_schema());
    let (workflows, _) = examples();
    assert!(workflows.len() >= 5, "found {workflows:?}");
    for path in workflows {
        let text = std::fs::read_to_string(&path).expect("readable");
        let found = problems(&schema, &text);
        assert!(found.is_empty(), "{}: {found:#?}", path.display());
    }
}

#[test]
fn every_example_test_file_matches_the_test_schema_and_its_types() {
    let schema = validator(&test_schema());
    let (_, tests) = examples();
    assert!(tests.len() >= 3, "found {tests:?}");
    for path in tests {
        let text = std::fs::read_to_string(&path).expect("readable");
        let found = problems(&schema, &text);
        assert!(found.is_empty(), "{}: {found:#?}", path.display());
        if let Err(e) = from_yaml::<TestFileDef>(&tree(&text)) {
            panic!("{}: {e} at {:?}", path.display(), e.pos);
        }
    }
}

const MISSPELLED_NODE_FIELD: &str = "\
title: T
trigger: { type: webhook, mode: sync }
nodes:
  - key: paid
    type: condition
    if: trigger.body.ok
    then:
      - key: erp
        type: request
        url: https://erp.example/orders
        on_eror: continue
      - type: response
";

#[test]
fn a_misspelled_node_field_is_reported_at_that_field() {
    let schema = validator(&workflow_schema());
    let (pos, message, unexpected) = single_error(&schema, MISSPELLED_NODE_FIELD);
    assert_eq!(unexpected, ["on_eror"], "{message}");
    assert_eq!((pos.line, pos.column), (11, 9), "{message}");
    // The same field spelled right is fine.
    let fixed = MISSPELLED_NODE_FIELD.replace("on_eror", "on_error");
    assert_eq!(problems(&schema, &fixed), Vec::<String>::new());
    // A field of another kind is unknown in this one.
    let other = MISSPELLED_NODE_FIELD.replace("on_eror: continue", "expression: 1");
    let (pos, message, unexpected) = single_error(&schema, &other);
    assert_eq!(
        (unexpected.as_slice(), pos.line),
        (&["expression".to_string()][..], 11),
        "{message}"
    );
}

#[test]
fn an_unknown_node_type_is_reported_at_the_type() {
    let schema = validator(&workflow_schema());
    let text = MISSPELLED_NODE_FIELD
        .replace("on_eror", "on_error")
        .replace("type: request", "type: reqest");
    let (pos, message, _) = single_error(&schema, &text);
    assert_eq!((pos.line, pos.column), (9, 9), "{message}");
    assert!(message.contains("reqest"), "{message}");
    // A node without a type says the type is missing, on that node.
    let text = "title: T\ntrigger: { type: webhook }\nnodes:\n  - message: hi\n";
    let (pos, message, _) = single_error(&schema, text);
    assert_eq!((pos.line, pos.column), (4, 5), "{message}");
    assert!(message.contains("type"), "{message}");
}

#[test]
fn a_misspelled_verify_field_is_reported_at_that_field() {
    let schema = validator(&workflow_schema());
    let text = "\
title: T
trigger:
  type: webhook
  verify:
    preset: stripe
    secret: x
    tolerence: 5m
";
    let (pos, message, unexpected) = single_error(&schema, text);
    assert_eq!(unexpected, ["tolerence"], "{message}");
    assert_eq!((pos.line, pos.column), (7, 5), "{message}");
    let fixed = text.replace("tolerence", "tolerance");
    assert_eq!(problems(&schema, &fixed), Vec::<String>::new());
}

#[test]
fn a_misspelled_test_file_field_is_reported_at_that_field() {
    let schema = validator(&test_schema());
    let text = "\
cases:
  - name: paid
    stubs:
      erp:
        - { status: 503 }
        - { status: 200, body: { ok: true } }
      notify: { error: timeout }
    expect:
      status: 200
      nodse: [paid, erp]
      requests:
        erp:
          - { method: POST, url: \"https://erp.example/orders\", body: { amount: 12.5 } }
";
    let (pos, message, unexpected) = single_error(&schema, text);
    assert_eq!(unexpected, ["nodse"], "{message}");
    assert_eq!((pos.line, pos.column), (10, 7), "{message}");
    let fixed = text.replace("nodse", "nodes");
    assert_eq!(problems(&schema, &fixed), Vec::<String>::new());
    assert!(from_yaml::<TestFileDef>(&tree(&fixed)).is_ok());
    // In a stub, written as one answer or as a list of them.
    for (right, wrong, at) in [
        ("{ error: timeout }", "{ eror: timeout }", (7, 17)),
        ("- { status: 503 }", "- { stauts: 503 }", (5, 13)),
    ] {
        let text = fixed.replace(right, wrong);
        let (pos, message, unexpected) = single_error(&schema, &text);
        assert_eq!(unexpected.len(), 1, "{message}");
        assert_eq!((pos.line, pos.column), at, "{message}");
    }
}

#[test]
fn a_misspelled_field_in_an_optional_block_is_reported_at_that_field() {
    let schema = validator(&workflow_schema());
    let text = MISSPELLED_NODE_FIELD.replace("on_eror: continue", "retry: { attemps: 3 }");
    let (pos, message, unexpected) = single_error(&schema, &text);
    assert_eq!(unexpected, ["attemps"], "{message}");
    assert_eq!((pos.line, pos.column), (11, 18), "{message}");
}

#[test]
fn every_node_kind_and_preset_is_discriminated() {
    let schema: serde_json::Value = serde_json::from_str(&workflow_schema()).expect("JSON");
    let kinds = &schema["$defs"]["NodeDef"]["properties"]["type"]["enum"];
    assert_eq!(
        kinds,
        &serde_json::json!([
            "condition",
            "switch",
            "calculation",
            "json_query",
            "request",
            "loop",
            "parallel",
            "delay",
            "response",
            "end",
            "log"
        ])
    );
    assert_eq!(
        schema["$defs"]["NodeDef"]["allOf"].as_array().map(Vec::len),
        Some(11)
    );
    let presets = &schema["$defs"]["VerifyDef"]["properties"]["preset"]["enum"];
    assert_eq!(presets.as_array().map(Vec::len), Some(9), "{presets}");
    assert!(schema["$defs"]["NodeDef"].get("oneOf").is_none());
}

/// What the loader accepts, the schema accepts: a number or boolean where an
/// expression goes is that expression (`expression: 1`, `if: true`).
#[test]
fn scalar_expressions_match_the_schema() {
    let schema = validator(&crate::schema::workflow_schema());
    let text = "title: t\ntrigger: { type: webhook }\nnodes:\n  - { key: one, type: calculation, expression: 1 }\n  - { key: c, type: condition, if: true, then: [] }\n  - { key: l, type: loop, over: 3, do: [] }\n";
    assert_eq!(problems(&schema, text), Vec::<String>::new());
    let list = "title: t\ntrigger: { type: webhook }\nnodes:\n  - { key: one, type: calculation, expression: [1] }\n";
    assert_eq!(
        problems(&schema, list).len(),
        1,
        "a list is not an expression"
    );
}
