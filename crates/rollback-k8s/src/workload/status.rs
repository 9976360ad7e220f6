//! Rollout status of a StatefulSet or DaemonSet, as kubectl's `rollout
//! status` judges it (`StatefulSetStatusViewer`, `DaemonSetStatusViewer`),
//! and waiting for a rollout to converge.

use std::time::Duration;

use kube::api::DynamicObject;
use rollback_core::time::Poll;
use rollback_core::{Convergence, Result, Revision, RevisionId};
use serde_json::Value;

use super::{K8sWorkload, WorkloadKind, WorkloadSnapshot};
use crate::status::{Progress, wait_rollout_of};

/// Where a StatefulSet's or DaemonSet's rollout stands, as `kubectl rollout
/// status` judges it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkloadStatus {
    /// StatefulSet or DaemonSet.
    pub kind: WorkloadKind,
    /// `metadata.generation`.
    pub generation: i64,
    /// `status.observedGeneration`.
    pub observed_generation: i64,
    /// The pods wanted: a StatefulSet's `spec.replicas`, a DaemonSet's
    /// `status.desiredNumberScheduled`.
    pub desired: Option<i32>,
    /// Pods of the current template: `status.updatedReplicas`, or a
    /// DaemonSet's `status.updatedNumberScheduled`.
    pub updated: i32,
    /// Pods ready: a StatefulSet's `status.readyReplicas`, a DaemonSet's
    /// `status.numberAvailable`.
    pub ready: i32,
    /// Pods wanted but not available: a StatefulSet's `spec.replicas` less
    /// its `status.availableReplicas` (`readyReplicas` before Kubernetes
    /// 1.22), a DaemonSet's `status.numberUnavailable`.
    pub unavailable: i32,
    /// A StatefulSet's `spec.updateStrategy.rollingUpdate.partition`: pods
    /// with an ordinal below it keep the old revision.
    pub partition: Option<i32>,
    /// A StatefulSet's `status.currentRevision` (the ControllerRevision of
    /// the pods below the partition).
    pub current_revision: Option<String>,
    /// A StatefulSet's `status.updateRevision` (the ControllerRevision of
    /// the current template).
    pub update_revision: Option<String>,
    /// The update strategy is not `RollingUpdate` (`OnDelete`): kubectl
    /// reports no rollout status, since pods change only when deleted.
    pub on_delete: bool,
    /// The rollout is complete.
    pub done: bool,
    /// kubectl's line for this state (`Waiting for partitioned roll out to
    /// finish: 1 out of 3 new pods have been updated...`).
    pub message: String,
}

fn int(object: &DynamicObject, pointer: &str) -> Option<i64> {
    object.data.pointer(pointer).and_then(Value::as_i64)
}

fn int32(object: &DynamicObject, pointer: &str) -> i32 {
    int(object, pointer)
        .and_then(|v| i32::try_from(v).ok())
        .unwrap_or_default()
}

