//! Progress of a deployment being waited on.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_codedeploy::types::DeploymentInfo;

use crate::history::{deployment_id, status_str};

/// A progress callback.
pub(crate) type ProgressFn = Arc<dyn Fn(&DeploymentProgress) + Send + Sync + 'static>;

/// Where a deployment stands: its status and how many of its instances (or
/// Lambda functions, ECS task sets) are in each state.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeploymentProgress {
    /// The deployment.
    pub deployment_id: String,
    /// Its status as CodeDeploy spells it (`InProgress`, `Succeeded`, …).
    pub status: String,
    /// Targets not yet started.
    pub pending: i64,
    /// Targets being deployed to.
    pub in_progress: i64,
    /// Targets done.
    pub succeeded: i64,
    /// Targets that failed.
    pub failed: i64,
    /// Targets skipped.
    pub skipped: i64,
    /// Blue/green replacement targets ready for traffic.
    pub ready: i64,
    /// How long the wait has lasted so far.
    pub elapsed: Duration,
}

impl DeploymentProgress {
    pub(crate) fn of(d: &DeploymentInfo, elapsed: Duration) -> Self {
        let o = d.deployment_overview();
        DeploymentProgress {
            deployment_id: deployment_id(d).to_owned(),
            status: status_str(d).to_owned(),
            pending: o.map_or(0, |o| o.pending),
            in_progress: o.map_or(0, |o| o.in_progress),
            succeeded: o.map_or(0, |o| o.succeeded),
            failed: o.map_or(0, |o| o.failed),
            skipped: o.map_or(0, |o| o.skipped),
            ready: o.map_or(0, |o| o.ready),
            elapsed,
        }
    }

    /// The same state, ignoring the elapsed time.
    pub(crate) fn same_state(&self, other: &DeploymentProgress) -> bool {
        DeploymentProgress {
            elapsed: Duration::ZERO,
            ..self.clone()
        } == DeploymentProgress {
            elapsed: Duration::ZERO,
            ..other.clone()
        }
    }
}

impl fmt::Display for DeploymentProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "deployment {} is {} after {}s: {} succeeded, {} in progress, {} pending, {} failed, {} skipped",
            self.deployment_id,
            self.status,
            self.elapsed.as_secs(),
            self.succeeded,
            self.in_progress,
            self.pending,
            self.failed,
            self.skipped
        )?;
        if self.ready > 0 {
            write!(f, ", {} ready", self.ready)?;
        }
        Ok(())
    }
}
