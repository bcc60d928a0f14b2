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
        &format!(
            "{HEAD}  parse:\n    body: [{{ key: order.id }}]\nnodes:\n{}",
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
    check(
        "title: t\ntitle: u\n",
        &[
            (1, 1, "missing field `trigger`"),
            (
                2,
                1,
                "duplicate key `title` in this mapping (first on line 1); remove one of them",
            ),
        ],
    );
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
        &[(2, 33, "unknown value `later`; expected one of: sync, async")],
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
    // In a block scalar, literal or folded, the line of the error itself,
    // with a fix.
    check(
        &sync("  - type: log\n    message: |\n      first {{ vars.x }}\n      second\n        third {{ vars.y\n"),
        &[(10, 9, "syntax error: unexpected end of input, expected end of variable block; the expression stops short of its end (`{{ 1 + }}`), or a `{{` is not closed: end it with `}}`")],
    );
    // One `{{ }}` over several lines: the line of its own source.
    check(
        &sync("  - type: log\n    message: |-\n      {{\n        vars.a +\n      }}\n"),
        &[(9, 9, "expected expression")],
    );
    check(
        &sync("  - type: log\n    message: >-\n      {% if vars.x %}\n      open\n"),
        &[(
            8,
            7,
            "an `{% if %}` or `{% for %}` has no `{% endif %}` or `{% endfor %}`",
        )],
    );
    check(
        &sync("  - type: log\n    message: >\n      first {{ vars.x }}\n\n      second {{ vars. }}\n      third\n"),
        &[(10, 7, "template does not compile: syntax error")],
    );
    check(
        &sync("  - type: calculation\n    expression: >-\n      vars.a +\n        vars.b +\n        *\n"),
        &[(10, 9, "expression does not compile")],
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
            "invalid JSONPath `$.a[?(`: it ends too early (at character 7); close its brackets and quotes",
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
        &[(6, 41, "`secrets.PASS` is used but not declared")],
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
        &[(7, 18, "`nodes.later` refers to a node that cannot have run before")],
    );
    check(
        &sync("  - type: log\n    message: \"{{ nodes.ghost }}\"\n"),
        &[(7, 18, "no node has the key `ghost`")],
    );
    // A node in the other branch of a condition cannot have run.
    check(
        &sync("  - type: condition\n    if: \"true\"\n    then:\n      - { key: a, type: calculation, expression: \"1\" }\n    else:\n      - { type: log, message: \"{{ nodes.a }}\" }\n"),
        &[(11, 35, "`nodes.a` refers to a node that cannot have run")],
    );
    // After the condition, a node from a branch may have run; the condition's own result is there in its branches.
    check(
        &sync("  - key: c\n    type: condition\n    if: \"true\"\n    then:\n      - { key: a, type: calculation, expression: \"nodes.c\" }\n  - { type: log, message: \"{{ nodes.a }} {{ nodes.c }}\" }\n"),
        &[],
    );
    // Parallel branches do not see each other.
    check(
        "title: t\ntrigger: { type: webhook }\nnodes:\n  - type: parallel\n    branches:\n      - - { key: a, type: calculation, expression: \"1\" }\n      - - { type: log, message: \"{{ nodes.a }}\" }\n",
        &[(7, 37, "cannot have run")],
    );
}

