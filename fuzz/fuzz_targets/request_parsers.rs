//! The request parsers: query strings, JSON, form, text and XML bodies, and
//! a workflow's parse entries (dotted paths, JSONPath, types, headers,
//! query) over what they produce. The first byte picks the content type,
//! the bytes up to the first newline are the query string, the rest the body.
#![no_main]

use hookflow_model::runtime::Workflow;
use hookflow_model::{load_source, LoadOptions, SecretPolicy};
use hookflow_parser::intake::{build_input, receive, Request};
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::{Arc, OnceLock};

const WORKFLOW: &str = r#"title: Parses everything
trigger:
  type: webhook
  parse:
    headers: [ { key: x-request-id, alias: request_id } ]
    query: [ { key: page }, { key: a, alias: ab } ]
    body:
      - { key: order.id, alias: id, type: string }
      - { key: order.amount, alias: amount, type: number }
      - { key: "$.items[*].sku", alias: skus }
      - { key: flag, type: boolean }
      - { key: count, type: integer }
      - { key: "nested.deep.list[0].x", alias: x }
      - { key: "$..name", alias: names }
nodes:
  - { key: one, type: log, message: "x" }
"#;

const CONTENT_TYPES: [&str; 7] = [
    "application/json",
    "application/x-www-form-urlencoded",
    "text/plain; charset=utf-8",
    "application/xml",
    "application/vnd.api+json",
    "multipart/form-data",
    "",
];

fn workflow() -> &'static Arc<Workflow> {
    static WF: OnceLock<Arc<Workflow>> = OnceLock::new();
    WF.get_or_init(|| {
        let env = |_: &str| None;
        let options = LoadOptions {
            secrets: SecretPolicy::Warn,
            env: &env,
        };
        let file = load_source("fuzz", Path::new("fuzz.yaml"), WORKFLOW, &options);
        match file.workflow {
            Some(w) => w,
            None => panic!("the fuzz workflow does not load: {:?}", file.diagnostics),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[usize::from(pick) % CONTENT_TYPES.len()];
    let (query, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (&rest[..0], rest),
    };
    let query = String::from_utf8_lossy(query);
    let request = Request {
        method: "POST",
        path: "/api/webhook:trigger/fuzz",
        query: &query,
        content_type: (!content_type.is_empty()).then_some(content_type),
        body,
    };
    let headers = [("x-request-id", "r-1"), ("content-type", content_type)];
    if let Ok(received) = receive(request, headers) {
        let _ = build_input(workflow(), received, Default::default());
    }
});
