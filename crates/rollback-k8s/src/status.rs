//! Rollout status: kubectl's `rollout status` judgement of a Deployment, and
//! waiting for a rollout to converge.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::apps::v1::DeploymentStatus;
use kube::api::DynamicObject;
use rollback_core::time::{Poll, Waited, poll_until};
use rollback_core::{Convergence, ErrorKind, Result, Revision, RevisionId, TargetId};
use serde_json::Value;

use crate::target::{K8sDeployment, Snapshot};

/// The condition reason the controller sets when a rollout makes no progress
/// within `progressDeadlineSeconds`.
pub const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";

/// Where a rollout stands, as `kubectl rollout status` judges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutStatus {
    /// `metadata.generation`.
    pub generation: i64,
    /// `status.observedGeneration`.
    pub observed_generation: i64,
    /// `spec.replicas`, when set.
    pub desired: Option<i32>,
    /// `status.replicas`: pods of every revision.
    pub replicas: i32,
    /// `status.updatedReplicas`: pods of the current template.
    pub updated: i32,
    /// `status.availableReplicas`.
    pub available: i32,
    /// `status.unavailableReplicas`.
    pub unavailable: i32,
    /// The `Progressing` condition says `ProgressDeadlineExceeded`.
    pub deadline_exceeded: bool,
    /// The rollout is complete.
    pub done: bool,
    /// kubectl's line for this state (`Waiting for deployment "web" rollout
    /// to finish: 1 of 3 updated replicas are available...`).
    pub message: String,
}

impl RolloutStatus {
    /// Judge a Deployment the way kubectl's `DeploymentStatusViewer` does.
    pub fn of(deployment: &DynamicObject) -> Self {
        let name = deployment.metadata.name.clone().unwrap_or_default();
        let status: DeploymentStatus = deployment
            .data
            .get("status")
            .cloned()
            .and_then(|s| serde_json::from_value(s).ok())
            .unwrap_or_default();
        let generation = deployment.metadata.generation.unwrap_or_default();
        let observed_generation = status.observed_generation.unwrap_or_default();
        let desired = deployment
            .data
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .and_then(|r| i32::try_from(r).ok());
        let deadline_exceeded = status.conditions.iter().flatten().any(|c| {
            c.type_ == "Progressing" && c.reason.as_deref() == Some(PROGRESS_DEADLINE_EXCEEDED)
        });
        let replicas = status.replicas.unwrap_or_default();
        let updated = status.updated_replicas.unwrap_or_default();
        let available = status.available_replicas.unwrap_or_default();
        let unavailable = status.unavailable_replicas.unwrap_or_default();
        let waiting = format!("Waiting for deployment {name:?} rollout to finish: ");
        let (done, message) = if generation > observed_generation {
            (
                false,
                "Waiting for deployment spec update to be observed...".to_owned(),
            )
        } else if deadline_exceeded {
            (
                false,
                format!("deployment {name:?} exceeded its progress deadline"),
            )
        } else if let Some(d) = desired.filter(|d| updated < *d) {
            (
                false,
                format!("{waiting}{updated} out of {d} new replicas have been updated..."),
            )
        } else if replicas > updated {
            (
                false,
                format!(
                    "{waiting}{} old replicas are pending termination...",
                    replicas - updated
                ),
            )
        } else if available < updated {
            (
                false,
                format!("{waiting}{available} of {updated} updated replicas are available..."),
            )
        } else {
            (true, format!("deployment {name:?} successfully rolled out"))
        };
        RolloutStatus {
            generation,
            observed_generation,
            desired,
            replicas,
            updated,
            available,
            unavailable,
            deadline_exceeded: deadline_exceeded && generation <= observed_generation,
            done,
            message,
        }
    }
}

impl K8sDeployment {
    /// The rollout status now.
    pub async fn rollout_status(&self) -> Result<RolloutStatus> {
        Ok(RolloutStatus::of(&self.api.deployment().await?))
    }

    /// Wait until the rollout converges, like `kubectl rollout status`:
    /// the controller observed the latest generation, every replica is
    /// updated and available, no old replica is left. With `revision`, the
    /// Deployment must also run that revision: when another revision
    /// replaces it, the wait ends `Failed`. `ProgressDeadlineExceeded` ends
    /// it `Failed`; the `timeout` ends it `TimedOut` with the last status.
    /// `on_progress` sees every status that differs from the one before.
    /// Transient read failures are retried until the timeout.
    #[tracing::instrument(name = "k8s_wait_rollout", skip_all, fields(target = %self.id, revision = ?revision))]
    pub async fn wait_rollout(
        &self,
        revision: Option<&RevisionId>,
        timeout: Duration,
        on_progress: impl FnMut(&RolloutStatus) + Send,
    ) -> Result<Convergence> {
        wait_rollout_of(
            &self.id,
            timeout,
            self.poll_interval,
            on_progress,
            || async {
                let snapshot = self.snapshot().await?;
                let status = RolloutStatus::of(&snapshot.deployment);
                let judged = self.judge(&snapshot, status.clone(), revision);
                Ok((status, judged))
            },
        )
        .await
    }

