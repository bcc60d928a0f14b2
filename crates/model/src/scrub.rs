//! Scrubbing secrets out of what leaves the process (SPEC §3 "Secrets stay
//! secret"): log lines, stored records, answers of the admin API.
//!
//! A [`Scrubber`] replaces with `[redacted]` every value of a declared secret
//! (as written, and in the escaped forms logs, JSON and URLs give it) and the
//! user info of URLs (`https://user:pass@host` → `https://[redacted]@host`).
//! It is applied where text leaves, not where it is made: an error message
//! may carry a URL with a token in its query whatever the code that wrote it
//! chose to print. A [`SecretSet`] is the current scrubber, shared by the log
//! writer, the executor and the admin API, and updated when workflows load.
//!
//! Values shorter than [`MIN_SECRET_LEN`] are not scrubbed: replacing every
//! `1234` or `true` in every record would ruin them and would itself tell
//! where the secret occurs.
//!
//! [`Escaped`] is the other half of keeping logs honest: text an attacker
//! sent is written with its control characters escaped, so it cannot forge
//! log lines.

use crate::published::Published;
use crate::request::REDACTED;
use aho_corasick::{AhoCorasick, MatchKind};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS, NON_ALPHANUMERIC};
use serde_json::Value as Json;
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex};

/// Secret values shorter than this many bytes are not scrubbed.
pub const MIN_SECRET_LEN: usize = 6;

/// What `encodeURIComponent` escapes: all but `A-Z a-z 0-9 - _ . ! ~ * ' ( )`.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');
/// What a URL parser escapes in a query: controls, space, `"`, `#`, `<`, `>`, `'`.
const QUERY: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'\'');
/// What form encoding escapes: all but `A-Z a-z 0-9 * - . _` (space becomes `+`).
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');

/// Replaces secret values and URL user info with `[redacted]`.
#[derive(Default)]
pub struct Scrubber {
    /// Every form of every value, longest match first; `None` without values.
    matcher: Option<AhoCorasick>,
    /// How many values (not forms) it scrubs.
    values: usize,
}

impl fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the values.
        f.debug_struct("Scrubber")
            .field("values", &self.values)
            .finish()
    }
}

/// The forms a value takes in text that leaves the process: as written,
/// escaped in JSON, escaped by `{:?}`, and percent-encoded the ways URLs and
/// forms encode it.
fn forms(value: &str) -> Vec<String> {
    let mut out = vec![value.to_string()];
    if let Ok(json) = serde_json::to_string(value) {
        out.push(json[1..json.len() - 1].to_string());
    }
    let debug = format!("{value:?}");
    out.push(debug[1..debug.len() - 1].to_string());
    for set in [NON_ALPHANUMERIC, COMPONENT, QUERY] {
        out.push(utf8_percent_encode(value, set).to_string());
    }
    out.push(
        utf8_percent_encode(value, FORM)
            .to_string()
            .replace("%20", "+"),
    );
    out
}

impl Scrubber {
    /// A scrubber of these values (those shorter than [`MIN_SECRET_LEN`] are left out).
    pub fn new<S: AsRef<str>>(values: impl IntoIterator<Item = S>) -> Scrubber {
        let values: BTreeSet<String> = values
            .into_iter()
            .map(|v| v.as_ref().to_string())
            .filter(|v| v.len() >= MIN_SECRET_LEN)
            .collect();
        let patterns: BTreeSet<String> = values.iter().flat_map(|v| forms(v)).collect();
        let matcher = match patterns.is_empty() {
            true => None,
            // Building fails only past the crate's size limits (millions of
            // patterns); the scrubber then falls back to user info only,
            // which the caller learns from `values() == 0`.
            false => AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&patterns)
                .ok(),
        };
        let values = if matcher.is_some() { values.len() } else { 0 };
        Scrubber { matcher, values }
    }

    /// How many secret values it scrubs.
    pub fn values(&self) -> usize {
        self.values
    }

    /// `text` with secret values and URL user info replaced; borrowed when
    /// there was nothing to replace.
    pub fn str<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let secrets = match &self.matcher {
            Some(m) if m.is_match(text) => {
                let mut out = String::with_capacity(text.len());
                m.replace_all_with(text, &mut out, |_, _, out| {
                    out.push_str(REDACTED);
                    true
                });
                Cow::Owned(out)
            }
            _ => Cow::Borrowed(text),
        };
        match redact_userinfo(&secrets) {
            Cow::Borrowed(_) => secrets,
            Cow::Owned(s) => Cow::Owned(s),
        }
    }

    /// True when [`Scrubber::str`] would change `text`.
    pub fn matches(&self, text: &str) -> bool {
        self.matcher.as_ref().is_some_and(|m| m.is_match(text))
            || matches!(redact_userinfo(text), Cow::Owned(_))
    }

    /// Scrubs every string (and object key) of `value` in place.
    pub fn json(&self, value: &mut Json) {
        match value {
            Json::String(s) => {
                if let Cow::Owned(clean) = self.str(s) {
                    *s = clean;
                }
            }
            Json::Array(items) => items.iter_mut().for_each(|v| self.json(v)),
            Json::Object(map) => {
                if map.keys().any(|k| self.matches(k)) {
                    let old = std::mem::take(map);
                    for (k, v) in old {
                        map.insert(self.str(&k).into_owned(), v);
                    }
                }
                map.values_mut().for_each(|v| self.json(v));
            }
            // A secret made of digits may come back as a number (an
            // upstream echoing a PIN or an account number): it goes whole.
            Json::Number(n) => {
                if self.number_matches(n) {
                    *value = Json::String(REDACTED.to_string());
                }
            }
            Json::Null | Json::Bool(_) => {}
        }
    }

    /// True when a number, as JSON writes it, holds a secret value.
    fn number_matches(&self, n: &serde_json::Number) -> bool {
        self.matcher
            .as_ref()
            .is_some_and(|m| m.is_match(n.to_string().as_str()))
    }

    /// True when [`Scrubber::json`] would change `value` (a walk without copies).
    pub fn json_matches(&self, value: &Json) -> bool {
        match value {
            Json::String(s) => self.matches(s),
            Json::Array(items) => items.iter().any(|v| self.json_matches(v)),
            Json::Object(map) => map
                .iter()
                .any(|(k, v)| self.matches(k) || self.json_matches(v)),
            Json::Number(n) => self.number_matches(n),
            Json::Null | Json::Bool(_) => false,
        }
    }
}