impl WorkloadStatus {
    /// Judge a StatefulSet or DaemonSet the way kubectl's status viewers do.
    pub fn of(kind: WorkloadKind, object: &DynamicObject) -> Self {
        let name = object.metadata.name.clone().unwrap_or_default();
        let generation = object.metadata.generation.unwrap_or_default();
        let observed_generation = int(object, "/status/observedGeneration").unwrap_or_default();
        let strategy = object
            .data
            .pointer("/spec/updateStrategy/type")
            .and_then(Value::as_str)
            .unwrap_or("RollingUpdate");
        let on_delete = strategy != "RollingUpdate";
        let text = |p: &str| {
            object
                .data
                .pointer(p)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let mut status = WorkloadStatus {
            kind,
            generation,
            observed_generation,
            desired: None,
            updated: 0,
            ready: 0,
            unavailable: 0,
            partition: None,
            current_revision: None,
            update_revision: None,
            on_delete,
            done: false,
            message: String::new(),
        };
        if on_delete {
            status.message = format!(
                "rollout status is only available for RollingUpdate strategy type ({} {name} updates {strategy})",
                kind.singular()
            );
        }
        match kind {
            WorkloadKind::DaemonSet => {
                let desired = int32(object, "/status/desiredNumberScheduled");
                status.desired = Some(desired);
                status.updated = int32(object, "/status/updatedNumberScheduled");
                status.ready = int32(object, "/status/numberAvailable");
                status.unavailable = int32(object, "/status/numberUnavailable");
                if on_delete {
                    return status;
                }
                let waiting = format!("Waiting for daemon set {name:?} rollout to finish: ");
                (status.done, status.message) = if generation > observed_generation {
                    (
                        false,
                        "Waiting for daemon set spec update to be observed...".to_owned(),
                    )
                } else if status.updated < desired {
                    (
                        false,
                        format!(
                            "{waiting}{} out of {desired} new pods have been updated...",
                            status.updated
                        ),
                    )
                } else if status.ready < desired {
                    (
                        false,
                        format!(
                            "{waiting}{} of {desired} updated pods are available...",
                            status.ready
                        ),
                    )
                } else {
                    (true, format!("daemon set {name:?} successfully rolled out"))
                };
            }
            WorkloadKind::StatefulSet => {
                let desired = int(object, "/spec/replicas").and_then(|r| i32::try_from(r).ok());
                status.desired = desired;
                status.updated = int32(object, "/status/updatedReplicas");
                status.ready = int32(object, "/status/readyReplicas");
                let available = int(object, "/status/availableReplicas")
                    .and_then(|a| i32::try_from(a).ok())
                    .unwrap_or(status.ready);
                status.unavailable = (desired.unwrap_or(1) - available).max(0);
                status.current_revision = text("/status/currentRevision");
                status.update_revision = text("/status/updateRevision");
                let rolling = object.data.pointer("/spec/updateStrategy/rollingUpdate");
                status.partition = rolling
                    .and_then(|r| r.get("partition"))
                    .and_then(Value::as_i64)
                    .and_then(|p| i32::try_from(p).ok());
                if on_delete {
                    return status;
                }
                (status.done, status.message) = if observed_generation == 0
                    || generation > observed_generation
                {
                    (
                        false,
                        "Waiting for statefulset spec update to be observed...".to_owned(),
                    )
                } else if let Some(d) = desired.filter(|d| status.ready < *d) {
                    (
                        false,
                        format!("Waiting for {} pods to be ready...", d - status.ready),
                    )
                } else if rolling.is_some_and(|r| !r.is_null()) {
                    match (desired, status.partition) {
                        (Some(d), Some(p)) if status.updated < d - p => (
                            false,
                            format!(
                                "Waiting for partitioned roll out to finish: {} out of {} new pods have been updated...",
                                status.updated,
                                d - p
                            ),
                        ),
                        _ => (
                            true,
                            format!(
                                "partitioned roll out complete: {} new pods have been updated...",
                                status.updated
                            ),
                        ),
                    }
                } else if status.update_revision != status.current_revision {
                    (
                        false,
                        format!(
                            "waiting for statefulset rolling update to complete {} pods at revision {}...",
                            status.updated,
                            status.update_revision.as_deref().unwrap_or_default()
                        ),
                    )
                } else {
                    (
                        true,
                        format!(
                            "statefulset rolling update complete {} pods at revision {}...",
                            int32(object, "/status/currentReplicas"),
                            status.current_revision.as_deref().unwrap_or_default()
                        ),
                    )
                };
            }
        }
        status
    }
}

impl Progress for WorkloadStatus {
    fn message(&self) -> &str {
        &self.message
    }
}

impl K8sWorkload {
    /// The rollout status now.
    pub async fn rollout_status(&self) -> Result<WorkloadStatus> {
        Ok(WorkloadStatus::of(self.kind(), &self.api.object().await?))
    }

    /// Wait until the rollout converges, as `kubectl rollout status` judges
    /// it. With `revision`, the object must also run that revision: when
    /// another replaces it, the wait ends `Failed`. An `OnDelete` update
    /// strategy ends it `Failed` (its pods change only when deleted, so no
    /// rollout converges by itself; kubectl refuses to report on it); the
    /// `timeout` ends it `TimedOut` with the last status. `on_progress`
    /// sees every status that differs from the one before. Transient read
    /// failures are retried until the timeout.
    #[tracing::instrument(name = "k8s_wait_rollout", skip_all, fields(target = %self.id, revision = ?revision))]
    pub async fn wait_rollout(
        &self,
        revision: Option<&RevisionId>,
        timeout: Duration,
        on_progress: impl FnMut(&WorkloadStatus) + Send,
    ) -> Result<Convergence> {
        wait_rollout_of(
            &self.id,
            timeout,
            self.poll_interval,
            on_progress,
            || async {
                let snapshot = self.snapshot().await?;
                let status = WorkloadStatus::of(self.kind(), &snapshot.object);
                let judged = self.judge(&snapshot, status.clone(), revision);
                Ok((status, judged))
            },
        )
        .await
    }

