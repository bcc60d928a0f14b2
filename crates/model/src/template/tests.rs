//! Unit tests of templates: compiling, evaluation, the scope and the fast path.

use super::scope::engine_value;
use super::*;
use serde_json::json;
use std::collections::BTreeMap;

fn scope() -> Scope {
    let mut s = Scope::new();
    s.set(
        "vars",
        &json!({"order_id": "A1", "amount": 12.5, "n": 3, "flag": true, "none": null}),
    );
    s.set(
        "trigger",
        &json!({"body": {"status": "SUCCESS", "items": [1, 2]}}),
    );
    s
}

#[test]
fn templates_name_the_variables_they_read() {
    let mut b = TemplateBuilder::new();
    b.expr("vars.status == \"SUCCESS\"").expect("expr");
    b.text("order {{ nodes.paid.id }}").expect("text");
    b.value(&serde_json::json!({"a": ["{% for h in trigger.headers %}{{ h }}{% endfor %}"]}))
        .expect("value");
    let t = b.finish();
    for (name, read) in [
        ("vars", true),
        ("nodes", true),
        ("trigger", true),
        ("secrets", false),
        ("execution", false),
    ] {
        assert_eq!(t.reads(name), read, "{name}");
    }
    // Literals read nothing; `debug()` may print anything.
    let mut b = TemplateBuilder::new();
    b.text("plain").expect("text");
    assert!(!b.finish().reads("trigger"));
    let mut b = TemplateBuilder::new();
    b.text("{{ debug() }}").expect("text");
    assert!(b.finish().reads("trigger"));
}

/// One helper for template behaviour: source in, JSON out (or error text).
fn check(source: &str, expected: Result<Json, &str>) {
    let mut b = TemplateBuilder::new();
    let compiled = b.text(source).map(|c| c.value);
    let templates = b.finish();
    let got = match compiled {
        Ok(t) => templates.eval_text(&t, &scope()).map_err(|e| e.message),
        Err(e) => Err(e.message),
    };
    match (got, expected) {
        (Ok(g), Ok(e)) => assert_eq!(g, e, "{source}"),
        (Err(g), Err(e)) => {
            assert!(g.contains(e), "{source}: error `{g}` should contain `{e}`")
        }
        (g, e) => panic!("{source}: got {g:?}, expected {e:?}"),
    }
}

/// The scope the fast path is compared with the engine in: a node's
/// result and a loop beside [`scope`]'s variables.
fn looked_up_scope() -> Scope {
    let mut s = scope();
    s.set_node(
        "calc",
        &json!({"total": 7, "name": "sum", "tags": ["a"], "big": u64::MAX, "neg": -5,
                "nested": {"b": 1, "a": [1.5, null, {"z": true}]}}),
    );
    s.push_loop(&json!({"sku": "X"}), 2);
    s
}

/// One piece compiled with a builder of its own: the piece and its templates.
fn built<T>(compile: impl FnOnce(&mut TemplateBuilder) -> T) -> (T, Templates) {
    let mut b = TemplateBuilder::new();
    let value = compile(&mut b);
    (value, b.finish())
}

#[test]
fn looked_up_expressions_match_the_engine() {
    let s = looked_up_scope();
    let cases = [
        // Taken by lookup.
        ("nodes.calc.big", true),
        ("nodes.calc.neg", true),
        ("nodes.calc.nested", true),
        ("nodes.calc", true),
        ("vars.order_id", true),
        ("vars.amount", true),
        ("vars.none", true),
        ("trigger.body", true),
        ("trigger.body.items", true),
        ("nodes.calc.total", true),
        ("loop.item.sku", true),
        ("loop.index", true),
        ("vars.order_id == \"A1\"", true),
        ("vars.order_id != 'A1'", true),
        ("trigger.body.status == \"FAILED\"", true),
        // Left to the engine (same answers or errors either way).
        ("vars.n == \"3\"", false),
        ("vars.missing", false),
        ("vars.missing == \"x\"", false),
        ("nope.x", false),
        ("vars.n + 1", false),
        ("vars.order_id == \"a\\\"b\"", false),
        ("none", false),
        ("now", false),
    ];
    for (source, by_lookup) in cases {
        let (expr, templates) = built(|b| b.expr(source).expect("compiles").value);
        let mut slow = expr.clone();
        slow.fast = None;
        let fast_result = templates.eval(&expr, &s).map_err(|e| e.message);
        let engine_result = templates.eval(&slow, &s).map_err(|e| e.message);
        if source != "now" {
            assert_eq!(fast_result, engine_result, "{source}");
        }
        let looked_up = expr.fast.as_ref().is_some_and(|_| {
            matches!(expr.fast.as_deref(), Some(Fast::Path(p)) if s.lookup(p).is_some())
                || matches!(expr.fast.as_deref(), Some(Fast::StrEq { path, .. })
                    if s.lookup(path).is_some_and(|v| v.as_str().is_some()))
        });
        assert_eq!(looked_up, by_lookup, "{source}");
    }
}

