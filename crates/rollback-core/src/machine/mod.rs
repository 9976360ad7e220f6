//! The sans-IO decision machine.
//!
//! A [`Machine`] watches one revision of one target. It gets the time and
//! [`Event`]s (measurements, probe errors, ticks, alert triggers, operator
//! commands, rollback results) and returns a [`Step`] with at most one
//! [`Decision`]. It never reads a clock and never calls a backend, so the same
//! code runs live, in tests on virtual time, and in replay over months of
//! recorded metrics.
//!
//! ```text
//! Observing ──breach──> RollingBack ──done──> Verifying ──passes──> RolledBack
//!    │  │  └─breach, manual──> AwaitingApproval ──approve──┘   └─fails──> Escalated
//!    │  └─bake time passed──> Promoted
//!    └─pause──> Paused ──resume──> Observing
//! breach of an irreversible revision ──> Frozen; rollback failure ──> Escalated
//! breach under dry_run ──> DryRunBreached (nothing done)
//! ```

mod breach;
mod command;
mod decision;
mod event;
mod judging;
mod phase;
mod rollback;
mod state;

use std::collections::BTreeSet;
use std::sync::Arc;

pub use breach::{Breach, Limit};
pub use decision::{Decision, DecisionKind, Ignored, Step};
pub use event::Event;
pub use phase::{Phase, PhaseKind};
pub use state::{Candidate, MachineState, ProbeCounts, Watch};

use crate::policy::SharedRules;
use crate::{CommandKind, Error, Policy, RevisionHealth, RevisionId, RollbackTo, Timestamp};

/// The decision machine for one watched revision. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Machine {
    policy: Arc<Policy>,
    /// The policy's rules and their descriptions, shared per policy.
    shared: Arc<SharedRules>,
    state: MachineState,
}

impl Machine {
    /// Start watching at `now`. The policy must be valid ([`Policy::validate`]).
    pub fn new(policy: Arc<Policy>, watch: Watch, now: Timestamp) -> Self {
        let shared = crate::policy::shared_rules(&policy);
        let rules = &shared.rules;
        let first = now.plus(policy.initial_delay);
        let trends = if rules.iter().any(|r| r.forecast.is_some()) {
            vec![crate::forecast::Trend::default(); rules.len()]
        } else {
            Vec::new()
        };
        let state = MachineState {
            started_at: now,
            trends,
            phase: Phase::Observing {
                bake_until: first.plus(policy.bake_time),
            },
            counts: vec![ProbeCounts::default(); rules.len()],
            next_measure_at: first,
            seen_triggers: BTreeSet::new(),
            breach: None,
            watch,
        };
        Machine {
            policy,
            shared,
            state,
        }
    }

    /// Resume from a persisted state. Refused when the state does not fit the
    /// policy (a different number of probes).
    pub fn resume(policy: Arc<Policy>, mut state: MachineState) -> crate::Result<Self> {
        if state.counts.len() != policy.probes.len() {
            return Err(Error::invalid(format!(
                "the saved state of target {} has {} probes but the policy has {}; finish or discard the old watch before changing the policy's probes",
                state.watch.target,
                state.counts.len(),
                policy.probes.len()
            )));
        }
        let shared = crate::policy::shared_rules(&policy);
        // A state saved before the policy forecast starts its trends empty.
        if shared.rules.iter().any(|r| r.forecast.is_some()) {
            state.trends.resize(shared.rules.len(), Default::default());
        }
        Ok(Machine {
            policy,
            shared,
            state,
        })
    }

    /// What to persist after each step; [`Machine::resume`] starts from it.
    pub fn state(&self) -> &MachineState {
        &self.state
    }

    /// The policy it judges by, as given to [`Machine::new`] or [`Machine::resume`].
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// Each probe's conditions as written, in policy order (for the audit
    /// log's measurements).
    pub(crate) fn conditions(&self) -> &[String] {
        &self.shared.conditions
    }

    /// The current phase.
    pub fn phase(&self) -> &Phase {
        &self.state.phase
    }

    /// The revision measurements are judging now: the restored one while
    /// verifying, the watched one otherwise.
    pub fn judged_revision(&self) -> &RevisionId {
        match &self.state.phase {
            Phase::Verifying { restored, .. } => restored,
            _ => &self.state.watch.revision,
        }
    }

    /// When the machine next wants a [`Event::Tick`]; `None` when it waits for
    /// something else (a command, a rollback result) or is done.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        match &self.state.phase {
            Phase::Observing { bake_until } => Some(self.state.next_measure_at.min(*bake_until)),
            Phase::Verifying { until, .. } => Some(self.state.next_measure_at.min(*until)),
            _ => None,
        }
    }

    /// Feed one event at `now`.
    pub fn handle(&mut self, now: Timestamp, event: Event) -> Step {
        match event {
            Event::Measured { probe, measurement } => {
                self.on_measurement(now, probe, Some(measurement))
            }
            Event::ProbeError { probe } => self.on_measurement(now, probe, None),
            Event::Tick => self.on_tick(now),
            Event::Trigger { key, summary } => self.on_trigger(now, key, summary),
            Event::Command { command, actor } => self.on_command(now, command, actor),
            Event::RollbackSucceeded => self.on_rollback_result(now, None),
            Event::RollbackFailed { error } => self.on_rollback_result(now, Some(error)),
        }
    }

    /// Where a rollback would go now, by the policy's `rollback_to`: never the
    /// watched revision, never one known bad.
    pub fn rollback_candidate(&self) -> Option<&RevisionId> {
        let watched = &self.state.watch.revision;
        let history = &self.state.watch.history;
        let usable = |c: &&Candidate| &c.id != watched && c.health != RevisionHealth::Bad;
        let older = || {
            let from = history
                .iter()
                .position(|c| &c.id == watched)
                .map_or(0, |i| i + 1);
            history[from..]
                .iter()
                .find(usable)
                .or_else(|| history.iter().find(usable))
        };
        let chosen = match self.policy.rollback_to {
            RollbackTo::LastKnownGood => history
                .iter()
                .filter(usable)
                .find(|c| c.health == RevisionHealth::Good)
                .or_else(older),
            RollbackTo::Previous => older(),
        };
        chosen.map(|c| &c.id)
    }

    fn set_phase(&mut self, phase: Phase) -> (PhaseKind, PhaseKind) {
        let from = self.state.phase.kind();
        self.state.phase = phase;
        (from, self.state.phase.kind())
    }

    fn step(&mut self, phase: Phase, decision: Decision) -> Step {
        let t = self.set_phase(phase);
        Step {
            decision: Some(decision),
            transition: Some(t),
            verdict: None,
            prediction: None,
            comparison: None,
            ignored: None,
        }
    }

    fn escalate(&mut self, now: Timestamp, reason: String) -> Step {
        self.step(
            Phase::Escalated {
                reason: reason.clone(),
                at: now,
            },
            Decision::Escalate { reason },
        )
    }

    fn reject(&self, command: CommandKind, reason: String) -> Step {
        Step {
            decision: Some(Decision::Rejected { command, reason }),
            ..Step::NOTHING
        }
    }

    fn mark(&mut self, id: &RevisionId, health: RevisionHealth) {
        if let Some(c) = self.state.watch.history.iter_mut().find(|c| &c.id == id) {
            c.health = health;
        } else {
            self.state.watch.history.insert(
                0,
                Candidate {
                    id: id.clone(),
                    health,
                },
            );
        }
    }
}
