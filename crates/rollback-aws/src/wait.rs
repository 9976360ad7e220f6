//! Waiting on CodeDeploy: for a stopped deployment to stop, for CodeDeploy
//! to name its rollback deployment, for a deployment to reach a terminal
//! status. Each is one [`poll_until`] over `GetDeployment`.

use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_codedeploy::types::{DeploymentInfo, DeploymentStatus};
use rollback_core::time::{Poll, Waited, format_duration, poll_until};
use rollback_core::{Convergence, Error, Result, Revision, RevisionId};
use tokio::time::Instant;

use crate::history::{self, is_terminal, status_str};
use crate::progress::DeploymentProgress;
use crate::target::CodeDeployTarget;

/// What CodeDeploy did after `StopDeployment(autoRollbackEnabled)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AutoRollback {
    /// It created this rollback deployment (named in `rollbackInfo`).
    Started(String),
    /// It stopped the deployment and said why it would not roll back.
    Declined,
}

/// Wait, up to the stop timeout, for CodeDeploy to name its rollback of the
/// stopped deployment in `rollbackInfo`. Running out of time is a transient
/// error: asked again, the rollback sees the group as it is by then.
pub(crate) async fn auto_rollback(t: &CodeDeployTarget, stopped: &str) -> Result<AutoRollback> {
    let timeout = t.settings().stop_timeout;
    let waited = poll_until(timeout, t.settings().poll_interval, || async {
        let d = t.api().get(stopped).await.map_err(|e| {
            e.into_error(&format!(
                "following the rollback of deployment {stopped} in {}",
                t.describe()
            ))
        })?;
        let info = d.rollback_info();
        if let Some(id) = info
            .and_then(|i| i.rollback_deployment_id())
            .filter(|id| !id.is_empty())
        {
            return Ok(Poll::Ready(AutoRollback::Started(id.to_owned())));
        }
        let declined = info
            .and_then(|i| i.rollback_message())
            .filter(|m| !m.is_empty());
        if let (true, Some(message)) = (is_terminal(d.status()), declined) {
            tracing::warn!(
                target: "rollback_aws",
                deployment = stopped,
                message,
                "CodeDeploy stopped the deployment without rolling back"
            );
            return Ok(Poll::Ready(AutoRollback::Declined));
        }
        Ok(Poll::Pending(status_str(&d).to_owned()))
    })
    .await?;
    match waited {
        Waited::Ready(found) => Ok(found),
        Waited::TimedOut(status) => Err(Error::transient(format!(
            "stopped deployment {stopped} of {} with autoRollbackEnabled, but CodeDeploy named no rollback deployment within {} (status {status}); retrying the rollback deploys the revision",
            t.describe(),
            format_duration(timeout),
        ))),
    }
}

/// Wait, up to the stop timeout, for a stopped deployment to reach a
/// terminal status, so that the group takes a new deployment.
pub(crate) async fn stopped(t: &CodeDeployTarget, id: &str) -> Result<()> {
    let timeout = t.settings().stop_timeout;
    let waited = poll_until(timeout, t.settings().poll_interval, || async {
        let d = t.api().get(id).await.map_err(|e| {
            e.into_error(&format!(
                "waiting for deployment {id} of {} to stop",
                t.describe()
            ))
        })?;
        Ok(if is_terminal(d.status()) {
            Poll::Ready(())
        } else {
            Poll::Pending(status_str(&d).to_owned())
        })
    })
    .await?;
    match waited {
        Waited::Ready(()) => Ok(()),
        Waited::TimedOut(status) => Err(Error::transient(format!(
            "deployment {id} of {} is still {status} {} after it was asked to stop; retry the rollback once it has stopped",
            t.describe(),
            format_duration(timeout),
        ))),
    }
}

/// Follow deployment `id` until it reaches a terminal status or `timeout`
/// passes, reporting its progress each time it changes. Failed reads that
/// may pass are polled through (the time-out says the last one failed).
pub(crate) async fn converged(
    t: &CodeDeployTarget,
    id: &str,
    revision: &RevisionId,
    timeout: Duration,
) -> Result<Convergence> {
    let start = Instant::now();
    let last: Mutex<Option<DeploymentProgress>> = Mutex::new(None);
    let last_words = || {
        last.lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_else(|| format!("deployment {id}"))
    };
    let waited = poll_until(timeout, t.settings().poll_interval, || async {
        let d = match t.api().get(id).await {
            Ok(d) => d,
            Err(e) => {
                let e = e.into_error(&format!("reading deployment {id} of {}", t.describe()));
                if !e.is_retryable() {
                    return Err(e);
                }
                tracing::warn!(target: "rollback_aws", error = %e.full_message(), "reading the deployment failed; polling on");
                return Ok(Poll::Pending(format!(
                    "{} (last read failed: {})",
                    last_words(),
                    e.message()
                )));
            }
        };
        let progress = DeploymentProgress::of(&d, start.elapsed());
        let changed = {
            let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
            let changed = last.as_ref().is_none_or(|l| !l.same_state(&progress));
            *last = Some(progress.clone());
            changed
        };
        if changed {
            t.report(&progress);
        }
        Ok(match terminal(&d, id, revision, &progress) {
            Some(done) => Poll::Ready(done),
            None => Poll::Pending(progress.to_string()),
        })
    })
    .await?;
    Ok(match waited {
        Waited::Ready(done) => done,
        Waited::TimedOut(detail) => Convergence::TimedOut { detail },
    })
}

/// What a deployment in a terminal status says of convergence on `revision`.
fn terminal(
    d: &DeploymentInfo,
    id: &str,
    revision: &RevisionId,
    progress: &DeploymentProgress,
) -> Option<Convergence> {
    match d.status() {
        Some(DeploymentStatus::Succeeded) => {
            let installed = history::revision_of(d);
            Some(if installed.id() == revision {
                Convergence::Converged
            } else {
                Convergence::Failed {
                    detail: format!(
                        "deployment {id} succeeded but installed {}, not {revision}",
                        installed.id()
                    ),
                }
            })
        }
        Some(DeploymentStatus::Failed | DeploymentStatus::Stopped) => {
            let why = d
                .error_information()
                .map(|e| {
                    format!(
                        "{}: {}",
                        e.code().map(|c| c.as_str()).unwrap_or("no error code"),
                        e.message().unwrap_or_default()
                    )
                })
                .filter(|s| s != "no error code: ")
                .unwrap_or_else(|| "CodeDeploy gave no reason".into());
            Some(Convergence::Failed {
                detail: format!("{progress}; {why}"),
            })
        }
        _ => None,
    }
}
