//! Tests against a real MLflow tracking server (one per run of this binary,
//! see `support`), plus HTTP hooks and authentication against small local
//! HTTP servers.

mod auth;
mod failures;
mod hooks;
mod local_server;
mod registry;
mod scenario;
mod stages;
mod support;
