//! `hookflow executions list|show|retry|export-test`: the run history from a
//! terminal (SPEC §6). Each command talks to a running server's admin API
//! when one answers and otherwise reads the store in the data folder.
//!
//! `source.rs` decides where the runs come from and does each operation
//! there (`client.rs` is the admin API client); `render.rs` prints runs as
//! tables and a run as a page of text.

mod client;
mod render;
mod source;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use serde_json::{json, Value as Json};
use source::Source;
use std::path::PathBuf;
use std::process::ExitCode;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Readable tables.
    Table,
    /// JSON, as the admin API answers.
    Json,
}

/// Where the runs are: a server's admin API, or the store itself.
#[derive(Debug, clap::Args)]
pub struct Reach {
    /// A running server's base URL (default `http://` + `--listen`). When
    /// none answers at the default, the store is read directly.
    #[arg(long, global = true)]
    server: Option<String>,
    /// The address the server listens on.
    #[arg(
        long,
        global = true,
        default_value = "127.0.0.1:13000",
        env = "HOOKFLOW_LISTEN"
    )]
    listen: String,
    /// The server's admin token.
    #[arg(
        long,
        global = true,
        env = "HOOKFLOW_ADMIN_TOKEN",
        hide_env_values = true
    )]
    admin_token: Option<String>,
    /// The data folder, read when no server answers.
    #[arg(long, global = true, default_value = "./data", env = "HOOKFLOW_DATA")]
    data: PathBuf,
    /// The store URL, read when no server answers (default: the sled store in `--data`).
    #[arg(long, global = true, env = "HOOKFLOW_STORE", hide_env_values = true)]
    store: Option<String>,
}

/// Flags of `executions`.
#[derive(Debug, clap::Args)]
pub struct ExecutionsArgs {
    #[command(subcommand)]
    command: ExecutionsCommand,
    #[command(flatten)]
    reach: Reach,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value = "table")]
    format: Format,
}

/// Filters of a list of runs.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Filter {
    /// Only runs of this workflow.
    #[arg(long)]
    workflow: Option<String>,
    /// Only runs with this status (queued, running, waiting, resolved, failed, aborted).
    #[arg(long)]
    status: Option<String>,
    /// Only runs started at or after this time (RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// Only runs started at or before this time (RFC 3339).
    #[arg(long)]
    until: Option<String>,
}

#[derive(Debug, Subcommand)]
enum ExecutionsCommand {
    /// List runs, newest first.
    List {
        #[command(flatten)]
        filter: Filter,
        /// How many runs at most (1 to 1000).
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show one run: its request, each node (and each try of a request node), its answer.
    Show {
        /// The execution id.
        id: String,
    },
    /// Retry one finished run, or (without ID) every finished run matching the filter.
    Retry {
        /// The execution id (leave it out to retry by filter).
        id: Option<String>,
        /// Run the workflow version loaded now instead of the one the run used.
        #[arg(long)]
        current: bool,
        #[command(flatten)]
        filter: Filter,
    },
    /// Print a test file of one case made from a run (save it as `<workflow>.test.yaml`).
    ExportTest {
        /// The execution id.
        id: String,
    },
}

/// One run's record, from the server that answers or else the store
/// (`hookflow sample --execution`).
pub fn record_of(reach: &Reach, id: &str) -> anyhow::Result<Json> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async { Source::reach(reach).await?.show(id).await })
}

/// Runs an `executions` command.
pub fn run(args: ExecutionsArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(execute(args))
}

async fn execute(args: ExecutionsArgs) -> anyhow::Result<ExitCode> {
    let reach = &args.reach;
    let source = Source::reach(reach).await?;
    match args.command {
        ExecutionsCommand::List { filter, limit } => {
            if !(1..=1000).contains(&limit) {
                anyhow::bail!("--limit must be from 1 to 1000");
            }
            let page = source.list(&filter, limit).await?;
            match args.format {
                Format::Json => print_json(&page)?,
                Format::Table => render::list(&page),
            }
        }
        ExecutionsCommand::Show { id } => {
            let record = source.show(&id).await?;
            match args.format {
                Format::Json => print_json(&record)?,
                Format::Table => render::show(&record),
            }
        }
        ExecutionsCommand::Retry {
            id,
            current,
            filter,
        } => {
            let version = if current { "current" } else { "recorded" };
            let answer = match id {
                Some(id) => {
                    if filter.workflow.is_some()
                        || filter.status.is_some()
                        || filter.since.is_some()
                        || filter.until.is_some()
                    {
                        anyhow::bail!(
                            "give an execution id or filters (--workflow, --status, --since, --until), not both"
                        );
                    }
                    source.retry(&id, version).await?
                }
                None => {
                    if filter.workflow.is_none()
                        && filter.status.is_none()
                        && filter.since.is_none()
                    {
                        anyhow::bail!(
                            "give an execution id, or filters for a bulk retry (e.g. --workflow W --status failed --since T)"
                        );
                    }
                    let body = json!({"workflow": filter.workflow, "status": filter.status,
                        "since": filter.since, "until": filter.until, "version": version});
                    source.retry_bulk(&body).await?
                }
            };
            match args.format {
                Format::Json => print_json(&answer)?,
                Format::Table => render::retried(&answer),
            }
        }
        ExecutionsCommand::ExportTest { id } => {
            print!("{}", source.test_case(&id).await?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_json(value: &Json) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
