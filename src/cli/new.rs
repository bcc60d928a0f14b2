//! `hookflow new ID`: a workflow file and its test file that pass `validate`
//! and `test` as written, with parse entries from a sample when given.

use super::sample::{body_kind_of, content_type_of, read_body};
use anyhow::{bail, Context};
use hookflow_model::testfile_out::{CaseOut, ExpectOut, RequestOut, TestFileOut};
use hookflow_model::yaml::write::{to_yaml, FlowMap, FlowSeq};
use hookflow_parser::sample::ParseBlock;
use hookflow_parser::{BodyKind, SampleRequest, Sampled};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Modes of a new workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NewMode {
    /// Answered by a `response` node once the run gets there.
    Sync,
    /// Answered at once; the run goes on in the background.
    Async,
}

/// Signature presets `new` can write a `verify` block for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum Preset {
    /// Generic HMAC of the body in a header.
    Hmac,
    /// Standard Webhooks.
    StandardWebhooks,
    /// GitHub.
    Github,
    /// Stripe.
    Stripe,
    /// Slack.
    Slack,
    /// Shopify.
    Shopify,
    /// Feishu / Lark.
    Feishu,
    /// WeChat Pay API v3.
    WechatpayV3,
    /// Alipay.
    Alipay,
}

/// Flags of `new`.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The workflow id (the file name): `[a-z0-9][a-z0-9_-]*`.
    id: String,
    /// `async` (default: answered at once) or `sync` (answered by a `response` node).
    #[arg(long, value_enum, default_value = "async")]
    mode: NewMode,
    /// A sample request body (a file; `-` reads standard input): its leaves become parse entries.
    #[arg(long)]
    sample: Option<PathBuf>,
    /// How to read the sample (default: JSON when it is JSON, a form when it looks like `a=1&b=2`, text otherwise).
    #[arg(long)]
    content_type: Option<String>,
    /// Add a signature check with this preset, its secret declared.
    #[arg(long, value_enum)]
    verify: Option<Preset>,
    /// The workflows folder.
    #[arg(long, default_value = "./workflows", env = "HOOKFLOW_WORKFLOWS")]
    workflows: PathBuf,
}

