//! The `switchyard` binary: parse the command line and hand over to the library.

use clap::Parser;

/// jemalloc instead of the platform allocator: a proxy allocates and frees small buffers on every request, and
/// jemalloc's thread caches do that with less CPU than glibc's malloc (measured in bench/README.md, `bench/ab.sh`).
#[cfg(unix)]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = switchyard::cli::Cli::parse();
    match switchyard::cli::main(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
