//! Unit tests of `sample`: order, arrays, odd keys, aliases, bodies.
use super::*;
use hookflow_model::path::KeyPath;
use serde_json::json;

fn body(text: &str) -> Vec<SampleEntry> {
    sample(&SampleRequest {
        headers: &[],
        query: "",
        body_kind: Some(BodyKind::Json),
        body: text.as_bytes(),
    })
    .expect("samples")
    .body
}

fn keys(entries: &[SampleEntry]) -> Vec<(&str, &str, Option<&str>)> {
    entries
        .iter()
        .map(|e| (e.key.as_str(), e.alias.as_str(), e.value_type))
        .collect()
}

#[test]
fn nocobase_example_gives_every_leaf_in_order() {
    let entries =
        body(r#"{"b": {"c": 2}, "a": 1.5, "d": true, "e": null, "objectId": "x", "URL": "u"}"#);
    assert_eq!(
        keys(&entries),
        vec![
            ("b.c", "b_c", Some("integer")),
            ("a", "a", Some("number")),
            ("d", "d", Some("boolean")),
            ("e", "e", None),
            ("objectId", "object_id", Some("string")),
            ("URL", "url", Some("string")),
        ]
    );
}

#[test]
fn arrays_give_one_jsonpath_entry_per_leaf() {
    let entries = body(
        r#"{"to_users": [{"mobile": "1", "name": "a"}, {"mobile": "2", "extra": 3}],
            "tags": ["x", "y"], "none": [], "empty": {}}"#,
    );
    assert_eq!(
        keys(&entries),
        vec![
            ("$.to_users[*].mobile", "to_users_mobile", Some("string")),
            ("$.to_users[*].name", "to_users_name", Some("string")),
            ("$.to_users[*].extra", "to_users_extra", Some("integer")),
            ("$.tags[*]", "tags", Some("string")),
            ("none", "none", Some("array")),
            ("empty", "empty", Some("object")),
        ]
    );
}

#[test]
fn a_path_whose_array_elements_differ_in_type_gets_none() {
    let entries = body(
        r#"{"l": [1, "two", 3], "n": [1, 2.5], "o": [1, 2, {"a": 3}], "p": [{"a": 1}, 2],
            "q": [{"m": "1"}, {"m": null}], "r": [null, null], "s": [[1], 2]}"#,
    );
    assert_eq!(
        keys(&entries),
        vec![
            ("$.l[*]", "l", None),
            ("$.n[*]", "n", Some("number")),
            ("$.o[*]", "o", None),
            ("$.o[*].a", "o_a", Some("integer")),
            ("$.p[*].a", "p_a", Some("integer")),
            ("$.p[*]", "p", None),
            ("$.q[*].m", "q_m", None),
            ("$.r[*]", "r", None),
            ("$.s[*][*]", "s", Some("integer")),
            ("$.s[*]", "s_2", None),
        ]
    );
}

#[test]
fn odd_and_non_ascii_keys_still_extract() {
    let sample = json!({"values": {"申请人": "张三", "金额": 12}, "a.b": 1,
                        "cached_values": {"38821": {"value": ["测试1"]}}, "it's": [{"x y": 1}]});
    let entries = body(&sample.to_string());
    let aliases: Vec<&str> = entries.iter().map(|e| e.alias.as_str()).collect();
    let unique: HashSet<&&str> = aliases.iter().collect();
    assert_eq!(unique.len(), aliases.len(), "{aliases:?}");
    for e in &entries {
        let path = KeyPath::parse(&e.key).unwrap_or_else(|m| panic!("{}: {m}", e.key));
        assert!(path.lookup(&sample).is_some(), "{} finds nothing", e.key);
        assert!(
            e.alias
                .starts_with(|c: char| c.is_ascii_alphabetic() || c == '_'),
            "{}",
            e.alias
        );
    }
    let by_key: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
    assert!(by_key.contains(&"values.申请人"), "{by_key:?}");
    assert!(by_key.contains(&"$['a.b']"), "{by_key:?}");
    assert!(
        by_key.contains(&"$.cached_values['38821'].value[*]"),
        "{by_key:?}"
    );
    assert!(by_key.contains(&"$['it\\'s'][*]['x y']"), "{by_key:?}");
}

#[test]
fn headers_query_and_forms_are_strings_with_unique_aliases() {
    let headers = vec![("X-Request-Id".to_string(), "r1".to_string())];
    let sampled = sample(&SampleRequest {
        headers: &headers,
        query: "x_request_id=1&a=1&a=2&b[c]=3",
        body_kind: Some(BodyKind::Form),
        body: b"amount=12.5&a=3",
    })
    .expect("samples");
    assert_eq!(
        keys(&sampled.headers),
        vec![("X-Request-Id", "x_request_id", Some("string"))]
    );
    assert_eq!(
        keys(&sampled.query),
        vec![
            ("$.a[*]", "a", Some("string")),
            ("b.c", "b_c", Some("string")),
            ("x_request_id", "x_request_id_2", Some("string")),
        ]
    );
    assert_eq!(
        keys(&sampled.body),
        vec![
            ("a", "a_2", Some("string")),
            ("amount", "amount", Some("string")),
        ]
    );
}

#[test]
fn scalar_text_and_broken_bodies() {
    assert!(body("12").is_empty());
    let text = sample(&SampleRequest {
        headers: &[],
        query: "",
        body_kind: Some(BodyKind::Text),
        body: b"hello",
    })
    .expect("samples");
    assert!(text.body.is_empty());
    let broken = sample(&SampleRequest {
        headers: &[],
        query: "",
        body_kind: Some(BodyKind::Json),
        body: b"{\"a\": ",
    });
    assert!(matches!(broken, Err(ParseError::MalformedJson { .. })));
}