/// Characters that end a URL's authority in running text.
fn ends_authority(c: char) -> bool {
    matches!(
        c,
        '/' | '?' | '#' | '"' | '\'' | '<' | '>' | '\\' | '`' | '|'
    ) || c.is_whitespace()
}

/// Replaces the user info of every `scheme://user:pass@host` in `text`.
fn redact_userinfo(text: &str) -> Cow<'_, str> {
    // Most strings have no colon at all: one memchr pass, not a substring search.
    if !text.contains(':') {
        return Cow::Borrowed(text);
    }
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut from = 0;
    while let Some(i) = text[from..].find("://") {
        let scheme_end = from + i;
        let start = scheme_end + 3;
        let authority_len = text[start..]
            .find(ends_authority)
            .unwrap_or(text.len() - start);
        from = start + authority_len;
        let has_scheme = text[..scheme_end]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        let Some(at) = text[start..from].rfind('@') else {
            continue;
        };
        if !has_scheme || at == 0 || &text[start..start + at] == REDACTED {
            continue;
        }
        let o = out.get_or_insert_with(|| String::with_capacity(text.len()));
        o.push_str(&text[copied..start]);
        o.push_str(REDACTED);
        copied = start + at;
    }
    match out {
        Some(mut o) => {
            o.push_str(&text[copied..]);
            Cow::Owned(o)
        }
        None => Cow::Borrowed(text),
    }
}

/// The current scrubber, shared (cheap to clone). Values are only ever
/// added: the environment does not change while the process runs, and a
/// run of an older workflow version may still use a secret a newer version
/// no longer declares.
#[derive(Clone, Default)]
pub struct SecretSet {
    current: Arc<Published<Scrubber>>,
    values: Arc<Mutex<BTreeSet<String>>>,
}

impl fmt::Debug for SecretSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretSet")
            .field("values", &self.current().values())
            .finish()
    }
}

impl SecretSet {
    /// The scrubber to use now.
    pub fn current(&self) -> Arc<Scrubber> {
        self.current.shared()
    }

    /// Calls `f` with the scrubber to use now, as this thread last read it
    /// ([`Published::local`]): read on every job a run keeps.
    pub fn with_current<R>(&self, f: impl FnOnce(&Scrubber) -> R) -> R {
        f(&self.current.local())
    }

