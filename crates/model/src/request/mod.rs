//! The request that started a run, as runs use it and records keep it.
//!
//! A [`TriggerRequest`] holds the request as received (headers in arrival
//! order, the raw body) plus what the parser decoded (query, body), not the
//! `trigger` JSON object: building that object, storing it and dropping it
//! was ~8 % of a small sync run's instructions. [`TriggerRequest::to_json`]
//! builds `trigger.*` (SPEC §2) when a template or a reader wants it.
//!
//! Serialized two ways: as the `trigger` object for JSON (the API), and
//! packed for storage, where a body that is the raw body parsed again is not
//! stored twice.

mod headers;
mod secret;

use crate::scrub::Scrubber;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value as Json};
use std::borrow::Cow;

pub use headers::Headers;
pub use secret::is_secret_header;

/// The text that replaces a secret header's value in records.
pub const REDACTED: &str = "[redacted]";

/// The request behind `trigger.*`.
#[derive(Debug, Clone, Default)]
pub struct TriggerRequest {
    /// `trigger.method`.
    pub method: String,
    /// `trigger.path`, without the query string.
    pub path: String,
    /// Headers in arrival order, names lower-cased; `trigger.headers` joins
    /// repeated names with `, `.
    pub headers: Headers,
    /// `trigger.query`, decoded.
    pub query: Json,
    /// `trigger.body`, decoded (or decrypted by a signature preset); null
    /// while `body_source` is [`BodySource::JsonUnparsed`]: read it through
    /// [`TriggerRequest::body`].
    pub body: Json,
    /// `trigger.raw_body`.
    pub raw_body: String,
    /// How `body` follows from `raw_body` (what storage may leave out).
    pub body_source: BodySource,
}

/// How a request's decoded body relates to its raw body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodySource {
    /// `body` is `raw_body` parsed as JSON.
    JsonOfRaw,
    /// `raw_body` is JSON, checked when the request came in but not parsed
    /// to a value (its `vars` were read from it directly): `body` is null,
    /// and [`TriggerRequest::body`] parses `raw_body` when something reads
    /// it. Stored as [`BodySource::JsonOfRaw`] is.
    JsonUnparsed,
    /// `body` is `raw_body` as a string.
    TextOfRaw,
    /// Neither (empty, form and decrypted bodies): stored as it is.
    #[default]
    Stored,
}

/// Requests are equal when they hold the same: a body not parsed yet
/// equals the same body parsed.
impl PartialEq for TriggerRequest {
    fn eq(&self, other: &TriggerRequest) -> bool {
        let source = |r: &TriggerRequest| match r.body_source {
            BodySource::JsonUnparsed => BodySource::JsonOfRaw,
            s => s,
        };
        self.method == other.method
            && self.path == other.path
            && self.headers == other.headers
            && self.query == other.query
            && self.raw_body == other.raw_body
            && source(self) == source(other)
            && self.body() == other.body()
    }
}

/// A run's input: the request as received (nothing redacted) and the `vars`
/// its parse rules made. Kept for resume and retry.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RunInput {
    /// `trigger.*`.
    pub trigger: TriggerRequest,
    /// `vars`.
    pub vars: Json,
    /// Headers redacted in records besides those [`is_secret_header`] names:
    /// the signature headers of the workflow's `verify` preset (a custom
    /// `header:` of `hmac`). Kept with the input, which records are made
    /// from long after the workflow may have changed.
    #[serde(default)]
    pub secret_headers: Vec<String>,
}

impl RunInput {
    /// The request as records show it: secret-bearing header values redacted.
    pub fn recorded_trigger(&self) -> TriggerRequest {
        let mut trigger = self.trigger.clone();
        trigger.redact_with(&self.secret_headers);
        trigger
    }
}

/// What a passed signature check hands on to the run's input (SPEC §4b:
/// where decrypted content goes).
#[derive(Debug, Default, PartialEq)]
pub struct Verified {
    /// Replaces `trigger.body` (Feishu's decrypted event).
    pub body: Option<Json>,
    /// Goes to `trigger.body.resource.plaintext` (WeChat Pay's decrypted resource).
    pub resource_plaintext: Option<Json>,
    /// Answer this challenge and start no run (Feishu's `url_verification`).
    pub challenge: Option<String>,
    /// Replaces a form body: the parameters that were signed, as a form
    /// (Alipay leaves empty values out of what it signs).
    pub form: Option<String>,
}

impl TriggerRequest {
    /// What storage keeps of the decoded body: how it follows from
    /// `raw_body` (0: its JSON, 1: its text, 2: neither) and, for 2 only,
    /// the body itself.
    pub fn stored_body(&self) -> (u8, Option<&Json>) {
        match self.body_source {
            BodySource::JsonOfRaw | BodySource::JsonUnparsed => (0, None),
            BodySource::TextOfRaw => (1, None),
            BodySource::Stored => (2, Some(&self.body)),
        }
    }

