//! The admin API of a running server, for `hookflow executions`.

use anyhow::{bail, Context};
use serde_json::Value as Json;
use std::time::Duration;

/// How long a command waits for the server to answer at all.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one admin call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A server's admin API.
pub struct Client {
    http: reqwest::Client,
    base: reqwest::Url,
    token: Option<String>,
}

impl Client {
    /// A client of the server at `base` (`http://host:port`).
    pub fn new(base: &str, token: Option<String>) -> anyhow::Result<Client> {
        let base = reqwest::Url::parse(base).with_context(|| {
            format!("--server `{base}` is not a URL (e.g. http://127.0.0.1:13000)")
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            bail!("--server `{base}` must be an http:// or https:// URL");
        }
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Client { http, base, token })
    }

    /// Whether a hookflow server answers (`/healthz`).
    pub async fn answers(&self) -> bool {
        let Ok(url) = self.url(&["healthz"], &[]) else {
            return false;
        };
        self.http
            .get(url)
            .timeout(CONNECT_TIMEOUT)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    /// The URL of a path (each segment escaped) with a query.
    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> anyhow::Result<reqwest::Url> {
        let mut url = self.base.clone();
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|()| anyhow::anyhow!("--server cannot take a path"))?;
            path.pop_if_empty();
            path.extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        Ok(url)
    }

    fn authorized(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// GET a JSON answer.
    pub async fn get_json(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> anyhow::Result<Json> {
        let req = self.http.get(self.url(segments, query)?);
        json_of(self.call(req).await?)
    }

    /// GET a text answer.
    pub async fn get_text(&self, segments: &[&str]) -> anyhow::Result<String> {
        let req = self.http.get(self.url(segments, &[])?);
        Ok(String::from_utf8_lossy(&self.call(req).await?).into_owned())
    }

    /// POST a JSON body; the JSON answer.
    pub async fn post_json(&self, segments: &[&str], body: &Json) -> anyhow::Result<Json> {
        let req = self
            .http
            .post(self.url(segments, &[])?)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(body)?);
        json_of(self.call(req).await?)
    }

    /// Sends a request; the body of a 2xx answer, or the server's error.
    async fn call(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Vec<u8>> {
        let resp = self
            .authorized(req)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("the server did not answer: {}", reason(&e)))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| anyhow::anyhow!("the server's answer was cut: {}", reason(&e)))?;
        if status.is_success() {
            return Ok(body.to_vec());
        }
        let message = serde_json::from_slice::<Json>(&body)
            .ok()
            .and_then(|j| j.get("message").and_then(Json::as_str).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        bail!("the server answered {}: {message}", status.as_u16())
    }
}

fn json_of(body: Vec<u8>) -> anyhow::Result<Json> {
    serde_json::from_slice(&body).context("the server's answer is not JSON")
}

/// A client error without its URL (which may carry a query).
fn reason(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request error"
    }
}
