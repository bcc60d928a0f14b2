//! Applies a workflow's parse rules: headers, query and body → `vars`.

use crate::{ParseError, TriggerRequest};
use hookflow_model::def::ValueType;
use hookflow_model::path::{KeyPath, Step};
use hookflow_model::runtime::{ParseEntry, ParseSpec};
use serde_json::{Map, Number, Value as Json};

/// Extracts every entry of `spec` into one `vars` object.
pub fn extract(spec: &ParseSpec, parts: &TriggerRequest) -> Result<Map<String, Json>, ParseError> {
    extract_plucked(spec, parts, None)
}

/// [`extract`], with the values of the body's entries already read from
/// the raw body (`plucked`, one per entry, in order: see [`crate::pluck`]).
pub(crate) fn extract_plucked(
    spec: &ParseSpec,
    parts: &TriggerRequest,
    plucked: Option<Vec<Option<Json>>>,
) -> Result<Map<String, Json>, ParseError> {
    let mut vars = Map::new();
    for entry in &spec.headers {
        // A header entry's path is the one lower-cased name.
        let (found, shown) = match &entry.path {
            KeyPath::Dotted(steps) => match steps.as_slice() {
                // A secret-bearing header's value is never quoted in an
                // error (SPEC §3: the error is logged and kept).
                [Step::Key(name)] => (
                    parts.header(name).map(Json::String),
                    !hookflow_model::request::is_secret_header(name),
                ),
                _ => (None, true),
            },
            KeyPath::JsonPath(_) => (None, true),
        };
        let value = extract_one("headers", entry, found, shown)?;
        vars.insert(entry.alias.clone(), value);
    }
    for entry in &spec.query {
        let value = extract_one("query", entry, entry.path.lookup(&parts.query), true)?;
        vars.insert(entry.alias.clone(), value);
    }
    match plucked {
        Some(values) => {
            for (entry, found) in spec.body.iter().zip(values) {
                let value = extract_one("body", entry, found, true)?;
                vars.insert(entry.alias.clone(), value);
            }
        }
        None if spec.body.is_empty() => {}
        None => {
            let body = parts.body();
            for entry in &spec.body {
                let value = extract_one("body", entry, entry.path.lookup(&body), true)?;
                vars.insert(entry.alias.clone(), value);
            }
        }
    }
    Ok(vars)
}

/// One entry's value; `shown`: a conversion error may quote the value.
fn extract_one(
    part: &'static str,
    entry: &ParseEntry,
    found: Option<Json>,
    shown: bool,
) -> Result<Json, ParseError> {
    let found = found.filter(|v| !v.is_null());
    let Some(value) = found else {
        if entry.required {
            return Err(ParseError::Missing {
                part,
                key: entry.key.clone(),
            });
        }
        return Ok(entry.default.clone().unwrap_or(Json::Null));
    };
    let Some(ty) = entry.value_type else {
        return Ok(value);
    };
    if already(&value, ty) {
        return Ok(value);
    }
    let is_list_query = matches!(entry.path, KeyPath::JsonPath(_));
    let converted = match (&value, ty) {
        // A JSONPath yields a list of matches: convert each one.
        (Json::Array(items), t)
            if is_list_query && !matches!(t, ValueType::Array | ValueType::Any) =>
        {
            items
                .iter()
                .map(|v| convert_shown(v, t, shown))
                .collect::<Result<Vec<_>, _>>()
                .map(Json::Array)
        }
        (v, t) => convert_shown(v, t, shown),
    };
    converted.map_err(|message| ParseError::WrongType {
        part,
        key: entry.key.clone(),
        message,
    })
}

/// Whether `value` is of type `ty` as it is (what [`convert`] would copy).
fn already(value: &Json, ty: ValueType) -> bool {
    matches!(
        (ty, value),
        (ValueType::Any, _)
            | (ValueType::String, Json::String(_))
            | (ValueType::Number, Json::Number(_))
            | (ValueType::Boolean, Json::Bool(_))
            | (ValueType::Object, Json::Object(_))
            | (ValueType::Array, Json::Array(_))
    )
}

/// Converts a value to a declared type; strings are parsed, other values checked.
pub fn convert(value: &Json, ty: ValueType) -> Result<Json, String> {
    convert_shown(value, ty, true)
}

