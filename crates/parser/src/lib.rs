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

/// The parts of a request that workflows see, already decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestParts {
    /// `trigger.headers`: names lower-cased; repeated headers joined with `, `.
    pub headers: Map<String, Json>,
    /// `trigger.query`.
    pub query: Json,
    /// `trigger.body`.
    pub body: Json,
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

/// Decodes the whole request: headers, query string and body.
pub fn parse_request<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    query: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<RequestParts, ParseError> {
    Ok(RequestParts {
        headers: header_map(headers),
        query: parse_query(query),
        body: parse_body(content_type, body)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn headers_are_lower_cased_and_repeats_joined() {
        let map = header_map([("X-Request-Id", "1"), ("Accept", "a"), ("accept", "b")]);
        assert_eq!(
            Json::Object(map),
            json!({"x-request-id": "1", "accept": "a, b"})
        );
    }
}
