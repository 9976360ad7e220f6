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

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::condition::{Verdict, VerdictCause, judge};
use crate::{
    Actor, Approval, Command, CommandKind, Error, Measurement, OnIrreversible, Policy, ProbeRules,
    RevisionHealth, RevisionId, RollbackTo, TargetId, Timestamp,
};

/// A revision the machine may roll back to, with what is known of its health.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Candidate {
    /// The revision.
    pub id: RevisionId,
    /// Its health as far as known.
    pub health: RevisionHealth,
}

impl Candidate {
    /// A candidate.
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
    /// The target.
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

/// Which limit a probe went past.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Limit {
    /// `failure_limit`
    FailureLimit,
    /// `consecutive_failure_limit`
    ConsecutiveFailureLimit,
    /// `inconclusive_limit`
    InconclusiveLimit,
    /// `consecutive_error_limit`
    ConsecutiveErrorLimit,
}

impl Limit {
    fn as_str(self) -> &'static str {
        match self {
            Limit::FailureLimit => "failure_limit",
            Limit::ConsecutiveFailureLimit => "consecutive_failure_limit",
            Limit::InconclusiveLimit => "inconclusive_limit",
            Limit::ConsecutiveErrorLimit => "consecutive_error_limit",
        }
    }
}

/// Why a revision was judged bad.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "cause")]
#[non_exhaustive]
pub enum Breach {
    /// A probe went past a limit.
    Probe {
        /// The probe's name.
        probe: String,
        /// The limit it went past.
        limit: Limit,
        /// The limit's value.
        allowed: u32,
        /// The count that went past it.
        count: u32,
        /// The last value measured, if any.
        value: Option<f64>,
        /// Why the last measurement was judged as it was.
        verdict_cause: Option<VerdictCause>,
        /// The conditions, as written.
        conditions: String,
    },
    /// An alert fired for the target.
    Alert {
        /// The alert's identity (fingerprint and start time).
        key: String,
        /// What it says.
        summary: String,
    },
    /// An operator asked for the rollback.
    Operator {
        /// Who.
        actor: Actor,
    },
}

impl fmt::Display for Breach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Breach::Probe {
                probe,
                limit,
                allowed,
                count,
                value,
                verdict_cause,
                conditions,
            } => {
                let what = match limit {
                    Limit::FailureLimit => "failed",
                    Limit::ConsecutiveFailureLimit => "failed in a row",
                    Limit::InconclusiveLimit => "was inconclusive",
                    Limit::ConsecutiveErrorLimit => "could not be measured in a row",
                };
                write!(
                    f,
                    "probe {probe} {what} {count} times ({} {allowed})",
                    limit.as_str()
                )?;
                match (value, verdict_cause) {
                    (Some(v), _) => write!(f, "; last value {v} against {conditions}"),
                    (None, Some(VerdictCause::NoData)) => {
                        write!(f, "; last measurement had no data")
                    }
                    _ => Ok(()),
                }
            }
            Breach::Alert { key, summary } => write!(f, "alert {summary} ({key}) fired"),
            Breach::Operator { actor } => write!(f, "{actor} asked for a rollback"),
        }
    }
}

/// An input of the machine.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// Time passed. Send at [`Machine::next_deadline`] (or later).
    Tick,
    /// Probe number `probe` (policy order) measured.
    Measured {
        /// The probe's index in the policy.
        probe: usize,
        /// What it measured.
        measurement: Measurement,
    },
    /// Probe number `probe` could not measure.
    ProbeError {
        /// The probe's index in the policy.
        probe: usize,
    },
    /// An alert fired for this target. Duplicate keys are ignored.
    Trigger {
        /// The alert's identity; Alertmanager's fingerprint plus startsAt.
        key: String,
        /// What it says.
        summary: String,
    },
    /// An authorized operator command.
    Command {
        /// The command.
        command: Command,
        /// Who gave it (already authorized by the driver).
        actor: Actor,
    },
    /// The rollback asked for completed and converged.
    RollbackSucceeded,
    /// The rollback asked for failed for good (after the driver's retries).
    RollbackFailed {
        /// The backend's error, with its causes.
        error: String,
    },
}

