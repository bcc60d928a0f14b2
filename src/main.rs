//! The `hookflow` command: parses flags, sets up logging, hands off to the crates.

mod alloc;
mod cli;

use clap::Parser;

#[global_allocator]
static ALLOCATOR: alloc::Allocator = alloc::Allocator;
use std::process::ExitCode;

// mimalloc keeps freed memory for a while before returning it to the OS
// (1 s in v3), which under load held ~100 MiB more. 20 ms keeps the peak near
// 55 MiB; 0 costs a page fault per reuse (one pair of runs: 25,800 against
// 30,200 sync req/s).
// `MIMALLOC_PURGE_DELAY` still overrides it. Transparent huge pages are off
// (the `no_thp` feature): with them an idle server sat on ~45 MiB of mostly
// untouched arenas.
/// `mi_option_purge_delay` in mimalloc's `mi_option_t` (the same in v2 and v3).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;
/// Milliseconds before freed memory goes back to the OS.
const PURGE_DELAY_MS: std::ffi::c_long = 20;
extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    fn mi_collect(force: bool);
}

/// Hands memory freed in bulk back to the OS now. The purge delay above is
/// kept by each thread and acted on at its next allocation: after start-up
/// the loader threads are gone and the main thread waits, so the parse
/// trees and texts freed then stayed resident (idle RSS with 10,000
/// workflows 83–101 MiB from start to start; 80–83 MiB with this).
pub(crate) fn release_freed_memory() {
    // SAFETY: mimalloc's collection entry point; safe from any thread.
    unsafe { mi_collect(true) };
}

fn main() -> ExitCode {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: a plain setter of the allocator's options, called before
        // any other thread exists.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    }
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
