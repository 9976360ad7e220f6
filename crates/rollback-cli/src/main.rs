//! The `rollback` command. `rollback --help` lists the subcommands and the
//! exit codes.

use clap::Parser;
use rollback_cli::cli::{Command, LogFormatArg};

/// jemalloc, not glibc's malloc: `rollback serve` keeps thousands of small
/// objects for as long as it runs and makes and drops as many each
/// interval, and glibc's arenas keep the holes between them resident. In
/// the serve bench (10,000 targets) jemalloc held 5.3 KiB a target
/// against glibc's 7.2 KiB, at less CPU, on the same code (2026-12-01,
/// BENCHMARKS.md).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    let cli = rollback_cli::cli::Cli::parse();
    let runtime = match &cli.command {
        // The server logs what it does (as text or JSON lines) and runs
        // its thousands of watches on every core.
        Command::Serve(a) => {
            let format = match a.log_format {
                LogFormatArg::Text => rollback_serve::LogFormat::Text,
                LogFormatArg::Json => rollback_serve::LogFormat::Json,
            };
            if let Err(e) = rollback_serve::init_logging(format) {
                eprintln!("error: {e}");
                return std::process::ExitCode::from(1);
            }
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
        }
        _ => {
            // The engine and the backends log through tracing: their
            // errors only (the clients' own logs repeat what the
            // command's error says), unless RUST_LOG says more.
            let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(
                    "off,rollback_core=error,rollback_k8s=error,rollback_aws=error,rollback_mlflow=error,rollback_prometheus=error",
                )
            });
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .init();
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        }
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    std::process::ExitCode::from(runtime.block_on(rollback_cli::run(cli)))
}
