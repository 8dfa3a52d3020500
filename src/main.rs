//! The `eagerql` binary: parse the command line and run the subcommand.

use std::process::ExitCode;

use clap::Parser;

/// jemalloc with background purging: after a burst of large answers the freed memory goes
/// back to the system within seconds (glibc's per-thread arenas kept it), and small requests
/// allocate for fewer instructions.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = eagerql::cli::Cli::parse();
    match eagerql::cli::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