#[test]
fn looked_up_text_templates_match_the_engine() {
    let s = looked_up_scope();
    let cases = [
        // Taken by lookup.
        ("order {{ vars.order_id }} paid", true),
        ("{{ vars.order_id }}-{{ vars.order_id }}", true),
        ("{{vars.order_id}}/{{ nodes.calc.name }}", true),
        ("sku {{ loop.item.sku }}", true),
        ("a }} b {{ vars.order_id }}", true),
        ("{{ trigger.body.status }}!", true),
        // Left to the engine (same answers or errors either way).
        ("amount {{ vars.amount }}", false),
        ("index {{ loop.index }}", false),
        ("none {{ vars.none }}.", false),
        ("missing {{ vars.missing }}", false),
        ("upper {{ vars.order_id | upper }}", false),
        ("trimmed  {{- vars.order_id }}", false),
        ("newline {{ vars.order_id }}\n", false),
        ("return {{ vars.order_id }}\r", false),
        ("line\r\n{{ vars.order_id }}\r\n", false),
        ("{% if true %}x{% endif %} {{ vars.order_id }}", false),
        ("{# note #} {{ vars.order_id }}", false),
        ("sum {{ vars.n + 1 }}", false),
        ("keyword {{ none }}", false),
        ("quoted {{ \"}}\" }}", false),
    ];
    for (source, by_lookup) in cases {
        let (text, templates) = built(|b| b.text(source).expect("compiles").value);
        let Text::Template(template) = &text else {
            panic!("{source:?} is not a text template");
        };
        let mut slow = template.clone();
        slow.fast = None;
        let fast_result = templates.render(&text, &s).map_err(|e| e.message);
        let engine_result = templates
            .render(&Text::Template(slow), &s)
            .map_err(|e| e.message);
        assert_eq!(fast_result, engine_result, "{source:?}");
        let looked_up = template
            .fast
            .as_deref()
            .is_some_and(|f| f.render(&s).is_some());
        assert_eq!(looked_up, by_lookup, "{source:?}");
    }
}

/// The context as it was built before it turned lazy: every entry converted.
fn eager_context(s: &Scope) -> MjValue {
    let data = &s.data;
    let mut m: BTreeMap<&str, MjValue> = data
        .entries
        .iter()
        .map(|(k, v)| (*k, engine_value(&v.json)))
        .collect();
    let nodes: BTreeMap<String, MjValue> = data
        .nodes
        .iter()
        .map(|(k, v)| (k.clone(), engine_value(&v.json)))
        .collect();
    m.insert("nodes", MjValue::from(nodes));
    if let Some(l) = data.loops.last() {
        let mut current = BTreeMap::new();
        current.insert("item", engine_value(&l.item));
        current.insert("index", MjValue::from(l.index));
        m.insert("loop", MjValue::from(current));
    }
    MjValue::from(m)
}

