//! Turns an HTTP request's parts into hookflow's variables (SPEC §2).
//!
//! [`query::parse_query`] and [`body::parse_body`] build `trigger.query` and
//! `trigger.body`; [`extract::extract`] applies a workflow's compiled parse
//! rules to produce `vars`. Nothing here knows HTTP servers: callers hand in
//! plain strings and bytes.

pub mod body;
pub mod extract;
pub mod query;

pub use body::{body_kind, parse_body, BodyKind};
pub use extract::{convert, extract};
pub use query::parse_query;

use hookflow_model::request::BodySource;
pub use hookflow_model::request::TriggerRequest;
use serde_json::{Map, Value as Json};

/// Why a request cannot start a run. Each variant maps to one HTTP status in the trigger.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    /// A non-empty body whose content type is not accepted (415).
    #[error("unsupported content type `{0}`; send application/json, */*+json, application/x-www-form-urlencoded, text/* or application/xml")]
    UnsupportedMediaType(String),
    /// The body is not valid JSON (400).
    #[error("malformed JSON body at line {line}, column {column}: {message}")]
    MalformedJson {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the JSON parser said.
        message: String,
    },
    /// A required value is missing (400).
    #[error("missing required field `{key}` in the {part}")]
    Missing {
        /// headers, query or body.
        part: &'static str,
        /// The key as written in the workflow.
        key: String,
    },
    /// A value cannot be converted to its declared type (400).
    #[error("field `{key}` in the {part}: {message}")]
    WrongType {
        /// headers, query or body.
        part: &'static str,
        /// The key as written in the workflow.
        key: String,
        /// What was expected and found.
        message: String,
    },
}

/// Builds `trigger.headers` from name/value pairs.
pub fn header_map<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Map<String, Json> {
    let mut map = Map::new();
    for (name, value) in pairs {
        let name = name.to_ascii_lowercase();
        match map.get_mut(&name) {
            Some(Json::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(value);
            }
            _ => {
                map.insert(name, Json::String(value.to_string()));
            }
        }
    }
    map
}

/// Decodes a request's headers, query string and body into a
/// [`TriggerRequest`] (method and path left empty for the caller).
pub fn parse_request<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    query: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<TriggerRequest, ParseError> {
    let headers = headers
        .into_iter()
        .map(|(name, value)| {
            // Names from the HTTP server are lower-case already.
            let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
                name.to_ascii_lowercase()
            } else {
                name.to_string()
            };
            (name, value.to_string())
        })
        .collect();
    // The media type is read once: it decides both the parse and what storage keeps.
    let kind = match body.is_empty() {
        true => None,
        false => Some(body_kind(content_type).ok_or_else(|| {
            ParseError::UnsupportedMediaType(content_type.unwrap_or("(none)").to_string())
        })?),
    };
    let parsed = match kind {
        Some(kind) => body::parse_as(kind, body)?,
        None => Json::Null,
    };
    let body_source = match kind {
        Some(BodyKind::Json) => BodySource::JsonOfRaw,
        // Text bodies are the raw body, unless it was not UTF-8.
        Some(BodyKind::Text) if std::str::from_utf8(body).is_ok() => BodySource::TextOfRaw,
        _ => BodySource::Stored,
    };
    Ok(TriggerRequest {
        method: String::new(),
        path: String::new(),
        headers,
        query: parse_query(query),
        body: parsed,
        raw_body: String::from_utf8_lossy(body).into_owned(),
        body_source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_note_when_their_body_parses_again_from_the_raw_body() {
        for (content_type, body, source) in [
            ("application/json", &b"{\"a\":1}"[..], BodySource::JsonOfRaw),
            ("text/plain", b"hi", BodySource::TextOfRaw),
            ("text/plain", b"\xff", BodySource::Stored),
            (
                "application/x-www-form-urlencoded",
                b"a=1",
                BodySource::Stored,
            ),
            ("application/json", b"", BodySource::Stored),
        ] {
            let r = parse_request([("X-A", "1")], "", Some(content_type), body).expect("parses");
            assert_eq!(r.body_source, source, "{content_type} {body:?}");
            assert_eq!(r.headers, vec![("x-a".to_string(), "1".to_string())]);
        }
        assert!(matches!(
            parse_request([], "", Some("image/png"), b"x"),
            Err(ParseError::UnsupportedMediaType(_))
        ));
    }

    #[test]
    fn headers_are_lower_cased_and_repeats_joined() {
        let map = header_map([("X-Request-Id", "1"), ("Accept", "a"), ("accept", "b")]);
        assert_eq!(
            Json::Object(map),
            json!({"x-request-id": "1", "accept": "a, b"})
        );
    }
}
