//! The Alertmanager receiver over HTTP: authentication, request checks,
//! routing, deduplication, resolved alerts, sink failures.

mod alerts;
mod common;
mod config;
mod logs;
mod requests;
mod slow_clients;
#[path = "../support/mod.rs"]
mod support;
