//! What `hookflow run` and `hookflow test` share: finding a workflow, building
//! a request without a server, running it in memory, printing the trace.

use anyhow::{anyhow, bail, Context};
use hookflow_executor::{Executor, ExecutorConfig, OfflineRun, RunInput, Stubs};
use hookflow_model::request::Verified;
use hookflow_model::{load_source, LoadOptions, SecretPolicy, Workflow};
use hookflow_parser::Request;
use hookflow_service::{webhook_path, Refusal};
use hookflow_store::{MemoryStore, Store};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Loads a workflow by id (in `dir`) or by path; prints its diagnostics to stderr.
pub fn load_workflow(spec: &str, dir: &Path) -> anyhow::Result<Arc<Workflow>> {
    let path = if spec.ends_with(".yaml") || spec.ends_with(".yml") || spec.contains('/') {
        PathBuf::from(spec)
    } else {
        let yaml = dir.join(format!("{spec}.yaml"));
        if yaml.exists() {
            yaml
        } else {
            dir.join(format!("{spec}.yml"))
        }
    };
    if spec.ends_with(".test.yaml") || spec.ends_with(".test.yml") {
        bail!("{spec} is a test file: run its cases with `hookflow test {spec}`");
    }
    let text = std::fs::read_to_string(&path).with_context(|| match path.extension() {
        // Looked for under both names.
        Some(ext) if ext == "yml" && !spec.ends_with(".yml") => format!(
            "cannot read {} or {}",
            dir.join(format!("{spec}.yaml")).display(),
            path.display()
        ),
        _ => format!("cannot read {}", path.display()),
    })?;
    let id = hookflow_model::load::workflow_id_of(&path).unwrap_or_else(|| spec.to_string());
    let file = load_source(
        &id,
        &path,
        &text,
        &LoadOptions::process_env(SecretPolicy::Warn),
    );
    for d in &file.diagnostics {
        eprintln!("{d}");
    }
    file.workflow
        .ok_or_else(|| anyhow!("{} has errors; nothing was run", path.display()))
}

/// A request as the command line or a test file describes it.
pub struct OfflineRequest {
    /// Method (default POST).
    pub method: String,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Raw query string.
    pub query: String,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// What a request led to.
pub enum Outcome {
    /// The request was refused before a run (400, 415…): status and JSON body.
    Rejected(u16, serde_json::Value),
    /// A run happened.
    Ran(Box<OfflineRun>),
}

/// Runs `workflow` once in memory. With `stubs`, request nodes take their
/// answers from them and never touch the network (`hookflow test`); without,
/// they really call their URLs (`hookflow run`).
pub fn run_once(
    workflow: Arc<Workflow>,
    request: &OfflineRequest,
    stubs: Option<Arc<Stubs>>,
) -> anyhow::Result<Outcome> {
    // As the server checks, in its order: the method (405), then the size
    // (413); Basic auth and signatures are not checked offline.
    let refused = |refusal: Refusal| Ok(Outcome::Rejected(refusal.status(), refusal.body()));
    if !request.method.eq_ignore_ascii_case("POST") {
        return refused(Refusal::MethodNotAllowed);
    }
    let limit = workflow.trigger.max_body;
    if u64::try_from(request.body.len()).unwrap_or(u64::MAX) > limit {
        return refused(Refusal::PayloadTooLarge(limit));
    }
    let content_type = request
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.as_str());
    // The URL the server serves it at when its key is pinned; otherwise
    // (a key generated per data folder) its id stands in.
    let path = webhook_path(
        workflow
            .trigger
            .pinned_key
            .as_deref()
            .unwrap_or(&workflow.id),
    );
    let received = hookflow_parser::receive(
        Request {
            method: &request.method,
            path: &path,
            query: &request.query,
            content_type,
            body: &request.body,
        },
        request
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str())),
    );
    // No signature check and no idempotency offline: nothing was verified.
    let input: RunInput = match received
        .and_then(|received| hookflow_parser::build_input(&workflow, received, Verified::default()))
    {
        Ok(input) => input,
        Err(e) => {
            let refusal = Refusal::from(e);
            return Ok(Outcome::Rejected(refusal.status(), refusal.body()));
        }
    };
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let executor = Executor::new(
            store,
            ExecutorConfig {
                stubs,
                ..ExecutorConfig::default()
            },
        )
        .map_err(anyhow::Error::msg)?;
        executor
            .run_offline(workflow, input)
            .await
            .map(|r| Outcome::Ran(Box::new(r)))
            .map_err(anyhow::Error::msg)
    })
}

/// A value on one line, cut to `max` characters.
pub fn short(value: &serde_json::Value, max: usize) -> String {
    let text = match value {
        serde_json::Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    if text.chars().count() > max {
        format!("{}…", text.chars().take(max).collect::<String>())
    } else {
        text
    }
}

/// The answer and one line per node run.
pub fn print_run(run: &OfflineRun) {
    println!("response {}", run.answer.status);
    for (k, v) in &run.answer.headers {
        println!("  {k}: {v}");
    }
    if !run.answer.body.is_empty() {
        println!("  {}", String::from_utf8_lossy(&run.answer.body));
    }
    println!();
    println!("run {} {}", run.record.id, run.record.status.as_str());
    if let Some(error) = &run.record.error {
        println!("  error: {error}");
    }
    println!(
        "  {:<20} {:<12} {:<10} {:>6}  result",
        "node", "type", "status", "ms"
    );
    for job in &run.record.jobs {
        let status = serde_json::to_value(job.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let result = match &job.error {
            Some(e) => format!("error: {e}"),
            None => short(&job.result, 80),
        };
        println!(
            "  {:<20} {:<12} {:<10} {:>6}  {}",
            job.key.as_deref().unwrap_or("-"),
            job.kind,
            status,
            job.duration_ms,
            result
        );
        for t in &job.tries {
            let what = match (t.status, &t.error) {
                (Some(status), _) => status.to_string(),
                (None, Some(error)) => format!("error: {error}"),
                (None, None) => String::new(),
            };
            println!(
                "  {:<20} {:<12} {:<10} {:>6}  {what}",
                "",
                format!("  try {}", t.attempt),
                t.outcome.as_str(),
                t.duration_ms,
            );
        }
    }
}
