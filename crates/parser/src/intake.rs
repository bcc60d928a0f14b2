//! Intake: a request as received → a run's input, in the two stages SPEC §4
//! orders around the signature check.
//!
//! [`receive`] keeps the request as it arrived (method, path, headers, the
//! decoded query, the raw body) and checks the media type (415); the
//! signature check reads that. [`build_input`] then decodes the body (400),
//! puts in what the check decrypted, and applies the workflow's parse rules
//! (400). The server and `hookflow run`/`test` both go through here.

use crate::body::{self, body_kind, malformed, BodyKind};
use crate::extract::extract_plucked;
use crate::pluck::{pluck, pluck_text, MAX_PATHS};
use crate::query::parse_query;
use crate::{extract, ParseError};
use hookflow_model::path::{KeyPath, Step};
use hookflow_model::request::{
    lossy_text, BodySource, Headers, RunInput, TriggerRequest, Verified,
};
use hookflow_model::runtime::{ParseSpec, Workflow};
use serde_json::Value as Json;

/// A request's parts as an HTTP server (or a test file) hands them in.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The method.
    pub method: &'a str,
    /// The path, without the query string.
    pub path: &'a str,
    /// The raw query string.
    pub query: &'a str,
    /// The Content-Type header.
    pub content_type: Option<&'a str>,
    /// The raw body.
    pub body: &'a [u8],
}

/// A request as received, its body not decoded yet.
#[derive(Debug)]
pub struct Received<'a> {
    /// Everything but `body` (null until [`build_input`]).
    pub request: TriggerRequest,
    /// The raw body bytes (what signatures are computed over).
    pub body: &'a [u8],
    /// Whether `request.raw_body` is `body` (it was valid UTF-8).
    text: bool,
    /// How the body is read; `None` for an empty body.
    kind: Option<BodyKind>,
    /// The text encoding of a form or text body, when its content type
    /// names one other than UTF-8.
    charset: Option<&'static encoding_rs::Encoding>,
}

/// Keeps a request as received and reads its media type: a non-empty body
/// whose content type is not accepted is refused here (415).
pub fn receive<'a, 'h>(
    request: Request<'a>,
    headers: impl IntoIterator<Item = (&'h str, &'h str)>,
) -> Result<Received<'a>, ParseError> {
    // The media type is read once: it decides both the parse and what storage keeps.
    let kind = match request.body.is_empty() {
        true => None,
        false => Some(body_kind(request.content_type).ok_or_else(|| {
            ParseError::UnsupportedMediaType(request.content_type.unwrap_or("(none)").to_string())
        })?),
    };
    let raw_body = lossy_text(request.body);
    let text = matches!(raw_body, std::borrow::Cow::Borrowed(_));
    let headers = headers.into_iter();
    let mut kept = Headers::with_capacity(headers.size_hint().0);
    for (name, value) in headers {
        // Names from the HTTP server are lower-case already.
        match name.bytes().any(|b| b.is_ascii_uppercase()) {
            true => kept.push(&name.to_ascii_lowercase(), value),
            false => kept.push(name, value),
        }
    }
    Ok(Received {
        request: TriggerRequest {
            method: request.method.to_string(),
            path: request.path.to_string(),
            headers: kept,
            query: parse_query(request.query),
            body: Json::Null,
            raw_body: raw_body.into_owned(),
            body_source: BodySource::Stored,
        },
        body: request.body,
        text,
        kind,
        charset: body::charset(request.content_type),
    })
}

impl Received<'_> {
    /// Decodes the body (400 when it does not parse) into the request.
    fn decode(self) -> Result<TriggerRequest, ParseError> {
        let mut request = self.request;
        if let Some(kind) = self.kind {
            request.body = body::parse_in(kind, self.body, self.charset)?;
        }
        request.body_source = match self.kind {
            Some(BodyKind::Json) => BodySource::JsonOfRaw,
            // Decoded from another charset: not the raw body read as UTF-8.
            Some(BodyKind::Text) if self.charset.is_some() => BodySource::Stored,
            // Text bodies are the raw body, unless it was not UTF-8.
            Some(BodyKind::Text) if std::str::from_utf8(self.body).is_ok() => BodySource::TextOfRaw,
            _ => BodySource::Stored,
        };
        Ok(request)
    }
}