/// [`convert`]; the error quotes the value only when `shown`.
fn convert_shown(value: &Json, ty: ValueType, shown: bool) -> Result<Json, String> {
    let fail = |what: &str| {
        Err(match shown {
            true => format!("expected {what}, found {}", describe(value)),
            false => format!("expected {what}; the value of a secret-bearing header is not shown"),
        })
    };
    match ty {
        ValueType::Any => Ok(value.clone()),
        ValueType::String => match value {
            Json::String(_) => Ok(value.clone()),
            Json::Number(n) => Ok(Json::String(n.to_string())),
            Json::Bool(b) => Ok(Json::String(b.to_string())),
            _ => fail("a string"),
        },
        ValueType::Number => match value {
            Json::Number(_) => Ok(value.clone()),
            Json::String(s) => parse_number(s.trim()).map_or_else(|| fail("a number"), Ok),
            _ => fail("a number"),
        },
        ValueType::Integer => match value {
            Json::Number(n) if n.is_i64() || n.is_u64() => Ok(value.clone()),
            Json::Number(n) => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Json::from(f as i64)),
                _ => fail("an integer"),
            },
            Json::String(s) => s
                .trim()
                .parse::<i64>()
                .map(Json::from)
                .or_else(|_| fail("an integer")),
            _ => fail("an integer"),
        },
        ValueType::Boolean => match value {
            Json::Bool(_) => Ok(value.clone()),
            Json::Number(n) if n.as_i64() == Some(1) => Ok(Json::Bool(true)),
            Json::Number(n) if n.as_i64() == Some(0) => Ok(Json::Bool(false)),
            Json::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(Json::Bool(true)),
                "false" | "0" | "no" => Ok(Json::Bool(false)),
                _ => fail("a boolean (true/false/1/0/yes/no)"),
            },
            _ => fail("a boolean (true/false/1/0/yes/no)"),
        },
        ValueType::Object => match value {
            Json::Object(_) => Ok(value.clone()),
            Json::String(s) => match serde_json::from_str::<Json>(s) {
                Ok(v @ Json::Object(_)) => Ok(v),
                _ => fail("an object"),
            },
            _ => fail("an object"),
        },
        ValueType::Array => match value {
            Json::Array(_) => Ok(value.clone()),
            Json::String(s) => match serde_json::from_str::<Json>(s) {
                Ok(v @ Json::Array(_)) => Ok(v),
                _ => fail("an array"),
            },
            _ => fail("an array"),
        },
    }
}

fn parse_number(s: &str) -> Option<Json> {
    if let Ok(i) = s.parse::<i64>() {
        return Some(Json::from(i));
    }
    let f: f64 = s.parse().ok()?;
    Number::from_f64(f).map(Json::Number)
}

