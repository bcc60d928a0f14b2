//! The `hookflow` command: parses flags, sets up logging, hands off to the crates.

mod cli;

use clap::Parser;

// glibc's allocator spends much of a request's time consolidating chunks freed
// on other threads (records are built on HTTP workers and written elsewhere).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
