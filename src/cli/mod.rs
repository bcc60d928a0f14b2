//! Command-line definitions and dispatch.

mod executions;
mod logs;
mod new;
mod offline;
mod os_limits;
mod run;
mod sample;
mod serve;
mod store;
mod testing;
mod urls;
mod validate;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// hookflow: run YAML workflows behind per-workflow webhook URLs.
#[derive(Debug, Parser)]
#[command(name = "hookflow", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Flags shared by `serve` and `urls`.
#[derive(Debug, clap::Args)]
pub struct PlaceArgs {
    /// The workflows folder.
    #[arg(long, default_value = "./workflows", env = "HOOKFLOW_WORKFLOWS")]
    pub workflows: PathBuf,
    /// The data folder (database and keys).
    #[arg(long, default_value = "./data", env = "HOOKFLOW_DATA")]
    pub data: PathBuf,
    /// Where runs and keys are kept: `sled` (the data folder, the default)
    /// or a PostgreSQL URL (`postgres://user:pass@host:5432/db?sslmode=…`)
    /// shared by several instances.
    #[arg(long, env = "HOOKFLOW_STORE", hide_env_values = true)]
    pub store: Option<String>,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:13000", env = "HOOKFLOW_LISTEN")]
    pub listen: String,
    /// The base of printed URLs (default `http://<listen addr>`).
    #[arg(long, env = "HOOKFLOW_PUBLIC_URL")]
    pub public_url: Option<String>,
}

impl PlaceArgs {
    /// The base URL for printed webhook URLs.
    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the workflows over HTTP.
    Serve(serve::ServeArgs),
    /// List every workflow's webhook URL (works while a server runs).
    Urls(urls::UrlsArgs),
    /// Check workflow files or folders; prints `path:line:column: severity: message`
    /// and exits 1 on any error.
    Validate(validate::ValidateArgs),
    /// Run one workflow once without a server and print the answer and each node's result.
    Run(run::RunArgs),
    /// Run workflow test files (`<id>.test.yaml`) strictly offline: request nodes answer from stubs.
    Test(testing::TestArgs),
    /// Print the `parse:` block that extracts every leaf of a sample request
    /// (NocoBase's "parse" button).
    Sample(sample::SampleArgs),
    /// Write a new workflow and its test file (`workflows/ID.yaml`, `workflows/ID.test.yaml`).
    New(new::NewArgs),
    /// The run history: list, show and retry runs, or make one a test case.
    Executions(executions::ExecutionsArgs),
    /// Print the JSON Schema of the workflow format (docs/workflow.schema.json).
    Schema {
        /// Print the schema of test files (`<id>.test.yaml`, docs/test.schema.json) instead.
        #[arg(long)]
        tests: bool,
    },
}

/// Runs one command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Urls(args) => urls::run(args),
        Command::Validate(args) => validate::run(args),
        Command::Run(args) => run::run(args),
        Command::Test(args) => testing::run(args),
        Command::Sample(args) => sample::run(args),
        Command::New(args) => new::run(args),
        Command::Executions(args) => executions::run(args),
        Command::Schema { tests } => {
            if tests {
                print!("{}", hookflow_model::schema::test_schema());
            } else {
                print!("{}", hookflow_model::schema::workflow_schema());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
