//! The HTTP parts: request nodes, headers, and the answers (`response`
//! specs with their status codes).

use super::{Cx, DEFAULT_BACKOFF, DEFAULT_REQUEST_TIMEOUT, MAX_ATTEMPTS, METHODS, P};
use crate::def::*;
use crate::runtime::*;
use crate::template::{Text, ValueTemplate};
use serde_json::Value as Json;
use std::collections::BTreeMap;

/// Answer headers hookflow or the HTTP layer sets, and why.
const RESERVED_ANSWER_HEADERS: &[(&str, &str)] = &[
    ("content-length", "the length is set from the body"),
    ("transfer-encoding", "the HTTP layer frames the body"),
    ("connection", "the HTTP layer manages the connection"),
    ("keep-alive", "the HTTP layer manages the connection"),
    ("upgrade", "the HTTP layer manages the connection"),
    ("te", "it is a request header"),
    ("trailer", "answers carry no trailers"),
    ("x-hookflow-execution", "hookflow sets it to the run's id"),
    (
        "x-hookflow-replayed",
        "hookflow sets it on replayed answers",
    ),
];

impl Cx<'_> {
    fn status(&mut self, path: &P, status: Option<&Json>, visible: &[String]) -> ValueTemplate {
        match status {
            None => ValueTemplate::Literal(Json::from(200)),
            Some(Json::Number(n)) => {
                if !n.as_u64().is_some_and(|s| (100..=599).contains(&s)) {
                    self.error_at_value(
                        path,
                        format!("status must be an HTTP status code from 100 to 599, not {n}"),
                    );
                }
                ValueTemplate::Literal(Json::Number(n.clone()))
            }
            Some(Json::String(s)) if crate::template::has_template_syntax(s) => self
                .text(path, s, visible)
                .map(ValueTemplate::Text)
                .unwrap_or(ValueTemplate::Literal(Json::Null)),
            Some(Json::String(s)) => match s.trim().parse::<u16>() {
                Ok(code) if (100..=599).contains(&code) => ValueTemplate::Literal(Json::from(code)),
                _ => {
                    self.error_at_value(
                        path,
                        format!("status must be an HTTP status code from 100 to 599, not `{s}`"),
                    );
                    ValueTemplate::Literal(Json::Null)
                }
            },
            Some(other) => {
                self.error_at_value(path, format!("status must be a number, not {other}"));
                ValueTemplate::Literal(Json::Null)
            }
        }
    }

    fn headers(
        &mut self,
        path: &P,
        headers: &BTreeMap<String, String>,
        visible: &[String],
    ) -> Vec<(String, Text)> {
        let mut out = Vec::new();
        for (name, value) in headers {
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !valid {
                self.error_at_key(
                    &path.key(name),
                    format!("`{name}` is not a valid header name"),
                );
                continue;
            }
            if let Some(t) = self.text(&path.key(name), value, visible) {
                out.push((name.clone(), t));
            }
        }
        out
    }

    pub(super) fn response(
        &mut self,
        path: &P,
        r: &ResponseDef,
        visible: &[String],
    ) -> ResponseSpec {
        let status = self.status(&path.key("status"), r.status.as_ref(), visible);
        for name in r.headers.keys() {
            let lower = name.to_ascii_lowercase();
            if let Some(why) = RESERVED_ANSWER_HEADERS
                .iter()
                .find_map(|(n, why)| (*n == lower).then_some(*why))
            {
                self.error_at_key(
                    &path.key("headers").key(name),
                    format!("`{name}` cannot be set in an answer: {why}; remove it"),
                );
            }
        }
        let headers = self.headers(&path.key("headers"), &r.headers, visible);
        let body = r
            .body
            .as_ref()
            .and_then(|b| self.value(&path.key("body"), b, visible));
        ResponseSpec {
            status,
            headers,
            body,
        }
    }

    pub(super) fn request(
        &mut self,
        path: &P,
        r: &RequestDef,
        visible: &[String],
    ) -> Option<RequestSpec> {
        let method_src = r.method.clone().unwrap_or_else(|| "POST".into());
        let method = self.text(&path.key("method"), &method_src, visible);
        if let Some(Text::Literal(m)) = &method {
            if !METHODS.contains(&m.to_ascii_uppercase().as_str()) {
                self.error_at_value(
                    &path.key("method"),
                    format!("unknown method `{m}`; use one of {}", METHODS.join(", ")),
                );
            }
        }
        let url = self.text(&path.key("url"), &r.url, visible);
        if let Some(Text::Literal(u)) = &url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                self.error_at_value(
                    &path.key("url"),
                    format!("url `{u}` must start with http:// or https://"),
                );
            }
        }
        let headers = self.headers(&path.key("headers"), &r.headers, visible);
        let mut query = Vec::new();
        for (k, v) in &r.query {
            if let Some(t) = self.value(&path.key("query").key(k), v, visible) {
                query.push((k.clone(), t));
            }
        }
        let body = match &r.body {
            Some(b) => Some(self.value(&path.key("body"), b, visible)?),
            None => None,
        };
        let (attempts, backoff) = match &r.retry {
            Some(retry) => {
                let attempts = retry.attempts.unwrap_or(1);
                if attempts == 0 {
                    self.error_at_value(
                        &path.key("retry").key("attempts"),
                        "attempts counts every try including the first; it must be at least 1"
                            .into(),
                    );
                } else if attempts > MAX_ATTEMPTS {
                    self.error_at_value(
                        &path.key("retry").key("attempts"),
                        format!(
                            "attempts is at most {MAX_ATTEMPTS}, not {attempts}; a longer \
                             outage is better met by a longer `backoff` (or by retrying the \
                             run later: `hookflow executions retry`)"
                        ),
                    );
                }
                (
                    attempts,
                    retry.backoff.map(|d| d.0).unwrap_or(DEFAULT_BACKOFF),
                )
            }
            None => (1, DEFAULT_BACKOFF),
        };
        let timeout = r.timeout.map(|d| d.0).unwrap_or(DEFAULT_REQUEST_TIMEOUT);
        if timeout.is_zero() {
            self.error_at_value(
                &path.key("timeout"),
                "timeout must be longer than zero".into(),
            );
        }
        Some(RequestSpec {
            method: method?,
            url: url?,
            headers,
            query,
            body,
            content_type: r.content_type.unwrap_or(ContentType::Json),
            timeout,
            attempts,
            backoff,
            ignore_fail: r.ignore_fail,
            follow_redirects: r.follow_redirects.unwrap_or(true),
        })
    }
}