#[test]
fn lazy_context_matches_an_eager_one() {
    let mut s = scope();
    s.set_node("calc", &json!({"total": 7, "tags": ["a"]}));
    s.set_node("b", &json!([1, {"x": null}]));
    s.push_loop(&json!({"sku": "X"}), 2);
    let cases = [
        "nodes",
        "nodes | length",
        "nodes | list",
        "nodes | tojson",
        "nodes | dictsort",
        "nodes.items() | list",
        "nodes | reverse | list",
        "nodes is mapping",
        "'calc' in nodes",
        "nodes == nodes",
        "nodes.calc",
        "nodes['b'][1]",
        "nodes.calc.tags[0]",
        "nodes.missing",
        "loop",
        "loop | tojson",
        "loop.item.sku",
        "vars",
        "vars | length",
        "trigger.body.items[1]",
        "trigger.body.items.x",
        "vars.none.x",
        "vars.order_id.x",
    ];
    for source in cases {
        let mut b = TemplateBuilder::new();
        let expr = b.expr(source).expect("compiles").value;
        let t = b.finish();
        let lazy = t
            .eval_named(&expr_name(expr.id), s.context())
            .and_then(to_json);
        let eager = t
            .eval_named(&expr_name(expr.id), eager_context(&s))
            .and_then(to_json);
        assert_eq!(lazy, eager, "{source}");
    }
}

#[test]
fn entries_convert_only_when_read() {
    let mut b = TemplateBuilder::new();
    let by_lookup = b.expr("vars.order_id == \"A1\"").expect("compiles").value;
    let by_engine = b.expr("vars.n + 1").expect("compiles").value;
    let t = b.finish();
    let s = scope();
    let converted = |name: &str| s.data.entries[name].value.get().is_some();
    assert!(t.truth(&by_lookup, &s).expect("evaluates"));
    assert!(!converted("vars") && !converted("trigger"));
    assert_eq!(t.eval(&by_engine, &s).expect("evaluates"), json!(4));
    assert!(converted("vars") && !converted("trigger"));
}

#[test]
fn node_results_set_later_are_seen() {
    let mut b = TemplateBuilder::new();
    let c = b.text("{{ nodes.a.v + 1 }}").expect("compiles").value;
    let t = b.finish();
    let mut s = scope();
    assert!(t.eval_text(&c, &s).is_err());
    let branch = s.clone();
    s.set_node("a", &json!({"v": 1}));
    assert_eq!(t.eval_text(&c, &s).expect("evaluates"), json!(2));
    s.set_node("a", &json!({"v": 5}));
    assert_eq!(t.eval_text(&c, &s).expect("evaluates"), json!(6));
    assert!(t.eval_text(&c, &branch).is_err());
}

#[test]
fn typed_single_expressions_keep_their_type() {
    check("{{ vars.n }}", Ok(json!(3)));
    check("{{ vars.amount }}", Ok(json!(12.5)));
    check("{{ vars.flag }}", Ok(json!(true)));
    check("{{ vars.none }}", Ok(json!(null)));
    check("{{ trigger.body.items }}", Ok(json!([1, 2])));
    check(
        "{{ trigger.body }}",
        Ok(json!({"status": "SUCCESS", "items": [1, 2]})),
    );
    check("{{ vars.n + 1 }}", Ok(json!(4)));
}

#[test]
fn text_templates_render_strings() {
    check("order {{ vars.order_id }}", Ok(json!("order A1")));
    check("plain", Ok(json!("plain")));
    check("{{ vars.flag }} and {{ vars.n }}", Ok(json!("true and 3")));
    check(
        "{% if vars.flag %}yes{% else %}no{% endif %}",
        Ok(json!("yes")),
    );
    check("x{{ trigger.body.items }}", Ok(json!("x[1,2]")));
    check("<{{ '&' }}>", Ok(json!("<&>")));
}

#[test]
fn undefined_is_an_error_not_empty() {
    check("{{ vars.missing }}", Err("undefined"));
    check("id {{ vars.missing }}", Err("undefined"));
    check("{{ nope.x }}", Err("undefined"));
    // The message names the first step that is undefined.
    check("id {{ vars.missing }}", Err("`vars.missing` is undefined"));
    check(
        "{{ vars.missing.deeper }} {{ vars.order_id }}",
        Err("`vars.missing` is undefined"),
    );
    check(
        "{{ vars.order_id }}{% if vars.nope.x %}y{% endif %}",
        Err("`vars.nope` is undefined"),
    );
}

