//! The in-memory rollbacker: it moves an [`InMemoryTarget`], records every
//! call, and fails when told to.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::{InMemoryTarget, RollbackRecord, lock};
use crate::steps::Steps;
use crate::{
    Capabilities, Convergence, DryRun, Error, ErrorKind, Result, RevisionId, RollbackOutcome,
    RollbackRequest, Rollbacker, Target, TargetId,
};

/// One call an [`InMemoryRollbacker`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRollback {
    /// The revision asked for.
    pub to: RevisionId,
    /// The revision rolled away from, as the caller saw it.
    pub from: Option<RevisionId>,
    /// The request's [`reason`](RollbackRequest::reason); from the engine,
    /// the breach in words.
    pub reason: String,
    /// Who asked.
    pub actor: crate::Actor,
    /// Whether it was a dry run, and which.
    pub dry_run: DryRun,
    /// What came of it: the outcome, or the error's message.
    pub result: std::result::Result<RollbackOutcome, String>,
}

#[derive(Debug, Default)]
struct RollbackerState {
    calls: Vec<RecordedRollback>,
    failures: VecDeque<ErrorKind>,
    fail_always: Option<ErrorKind>,
    converge_after: Duration,
    convergence_fails: Option<String>,
    /// Set by [`InMemoryRollbacker::steps`]; otherwise each rollback counts
    /// its steps on a counter of its own that never interrupts.
    steps: Option<Steps>,
}

/// Rolls an [`InMemoryTarget`] back, records every call, and can be told to fail.
#[derive(Debug, Clone)]
pub struct InMemoryRollbacker {
    target: InMemoryTarget,
    /// Made on the first call or setting: most rollbackers of a policy
    /// test with thousands of targets are never called (136 bytes each).
    state: Arc<Mutex<Option<Box<RollbackerState>>>>,
}

impl InMemoryRollbacker {
    /// A rollbacker of `target`.
    pub fn new(target: &InMemoryTarget) -> Self {
        InMemoryRollbacker {
            target: target.clone(),
            state: Arc::default(),
        }
    }

    /// Whether its state has been made.
    #[cfg(test)]
    pub(super) fn holds_state(&self) -> bool {
        lock(&self.state).is_some()
    }

    fn with<R>(&self, f: impl FnOnce(&mut RollbackerState) -> R) -> R {
        f(lock(&self.state).get_or_insert_default())
    }

    /// Make the next `n` calls fail with an error of `kind` (before changing anything).
    pub fn fail_next(&self, n: usize, kind: ErrorKind) {
        self.with(|s| s.failures.extend(std::iter::repeat_n(kind, n)));
    }

    /// Make every call fail with an error of `kind`; `None` to stop.
    pub fn fail_always(&self, kind: Option<ErrorKind>) {
        self.with(|s| s.fail_always = kind);
    }

    /// Make `wait_converged` take this long (virtual time under a paused tokio clock).
    pub fn converge_after(&self, d: Duration) {
        self.with(|s| s.converge_after = d);
    }

    /// Make `wait_converged` report that convergence failed.
    pub fn fail_convergence(&self, detail: Option<String>) {
        self.with(|s| s.convergence_fails = detail);
    }

    /// Count the steps of each rollback with `steps` (and stop after as many
    /// as it allows: see [`Steps::stop_after`]). A rollback takes two: move
    /// the target, then keep its record.
    pub fn steps(&self, steps: Steps) {
        self.with(|s| s.steps = Some(steps));
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<RecordedRollback> {
        lock(&self.state)
            .as_ref()
            .map(|s| s.calls.clone())
            .unwrap_or_default()
    }

    /// The calls that changed the target.
    pub fn performed(&self) -> Vec<RecordedRollback> {
        self.calls()
            .into_iter()
            .filter(|c| matches!(c.result, Ok(RollbackOutcome::RolledBack { .. })))
            .collect()
    }
}

#[async_trait]
impl Rollbacker for InMemoryRollbacker {
    fn target(&self) -> &TargetId {
        self.target.id()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE.with_convergence(true)
    }

    async fn rollback(&self, request: &RollbackRequest) -> Result<RollbackOutcome> {
        let to = request.to.id().clone();
        let id = self.target.id().clone();
        let (injected, steps) = self.with(|s| {
            (
                s.failures.pop_front().or(s.fail_always),
                s.steps.clone().unwrap_or_default(),
            )
        });
        let result = match injected {
            Some(kind) => Err(Error::new(
                kind,
                format!("injected {kind} failure rolling back target {id} to {to}"),
            )),
            None if request.dry_run == DryRun::Server => Err(Error::unsupported(format!(
                "target {id} is in memory: there is no server to ask for a dry run; use a client dry run"
            ))),
            None if request.dry_run.is_dry() => {
                self.target
                    .find_revision(&to)
                    .map(|_| RollbackOutcome::DryRun {
                        detail: format!("would roll back {id} to {to}"),
                    })
            }
            None => self.roll(request, &steps).await,
        };
        let call = RecordedRollback {
            to,
            from: request.from.clone(),
            reason: request.reason.clone(),
            actor: request.actor.clone(),
            dry_run: request.dry_run,
            result: result.as_ref().map(Clone::clone).map_err(|e| e.to_string()),
        };
        self.with(|s| s.calls.push(call));
        result
    }

    async fn wait_converged(
        &self,
        revision: &RevisionId,
        timeout: Duration,
    ) -> Result<Convergence> {
        let (after, fails) = lock(&self.state)
            .as_ref()
            .map_or((Duration::ZERO, None), |s| {
                (s.converge_after, s.convergence_fails.clone())
            });
        if let Some(detail) = fails {
            return Ok(Convergence::Failed { detail });
        }
        if after > timeout {
            tokio::time::sleep(timeout).await;
            return Ok(Convergence::TimedOut {
                detail: format!(
                    "{revision} needs {} to converge",
                    crate::time::format_duration(after)
                ),
            });
        }
        tokio::time::sleep(after).await;
        if &self.target.current_id() == revision {
            Ok(Convergence::Converged)
        } else {
            Ok(Convergence::Failed {
                detail: format!(
                    "target runs {} instead of {revision}",
                    self.target.current_id()
                ),
            })
        }
    }
}

impl InMemoryRollbacker {
    /// Move the target, then keep the record: two steps, either of which an
    /// interruption may cut short; asked again, the rollback completes.
    async fn roll(&self, request: &RollbackRequest, steps: &Steps) -> Result<RollbackOutcome> {
        let id = self.target.id();
        let to = request.to.id();
        self.target.find_revision(to)?;
        steps.step_paced("move the target").await?;
        let changed = self.target.roll_to(to)?;
        steps.step_paced("keep the rollback record").await?;
        self.target.keep_record(RollbackRecord {
            decided_at: request.decided_at,
            from: request.from.clone(),
            to: to.clone(),
            reason: request.reason.clone(),
        });
        Ok(if changed {
            RollbackOutcome::RolledBack {
                detail: format!("rolled {id} back to {to}"),
            }
        } else {
            RollbackOutcome::AlreadyAt {
                detail: format!("{id} already runs {to}"),
            }
        })
    }
}
