//! Moves the alias back: the [`Rollbacker`] of a registered model.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use rollback_core::{
    Capabilities, Convergence, Error, ErrorKind, Result, RevisionId, RollbackOutcome,
    RollbackRequest, Rollbacker, Timestamp,
};
use tracing::Instrument as _;

use crate::revision::{MAX_REASON_CHARS, clip, tags};
use crate::target::{Model, version_number};
use crate::{AliasMove, MlflowTarget, Pointer, PostRollbackHook};

/// Moves the alias of an [`MlflowTarget`] back to a known good version.
///
/// A rollback from version F to version T:
/// 1. checks that T exists and is `READY` (an unknown T is `NotFound`, and
///    nothing changes), and that the alias still points at the version the
///    engine judged (`request.from`; otherwise `Conflict`);
/// 2. tags F bad (`rollback.health=bad`, with the reason and time) — true
///    whatever happens next, and harmless if the move fails;
/// 3. moves the alias to T: one MLflow call, so the alias is never half moved;
/// 4. records the move (from, to, reason, actor, time) as one JSON tag
///    `rollback.move.<alias>.<millis>` on both T and F. If that fails, the
///    alias has moved all the same: the outcome is `RolledBack` and its
///    detail, and a warning, say which record is missing;
/// 5. runs the post-rollback hooks (serving reload). If one fails, the error
///    says that the alias moved; the next request for T (answered
///    `AlreadyAt`) runs the hooks again.
///
/// A request for the version the alias already points at changes nothing and
/// is `AlreadyAt`. MLflow has no dry run, so a dry run reads and checks only.
#[derive(Debug, Clone)]
pub struct MlflowRollbacker {
    model: Arc<Model>,
    hooks: Vec<Arc<dyn PostRollbackHook>>,
    /// The move whose hooks failed, to run them again.
    unfinished: Arc<Mutex<Option<AliasMove>>>,
}

impl MlflowRollbacker {
    /// A rollbacker for `target`.
    pub fn new(target: &MlflowTarget) -> Self {
        MlflowRollbacker {
            model: target.model.clone(),
            hooks: Vec::new(),
            unfinished: Arc::new(Mutex::new(None)),
        }
    }

    /// Run `hook` after every move (in the order added).
    #[must_use]
    pub fn hook(mut self, hook: Arc<dyn PostRollbackHook>) -> Self {
        self.hooks.push(hook);
        self
    }

    fn unfinished(&self) -> Option<AliasMove> {
        self.unfinished
            .lock()
            .map(|g| g.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    fn set_unfinished(&self, m: Option<AliasMove>) {
        match self.unfinished.lock() {
            Ok(mut g) => *g = m,
            Err(p) => *p.into_inner() = m,
        }
    }

    async fn run_hooks(&self, event: &AliasMove) -> Result<()> {
        for hook in &self.hooks {
            if let Err(e) = hook.after_rollback(event).await {
                self.set_unfinished(Some(event.clone()));
                let from = event.from.as_deref().unwrap_or("none");
                return Err(Error::new(
                    e.kind(),
                    format!(
                        "target {}: {} moved from version {from} to version {}, but the post-rollback hook {} failed: {}; serving may still run the old version until it reloads (a repeated rollback to version {} runs the hooks again)",
                        self.model.id,
                        self.model.pointer.describe(),
                        event.to,
                        hook.name(),
                        e.message(),
                        event.to,
                    ),
                )
                .with_source(e));
            }
        }
        self.set_unfinished(None);
        Ok(())
    }

    async fn rollback_in_span(&self, request: &RollbackRequest) -> Result<RollbackOutcome> {
        let m = &self.model;
        if request.target != m.id {
            return Err(Error::invalid(format!(
                "the rollbacker of target {} was asked to roll back target {}",
                m.id, request.target
            )));
        }
        let pointer = m.pointer.describe();

        let to_number = version_number(m, request.to.id())?;
        let to = m
            .client
            .get_model_version(&m.name, &to_number)
            .await
            .map_err(|e| m.context(e))?;
        if !to.is_ready() {
            return Err(Error::invalid(format!(
                "target {}: version {} of registered model {:?} is {} and cannot serve; choose a READY version",
                m.id,
                to.version,
                m.name,
                to.status.as_deref().unwrap_or("not ready")
            )));
        }
        let current = m.pointed().await.map_err(|e| m.context(e))?;
        let current_version = current.as_ref().map(|c| c.version.clone());

        if current_version.as_deref() == Some(to.version.as_str()) {
            if let Some(pending) = self
                .unfinished()
                .filter(|p| p.to == to.version && !request.dry_run)
            {
                self.run_hooks(&pending).await?;
                return Ok(RollbackOutcome::AlreadyAt {
                    detail: format!(
                        "{pointer} of registered model {:?} already points at version {}; the post-rollback hooks that had failed ran again",
                        m.name, to.version
                    ),
                });
            }
            return Ok(RollbackOutcome::AlreadyAt {
                detail: format!(
                    "{pointer} of registered model {:?} already points at version {}",
                    m.name, to.version
                ),
            });
        }
        if let (Some(expected), Some(actual)) = (&request.from, &current_version)
            && expected.as_str() != actual
        {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "target {}: {pointer} now points at version {actual}, not at version {expected} that was judged; someone moved it meanwhile, so nothing was changed: judge the new version first",
                    m.id
                ),
            )
            // Re-reading will find the same move: retrying cannot help.
            .with_retryable(false));
        }
        let from_text = current_version
            .as_deref()
            .map_or("unset".to_owned(), |v| format!("version {v}"));
        if request.dry_run {
            return Ok(RollbackOutcome::DryRun {
                detail: format!(
                    "would move {pointer} of registered model {:?} from {from_text} to version {}{} (MLflow has no server-side dry run: checked by reading)",
                    m.name,
                    to.version,
                    if current_version.is_some() {
                        format!(" and tag {from_text} bad")
                    } else {
                        String::new()
                    }
                ),
            });
        }

