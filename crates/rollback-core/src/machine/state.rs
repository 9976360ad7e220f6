//! What a machine starts from and what it persists: the watch, the
//! target's history, the counts of the current judging period.

use std::collections::BTreeSet;

use super::{Breach, Phase};
use crate::forecast::Trend;
use crate::{RevisionHealth, RevisionId, TargetId, Timestamp};

/// A revision of the target's history, with what is known of its health.
/// A history may hold the watched revision too; a rollback never picks it
/// ([`Machine::rollback_candidate`](super::Machine::rollback_candidate)).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Candidate {
    /// The revision, by the id the target's history gives it.
    pub id: RevisionId,
    /// Its health as far as known.
    pub health: RevisionHealth,
}

impl Candidate {
    /// Like the struct literal, with an `id` that converts to a [`RevisionId`] (a `&str`).
    pub fn new(id: impl Into<RevisionId>, health: RevisionHealth) -> Self {
        Candidate {
            id: id.into(),
            health,
        }
    }
}

/// What a machine starts from: the revision to judge and what is known of the target.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Watch {
    /// The target the revision runs on, named in escalations and rejections.
    pub target: TargetId,
    /// The revision being judged (the new one).
    pub revision: RevisionId,
    /// Whether that revision is marked irreversible.
    pub irreversible: bool,
    /// The target's history, newest first, with health marks.
    pub history: Vec<Candidate>,
    /// When earlier automatic rollbacks of this target happened.
    pub rollbacks: Vec<Timestamp>,
}

impl Watch {
    /// A watch of `revision` on `target` with the given history (newest first).
    pub fn new(
        target: impl Into<TargetId>,
        revision: impl Into<RevisionId>,
        history: Vec<Candidate>,
    ) -> Self {
        Watch {
            target: target.into(),
            revision: revision.into(),
            irreversible: false,
            history,
            rollbacks: Vec::new(),
        }
    }
}

/// Per-probe counts within one judging period (observing, or verifying).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProbeCounts {
    /// Passed measurements.
    pub passes: u32,
    /// Failed measurements.
    pub failures: u32,
    /// Failed measurements in a row, up to the latest.
    pub consecutive_failures: u32,
    /// Inconclusive measurements.
    pub inconclusives: u32,
    /// Probe errors in a row, up to the latest.
    pub consecutive_errors: u32,
}

/// The persistent state of a machine: everything but the policy.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MachineState {
    /// What is watched.
    pub watch: Watch,
    /// When watching started.
    pub started_at: Timestamp,
    /// The current phase.
    pub phase: Phase,
    /// Counts per probe, in policy order, for the current judging period.
    pub counts: Vec<ProbeCounts>,
    /// When the next measurement is due.
    pub next_measure_at: Timestamp,
    /// Alert keys already acted on.
    pub seen_triggers: BTreeSet<String>,
    /// The breach that ended observation, if any.
    pub breach: Option<Breach>,
    /// The latest values of each probe, in policy order, for the probes'
    /// trend forecasts in the current judging period; empty when no probe
    /// forecasts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trends: Vec<Trend>,
}
