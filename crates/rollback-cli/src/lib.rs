//! `rollback`, the command: the watch file and the engine without writing
//! Rust. A CI gate (`rollback watch`, with documented exit codes), kubectl's
//! `rollout undo` and `rollout history` for every backend, the saved status
//! of each watch, replay of recorded series, and the audit log.
//!
//! The binary is `src/main.rs`; this library holds its parts, so that the
//! benches and tests can call them.
//!
//! ```
//! use clap::Parser;
//! let cli = rollback_cli::cli::Cli::try_parse_from(["rollback", "check", "-c", "rollback.yaml"]).unwrap();
//! assert!(matches!(cli.command, rollback_cli::cli::Command::Check(_)));
//! ```

pub mod cli;
pub mod commands;
pub mod exit;
pub mod out;
pub mod target;

use clap::CommandFactory;

use cli::{AuditCommand, Cli, Command};
use exit::Outcome;

/// Run a parsed command line; the process exit code. Errors are printed
/// on stderr as `error: …`.
pub async fn run(cli: Cli) -> u8 {
    let registry = rollback::registry();
    let result = match &cli.command {
        Command::Check(a) => Ok(commands::check::run(a, &registry).code()),
        Command::Undo(a) => commands::undo::run(a, &registry).await.map(Outcome::code),
        Command::History(a) => commands::history::run(a, &registry)
            .await
            .map(Outcome::code),
        Command::Watch(a) => commands::watch::run(a, &registry).await,
        Command::Status(a) => commands::status::run(a, &registry).await.map(Outcome::code),
        Command::Replay(a) => commands::replay::run(a, &registry).await.map(Outcome::code),
        Command::Backtest(a) => commands::lab::backtest_run(a, &registry)
            .await
            .map(Outcome::code),
        Command::Tune(a) => commands::lab::tune_run(a, &registry)
            .await
            .map(Outcome::code),
        Command::Serve(a) => {
            let mut options = rollback_serve::ServeOptions::new();
            if let Some(addr) = a.listen {
                options = options.listen(addr);
            }
            rollback_serve::run(&a.file, options).await
        }
        Command::Audit(AuditCommand::Show { file }) => {
            commands::audit::show(file).map(Outcome::code)
        }
        Command::Audit(AuditCommand::Verify { file }) => {
            commands::audit::verify(file).map(Outcome::code)
        }
        Command::Completions(a) => {
            clap_complete::generate(
                a.shell,
                &mut Cli::command(),
                "rollback",
                &mut std::io::stdout(),
            );
            Ok(0)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", e.full_message());
            Outcome::Error.code()
        }
    }
}
