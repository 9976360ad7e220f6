//! One rollback carried out through the backend: check that the target
//! still runs what was judged, call the rollbacker with retries, wait for
//! convergence. Independent of the watch's machine, so the watch can answer
//! commands meanwhile.
//!
//! Write-ahead: each backend call's `action_started` record is written (and
//! flushed, by sinks that flush) before the call, and its outcome after, so
//! a kill during the call leaves a record of what may have changed.

use std::sync::Arc;

use super::{Inner, WatchSpec};
use crate::audit::{ActionKind, AuditEntry};
use crate::{
    Actor, Convergence, Error, ErrorKind, Result, RevisionId, RollbackOutcome, RollbackRequest,
    TargetId, Timestamp,
};

pub(super) struct RollbackJob {
    pub(super) engine: Arc<Inner>,
    pub(super) spec: WatchSpec,
    pub(super) target: TargetId,
    /// The watched revision, for the audit records.
    pub(super) watched: RevisionId,
    pub(super) actor: Actor,
}

impl RollbackJob {
    async fn audit(&self, entry: AuditEntry) {
        self.engine
            .record(&self.target, &self.watched, self.actor.clone(), entry)
            .await;
    }

    /// Roll the target from `from` back to `to` and wait until it converged.
    /// `resumed`: a restart interrupted this rollback, which is recorded
    /// with what the target ran when the engine looked again.
    pub(super) async fn run(
        &self,
        to: &RevisionId,
        from: &RevisionId,
        reason: String,
        decided_at: Timestamp,
        resumed: bool,
    ) -> Result<()> {
        let request = self.request(to, from, reason, decided_at, resumed).await?;
        self.call_rollbacker(&request).await?;
        if self.spec.rollbacker.capabilities().convergence {
            self.wait_converged(to).await?;
        }
        Ok(())
    }

    /// Read what the target runs now (retrying passing failures): a
    /// rollback must not undo a change nobody judged.
    async fn request(
        &self,
        to: &RevisionId,
        from: &RevisionId,
        reason: String,
        decided_at: Timestamp,
        resumed: bool,
    ) -> Result<RollbackRequest> {
        let target = self.spec.target.clone();
        let jitter = self.engine.jitter.clone();
        let (current, history) = self
            .spec
            .policy
            .retry
            .run(
                |_| {
                    let target = target.clone();
                    async move { Ok((target.current().await?, target.history().await?)) }
                },
                || jitter.unit(),
                |_, _, _| {},
            )
            .await
            .map_err(|e| {
                Error::new(
                    e.kind(),
                    format!("cannot read target {} before rolling it back", self.target),
                )
                .with_source(e)
            })?;
        if resumed {
            self.audit(AuditEntry::ActionResumed {
                action: ActionKind::Rollback,
                subject: to.clone(),
                found: current.id().clone(),
            })
            .await;
        }
        if current.id() != from && current.id() != to {
            let error = Error::new(
                ErrorKind::Conflict,
                format!(
                    "target {} now runs {}, not {from} that was judged: someone changed it meanwhile, so it was not rolled back to {to}; judge the new revision first",
                    self.target,
                    current.id()
                ),
            )
            .with_retryable(false);
            return Err(self.failed(ActionKind::Rollback, error).await);
        }
        let Some(entry) = history.into_iter().find(|e| e.revision.id() == to) else {
            let error = Error::not_found(format!(
                "revision {to} is no longer in the history of target {}",
                self.target
            ));
            return Err(self.failed(ActionKind::Rollback, error).await);
        };
        Ok(RollbackRequest::new(entry.revision, decided_at)
            .from(from.clone())
            .reason(reason)
            .actor(self.actor.clone()))
    }

    async fn failed(&self, action: ActionKind, error: Error) -> Error {
        let entry = AuditEntry::ActionFailed {
            action,
            error: error.full_message(),
        };
        self.audit(entry).await;
        error
    }

    /// Call the rollbacker, retrying retryable failures by the policy; each
    /// try is audited before it is made.
    async fn call_rollbacker(&self, request: &RollbackRequest) -> Result<RollbackOutcome> {
        let retry = self.spec.policy.retry;
        let subject = request.to.id().clone();
        let mut attempt = 0;
        let outcome = loop {
            attempt += 1;
            self.audit(AuditEntry::ActionStarted {
                action: ActionKind::Rollback,
                subject: subject.clone(),
                attempt,
            })
            .await;
            let e = match self.spec.rollbacker.rollback(request).await {
                Ok(outcome) => break outcome,
                Err(e) => e,
            };
            let wait = e
                .is_retryable()
                .then(|| retry.jittered(attempt, self.engine.jitter.unit()))
                .flatten();
            let Some(wait) = wait else {
                return Err(self.failed(ActionKind::Rollback, e).await);
            };
            tracing::warn!(attempt, error = %e.full_message(), "rollback failed, retrying in {wait:?}");
            self.audit(AuditEntry::ActionRetrying {
                action: ActionKind::Rollback,
                attempt,
                error: e.full_message(),
                wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            })
            .await;
            tokio::time::sleep(wait).await;
        };
        let detail = match &outcome {
            RollbackOutcome::AlreadyAt { detail } => {
                format!("already there, nothing changed: {detail}")
            }
            other => other.detail().to_owned(),
        };
        self.audit(AuditEntry::ActionSucceeded {
            action: ActionKind::Rollback,
            detail,
        })
        .await;
        Ok(outcome)
    }

    async fn wait_converged(&self, to: &RevisionId) -> Result<()> {
        self.audit(AuditEntry::ActionStarted {
            action: ActionKind::WaitConverged,
            subject: to.clone(),
            attempt: 1,
        })
        .await;
        let waited = self
            .spec
            .rollbacker
            .wait_converged(to, self.spec.policy.rollback_timeout)
            .await;
        let detail = match waited {
            Ok(Convergence::Converged) => {
                self.audit(AuditEntry::ActionSucceeded {
                    action: ActionKind::WaitConverged,
                    detail: format!("{to} converged"),
                })
                .await;
                return Ok(());
            }
            Ok(Convergence::TimedOut { detail }) | Ok(Convergence::Failed { detail }) => detail,
            Err(e) => {
                let error =
                    Error::new(e.kind(), format!("waiting for {to} to converge")).with_source(e);
                return Err(self.failed(ActionKind::WaitConverged, error).await);
            }
        };
        let error = Error::permanent(format!("{to} did not converge: {detail}"));
        Err(self.failed(ActionKind::WaitConverged, error).await)
    }
}