    fn judge(
        &self,
        snapshot: &WorkloadSnapshot,
        status: WorkloadStatus,
        revision: Option<&RevisionId>,
    ) -> Poll<Convergence> {
        let current = snapshot.current.map(|i| &snapshot.revisions[i]);
        if let (Some(want), Some(now)) = (revision, current)
            && now.id() != want
        {
            return Poll::Ready(Convergence::Failed {
                detail: format!(
                    "{} now runs {} ({}), not {want}: another change replaced it",
                    self.what(),
                    now.label(),
                    now.id()
                ),
            });
        }
        if status.on_delete {
            return Poll::Ready(Convergence::Failed {
                detail: format!(
                    "{}: {}; its pods take the restored template only when deleted (`kubectl delete pod`)",
                    self.what(),
                    status.message
                ),
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(kind: &str, generation: i64, spec: Value, status: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": kind,
            "metadata": {"name": "db", "namespace": "shop", "generation": generation},
            "spec": spec, "status": status,
        }))
        .expect("an object")
    }

    fn sts(generation: i64, partition: Option<i64>, status: Value) -> DynamicObject {
        let strategy = match partition {
            Some(p) => json!({"type": "RollingUpdate", "rollingUpdate": {"partition": p}}),
            None => json!({"type": "RollingUpdate"}),
        };
        object(
            "StatefulSet",
            generation,
            json!({"replicas": 3, "updateStrategy": strategy}),
            status,
        )
    }

    #[test]
    fn statefulsets_follow_kubectls_status_viewer() {
        let cases = [
            (
                sts(2, Some(0), json!({"observedGeneration": 1})),
                false,
                "Waiting for statefulset spec update to be observed...",
            ),
            (
                sts(1, Some(0), json!({})),
                false,
                "Waiting for statefulset spec update to be observed...",
            ),
            (
                sts(
                    2,
                    Some(0),
                    json!({"observedGeneration": 2, "readyReplicas": 1}),
                ),
                false,
                "Waiting for 2 pods to be ready...",
            ),
            (
                sts(
                    2,
                    Some(1),
                    json!({"observedGeneration": 2, "readyReplicas": 3, "updatedReplicas": 1}),
                ),
                false,
                "Waiting for partitioned roll out to finish: 1 out of 2 new pods have been updated...",
            ),
            (
                sts(
                    2,
                    Some(1),
                    json!({"observedGeneration": 2, "readyReplicas": 3, "updatedReplicas": 2}),
                ),
                true,
                "partitioned roll out complete: 2 new pods have been updated...",
            ),
            (
                sts(
                    2,
                    None,
                    json!({"observedGeneration": 2, "readyReplicas": 3, "updatedReplicas": 1,
                                    "currentRevision": "db-a", "updateRevision": "db-b"}),
                ),
                false,
                "waiting for statefulset rolling update to complete 1 pods at revision db-b...",
            ),
            (
                sts(
                    2,
                    None,
                    json!({"observedGeneration": 2, "readyReplicas": 3, "updatedReplicas": 3, "currentReplicas": 3,
                                    "currentRevision": "db-b", "updateRevision": "db-b"}),
                ),
                true,
                "statefulset rolling update complete 3 pods at revision db-b...",
            ),
        ];
        for (o, done, message) in cases {
            let s = WorkloadStatus::of(WorkloadKind::StatefulSet, &o);
            assert_eq!((s.done, s.message.as_str()), (done, message));
        }
        let on_delete = object(
            "StatefulSet",
            1,
            json!({"replicas": 3, "updateStrategy": {"type": "OnDelete"}}),
            json!({"observedGeneration": 1}),
        );
        let s = WorkloadStatus::of(WorkloadKind::StatefulSet, &on_delete);
        assert!(s.on_delete && !s.done, "{s:?}");
        assert!(
            s.message
                .starts_with("rollout status is only available for RollingUpdate strategy type"),
            "{}",
            s.message
        );
    }

    #[test]
    fn daemonsets_follow_kubectls_status_viewer() {
        let ds = |generation, status| {
            object(
                "DaemonSet",
                generation,
                json!({"updateStrategy": {"type": "RollingUpdate"}}),
                status,
            )
        };
        let cases = [
            (
                ds(2, json!({"observedGeneration": 1})),
                false,
                "Waiting for daemon set spec update to be observed...",
            ),
            (
                ds(
                    2,
                    json!({"observedGeneration": 2, "desiredNumberScheduled": 4, "updatedNumberScheduled": 1}),
                ),
                false,
                "Waiting for daemon set \"db\" rollout to finish: 1 out of 4 new pods have been updated...",
            ),
            (
                ds(
                    2,
                    json!({"observedGeneration": 2, "desiredNumberScheduled": 4, "updatedNumberScheduled": 4, "numberAvailable": 3}),
                ),
                false,
                "Waiting for daemon set \"db\" rollout to finish: 3 of 4 updated pods are available...",
            ),
            (
                ds(
                    2,
                    json!({"observedGeneration": 2, "desiredNumberScheduled": 4, "updatedNumberScheduled": 4, "numberAvailable": 4}),
                ),
                true,
                "daemon set \"db\" successfully rolled out",
            ),
        ];
        for (o, done, message) in cases {
            let s = WorkloadStatus::of(WorkloadKind::DaemonSet, &o);
            assert_eq!((s.done, s.message.as_str()), (done, message));
        }
    }
}