/// What the machine asks its driver to do.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
#[non_exhaustive]
pub enum Decision {
    /// Measure every probe now, on [`Machine::judged_revision`].
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
        /// The breach.
        reason: Breach,
    },
    /// The watched revision is good.
    Promote {
        /// The revision.
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
        /// What humans must look at (as [`Phase::Escalated`] keeps it).
        reason: String,
    },
    /// A breached irreversible change is frozen, not rolled back.
    Freeze {
        /// The breach, and that the revision is irreversible.
        reason: String,
    },
    /// An operator command was not valid now; nothing changed.
    Rejected {
        /// The command.
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
    /// Its kind.
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
    /// Why nothing happened, when nothing did for a reason worth recording.
    pub ignored: Option<Ignored>,
}

impl Step {
    const NOTHING: Step = Step {
        decision: None,
        transition: None,
        verdict: None,
        ignored: None,
    };
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
}

/// The decision machine for one watched revision. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Machine {
    policy: Arc<Policy>,
    rules: Arc<[ProbeRules]>,
    state: MachineState,
}

impl Machine {
    /// Start watching at `now`. The policy must be valid ([`Policy::validate`]).
    pub fn new(policy: Arc<Policy>, watch: Watch, now: Timestamp) -> Self {
        let rules: Arc<[ProbeRules]> = policy.rules().into();
        let first = now.plus(policy.initial_delay);
        let state = MachineState {
            started_at: now,
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
            rules,
            state,
        }
    }

    /// Resume from a persisted state. Refused when the state does not fit the
    /// policy (a different number of probes).
    pub fn resume(policy: Arc<Policy>, state: MachineState) -> crate::Result<Self> {
        if state.counts.len() != policy.probes.len() {
            return Err(Error::invalid(format!(
                "the saved state of target {} has {} probes but the policy has {}; finish or discard the old watch before changing the policy's probes",
                state.watch.target,
                state.counts.len(),
                policy.probes.len()
            )));
        }
        let rules: Arc<[ProbeRules]> = policy.rules().into();
        Ok(Machine {
            policy,
            rules,
            state,
        })
    }

    /// The persistent state.
    pub fn state(&self) -> &MachineState {
        &self.state
    }

    /// The policy.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
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

    fn advance_schedule(&mut self, now: Timestamp) {
        let interval = self.policy.interval;
        let mut next = self.state.next_measure_at.plus(interval);
        if next <= now {
            // The driver was late: skip the missed slots instead of bursting.
            let behind = now.since(next).as_millis() / interval.as_millis().max(1) + 1;
            next = next.plus(interval.saturating_mul(u32::try_from(behind).unwrap_or(u32::MAX)));
        }
        self.state.next_measure_at = next;
    }

    fn on_tick(&mut self, now: Timestamp) -> Step {
        let end = match &self.state.phase {
            Phase::Observing { bake_until } => *bake_until,
            Phase::Verifying { until, .. } => *until,
            _ => return Step::NOTHING,
        };
        if self.state.next_measure_at <= end && now >= self.state.next_measure_at {
            self.advance_schedule(now);
            return Step {
                decision: Some(Decision::Measure),
                ..Step::NOTHING
            };
        }
        if now < end {
            return Step::NOTHING;
        }
        // The period is over and every measurement it scheduled was asked for.
        let unproven = self.state.counts.iter().position(|c| c.passes == 0);
        match (&self.state.phase, unproven) {
            (Phase::Observing { .. }, None) => {
                let revision = self.state.watch.revision.clone();
                self.mark(&revision, RevisionHealth::Good);
                let actor = Actor::engine();
                self.step(
                    Phase::Promoted {
                        at: now,
                        by: actor.clone(),
                    },
                    Decision::Promote { revision, actor },
                )
            }
            (Phase::Observing { .. }, Some(i)) => {
                let reason = format!(
                    "bake time ended without a single passing measurement of probe {}; not promoting a revision nothing vouched for",
                    self.policy.probes[i].name
                );
                self.escalate(now, reason)
            }
            (Phase::Verifying { restored, .. }, None) => {
                let restored = restored.clone();
                self.mark(&restored, RevisionHealth::Good);
                self.step(
                    Phase::RolledBack {
                        to: restored.clone(),
                        at: now,
                    },
                    Decision::Complete {
                        restored,
                        verified: true,
                    },
                )
            }
            (Phase::Verifying { restored, .. }, Some(i)) => {
                let reason = format!(
                    "verification of restored revision {restored} ended without a single passing measurement of probe {}",
                    self.policy.probes[i].name
                );
                self.escalate(now, reason)
            }
            _ => Step::NOTHING,
        }
    }

