//! `request`: call another system over HTTP, with retries.
//!
//! Every try carries `Idempotency-Key: <execution id>-<node key>` so that an
//! upstream can drop the repeats that at-least-once execution may cause.

use super::{NodeCx, NodeError, Step};
use hookflow_model::def::ContentType;
use hookflow_model::request::join_header;
use hookflow_model::runtime::RequestSpec;
use hookflow_model::template::ValueTemplate;
use serde_json::{json, Map, Value as Json};
use std::time::{Duration, SystemTime};

/// Longest computed backoff.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Longest wait a `Retry-After` may ask for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// One try's outcome.
enum Try {
    /// A response arrived.
    Response {
        status: u16,
        headers: Map<String, Json>,
        body: Json,
        retry_after: Option<Duration>,
    },
    /// No response: connect error, timeout, body too large.
    Failed(String),
}

pub async fn run(cx: &NodeCx<'_>, spec: &RequestSpec, node_ident: &str) -> Result<Step, NodeError> {
    let templates = &cx.workflow.templates;
    let method_text = templates
        .render(&spec.method, cx.scope)?
        .to_ascii_uppercase();
    let method = reqwest::Method::from_bytes(method_text.as_bytes())
        .map_err(|_| NodeError(format!("invalid method `{method_text}`")))?;
    let url_text = templates.render(&spec.url, cx.scope)?;
    let mut url = reqwest::Url::parse(&url_text)
        .map_err(|e| NodeError(format!("invalid url `{url_text}`: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(NodeError(format!(
            "url `{url_text}` must use http or https"
        )));
    }
    let host = url.host_str().unwrap_or_default().to_string();
    cx.env.policy.check_host(&host).map_err(NodeError)?;
    for (name, value) in &spec.query {
        let value = templates.eval_value(value, cx.scope)?;
        append_value(&mut url.query_pairs_mut(), name, &value);
    }
    let mut headers = Vec::with_capacity(spec.headers.len());
    for (name, value) in &spec.headers {
        headers.push((name.clone(), templates.render(value, cx.scope)?));
    }
    let body = match &spec.body {
        Some(b) => Some(encode_body(spec.content_type, b, cx)?),
        None => None,
    };
    let idempotency_key = format!("{}-{node_ident}", cx.execution_id);

    // `hookflow test` answers stubbed nodes itself; nothing leaves the machine.
    let stub = cx.env.stubs.get(node_ident).map(|s| Try::Response {
        status: s.status,
        headers: s.headers.clone(),
        body: s.body.clone(),
        retry_after: None,
    });
    let attempts = if stub.is_some() {
        0
    } else {
        spec.attempts.max(1)
    };
    let mut backoff = spec.backoff;
    let mut last = stub;
    for attempt in 1..=attempts {
        let mut req = cx
            .env
            .http
            .request(method.clone(), url.clone())
            .timeout(spec.timeout)
            .header("idempotency-key", &idempotency_key);
        if let Some((content_type, bytes)) = &body {
            req = req
                .header("content-type", *content_type)
                .body(bytes.clone());
        }
        for (name, value) in &headers {
            req = req.header(name.as_str(), value.as_str());
        }
        let outcome = attempt_once(req, cx.env.max_response_body).await;
        let retryable = match &outcome {
            Try::Response { status, .. } => *status == 429 || *status >= 500,
            Try::Failed(_) => true,
        };
        let wait = match &outcome {
            Try::Response {
                retry_after: Some(d),
                ..
            } => (*d).min(MAX_RETRY_AFTER),
            _ => jitter(backoff),
        };
        last = Some(outcome);
        if !retryable || attempt == attempts {
            break;
        }
        tracing::info!(message = "Request failed; retrying.", url = %url_text, attempt, wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
        tokio::time::sleep(wait).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    match last {
        Some(Try::Response {
            status,
            headers,
            body,
            ..
        }) if (200..300).contains(&status) => Ok(Step::Next(
            json!({"status": status, "headers": headers, "body": body}),
        )),
        Some(Try::Response {
            status,
            headers,
            body,
            ..
        }) => {
            let error = format!("{method_text} {url_text} answered {status}");
            if spec.ignore_fail {
                Ok(Step::Next(
                    json!({"status": status, "headers": headers, "body": body, "error": error}),
                ))
            } else {
                Err(NodeError(error))
            }
        }
        Some(Try::Failed(reason)) => {
            let error = format!("{method_text} {url_text} failed: {reason}");
            if spec.ignore_fail {
                Ok(Step::Next(json!({"error": error})))
            } else {
                Err(NodeError(error))
            }
        }
        None => Err(NodeError("no attempt was made".into())),
    }
}

async fn attempt_once(req: reqwest::RequestBuilder, max_body: usize) -> Try {
    let mut resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return Try::Failed(describe(&e)),
    };
    let status = resp.status().as_u16();
    let mut headers = Map::new();
    for (name, value) in resp.headers() {
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match headers.get_mut(name.as_str()) {
            Some(Json::String(joined)) => join_header(joined, &v),
            _ => {
                headers.insert(name.as_str().to_string(), Json::String(v));
            }
        }
    }
    let retry_after = headers
        .get("retry-after")
        .and_then(Json::as_str)
        .and_then(parse_retry_after);
    let is_json = headers
        .get("content-type")
        .and_then(Json::as_str)
        .and_then(|ct| ct.split(';').next())
        .map(|m| {
            let m = m.trim().to_ascii_lowercase();
            m == "application/json" || m.ends_with("+json")
        })
        .unwrap_or(false);
    let mut bytes = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if bytes.len() + chunk.len() > max_body {
                    return Try::Failed(format!(
                        "the response body is larger than {max_body} bytes"
                    ));
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => return Try::Failed(describe(&e)),
        }
    }
    let body = if bytes.is_empty() {
        Json::Null
    } else if is_json {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Json::String(String::from_utf8_lossy(&bytes).into_owned()))
    } else {
        Json::String(String::from_utf8_lossy(&bytes).into_owned())
    };
    Try::Response {
        status,
        headers,
        body,
        retry_after,
    }
}

fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "could not connect".to_string()
    } else {
        "request error".to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `Retry-After` as seconds or an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// ±25% jitter.
fn jitter(d: Duration) -> Duration {
    let random = uuid::Uuid::new_v4().as_u128() as u64 % 1001;
    let factor = 0.75 + (random as f64 / 1000.0) * 0.5;
    d.mul_f64(factor)
}

fn scalar_text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Null => String::new(),
        other => other.to_string(),
    }
}

/// Appends `name=value`, once per item when the value is a list.
fn append_value<T: form_urlencoded::Target>(
    pairs: &mut form_urlencoded::Serializer<'_, T>,
    name: &str,
    value: &Json,
) {
    match value {
        Json::Array(items) => {
            for item in items {
                pairs.append_pair(name, &scalar_text(item));
            }
        }
        other => {
            pairs.append_pair(name, &scalar_text(other));
        }
    }
}

fn encode_body(
    content_type: ContentType,
    body: &ValueTemplate,
    cx: &NodeCx<'_>,
) -> Result<(&'static str, Vec<u8>), NodeError> {
    let value = cx.workflow.templates.eval_value(body, cx.scope)?;
    Ok(match content_type {
        ContentType::Json => (
            "application/json",
            serde_json::to_vec(&value).map_err(|e| NodeError(e.to_string()))?,
        ),
        ContentType::Text => (
            "text/plain; charset=utf-8",
            scalar_text(&value).into_bytes(),
        ),
        ContentType::Form => {
            let Json::Object(map) = value else {
                return Err(NodeError("a form body must be a mapping".into()));
            };
            let mut form = form_urlencoded::Serializer::new(String::new());
            for (k, v) in &map {
                append_value(&mut form, k, v);
            }
            (
                "application/x-www-form-urlencoded",
                form.finish().into_bytes(),
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        let d = parse_retry_after(&later).expect("date parses");
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn jitter_stays_within_a_quarter() {
        for _ in 0..200 {
            let j = jitter(Duration::from_millis(1000));
            assert!(
                j >= Duration::from_millis(750) && j <= Duration::from_millis(1250),
                "{j:?}"
            );
        }
    }
}
