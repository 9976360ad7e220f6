//! The `rollback` command. `rollback --help` lists the subcommands and the
//! exit codes.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = rollback_cli::cli::Cli::parse();
    // The engine and the backends log through tracing: their errors only
    // (the clients' own logs repeat what the command's error says), unless
    // RUST_LOG says more.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "off,rollback_core=error,rollback_k8s=error,rollback_aws=error,rollback_mlflow=error,rollback_prometheus=error",
        )
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    std::process::ExitCode::from(runtime.block_on(rollback_cli::run(cli)))
}