    /// One look of [`K8sDeployment::wait_rollout`]: converged, failed, or
    /// how far the rollout got.
    fn judge(
        &self,
        snapshot: &Snapshot,
        status: RolloutStatus,
        revision: Option<&RevisionId>,
    ) -> Poll<Convergence> {
        let current = snapshot.current.map(|i| &snapshot.revisions[i]);
        if let (Some(want), Some(now)) = (revision, current)
            && now.id() != want
        {
            return Poll::Ready(Convergence::Failed {
                detail: format!(
                    "Deployment {}/{} now runs {} (pod-template-hash {}), not {want}: another change replaced it",
                    self.namespace(),
                    self.name(),
                    now.label(),
                    now.id()
                ),
            });
        }
        if status.deadline_exceeded {
            return Poll::Ready(Convergence::Failed {
                detail: status.message,
            });
        }
        let on_revision = revision.is_none() || current.is_some();
        if status.done && on_revision {
            Poll::Ready(Convergence::Converged)
        } else {
            Poll::Pending(status.message)
        }
    }
}

/// A rollout's status, as kubectl words it in the progress log.
pub(crate) trait Progress: Clone + PartialEq + Send {
    fn message(&self) -> &str;
}

impl Progress for RolloutStatus {
    fn message(&self) -> &str {
        &self.message
    }
}

/// Look at a rollout every `every` until a look judges it converged or
/// failed, or `timeout` passes (`TimedOut`, with the last progress).
/// `on_progress` sees every status that differs from the one before; a
/// look that fails transiently is tried again. The wait of Deployments and
/// of StatefulSets and DaemonSets alike.
pub(crate) async fn wait_rollout_of<S, L, Fut>(
    target: &TargetId,
    timeout: Duration,
    every: Duration,
    on_progress: impl FnMut(&S) + Send,
    look: L,
) -> Result<Convergence>
where
    S: Progress,
    L: Fn() -> Fut + Sync,
    Fut: Future<Output = Result<(S, Poll<Convergence>)>> + Send,
{
    let seen = Mutex::new((None::<S>, on_progress));
    let (seen, look) = (&seen, &look);
    let waited = poll_until(timeout, every, move || async move {
        let (status, judged) = match look().await {
            Ok(looked) => looked,
            Err(e) if e.kind() == ErrorKind::Transient => {
                tracing::warn!(target_id = %target, error = %e.message(), "reading rollout status failed; retrying");
                return Ok(Poll::Pending(format!("last read failed: {}", e.message())));
            }
            Err(e) => return Err(e),
        };
        {
            let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            let (last, on_progress) = &mut *seen;
            if last.as_ref() != Some(&status) {
                tracing::debug!(target_id = %target, status = %status.message(), "rollout progress");
                on_progress(&status);
                *last = Some(status);
            }
        }
        Ok(judged)
    })
    .await?;
    Ok(match waited {
        Waited::Ready(convergence) => convergence,
        Waited::TimedOut(detail) => Convergence::TimedOut { detail },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(generation: i64, spec_replicas: i64, status: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "generation": generation},
            "spec": {"replicas": spec_replicas},
            "status": status,
        }))
        .expect("a valid deployment")
    }

    #[test]
    fn follows_kubectls_status_viewer() {
        let cases = [
            (
                deployment(2, 3, json!({"observedGeneration": 1})),
                false,
                "Waiting for deployment spec update to be observed...",
            ),
            (
                deployment(
                    2,
                    3,
                    json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1}),
                ),
                false,
                "Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated...",
            ),
            (
                deployment(
                    2,
                    3,
                    json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 3}),
                ),
                false,
                "Waiting for deployment \"web\" rollout to finish: 1 old replicas are pending termination...",
            ),
            (
                deployment(
                    2,
                    3,
                    json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 2}),
                ),
                false,
                "Waiting for deployment \"web\" rollout to finish: 2 of 3 updated replicas are available...",
            ),
            (
                deployment(
                    2,
                    3,
                    json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}),
                ),
                true,
                "deployment \"web\" successfully rolled out",
            ),
        ];
        for (d, done, message) in cases {
            let s = RolloutStatus::of(&d);
            assert_eq!((s.done, s.message.as_str()), (done, message));
            assert!(!s.deadline_exceeded);
        }
        let stuck = RolloutStatus::of(&deployment(
            2,
            3,
            json!({"observedGeneration": 2, "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}),
        ));
        assert!(stuck.deadline_exceeded && !stuck.done);
        assert_eq!(
            stuck.message,
            "deployment \"web\" exceeded its progress deadline"
        );
    }
}
