//! `rollback-serve`: `rollback serve` as a library. Every target of a watch
//! file is supervised continuously (each new revision is judged, as Argo
//! Rollouts and Flagger judge each rollout), and one HTTP server offers:
//!
//! | route | what |
//! |---|---|
//! | `GET /api/v1/targets` | every target with its phase and last decision |
//! | `GET /api/v1/targets/{target}` | one target |
//! | `GET /api/v1/targets/{target}/timeline?limit=N` | its last audit records: `serve.timeline` events, `serve.timeline_measurements` measurements per probe |
//! | `POST /api/v1/targets/{target}/{pause,resume,approve,promote}` | operator commands |
//! | `POST /api/v1/targets/{target}/rollback` | roll back now, to `{"to": "REVISION"}` or the policy's choice |
//! | `GET /metrics` | Prometheus metrics ([`metrics`](crate#metrics)) |
//! | `GET /healthz`, `GET /readyz` | liveness and readiness |
//! | `GET /openapi.yaml` | the OpenAPI description of these routes, for generated clients |
//! | `POST /webhook/alertmanager` | the Alertmanager receiver of `rollback-prometheus` (with `serve.alertmanager`) |
//!
//! The API speaks JSON; a target id is one percent-encoded path segment
//! (`k8s%3Ashop%2Fcheckout`); every request carries `Authorization: Bearer
//! TOKEN` with a token of `serve.operators`, whose grants the engine checks
//! for each command (denials are audited; so is a command without a valid
//! token, as actor `unauthenticated`). Errors are `{"error": "..."}`.
//!
//! Notifications (Slack, Microsoft Teams Workflows, a generic webhook) go
//! out on rollback started, done, verified, escalated, frozen and awaiting
//! approval, each saying what breached, which revisions and what happens
//! next; they never hold up a decision ([`NoticeKind`]).
//!
//! Two or more replicas share the work with `serve.leader_election`
//! ([`LeaderElectionConfig`], feature `k8s`): per shard of the targets one
//! replica leads on a Kubernetes Lease and acts, checking its lease right
//! before each rollback, mark, state save and notification; the others
//! serve the read-only API and `/metrics` (`rollback_leader{shard}`), and
//! state lives in ConfigMaps, so a new leader resumes what the old one was
//! doing.
//!
//! The `serve` section of the watch file configures it all
//! ([`ServeConfig`]). A reload (SIGHUP, or a change of the file on disk)
//! adds and removes targets without disturbing the others; SIGTERM lets a
//! rollback in flight finish within a bound, and the next start resumes
//! every watch from its saved state.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> rollback_core::Result<()> {
//! let dir = tempfile::tempdir().unwrap();
//! let file = dir.path().join("rollback.yaml");
//! std::fs::write(&file, r#"
//! policy: { interval: 1s, bake_time: 1h }
//! probes: [{ name: error_rate, success: "< 0.01", scripted: { values: [0.001] } }]
//! targets: [{ url: "memory://shop/checkout", revisions: [v1, v2] }]
//! serve:
//!   operators: [{ actor: chatops-bot, token: "${BOT_TOKEN}", commands: [pause] }]
//! "#).unwrap();
//! let server = rollback_serve::Server::builder(&file)
//!     .listen("127.0.0.1:0".parse().unwrap())
//!     .env(|name| (name == "BOT_TOKEN").then(|| "s3cret-token".to_owned()))
//!     .start()
//!     .await?;
//! let http = reqwest::Client::new();
//! let paused = http
//!     .post(format!("{}/api/v1/targets/shop%2Fcheckout/pause", server.url()))
//!     .bearer_auth("s3cret-token")
//!     .send()
//!     .await
//!     .unwrap();
//! assert_eq!(paused.status(), 200);
//! server.shutdown().await;
//! # Ok(()) }
//! ```

mod api;
mod auth;
mod chunked;
mod config;
mod leader;
mod logging;
mod metrics;
mod notify;
mod observer;
mod server;
mod tee;

use std::net::SocketAddr;
use std::path::Path;

use rollback_core::{Error, Result};
use tokio::signal::unix::{SignalKind, signal};

pub use api::{OPENAPI_YAML, ROUTES};
pub use config::{
    ChannelConfig, LeaderElectionConfig, NotificationsConfig, OperatorConfig, ServeConfig,
};
pub use logging::{DEFAULT_FILTER, LogFormat, init_logging};
pub use notify::{Notice, NoticeKind, WEBHOOK_VERSION};
pub use server::{ReloadReport, Server, ServerBuilder, ShutdownReport};

/// The options of [`run`] that the command line gives.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ServeOptions {
    /// Listen here instead of `serve.listen`.
    pub listen: Option<SocketAddr>,
}

impl ServeOptions {
    /// No overrides.
    pub fn new() -> Self {
        Self::default()
    }

    /// Listen on `addr` instead of `serve.listen`.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }
}

/// `rollback serve -c FILE`: serve until SIGTERM or SIGINT, reloading on
/// SIGHUP; then shut down gracefully (a second signal cuts the grace
/// short). Returns the exit code: 0 after a graceful stop. A server that
/// cannot start (a problem in the file, the address in use) is an error.
///
/// The caller installs the log subscriber first ([`init_logging`]).
pub async fn run(config: impl AsRef<Path>, options: ServeOptions) -> Result<u8> {
    let listen_for = |kind: SignalKind, name: &str| {
        signal(kind)
            .map_err(|e| Error::permanent(format!("cannot listen for {name}")).with_source(e))
    };
    let mut hangup = listen_for(SignalKind::hangup(), "SIGHUP")?;
    let mut terminate = listen_for(SignalKind::terminate(), "SIGTERM")?;
    let mut interrupt = listen_for(SignalKind::interrupt(), "SIGINT")?;
    let mut builder = Server::builder(config.as_ref());
    if let Some(addr) = options.listen {
        builder = builder.listen(addr);
    }
    let server = builder.start().await?;
    let signal = loop {
        tokio::select! {
            _ = hangup.recv() => match server.reload().await {
                Ok(r) => tracing::info!("SIGHUP: reloaded: {r}"),
                Err(e) => tracing::error!("SIGHUP: reload refused, nothing changed: {}", e.full_message()),
            },
            _ = terminate.recv() => break "SIGTERM",
            _ = interrupt.recv() => break "SIGINT",
        }
    };
    tracing::info!("{signal}: stopping (a second signal stops at once)");
    let again = async {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    };
    let report = server.shutdown_with(again).await;
    tracing::info!(
        waited_ms = u64::try_from(report.waited.as_millis()).unwrap_or(u64::MAX),
        interrupted = report.interrupted.len(),
        "stopped"
    );
    Ok(0)
}
