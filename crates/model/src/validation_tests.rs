//! Validation, one test per rule: YAML in, diagnostics with exact positions out.

use crate::load::{load_source, LoadOptions, SecretPolicy};
use std::path::Path;

/// Loads `yaml` as workflow `wf` with only `SET_SECRET` in the environment and
/// compares `line:column: message-part` of every diagnostic with `expected`.
fn check(yaml: &str, expected: &[(u32, u32, &str)]) {
    check_with(yaml, SecretPolicy::Warn, expected)
}

fn check_with(yaml: &str, policy: SecretPolicy, expected: &[(u32, u32, &str)]) {
    let env = |name: &str| match name {
        "SET_SECRET" => Some("s3cret".to_string()),
        "EMPTY_SECRET" => Some(String::new()),
        _ => None,
    };
    let opts = LoadOptions {
        secrets: policy,
        env: &env,
    };
    let file = load_source("wf", Path::new("workflows/wf.yaml"), yaml, &opts);
    let got: Vec<(u32, u32, String)> = file
        .diagnostics
        .iter()
        .map(|d| (d.line, d.column, d.to_string()))
        .collect();
    let matches = got.len() == expected.len()
        && got
            .iter()
            .zip(expected)
            .all(|((l, c, m), (el, ec, em))| l == el && c == ec && m.contains(em));
    assert!(
        matches,
        "\n--- yaml ---\n{yaml}\n--- got ---\n{got:#?}\n--- expected ---\n{expected:#?}"
    );
    let has_errors = expected.iter().any(|(_, _, m)| !m.starts_with("warning"));
    assert_eq!(
        file.workflow.is_none(),
        has_errors || got.iter().any(|(_, _, m)| !m.contains("warning:"))
    );
}

const HEAD: &str = "title: t\ntrigger:\n  type: webhook\n  mode: sync\n";

fn sync(nodes: &str) -> String {
    format!("{HEAD}nodes:\n{nodes}")
}

#[test]
fn a_valid_workflow_has_no_diagnostics() {
    check(
        &sync(
            "  - key: paid\n    type: condition\n    if: vars.order_id and trigger.body.status == \"SUCCESS\"\n    then:\n      - type: response\n        body: { order: \"{{ vars.order_id }}\", ok: \"{{ nodes.paid }}\" }\n    else:\n      - type: response\n        status: 400\n        body: unpaid\n",
        ),
        &[],
    );
}

#[test]
fn yaml_syntax_error() {
    check(
        "title: t\ntrigger: [\n",
        &[(2, 10, "wf.yaml:2:10: YAML syntax error")],
    );
    check("title: t\ntitle: u\n", &[(2, 1, "duplicate mapping key")]);
}

#[test]
fn unknown_fields_point_at_the_key() {
    check(
        &format!("{HEAD}colour: red\n"),
        &[(5, 1, "unknown field `colour`")],
    );
    check(
        &format!("{HEAD}  modes: sync\n"),
        &[(5, 3, "unknown field `modes`")],
    );
    check(
        &sync("  - type: log\n    message: hi\n    levle: warn\n"),
        &[(8, 5, "unknown field `levle`")],
    );
    check(
        &sync("  - type: condition\n    if: \"true\"\n    then:\n      - type: end\n        status: resolved\n        why: x\n"),
        &[(11, 9, "unknown field `why`")],
    );
}

#[test]
fn wrong_types_point_at_the_value() {
    check(
        &sync("  - type: loop\n    over: \"[1]\"\n    do: []\n    max_iterations: many\n"),
        &[(9, 21, "invalid type")],
    );
    check(
        &format!("{HEAD}  max_body: 10GB\n"),
        &[(5, 13, "unknown unit `GB`")],
    );
    check(
        "title: t\noptions: { timeout: 30 }\ntrigger: { type: webhook }\n",
        &[(2, 21, "needs a unit")],
    );
    check(
        "title: t\ntrigger: { type: webhook, mode: later }\n",
        &[(2, 33, "unknown variant `later`")],
    );
}

