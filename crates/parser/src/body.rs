//! Bodies by content type: JSON, form-urlencoded, text and XML.

use crate::query::parse_query_in;
use crate::ParseError;
use hookflow_model::request::lossy_text;
use serde_json::Value as Json;

/// How a body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// `application/json`, `*/*+json`.
    Json,
    /// `application/x-www-form-urlencoded`.
    Form,
    /// `text/*`, `application/xml`: the body as a string.
    Text,
}

/// The kind of a content type, or `None` when it is not accepted.
/// Media types compare without regard to case (RFC 9110 §8.3.1).
pub fn body_kind(content_type: Option<&str>) -> Option<BodyKind> {
    // On bytes: this runs for every request, and the `str` searchers cost
    // more than these few bytes are long.
    let b = content_type?.as_bytes();
    let end = b.iter().position(|&c| c == b';').unwrap_or(b.len());
    let mime = b[..end].trim_ascii();
    let slash = mime.iter().position(|&c| c == b'/')?;
    let (kind, sub) = (&mime[..slash], &mime[slash + 1..]);
    if kind.is_empty() || sub.is_empty() {
        return None;
    }
    let is = |part: &[u8], name: &str| part.eq_ignore_ascii_case(name.as_bytes());
    let json_suffix = sub.len() >= 5 && sub[sub.len() - 5..].eq_ignore_ascii_case(b"+json");
    if is(kind, "application") && is(sub, "json") || json_suffix {
        Some(BodyKind::Json)
    } else if is(kind, "application") && is(sub, "x-www-form-urlencoded") {
        Some(BodyKind::Form)
    } else if is(kind, "text") || is(kind, "application") && is(sub, "xml") {
        Some(BodyKind::Text)
    } else {
        None
    }
}

/// Parses a body: JSON as JSON, form as nested JSON, text and XML as a string,
/// empty as null (whatever the content type).
pub fn parse_body(content_type: Option<&str>, body: &[u8]) -> Result<Json, ParseError> {
    if body.is_empty() {
        return Ok(Json::Null);
    }
    let kind = body_kind(content_type).ok_or_else(|| {
        ParseError::UnsupportedMediaType(content_type.unwrap_or("(none)").to_string())
    })?;
    parse_as(kind, body)
}

/// Parses a non-empty body of a known kind.
pub fn parse_as(kind: BodyKind, body: &[u8]) -> Result<Json, ParseError> {
    parse_in(kind, body, None)
}

/// [`parse_as`] of a form or text body in `charset` (not UTF-8: see
/// [`charset`]). JSON is UTF-8 whatever the header says (RFC 8259 §8.1).
pub fn parse_in(
    kind: BodyKind,
    body: &[u8],
    charset: Option<&'static encoding_rs::Encoding>,
) -> Result<Json, ParseError> {
    Ok(match (kind, charset) {
        (BodyKind::Json, _) => serde_json::from_slice(body).map_err(malformed)?,
        (BodyKind::Form, _) => parse_query_in(&lossy_text(body), charset),
        (BodyKind::Text, Some(encoding)) => {
            Json::String(encoding.decode_without_bom_handling(body).0.into_owned())
        }
        (BodyKind::Text, None) => Json::String(lossy_text(body).into_owned()),
    })
}

/// The text encoding a content type's `charset` names, when it is one
/// hookflow decodes and not UTF-8 (`gbk`, `gb18030`, `big5`, `shift_jis`,
/// `iso-8859-1`, …: the WHATWG labels).
pub fn charset(content_type: Option<&str>) -> Option<&'static encoding_rs::Encoding> {
    let params = content_type?.split_once(';')?.1;
    let label = params.split(';').find_map(|p| {
        let (name, value) = p.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches('"'))
    })?;
    encoding_rs::Encoding::for_label(label.as_bytes()).filter(|e| *e != encoding_rs::UTF_8)
}

/// Checks that `body` is JSON, without keeping what it holds (400 with the
/// place it breaks otherwise).
pub fn check_json(body: &[u8]) -> Result<(), ParseError> {
    serde_json::from_slice::<serde::de::IgnoredAny>(body)
        .map(|_| ())
        .map_err(malformed)
}

/// A JSON body's parse error as the 400 tells it.
pub(crate) fn malformed(e: serde_json::Error) -> ParseError {
    ParseError::MalformedJson {
        line: e.line(),
        column: e.column(),
        message: json_error_text(&e),
    }
}

/// serde_json's message without its trailing " at line L column C".
fn json_error_text(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// One helper for bodies: content type and bytes in, JSON or error out.
    fn check(content_type: Option<&str>, body: &str, expected: Result<Json, ParseError>) {
        assert_eq!(
            parse_body(content_type, body.as_bytes()),
            expected,
            "{content_type:?} {body:?}"
        );
    }

    #[test]
    fn json_bodies() {
        check(Some("application/json"), r#"{"a":1}"#, Ok(json!({"a": 1})));
        check(
            Some("application/json; charset=utf-8"),
            "[1,2]",
            Ok(json!([1, 2])),
        );
        check(Some("application/vnd.api+json"), "true", Ok(json!(true)));
        check(Some("Application/JSON"), "null", Ok(json!(null)));
        check(
            Some("application/json"),
            "{\n  \"a\": 1,\n  \"b\": }",
            Err(ParseError::MalformedJson {
                line: 3,
                column: 8,
                message: "expected value".into(),
            }),
        );
    }

    #[test]
    fn form_bodies() {
        check(
            Some("application/x-www-form-urlencoded"),
            "a=1&b[c]=2&n=x+y",
            Ok(json!({"a": "1", "b": {"c": "2"}, "n": "x y"})),
        );
    }

    #[test]
    fn text_and_xml_bodies_are_strings() {
        check(Some("text/plain"), "hello", Ok(json!("hello")));
        check(Some("text/xml"), "<a>1</a>", Ok(json!("<a>1</a>")));
        check(Some("application/xml"), "<a/>", Ok(json!("<a/>")));
        check(Some("text/csv; charset=utf-8"), "a,b", Ok(json!("a,b")));
    }

    #[test]
    fn empty_bodies_are_null_with_any_type() {
        check(None, "", Ok(Json::Null));
        check(Some("image/png"), "", Ok(Json::Null));
        check(Some("application/json"), "", Ok(Json::Null));
    }

    #[test]
    fn other_types_are_unsupported() {
        check(
            None,
            "x",
            Err(ParseError::UnsupportedMediaType("(none)".into())),
        );
        check(
            Some("application/octet-stream"),
            "x",
            Err(ParseError::UnsupportedMediaType(
                "application/octet-stream".into(),
            )),
        );
        check(
            Some("multipart/form-data; boundary=x"),
            "x",
            Err(ParseError::UnsupportedMediaType(
                "multipart/form-data; boundary=x".into(),
            )),
        );
        check(
            Some("json"),
            "{}",
            Err(ParseError::UnsupportedMediaType("json".into())),
        );
    }
}
