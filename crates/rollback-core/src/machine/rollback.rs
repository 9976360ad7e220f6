//! Breaches and rollbacks: an alert or a probe's breach decides a rollback
//! (or a dry run's, a freeze, an approval to wait for, an escalation), and
//! the rollback's result ends it or starts its verification.

use super::{Breach, Decision, Ignored, Machine, Phase, ProbeCounts, Step};
use crate::{Actor, Approval, OnIrreversible, RevisionHealth, RevisionId, Timestamp};

impl Machine {
    pub(super) fn on_trigger(&mut self, now: Timestamp, key: String, summary: String) -> Step {
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

    pub(super) fn on_breach(&mut self, now: Timestamp, breach: Breach) -> Step {
        let watched = self.state.watch.revision.clone();
        self.state.breach = Some(Box::new(breach.clone()));
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

    pub(super) fn start_rollback(
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

    pub(super) fn on_rollback_result(&mut self, now: Timestamp, error: Option<String>) -> Step {
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
        self.state
            .trends
            .iter_mut()
            .for_each(crate::forecast::Trend::clear);
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