/// A problem in a value over several lines is reported on the line of the
/// text at fault, at its column: a literal `|` or folded `>` block, a
/// quoted or plain scalar over several lines.
#[test]
fn problems_in_values_over_several_lines_point_at_their_line() {
    check(
        &sync("  - key: a\n    type: log\n    message: |\n      line one\n      {{ nodes.zz }}\n  - type: log\n    message: >\n      one\n      two\n      three\n      {{ 1 | rond }}\n  - type: log\n    message: \"first line\n      {{ nodes.yy }}\"\n  - type: log\n    message: plain first\n      then {{ 2 | rnd }} and {{ nodes.a.x }}\n"),
        &[
            (10, 10, "`nodes.zz` refers to no node"),
            (16, 14, "unknown filter `rond`"),
            (19, 10, "`nodes.yy` refers to no node"),
            (22, 19, "unknown filter `rnd`"),
        ],
    );
    // A name inside a longer one is not taken for it; a value's strings
    // are searched for the name.
    check(
        &sync("  - key: ab\n    type: calculation\n    expression: \"1\"\n  - type: response\n    body:\n      x: \"{{ nodes.abc }}\"\n      y:\n        - \"{{ nodes.ab }} {{ nodes.c }}\"\n"),
        &[
            (11, 14, "`nodes.abc` refers to no node"),
            (13, 30, "`nodes.c` refers to no node"),
        ],
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
        "\"{{ trigger.headers[\\\"x-ts\\\"] }}{{ trigger.raw_body }}\"",
    ] {
        check(
            &hmac(&format!(
                "    timestamp_header: X-Ts\n    payload: {signed}\n"
            )),
            &[],
        );
    }
    check(&hmac(""), &[]);
    // Header names are lower-case in `trigger.headers`: `X-Ts` reads
    // nothing, and every request would be refused.
    let upper = "warning: `payload` reads the header X-Ts with upper-case letters";
    for unread in [
        "\"{{ trigger.headers['X-Ts'] }}.{{ trigger.raw_body }}\"",
        "\"{{ trigger.headers[\\\"X-Ts\\\"] }}{{ trigger.raw_body }}\"",
    ] {
        check(
            &hmac(&format!(
                "    timestamp_header: X-Ts\n    payload: {unread}\n"
            )),
            &[(10, 14, upper)],
        );
    }
}

// ---- Issue 15: what breaks at run time is caught before ----

/// A sync head with parse entries: a header, a query key and body keys.
const PARSED: &str = "title: t\ntrigger:\n  type: webhook\n  mode: sync\n  parse:\n    headers: [{ key: X-Request-Id }]\n    query: [{ key: event }]\n    body:\n      - { key: trade_status }\n      - { key: \"$.items[*].sku\", alias: skus }\nnodes:\n";

fn parsed(nodes: &str) -> String {
    format!("{PARSED}{nodes}")
}

#[test]
fn vars_must_be_defined_by_a_parse_entry() {
    // Default aliases (header, query, body) and explicit ones are known.
    check(
        &parsed("  - type: log\n    message: \"{{ vars.x_request_id }} {{ vars.event }} {{ vars.trade_status }} {{ vars['skus'] }}\"\n"),
        &[],
    );
    // In an expression: at the reference, with the close alias as a hint.
    check(
        &parsed("  - type: condition\n    if: vars.trade_stauts == \"TRADE_SUCCESS\"\n    reject_on_false: true\n"),
        &[(
            13,
            9,
            "`vars.trade_stauts` is not defined by any parse entry; did you mean `vars.trade_status`?",
        )],
    );
    // In a template, quoted or in a block scalar: at the reference too.
    check(
        &parsed("  - type: log\n    message: \"paid: {{ vars.trade_stauts }}\"\n  - type: log\n    message: |\n      first line\n        {{ vars[\"order\"] }}\n"),
        &[
            (13, 24, "`vars.trade_stauts` is not defined"),
            (
                17,
                12,
                "`vars.order` is not defined by any parse entry; the parse entries define: event, skus, trade_status, x_request_id (add a parse entry with `alias: order`)",
            ),
        ],
    );
    // Without parse entries, the hint says how to add one.
    check(
        &sync("  - type: response\n    body: { id: \"{{ vars.id }}\" }\n"),
        &[(
            7,
            21,
            "`vars.id` is not defined by any parse entry; `trigger.parse` defines no variables: add an entry such as `body: [{ key: id }]`",
        )],
    );
    // A template that sets its own `vars` reads no parse entries.
    check(
        &sync("  - type: response\n    body: \"{% set vars = {'a': 1} %}{{ vars.a }}\"\n"),
        &[],
    );
}

#[test]
fn node_references_hint_the_close_key() {
    check(
        &sync("  - key: check\n    type: calculation\n    expression: \"1\"\n  - type: response\n    body: \"{{ nodes.chek }}\"\n"),
        &[(
            10,
            15,
            "`nodes.chek` refers to no node: no node has the key `chek`; did you mean `nodes.check`?",
        )],
    );
}

