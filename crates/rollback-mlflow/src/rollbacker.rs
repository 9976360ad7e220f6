//! Moves the alias back: the [`Rollbacker`] of a registered model.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rollback_core::steps::Steps;
use rollback_core::{
    Capabilities, Convergence, DryRun, Error, Result, RevisionId, RollbackOutcome, RollbackRequest,
    Rollbacker, TargetId,
};
use tracing::Instrument as _;

use crate::plan::RollbackPlan;
use crate::target::Model;
use crate::{MlflowTarget, PostRollbackHook};

/// Moves the alias of an [`MlflowTarget`] back to a known good version.
///
/// A rollback from version F to version T first reads, then writes only
/// what is missing ([`RollbackPlan`]):
/// - it checks that T exists and is `READY` (an unknown T is `NotFound`, and
///   nothing changes) and that the alias still points at the version the
///   engine judged (`request.from`; otherwise a `Conflict` not worth
///   retrying);
/// - it tags F bad (`rollback.health=bad`, the reason, and the decision
///   time), before the move, so a version left is always marked;
/// - it moves the alias to T: one MLflow call, so the alias is never half
///   moved;
/// - it records the move as one JSON tag `rollback.move.<alias>.<millis of
///   request.decided_at>` on T, then on F, with its hooks `pending` (or
///   `done` when there are none);
/// - it runs the post-rollback hooks (serving reload), then marks the
///   record's hooks `done` on T and on F.
///
/// Each write is a step of its [`Steps`]. Cut short anywhere, the same
/// request (the engine's retry, or the engine after a restart) finds the
/// alias on T, completes what is missing (the tags, the record on either
/// version, the hooks while the record says `pending`) and answers
/// `AlreadyAt`; the record's key and content come from the request, so
/// nothing is written twice. A request for the version the alias already
/// points at, whose rollback is complete, changes nothing.
///
/// MLflow has no server-side dry run: [`DryRun::Client`] reads and checks;
/// [`DryRun::Server`] is `Unsupported`.
#[derive(Debug, Clone)]
pub struct MlflowRollbacker {
    model: Arc<Model>,
    hooks: Vec<Arc<dyn PostRollbackHook>>,
    steps: Steps,
}

impl MlflowRollbacker {
    /// A rollbacker for `target`, with no post-rollback hooks.
    pub fn new(target: &MlflowTarget) -> Self {
        MlflowRollbacker {
            model: target.model.clone(),
            hooks: Vec::new(),
            steps: Steps::new(),
        }
    }

    /// Run `hook` after every move (in the order added).
    #[must_use]
    pub fn hook(mut self, hook: Arc<dyn PostRollbackHook>) -> Self {
        self.hooks.push(hook);
        self
    }

    /// Count the writes of each rollback with `steps`, which may stop them
    /// (see [`Steps::stop_after`]) to test what an interruption leaves.
    #[must_use]
    pub fn steps(mut self, steps: Steps) -> Self {
        self.steps = steps;
        self
    }

    /// What `request` would write, read from the registry; changes nothing.
    pub async fn plan(&self, request: &RollbackRequest) -> Result<RollbackPlan> {
        RollbackPlan::read(&self.model, &self.hooks, request).await
    }
}

#[async_trait]
impl Rollbacker for MlflowRollbacker {
    fn target(&self) -> &TargetId {
        &self.model.id
    }

    fn capabilities(&self) -> Capabilities {
        // No server-side dry run; convergence checks the alias and waits
        // for the hooks.
        Capabilities::NONE.with_convergence(true)
    }

    async fn rollback(&self, request: &RollbackRequest) -> Result<RollbackOutcome> {
        let span = tracing::info_span!(
            "mlflow_rollback",
            target = %self.model.id,
            to = %request.to.id(),
            dry_run = %request.dry_run
        );
        async {
            if request.dry_run == DryRun::Server {
                return Err(Error::unsupported(format!(
                    "target {}: MLflow has no server-side dry run; use a client dry run, which reads and checks without writing",
                    self.model.id
                )));
            }
            let plan = self.plan(request).await?;
            if request.dry_run == DryRun::Client {
                return Ok(RollbackOutcome::DryRun {
                    detail: format!(
                        "would {plan} (MLflow has no server-side dry run: checked by reading)"
                    ),
                });
            }
            tracing::debug!(%plan, "rollback plan");
            plan.execute(&self.model, &self.steps).await
        }
        .instrument(span)
        .await
    }

    async fn wait_converged(
        &self,
        revision: &RevisionId,
        timeout: Duration,
    ) -> Result<Convergence> {
        let m = &self.model;
        let current = m.pointed().await.map_err(|e| m.context(e))?;
        let current = current.map(|c| c.version);
        if current.as_deref() != Some(revision.as_str()) {
            return Ok(Convergence::Failed {
                detail: format!(
                    "{} of registered model {:?} points at {}, not at version {revision}",
                    m.pointer.describe(),
                    m.name,
                    current.map_or("nothing".to_owned(), |v| format!("version {v}"))
                ),
            });
        }
        let deadline = tokio::time::Instant::now() + timeout;
        for hook in &self.hooks {
            match hook
                .wait_ready(
                    revision,
                    deadline.saturating_duration_since(tokio::time::Instant::now()),
                )
                .await?
            {
                Convergence::Converged => {}
                other => return Ok(other),
            }
        }
        Ok(Convergence::Converged)
    }
}

fn _dyn_ok(_: Arc<dyn Rollbacker>) {}
