//! Thin entry point: parse the command line, load configuration, start telemetry, run.

use std::process::ExitCode;

use clap::Parser;
use pymap::cli::{Cli, dispatch};

// Why: serving a page of tasks makes thousands of small, short-lived allocations on two
// runtime threads and sqlx's SQLite threads; with glibc's malloc they were a quarter of
// the CPU of the REST API benchmark (BENCHMARKS.md, "REST API").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Everything pymap writes (database, secret, logs) is private to its user.
    // SAFETY: umask only changes this process's file-creation mask.
    unsafe { libc::umask(0o077) };
    let cli = Cli::parse();
    let loaded = match pymap::config::load(&cli.overrides()) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("pymap: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(dispatch(cli, loaded))
}
