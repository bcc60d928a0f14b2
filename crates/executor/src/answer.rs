//! HTTP answers as plain data: what a response node, `trigger.response` or
//! `timeout_response` produces. The trigger turns them into real responses.

use hookflow_model::runtime::ResponseSpec;
use hookflow_model::template::{EvalError, Scope, Templates};
use hookflow_store::ResponseRecord;
use serde_json::{json, Value as Json};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

/// An answer to the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Headers, in order (the names and values hookflow sets itself, such
    /// as a content type, borrowed rather than copied for each answer).
    pub headers: Vec<(Cow<'static, str>, Cow<'static, str>)>,
    /// The body bytes.
    pub body: Vec<u8>,
    /// The body as recorded: JSON as JSON, other bodies as text (shared with
    /// the record, so recording an answer copies no body).
    pub recorded_body: Arc<Json>,
}

/// The name of the content type header.
const CONTENT_TYPE: &str = "content-type";
/// The content type of JSON answers.
pub const JSON_TYPE: &str = "application/json";
/// The content type of text answers.
pub const TEXT_TYPE: &str = "text/plain; charset=utf-8";

impl Answer {
    /// A JSON answer.
    pub fn json(status: u16, body: Json) -> Answer {
        Answer {
            status,
            headers: vec![(CONTENT_TYPE.into(), JSON_TYPE.into())],
            body: serde_json::to_vec(&body).unwrap_or_default(),
            recorded_body: Arc::new(body),
        }
    }

    /// A text answer.
    pub fn text(status: u16, body: &str) -> Answer {
        Answer {
            status,
            headers: vec![(CONTENT_TYPE.into(), TEXT_TYPE.into())],
            body: body.as_bytes().to_vec(),
            recorded_body: Arc::new(Json::String(body.to_string())),
        }
    }

    /// The default async acknowledgement: 200 text/plain `ok`.
    pub fn default_ack() -> Answer {
        Answer::text(200, "ok")
    }

    /// A sync run that ended without a response node.
    pub fn finished(resolved: bool, execution_id: &str) -> Answer {
        if resolved {
            Answer::json(
                200,
                json!({"status": "resolved", "execution_id": execution_id}),
            )
        } else {
            Answer::json(
                500,
                json!({"status": "failed", "execution_id": execution_id}),
            )
        }
    }

    /// A sync run that passed its deadline.
    pub fn timed_out(execution_id: &str) -> Answer {
        Answer::json(
            408,
            json!({"status": "aborted", "reason": "timeout", "execution_id": execution_id}),
        )
    }

    /// Renders a configured response.
    pub fn render(
        spec: &ResponseSpec,
        templates: &Templates,
        scope: &Scope,
    ) -> Result<Answer, EvalError> {
        let status = match templates.eval_value(&spec.status, scope)? {
            Json::Number(n) => n.as_u64(),
            Json::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        }
        .filter(|s| (100..=599).contains(s))
        .ok_or_else(|| EvalError {
            message: "status must be an HTTP status code from 100 to 599".into(),
        })?;
        let mut headers = Vec::with_capacity(spec.headers.len() + 1);
        for (name, value) in &spec.headers {
            let value = templates.render(value, scope)?;
            if let Some(bad) = value.chars().find(|c| is_forbidden_in_header(*c)) {
                // Sent as is it would end the header (a CR or LF) or be
                // refused by the HTTP layer after the run committed to it.
                return Err(EvalError {
                    message: format!(
                        "the value of the response header `{name}` contains {}; a header value is one line of text without control characters",
                        describe_control(bad)
                    ),
                });
            }
            headers.push((Cow::Owned(name.to_ascii_lowercase()), Cow::Owned(value)));
        }
        let has_type = headers.iter().any(|(n, _)| n == "content-type");
        let (body, recorded_body, default_type) = match &spec.body {
            None => (Vec::new(), Json::Null, None),
            Some(t) => match templates.eval_value(t, scope)? {
                Json::String(s) => (s.clone().into_bytes(), Json::String(s), Some(TEXT_TYPE)),
                other => (
                    serde_json::to_vec(&other).unwrap_or_default(),
                    other,
                    Some(JSON_TYPE),
                ),
            },
        };
        if let (false, Some(t)) = (has_type, default_type) {
            headers.push((CONTENT_TYPE.into(), t.into()));
        }
        Ok(Answer {
            status: status as u16,
            headers,
            body,
            recorded_body: Arc::new(recorded_body),
        })
    }

    /// The answer as stored in the execution record.
    pub fn record(&self) -> ResponseRecord {
        let mut headers = BTreeMap::new();
        for (k, v) in &self.headers {
            headers.insert(k.clone(), v.clone());
        }
        ResponseRecord {
            status: self.status,
            headers,
            body: Arc::clone(&self.recorded_body),
        }
    }
}

/// What an HTTP field value cannot hold (RFC 9110 §5.5): control
/// characters (DEL among them) other than a tab.
fn is_forbidden_in_header(c: char) -> bool {
    c.is_ascii_control() && c != '\t'
}

fn describe_control(c: char) -> String {
    match c {
        '\r' => "a carriage return (CR)".into(),
        '\n' => "a line break (LF)".into(),
        '\0' => "a NUL character".into(),
        other => format!("the control character U+{:04X}", u32::from(other)),
    }
}

impl Answer {
    /// The answer stored in a record, to send again (idempotent replays).
    pub fn from_record(record: &ResponseRecord) -> Answer {
        let body = match record.body.as_ref() {
            Json::String(s) => s.clone().into_bytes(),
            Json::Null => Vec::new(),
            other => serde_json::to_vec(other).unwrap_or_default(),
        };
        Answer {
            status: record.status,
            headers: record
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            body,
            recorded_body: Arc::clone(&record.body),
        }
    }
}
