//! `cronhook`: every role of the scheduler and its command-line client in one binary.
//!
//! `cronhook dev` runs API, planner and worker in one process on SQLite (the embedded
//! mode); `cronhook api`, `cronhook planner` and `cronhook worker` are the roles of the
//! distributed mode (Postgres, etcd, Kafka); `cronhook schedules ...` and
//! `cronhook runs ...` talk to a running API over gRPC.

mod cli;
mod client;
mod config;
mod dev;
mod distributed;
mod output;

use clap::Parser;

/// mimalloc instead of glibc's malloc: a delivery allocates and frees many small buffers
/// across threads (ticks, requests, run-log rows); under load glibc's `malloc`/`free` and
/// `malloc_consolidate` took about a quarter of a worker's CPU (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