#[test]
fn unknown_filters_and_tests_are_reported_where_written() {
    check(
        &sync("  - type: response\n    body: \"{{ 12.345 | rond(2) }}\"\n"),
        &[(7, 24, "unknown filter `rond`; did you mean `round`?")],
    );
    check(
        &sync("  - type: calculation\n    expression: trigger.body.n is evn\n  - type: log\n    message: \"{% filter uper %}x{% endfilter %}\"\n"),
        &[
            (7, 35, "unknown test `evn`; did you mean `even`?"),
            (9, 25, "unknown filter `uper`; did you mean `upper`?"),
        ],
    );
    // Another template language's name, and a short name nothing is close to.
    check(
        &sync("  - type: log\n    message: \"{{ 'a' | upcase }} {{ 'b' | date }}\"\n"),
        &[
            (7, 24, "unknown filter `upcase`; here it is `upper`"),
            (7, 43, "unknown filter `date`; the filters are: abs,"),
        ],
    );
    // Nothing close: the hint lists them all.
    check(
        &sync("  - type: log\n    message: \"{{ trigger.body | frobnicate }}\"\n"),
        &[(
            7,
            33,
            "unknown filter `frobnicate`; the filters are: abs, attr,",
        )],
    );
    // Known ones pass, and text that only looks like a filter is not one.
    check(
        &sync("  - type: log\n    message: \"{{ trigger.body | tojson }} {{ 1.5 | round | int }} {{ 'a | b' }} {{ trigger.x is defined }} {{ 3 is not divisibleby(2) }}\"\n"),
        &[],
    );
}

#[test]
fn scalar_expressions_are_accepted() {
    check(
        &sync("  - key: one\n    type: calculation\n    expression: 1\n  - type: calculation\n    expression: 2.5\n  - type: condition\n    if: true\n    then:\n      - type: response\n        body: \"{{ nodes.one }}\"\n    else:\n      - type: response\n        body: no\n"),
        &[],
    );
    check(
        "title: t\ntrigger: { type: webhook }\nnodes:\n  - type: loop\n    over: 3\n    do: []\n  - type: switch\n    cases:\n      - { if: false, do: [] }\n",
        &[],
    );
    // Only where an expression goes: a number is still not a log message.
    check(
        &sync("  - type: log\n    message: 1\n"),
        &[(
            7,
            14,
            "invalid type: expected a string, found the number `1`; put it in quotes to write it as text",
        )],
    );
}

#[test]
fn sync_paths_without_a_response_are_warned_about() {
    let warned = "can finish without a `response` node, though other paths answer with one: the caller would then get the default answer, 200 `{\"status\":\"resolved\",…}`";
    // The case: `else` missing (mis-indented away).
    check(
        &sync("  - type: condition\n    if: trigger.body.ok\n    then:\n      - type: response\n        body: success\n"),
        &[(
            6,
            5,
            "warning: when `if` is false this condition has no `else`, and the run can finish without a `response` node",
        )],
    );
    // A written branch that lacks it: the warning points at that branch.
    check(
        &sync("  - type: condition\n    if: trigger.body.ok\n    then:\n      - type: response\n        body: success\n    else:\n      - type: log\n        message: unpaid\n"),
        &[(11, 5, &format!("warning: this branch (`else`) {warned}; add a `response` node at its end"))],
    );
    // A switch without default, a case that ends resolved.
    check(
        &sync("  - type: switch\n    cases:\n      - if: trigger.body.a\n        do: [{ type: response, body: a }]\n      - if: trigger.body.b\n        do: [{ type: end, status: resolved }]\n"),
        &[
            (6, 5, "warning: when no case matches this switch has no `default`"),
            (11, 35, "warning: this `end` finishes the run without a `response` node"),
        ],
    );
    // A case of a switch inside a branch: the innermost choice is named.
    check(
        &sync("  - type: condition\n    if: trigger.body.ok\n    then:\n      - type: switch\n        cases:\n          - if: trigger.body.a\n            do: [{ type: log, message: a }]\n        default: [{ type: response, body: d }]\n    else: [{ type: response, body: e }]\n"),
        &[(12, 13, "warning: this branch (`do` of case 1) can finish without")],
    );
    // No warning: every path answers, fails on purpose, or none answers at all.
    check(
        &sync("  - type: condition\n    if: trigger.body.ok\n    then: [{ type: log, message: a }]\n  - type: response\n    body: ok\n"),
        &[],
    );
    check(
        &sync("  - type: condition\n    if: trigger.body.ok\n    reject_on_false: true\n  - type: condition\n    if: trigger.body.paid\n    then: [{ type: response, body: ok }]\n    else: [{ type: end, status: failed }]\n"),
        &[],
    );
    check(
        &sync("  - type: log\n    message: no response anywhere\n"),
        &[],
    );
    // A response in one parallel branch ends the run for all of them.
    check(
        &sync("  - type: parallel\n    branches:\n      - [{ type: response, body: a }]\n      - [{ type: log, message: b }]\n"),
        &[],
    );
    // Not with `race` or `any`: the other branch can decide first and
    // cancel the one that answers.
    for mode in ["race", "any"] {
        check(
            &sync(&format!("  - type: parallel\n    mode: {mode}\n    branches:\n      - [{{ type: response, body: a }}]\n      - [{{ type: log, message: b }}]\n")),
            &[(
                10,
                9,
                "warning: this branch (parallel branch 2) can finish without a `response` node",
            )],
        );
    }
}

