//! The phases of a machine, with their data, and their kinds without it.

use std::fmt;
use std::time::Duration;

use crate::{Actor, RevisionId, Timestamp};

/// The phase a machine is in.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "phase")]
#[non_exhaustive]
pub enum Phase {
    /// Measuring and judging the new revision.
    Observing {
        /// Promoted when healthy until then.
        bake_until: Timestamp,
    },
    /// An operator paused judging.
    Paused {
        /// The engine's time of the pause.
        since: Timestamp,
        /// Bake time left when paused: it starts over from the resume.
        #[serde(with = "crate::time::duration")]
        bake_left: Duration,
    },
    /// A breach waits for an approver (policy `approval: manual`).
    AwaitingApproval {
        /// The revision the rollback would restore.
        to: RevisionId,
        /// When the breach began waiting: approval has no deadline.
        since: Timestamp,
    },
    /// A rollback is being carried out.
    RollingBack {
        /// The revision being restored.
        to: RevisionId,
        /// Who decided it.
        by: Actor,
        /// When the rollback was decided: the identity of this rollback
        /// ([`crate::RollbackRequest::decided_at`]), the same after a restart.
        since: Timestamp,
    },
    /// The rollback is done; the restored revision is being judged.
    Verifying {
        /// The restored revision.
        restored: RevisionId,
        /// Verified when healthy until then.
        until: Timestamp,
    },
    /// Terminal: the revision is known good.
    Promoted {
        /// The end of the bake time, or the operator's command.
        at: Timestamp,
        /// By whom: the engine after the bake time, or an operator.
        by: Actor,
    },
    /// Terminal: rolled back (and verified, where the policy verifies).
    RolledBack {
        /// The restored revision.
        to: RevisionId,
        /// When the rollback converged (and was verified, where it is).
        at: Timestamp,
    },
    /// Terminal: humans take over; no automatic retries.
    Escalated {
        /// What humans must look at: the breach, the failed rollback or
        /// verification, and on which revision.
        reason: String,
        /// The engine's time of the escalation.
        at: Timestamp,
    },
    /// Terminal: a breach of an irreversible revision; not rolled back.
    Frozen {
        /// The breach, and that the revision is marked irreversible.
        reason: String,
        /// The time of the breach.
        at: Timestamp,
    },
    /// Terminal, dry run only: the policy was breached and nothing was done.
    DryRunBreached {
        /// Where a rollback would have gone.
        would_roll_back_to: Option<RevisionId>,
        /// The time of the breach.
        at: Timestamp,
    },
}

/// The kind of a [`Phase`], without its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
#[non_exhaustive]
pub enum PhaseKind {
    Observing,
    Paused,
    AwaitingApproval,
    RollingBack,
    Verifying,
    Promoted,
    RolledBack,
    Escalated,
    Frozen,
    DryRunBreached,
}

impl PhaseKind {
    /// Whether the phase is terminal: it absorbs every event but operator commands.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            PhaseKind::Promoted
                | PhaseKind::RolledBack
                | PhaseKind::Escalated
                | PhaseKind::Frozen
                | PhaseKind::DryRunBreached
        )
    }

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseKind::Observing => "observing",
            PhaseKind::Paused => "paused",
            PhaseKind::AwaitingApproval => "awaiting_approval",
            PhaseKind::RollingBack => "rolling_back",
            PhaseKind::Verifying => "verifying",
            PhaseKind::Promoted => "promoted",
            PhaseKind::RolledBack => "rolled_back",
            PhaseKind::Escalated => "escalated",
            PhaseKind::Frozen => "frozen",
            PhaseKind::DryRunBreached => "dry_run_breached",
        }
    }
}

impl fmt::Display for PhaseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Phase {
    /// The kind of phase.
    pub fn kind(&self) -> PhaseKind {
        match self {
            Phase::Observing { .. } => PhaseKind::Observing,
            Phase::Paused { .. } => PhaseKind::Paused,
            Phase::AwaitingApproval { .. } => PhaseKind::AwaitingApproval,
            Phase::RollingBack { .. } => PhaseKind::RollingBack,
            Phase::Verifying { .. } => PhaseKind::Verifying,
            Phase::Promoted { .. } => PhaseKind::Promoted,
            Phase::RolledBack { .. } => PhaseKind::RolledBack,
            Phase::Escalated { .. } => PhaseKind::Escalated,
            Phase::Frozen { .. } => PhaseKind::Frozen,
            Phase::DryRunBreached { .. } => PhaseKind::DryRunBreached,
        }
    }
}
