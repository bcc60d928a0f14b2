//! `hookflow run WORKFLOW --body FILE`: one run without a server.

use super::offline::{load_workflow, print_run, run_once, OfflineRequest, Outcome};
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;

/// Flags of `run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// A workflow id in `--workflows`, or a path to a workflow file.
    workflow: String,
    /// The request body (a file; `-` reads standard input).
    #[arg(long)]
    body: Option<PathBuf>,
    /// A request header, `Name: value` (repeatable). Content-Type defaults to application/json when a body is given.
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// The query string, e.g. `a=1&b=2`.
    #[arg(long, default_value = "")]
    query: String,
    /// The method.
    #[arg(long, default_value = "POST")]
    method: String,
    /// The workflows folder.
    #[arg(long, default_value = "./workflows", env = "HOOKFLOW_WORKFLOWS")]
    workflows: PathBuf,
}

/// Runs the workflow once; exit 0 when the run resolved.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let workflow = load_workflow(&args.workflow, &args.workflows)?;
    let body = match &args.body {
        Some(p) if p.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
                .context("cannot read standard input")?;
            buf
        }
        Some(p) => std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?,
        None => Vec::new(),
    };
    let mut headers = super::sample::parse_headers(&args.headers)?;
    if !body.is_empty()
        && !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
    {
        headers.push(("content-type".into(), "application/json".into()));
    }
    let request = OfflineRequest {
        method: args.method.to_ascii_uppercase(),
        headers,
        query: args.query.clone(),
        body,
    };
    match run_once(workflow, &request, None)? {
        Outcome::Rejected(status, body) => {
            println!("response {status} (no run)");
            println!("  {body}");
            Ok(ExitCode::from(1))
        }
        Outcome::Ran(outcome) => {
            print_run(&outcome);
            Ok(
                if outcome.record.status == hookflow_store::RunStatus::Resolved {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                },
            )
        }
    }
}