#[test]
fn compile_errors_are_reported() {
    check("{{ vars. }}", Err("syntax error"));
    check("{% if %}", Err("syntax error"));
    check("{{ 1 + }} x", Err("syntax error"));
}

#[test]
fn runaway_templates_stop() {
    check(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        Err("fuel"),
    );
}

#[test]
fn expressions_and_refs() {
    let mut b = TemplateBuilder::new();
    let c = b
        .expr("vars.order_id and trigger.body.status == \"SUCCESS\"")
        .expect("compiles");
    assert!(c.refs.contains("vars.order_id"), "{:?}", c.refs);
    assert!(c.refs.contains("trigger.body.status"), "{:?}", c.refs);
    assert_eq!(c.refs.len(), 2, "only what it reads: {:?}", c.refs);
    let t = b.finish();
    assert!(t.truth(&c.value, &scope()).expect("evaluates"));
}

#[test]
fn values_render_member_by_member() {
    let mut b = TemplateBuilder::new();
    let c = b
        .value(&json!({"code": "SUCCESS", "order": "{{ vars.order_id }}", "n": ["{{ vars.n }}", 2], "fixed": {"a": 1}}))
        .expect("compiles");
    let t = b.finish();
    let out = t.eval_value(&c.value, &scope()).expect("renders");
    assert_eq!(
        out,
        json!({"code": "SUCCESS", "order": "A1", "n": [3, 2], "fixed": {"a": 1}})
    );
    let mut b = TemplateBuilder::new();
    let err = b.value(&json!({"a": [1, "{{ x. }}"]})).expect_err("bad");
    assert_eq!(err.0, vec!["a".to_string(), "1".to_string()]);
}

#[test]
fn loop_scope_and_now() {
    let mut b = TemplateBuilder::new();
    let c = b
        .text("{{ loop.item }}-{{ loop.index }}-{{ now[:2] }}")
        .expect("compiles");
    let t = b.finish();
    let mut s = scope();
    s.push_loop(&json!("a"), 0);
    s.push_loop(&json!("b"), 1);
    assert_eq!(t.render(&c.value, &s).expect("renders"), "b-1-20");
    s.clear_loops();
    s.push_loop(&json!("a"), 0);
    assert_eq!(t.render(&c.value, &s).expect("renders"), "a-0-20");
}

#[test]
fn templates_compile_when_first_needed_and_not_before() {
    let mut b = TemplateBuilder::new();
    let fast = b.text("{{ vars.order_id }}").expect("fast").value;
    let slow = b
        .text("order {{ vars.order_id | upper }}")
        .expect("text")
        .value;
    let missing = b.text("{{ vars.nothing }}").expect("fast, but fails").value;
    // Checked when built: a broken template is still an error at once.
    assert!(b.text("{{ vars.x | }}").is_err());
    let t = b.finish();
    assert_eq!(
        t.env.templates().count(),
        0,
        "nothing compiled while loading"
    );
    assert_eq!(t.eval_text(&fast, &scope()).expect("fast"), json!("A1"));
    assert_eq!(
        t.env.templates().count(),
        0,
        "the fast path needs no engine"
    );
    assert_eq!(
        t.eval_text(&slow, &scope()).expect("slow"),
        json!("order A1")
    );
    assert_eq!(t.env.templates().count(), 1);
    // The engine words the fast path's failures: compiled then, once.
    let error = t.eval_text(&missing, &scope()).expect_err("undefined");
    assert!(error.message.contains("undefined"), "{}", error.message);
    assert!(t.eval_text(&missing, &scope()).is_err());
    assert_eq!(t.env.templates().count(), 2);
}

