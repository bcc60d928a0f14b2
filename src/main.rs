//! The `hookflow` command: parses flags, sets up logging, hands off to the crates.

mod cli;

use clap::Parser;

// glibc's allocator spends much of a request's time consolidating chunks freed
// on other threads (records are built on HTTP workers and written elsewhere).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::process::ExitCode;

// mimalloc keeps freed memory for a while before returning it (10 ms by
// default), which under load holds tens of MiB; return it at once instead.
// Transparent huge pages are off (the `no_thp` feature): with them an idle
// server sat on ~45 MiB of mostly untouched arenas.
/// `mi_option_purge_delay` in mimalloc's `mi_option_t` (the same in v2 and v3).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;
extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

fn main() -> ExitCode {
    // SAFETY: a plain setter of the allocator's options, called before any
    // other thread exists.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
