//! Templates and expressions: compiled and rendered with fuel against a
//! scope holding request-like data. Errors are fine; panics and hangs are not.
#![no_main]

use hookflow_model::template::{Scope, TemplateBuilder};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut builder = TemplateBuilder::new();
    let as_text = builder.text(text);
    let as_expr = builder.expr(text);
    let templates = builder.finish();
    let mut scope = Scope::new();
    scope.set_owned(
        "trigger",
        json!({
            "body": {"order": {"id": "O-1", "amount": 9.5, "items": [1, 2, 3]}, "s": "时间"},
            "headers": {"x-request-id": "r-1"},
            "query": {"a": ["1", "2"]},
        }),
    );
    scope.set_owned("vars", json!({"id": "O-1", "n": 3}));
    scope.set_node("prev", &json!({"status": 200, "body": "ok"}));
    if let Ok(compiled) = as_text {
        let _ = templates.render(&compiled.value, &scope);
        let _ = templates.eval_text(&compiled.value, &scope);
    }
    if let Ok(compiled) = as_expr {
        let _ = templates.eval(&compiled.value, &scope);
        let _ = templates.truth(&compiled.value, &scope);
    }
});
