//! `rollback-mlflow`: ML model rollbacks on the MLflow model registry.
//!
//! An ML model is a change like any other: when a new model version lowers
//! click-through rate, the registry must point back at the last good one.
//! MLflow 3 deprecated stages in favour of aliases, so a target here is a
//! registered model plus an alias (`models:/recommender@champion`):
//!
//! - [`MlflowTarget`] is a [`rollback_core::Target`]: the current revision is
//!   the version the alias points at; the history is the model's versions,
//!   newest first, read page by page; attributes carry run id, source and tags.
//! - [`MlflowRollbacker`] is a [`rollback_core::Rollbacker`]: it tags the
//!   bad version, moves the alias to the last known good version, and
//!   records each move (from, to, reason, actor, the engine's decision
//!   time) in version tags, keeping the alias history MLflow itself does
//!   not keep ([`MlflowTarget::alias_moves`]). Each rollback is a
//!   [`RollbackPlan`] of named steps that writes only what is missing, so a
//!   rollback cut short is completed, written once, by the same request.
//!   [`PostRollbackHook`]s then make serving reload, since serving resolves
//!   the alias when it loads the model: [`HttpHook`] calls a reload
//!   endpoint; `RolloutRestartHook` (feature `k8s`) restarts the model
//!   server's Kubernetes Deployment as `kubectl rollout restart` does and
//!   can wait for the rollout. Whether they finished is kept in the move
//!   record, so a restarted engine runs them again.
//! - Registries still on stages use the deprecated stage mode
//!   ([`MlflowTargetBuilder::stage`]): a rollback is `transition-stage` with
//!   `archive_existing_versions`.
//! - [`local_server`] starts a throwaway MLflow server from a Python venv, for
//!   tests and examples; it stops with its owner.
//! - MLflow's errors map onto [`rollback_core::ErrorKind`]
//!   ([`MlflowError::kind`]): MLflow's error code first, then the status as
//!   [`rollback_core::http::error_kind`] reads it.
//! - [`MlflowConfig`] is a target as written in a configuration file;
//!   [`MlflowTarget::connect`] builds it, with MLflow's own environment
//!   variables for the server and credentials it leaves out
//!   ([`auth_from_env`]).
//!
//! ```no_run
//! # async fn run() -> rollback_core::Result<()> {
//! use std::sync::Arc;
//! use rollback_core::{Actor, Rollbacker, RollbackRequest, Target, TargetExt, Timestamp};
//! use rollback_mlflow::{HttpHook, MlflowConfig, MlflowTarget};
//!
//! let target = MlflowTarget::connect(&MlflowConfig::alias("recommender", "champion"), None).await?;
//! let rollbacker = target
//!     .rollbacker()
//!     .hook(Arc::new(HttpHook::new("http://serving.internal/reload".parse().unwrap())));
//!
//! let bad = target.current().await?;
//! let good = target.find(&"6".into()).await?;
//! let decided_at = Timestamp::parse("2026-11-27T12:00:00Z").unwrap();
//! let request = RollbackRequest::new(good.revision, decided_at)
//!     .from(bad.id().clone())
//!     .reason("click-through rate fell below 2%")
//!     .actor(Actor::new("oncall@example.com"));
//! println!("{}", rollbacker.plan(&request).await?);
//! let outcome = rollbacker.rollback(&request).await?;
//! println!("{}", outcome.detail());
//! # Ok(()) }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

mod client;
mod config;
mod error;
mod hook;
pub mod local_server;
mod plan;
mod registry;
mod resources;
#[cfg(feature = "k8s")]
mod restart_hook;
mod revision;
mod rollbacker;
mod target;

/// Re-exported to implement [`PostRollbackHook`] without depending on `async-trait`.
pub use async_trait::async_trait;
pub use client::{DEFAULT_TIMEOUT, MlflowClient};
pub use config::{
    ENV_TRACKING_PASSWORD, ENV_TRACKING_TOKEN, ENV_TRACKING_URI, ENV_TRACKING_USERNAME,
    MlflowConfig, Pointer, auth_from_env, auth_from_vars,
};
pub use error::{MlflowError, codes};
pub use hook::{HttpHook, PostRollbackHook};
pub use plan::RollbackPlan;
pub use registry::mlflow_scheme;
pub use resources::{AliasEntry, ModelVersion, ModelVersionPage, RegisteredModel, Tag};
#[cfg(feature = "k8s")]
#[cfg_attr(docsrs, doc(cfg(feature = "k8s")))]
pub use restart_hook::RolloutRestartHook;
pub use revision::{AliasMove, HooksState, ModelVersionRevision, tags};
pub use rollbacker::MlflowRollbacker;
pub use target::{MlflowTarget, MlflowTargetBuilder};