fn describe(value: &Json) -> String {
    match value {
        Json::Null => "null".into(),
        Json::Bool(b) => format!("boolean {b}"),
        Json::Number(n) => format!("number {n}"),
        Json::String(s) if s.chars().count() > 40 => {
            format!("string \"{}…\"", s.chars().take(40).collect::<String>())
        }
        Json::String(s) => format!("string \"{s}\""),
        Json::Array(_) => "an array".into(),
        Json::Object(_) => "an object".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_request;
    use serde_json::json;

    /// One helper for extraction: the `trigger.parse` YAML and a request in,
    /// `vars` or the error message out.
    fn check(
        parse_yaml: &str,
        headers: &[(&str, &str)],
        query: &str,
        content_type: &str,
        body: &str,
        expected: Result<Json, &str>,
    ) {
        let wf = crate::test_workflow(&format!(
            "title: t\ntrigger:\n  type: webhook\n  parse:\n{parse_yaml}"
        ));
        let request = crate::Request {
            method: "POST",
            path: "/api/webhook:trigger/k",
            query,
            content_type: Some(content_type),
            body: body.as_bytes(),
        };
        let got = parse_request(request, headers.iter().copied())
            .and_then(|parts| extract(&wf.trigger.parse, &parts))
            .map(Json::Object)
            .map_err(|e| e.to_string());
        // A run's intake reads a JSON body's entries without parsing the
        // body first: the same vars, the same errors.
        let built = crate::receive(request, headers.iter().copied())
            .and_then(|r| crate::build_input(&wf, r, Default::default()))
            .map(|input| input.vars)
            .map_err(|e| e.to_string());
        assert_eq!(built, got, "{content_type} {body:?}");
        match (got, expected) {
            (Ok(g), Ok(e)) => assert_eq!(g, e),
            (Err(g), Err(e)) => assert!(g.contains(e), "error `{g}` should contain `{e}`"),
            (g, e) => panic!("got {g:?}, expected {e:?}"),
        }
    }

    const JSON: &str = "application/json";

    #[test]
    fn headers_query_and_body_with_default_aliases() {
        check(
            "    headers: [ { key: X-Request-Id } ]\n    query: [ { key: event } ]\n    body: [ { key: order.id }, { key: \"order.items[1].sku\", alias: sku } ]\n",
            &[("x-request-id", "r1")],
            "event=paid",
            JSON,
            r#"{"order": {"id": "A1", "items": [{"sku": "a"}, {"sku": "b"}]}}"#,
            Ok(json!({"x_request_id": "r1", "event": "paid", "order_id": "A1", "sku": "b"})),
        );
    }

    #[test]
    fn jsonpath_keys_list_their_matches() {
        check(
            "    body: [ { key: \"$.items[*].sku\", alias: skus }, { key: \"$.items[*].n\", alias: ns, type: integer } ]\n",
            &[],
            "",
            JSON,
            r#"{"items": [{"sku": "a", "n": "1"}, {"sku": "b", "n": 2}]}"#,
            Ok(json!({"skus": ["a", "b"], "ns": [1, 2]})),
        );
        check(
            "    body: [ { key: \"$.none[*]\", alias: x, required: true } ]\n",
            &[],
            "",
            JSON,
            "{}",
            Err("missing required field `$.none[*]` in the body"),
        );
        check(
            "    body: [ { key: \"$.none[*]\", alias: x, default: [] } ]\n",
            &[],
            "",
            JSON,
            "{}",
            Ok(json!({"x": []})),
        );
    }

    #[test]
    fn missing_values() {
        check(
            "    body: [ { key: order.id, required: true } ]\n",
            &[],
            "",
            JSON,
            r#"{"order": {}}"#,
            Err("missing required field `order.id` in the body"),
        );
        check(
            "    body: [ { key: order.id, required: true } ]\n",
            &[],
            "",
            JSON,
            r#"{"order": {"id": null}}"#,
            Err("missing required field `order.id`"),
        );
        check(
            "    headers: [ { key: X-Sig, required: true } ]\n",
            &[],
            "",
            JSON,
            "{}",
            Err("missing required field `X-Sig` in the headers"),
        );
        check(
            "    query: [ { key: page, default: 1 } ]\n",
            &[],
            "",
            JSON,
            "{}",
            Ok(json!({"page": 1})),
        );
        check(
            "    query: [ { key: page } ]\n",
            &[],
            "",
            JSON,
            "{}",
            Ok(json!({"page": null})),
        );
    }

    #[test]
    fn a_secret_bearing_headers_value_is_not_quoted_in_an_error() {
        check(
            "    headers: [ { key: X-Api-Key, alias: k, type: integer } ]\n",
            &[("x-api-key", "sk_live_SUPERSECRET")],
            "",
            JSON,
            "{}",
            Err("expected an integer; the value of a secret-bearing header is not shown"),
        );
        // Another header's value is quoted, as a body's is.
        check(
            "    headers: [ { key: X-Count, type: integer } ]\n",
            &[("x-count", "many")],
            "",
            JSON,
            "{}",
            Err("expected an integer, found string \"many\""),
        );
    }

    #[test]
    fn type_conversion() {
        let entries = "    query: [ { key: n, type: integer }, { key: f, type: number }, { key: b, type: boolean }, { key: s, type: string } ]\n";
        check(
            entries,
            &[],
            "n=42&f=1.5&b=YES&s=x",
            JSON,
            "",
            Ok(json!({"n": 42, "f": 1.5, "b": true, "s": "x"})),
        );
        check(
            entries,
            &[],
            "n=4.2",
            JSON,
            "",
            Err("field `n` in the query: expected an integer, found string \"4.2\""),
        );
        check(
            entries,
            &[],
            "f=abc",
            JSON,
            "",
            Err("field `f` in the query: expected a number"),
        );
        check(
            entries,
            &[],
            "b=maybe",
            JSON,
            "",
            Err("field `b` in the query: expected a boolean"),
        );
        check(
            "    body: [ { key: amount, type: string } ]\n",
            &[],
            "",
            JSON,
            r#"{"amount": 12.5}"#,
            Ok(json!({"amount": "12.5"})),
        );
        check(
            "    body: [ { key: amount, type: number } ]\n",
            &[],
            "",
            JSON,
            r#"{"amount": "12.50"}"#,
            Ok(json!({"amount": 12.5})),
        );
        check(
            "    body: [ { key: meta, type: object } ]\n",
            &[],
            "",
            "application/x-www-form-urlencoded",
            "meta=%7B%22a%22%3A1%7D",
            Ok(json!({"meta": {"a": 1}})),
        );
        check(
            "    body: [ { key: tags, type: array } ]\n",
            &[],
            "",
            JSON,
            r#"{"tags": "x"}"#,
            Err("expected an array"),
        );
        // A wrong type answers 400 even when the entry is optional.
        check(
            "    body: [ { key: n, type: integer, default: 0 } ]\n",
            &[],
            "",
            JSON,
            r#"{"n": "x"}"#,
            Err("expected an integer"),
        );
    }

    #[test]
    fn form_bodies_are_strings_until_typed() {
        check(
            "    body: [ { key: total_amount }, { key: refund, type: boolean } ]\n",
            &[],
            "",
            "application/x-www-form-urlencoded",
            "total_amount=9.90&refund=0",
            Ok(json!({"total_amount": "9.90", "refund": false})),
        );
    }
}
