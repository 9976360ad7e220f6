//! Operator commands: pause, resume, approve, promote, roll back, each
//! checked against the phase.

use super::{Breach, Decision, Machine, Phase, PhaseKind, Step};
use crate::{Actor, Command, CommandKind, RevisionHealth, RevisionId, Timestamp};

impl Machine {
    pub(super) fn on_command(&mut self, now: Timestamp, command: Command, actor: Actor) -> Step {
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
                let reason = self
                    .state
                    .breach
                    .as_deref()
                    .cloned()
                    .unwrap_or(Breach::Operator {
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
        self.state.breach = Some(Box::new(breach.clone()));
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
}