    fn on_measurement(&mut self, now: Timestamp, probe: usize, m: Option<Measurement>) -> Step {
        let verifying = match self.state.phase {
            Phase::Observing { .. } => false,
            Phase::Verifying { .. } => true,
            ref other => {
                return Step {
                    ignored: Some(Ignored::NotJudging(other.kind())),
                    ..Step::NOTHING
                };
            }
        };
        let (Some(rules), Some(counts)) = (self.rules.get(probe), self.state.counts.get_mut(probe))
        else {
            return Step::NOTHING;
        };
        let (verdict, cause) = match &m {
            Some(m) => {
                let (v, c) = judge(
                    m,
                    rules.success.as_ref(),
                    rules.failure.as_ref(),
                    rules.no_data,
                );
                (v, Some(c))
            }
            None => (Verdict::Error, None),
        };
        let mut exceeded = None;
        match verdict {
            Verdict::Pass => {
                counts.passes += 1;
                counts.consecutive_failures = 0;
                counts.consecutive_errors = 0;
            }
            Verdict::Fail => {
                counts.failures += 1;
                counts.consecutive_failures += 1;
                counts.consecutive_errors = 0;
                if let Some(l) = rules.failure_limit.filter(|l| counts.failures > *l) {
                    exceeded = Some((Limit::FailureLimit, l, counts.failures));
                } else if let Some(l) = rules
                    .consecutive_failure_limit
                    .filter(|l| counts.consecutive_failures > *l)
                {
                    exceeded = Some((
                        Limit::ConsecutiveFailureLimit,
                        l,
                        counts.consecutive_failures,
                    ));
                }
            }
            Verdict::Inconclusive => {
                counts.inconclusives += 1;
                counts.consecutive_errors = 0;
                if counts.inconclusives > rules.inconclusive_limit {
                    exceeded = Some((
                        Limit::InconclusiveLimit,
                        rules.inconclusive_limit,
                        counts.inconclusives,
                    ));
                }
            }
            Verdict::Error => {
                counts.consecutive_errors += 1;
                if counts.consecutive_errors > rules.consecutive_error_limit {
                    exceeded = Some((
                        Limit::ConsecutiveErrorLimit,
                        rules.consecutive_error_limit,
                        counts.consecutive_errors,
                    ));
                }
            }
        }
        let Some((limit, allowed, count)) = exceeded else {
            return Step {
                verdict: Some((verdict, cause)),
                ..Step::NOTHING
            };
        };
        let breach = Breach::Probe {
            probe: self.policy.probes[probe].name.clone(),
            limit,
            allowed,
            count,
            value: m.as_ref().and_then(|m| m.value),
            verdict_cause: cause,
            conditions: rules.describe(),
        };
        let mut step = match (limit, verifying) {
            (Limit::FailureLimit | Limit::ConsecutiveFailureLimit, false) => {
                self.on_breach(now, breach)
            }
            (_, true) => {
                let restored = self.judged_revision().clone();
                self.mark(&restored, RevisionHealth::Bad);
                self.escalate(
                    now,
                    format!("verification of restored revision {restored} failed: {breach}"),
                )
            }
            (_, false) => {
                let reason = format!(
                    "{breach}; humans must judge revision {}",
                    self.state.watch.revision
                );
                self.state.breach = Some(breach);
                self.escalate(now, reason)
            }
        };
        step.verdict = Some((verdict, cause));
        step
    }

