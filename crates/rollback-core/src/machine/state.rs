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
    #[serde(default, skip_serializing_if = "is_false")]
    pub irreversible: bool,
    /// The target's history, newest first, with health marks.
    pub history: Vec<Candidate>,
    /// When earlier automatic rollbacks of this target happened.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollbacks: Vec<Timestamp>,
}

// A saved state leaves out what is false, zero or empty (read back as
// such): 150 of a typical state's 380 bytes, which `serve` keeps for every
// target with a memory store.
fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u32) -> bool {
    *n == 0
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
    #[serde(default, skip_serializing_if = "is_zero")]
    pub passes: u32,
    /// Failed measurements.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failures: u32,
    /// Failed measurements in a row, up to the latest.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub consecutive_failures: u32,
    /// Inconclusive measurements.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub inconclusives: u32,
    /// Probe errors in a row, up to the latest.
    #[serde(default, skip_serializing_if = "is_zero")]
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
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub seen_triggers: BTreeSet<String>,
    /// The breach that ended observation, if any (boxed: 80 bytes inline
    /// in every watch's state, and most watches never breach).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breach: Option<Box<Breach>>,
    /// The latest values of each probe, in policy order, for the probes'
    /// trend forecasts in the current judging period; empty when no probe
    /// forecasts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trends: Vec<Trend>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RevisionHealth;

    fn state() -> MachineState {
        MachineState {
            watch: Watch::new(
                "mem:svc",
                "v2",
                vec![
                    Candidate::new("v2", RevisionHealth::Unknown),
                    Candidate::new("v1", RevisionHealth::Good),
                ],
            ),
            started_at: Timestamp::from_millis(0),
            phase: Phase::Observing {
                bake_until: Timestamp::from_millis(600_000),
            },
            counts: vec![ProbeCounts {
                passes: 3,
                ..ProbeCounts::default()
            }],
            next_measure_at: Timestamp::from_millis(30_000),
            seen_triggers: BTreeSet::new(),
            breach: None,
            trends: Vec::new(),
        }
    }

    #[test]
    fn a_saved_state_leaves_out_what_is_false_zero_or_empty_and_reads_back() {
        let s = state();
        let json = serde_json::to_string(&s).unwrap();
        for left_out in [
            "irreversible",
            "rollbacks",
            "failures",
            "inconclusives",
            "consecutive_errors",
            "seen_triggers",
            "breach",
            "trends",
        ] {
            assert!(!json.contains(left_out), "{left_out} in {json}");
        }
        assert!(json.contains(r#""passes":3"#), "{json}");
        assert_eq!(serde_json::from_str::<MachineState>(&json).unwrap(), s);
        // Written in full (as before): read the same.
        let full = r#"{"watch":{"target":"mem:svc","revision":"v2","irreversible":false,"history":[{"id":"v2","health":"unknown"},{"id":"v1","health":"good"}],"rollbacks":[]},"started_at":0,"phase":{"phase":"observing","bake_until":600000},"counts":[{"passes":3,"failures":0,"consecutive_failures":0,"inconclusives":0,"consecutive_errors":0}],"next_measure_at":30000,"seen_triggers":[],"breach":null}"#;
        assert_eq!(serde_json::from_str::<MachineState>(full).unwrap(), s);
        // What is set is written.
        let mut set = s.clone();
        set.watch.irreversible = true;
        set.watch.rollbacks.push(Timestamp::from_millis(5));
        set.seen_triggers.insert("alert-1".into());
        set.counts[0].consecutive_errors = 2;
        let json = serde_json::to_string(&set).unwrap();
        for written in [
            r#""irreversible":true"#,
            r#""rollbacks":[5]"#,
            r#""seen_triggers":["alert-1"]"#,
            r#""consecutive_errors":2"#,
        ] {
            assert!(json.contains(written), "{written} in {json}");
        }
        assert_eq!(serde_json::from_str::<MachineState>(&json).unwrap(), set);
    }
}