/// Puts what a signature check decrypted into the request (SPEC §4b): Feishu's
/// event replaces `trigger.body`; WeChat Pay's resource goes to
/// `trigger.body.resource.plaintext`; Alipay's signed parameters replace a
/// form body. Each makes the body one to store.
fn apply_verified(request: &mut TriggerRequest, verified: Verified) {
    if let Some(form) = verified.form {
        request.body = parse_query(&form);
        request.body_source = BodySource::Stored;
    }
    if let Some(event) = verified.body {
        request.body = event;
        request.body_source = BodySource::Stored;
    }
    if let Some(plaintext) = verified.resource_plaintext {
        if let Some(Json::Object(resource)) = request.body_mut().get_mut("resource") {
            resource.insert("plaintext".into(), plaintext);
            request.body_source = BodySource::Stored;
        }
    }
}

/// A received request → the run's input: the body decoded, the verified
/// content put in, `vars` made by the workflow's parse rules (errors name
/// the field).
pub fn build_input(
    workflow: &Workflow,
    received: Received<'_>,
    verified: Verified,
) -> Result<RunInput, ParseError> {
    let parse = &workflow.trigger.parse;
    let secret_headers = || workflow.trigger.secret_headers.clone();
    // Each arm moves the request once, into the input (a request moved is
    // 192 bytes copied).
    match pluckable(parse, &received, &verified) {
        // The body's entries read from the raw body as it is checked,
        // without parsing it to a value nothing else may read.
        Some(paths) => {
            let plucked = match received.text {
                true => pluck_text(&received.request.raw_body, &paths),
                false => pluck(received.body, &paths),
            }
            .map_err(malformed)?;
            let mut received = received;
            received.request.body_source = BodySource::JsonUnparsed;
            let vars = extract_plucked(parse, &received.request, Some(plucked))?;
            Ok(RunInput {
                trigger: received.request,
                vars: Json::Object(vars),
                secret_headers: secret_headers(),
            })
        }
        None => {
            let mut trigger = received.decode()?;
            apply_verified(&mut trigger, verified);
            let vars = extract(parse, &trigger)?;
            Ok(RunInput {
                trigger,
                vars: Json::Object(vars),
                secret_headers: secret_headers(),
            })
        }
    }
}

/// The paths of the body's entries, when they can be read from a JSON body
/// without parsing it: dotted paths, not too many, and nothing decrypted
/// to put into the body first.
fn pluckable<'w>(
    parse: &'w ParseSpec,
    received: &Received<'_>,
    verified: &Verified,
) -> Option<Vec<&'w [Step]>> {
    let plain =
        verified.body.is_none() && verified.resource_plaintext.is_none() && verified.form.is_none();
    if received.kind != Some(BodyKind::Json) || !plain || parse.body.len() > MAX_PATHS {
        return None;
    }
    parse
        .body
        .iter()
        .map(|entry| match &entry.path {
            KeyPath::Dotted(steps) => Some(steps.as_slice()),
            KeyPath::JsonPath(_) => None,
        })
        .collect()
}