#[test]
fn missing_fields() {
    check(
        "trigger: { type: webhook }\n",
        &[(1, 1, "missing field `title`")],
    );
    check(
        &sync("  - type: request\n    method: GET\n"),
        &[(6, 5, "missing field `url`")],
    );
}

#[test]
fn unknown_node_type() {
    check(
        &sync("  - type: sleep\n    duration: 5s\n"),
        &[(
            6,
            11,
            "unknown node type `sleep`; expected one of: condition",
        )],
    );
    check(
        &sync("  - message: hi\n"),
        &[(6, 5, "missing field `type`")],
    );
}

#[test]
fn duplicate_node_keys() {
    check(
        &sync("  - key: a\n    type: log\n    message: one\n  - key: a\n    type: log\n    message: two\n"),
        &[(9, 10, "duplicate node key `a` (first used on line 6)")],
    );
    check(
        &sync("  - key: Bad-Key\n    type: log\n    message: x\n"),
        &[(6, 10, "must match [a-z0-9_]+")],
    );
}

#[test]
fn response_node_in_async_workflow() {
    check(
        "title: t\ntrigger: { type: webhook }\nnodes:\n  - type: response\n    body: hi\n",
        &[(
            4,
            11,
            "a `response` node cannot be used in an async workflow",
        )],
    );
}

#[test]
fn delay_node_in_sync_workflow() {
    check(
        &sync("  - type: delay\n    duration: 5s\n"),
        &[(6, 11, "a `delay` node cannot be used in a sync workflow")],
    );
}

#[test]
fn delay_inside_a_parallel_branch() {
    check(
        "title: t\ntrigger: { type: webhook }\nnodes:\n  - type: parallel\n    branches:\n      - - { type: delay, duration: 1s }\n",
        &[(6, 19, "a `delay` node cannot be used inside a parallel branch")],
    );
}

#[test]
fn trigger_response_modes() {
    check(
        &format!("{HEAD}  response: {{ body: ok }}\n"),
        &[(5, 3, "`trigger.response` is for async workflows")],
    );
    check(
        "title: t\ntrigger:\n  type: webhook\n  timeout_response: { body: ok }\n",
        &[(4, 3, "`trigger.timeout_response` is for sync workflows")],
    );
}

#[test]
fn templates_and_expressions_that_do_not_compile() {
    check(
        &sync("  - type: log\n    message: \"{{ vars. }}\"\n"),
        &[(7, 14, "template does not compile: syntax error")],
    );
    check(
        &sync("  - type: calculation\n    expression: \"1 +\"\n"),
        &[(7, 17, "expression does not compile")],
    );
    check(
        &sync("  - type: condition\n    if: \"{{ x }}\"\n    reject_on_false: true\n"),
        &[(7, 9, "without `{{ }}`")],
    );
    check(
        &sync(
            "  - type: response\n    body:\n      items:\n        - ok\n        - \"{% if %}\"\n",
        ),
        &[(10, 11, "template does not compile")],
    );
}

#[test]
fn jsonpath_that_does_not_parse() {
    check(
        &sync("  - type: json_query\n    source: \"{{ trigger.body }}\"\n    path: \"$.items[\"\n"),
        &[(8, 11, "invalid JSONPath")],
    );
    check(
        &format!("{HEAD}  parse:\n    body:\n      - {{ key: \"$.a[?(\", alias: a }}\n"),
        &[(
            7,
            16,
            "invalid JSONPath `$.a[?(`: expected atom_expr at character 7",
        )],
    );
}

#[test]
fn jsonpath_parse_key_needs_an_alias() {
    check(
        &format!("{HEAD}  parse:\n    body:\n      - {{ key: \"$.items[*].sku\" }}\n"),
        &[(7, 16, "needs an explicit `alias`")],
    );
}

#[test]
fn secrets_used_but_not_declared() {
    check(
        &format!(
            "{HEAD}  auth:\n    basic: {{ username: u, password: \"{{{{ secrets.PASS }}}}\" }}\n"
        ),
        &[(6, 37, "`secrets.PASS` is used but not declared")],
    );
}

