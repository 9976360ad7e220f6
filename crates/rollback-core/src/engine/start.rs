//! How a watch starts: resume what the state store holds, or judge the
//! current revision afresh. Pure functions of what was read, so the choice
//! has its own tests.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::machine::{Candidate, MachineState, Phase, Watch};
use crate::{
    Error, HealthProbe, HistoryEntry, Policy, Result, Revision, RevisionHealth, RevisionId,
    TargetId,
};

/// How a watch starts.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Start {
    /// Carry on from the saved state.
    Resume(Box<MachineState>),
    /// Judge the current revision from the start.
    Fresh(Box<Watch>),
}

/// Resume a saved watch that concerns what the target runs now; otherwise
/// start a new watch of the current revision with the target's history,
/// keeping what the saved watch had learned (health marks the backend does
/// not have, past rollbacks for `max_rollbacks` and `cooldown`).
pub(super) fn choose(
    saved: Option<MachineState>,
    target: &TargetId,
    current: &dyn Revision,
    history: &[HistoryEntry],
) -> Start {
    let saved = match saved {
        Some(state) if concerns(&state, current.id()) => return Start::Resume(Box::new(state)),
        other => other,
    };
    let mut candidates: Vec<Candidate> = history
        .iter()
        .map(|e| Candidate {
            id: e.revision.id().clone(),
            health: e.health,
        })
        .collect();
    let mut rollbacks = Vec::new();
    if let Some(old) = saved {
        // What earlier watches learned outranks "unknown".
        for c in &mut candidates {
            if c.health == RevisionHealth::Unknown
                && let Some(o) = old.watch.history.iter().find(|o| o.id == c.id)
            {
                c.health = o.health;
            }
        }
        rollbacks = old.watch.rollbacks;
    }
    Start::Fresh(Box::new(Watch {
        target: target.clone(),
        revision: current.id().clone(),
        irreversible: current.is_irreversible(),
        history: candidates,
        rollbacks,
    }))
}

/// Whether a saved watch is about what the target runs now: the judged
/// revision, or the revision a rollback restores (or restored). Otherwise
/// someone deployed something else since, and a new watch starts.
fn concerns(state: &MachineState, current: &RevisionId) -> bool {
    if &state.watch.revision == current {
        return true;
    }
    match &state.phase {
        Phase::RollingBack { to, .. } | Phase::RolledBack { to, .. } => to == current,
        Phase::Verifying { restored, .. } => restored == current,
        _ => false,
    }
}

