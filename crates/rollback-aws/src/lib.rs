//! `rollback-aws`: AWS CodeDeploy deployment groups for the rollback engine.
//!
//! A [`CodeDeployTarget`] is an application plus a deployment group. Its
//! history comes from `ListDeployments` (all pages) and `BatchGetDeployments`,
//! newest first. Each revision is a revision location, identified by the
//! location itself (S3 bucket, key, version and ETag; GitHub repository and
//! commit; the SHA-256 of AppSpec content), so every deployment of the same
//! bundle is one history entry. Its health is what its newest decisive
//! deployment says: `Succeeded` is good, `Failed` is bad, and a deployment
//! that was rolled back (CodeDeploy's `rollbackInfo`, or a rollback
//! deployment whose description names it) is bad. The last known good
//! revision is the last one whose deployment succeeded.
//!
//! A [`CodeDeployRollbacker`] does what CodeDeploy users do:
//! - a bad deployment still in flight is stopped with
//!   `StopDeployment(autoRollbackEnabled = true)`, and the rollback
//!   deployment CodeDeploy creates is followed through `rollbackInfo`;
//! - a completed one is rolled back with `CreateDeployment` of the requested
//!   revision, described as `Rollback of deployment <id> (…) to …, by <actor>: <reason>`;
//! - `wait_converged` follows that deployment to `Succeeded`, `Failed` or
//!   `Stopped`, with a timeout, reporting [`DeploymentProgress`].
//!
//! AWS errors map onto [`rollback_core::ErrorKind`]: throttling and 5xx are
//! `Transient` (retryable), an active deployment in the group is `Conflict`
//! (retryable), missing applications, groups and deployments are `NotFound`,
//! access denial is `Unauthorized`, invalid revisions are `InvalidInput`, and
//! `DeploymentAlreadyCompletedException` is `Permanent`.
//!
//! [`local::LocalCodeDeploy`] runs moto's CodeDeploy server, extended with
//! `StopDeployment` and deployment statuses, to try all this without AWS.
//!
//! ```no_run
//! # async fn demo() -> rollback_core::Result<()> {
//! use rollback_aws::CodeDeployTarget;
//! use rollback_core::{Rollbacker, Target};
//!
//! // endpoint, region and credentials from the standard AWS configuration chain
//! let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
//! let target = CodeDeployTarget::builder(aws_sdk_codedeploy::Client::new(&sdk))
//!     .application("bank")
//!     .deployment_group("payments")
//!     .build()?;
//! let rollbacker = target.rollbacker();
//! for entry in target.history().await? {
//!     println!("{} {:?}", entry.revision.label(), entry.health);
//! }
//! # let _ = rollbacker.capabilities();
//! # Ok(()) }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

mod client;
mod config;
mod error;
mod history;
pub mod local;
mod progress;
mod revision;
mod rollbacker;
mod target;

/// The AWS SDK crates this one is built on, for callers that build clients.
pub use aws_config;
pub use aws_sdk_codedeploy;
pub use config::CodeDeployConfig;
pub use progress::DeploymentProgress;
pub use revision::{CodeDeployRevision, attributes};
pub use rollbacker::CodeDeployRollbacker;
pub use target::{
    CodeDeployTarget, CodeDeployTargetBuilder, DEFAULT_POLL_INTERVAL, DEFAULT_STOP_TIMEOUT,
};

fn _dyn_ok(
    _: std::sync::Arc<dyn rollback_core::Target>,
    _: std::sync::Arc<dyn rollback_core::Rollbacker>,
) {
}