/// The fast path's answer to "what does this read" is the engine's, and an
/// expression it answers for compiles (as itself and as the template kept
/// for it): a shape the engine takes differently must get no answer.
#[test]
fn the_fast_reads_are_the_engines_reads() {
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    let sources = [
        "vars.order_id",
        "vars",
        "_x.y_1.Z",
        "  vars.a  ",
        "trigger.body.status == \"SUCCESS\"",
        "trigger.body.status != 'FAILED'",
        "vars.a == \"\"",
        "vars.a=='x'",
        "loop.index",
        "loop.item.id",
        "nodes.paid.status",
        "self.x",
        "super.x",
        "caller.x",
        "varargs.x",
        "kwargs.x",
        "range.x",
        "namespace",
        "debug.x",
        "vars.if",
        "vars.true",
        "vars.none",
        "vars.not",
        "vars.in",
        "vars.is",
        "vars.and.or",
        "vars.a == \"%}\"",
        "vars.a == \"}}\"",
        "vars.a == \"{#\"",
        "vars.a == \"a\nb\"",
        "vars.a == \"x\" ~ vars.b",
        "vars.a == vars.b",
        "vars.a.0",
        "vars.é",
        "now",
        "true",
        "None",
        "vars.a == 'it''s'",
    ];
    let mut answered = 0;
    for source in sources {
        let Some(read) = Fast::parse(source).as_ref().map(Fast::reads) else {
            continue;
        };
        answered += 1;
        let engine = env
            .compile_expression(source)
            .unwrap_or_else(|e| panic!("{source:?}: the engine refuses it: {e}"));
        let engine_reads: BTreeSet<String> =
            engine.undeclared_variables(true).into_iter().collect();
        assert_eq!(engine_reads, BTreeSet::from([read]), "{source:?}");
        let wrapper = format!("{{% set result = ({source}\n) %}}");
        if let Err(e) = env.template_from_str(&wrapper) {
            panic!("{source:?}: the kept template does not compile: {e}");
        }
    }
    assert!(answered >= 29, "only {answered} answered");
}

#[test]
fn urlencode_keeps_a_value_one_url_component() {
    check(
        r#"/orders/{{ "../admin/x?confirm=yes#" | urlencode }}"#,
        Ok(json!("/orders/..%2Fadmin%2Fx%3Fconfirm%3Dyes%23")),
    );
    check(
        r#"{{ "a b&c=d/é~-_." | urlencode }}"#,
        Ok(json!("a%20b%26c%3Dd%2F%C3%A9~-_.")),
    );
    check("{{ vars.amount | urlencode }}", Ok(json!("12.5")));
    check("{{ vars.none | urlencode }}", Ok(json!("")));
    check(
        "/orders/{{ trigger.body.missing | urlencode }}",
        Err("undefined"),
    );
    check(
        r#"{{ {"q": "x y", "n": 2, "skip": none} | urlencode }}"#,
        Ok(json!("n=2&q=x%20y")),
    );
}

/// `execution.workflow` and `execution.started_at` are made only for
/// templates that can read them: by name, or through `execution` whole or
/// indexed.
#[test]
fn the_execution_fields_a_run_builds_are_those_templates_can_read() {
    use super::{EXECUTION_STARTED_AT as STARTED, EXECUTION_WORKFLOW as WORKFLOW};
    for (source, workflow, started) in [
        ("{{ execution.id }}", false, false),
        ("at {{ execution.started_at }}", false, true),
        ("{{ execution.workflow }}", true, false),
        (
            "{{ execution.workflow ~ execution.started_at }}",
            true,
            true,
        ),
        ("{{ execution }}", true, true),
        ("{{ execution | tojson }}", true, true),
        // An index, even a literal one, reads `execution` whole.
        ("{{ execution['started_at'] }}", true, true),
        ("{% set f = 'workflow' %}{{ execution[f] }}", true, true),
        (
            "{% for k, v in execution | items %}{{ v }}{% endfor %}",
            true,
            true,
        ),
        ("{{ debug() }}", true, true),
        ("{{ vars.a }}", false, false),
    ] {
        let mut b = TemplateBuilder::new();
        b.text(source).expect("text");
        let t = b.finish();
        assert_eq!(t.reads(WORKFLOW), workflow, "{source}: workflow");
        assert_eq!(t.reads(STARTED), started, "{source}: started_at");
    }
}
