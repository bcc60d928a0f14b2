//! The trigger: pinned key, authentication, signature verification, the
//! parse entries that fill `vars` with their aliases, and idempotency.

use super::{p, Cx, DEFAULT_IDEMPOTENCY_TTL, DEFAULT_MAX_BODY, P};
use crate::def::*;
use crate::path::{KeyPath, Step};
use crate::runtime::*;
use std::collections::{BTreeMap, BTreeSet};

impl Cx<'_> {
    pub(super) fn trigger(&mut self, t: &TriggerDef) -> Trigger {
        let tp = p(&["trigger"]);
        let none: &[String] = &[];
        if let Some(key) = &t.key {
            if !valid_pinned_key(key) {
                self.error_at_value(
                    &tp.key("key"),
                    format!("pinned key `{key}` must match [A-Za-z0-9_-]{{8,128}}"),
                );
            }
        }
        let basic_auth = t.auth.as_ref().and_then(|a| {
            let ap = tp.key("auth").key("basic");
            let username = self.text(&ap.key("username"), &a.basic.username, none);
            let password = self.text(&ap.key("password"), &a.basic.password, none);
            Some(BasicAuth {
                username: username?,
                password: password?,
            })
        });
        let parse = self.parse_spec(&tp.key("parse"), &t.parse);
        let mode_known = !self.src.skipped.mode;
        let response = match (&t.response, t.mode) {
            (Some(r), Mode::Sync) if !mode_known => {
                Some(self.response(&tp.key("response"), r, none))
            }
            (Some(_), Mode::Sync) => {
                self.error_at_key(&tp.key("response"), "`trigger.response` is for async workflows; a sync workflow answers with a `response` node".into());
                None
            }
            (Some(r), Mode::Async) => Some(self.response(&tp.key("response"), r, none)),
            (None, _) => None,
        };
        let timeout_response = match (&t.timeout_response, t.mode) {
            (Some(r), Mode::Async) if !mode_known => {
                Some(self.response(&tp.key("timeout_response"), r, none))
            }
            (Some(_), Mode::Async) => {
                self.error_at_key(
                    &tp.key("timeout_response"),
                    "`trigger.timeout_response` is for sync workflows".into(),
                );
                None
            }
            (Some(r), Mode::Sync) => Some(self.response(&tp.key("timeout_response"), r, none)),
            (None, _) => None,
        };
        let verify = t.verify.as_ref().map(|v| self.verify(&tp.key("verify"), v));
        let idempotency = t.idempotency.as_ref().and_then(|i| {
            let ip = tp.key("idempotency");
            let key = self.text(&ip.key("key"), &i.key, none)?;
            let ttl = i.ttl.map(|d| d.0).unwrap_or(DEFAULT_IDEMPOTENCY_TTL);
            if ttl.is_zero() {
                self.error_at_value(&ip.key("ttl"), "ttl must be longer than zero".into());
            }
            Some(Idempotency { key, ttl })
        });
        let max_body = t.max_body.map(|s| s.0).unwrap_or(DEFAULT_MAX_BODY);
        if max_body == 0 {
            self.error_at_value(
                &tp.key("max_body"),
                "max_body must be at least 1 byte".into(),
            );
        }
        let secret_headers: Vec<String> = t
            .verify
            .as_ref()
            .map(VerifyDef::signature_headers)
            .unwrap_or_default();
        let parses_secret_header = parse.headers.iter().any(|e| {
            crate::request::is_secret_header(&e.key)
                || secret_headers
                    .iter()
                    .any(|h| h.eq_ignore_ascii_case(&e.key))
        });
        Trigger {
            secret_headers,
            parses_secret_header,
            pinned_key: t.key.clone(),
            basic_auth,
            max_body,
            parse,
            response: response.map(Box::new),
            timeout_response: timeout_response.map(Box::new),
            verify: verify.map(Box::new),
            idempotency: idempotency.map(Box::new),
        }
    }

    fn verify(&mut self, path: &P, v: &VerifyDef) -> Verify {
        let none: &[String] = &[];
        let mut fields: Vec<(&'static str, Option<&String>)> = Vec::new();
        match v {
            VerifyDef::Hmac(h) => {
                fields.push(("secret", Some(&h.secret)));
                fields.push(("payload", h.payload.as_ref()));
            }
            VerifyDef::StandardWebhooks(s) | VerifyDef::Stripe(s) | VerifyDef::Slack(s) => {
                fields.push(("secret", Some(&s.secret)))
            }
            VerifyDef::Github(s) | VerifyDef::Shopify(s) => {
                fields.push(("secret", Some(&s.secret)))
            }
            VerifyDef::Feishu(f) => {
                fields.push(("token", Some(&f.token)));
                fields.push(("encrypt_key", f.encrypt_key.as_ref()));
            }
            VerifyDef::WechatpayV3(w) => {
                fields.push(("public_key", Some(&w.public_key)));
                fields.push(("api_v3_key", Some(&w.api_v3_key)));
                fields.push(("public_key_id", w.public_key_id.as_ref()));
            }
            VerifyDef::Alipay(a) => fields.push(("public_key", Some(&a.public_key))),
        }
        if let VerifyDef::Hmac(h) = v {
            self.unsigned_timestamp(path, h);
        }
        let mut texts = BTreeMap::new();
        for (name, value) in fields {
            if let Some(value) = value {
                if let Some(t) = self.text(&path.key(name), value, none) {
                    texts.insert(name, t);
                }
            }
        }
        Verify {
            preset: v.clone(),
            texts,
        }
    }

    /// Warns when `timestamp_header` is checked for freshness but `payload`
    /// does not sign it: a replay with a fresh timestamp would pass.
    fn unsigned_timestamp(&mut self, path: &P, h: &HmacVerifyDef) {
        let Some(header) = &h.timestamp_header else {
            return;
        };
        let lower = header.to_ascii_lowercase();
        // The payload reads the header by name: `headers['x-ts']`,
        // `headers.get("x-ts")` or `headers.x_ts`; names are lower-case in
        // `trigger.headers`, so `headers['X-Ts']` reads nothing.
        let forms = [
            format!("'{lower}'"),
            format!("\"{lower}\""),
            format!("headers.{lower}"),
        ];
        let reads = |p: &str| forms.iter().any(|form| p.contains(form.as_str()));
        let payload = h.payload.as_deref().unwrap_or_default();
        let signed = reads(payload);
        if !signed && reads(&payload.to_ascii_lowercase()) {
            self.warning_at_value(
                &path.key("payload"),
                format!(
                    "`payload` reads the header {header} with upper-case letters, but header names \
                     are lower-case in `trigger.headers`, so it renders nothing and every request \
                     is refused; write `trigger.headers['{lower}']`"
                ),
            );
            return;
        }
        if !signed {
            self.warning_at_value(
                &path.key("timestamp_header"),
                format!(
                    "`timestamp_header` {header} is checked for freshness but `payload` does not sign it, \
                     so a replay with a fresh timestamp would pass; \
                     sign it, e.g. `payload: \"{{{{ trigger.headers['{lower}'] }}}}.{{{{ trigger.raw_body }}}}\"`"
                ),
            );
        }
    }

    fn parse_spec(&mut self, path: &P, def: &ParseDef) -> ParseSpec {
        let mut aliases: BTreeMap<String, P> = BTreeMap::new();
        let mut spec = ParseSpec::default();
        for (part, entries) in [
            ("headers", &def.headers),
            ("query", &def.query),
            ("body", &def.body),
        ] {
            for (i, e) in entries.iter().enumerate() {
                let ep = path.key(part).index(i);
                let Some(entry) = self.parse_entry(&ep, part, e) else {
                    continue;
                };
                if let Some(first) = aliases.get(&entry.alias) {
                    let first_pos = self.src.tree.locate(&first.segs());
                    self.error_at_value(
                        &ep,
                        format!("alias `{}` is already used on line {}; each parse entry needs its own alias", entry.alias, first_pos.line),
                    );
                    continue;
                }
                aliases.insert(entry.alias.clone(), ep);
                match part {
                    "headers" => spec.headers.push(entry),
                    "query" => spec.query.push(entry),
                    _ => spec.body.push(entry),
                }
            }
        }
        spec
    }

    fn parse_entry(&mut self, path: &P, part: &str, e: &ParseEntryDef) -> Option<ParseEntry> {
        let is_jsonpath = e.key.starts_with('$');
        let key_path = if part == "headers" {
            if is_jsonpath || e.key.is_empty() {
                self.error_at_value(
                    &path.key("key"),
                    format!("`{}` is not a header name", e.key),
                );
                return None;
            }
            KeyPath::Dotted(vec![Step::Key(e.key.to_ascii_lowercase())])
        } else {
            match KeyPath::parse(&e.key) {
                Ok(k) => k,
                Err(message) => {
                    self.error_at_value(&path.key("key"), message);
                    return None;
                }
            }
        };
        let alias = match &e.alias {
            Some(a) => {
                if !valid_alias(a) {
                    self.error_at_value(
                        &path.key("alias"),
                        format!("alias `{a}` must be a variable name ([A-Za-z_][A-Za-z0-9_]*)"),
                    );
                    return None;
                }
                a.clone()
            }
            None if is_jsonpath => {
                self.error_at_value(
                    &path.key("key"),
                    format!("a JSONPath key (`{}`) needs an explicit `alias`", e.key),
                );
                return None;
            }
            None => default_alias(&e.key),
        };
        if e.required && e.default.is_some() {
            self.error_at_key(
                &path.key("default"),
                "a `required` entry cannot have a `default`".into(),
            );
        }
        Some(ParseEntry {
            key: e.key.clone(),
            path: key_path,
            alias,
            value_type: e.value_type,
            required: e.required,
            default: e.default.clone(),
        })
    }
}

/// The variables the parse entries define: their aliases, written or default.
pub(super) fn aliases(parse: &ParseDef) -> BTreeSet<String> {
    parse
        .headers
        .iter()
        .chain(&parse.query)
        .chain(&parse.body)
        .map(|e| e.alias.clone().unwrap_or_else(|| default_alias(&e.key)))
        .collect()
}

/// True when a pinned key matches `[A-Za-z0-9_-]{8,128}`.
pub fn valid_pinned_key(key: &str) -> bool {
    (8..=128).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn valid_alias(a: &str) -> bool {
    let mut chars = a.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The default alias of a parse key: lower-cased, `[^a-z0-9_]` → `_`.
pub fn default_alias(key: &str) -> String {
    key.to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
