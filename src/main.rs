//! The `hookflow` command: parses flags, sets up logging, hands off to the crates.

mod alloc;
mod cli;

use clap::Parser;

#[global_allocator]
static ALLOCATOR: alloc::Allocator = alloc::Allocator {};
use std::process::ExitCode;

pub(crate) use alloc::release_freed_memory;

fn main() -> ExitCode {
    // A wrong command line exits 2 (clap's usage errors, in `parse`); a
    // command that cannot do its work exits 1 (docs/reference.md).
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
