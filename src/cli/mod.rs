//! Command-line definitions and dispatch.

mod validate;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// hookflow: run YAML workflows behind per-workflow webhook URLs.
#[derive(Debug, Parser)]
#[command(name = "hookflow", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check workflow files; prints `path:line:column: message` and exits 1 on any error.
    Validate {
        /// The workflows folder.
        #[arg(default_value = "./workflows", env = "HOOKFLOW_WORKFLOWS")]
        dir: PathBuf,
        /// Treat a declared secret that is not set in the environment as an error.
        #[arg(long)]
        require_secrets: bool,
    },
    /// Print the JSON Schema of the workflow format.
    Schema,
}

/// Runs one command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate {
            dir,
            require_secrets,
        } => validate::run(&dir, require_secrets),
        Command::Schema => {
            print!("{}", hookflow_model::schema::workflow_schema());
            Ok(ExitCode::SUCCESS)
        }
    }
}
