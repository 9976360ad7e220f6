//! Tests against a real MLflow tracking server (one per run of this binary,
//! see `support`), plus HTTP hooks and authentication against small local
//! HTTP servers.

mod auth;
mod failures;
mod hooks;
mod interrupted;
/// rollback-k8s's test API server, for the `RolloutRestartHook` tests.
#[cfg(feature = "k8s")]
#[path = "../../../rollback-k8s/tests/support/mod.rs"]
mod k8s_support;
mod kill;
mod local_server;
mod registry;
mod restart_hook;
mod scenario;
mod stages;
mod support;
