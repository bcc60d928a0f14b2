//! `hookflow sample`: NocoBase's "parse" button on the command line. A sample
//! request in (files, a pasted URL, or the request of a recorded run), the
//! `parse:` block that extracts every leaf of it out.

use super::executions::{record_of, Reach};
use anyhow::{bail, Context};
use hookflow_model::request::TriggerRequest;
use hookflow_parser::{body_kind, BodyKind, SampleRequest, Sampled};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Output formats of `sample`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SampleFormat {
    /// The `parse:` block, ready to paste under `trigger:`.
    Yaml,
    /// The entries as a JSON list of `{"part", "key", "alias", "type"}`.
    Json,
}

/// Flags of `sample`.
#[derive(Debug, clap::Args)]
pub struct SampleArgs {
    /// The sample body (a file; `-` reads standard input).
    #[arg(long)]
    body: Option<PathBuf>,
    /// A sample query string, e.g. `a=1&b[0]=x`.
    #[arg(long, conflicts_with = "url")]
    query: Option<String>,
    /// A sample URL; its query string is sampled.
    #[arg(long)]
    url: Option<String>,
    /// A sample header, `Name: value` (repeatable); each becomes an entry.
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// How to read the body (default: the Content-Type header given, else
    /// JSON when the body is JSON, a form when it looks like `a=1&b=2`, text otherwise).
    #[arg(long)]
    content_type: Option<String>,
    /// The request of a recorded run instead of files: read from a running
    /// server's admin API when one answers, else from the store.
    #[arg(long, conflicts_with_all = ["body", "query", "url", "headers", "content_type"])]
    execution: Option<String>,
    /// `yaml` (default) or `json`.
    #[arg(long, value_enum, default_value = "yaml")]
    format: SampleFormat,
    #[command(flatten)]
    reach: Reach,
}

/// Prints the parse entries of the sample.
pub fn run(args: SampleArgs) -> anyhow::Result<ExitCode> {
    let sampled = match &args.execution {
        Some(id) => {
            let record = record_of(&args.reach, id)?;
            let trigger = record
                .get("trigger")
                .filter(|t| t.is_object())
                .with_context(|| format!("execution {id} has no recorded request"))?;
            hookflow_parser::sample::sample_recorded(&TriggerRequest::from_json(trigger))
        }
        None => sample_files(&args)?,
    };
    match args.format {
        SampleFormat::Yaml => print!("{}", sampled.to_yaml()?),
        SampleFormat::Json => println!("{}", serde_json::to_string_pretty(&as_list(&sampled))?),
    }
    Ok(ExitCode::SUCCESS)
}

/// The sample given by files and flags.
fn sample_files(args: &SampleArgs) -> anyhow::Result<Sampled> {
    let body = match &args.body {
        Some(path) => read_body(path)?,
        None => Vec::new(),
    };
    let headers = parse_headers(&args.headers)?;
    let query = match (&args.query, &args.url) {
        (Some(q), _) => q.trim_start_matches('?').to_string(),
        (None, Some(url)) => query_of_url(url),
        (None, None) => String::new(),
    };
    let given_type = args.content_type.clone().or_else(|| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.clone())
    });
    let kind = body_kind_of(given_type.as_deref(), &body)?;
    hookflow_parser::sample(&SampleRequest {
        headers: &headers,
        query: &query,
        body_kind: kind,
        body: &body,
    })
    .context("the sample body cannot be read")
}

/// A body file, or standard input for `-`.
pub fn read_body(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
            .context("cannot read standard input")?;
        Ok(buf)
    } else {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    }
}

/// `Name: value` flags as pairs.
pub fn parse_headers(flags: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    flags
        .iter()
        .map(|h| {
            let (name, value) = h
                .split_once(':')
                .with_context(|| format!("header `{h}` must look like `Name: value`"))?;
            let name = name.trim();
            if name.is_empty() {
                bail!("header `{h}` has no name");
            }
            Ok((name.to_string(), value.trim().to_string()))
        })
        .collect()
}

