//! A Kubernetes-native health probe: the Deployment's own signals.

use async_trait::async_trait;
use k8s_openapi::api::core::v1::ContainerStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use rollback_core::{HealthProbe, Measurement, ProbeContext, Result, Revision, RevisionId};

use crate::client::selector_string;
use crate::patch::POD_TEMPLATE_HASH_LABEL;
use crate::status::RolloutStatus;
use crate::target::K8sDeployment;

/// One thing wrong with a Deployment's rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The `Progressing` condition is `ProgressDeadlineExceeded`.
    ProgressDeadlineExceeded,
    /// More replicas are unavailable than the probe tolerates.
    Unavailable {
        /// `status.unavailableReplicas`.
        replicas: i32,
        /// The probe's bound.
        bound: i32,
    },
    /// A container of a pod of the judged revision restarted more often than tolerated.
    Restarts {
        /// The pod's name.
        pod: String,
        /// The container's name in the pod spec.
        container: String,
        /// The container status's `restartCount`.
        count: i32,
    },
    /// A container of a pod of the judged revision is in `CrashLoopBackOff`.
    CrashLoopBackOff {
        /// The pod's name.
        pod: String,
        /// The container's name in the pod spec.
        container: String,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::ProgressDeadlineExceeded => {
                f.write_str("the rollout exceeded its progress deadline")
            }
            Problem::Unavailable { replicas, bound } => {
                write!(f, "{replicas} replicas unavailable (tolerated: {bound})")
            }
            Problem::Restarts {
                pod,
                container,
                count,
            } => write!(f, "pod {pod} container {container} restarted {count} times"),
            Problem::CrashLoopBackOff { pod, container } => {
                write!(f, "pod {pod} container {container} is in CrashLoopBackOff")
            }
        }
    }
}

/// A [`HealthProbe`] over the Deployment's own signals. Its measurement is
/// the **number of problems** found (see [`Problem`]): a
/// `ProgressDeadlineExceeded` condition, more unavailable replicas than
/// `max_unavailable`, and, for each container of each pod of the judged
/// revision (the pods with its `pod-template-hash`), more restarts than
/// `max_restarts` or a `CrashLoopBackOff` wait. Judge it with the failure
/// condition `"> 0"` (and success `"== 0"`). The problems themselves are
/// logged (tracing, `info`) and available from [`KubernetesProbe::inspect`].
#[derive(Debug, Clone)]
pub struct KubernetesProbe {
    deployment: K8sDeployment,
    name: String,
    max_unavailable: i32,
    max_restarts: i32,
}

impl KubernetesProbe {
    /// A probe named `name` over `deployment`, tolerating no unavailable
    /// replica and no restart.
    pub fn new(name: impl Into<String>, deployment: K8sDeployment) -> Self {
        KubernetesProbe {
            deployment,
            name: name.into(),
            max_unavailable: 0,
            max_restarts: 0,
        }
    }

    /// Tolerate this many unavailable replicas (default 0).
    #[must_use]
    pub fn max_unavailable(mut self, replicas: i32) -> Self {
        self.max_unavailable = replicas;
        self
    }

    /// Tolerate this many restarts per container (default 0).
    #[must_use]
    pub fn max_restarts(mut self, restarts: i32) -> Self {
        self.max_restarts = restarts;
        self
    }

    /// The problems of the Deployment now, judging the pods of `revision`
    /// (the current revision when `None` or not in the history).
    pub async fn inspect(&self, revision: Option<&RevisionId>) -> Result<Vec<Problem>> {
        let snapshot = self.deployment.snapshot().await?;
        let status = RolloutStatus::of(&snapshot.deployment);
        let mut problems = Vec::new();
        if status.deadline_exceeded {
            problems.push(Problem::ProgressDeadlineExceeded);
        }
        if status.unavailable > self.max_unavailable {
            problems.push(Problem::Unavailable {
                replicas: status.unavailable,
                bound: self.max_unavailable,
            });
        }
        let judged = revision
            .and_then(|id| snapshot.revisions.iter().find(|r| r.id() == id))
            .or_else(|| snapshot.current.map(|i| &snapshot.revisions[i]));
        if let Some(rev) = judged {
            let selector: LabelSelector = snapshot
                .deployment
                .data
                .pointer("/spec/selector")
                .cloned()
                .and_then(|s| serde_json::from_value(s).ok())
                .unwrap_or_default();
            let mut selector = selector_string(&selector);
            if !selector.is_empty() {
                selector.push(',');
            }
            selector.push_str(&format!("{POD_TEMPLATE_HASH_LABEL}={}", rev.id()));
            for pod in self.deployment.api.pods(&selector).await? {
                let pod_name = pod.metadata.name.clone().unwrap_or_default();
                let statuses = pod.status.iter().flat_map(|s| {
                    s.init_container_statuses
                        .iter()
                        .flatten()
                        .chain(s.container_statuses.iter().flatten())
                });
                for c in statuses {
                    problems.extend(container_problems(&pod_name, c, self.max_restarts));
                }
            }
        }
        Ok(problems)
    }
}

fn container_problems(pod: &str, c: &ContainerStatus, max_restarts: i32) -> Vec<Problem> {
    let mut out = Vec::new();
    if c.restart_count > max_restarts {
        out.push(Problem::Restarts {
            pod: pod.to_owned(),
            container: c.name.clone(),
            count: c.restart_count,
        });
    }
    let waiting = c
        .state
        .as_ref()
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.reason.as_deref());
    if waiting == Some("CrashLoopBackOff") {
        out.push(Problem::CrashLoopBackOff {
            pod: pod.to_owned(),
            container: c.name.clone(),
        });
    }
    out
}

#[async_trait]
impl HealthProbe for KubernetesProbe {
    fn name(&self) -> &str {
        &self.name
    }

    async fn measure(&self, context: &ProbeContext) -> Result<Measurement> {
        let problems = self.inspect(Some(&context.revision)).await?;
        let count = u32::try_from(problems.len()).unwrap_or(u32::MAX);
        let measurement = Measurement::value(f64::from(count));
        if problems.is_empty() {
            return Ok(measurement);
        }
        let detail = problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        tracing::debug!(probe = %self.name, target = %context.target, revision = %context.revision, problems = %detail, "Deployment problems");
        Ok(measurement.with_detail(detail))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(value: serde_json::Value) -> ContainerStatus {
        serde_json::from_value(value).expect("a valid container status")
    }

    #[test]
    fn restarts_beyond_the_bound_and_crash_loops_are_problems() {
        let crashing = status(serde_json::json!({
            "name": "app", "image": "i", "imageID": "", "ready": false, "restartCount": 3,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}}
        }));
        assert_eq!(
            container_problems("p", &crashing, 0),
            vec![
                Problem::Restarts {
                    pod: "p".into(),
                    container: "app".into(),
                    count: 3
                },
                Problem::CrashLoopBackOff {
                    pod: "p".into(),
                    container: "app".into()
                },
            ]
        );
        assert_eq!(container_problems("p", &crashing, 3).len(), 1);
        let fine = status(
            serde_json::json!({"name": "app", "image": "i", "imageID": "", "ready": true, "restartCount": 0}),
        );
        assert!(container_problems("p", &fine, 0).is_empty());
    }
}