/// Both stages with nothing verified and no parse rules: a request →
/// `trigger.*`.
pub fn parse_request<'h>(
    request: Request<'_>,
    headers: impl IntoIterator<Item = (&'h str, &'h str)>,
) -> Result<TriggerRequest, ParseError> {
    receive(request, headers)?.decode()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request<'a>(content_type: &'a str, body: &'a [u8]) -> Request<'a> {
        Request {
            method: "POST",
            path: "/api/webhook:trigger/k",
            query: "",
            content_type: Some(content_type),
            body,
        }
    }

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
            let r = parse_request(request(content_type, body), [("X-A", "1")]).expect("parses");
            assert_eq!(r.body_source, source, "{content_type} {body:?}");
            assert_eq!(r.headers.iter().collect::<Vec<_>>(), [("x-a", "1")]);
        }
        assert!(matches!(
            parse_request(request("image/png", b"x"), []),
            Err(ParseError::UnsupportedMediaType(_))
        ));
    }

    #[test]
    fn forms_and_text_are_read_in_the_charset_their_content_type_names() {
        // 中文 in GBK: D6D0 CEC4.
        let form = "application/x-www-form-urlencoded; charset=GBK";
        let r = parse_request(request(form, b"action=%D6%D0%CE%C4&n=1"), []).expect("parses");
        assert_eq!(r.body, json!({"action": "中文", "n": "1"}));
        let text = "text/plain; charset=\"gb18030\"";
        let r = parse_request(request(text, b"\xd6\xd0\xce\xc4"), []).expect("parses");
        assert_eq!(r.body, json!("中文"));
        assert_eq!(
            r.body_source,
            BodySource::Stored,
            "not the raw body as UTF-8"
        );
        // Without a charset, or with UTF-8 or a label no one knows: UTF-8.
        for ct in [
            "application/x-www-form-urlencoded",
            "application/x-www-form-urlencoded; charset=utf-8",
            "application/x-www-form-urlencoded; charset=klingon",
        ] {
            let r = parse_request(request(ct, b"a=%E4%B8%AD"), []).expect("parses");
            assert_eq!(r.body, json!({"a": "中"}), "{ct}");
        }
        // JSON is UTF-8 whatever the header says (RFC 8259).
        let json_gbk = "application/json; charset=gbk";
        assert!(parse_request(request(json_gbk, b"{\"a\":\"\xd6\xd0\"}"), []).is_err());
        let r = parse_request(request(json_gbk, "{\"a\":\"中\"}".as_bytes()), []).expect("parses");
        assert_eq!(r.body, json!({"a": "中"}));
    }

    #[test]
    fn headers_are_lower_cased_and_repeats_joined() {
        let r = parse_request(
            request("application/json", b""),
            [("X-Request-Id", "1"), ("Accept", "a"), ("accept", "b")],
        )
        .expect("parses");
        assert_eq!(
            Json::Object(r.headers_json()),
            json!({"x-request-id": "1", "accept": "a, b"})
        );
        assert_eq!(r.header("accept").as_deref(), Some("a, b"));
    }

    #[test]
    fn the_media_type_is_refused_before_the_body_is_read() {
        // 415 comes before 400: a malformed body of a refused type is a 415.
        assert!(matches!(
            receive(request("image/png", b"{"), []),
            Err(ParseError::UnsupportedMediaType(_))
        ));
        let received = receive(request("application/json", b"{"), []).expect("received");
        assert_eq!(received.request.raw_body, "{");
        assert!(matches!(
            received.decode(),
            Err(ParseError::MalformedJson { .. })
        ));
    }

    #[test]
    fn verified_content_goes_where_spec_says() {
        let body = br#"{"resource":{"ciphertext":"x"}}"#;
        let mut r = parse_request(request("application/json", body), []).expect("parses");
        apply_verified(
            &mut r,
            Verified {
                resource_plaintext: Some(json!({"out_trade_no": "T1"})),
                ..Verified::default()
            },
        );
        assert_eq!(
            r.body,
            json!({"resource": {"ciphertext": "x", "plaintext": {"out_trade_no": "T1"}}})
        );
        assert_eq!(r.body_source, BodySource::Stored);
        let mut r =
            parse_request(request("application/json", br#"{"encrypt":"e"}"#), []).expect("parses");
        apply_verified(
            &mut r,
            Verified {
                body: Some(json!({"event": 1})),
                ..Verified::default()
            },
        );
        assert_eq!(r.body, json!({"event": 1}));
        assert_eq!(r.raw_body, r#"{"encrypt":"e"}"#);
        assert_eq!(r.body_source, BodySource::Stored);
        let form = "a=1&memo=&sign=s";
        let mut r = parse_request(
            request("application/x-www-form-urlencoded", form.as_bytes()),
            [],
        )
        .expect("parses");
        apply_verified(
            &mut r,
            Verified {
                form: Some("a=1&sign=s".into()),
                ..Verified::default()
            },
        );
        assert_eq!(r.body, json!({"a": "1", "sign": "s"}));
        assert_eq!(r.raw_body, form);
    }

    #[test]
    fn a_json_body_read_for_its_vars_is_parsed_only_when_something_reads_it() {
        let wf = crate::test_workflow(
            "title: t\ntrigger:\n  type: webhook\n  parse:\n    body:\n      - { key: order.id, alias: id }\n",
        );
        let body = br#"{"order":{"id":"A-1","pin":"SUPERSECRET123"},"n":1}"#;
        let received = receive(request("application/json", body), []).expect("received");
        let input = build_input(&wf, received, Verified::default()).expect("input");
        assert_eq!(input.vars, json!({"id": "A-1"}));
        let t = &input.trigger;
        assert_eq!(t.body_source, BodySource::JsonUnparsed);
        assert_eq!(t.body, Json::Null, "not parsed at intake");
        let parsed = json!({"order": {"id": "A-1", "pin": "SUPERSECRET123"}, "n": 1});
        assert_eq!(*t.body(), parsed);
        assert_eq!(t.to_json()["body"], parsed);
        assert_eq!(t.stored_body(), (0, None), "stored as the raw body");
        // Equal to the same request with its body parsed (a record read back).
        let eager = parse_request(request("application/json", body), []).expect("parses");
        assert_eq!(eager.body_source, BodySource::JsonOfRaw);
        assert_eq!(*t, eager);
        let mut other = eager.clone();
        other.body = json!({"changed": true});
        assert_ne!(*t, other);
        // A secret in the raw body: the body is parsed before the raw body
        // is scrubbed, then kept and scrubbed itself.
        let scrubbed = t
            .clone()
            .scrubbed(&hookflow_model::scrub::Scrubber::new(["SUPERSECRET123"]));
        assert_eq!(scrubbed.body_source, BodySource::Stored);
        assert!(!scrubbed.raw_body.contains("SUPERSECRET123"));
        assert_eq!(scrubbed.body["order"]["id"], "A-1");
        assert_ne!(scrubbed.body["order"]["pin"], "SUPERSECRET123");
        // Changed in place: parsed first.
        let mut changed = input.trigger.clone();
        changed.body_mut()["n"] = json!(2);
        assert_eq!(changed.body_source, BodySource::JsonOfRaw);
        assert_eq!(changed.body["order"]["id"], "A-1");
        // A body that is not JSON is refused as before, with the place.
        let received =
            receive(request("application/json", b"{\"order\": }"), []).expect("received");
        assert_eq!(
            build_input(&wf, received, Verified::default()),
            Err(ParseError::MalformedJson {
                line: 1,
                column: 11,
                message: "expected value".into()
            })
        );
        // A JSONPath entry reads the parsed body, as before.
        let wf = crate::test_workflow(
            "title: t\ntrigger:\n  type: webhook\n  parse:\n    body:\n      - { key: $.order.id, alias: id }\n",
        );
        let received = receive(request("application/json", body), []).expect("received");
        let input = build_input(&wf, received, Verified::default()).expect("input");
        assert_eq!(input.vars, json!({"id": ["A-1"]}));
        assert_eq!(input.trigger.body_source, BodySource::JsonOfRaw);
    }
}
