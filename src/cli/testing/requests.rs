//! `expect.requests`: what request nodes sent, against what a case expects;
//! each difference says what was expected and what was sent.

use super::format::{OneOrMany, RequestExpect};
use hookflow_executor::{stubs::same_url, SentRequest};
use serde_json::{Map, Value as Json};
use std::collections::BTreeMap;

/// Every difference between the requests `sent` and `expected`, by node.
pub fn check(
    expected: &BTreeMap<String, OneOrMany<RequestExpect>>,
    sent: &[SentRequest],
) -> Vec<String> {
    let mut problems = Vec::new();
    for (node, expect) in expected {
        let of_node: Vec<&SentRequest> = sent.iter().filter(|r| &r.node == node).collect();
        let count = of_node.len();
        match expect {
            OneOrMany::One(one) => {
                if of_node.is_empty() {
                    problems.push(format!(
                        "requests `{node}`: expected a request, none was sent"
                    ));
                }
                for (i, request) in of_node.iter().enumerate() {
                    problems.extend(one_request(node, i, count, one, request));
                }
            }
            OneOrMany::Many(list) => {
                if list.len() != count {
                    let sent_lines: Vec<String> = of_node
                        .iter()
                        .map(|r| format!("\n  sent: {}", summary(r)))
                        .collect();
                    problems.push(format!(
                        "requests `{node}`: expected {}, {} sent{}",
                        plural(list.len(), "request"),
                        match count {
                            0 => "none was".to_string(),
                            1 => "1 was".to_string(),
                            n => format!("{n} were"),
                        },
                        sent_lines.concat()
                    ));
                }
                for (i, (one, request)) in list.iter().zip(&of_node).enumerate() {
                    problems.extend(one_request(node, i, count, one, request));
                }
            }
        }
    }
    problems
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// The differences of one request, as one problem (with what was sent), if any.
fn one_request(
    node: &str,
    index: usize,
    count: usize,
    expect: &RequestExpect,
    request: &SentRequest,
) -> Option<String> {
    let mut diffs = Vec::new();
    if let Some(method) = &expect.method {
        if !method.eq_ignore_ascii_case(&request.method) {
            diffs.push(format!(
                "method: expected {}, sent {}",
                method.to_ascii_uppercase(),
                request.method
            ));
        }
    }
    if let Some(url) = &expect.url {
        if !same_url(url, &request.url) {
            diffs.push(format!("url: expected {url}, sent {}", request.url));
        }
    }
    if !expect.query.is_empty() {
        let pairs = query_pairs(&request.url);
        for (name, want) in &expect.query {
            let got: Vec<&str> = pairs
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .collect();
            let want: Vec<String> = match want {
                Json::Array(items) => items.iter().map(text_of).collect(),
                other => vec![text_of(other)],
            };
            if got != want {
                let shown = |values: &[&str]| match values {
                    [] => "nothing".to_string(),
                    [one] => format!("{one:?}"),
                    many => format!("{many:?}"),
                };
                let want_refs: Vec<&str> = want.iter().map(String::as_str).collect();
                diffs.push(format!(
                    "query {name}: expected {}, sent {}",
                    shown(&want_refs),
                    shown(&got)
                ));
            }
        }
    }
    for (name, want) in &expect.headers {
        let got: Vec<&str> = request
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect();
        if !got.contains(&want.as_str()) {
            // A credential's values stay out of the output (CI logs keep
            // it): whether it was sent, and that it differs, is enough.
            let secret = hookflow_model::request::is_secret_header(name);
            diffs.push(match got.as_slice() {
                [] if secret => format!("header {name}: expected a value, not sent"),
                [] => format!("header {name}: expected {want:?}, not sent"),
                _ if secret => format!(
                    "header {name}: sent, with another value than expected \
                     (a secret-bearing header: its values are not shown)"
                ),
                [one] => format!("header {name}: expected {want:?}, sent {one:?}"),
                many => format!("header {name}: expected {want:?}, sent {many:?}"),
            });
        }
    }
    if let Some(want) = &expect.body {
        let body = body_value(request);
        let mut found = Vec::new();
        differences(want, &body, "body", &mut found);
        diffs.extend(found);
    }
    if diffs.is_empty() {
        return None;
    }
    let which = if count > 1 {
        format!("request {} of {count} of `{node}`", index + 1)
    } else {
        format!("the request of `{node}`")
    };
    Some(format!(
        "{which} differs:\n  {}\n  sent: {}",
        diffs.join("\n  "),
        summary(request)
    ))
}

/// A request on one line: method, URL and body.
fn summary(request: &SentRequest) -> String {
    match body_value(request) {
        Json::Null => format!("{} {}", request.method, request.url),
        body => format!("{} {} {}", request.method, request.url, compact(&body, 200)),
    }
}

fn compact(value: &Json, max: usize) -> String {
    let text = value.to_string();
    if text.chars().count() > max {
        format!("{}…", text.chars().take(max).collect::<String>())
    } else {
        text
    }
}

/// The query parameters of `url`, decoded.
fn query_pairs(url: &str) -> Vec<(String, String)> {
    let query = url
        .split_once('?')
        .map(|(_, q)| q.split('#').next().unwrap_or_default())
        .unwrap_or_default();
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// A scalar as text (how it stands in a query string).
fn text_of(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        Json::Null => String::new(),
        other => other.to_string(),
    }
}

/// The body as sent, as a value: JSON as JSON, a form as a mapping of
/// strings (a list for a repeated name), anything else as text; `null` for none.
fn body_value(request: &SentRequest) -> Json {
    let Some(bytes) = &request.body else {
        return Json::Null;
    };
    let content_type = request
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let text = || Json::String(String::from_utf8_lossy(bytes).into_owned());
    if content_type == "application/json" || content_type.ends_with("+json") {
        serde_json::from_slice(bytes).unwrap_or_else(|_| text())
    } else if content_type == "application/x-www-form-urlencoded" {
        let mut form = Map::new();
        for (k, v) in form_urlencoded::parse(bytes) {
            let v = Json::String(v.into_owned());
            match form.get_mut(k.as_ref()) {
                Some(Json::Array(items)) => items.push(v),
                Some(first) => *first = Json::Array(vec![first.take(), v]),
                None => {
                    form.insert(k.into_owned(), v);
                }
            }
        }
        Json::Object(form)
    } else {
        text()
    }
}

/// Each place where `actual` does not have what `expected` has (mappings as
/// subsets, lists item by item, scalars equal with their types), as
/// `path: expected X, sent Y`.
pub fn differences(expected: &Json, actual: &Json, path: &str, out: &mut Vec<String>) {
    match (expected, actual) {
        (Json::Object(e), Json::Object(a)) => {
            for (k, v) in e {
                let at = format!("{path}.{k}");
                match a.get(k) {
                    Some(av) => differences(v, av, &at, out),
                    None => out.push(format!("{at}: expected {}, not sent", shown(v))),
                }
            }
        }
        (Json::Array(e), Json::Array(a)) if e.len() == a.len() => {
            for (i, (x, y)) in e.iter().zip(a).enumerate() {
                differences(x, y, &format!("{path}[{i}]"), out);
            }
        }
        (Json::Array(e), Json::Array(a)) => out.push(format!(
            "{path}: expected {} items, sent {}: {}",
            e.len(),
            a.len(),
            compact(actual, 120)
        )),
        (e, a) if e == a => {}
        (Json::Number(e), Json::Number(a)) if same_number(e, a) => {}
        (e, a) => out.push(format!("{path}: expected {}, sent {}", shown(e), shown(a))),
    }
}

/// Whether two numbers are the same value (`25` and `25.0` are; JSON
/// does not tell integers from decimals).
fn same_number(e: &serde_json::Number, a: &serde_json::Number) -> bool {
    match (e.as_i64(), a.as_i64(), e.as_u64(), a.as_u64()) {
        (Some(x), Some(y), _, _) => x == y,
        (_, _, Some(x), Some(y)) => x == y,
        _ => e.as_f64().zip(a.as_f64()).is_some_and(|(x, y)| x == y),
    }
}

/// A value with its kind: `12.5 (a number)`, `"12.5" (a string)`.
fn shown(value: &Json) -> String {
    let kind = match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "a mapping",
    };
    match value {
        Json::Null => "null".to_string(),
        other => format!("{} ({kind})", compact(other, 120)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sent(body: &str, content_type: &str) -> SentRequest {
        SentRequest {
            node: "erp".into(),
            method: "POST".into(),
            url: "https://erp.example/orders?a=1&b=x&b=y".into(),
            headers: vec![
                ("idempotency-key".into(), "run-erp".into()),
                ("content-type".into(), content_type.into()),
                ("X-Trace".into(), "t-1".into()),
            ],
            body: Some(body.as_bytes().to_vec()),
        }
    }

    fn expect(yaml: &str) -> BTreeMap<String, OneOrMany<RequestExpect>> {
        let tree = hookflow_model::yaml::Yaml::parse(yaml).expect("yaml");
        hookflow_model::yaml::from_yaml(&tree).expect("expectations")
    }

    #[test]
    fn types_count_in_bodies() {
        let json = sent(r#"{"amount":"12.5","sku":"a"}"#, "application/json");
        let problems = check(
            &expect("erp: { body: { amount: 12.5 } }"),
            std::slice::from_ref(&json),
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0]
                .contains(r#"body.amount: expected 12.5 (a number), sent "12.5" (a string)"#),
            "{}",
            problems[0]
        );
        assert!(problems[0].contains("sent: POST https://erp.example/orders?a=1&b=x&b=y {"));
        assert!(check(&expect("erp: { body: { amount: \"12.5\" } }"), &[json]).is_empty());
    }

    #[test]
    fn method_url_query_and_headers_match() {
        let req = sent("a=1&a=2&c=3", "application/x-www-form-urlencoded");
        let ok = expect(
            "erp:\n  method: post\n  url: https://erp.example/orders?a=1&b=x&b=y\n  query: { a: 1, b: [x, y] }\n  headers: { x-trace: t-1, Content-Type: application/x-www-form-urlencoded }\n  body: { a: [\"1\", \"2\"], c: \"3\" }\n",
        );
        assert!(
            check(&ok, std::slice::from_ref(&req)).is_empty(),
            "{:?}",
            check(&ok, std::slice::from_ref(&req))
        );
        let bad = expect(
            "erp:\n  - method: GET\n    url: https://erp.example/orders\n    query: { a: 2, z: q }\n    headers: { x-trace: t-2, x-missing: m }\n",
        );
        let problems = check(&bad, &[req]);
        let text = problems.join("\n");
        for part in [
            "method: expected GET, sent POST",
            "url: expected https://erp.example/orders, sent https://erp.example/orders?a=1&b=x&b=y",
            r#"query a: expected "2", sent "1""#,
            r#"query z: expected "q", sent nothing"#,
            r#"header x-trace: expected "t-2", sent "t-1""#,
            r#"header x-missing: expected "m", not sent"#,
        ] {
            assert!(text.contains(part), "{part} in\n{text}");
        }
    }

    #[test]
    fn lists_count_requests() {
        let one = sent("{}", "application/json");
        let problems = check(&expect("erp: [{}, {}]"), std::slice::from_ref(&one));
        assert!(
            problems[0].contains("expected 2 requests, 1 was sent"),
            "{problems:?}"
        );
        let problems = check(&expect("erp: []"), std::slice::from_ref(&one));
        assert!(
            problems[0].contains("expected 0 requests, 1 was sent"),
            "{problems:?}"
        );
        assert!(check(&expect("erp: []"), &[]).is_empty());
        let problems = check(&expect("erp: { method: POST }"), &[]);
        assert!(
            problems[0].contains("expected a request, none was sent"),
            "{problems:?}"
        );
        // A mapping: every request matches it.
        let mut second = one.clone();
        second.method = "PUT".into();
        let problems = check(&expect("erp: { method: POST }"), &[one, second]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("request 2 of 2 of `erp` differs"),
            "{problems:?}"
        );
    }

    #[test]
    fn differences_name_their_path() {
        let mut out = Vec::new();
        differences(
            &json!({"a": {"b": [1, {"c": true}]}, "d": "x"}),
            &json!({"a": {"b": [1, {"c": false}]}, "e": 1}),
            "body",
            &mut out,
        );
        assert_eq!(
            out,
            vec![
                "body.a.b[1].c: expected true (a boolean), sent false (a boolean)",
                "body.d: expected \"x\" (a string), not sent",
            ]
        );
    }
}