    /// `trigger.body`: parsed from `raw_body` here when the request came in
    /// with its body checked but not parsed ([`BodySource::JsonUnparsed`]).
    pub fn body(&self) -> Cow<'_, Json> {
        match self.body_source {
            BodySource::JsonUnparsed => Cow::Owned(self.parsed_raw_body()),
            _ => Cow::Borrowed(&self.body),
        }
    }

    /// `trigger.body` to change in place: parsed first when it was not.
    pub fn body_mut(&mut self) -> &mut Json {
        if self.body_source == BodySource::JsonUnparsed {
            self.body = self.parsed_raw_body();
            self.body_source = BodySource::JsonOfRaw;
        }
        &mut self.body
    }

    /// `raw_body` as JSON. It was checked when the request came in (the
    /// same parse), so the null for a body that does not parse is never
    /// seen.
    fn parsed_raw_body(&self) -> Json {
        serde_json::from_str(&self.raw_body).unwrap_or(Json::Null)
    }

    /// A header's value by lower-case name; repeated headers joined as
    /// [`join_header`] does.
    pub fn header(&self, name: &str) -> Option<String> {
        let mut found: Option<String> = None;
        for (n, v) in &self.headers {
            if n == name {
                match &mut found {
                    Some(joined) => join_header(joined, v),
                    None => found = Some(v.to_string()),
                }
            }
        }
        found
    }

    /// `trigger.headers`: lower-case names, repeated headers joined as
    /// [`join_header`] does.
    pub fn headers_json(&self) -> Map<String, Json> {
        headers_object(&self.headers)
    }

    /// The `trigger` object of SPEC §2.
    pub fn to_json(&self) -> Json {
        let mut m = Map::new();
        m.insert("method".into(), Json::String(self.method.clone()));
        m.insert("path".into(), Json::String(self.path.clone()));
        m.insert("headers".into(), Json::Object(self.headers_json()));
        m.insert("query".into(), self.query.clone());
        m.insert("body".into(), self.body().into_owned());
        m.insert("raw_body".into(), Json::String(self.raw_body.clone()));
        Json::Object(m)
    }

    /// Reads a `trigger` object back (records read from JSON).
    pub fn from_json(v: &Json) -> TriggerRequest {
        let text = |k: &str| v.get(k).and_then(Json::as_str).unwrap_or_default();
        let headers = v
            .get("headers")
            .and_then(Json::as_object)
            .map(|h| {
                h.iter()
                    .map(|(n, v)| (n, v.as_str().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        TriggerRequest {
            method: text("method").to_string(),
            path: text("path").to_string(),
            headers,
            query: v.get("query").cloned().unwrap_or(Json::Null),
            body: v.get("body").cloned().unwrap_or(Json::Null),
            raw_body: text("raw_body").to_string(),
            body_source: BodySource::Stored,
        }
    }

    /// The request as records keep it: secret-bearing header values redacted.
    pub fn redacted(mut self) -> TriggerRequest {
        self.redact_with(&[]);
        self
    }

    /// The request as records keep it, changed in place (a request moved is
    /// 192 bytes copied; a sync run redacts and scrubs its own where it
    /// stays): the values of secret-bearing headers and of the headers
    /// named in `also` (lower-case) redacted.
    pub fn redact_with(&mut self, also: &[String]) {
        let secret = |(name, value): (&str, &str)| {
            value != REDACTED
                && (is_secret_header(name) || also.iter().any(|a| a.eq_ignore_ascii_case(name)))
        };
        let mut from = 0;
        while let Some(i) = self.headers.iter().skip(from).position(secret) {
            self.headers.set_value(from + i, REDACTED);
            from += i + 1;
        }
        // Query strings carry tokens too (`?access_token=…`): a parameter
        // whose name marks a secret-bearing header is redacted alike, at
        // any depth (`?auth[token]=…`).
        redact_named(&mut self.query);
    }

    /// The request with every declared secret value `scrubber` knows
    /// replaced (SPEC §3: no secret value in a stored record), in header
    /// values, query, body and raw body. Unchanged when no secret is
    /// declared.
    pub fn scrubbed(mut self, scrubber: &Scrubber) -> TriggerRequest {
        self.scrub(scrubber);
        self
    }

    /// [`TriggerRequest::scrubbed`] in place.
    pub fn scrub(&mut self, scrubber: &Scrubber) {
        if scrubber.values() == 0 {
            return;
        }
        self.headers
            .change_values(|_, value| match scrubber.str(value) {
                Cow::Owned(clean) => Some(clean),
                Cow::Borrowed(_) => None,
            });
        scrubber.json(&mut self.query);
        if let Cow::Owned(clean) = scrubber.str(&self.raw_body) {
            // The body from the raw body as it came, before the raw body changes.
            self.body_mut();
            self.raw_body = clean;
            // The body no longer follows from the raw body: kept itself.
            self.body_source = BodySource::Stored;
        }
        if self.body_source == BodySource::Stored {
            scrubber.json(&mut self.body);
        }
    }
}

/// Redacts the values of members named like secret-bearing headers, at any
/// depth (a query nests at most 16 levels).
fn redact_named(value: &mut Json) {
    match value {
        Json::Object(members) => {
            for (name, member) in members.iter_mut() {
                if is_secret_header(name) {
                    *member = Json::String(REDACTED.to_string());
                } else {
                    redact_named(member);
                }
            }
        }
        Json::Array(items) => items.iter_mut().for_each(redact_named),
        _ => {}
    }
}

/// Name/value pairs as a JSON object of strings, a repeated name's values
/// joined as [`join_header`] does (`trigger.headers`, a refused request's
/// headers in the API).
pub fn headers_object<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Map<String, Json> {
    let mut map = Map::new();
    for (name, value) in pairs {
        match map.get_mut(name) {
            Some(Json::String(joined)) => join_header(joined, value),
            _ => {
                map.insert(name.to_string(), Json::String(value.to_string()));
            }
        }
    }
    map
}

/// Appends a repeated header's next value: field lines of one name are
/// combined with `, ` (RFC 9110 §5.3), in arrival order. The one rule for
/// `trigger.headers`, signature checks and header lookups.
pub fn join_header(joined: &mut String, value: &str) {
    joined.push_str(", ");
    joined.push_str(value);
}

/// Bytes as text: valid UTF-8 borrowed as it is, anything else decoded
/// lossily (U+FFFD for each bad sequence), as `String::from_utf8_lossy`
/// does. That one walks valid text a byte at a time; `str::from_utf8`
/// checks ASCII a word at a time, and what senders send is nearly always
/// valid (each request's header values and raw body pass here).
pub fn lossy_text(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// The stored form, fields by position; `body` only when `source` says it
/// cannot be had again from `raw_body`.
#[derive(Serialize)]
struct PackedRef<'a> {
    method: &'a str,
    path: &'a str,
    headers: &'a Headers,
    query: &'a Json,
    raw_body: &'a str,
    source: u8,
    body: Option<&'a Json>,
}

#[derive(Deserialize)]
struct Packed {
    method: String,
    path: String,
    headers: Headers,
    query: Json,
    raw_body: String,
    source: u8,
    body: Option<Json>,
}

impl Serialize for TriggerRequest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            return self.to_json().serialize(s);
        }
        let (source, body) = self.stored_body();
        PackedRef {
            method: &self.method,
            path: &self.path,
            headers: &self.headers,
            query: &self.query,
            raw_body: &self.raw_body,
            source,
            body,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for TriggerRequest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<TriggerRequest, D::Error> {
        if d.is_human_readable() {
            return Json::deserialize(d).map(|v| TriggerRequest::from_json(&v));
        }
        let p = Packed::deserialize(d)?;
        let (body_source, body) = match (p.source, p.body) {
            (0, _) => (
                BodySource::JsonOfRaw,
                serde_json::from_str(&p.raw_body)
                    .map_err(|e| D::Error::custom(format!("stored raw body is not JSON: {e}")))?,
            ),
            (1, _) => (BodySource::TextOfRaw, Json::String(p.raw_body.clone())),
            (2, body) => (BodySource::Stored, body.unwrap_or(Json::Null)),
            (other, _) => {
                return Err(D::Error::custom(format!("unknown body source {other}")));
            }
        };
        Ok(TriggerRequest {
            method: p.method,
            path: p.path,
            headers: p.headers,
            query: p.query,
            body,
            raw_body: p.raw_body,
            body_source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request() -> TriggerRequest {
        TriggerRequest {
            method: "POST".into(),
            path: "/api/webhook:trigger/k".into(),
            headers: vec![
                ("authorization", "Basic x"),
                ("accept", "a"),
                ("accept", "b"),
                ("x-hub-signature-256", "sha256=1"),
            ]
            .into(),
            query: json!({"q": "1"}),
            body: json!({"a": 1}),
            raw_body: r#"{"a":1}"#.into(),
            body_source: BodySource::JsonOfRaw,
        }
    }

    #[test]
    fn the_trigger_object_joins_repeated_headers() {
        let r = request();
        assert_eq!(
            r.to_json(),
            json!({"method": "POST", "path": "/api/webhook:trigger/k",
                   "headers": {"authorization": "Basic x", "accept": "a, b", "x-hub-signature-256": "sha256=1"},
                   "query": {"q": "1"}, "body": {"a": 1}, "raw_body": "{\"a\":1}"})
        );
        assert_eq!(r.header("accept").as_deref(), Some("a, b"));
        assert_eq!(r.header("missing"), None);
    }

    #[test]
    fn redaction_replaces_secret_values_only() {
        let r = request().redacted();
        assert_eq!(r.header("authorization").as_deref(), Some(REDACTED));
        assert_eq!(r.header("x-hub-signature-256").as_deref(), Some(REDACTED));
        assert_eq!(r.header("accept").as_deref(), Some("a, b"));
    }

    #[test]
    fn query_parameters_named_like_secrets_are_redacted() {
        let mut r = request();
        r.query = json!({"access_token": "t0k", "Signature": "s", "q": "1",
                         "auth": {"token": "t1", "user": "u"}, "list": [{"password": "p"}]});
        let r = r.redacted();
        assert_eq!(
            r.query,
            json!({"access_token": REDACTED, "Signature": REDACTED, "q": "1",
                   "auth": {"token": REDACTED, "user": "u"}, "list": [{"password": REDACTED}]})
        );
    }

    #[test]
    fn declared_secret_values_are_scrubbed_from_every_part() {
        let secret = "s3cret-value-77";
        let mut r = request();
        r.headers.push("x-pin", &format!("pin {secret}"));
        r.query = json!({"key": secret, "q": "1"});
        r.raw_body = format!(r#"{{"pin":"{secret}","a":1}}"#);
        r.body = json!({"pin": secret, "a": 1});
        let none = Scrubber::new(Vec::<String>::new());
        assert_eq!(r.clone().scrubbed(&none), r, "nothing declared: unchanged");
        let clean = r.scrubbed(&Scrubber::new([secret]));
        assert_eq!(clean.header("x-pin").as_deref(), Some("pin [redacted]"));
        assert_eq!(clean.query, json!({"key": REDACTED, "q": "1"}));
        assert_eq!(clean.raw_body, r#"{"pin":"[redacted]","a":1}"#);
        assert_eq!(clean.body, json!({"pin": REDACTED, "a": 1}));
        // Stored as it is now: the body no longer follows from the raw body.
        assert_eq!(clean.body_source, BodySource::Stored);
    }

    #[test]
    fn redaction_also_takes_the_workflows_own_names() {
        let mut r = request();
        r.headers.push("x-sig", "abc");
        let input = RunInput {
            trigger: r,
            vars: Json::Null,
            secret_headers: vec!["x-sig".into()],
        };
        let recorded = input.recorded_trigger();
        assert_eq!(recorded.header("x-sig").as_deref(), Some(REDACTED));
        assert_eq!(recorded.header("authorization").as_deref(), Some(REDACTED));
        assert_eq!(recorded.header("accept").as_deref(), Some("a, b"));
        assert_eq!(input.trigger.header("x-sig").as_deref(), Some("abc"));
    }

    #[test]
    fn an_input_stored_before_secret_headers_existed_still_reads() {
        #[derive(Serialize)]
        struct Old<'a> {
            trigger: &'a TriggerRequest,
            vars: Json,
        }
        let r = request();
        let bytes = rmp_serde::to_vec(&Old {
            trigger: &r,
            vars: json!({"a": 1}),
        })
        .expect("encode");
        let back: RunInput = rmp_serde::from_slice(&bytes).expect("decode");
        assert_eq!(back.trigger, r);
        assert!(back.secret_headers.is_empty());
    }

    #[test]
    fn json_round_trip_is_the_trigger_object() {
        let r = request();
        let text = serde_json::to_value(&r).expect("serialize");
        assert_eq!(text, r.to_json());
        let back: TriggerRequest = serde_json::from_value(text).expect("deserialize");
        assert_eq!(back.to_json(), r.to_json());
    }

    #[test]
    fn text_is_borrowed_when_valid_and_decoded_as_std_does_when_not() {
        for bytes in [
            &b""[..],
            b"plain ascii",
            "\u{4e2d}\u{6587} and \u{1f600}".as_bytes(),
            b"\xff",
            b"ab\xe4\xb8",
            b"\xe4\xb8\xadx\xc3(\xf0\x9f\x98",
            b"ok\x80ok\xbf\xbfend",
        ] {
            let got = lossy_text(bytes);
            assert_eq!(got, String::from_utf8_lossy(bytes), "{bytes:?}");
            assert_eq!(
                matches!(got, Cow::Borrowed(_)),
                std::str::from_utf8(bytes).is_ok(),
                "{bytes:?}"
            );
        }
    }
}