#[test]
fn declared_secret_unset_is_a_warning_or_an_error() {
    let yaml = "title: t\nsecrets: [SET_SECRET, UNSET_SECRET]\ntrigger: { type: webhook }\n";
    check(
        yaml,
        &[(
            2,
            23,
            "warning: secret `UNSET_SECRET` is declared but not set",
        )],
    );
    check_with(yaml, SecretPolicy::Require, &[(2, 23, "secret `UNSET_SECRET` is declared but not set in the environment; the workflow is not served")]);
}

#[test]
fn node_references_must_have_run_before() {
    check(
        &sync("  - type: log\n    message: \"{{ nodes.later }}\"\n  - key: later\n    type: calculation\n    expression: \"1\"\n"),
        &[(7, 14, "`nodes.later` refers to a node that cannot have run before")],
    );
    check(
        &sync("  - type: log\n    message: \"{{ nodes.ghost }}\"\n"),
        &[(7, 14, "no node has the key `ghost`")],
    );
    // A node in the other branch of a condition cannot have run.
    check(
        &sync("  - type: condition\n    if: \"true\"\n    then:\n      - { key: a, type: calculation, expression: \"1\" }\n    else:\n      - { type: log, message: \"{{ nodes.a }}\" }\n"),
        &[(11, 31, "`nodes.a` refers to a node that cannot have run")],
    );
    // After the condition, a node from a branch may have run; the condition's own result is there in its branches.
    check(
        &sync("  - key: c\n    type: condition\n    if: \"true\"\n    then:\n      - { key: a, type: calculation, expression: \"nodes.c\" }\n  - { type: log, message: \"{{ nodes.a }} {{ nodes.c }}\" }\n"),
        &[],
    );
    // Parallel branches do not see each other.
    check(
        "title: t\ntrigger: { type: webhook }\nnodes:\n  - type: parallel\n    branches:\n      - - { key: a, type: calculation, expression: \"1\" }\n      - - { type: log, message: \"{{ nodes.a }}\" }\n",
        &[(7, 33, "cannot have run")],
    );
}

#[test]
fn pinned_keys_must_match_the_pattern() {
    check(
        &format!("{HEAD}  key: short\n"),
        &[(5, 8, "pinned key `short` must match [A-Za-z0-9_-]{8,128}")],
    );
    check(
        &format!("{HEAD}  key: has/slash-in-it\n"),
        &[(5, 8, "must match")],
    );
}

#[test]
fn condition_needs_a_branch_or_reject_on_false() {
    check(
        &sync("  - type: condition\n    if: \"true\"\n"),
        &[(
            6,
            5,
            "a condition needs `then`, `else`, or `reject_on_false: true`",
        )],
    );
    check(
        &sync("  - type: condition\n    if: \"true\"\n    reject_on_false: true\n"),
        &[],
    );
}

#[test]
fn every_error_of_a_file_is_reported() {
    check(
        &sync("  - key: x\n    type: log\n    message: \"{{ a. }}\"\n  - key: x\n    type: calculation\n    expression: \"(\"\n  - type: delay\n    duration: 1s\n"),
        &[(8, 14, "template does not compile"), (9, 10, "duplicate node key"), (11, 17, "expression does not compile"), (12, 11, "delay")],
    );
}

#[test]
fn workflow_ids_come_from_file_names() {
    let env = |_: &str| None;
    let opts = LoadOptions {
        secrets: SecretPolicy::Warn,
        env: &env,
    };
    let file = load_source(
        "Bad Name",
        Path::new("Bad Name.yaml"),
        "title: t\ntrigger: { type: webhook }\n",
        &opts,
    );
    assert!(
        file.diagnostics[0]
            .message
            .contains("must match [a-z0-9][a-z0-9_-]*"),
        "{:?}",
        file.diagnostics
    );
    assert!(file.workflow.is_none());
}