#[test]
fn errors_do_not_hide_later_ones() {
    // Three independent errors in three nodes, then a template error in a
    // fourth: all four are reported.
    check(
        &sync("  - type: log\n    message: a\n    levle: warn\n  - type: loop\n    over: \"[1]\"\n    do: []\n    max_iterations: many\n  - type: sleep\n    duration: 5s\n  - type: log\n    message: \"{{ vars. }}\"\n"),
        &[
            (8, 5, "unknown field `levle` in a `log` node; did you mean `level`?"),
            (12, 21, "invalid type: expected a whole number (0 or more), found the text `many`"),
            (13, 11, "unknown node type `sleep`; expected one of: condition, switch, calculation, json_query, request, loop, parallel, delay, response, end, log (the rest of this node is checked once this is fixed)"),
            (16, 14, "template does not compile"),
        ],
    );
    // A node that cannot be read keeps its key and its nested nodes: they
    // are checked, and references to its key are not errors of their own.
    check(
        &sync("  - key: branch\n    type: condition\n    then:\n      - type: log\n        message: \"{{ nodes.branch }} {{ 1 | rond }}\"\n  - type: response\n    body: \"{{ nodes.branch }}\"\n"),
        &[
            (6, 5, "missing field `if`: a `condition` node needs it (the rest of this node is checked once this is fixed)"),
            (10, 45, "unknown filter `rond`"),
        ],
    );
    // A misspelt required field is reported once, as misspelt.
    check(
        &sync("  - type: log\n    mesage: hi\n  - type: condition\n    iff: \"true\"\n    then: [{ type: response, body: \"{{ 1 | rond }}\" }]\n"),
        &[
            (7, 5, "unknown field `mesage` in a `log` node; did you mean `message`?"),
            (9, 5, "unknown field `iff` in a `condition` node; did you mean `if`?"),
            (10, 44, "unknown filter `rond`"),
        ],
    );
    // Several errors in one node's fields.
    check(
        &sync("  - type: request\n    url: http://x.example/\n    metod: GET\n    timeout: 5\n    retry: { attempts: none }\n"),
        &[
            (8, 5, "unknown field `metod` in a `request` node; did you mean `method`?"),
            (9, 14, "duration `5` needs a unit"),
            (10, 24, "invalid type: expected a whole number from 0 to 4294967295, found the text `none`"),
        ],
    );
    // Tries are bounded: a typo cannot retry for ever.
    check(
        &sync("  - type: request\n    url: http://x.example/\n    retry: { attempts: 4294967295, backoff: 1ms }\n  - type: request\n    url: http://x.example/\n    retry: { attempts: 100 }\n"),
        &[(8, 24, "attempts is at most 100, not 4294967295; a longer outage is better met by a longer `backoff`")],
    );
    // Duplicate keys: the first is kept and the file is checked further.
    check(
        &sync("  - type: condition\n    if: \"true\"\n    then: []\n    else: []\n    else: []\n  - type: log\n    message: \"{{ 1 | rond }}\"\n"),
        &[
            (10, 5, "duplicate key `else` in this mapping (first on line 9); remove one of them"),
            (12, 22, "unknown filter `rond`"),
        ],
    );
}