/// The query string of a pasted URL (or of a bare `?a=1` / `a=1`).
fn query_of_url(url: &str) -> String {
    let rest = match url.split_once('?') {
        Some((_, q)) => q,
        None if url.contains('=') && !url.contains('/') => url,
        None => "",
    };
    rest.split('#').next().unwrap_or_default().to_string()
}

/// How the body is read: the content type given, else a guess from the bytes.
pub fn body_kind_of(content_type: Option<&str>, body: &[u8]) -> anyhow::Result<Option<BodyKind>> {
    if body.is_empty() {
        return Ok(None);
    }
    if let Some(ct) = content_type {
        return match body_kind(Some(ct)) {
            Some(kind) => Ok(Some(kind)),
            None => bail!(
                "content type `{ct}` is not one hookflow reads; use application/json, \
                 application/x-www-form-urlencoded, text/* or application/xml"
            ),
        };
    }
    let kind = guess_kind(body);
    // What looks like JSON and is not is a mistake to show, not text to
    // sample (a trailing comma, a comment): nothing would be extracted.
    let text = String::from_utf8_lossy(body);
    if kind != BodyKind::Json && text.trim_start().starts_with(['{', '[']) {
        if let Err(e) = hookflow_parser::check_json(body) {
            bail!(
                "the body looks like JSON but is not: {e}; fix it, or give \
                 `--content-type text/plain` to sample it as text"
            );
        }
    }
    Ok(Some(kind))
}

/// JSON when it parses, a form when it looks like `a=1&b=2`, text otherwise.
pub fn guess_kind(body: &[u8]) -> BodyKind {
    if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
        return BodyKind::Json;
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let form_like = !text.is_empty()
        && !text.contains(|c: char| c.is_whitespace() || "<>{}\"".contains(c))
        && text
            .split('&')
            .all(|pair| pair.split_once('=').is_some_and(|(k, _)| !k.is_empty()));
    if form_like {
        BodyKind::Form
    } else {
        BodyKind::Text
    }
}

/// The content type a body kind is sent with.
pub fn content_type_of(kind: BodyKind) -> &'static str {
    match kind {
        BodyKind::Json => "application/json",
        BodyKind::Form => "application/x-www-form-urlencoded",
        BodyKind::Text => "text/plain",
    }
}

/// `--format json`: one list, each entry with its part.
fn as_list(sampled: &Sampled) -> Vec<serde_json::Value> {
    let mut list = Vec::new();
    for (part, entries) in [
        ("headers", &sampled.headers),
        ("query", &sampled.query),
        ("body", &sampled.body),
    ] {
        for e in entries {
            let mut v = serde_json::json!({"part": part, "key": e.key, "alias": e.alias});
            if let Some(t) = e.value_type {
                v["type"] = t.into();
            }
            list.push(v);
        }
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_their_query() {
        assert_eq!(
            query_of_url("http://localhost:13000/api/webhook:trigger/k?query=1&a[b]=2#frag"),
            "query=1&a[b]=2"
        );
        assert_eq!(query_of_url("a=1&b=2"), "a=1&b=2");
        assert_eq!(query_of_url("https://example.com/path"), "");
    }

    #[test]
    fn guesses_the_body_kind() {
        assert_eq!(guess_kind(br#"{"a": 1}"#), BodyKind::Json);
        assert_eq!(guess_kind(b"a=1&b=%E4%B8%AD"), BodyKind::Form);
        let broken = body_kind_of(None, b"{\n  \"a\": 1,\n}").expect_err("not JSON");
        assert!(
            broken
                .to_string()
                .contains("looks like JSON but is not: malformed JSON body at line 3"),
            "{broken}"
        );
        assert_eq!(
            body_kind_of(Some("text/plain"), b"{ x").expect("as text"),
            Some(BodyKind::Text)
        );
        assert_eq!(guess_kind(b"hello there"), BodyKind::Text);
        assert_eq!(guess_kind(b"<xml>a=1</xml>"), BodyKind::Text);
    }
}
