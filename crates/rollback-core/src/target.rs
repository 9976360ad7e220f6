//! The thing that is deployed.

use std::fmt;

use async_trait::async_trait;

use crate::{HistoryEntry, Result, RevisionHealth, RevisionId, RevisionRef, Timestamp};

/// The identity of a target, unique within one engine: `k8s:shop/checkout`,
/// `codedeploy:bank/payments`, `mlflow:recommender@champion`.
///
/// Shared, not copied: an id is kept by many maps (the engine's, the
/// supervisor's, the server's, its timeline's, the state store's), and
/// cloning it costs a reference count, not an allocation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetId(std::sync::Arc<str>);

impl serde::Serialize for TargetId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for TargetId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d).map(TargetId::new)
    }
}

impl TargetId {
    /// A target id from any string.
    pub fn new(id: impl Into<String>) -> Self {
        TargetId(id.into().into())
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TargetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for TargetId {
    fn from(s: &str) -> Self {
        TargetId(s.into())
    }
}

/// What a backend can do, so the engine and the conformance suite skip what
/// it cannot instead of faking it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Capabilities {
    /// [`Target::mark`] persists health marks in the backend (the engine
    /// marks there; the conformance suite checks that marks read back).
    pub mark: bool,
    /// The rollbacker takes [`crate::DryRun::Server`] by asking the server
    /// to validate; without it, such a request is `Unsupported` (the
    /// conformance suite checks which).
    pub server_dry_run: bool,
    /// [`crate::Rollbacker::wait_converged`] really waits. Without it a
    /// rollback is converged when it returns, and the engine neither calls
    /// nor audits a wait.
    pub convergence: bool,
}

impl Capabilities {
    /// Nothing beyond the required methods.
    pub const NONE: Capabilities = Capabilities {
        mark: false,
        server_dry_run: false,
        convergence: false,
    };

    /// Set `mark`.
    pub const fn with_mark(mut self, yes: bool) -> Self {
        self.mark = yes;
        self
    }
    /// Set `server_dry_run`.
    pub const fn with_server_dry_run(mut self, yes: bool) -> Self {
        self.server_dry_run = yes;
        self
    }
    /// Set `convergence`.
    pub const fn with_convergence(mut self, yes: bool) -> Self {
        self.convergence = yes;
        self
    }
}

/// A health verdict on one revision, for [`Target::mark`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Mark {
    /// The revision judged.
    pub revision: RevisionId,
    /// The verdict.
    pub health: RevisionHealth,
    /// Why, in words (the breach, "promoted after the bake time").
    pub reason: String,
    /// The engine's time of the verdict, for the backend's record of it.
    pub at: Timestamp,
}

impl Mark {
    /// A verdict on `revision` at `at`.
    pub fn new(
        revision: RevisionId,
        health: RevisionHealth,
        reason: impl Into<String>,
        at: Timestamp,
    ) -> Self {
        Mark {
            revision,
            health,
            reason: reason.into(),
            at,
        }
    }
}

/// The thing that is deployed: a Kubernetes Deployment, a CodeDeploy
/// deployment group, an MLflow registered model with an alias.
///
/// # Contract
/// - `id()` is constant for the life of the value.
/// - `current()` is the revision serving now. If a change is in flight, it is
///   the revision being rolled out.
/// - `history()` lists the revisions the backend can roll back to, **newest
///   first**, with no duplicate ids, and includes the current revision. Each
///   entry carries what the backend knows of its health (a failed CodeDeploy
///   deployment is `Bad`, a succeeded one `Good`); `Unknown` otherwise.
/// - Both are read-only and safe to call concurrently and repeatedly.
/// - A target that does not exist is [`crate::ErrorKind::NotFound`]; a network
///   or server failure is [`crate::ErrorKind::Transient`].
/// - `mark()` records a health verdict in the backend where it can keep one
///   (`capabilities().mark`); otherwise it returns `Unsupported` and the engine
///   keeps the mark in its own state.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Target: fmt::Debug + Send + Sync + 'static {
    /// The target's identity.
    fn id(&self) -> &TargetId;

    /// What this backend can do.
    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
    }

    /// The revision serving now.
    async fn current(&self) -> Result<RevisionRef>;

    /// The revisions, newest first, including the current one.
    async fn history(&self) -> Result<Vec<HistoryEntry>>;

    /// Word of changes, for a supervisor: a receiver marked changed
    /// whenever the target may run another revision (a Kubernetes watch
    /// event on a Deployment, for instance), so that a
    /// [`Supervisor`](crate::supervisor::Supervisor) looks within 50 ms instead
    /// of at its next poll. A hint only: `current()` stays the truth, and
    /// the supervisor keeps polling. `None` (the default): polled only.
    /// Whatever the backend runs to notice changes stops when the receiver
    /// is dropped. Called within a tokio runtime.
    fn changes(&self) -> Option<crate::changes::Changes> {
        None
    }

    /// Record a health verdict for a revision in the backend.
    async fn mark(&self, mark: &Mark) -> Result<()> {
        let _ = mark;
        Err(crate::Error::unsupported(format!(
            "target {} cannot keep health marks",
            self.id()
        )))
    }
}

/// Conveniences over any [`Target`].
#[async_trait]
pub trait TargetExt: Target {
    /// The history entry with this id, or a `NotFound` error naming the target.
    async fn find(&self, id: &RevisionId) -> Result<HistoryEntry> {
        self.history()
            .await?
            .into_iter()
            .find(|e| e.revision.id() == id)
            .ok_or_else(|| {
                crate::Error::not_found(format!(
                    "revision {id} is not in the history of target {}; list the history to see the revisions it can roll back to",
                    self.id()
                ))
            })
    }
}

impl<T: Target + ?Sized> TargetExt for T {}

fn _dyn_ok(_: std::sync::Arc<dyn Target>) {}