#[test]
fn an_error_that_makes_later_checks_meaningless_says_so() {
    // The mode is unknown: no "response in async" error follows.
    check(
        "title: t\ntrigger: { type: webhook, mode: synch }\nnodes:\n  - type: response\n    body: ok\n",
        &[(
            2,
            33,
            "unknown value `synch`; did you mean `sync`? (the checks that depend on the mode are made once this is fixed)",
        )],
    );
    // A parse entry cannot be read: `vars` references are not checked.
    check(
        &format!("{HEAD}  parse:\n    body: [{{ alias: a }}]\nnodes:\n  - type: response\n    body: \"{{{{ vars.a }}}}\"\n"),
        &[(
            6,
            12,
            "missing field `key` (`vars.…` references are checked once this is fixed)",
        )],
    );
    // Secrets cannot be read: `secrets` references are not checked.
    check(
        "title: t\nsecrets: PASS\ntrigger:\n  type: webhook\n  auth: { basic: { username: u, password: \"{{ secrets.PASS }}\" } }\n",
        &[(
            2,
            10,
            "invalid type: expected a list, found the text `PASS`; write one `- item` per line, or `[a, b]` (`secrets.…` references are checked once this is fixed)",
        )],
    );
}

#[test]
fn messages_are_in_hookflow_words() {
    let file = |yaml: &str| {
        let env = |_: &str| None;
        let opts = LoadOptions {
            secrets: SecretPolicy::Warn,
            env: &env,
        };
        load_source("wf", Path::new("wf.yaml"), yaml, &opts).diagnostics
    };
    for yaml in [
        "title: t\ntitle: u\ntrigger: { type: webhook }\n",
        "title: 1\ntrigger: 5\n",
        "title: t\ntrigger: { type: webhook, max_body: [1] }\nnodes: { a: 1 }\n",
        "title: t\ntrigger: { type: webhook }\nnodes:\n  - { type: loop, over: x, do: [], max_iterations: -1 }\n",
        "title: t\ntrigger: { type: webhook }\nnodes:\n  - { type: log, message: {{ x }} }\n",
        "title: t\ntrigger: { type: webhook }\nnodes:\n  - { type: json_query, source: x, path: \"$.a[?(@.b ==\" }\n",
    ] {
        let diagnostics = file(yaml);
        assert!(!diagnostics.is_empty(), "{yaml}");
        for d in diagnostics {
            for library in [
                "DuplicateKeyPolicy",
                "Options",
                "policy",
                "struct ",
                "sequence",
                "u64",
                "i64",
                "variant",
                "atom_expr",
                " map,",
            ] {
                assert!(
                    !d.message.contains(library),
                    "`{library}` in `{}` ({yaml})",
                    d.message
                );
            }
        }
    }
    check(
        "title: 1\ntrigger: { type: webhook }\n",
        &[(
            1,
            8,
            "invalid type: expected a string, found the number `1`; put it in quotes to write it as text",
        )],
    );
}

#[test]
fn an_answer_cannot_set_headers_hookflow_or_http_sets() {
    check(
        &sync("  - type: response\n    headers:\n      Content-Length: \"3\"\n      X-Hookflow-Execution: fake\n      X-Shop: ok\n    body: hi\n"),
        &[
            (8, 7, "`Content-Length` cannot be set in an answer: the length is set from the body; remove it"),
            (9, 7, "`X-Hookflow-Execution` cannot be set in an answer: hookflow sets it"),
        ],
    );
}

/// A variable no run has (`trigge`, `noww`) or `loop` outside a loop is
/// undefined wherever it is read: a warning at its place, with the close
/// name. Before, `validate` said nothing and the node failed at run time
/// with "undefined value". Functions of the environment (`range`) and the
/// run's own variables are not warned about.
#[test]
fn a_variable_no_run_has_is_a_warning_at_its_place() {
    check(
        &sync("  - key: a\n    type: calculation\n    expression: trigge.body.x\n  - type: response\n    body: \"{{ noww }} {{ range(2) | list }} {{ now }} {{ execution.id }}\"\n"),
        &[
            (
                8,
                17,
                "warning: `trigge` is not a variable of a run, so it is undefined here (a template reads trigger, vars, nodes, loop, execution, secrets and now); did you mean `trigger`?",
            ),
            (10, 15, "warning: `noww` is not a variable of a run"),
        ],
    );
    check(
        &sync("  - key: a\n    type: calculation\n    expression: loop.item\n  - key: each\n    type: loop\n    over: \"3\"\n    do:\n      - { key: b, type: calculation, expression: \"loop.item * 2\" }\n"),
        &[(
            8,
            17,
            "warning: `loop.item` is read outside a loop: `loop` is set only in the nodes of a loop's `do`",
        )],
    );
}