/// The probes in policy order (the same list when they are in it already,
/// as a watch file's are); an error names a probe the policy lacks, or a
/// policy probe nobody measures.
pub(super) fn order_probes(
    policy: &Policy,
    probes: &Arc<[Arc<dyn HealthProbe>]>,
    target: &TargetId,
) -> Result<Arc<[Arc<dyn HealthProbe>]>> {
    if probes.len() == policy.probes.len()
        && probes
            .iter()
            .zip(&policy.probes)
            .all(|(p, pp)| p.name() == pp.name)
    {
        return Ok(probes.clone());
    }
    let judged: HashSet<&str> = policy.probes.iter().map(|p| p.name.as_str()).collect();
    if let Some(p) = probes.iter().find(|p| !judged.contains(p.name())) {
        return Err(Error::invalid(format!(
            "probe {:?} given for target {target} is not in the policy (the policy has: {})",
            p.name(),
            policy
                .probes
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let by_name: HashMap<&str, &Arc<dyn HealthProbe>> =
        probes.iter().map(|p| (p.name(), p)).collect();
    policy
        .probes
        .iter()
        .map(|pp| {
            by_name.get(pp.name.as_str()).map(|p| Arc::clone(p)).ok_or_else(|| {
                Error::invalid(format!(
                    "the policy's probe {:?} has no HealthProbe of that name for target {target}",
                    pp.name
                ))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::Machine;
    use crate::{RevisionRecord, RevisionRef, Timestamp};

    fn policy() -> Arc<Policy> {
        Arc::new(
            Policy::from_yaml("interval: 30s\nprobes: [{name: error_rate, success: '< 0.01'}]")
                .unwrap(),
        )
    }

    #[test]
    fn probes_in_policy_order_are_shared_others_put_in_it() {
        use crate::memory::ScriptedProbe;
        let policy = Policy::from_yaml(
            "interval: 30s\nprobes: [{name: a, success: '< 1'}, {name: b, success: '< 1'}]",
        )
        .unwrap();
        let probe = |n: &str| Arc::new(ScriptedProbe::new(n)) as Arc<dyn HealthProbe>;
        let target = TargetId::new("t");
        let ordered: Arc<[Arc<dyn HealthProbe>]> = vec![probe("a"), probe("b")].into();
        let got = order_probes(&policy, &ordered, &target).unwrap();
        assert!(Arc::ptr_eq(&got, &ordered), "in order: the same list");
        let reversed: Arc<[Arc<dyn HealthProbe>]> = vec![probe("b"), probe("a")].into();
        let got = order_probes(&policy, &reversed, &target).unwrap();
        assert_eq!(got.iter().map(|p| p.name()).collect::<Vec<_>>(), ["a", "b"]);
        let short: Arc<[Arc<dyn HealthProbe>]> = vec![probe("a")].into();
        let e = order_probes(&policy, &short, &target).unwrap_err();
        assert!(
            e.to_string().contains("probe \"b\" has no HealthProbe"),
            "{e}"
        );
    }

    fn entry(id: &str, health: RevisionHealth) -> HistoryEntry {
        HistoryEntry::new(Arc::new(RevisionRecord::new(id)) as RevisionRef, health)
    }

    fn saved(watched: &str, phase: Phase) -> MachineState {
        let watch = Watch {
            target: "t".into(),
            revision: watched.into(),
            irreversible: false,
            history: vec![
                Candidate::new("v2", RevisionHealth::Bad),
                Candidate::new("v1", RevisionHealth::Good),
            ],
            rollbacks: vec![Timestamp::from_millis(5)],
        };
        let mut state = Machine::new(policy(), watch, Timestamp::EPOCH)
            .state()
            .clone();
        state.phase = phase;
        state
    }

    fn history() -> Vec<HistoryEntry> {
        vec![
            entry("v3", RevisionHealth::Unknown),
            entry("v2", RevisionHealth::Unknown),
            entry("v1", RevisionHealth::Unknown),
        ]
    }

    #[test]
    fn nothing_saved_starts_a_watch_of_the_current_revision() {
        let current = RevisionRecord::new("v3").irreversible();
        let Start::Fresh(w) = choose(None, &"t".into(), &current, &history()) else {
            panic!("expected a fresh watch");
        };
        assert_eq!(w.revision.as_str(), "v3");
        assert!(w.irreversible);
        assert_eq!(w.history.len(), 3);
        assert!(w.rollbacks.is_empty());
    }

    #[test]
    fn a_saved_watch_of_the_current_revision_resumes() {
        let s = saved(
            "v3",
            Phase::Observing {
                bake_until: Timestamp::from_millis(9),
            },
        );
        let start = choose(
            Some(s.clone()),
            &"t".into(),
            &RevisionRecord::new("v3"),
            &history(),
        );
        assert_eq!(start, Start::Resume(Box::new(s)));
    }

    #[test]
    fn an_interrupted_rollback_resumes_on_either_side_of_the_move() {
        let rolling = saved(
            "v3",
            Phase::RollingBack {
                to: "v1".into(),
                by: crate::Actor::engine(),
                since: Timestamp::from_millis(7),
            },
        );
        for runs in ["v3", "v1"] {
            let start = choose(
                Some(rolling.clone()),
                &"t".into(),
                &RevisionRecord::new(runs),
                &history(),
            );
            assert!(matches!(start, Start::Resume(_)), "target runs {runs}");
        }
        let verifying = saved(
            "v3",
            Phase::Verifying {
                restored: "v1".into(),
                until: Timestamp::from_millis(9),
            },
        );
        let start = choose(
            Some(verifying),
            &"t".into(),
            &RevisionRecord::new("v1"),
            &history(),
        );
        assert!(matches!(start, Start::Resume(_)));
    }

    #[test]
    fn a_new_deploy_since_starts_afresh_keeping_what_was_learned() {
        let old = saved(
            "v2",
            Phase::RolledBack {
                to: "v1".into(),
                at: Timestamp::from_millis(8),
            },
        );
        let Start::Fresh(w) = choose(
            Some(old),
            &"t".into(),
            &RevisionRecord::new("v3"),
            &history(),
        ) else {
            panic!("expected a fresh watch");
        };
        assert_eq!(w.revision.as_str(), "v3");
        let health: Vec<_> = w
            .history
            .iter()
            .map(|c| (c.id.as_str(), c.health))
            .collect();
        assert_eq!(
            health,
            [
                ("v3", RevisionHealth::Unknown),
                ("v2", RevisionHealth::Bad),
                ("v1", RevisionHealth::Good)
            ]
        );
        assert_eq!(w.rollbacks, [Timestamp::from_millis(5)]);
    }

    #[test]
    fn the_backend_s_marks_outrank_the_saved_ones() {
        let old = saved(
            "v2",
            Phase::Promoted {
                at: Timestamp::from_millis(8),
                by: crate::Actor::engine(),
            },
        );
        let mut h = history();
        h[1] = entry("v2", RevisionHealth::Good);
        let Start::Fresh(w) = choose(Some(old), &"t".into(), &RevisionRecord::new("v3"), &h) else {
            panic!("expected a fresh watch");
        };
        assert_eq!(w.history[1].health, RevisionHealth::Good);
    }
}
