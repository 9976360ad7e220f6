//! Moves a target back to an earlier revision.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::{Actor, Capabilities, Result, RevisionId, RevisionRef, TargetId};

/// What the engine asks a [`Rollbacker`] to do.
#[derive(Debug, Clone)]
pub struct RollbackRequest {
    /// The target being rolled back.
    pub target: TargetId,
    /// The revision being rolled away from (the bad one), as the engine last saw it.
    pub from: Option<RevisionId>,
    /// The revision to restore.
    pub to: RevisionRef,
    /// Why, for change-cause annotations, descriptions and tags.
    pub reason: String,
    /// Who asked: the engine itself, or an operator.
    pub actor: Actor,
    /// Ask the backend to validate without changing anything, where it can.
    pub dry_run: bool,
}

/// What a [`Rollbacker`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum RollbackOutcome {
    /// The target was changed to the requested revision.
    RolledBack {
        /// What the backend did (a deployment id, a patch summary).
        detail: String,
    },
    /// The target already ran the requested revision: nothing was changed.
    AlreadyAt {
        /// What the backend found.
        detail: String,
    },
    /// Validated only; nothing was changed.
    DryRun {
        /// What would have happened.
        detail: String,
    },
}

impl RollbackOutcome {
    /// The detail text.
    pub fn detail(&self) -> &str {
        match self {
            RollbackOutcome::RolledBack { detail }
            | RollbackOutcome::AlreadyAt { detail }
            | RollbackOutcome::DryRun { detail } => detail,
        }
    }
}

/// Whether a target has converged on a revision.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "convergence")]
pub enum Convergence {
    /// The target runs the revision everywhere it should.
    Converged,
    /// It did not converge in time; the detail says how far it got.
    TimedOut {
        /// Progress at the deadline.
        detail: String,
    },
    /// It cannot converge (a progress deadline exceeded, a failed deployment).
    Failed {
        /// Why.
        detail: String,
    },
}

/// Moves a target back to an earlier revision. One rollbacker serves one target.
///
/// # Contract
/// - `rollback` makes `to` the current revision of the target. It is
///   **idempotent**: when the target already runs `to` it changes nothing and
///   returns [`RollbackOutcome::AlreadyAt`].
/// - A `to` that the target's history does not hold is
///   [`crate::ErrorKind::NotFound`], and the target is left untouched.
/// - It never leaves a half-done change: when it returns an error, the
///   target is either unchanged or fully moved to `to`.
/// - `dry_run` requests change nothing: they validate and return
///   [`RollbackOutcome::DryRun`], asking the server where the backend can
///   (`capabilities().server_dry_run`).
/// - Errors that may pass (network, throttling, 5xx, conflicts) are
///   retryable ([`crate::Error::is_retryable`]); the engine retries the whole
///   rollback with the policy's [`crate::RetryPolicy`]. Every other error is
///   final. A backend may also retry single API calls internally (re-reading
///   after a 409, say); then the attempts multiply, so give such a backend
///   [`crate::RetryPolicy::NEVER`] where the policy alone should decide.
/// - `wait_converged` returns once the target runs `revision` everywhere, or
///   `TimedOut` at `timeout`, or `Failed` when it cannot converge. Backends
///   without a notion of convergence return `Converged` at once.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Rollbacker: fmt::Debug + Send + Sync + 'static {
    /// What this backend can do.
    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
    }

    /// Move the target to `request.to`.
    async fn rollback(&self, request: &RollbackRequest) -> Result<RollbackOutcome>;

    /// Wait until the target has converged on `revision`.
    async fn wait_converged(
        &self,
        revision: &RevisionId,
        timeout: Duration,
    ) -> Result<Convergence> {
        let _ = (revision, timeout);
        Ok(Convergence::Converged)
    }
}

fn _dyn_ok(_: std::sync::Arc<dyn Rollbacker>) {}