/// Writes the two files and prints what to do next.
pub fn run(args: NewArgs) -> anyhow::Result<ExitCode> {
    if !hookflow_model::load::valid_workflow_id(&args.id) {
        bail!(
            "`{}` cannot be a workflow id: use lower-case letters, digits, `-` and `_`, \
             starting with a letter or digit (e.g. `order-paid`)",
            args.id
        );
    }
    let workflow_path = args.workflows.join(format!("{}.yaml", args.id));
    let test_path = args.workflows.join(format!("{}.test.yaml", args.id));
    for path in [
        &workflow_path,
        &args.workflows.join(format!("{}.yml", args.id)),
        &test_path,
    ] {
        if path.exists() {
            bail!(
                "{} already exists; `hookflow new` never overwrites a file (choose another id, or edit that file)",
                path.display()
            );
        }
    }
    let sample = match &args.sample {
        Some(path) => Some(Sample::read(path, args.content_type.as_deref())?),
        None => None,
    };
    let secrets = args
        .verify
        .map(|p| preset_secrets(p, &args.id))
        .unwrap_or_default();
    let workflow = workflow_yaml(&args, sample.as_ref(), &secrets)?;
    let tests = test_yaml(&args, sample.as_ref(), &secrets)?;
    std::fs::create_dir_all(&args.workflows)
        .with_context(|| format!("cannot create {}", args.workflows.display()))?;
    write_new(&workflow_path, &workflow)?;
    if let Err(e) = write_new(&test_path, &tests) {
        // Both or neither: a lone workflow file would make the next `new` refuse.
        let _ = std::fs::remove_file(&workflow_path);
        return Err(e);
    }
    println!("wrote {}", workflow_path.display());
    println!("wrote {}", test_path.display());
    println!();
    println!("next:");
    let mut step = 1;
    let mut next = |text: String| {
        println!("  {step}. {text}");
        step += 1;
    };
    if !secrets.is_empty() {
        let names: Vec<&str> = secrets.iter().map(|(name, _)| name.as_str()).collect();
        next(format!(
            "set the secret{} for the server: export {}",
            if names.len() > 1 { "s" } else { "" },
            names
                .iter()
                .map(|n| format!("{n}=…"))
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    next(format!(
        "edit {} (the parse entries and nodes); check it: hookflow validate {} && hookflow test {}",
        workflow_path.display(),
        workflow_path.display(),
        test_path.display()
    ));
    next(format!(
        "enable it: set `enabled: true` in {}",
        workflow_path.display()
    ));
    next(format!(
        "serve it: hookflow serve --workflows {} (it prints each URL; `hookflow urls` lists them)",
        args.workflows.display()
    ));
    Ok(ExitCode::SUCCESS)
}

/// A file that must not exist yet.
fn write_new(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// A sample body, read and sampled.
struct Sample {
    kind: BodyKind,
    bytes: Vec<u8>,
    sampled: Sampled,
}

impl Sample {
    fn read(path: &Path, content_type: Option<&str>) -> anyhow::Result<Sample> {
        let bytes = read_body(path)?;
        let Some(kind) = body_kind_of(content_type, &bytes)? else {
            bail!("the sample {} is empty", path.display());
        };
        let sampled = hookflow_parser::sample(&SampleRequest {
            headers: &[],
            query: "",
            body_kind: Some(kind),
            body: &bytes,
        })
        .with_context(|| format!("the sample {} cannot be read", path.display()))?;
        Ok(Sample {
            kind,
            bytes,
            sampled,
        })
    }

    /// The first plain body entry with a single value: shown in the answer
    /// of a sync workflow and in the log line of an async one.
    fn shown(&self) -> Option<&hookflow_parser::SampleEntry> {
        self.sampled.body.iter().find(|e| {
            !e.key.starts_with('$')
                && matches!(e.value_type, Some(t) if t != "object" && t != "array")
        })
    }
}

/// The secrets a preset's block reads: `(NAME, field)`.
fn preset_secrets(preset: Preset, id: &str) -> Vec<(String, &'static str)> {
    let base: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    let fields: &[(&str, &str)] = match preset {
        Preset::Feishu => &[("VERIFICATION_TOKEN", "token")],
        Preset::WechatpayV3 => &[
            ("PLATFORM_PUBLIC_KEY", "public_key"),
            ("API_V3_KEY", "api_v3_key"),
        ],
        Preset::Alipay => &[("PUBLIC_KEY", "public_key")],
        _ => &[("SECRET", "secret")],
    };
    fields
        .iter()
        .map(|(suffix, field)| (format!("{base}_{suffix}"), *field))
        .collect()
}

/// A mapping written in the order given.
struct Ordered(Vec<(&'static str, Json)>);

impl Serialize for Ordered {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

fn preset_name(preset: Preset) -> &'static str {
    match preset {
        Preset::Hmac => "hmac",
        Preset::StandardWebhooks => "standard_webhooks",
        Preset::Github => "github",
        Preset::Stripe => "stripe",
        Preset::Slack => "slack",
        Preset::Shopify => "shopify",
        Preset::Feishu => "feishu",
        Preset::WechatpayV3 => "wechatpay_v3",
        Preset::Alipay => "alipay",
    }
}

fn workflow_yaml(
    args: &NewArgs,
    sample: Option<&Sample>,
    secrets: &[(String, &'static str)],
) -> anyhow::Result<String> {
    #[derive(Serialize)]
    struct Trigger<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        mode: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        verify: Option<Ordered>,
        #[serde(skip_serializing_if = "Option::is_none")]
        parse: Option<ParseBlock<'a>>,
    }
    #[derive(Serialize)]
    struct Doc<'a> {
        title: String,
        description: String,
        enabled: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        secrets: Option<FlowSeq<Vec<&'a str>>>,
        trigger: Trigger<'a>,
        nodes: Vec<Ordered>,
    }
    let shown = sample.and_then(Sample::shown);
    let verify = args.verify.map(|preset| {
        let mut fields = vec![("preset", json!(preset_name(preset)))];
        for (name, field) in secrets {
            fields.push((field, json!(format!("{{{{ secrets.{name} }}}}"))));
        }
        if preset == Preset::Hmac {
            fields.push(("header", json!("X-Signature")));
        }
        Ordered(fields)
    });
    let node = match args.mode {
        NewMode::Sync => {
            let mut body = json!({"received": true});
            if let Some(e) = shown {
                body[&e.alias] = json!(format!("{{{{ vars.{} }}}}", e.alias));
            }
            Ordered(vec![
                ("key", json!("answer")),
                ("type", json!("response")),
                ("status", json!(200)),
                ("body", body),
            ])
        }
        NewMode::Async => {
            let message = match shown {
                Some(e) => format!("received {} {{{{ vars.{} }}}}", e.key, e.alias),
                None => "received {{ trigger.method }} {{ trigger.path }}".to_string(),
            };
            Ordered(vec![
                ("key", json!("note")),
                ("type", json!("log")),
                ("message", json!(message)),
            ])
        }
    };
    let doc = Doc {
        title: title_of(&args.id),
        description: format!(
            "Made by `hookflow new {}`. Describe what sends it and what it does.",
            args.id
        ),
        enabled: false,
        secrets: (!secrets.is_empty())
            .then(|| FlowSeq(secrets.iter().map(|(n, _)| n.as_str()).collect())),
        trigger: Trigger {
            kind: "webhook",
            mode: match args.mode {
                NewMode::Sync => "sync",
                NewMode::Async => "async",
            },
            verify,
            parse: sample.and_then(|s| s.sampled.block()),
        },
        nodes: vec![node],
    };
    Ok(format!(
        "# yaml-language-server: $schema=../docs/workflow.schema.json\n{}",
        to_yaml(&doc)?
    ))
}

fn test_yaml(
    args: &NewArgs,
    sample: Option<&Sample>,
    secrets: &[(String, &'static str)],
) -> anyhow::Result<String> {
    let request = match sample {
        Some(s) if s.kind == BodyKind::Json => RequestOut {
            body: Some(serde_json::from_slice(&s.bytes).context("the sample is not JSON")?),
            ..RequestOut::default()
        },
        Some(s) => RequestOut {
            headers: BTreeMap::from([(
                "content-type".to_string(),
                content_type_of(s.kind).to_string(),
            )]),
            raw_body: Some(String::from_utf8_lossy(&s.bytes).into_owned()),
            ..RequestOut::default()
        },
        None => RequestOut {
            body: Some(json!({"hello": "world"})),
            ..RequestOut::default()
        },
    };
    let shown = sample.and_then(Sample::shown);
    let (body, node) = match args.mode {
        NewMode::Sync => {
            let mut body = json!({"received": true});
            if let (Some(e), Some(s)) = (shown, sample) {
                if let Some(value) = value_of(s, &e.key) {
                    body[&e.alias] = value;
                }
            }
            (Some(body), "answer")
        }
        NewMode::Async => (None, "note"),
    };
    let env = (!secrets.is_empty()).then(|| {
        FlowMap(
            secrets
                .iter()
                .map(|(name, _)| (name.clone(), TEST_SECRET.to_string()))
                .collect(),
        )
    });
    let doc = TestFileOut {
        env,
        cases: vec![CaseOut {
            name: match sample {
                Some(_) => "the sample request is answered".into(),
                None => "a request is answered".into(),
            },
            request,
            stubs: BTreeMap::new(),
            expect: ExpectOut {
                status: Some(200),
                body,
                run: "resolved",
                nodes: FlowSeq(vec![node.to_string()]),
            },
        }],
    };
    let path = args.workflows.join(format!("{}.test.yaml", args.id));
    Ok(format!(
        "# yaml-language-server: $schema=../docs/test.schema.json\n\
         # Offline cases for {id}.yaml: `hookflow test {path}`. Signatures are not checked offline.\n{}",
        to_yaml(&doc)?,
        id = args.id,
        path = path.display()
    ))
}

/// The value a sync answer shows for the entry `key` (a dotted path), as the
/// run will see it: form values stay strings.
fn value_of(sample: &Sample, key: &str) -> Option<Json> {
    let decoded = hookflow_parser::body::parse_as(sample.kind, &sample.bytes).ok()?;
    let path = hookflow_model::path::KeyPath::parse(key).ok()?;
    path.lookup(&decoded).filter(|v| !v.is_null())
}

/// A stand-in secret for offline cases (signatures are not checked offline).
const TEST_SECRET: &str = "test-secret-not-used-offline";

/// `order-paid` → `Order paid`.
fn title_of(id: &str) -> String {
    let words = id.replace(['-', '_'], " ");
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
