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
//! The compute platform comes from the application (each deployment names
//! it): on Lambda and ECS a revision is an AppSpec, identified by what it
//! puts in service, `lambda:FUNCTION:ALIAS@TARGET_VERSION` or
//! `ecs:TASK_DEFINITION#CONTAINER:PORT`, and a Lambda rollback deploys the
//! last good AppSpec shifting the alias from the version it is on now (see
//! the crate's README). An AppSpec that does not read is named, with where
//! and why, and never deployed; a platform this crate does not know is
//! `Unsupported`.
//!
//! A [`CodeDeployRollbacker`] does what CodeDeploy users do:
//! - a bad deployment still in flight is stopped with
//!   `StopDeployment(autoRollbackEnabled = true)`, and the rollback
//!   deployment CodeDeploy creates is followed through `rollbackInfo`;
//! - a completed one is rolled back with `CreateDeployment` of the requested
//!   revision, described as `Rollback of deployment <id> (…) to …, decided
//!   at <time>, by <actor>: <reason>`; the decision's time makes it this
//!   rollback's deployment, so a rollback asked again (after a crash, or a
//!   lost answer) finds it instead of deploying twice;
//! - `wait_converged` follows that deployment to `Succeeded`, `Failed` or
//!   `Stopped`, with a timeout, reporting [`DeploymentProgress`].
//!
//! CodeDeploy has no dry run: a client dry run plans by reading only and
//! says what it would do; a server dry run is `Unsupported`.
//!
//! AWS errors map onto [`rollback_core::ErrorKind`] by their AWS error code
//! first: throttling is `Transient` (retryable), an active deployment in the
//! group is `Conflict` (retryable), missing applications, groups and
//! deployments are `NotFound`, access denial is `Unauthorized`, invalid
//! revisions are `InvalidInput`, and `DeploymentAlreadyCompletedException`
//! is `Permanent`. An answer without a code means what its HTTP status means
//! everywhere ([`rollback_core::http::error_kind`]).
//!
//! [`local::LocalCodeDeploy`] runs moto's CodeDeploy server, extended with
//! `StopDeployment` and deployment statuses, to try all this without AWS.
//!
//! ```no_run
//! # async fn demo() -> rollback_core::Result<()> {
//! use rollback_aws::{CodeDeployConfig, CodeDeployTarget};
//! use rollback_core::{Rollbacker, Target};
//!
//! // credentials, region and endpoint from the AWS default chain
//! let config = CodeDeployConfig::new("bank", "payments");
//! let target = CodeDeployTarget::connect(&config, None).await?;
//! let rollbacker = target.rollbacker();
//! for entry in target.history().await? {
//!     println!("{} {:?}", entry.revision.label(), entry.health);
//! }
//! # let _ = rollbacker.capabilities();
//! # Ok(()) }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

mod appspec;
mod client;
mod config;
mod error;
mod history;
pub mod local;
mod plan;
mod progress;
mod registry;
mod revision;
mod rollbacker;
mod target;
mod wait;

/// The AWS SDK crates this one is built on, for callers that build clients.
pub use aws_config;
pub use aws_sdk_codedeploy;
pub use config::CodeDeployConfig;
pub use progress::DeploymentProgress;
pub use registry::codedeploy_scheme;
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