#[test]
fn pinned_key_collisions_serve_neither() {
    let dir = tempfile::tempdir().expect("tempdir");
    for id in ["one", "two"] {
        std::fs::write(
            dir.path().join(format!("{id}.yaml")),
            "title: t\ntrigger:\n  type: webhook\n  key: same-key-123\n",
        )
        .expect("write");
    }
    std::fs::write(
        dir.path().join("three.yaml"),
        "title: t\ntrigger: { type: webhook }\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("three.test.yaml"), "not: a workflow\n").expect("write");
    let catalog = crate::load_dir(dir.path(), &LoadOptions::process_env(SecretPolicy::Warn));
    let one = &catalog.files["one"];
    assert!(one.workflow.is_none());
    assert_eq!((one.diagnostics[0].line, one.diagnostics[0].column), (4, 8));
    assert!(one.diagnostics[0]
        .message
        .contains("collides with workflow two"));
    assert!(catalog.files["two"].workflow.is_none());
    assert!(catalog.files["three"].workflow.is_some());
    assert_eq!(catalog.files.len(), 3);
}

#[test]
fn other_rules() {
    check(
        &format!("{HEAD}  parse:\n    query:\n      - {{ key: a.b }}\n      - {{ key: a_b }}\n"),
        &[(8, 9, "alias `a_b` is already used on line 7")],
    );
    check(
        &sync("  - type: response\n    status: 700\n"),
        &[(7, 13, "status must be an HTTP status code")],
    );
    check(
        &sync("  - type: request\n    url: ftp://x\n"),
        &[(7, 10, "must start with http://")],
    );
    check(
        &sync("  - type: switch\n    cases: []\n"),
        &[(7, 5, "at least one case")],
    );
    check(
        "title: t\ntrigger: { type: webhook }\nnodes:\n  - type: delay\n",
        &[(4, 5, "exactly one of `duration` or `until`")],
    );
}

#[test]
fn follow_redirects_is_a_boolean() {
    let node = "  - type: request\n    url: \"http://x.example/\"\n    follow_redirects: ";
    check(&sync(&format!("{node}false\n")), &[]);
    check(
        &sync(&format!("{node}sometimes\n")),
        &[(8, 23, "invalid type")],
    );
}

#[test]
fn an_empty_basic_password_is_an_error() {
    let auth = |password: &str| {
        format!(
            "title: t\nsecrets: [SET_SECRET, EMPTY_SECRET, UNSET_SECRET]\ntrigger:\n  type: webhook\n  auth:\n    basic: {{ username: u, password: {password} }}\n"
        )
    };
    let unset = (
        2,
        37,
        "warning: secret `UNSET_SECRET` is declared but not set",
    );
    let empty = "the Basic password is empty (as written or in its secret)";
    check(&auth("\"\""), &[unset, (6, 37, empty)]);
    check(
        &auth("\"{{ secrets.EMPTY_SECRET }}\""),
        &[unset, (6, 37, empty)],
    );
    check(&auth("\"{{ secrets.SET_SECRET }}\""), &[unset]);
    // An unset secret is reported as such (an error for `serve`), not as empty.
    check(&auth("\"{{ secrets.UNSET_SECRET }}\""), &[unset]);
}

#[test]
fn an_hmac_timestamp_that_the_payload_does_not_sign_is_a_warning() {
    let hmac = |extra: &str| {
        format!(
            "title: t\nsecrets: [SET_SECRET]\ntrigger:\n  type: webhook\n  verify:\n    preset: hmac\n    secret: \"{{{{ secrets.SET_SECRET }}}}\"\n    header: X-Sig\n{extra}"
        )
    };
    let warning =
        "warning: `timestamp_header` X-Ts is checked for freshness but `payload` does not sign it";
    check(&hmac("    timestamp_header: X-Ts\n"), &[(9, 23, warning)]);
    check(
        &hmac("    timestamp_header: X-Ts\n    payload: \"{{ trigger.raw_body }}\"\n"),
        &[(9, 23, warning)],
    );
    for signed in [
        "\"{{ trigger.headers['x-ts'] }}.{{ trigger.raw_body }}\"",
        "\"{{ trigger.headers[\\\"X-Ts\\\"] }}{{ trigger.raw_body }}\"",
    ] {
        check(
            &hmac(&format!(
                "    timestamp_header: X-Ts\n    payload: {signed}\n"
            )),
            &[],
        );
    }
    check(&hmac(""), &[]);
}