        let reason = clip(&request.reason, MAX_REASON_CHARS);
        let now = SystemTime::now();
        let at_ms = Timestamp::from(now).as_millis();
        let at = humantime::format_rfc3339_millis(now).to_string();

        // 2. Tag the version left bad: true whether or not the move succeeds.
        if let Some(from) = &current_version {
            for (key, value) in [
                (tags::HEALTH_REASON, reason.as_str()),
                (tags::HEALTH_AT, at.as_str()),
                (tags::HEALTH, "bad"),
            ] {
                m.client
                    .set_model_version_tag(&m.name, from, key, value)
                    .await
                    .map_err(|e| m.context(e))?;
            }
        }

        // 3. Move the alias (or stage): the one change that matters, atomic in MLflow.
        self.move_pointer(&to.version).await?;
        tracing::info!(from = ?current_version, to = %to.version, actor = %request.actor, "moved {pointer}");

        // 4. Record the move on both versions.
        let event = AliasMove {
            model: m.name.clone(),
            alias: match &m.pointer {
                Pointer::Alias(a) => Some(a.clone()),
                Pointer::Stage(_) => None,
            },
            stage: match &m.pointer {
                Pointer::Stage(s) => Some(s.clone()),
                Pointer::Alias(_) => None,
            },
            from: current_version.clone(),
            to: to.version.clone(),
            reason,
            actor: request.actor.to_string(),
            at,
            at_ms,
        };
        let key = format!("{}{}.{at_ms}", tags::MOVE_PREFIX, m.pointer.tag_component());
        let mut missing = Vec::new();
        match serde_json::to_string(&event) {
            Ok(record) => {
                for version in [Some(&to.version), current_version.as_ref()]
                    .into_iter()
                    .flatten()
                {
                    if let Err(e) = m
                        .client
                        .set_model_version_tag(&m.name, version, &key, &record)
                        .await
                    {
                        tracing::warn!(version = %version, key = %key, error = %e, "the alias moved but its record could not be written");
                        missing.push(format!("version {version}: {e}"));
                    }
                }
            }
            Err(e) => missing.push(format!("encoding the record: {e}")),
        }
        let mut detail = format!(
            "moved {pointer} of registered model {:?} from {from_text} to version {}{}; recorded as tag {key}",
            m.name,
            to.version,
            if current_version.is_some() {
                format!(" and tagged {from_text} bad")
            } else {
                String::new()
            }
        );
        if !missing.is_empty() {
            detail.push_str(&format!(
                "; WARNING: the move record is missing on {} (the alias history in MLflow lacks this move)",
                missing.join("; ")
            ));
        }

        // 5. Reload serving.
        self.run_hooks(&event).await?;
        Ok(RollbackOutcome::RolledBack { detail })
    }

    async fn move_pointer(&self, to: &str) -> Result<()> {
        let m = &self.model;
        match &m.pointer {
            Pointer::Alias(alias) => m.client.set_alias(&m.name, alias, to).await,
            Pointer::Stage(stage) => {
                #[allow(deprecated)]
                let r = m
                    .client
                    .transition_stage(&m.name, to, stage, true)
                    .await
                    .map(|_| ());
                r
            }
        }
        .map_err(|e| m.context(e))
    }
}

#[async_trait]
impl Rollbacker for MlflowRollbacker {
    fn capabilities(&self) -> Capabilities {
        // No server-side dry run; the alias moves atomically, nothing to wait for.
        Capabilities::NONE
    }

    async fn rollback(&self, request: &RollbackRequest) -> Result<RollbackOutcome> {
        let span = tracing::info_span!(
            "mlflow_rollback",
            target = %self.model.id,
            to = %request.to.id(),
            dry_run = request.dry_run
        );
        self.rollback_in_span(request).instrument(span).await
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
