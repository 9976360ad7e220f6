//! The outputs of a machine: the [`Step`] it answers each event with, and the
//! [`Decision`] in it.

use std::fmt;

use super::{Breach, PhaseKind};
use crate::condition::{Verdict, VerdictCause};
use crate::forecast::Prediction;
use crate::{Actor, CommandKind, RevisionId};

/// What the machine asks its driver to do.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
#[non_exhaustive]
pub enum Decision {
    /// Measure every probe now, on [`Machine::judged_revision`](super::Machine::judged_revision).
    Measure,
    /// Roll the target back.
    Rollback {
        /// To this revision.
        to: RevisionId,
        /// Away from this one (marked bad).
        from: RevisionId,
        /// The breach: which probe, what it measured, which limit.
        reason: Breach,
        /// Who decided: the engine, or the operator who asked or approved.
        actor: Actor,
    },
    /// Wait for an approver before rolling back (the rollback is not done).
    AwaitApproval {
        /// The rollback that waits.
        to: RevisionId,
        /// The breach that asks for it.
        reason: Breach,
    },
    /// Dry run: the policy was breached; this is what would have happened.
    WouldRollBack {
        /// Where to, if a revision was available.
        to: Option<RevisionId>,
        /// The breach that would have started the rollback.
        reason: Breach,
    },
    /// The watched revision is good.
    Promote {
        /// The watched revision, now marked known good.
        revision: RevisionId,
        /// Who: the engine after the bake time, or an operator.
        actor: Actor,
    },
    /// The rollback is complete (and verified, when the policy verifies).
    Complete {
        /// The restored revision.
        restored: RevisionId,
        /// Whether probes verified it.
        verified: bool,
    },
    /// Humans must take over.
    Escalate {
        /// What humans must look at (as [`Phase::Escalated`](super::Phase::Escalated) keeps it).
        reason: String,
    },
    /// A breached irreversible change is frozen, not rolled back.
    Freeze {
        /// The breach, and that the revision is irreversible.
        reason: String,
    },
    /// An operator command was not valid now; nothing changed.
    Rejected {
        /// The kind of command refused.
        command: CommandKind,
        /// What the phase allows instead.
        reason: String,
    },
}

/// The kind of a [`Decision`], without its data, as audit records name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DecisionKind {
    /// [`Decision::Measure`]
    Measure,
    /// [`Decision::Rollback`]
    Rollback,
    /// [`Decision::AwaitApproval`]
    AwaitApproval,
    /// [`Decision::WouldRollBack`]
    WouldRollBack,
    /// [`Decision::Promote`]
    Promote,
    /// [`Decision::Complete`]
    Complete,
    /// [`Decision::Escalate`]
    Escalate,
    /// [`Decision::Freeze`]
    Freeze,
    /// [`Decision::Rejected`]
    Rejected,
}

impl DecisionKind {
    /// `rollback`, `await_approval`, `would_roll_back`, …
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::Measure => "measure",
            DecisionKind::Rollback => "rollback",
            DecisionKind::AwaitApproval => "await_approval",
            DecisionKind::WouldRollBack => "would_roll_back",
            DecisionKind::Promote => "promote",
            DecisionKind::Complete => "complete",
            DecisionKind::Escalate => "escalate",
            DecisionKind::Freeze => "freeze",
            DecisionKind::Rejected => "rejected",
        }
    }
}

impl fmt::Display for DecisionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Decision {
    /// Its kind, as audit records name it.
    pub fn kind(&self) -> DecisionKind {
        match self {
            Decision::Measure => DecisionKind::Measure,
            Decision::Rollback { .. } => DecisionKind::Rollback,
            Decision::AwaitApproval { .. } => DecisionKind::AwaitApproval,
            Decision::WouldRollBack { .. } => DecisionKind::WouldRollBack,
            Decision::Promote { .. } => DecisionKind::Promote,
            Decision::Complete { .. } => DecisionKind::Complete,
            Decision::Escalate { .. } => DecisionKind::Escalate,
            Decision::Freeze { .. } => DecisionKind::Freeze,
            Decision::Rejected { .. } => DecisionKind::Rejected,
        }
    }
}

impl fmt::Display for Decision {
    /// The decision in words, with its reason.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Measure => f.write_str("measure every probe"),
            Decision::Rollback {
                to,
                from,
                reason,
                actor,
            } => write!(f, "roll back from {from} to {to} ({actor}): {reason}"),
            Decision::AwaitApproval { to, reason } => {
                write!(f, "rollback to {to} waits for approval: {reason}")
            }
            Decision::WouldRollBack {
                to: Some(to),
                reason,
            } => write!(f, "dry run, would roll back to {to}: {reason}"),
            Decision::WouldRollBack { to: None, reason } => write!(
                f,
                "dry run, would roll back but no revision is available: {reason}"
            ),
            Decision::Promote { revision, actor } => {
                write!(f, "promote {revision} to known good ({actor})")
            }
            Decision::Complete {
                restored,
                verified: true,
            } => write!(f, "rollback to {restored} verified"),
            Decision::Complete {
                restored,
                verified: false,
            } => write!(f, "rolled back to {restored} (no verification configured)"),
            Decision::Escalate { reason } => write!(f, "escalate to humans: {reason}"),
            Decision::Freeze { reason } => write!(f, "freeze: {reason}"),
            Decision::Rejected { command, reason } => write!(f, "{command} rejected: {reason}"),
        }
    }
}

/// Why an event changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ignored {
    /// The alert key was seen before.
    DuplicateTrigger,
    /// The machine does not judge in this phase.
    NotJudging(PhaseKind),
}

/// The machine's answer to one event.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct Step {
    /// At most one decision.
    pub decision: Option<Decision>,
    /// The phase change, if any.
    pub transition: Option<(PhaseKind, PhaseKind)>,
    /// The verdict of a measurement or probe error.
    pub verdict: Option<(Verdict, Option<VerdictCause>)>,
    /// When the probe's trend forecast crosses its success condition, if
    /// that made the verdict a failure ([`VerdictCause::ForecastBreach`]).
    pub prediction: Option<Prediction>,
    /// The Mann-Whitney judge's numbers, for a probe it judges
    /// ([`crate::canary`]).
    pub comparison: Option<crate::canary::Judgement>,
    /// Why nothing happened, when nothing did for a reason worth recording.
    pub ignored: Option<Ignored>,
}

impl Step {
    pub(super) const NOTHING: Step = Step {
        decision: None,
        transition: None,
        verdict: None,
        prediction: None,
        comparison: None,
        ignored: None,
    };
}
