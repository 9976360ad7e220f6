//! Moves a target back to an earlier revision.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::{Actor, Capabilities, Result, RevisionId, RevisionRef, TargetId, Timestamp};

/// How a rollback that changes nothing is checked, with kubectl's words
/// (`--dry-run=none|client|server`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum DryRun {
    /// Not a dry run: change the target.
    #[default]
    None,
    /// Check by reading only: the revision exists, the target is where the
    /// engine thinks; nothing is sent that would change it.
    Client,
    /// Ask the server to validate the change without persisting it, where
    /// the backend can (`capabilities().server_dry_run`); others refuse it
    /// as [`crate::ErrorKind::Unsupported`].
    Server,
}

impl DryRun {
    /// Whether anything may change.
    pub fn is_dry(self) -> bool {
        self != DryRun::None
    }

    /// `none`, `client` or `server`.
    pub fn as_str(self) -> &'static str {
        match self {
            DryRun::None => "none",
            DryRun::Client => "client",
            DryRun::Server => "server",
        }
    }
}

impl fmt::Display for DryRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the engine asks a [`Rollbacker`] to do. Built with
/// [`RollbackRequest::new`] and its setters, so it can grow.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RollbackRequest {
    /// The revision being rolled away from (the bad one), as the engine last
    /// saw it; `None` to roll back from whatever runs now.
    pub from: Option<RevisionId>,
    /// The revision to restore.
    pub to: RevisionRef,
    /// Why, for change-cause annotations, descriptions and tags.
    pub reason: String,
    /// Who asked: the engine itself, or an operator.
    pub actor: Actor,
    /// Whether to change nothing, and how to check instead.
    pub dry_run: DryRun,
    /// When the rollback was decided, by the engine's clock. The same on
    /// every retry and after a restart, so a backend writes it into its
    /// records (a move's time, an annotation) and can key a record by it to
    /// write that record once however often the rollback is carried out.
    pub decided_at: Timestamp,
}

impl RollbackRequest {
    /// A rollback to `to` decided at `decided_at`, from whatever runs now, by
    /// the engine, for no stated reason; change it with the setters.
    pub fn new(to: RevisionRef, decided_at: Timestamp) -> Self {
        RollbackRequest {
            from: None,
            to,
            reason: String::new(),
            actor: Actor::engine(),
            dry_run: DryRun::None,
            decided_at,
        }
    }

    /// Roll away from `from` only: the backend refuses when the target runs
    /// something else by then.
    #[must_use]
    pub fn from(mut self, from: impl Into<Option<RevisionId>>) -> Self {
        self.from = from.into();
        self
    }

    /// Why, in words: backends write it into change-cause annotations,
    /// deployment descriptions and move records.
    #[must_use]
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = reason.into();
        self
    }

    /// Who asked.
    #[must_use]
    pub fn actor(mut self, actor: Actor) -> Self {
        self.actor = actor;
        self
    }

    /// Check instead of changing.
    #[must_use]
    pub fn dry_run(mut self, dry_run: DryRun) -> Self {
        self.dry_run = dry_run;
        self
    }
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
        /// What the backend saw that rules convergence out.
        detail: String,
    },
}

/// Moves a target back to an earlier revision. One rollbacker serves one
/// target, the one [`Rollbacker::target`] names; the engine refuses a
/// [`crate::WatchSpec`] that pairs it with another.
///
/// # Contract
/// - `rollback` makes `to` the current revision of the target. It is
///   **idempotent**: when the target already runs `to` it changes nothing and
///   returns [`RollbackOutcome::AlreadyAt`].
/// - A `to` that the target's history does not hold is
///   [`crate::ErrorKind::NotFound`], and the target is left untouched.
/// - It never leaves a half-done change: when it returns an error, the
///   target is either unchanged or fully moved to `to`.
/// - Dry runs change nothing: they validate and return
///   [`RollbackOutcome::DryRun`]. [`DryRun::Client`] checks by reading;
///   [`DryRun::Server`] asks the server where the backend can
///   (`capabilities().server_dry_run`) and is `Unsupported` elsewhere.
/// - A rollback is idempotent **including the backend's own records** (a
///   move record, a tag, a description): interrupted between any two of its
///   steps and asked again with the same request, it completes what is
///   missing and writes each record once. [`RollbackRequest::decided_at`] is
///   the same on every try, so records keyed by it are written once.
/// - Errors that may pass (network, throttling, 5xx, conflicts) are
///   retryable ([`crate::Error::is_retryable`]); the engine retries the whole
///   rollback with the policy's [`crate::policy::RetryPolicy`]. Every other error is
///   final. A backend may also retry single API calls internally (re-reading
///   after a 409, say); then the attempts multiply, so give such a backend
///   [`crate::policy::RetryPolicy::NEVER`] where the policy alone should decide.
/// - `wait_converged` returns once the target runs `revision` everywhere, or
///   `TimedOut` at `timeout`, or `Failed` when it cannot converge. Backends
///   without a notion of convergence return `Converged` at once.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Rollbacker: fmt::Debug + Send + Sync + 'static {
    /// The target this rollbacker moves.
    fn target(&self) -> &TargetId;

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