    fn on_trigger(&mut self, now: Timestamp, key: String, summary: String) -> Step {
        if self.state.seen_triggers.contains(&key) {
            return Step {
                ignored: Some(Ignored::DuplicateTrigger),
                ..Step::NOTHING
            };
        }
        if !matches!(self.state.phase, Phase::Observing { .. }) {
            return Step {
                ignored: Some(Ignored::NotJudging(self.state.phase.kind())),
                ..Step::NOTHING
            };
        }
        self.state.seen_triggers.insert(key.clone());
        self.on_breach(now, Breach::Alert { key, summary })
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

    fn on_breach(&mut self, now: Timestamp, breach: Breach) -> Step {
        let watched = self.state.watch.revision.clone();
        self.state.breach = Some(breach.clone());
        self.mark(&watched, RevisionHealth::Bad);
        let to = self.rollback_candidate().cloned();
        if self.policy.dry_run {
            return self.step(
                Phase::DryRunBreached {
                    would_roll_back_to: to.clone(),
                    at: now,
                },
                Decision::WouldRollBack { to, reason: breach },
            );
        }
        if self.state.watch.irreversible && self.policy.on_irreversible == OnIrreversible::Freeze {
            let reason = format!(
                "{breach}; revision {watched} is marked irreversible, so it is frozen, not rolled back"
            );
            return self.step(
                Phase::Frozen {
                    reason: reason.clone(),
                    at: now,
                },
                Decision::Freeze { reason },
            );
        }
        let Some(to) = to else {
            return self.escalate(
                now,
                format!("{breach}; no revision to roll back to (none is known good or unmarked)"),
            );
        };
        let window_start = now.minus(self.policy.max_rollbacks_window);
        let recent = self
            .state
            .watch
            .rollbacks
            .iter()
            .filter(|t| **t > window_start)
            .count();
        if recent >= self.policy.max_rollbacks as usize {
            return self.escalate(
                now,
                format!(
                    "{breach}; target {} was already rolled back {recent} times within {} (max_rollbacks {})",
                    self.state.watch.target,
                    crate::time::format_duration(self.policy.max_rollbacks_window),
                    self.policy.max_rollbacks
                ),
            );
        }
        if let Some(last) = self.state.watch.rollbacks.iter().max()
            && now.since(*last) < self.policy.cooldown
        {
            return self.escalate(
                now,
                format!(
                    "{breach}; target {} was rolled back {} ago, within the cooldown of {}",
                    self.state.watch.target,
                    crate::time::format_duration(now.since(*last)),
                    crate::time::format_duration(self.policy.cooldown)
                ),
            );
        }
        if self.policy.approval == Approval::Manual {
            return self.step(
                Phase::AwaitingApproval {
                    to: to.clone(),
                    since: now,
                },
                Decision::AwaitApproval { to, reason: breach },
            );
        }
        self.start_rollback(now, to, breach, Actor::engine())
    }

    fn start_rollback(
        &mut self,
        now: Timestamp,
        to: RevisionId,
        reason: Breach,
        actor: Actor,
    ) -> Step {
        self.state.watch.rollbacks.push(now);
        let from = self.state.watch.revision.clone();
        self.step(
            Phase::RollingBack {
                to: to.clone(),
                by: actor.clone(),
                since: now,
            },
            Decision::Rollback {
                to,
                from,
                reason,
                actor,
            },
        )
    }

    fn on_command(&mut self, now: Timestamp, command: Command, actor: Actor) -> Step {
        let kind = command.kind();
        let phase = self.state.phase.kind();
        match (command, &self.state.phase) {
            (Command::Pause, Phase::Observing { bake_until }) => {
                let bake_left = bake_until.since(now);
                let t = self.set_phase(Phase::Paused {
                    since: now,
                    bake_left,
                });
                Step {
                    transition: Some(t),
                    ..Step::NOTHING
                }
            }
            (Command::Resume, Phase::Paused { bake_left, .. }) => {
                let bake_until = now.plus(*bake_left);
                self.state.next_measure_at = self.state.next_measure_at.max(now);
                let t = self.set_phase(Phase::Observing { bake_until });
                Step {
                    transition: Some(t),
                    ..Step::NOTHING
                }
            }
            (Command::Approve, Phase::AwaitingApproval { to, .. }) => {
                let to = to.clone();
                let reason = self.state.breach.clone().unwrap_or(Breach::Operator {
                    actor: actor.clone(),
                });
                self.start_rollback(now, to, reason, actor)
            }
            (Command::Promote, p)
                if !matches!(
                    p,
                    Phase::RollingBack { .. }
                        | Phase::Verifying { .. }
                        | Phase::RolledBack { .. }
                        | Phase::Promoted { .. }
                ) =>
            {
                let revision = self.state.watch.revision.clone();
                self.mark(&revision, RevisionHealth::Good);
                self.step(
                    Phase::Promoted {
                        at: now,
                        by: actor.clone(),
                    },
                    Decision::Promote { revision, actor },
                )
            }
            (Command::Rollback { to }, p)
                if !matches!(
                    p,
                    Phase::RollingBack { .. } | Phase::Verifying { .. } | Phase::RolledBack { .. }
                ) =>
            {
                self.manual_rollback(now, to, actor)
            }
            (
                Command::Pause
                | Command::Resume
                | Command::Approve
                | Command::Promote
                | Command::Rollback { .. },
                _,
            ) => {
                let reason = match (kind, phase) {
                    (CommandKind::Resume, _) => "it is not paused".to_owned(),
                    (CommandKind::Approve, _) => "no rollback is waiting for approval".to_owned(),
                    (CommandKind::Pause, p) if p.is_terminal() => {
                        format!("the watch has ended ({p})")
                    }
                    (_, PhaseKind::RollingBack) => "a rollback is in progress".to_owned(),
                    (_, PhaseKind::Verifying | PhaseKind::RolledBack) => {
                        format!(
                            "revision {} has already been rolled back",
                            self.state.watch.revision
                        )
                    }
                    (_, PhaseKind::Promoted) => "the revision is already promoted".to_owned(),
                    (_, p) => format!("not possible while {p}"),
                };
                self.reject(kind, reason)
            }
        }
    }

    fn manual_rollback(&mut self, now: Timestamp, to: Option<RevisionId>, actor: Actor) -> Step {
        let watched = self.state.watch.revision.clone();
        let to = match to {
            None => match self.rollback_candidate() {
                Some(to) => to.clone(),
                None => {
                    return self.reject(
                        CommandKind::Rollback,
                        "no revision to roll back to (none is known good or unmarked); name one"
                            .into(),
                    );
                }
            },
            Some(to) if to == watched => {
                return self.reject(
                    CommandKind::Rollback,
                    format!("{to} is the revision being rolled back from"),
                );
            }
            Some(to) => match self.state.watch.history.iter().find(|c| c.id == to) {
                None => {
                    return self.reject(
                        CommandKind::Rollback,
                        format!(
                            "revision {to} is not in the history of target {}",
                            self.state.watch.target
                        ),
                    );
                }
                Some(c) if c.health == RevisionHealth::Bad => {
                    return self.reject(
                        CommandKind::Rollback,
                        format!("revision {to} is marked bad"),
                    );
                }
                Some(_) => to,
            },
        };
        let breach = Breach::Operator {
            actor: actor.clone(),
        };
        self.state.breach = Some(breach.clone());
        self.mark(&watched, RevisionHealth::Bad);
        if self.policy.dry_run {
            return self.step(
                Phase::DryRunBreached {
                    would_roll_back_to: Some(to.clone()),
                    at: now,
                },
                Decision::WouldRollBack {
                    to: Some(to),
                    reason: breach,
                },
            );
        }
        self.start_rollback(now, to, breach, actor)
    }

    fn on_rollback_result(&mut self, now: Timestamp, error: Option<String>) -> Step {
        let Phase::RollingBack { to, .. } = &self.state.phase else {
            return Step {
                ignored: Some(Ignored::NotJudging(self.state.phase.kind())),
                ..Step::NOTHING
            };
        };
        let to = to.clone();
        if let Some(error) = error {
            return self.escalate(now, format!("rollback to {to} failed: {error}"));
        }
        if self.policy.verify.is_zero() {
            return self.step(
                Phase::RolledBack {
                    to: to.clone(),
                    at: now,
                },
                Decision::Complete {
                    restored: to,
                    verified: false,
                },
            );
        }
        self.state
            .counts
            .iter_mut()
            .for_each(|c| *c = ProbeCounts::default());
        self.state.next_measure_at = now.plus(self.policy.interval);
        let t = self.set_phase(Phase::Verifying {
            restored: to,
            until: now.plus(self.policy.verify),
        });
        Step {
            transition: Some(t),
            ..Step::NOTHING
        }
    }
}
