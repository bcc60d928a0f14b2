//! `request`: call another system over HTTP, with retries.
//!
//! Every try carries `Idempotency-Key: <execution id>-<node key>` (inside
//! loops, `-<pass>` for each enclosing loop follows) so that an upstream can
//! drop the repeats that at-least-once execution may cause.
//! Every destination is checked against the server's request policy
//! ([`crate::policy`]); a refused one fails the node without another try.
//! Errors and logs show the URL without user info, query or fragment, which
//! carry tokens.

mod attempt;
mod counted;
mod json_body;

use super::{NodeCx, NodeError, Step};
use crate::lock;
use crate::stubs::{SentRequest, Stub};
use attempt::{attempt_once, Try};
use hookflow_model::def::ContentType;
use hookflow_model::request::REDACTED;
use hookflow_model::runtime::RequestSpec;
use hookflow_model::template::ValueTemplate;
use hookflow_model::time::now_millis;
use hookflow_store::TryRecord;
use serde_json::{json, Value as Json};
use std::time::Duration;

/// Longest computed backoff.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Longest wait a `Retry-After` may ask for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Runs a request node; `node_ident` is its key (`node<index>` for a node
/// without one, which `keyed` tells).
pub async fn run(
    cx: &NodeCx<'_>,
    spec: &RequestSpec,
    node_ident: &str,
    keyed: bool,
    tries: &std::sync::Mutex<Vec<TryRecord>>,
) -> Result<Step, NodeError> {
    let templates = &cx.workflow.templates;
    let method_text = templates
        .render(&spec.method, cx.scope)?
        .to_ascii_uppercase();
    let method = reqwest::Method::from_bytes(method_text.as_bytes())
        .map_err(|_| NodeError(format!("invalid method `{method_text}`")))?;
    let url_text = templates.render(&spec.url, cx.scope)?;
    let mut url = reqwest::Url::parse(&url_text)
        .map_err(|e| NodeError(format!("invalid url `{}`: {e}", shown_text(&url_text))))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(NodeError(format!(
            "url `{}` must use http or https",
            shown_text(&url_text)
        )));
    }
    for (name, value) in &spec.query {
        let value = templates.eval_value(value, cx.scope)?;
        append_value(&mut url.query_pairs_mut(), name, &value);
    }
    // The URL as errors and logs show it.
    let target = format!("{method_text} {}", shown(&url));
    let mut headers = Vec::with_capacity(spec.headers.len());
    for (name, value) in &spec.headers {
        let value = templates.render(value, cx.scope)?;
        // Never sent (a header cannot hold them): said here, by name, the
        // same under `hookflow test` as on the network.
        if value.contains(['\r', '\n', '\0']) {
            return Err(NodeError(format!(
                "header `{name}` would hold a line break or a NUL byte (from a template?): not sent"
            )));
        }
        headers.push((name.clone(), value));
    }
    let body = match &spec.body {
        Some(b) => Some(encode_body(spec.content_type, b, cx)?),
        None => None,
    };
    // One key per call: a node in a loop makes one call per pass (the
    // same pass of a resumed run sends the same key again).
    let idempotency_key = format!("{}-{node_ident}{}", cx.execution_id, cx.passes);
    // Credentials (a secret-bearing header by name, a header or a body
    // holding a secret's value, user info in the URL) are sent to the first
    // URL's origin only: its redirects elsewhere are not followed (a 307 or
    // 308 sends the body again).
    let scrubber = cx.env.secrets.current();
    let credentials = !url.username().is_empty()
        || url.password().is_some()
        || headers.iter().any(|(name, value)| {
            crate::record::is_secret_name(name, cx.workflow) || scrubber.matches(value)
        })
        || (scrubber.values() > 0
            && body
                .as_ref()
                .is_some_and(|(_, bytes)| scrubber.matches(&String::from_utf8_lossy(bytes))));

    // `hookflow test` answers every try from the case's stubs: nothing
    // leaves the machine (so the request policy has nothing to check).
    let stubs = cx.env.stubs.as_deref();
    let attempts = spec.attempts.max(1);
    let outbound = &cx.env.http;
    let mut backoff = spec.backoff;
    let mut last = None;
    for attempt in 1..=attempts {
        let started_ms = now_millis();
        let clock = std::time::Instant::now();
        // Seen by the run should it stop the node before the answer.
        lock(tries).push(attempt::in_flight(attempt, started_ms));
        let outcome = match stubs {
            Some(stubs) => {
                let sent = SentRequest {
                    node: node_ident.to_string(),
                    method: method_text.clone(),
                    url: url.to_string(),
                    headers: sent_headers(&idempotency_key, body.as_ref(), &headers),
                    body: body.as_ref().map(|(_, bytes)| bytes.clone()),
                };
                match stubs.answer(sent, keyed) {
                    Ok(stub) => stubbed_try(stub),
                    Err(problem) => {
                        // No answer to stand for this try: not a try.
                        lock(tries).pop();
                        return Err(NodeError(problem.to_string()));
                    }
                }
            }
            None => match outbound.check_url(&url) {
                Err(refused) => Try::Refused(refused.to_string()),
                Ok(()) => {
                    let mut req = outbound
                        .client(spec.follow_redirects, credentials)
                        .request(method.clone(), sent_url(&url, &headers))
                        .timeout(spec.timeout);
                    if let Some((_, bytes)) = &body {
                        req = req.body(bytes.clone());
                    }
                    for (name, value) in sent_headers(&idempotency_key, body.as_ref(), &headers) {
                        req = req.header(name, value);
                    }
                    attempt_once(req, outbound, cx.env.max_response_body).await
                }
            },
        };
        let wait = match &outcome {
            Try::Response {
                retry_after: Some(d),
                ..
            } => (*d).min(MAX_RETRY_AFTER),
            _ => backoff_wait(backoff),
        };
        counted::count(cx, &outcome);
        let retryable = outcome.retryable();
        {
            let mut tries = lock(tries);
            tries.pop();
            tries.push(outcome.record(attempt, started_ms, clock.elapsed()));
        }
        last = Some(outcome);
        if !retryable || attempt == attempts {
            break;
        }
        let shown = crate::record::scrubbed(cx.headers, &target);
        tracing::info!(message = "Request failed; retrying.", request = %shown, attempt, wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
        // Offline, waits are skipped (as delays are).
        if stubs.is_none() {
            tokio::time::sleep(wait).await;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    // Without following, a redirect is an answer like any other success.
    let success = |status: u16| {
        (200..300).contains(&status) || (!spec.follow_redirects && (300..400).contains(&status))
    };
    match last {
        Some(Try::Response {
            status,
            headers,
            body,
            ..
        }) if success(status) => Ok(Step::Next(
            json!({"status": status, "headers": headers, "body": body}),
        )),
        Some(Try::Response {
            status,
            headers,
            body,
            ..
        }) => {
            let error = format!("{target} answered {status}");
            if spec.ignore_fail {
                Ok(Step::Next(
                    json!({"status": status, "headers": headers, "body": body, "error": error}),
                ))
            } else {
                Err(NodeError(error))
            }
        }
        Some(Try::Failed { reason, status, .. }) => {
            let error = format!("{target} failed: {reason}");
            if spec.ignore_fail {
                Ok(Step::Next(match status {
                    Some(status) => json!({"status": status, "error": error}),
                    None => json!({"error": error}),
                }))
            } else {
                Err(NodeError(error))
            }
        }
        // The operator's policy, not the upstream: `ignore_fail` does not
        // turn it into a result.
        Some(Try::Refused(reason)) => Err(NodeError(format!("{target} refused: {reason}"))),
        None => Err(NodeError("no attempt was made".into())),
    }
}

/// True for the record of a try still waiting for its answer.
pub(crate) fn in_flight(t: &TryRecord) -> bool {
    t.error.as_deref() == Some(attempt::IN_FLIGHT)
}

/// A canned answer as the outcome of a try.
fn stubbed_try(stub: Stub) -> Try {
    match stub {
        Stub::Response {
            status,
            headers,
            body,
        } => Try::Response {
            status,
            headers,
            body,
            retry_after: None,
        },
        Stub::Failure(failure) => Try::Failed {
            reason: failure.reason().to_string(),
            retry: true,
            status: None,
        },
    }
}

/// The headers of a try in the order they go out.
fn sent_headers(
    idempotency_key: &str,
    body: Option<&(&'static str, Vec<u8>)>,
    headers: &[(String, String)],
) -> Vec<(String, String)> {
    // The node's own headers replace these two (a header sent twice would
    // reach the upstream as both values).
    let own = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let mut sent = Vec::with_capacity(headers.len() + 2);
    if !own("idempotency-key") {
        sent.push(("idempotency-key".to_string(), idempotency_key.to_string()));
    }
    if let Some((content_type, _)) = body.filter(|_| !own("content-type")) {
        sent.push(("content-type".to_string(), (*content_type).to_string()));
    }
    sent.extend(headers.iter().cloned());
    sent
}

/// A URL as errors and logs show it: without user info, query string or
/// fragment (they carry tokens).
fn shown(url: &reqwest::Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    url.to_string()
}

/// The same for text that is not a URL (or not an http one): cut at `?`
/// or `#`, everything before the last `@` after the scheme and its slashes
/// redacted (user info however it is spelled: `http:/u:p@h`, `http:\\u:p@h`,
/// `u:p@h`; an `@` in a path hides a little more), at most 200 characters.
fn shown_text(text: &str) -> String {
    let cut = text.split(['?', '#']).next().unwrap_or_default();
    let cut = match cut.rfind('@') {
        Some(at) => {
            let scheme = cut
                .find(':')
                .filter(|&i| {
                    i > 0
                        && cut[..i]
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
                        && cut[i + 1..].starts_with(['/', '\\'])
                })
                .map_or(0, |i| i + 1);
            let rest = &cut[scheme..];
            let keep = scheme + rest.len() - rest.trim_start_matches(['/', '\\']).len();
            if keep < at {
                format!("{}{REDACTED}{}", &cut[..keep], &cut[at..])
            } else {
                cut.to_string()
            }
        }
        None => cut.to_string(),
    };
    if cut.chars().count() > 200 {
        format!("{}…", cut.chars().take(200).collect::<String>())
    } else {
        cut
    }
}

/// The wait before the next try: the backoff with its jitter, at most
/// 30 s, jitter included (SPEC §3).
fn backoff_wait(backoff: Duration) -> Duration {
    jitter(backoff).min(MAX_BACKOFF)
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

/// The URL a try is sent to. The HTTP client turns user info into a Basic
/// `Authorization` header; a node that gives its own `Authorization` meant
/// that one (the client would send both, and servers read the first).
fn sent_url(url: &reqwest::Url, headers: &[(String, String)]) -> reqwest::Url {
    let own = headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("authorization"));
    if !own || (url.username().is_empty() && url.password().is_none()) {
        return url.clone();
    }
    let mut url = url.clone();
    // Only URLs that cannot hold user info refuse these (checked above).
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_user_info_query_or_fragment() {
        let url = |t: &str| reqwest::Url::parse(t).expect("url");
        assert_eq!(
            shown(&url(
                "https://user:pw@api.example.com/v1/pay?token=abc#frag"
            )),
            "https://api.example.com/v1/pay"
        );
        assert_eq!(
            shown(&url("http://127.0.0.1:8080?k=v")),
            "http://127.0.0.1:8080/"
        );
        assert_eq!(
            shown(&url("mailto:x@example.com?subject=s")),
            "mailto:x@example.com"
        );
        assert_eq!(
            shown_text("https://user:pw@host:99999/p/q?token=abc"),
            "https://[redacted]@host:99999/p/q"
        );
        assert_eq!(shown_text("http://a@b@host#x?y"), "http://[redacted]@host");
        // User info however the text spells it (a URL parser takes these).
        assert_eq!(
            shown_text("http:/admin:pw3@127.0.0.1:99999/x"),
            "http:/[redacted]@127.0.0.1:99999/x"
        );
        assert_eq!(
            shown_text("http:\\\\admin:pw4@127.0.0.1:99999/x"),
            "http:\\\\[redacted]@127.0.0.1:99999/x"
        );
        assert_eq!(
            shown_text("admin:pw2@127.0.0.1:18081/x"),
            "[redacted]@127.0.0.1:18081/x"
        );
        assert_eq!(shown_text("http://host/p"), "http://host/p");
        assert_eq!(shown_text("not a url?token=abc"), "not a url");
        assert_eq!(shown_text(&"x".repeat(300)).chars().count(), 201);
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

    #[test]
    fn a_wait_is_at_most_30_seconds_jitter_included() {
        let waits: Vec<Duration> = (0..200).map(|_| backoff_wait(MAX_BACKOFF)).collect();
        assert!(waits.iter().all(|w| *w <= MAX_BACKOFF), "{waits:?}");
        assert!(
            waits.iter().any(|w| *w < MAX_BACKOFF),
            "the jitter still draws below the cap"
        );
    }
}