    /// Adds values (empty and short ones are ignored); the scrubber is rebuilt
    /// only when one is new.
    pub fn add<S: AsRef<str>>(&self, values: impl IntoIterator<Item = S>) {
        let mut known = match self.values.lock() {
            Ok(k) => k,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut added = false;
        for v in values {
            let v = v.as_ref();
            if v.len() >= MIN_SECRET_LEN && !known.contains(v) {
                known.insert(v.to_string());
                added = true;
            }
        }
        if added {
            self.current.set(Arc::new(Scrubber::new(known.iter())));
        }
    }
}

/// Text an attacker may have sent, for a log line: control characters
/// (newlines included) are escaped as Rust does (`\n`, `\u{1b}`), everything
/// else is written as it is.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        for c in self.0.chars() {
            if c.is_control() {
                for e in c.escape_default() {
                    f.write_char(e)?;
                }
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_values_are_replaced_in_every_form() {
        let s = Scrubber::new(["SUPERSECRET123", "p@ss w/rd\"x", "short"]);
        assert_eq!(s.values(), 2, "values under the minimum are left out");
        for (text, want) in [
            (
                "GET http://h/x?access_token=SUPERSECRET123 answered 500",
                "GET http://h/x?access_token=[redacted] answered 500",
            ),
            ("json: \"p@ss w/rd\\\"x\"", "json: \"[redacted]\""),
            ("url: q=p%40ss%20w%2Frd%22x", "url: q=[redacted]"),
            ("form: q=p%40ss+w%2Frd%22x", "form: q=[redacted]"),
            ("short stays short", "short stays short"),
            ("nothing here", "nothing here"),
        ] {
            assert_eq!(s.str(text), want, "{text}");
        }
        assert!(matches!(s.str("nothing here"), Cow::Borrowed(_)));
    }

    /// A thread reads the scrubber it cached until a value is added, then
    /// the new one; two sets on one thread each scrub their own values.
    #[test]
    fn the_cached_scrubber_follows_every_added_value() {
        let first = SecretSet::default();
        let second = SecretSet::default();
        first.add(["FIRST-SECRET-1"]);
        second.add(["SECOND-SECRET-2"]);
        let shown = |set: &SecretSet| {
            set.with_current(|s| {
                s.str("FIRST-SECRET-1 SECOND-SECRET-2 THIRD-SECRET-3")
                    .into_owned()
            })
        };
        assert_eq!(shown(&first), "[redacted] SECOND-SECRET-2 THIRD-SECRET-3");
        assert_eq!(shown(&second), "FIRST-SECRET-1 [redacted] THIRD-SECRET-3");
        // Read again (from the cache), then a value added: the next read sees it.
        assert_eq!(shown(&first), "[redacted] SECOND-SECRET-2 THIRD-SECRET-3");
        first.add(["THIRD-SECRET-3"]);
        assert_eq!(shown(&first), "[redacted] SECOND-SECRET-2 [redacted]");
        assert_eq!(shown(&second), "FIRST-SECRET-1 [redacted] THIRD-SECRET-3");
        // A clone is the same set.
        let clone = first.clone();
        clone.add(["FOURTH-SECRET-4"]);
        assert_eq!(
            first.with_current(|s| s.str("FOURTH-SECRET-4").into_owned()),
            "[redacted]"
        );
    }

    #[test]
    fn a_secret_of_digits_is_scrubbed_from_json_numbers() {
        let s = Scrubber::new(["40213377"]);
        let mut v = json!({"pin": 40213377, "other": 40213378, "list": [1, 140213377], "f": 0.5});
        assert!(s.json_matches(&v));
        s.json(&mut v);
        assert_eq!(
            v,
            json!({"pin": "[redacted]", "other": 40213378, "list": [1, "[redacted]"], "f": 0.5})
        );
        assert!(!s.json_matches(&v));
        assert!(!Scrubber::default().json_matches(&json!(40213377)));
    }

    #[test]
    fn url_user_info_is_replaced() {
        let s = Scrubber::default();
        for (text, want) in [
            (
                "POST https://user:pass@host/x failed",
                "POST https://[redacted]@host/x failed",
            ),
            (
                "postgres://u:p@ss@db:5432/x and ftp://anon@f",
                "postgres://[redacted]@db:5432/x and ftp://[redacted]@f",
            ),
            (
                "https://host/path?mail=a@b.c",
                "https://host/path?mail=a@b.c",
            ),
            ("\"https://a:b@h\"", "\"https://[redacted]@h\""),
            ("://x@y", "://x@y"),
            ("https://@host", "https://@host"),
            ("https://[redacted]@host", "https://[redacted]@host"),
        ] {
            assert_eq!(s.str(text), want, "{text}");
        }
    }

    #[test]
    fn json_values_and_keys_are_scrubbed() {
        let s = Scrubber::new(["token-value-1"]);
        let mut v =
            json!({"a": ["x token-value-1 y", 1, null], "token-value-1": {"u": "https://a:b@h/"}});
        assert!(s.json_matches(&v));
        s.json(&mut v);
        assert_eq!(
            v,
            json!({"a": ["x [redacted] y", 1, null], "[redacted]": {"u": "https://[redacted]@h/"}})
        );
        assert!(!s.json_matches(&v));
    }

    #[test]
    fn a_secret_set_only_grows() {
        let set = SecretSet::default();
        assert_eq!(set.current().values(), 0);
        set.add(["first-secret", ""]);
        set.add(["second-secret"]);
        let s = set.current();
        assert_eq!(s.values(), 2);
        assert_eq!(s.str("first-secret second-secret"), "[redacted] [redacted]");
        assert!(!format!("{set:?}").contains("first"));
    }

    #[test]
    fn escaped_text_cannot_break_a_line() {
        assert_eq!(
            Escaped("a\nb\r\u{1b}[31mc\t\"é").to_string(),
            "a\\nb\\r\\u{1b}[31mc\\t\"é"
        );
    }
}
