//! A Kubernetes-native health probe: the workload's own signals (a
//! Deployment's, a StatefulSet's or a DaemonSet's).

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use rollback_core::{HealthProbe, Measurement, ProbeContext, Result, Revision, RevisionId};

use crate::client::selector_string;
use crate::patch::POD_TEMPLATE_HASH_LABEL;
use crate::status::RolloutStatus;
use crate::target::K8sDeployment;
use crate::workload::{K8sWorkload, WorkloadKind, WorkloadStatus};

/// The label a StatefulSet's or DaemonSet's controller puts on each pod:
/// the ControllerRevision's name for a StatefulSet, its hash for a DaemonSet.
const CONTROLLER_REVISION_HASH_LABEL: &str = "controller-revision-hash";

/// One thing wrong with a Deployment's rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The `Progressing` condition is `ProgressDeadlineExceeded`.
    ProgressDeadlineExceeded,
    /// More replicas are unavailable than the probe tolerates.
    Unavailable {
        /// A Deployment's `status.unavailableReplicas`, a StatefulSet's or
        /// DaemonSet's [`WorkloadStatus::unavailable`].
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

/// A [`HealthProbe`] over a workload's own signals. Its measurement is
/// the **number of problems** found (see [`Problem`]): a Deployment's
/// `ProgressDeadlineExceeded` condition, more unavailable replicas than
/// `max_unavailable`, and, for each container of each pod of the judged
/// revision, more restarts than `max_restarts` or a `CrashLoopBackOff`
/// wait. Judge it with the failure condition `"> 0"` (and success
/// `"== 0"`). The problems themselves are logged (tracing, `debug`) and
/// available from [`KubernetesProbe::inspect`].
///
/// A Deployment's pods of a revision are those with its
/// `pod-template-hash`; a StatefulSet's and a DaemonSet's, those whose
/// `controller-revision-hash` names its ControllerRevision, and their
/// unavailable replicas are [`WorkloadStatus::unavailable`]. Neither kind
/// has a progress deadline.
#[derive(Debug, Clone)]
pub struct KubernetesProbe {
    subject: Subject,
    name: String,
    max_unavailable: i32,
    max_restarts: i32,
}

/// What a [`KubernetesProbe`] measures.
#[derive(Debug, Clone)]
enum Subject {
    /// (A `K8sDeployment` is 1.2 KB.)
    Deployment(Box<K8sDeployment>),
    Workload(Box<K8sWorkload>),
}

impl KubernetesProbe {
    /// A probe named `name` over `deployment`, tolerating no unavailable
    /// replica and no restart.
    pub fn new(name: impl Into<String>, deployment: K8sDeployment) -> Self {
        Self::over(name.into(), Subject::Deployment(Box::new(deployment)))
    }

    /// A probe named `name` over a StatefulSet or DaemonSet, tolerating no
    /// unavailable replica and no restart.
    pub fn of_workload(name: impl Into<String>, workload: K8sWorkload) -> Self {
        Self::over(name.into(), Subject::Workload(Box::new(workload)))
    }

    fn over(name: String, subject: Subject) -> Self {
        KubernetesProbe {
            subject,
            name,
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

    /// The problems of the workload now, judging the pods of `revision`
    /// (the current revision when `None` or not in the history).
    pub async fn inspect(&self, revision: Option<&RevisionId>) -> Result<Vec<Problem>> {
        match &self.subject {
            Subject::Deployment(d) => self.inspect_deployment(d, revision).await,
            Subject::Workload(w) => self.inspect_workload(w, revision).await,
        }
    }

    async fn inspect_deployment(
        &self,
        deployment: &K8sDeployment,
        revision: Option<&RevisionId>,
    ) -> Result<Vec<Problem>> {
        let snapshot = deployment.snapshot().await?;
        let status = RolloutStatus::of(&snapshot.deployment);
        let mut problems = Vec::new();
        if status.deadline_exceeded {
            problems.push(Problem::ProgressDeadlineExceeded);
        }
        self.unavailable(status.unavailable, &mut problems);
        if let Some(rev) = judged(&snapshot.revisions, snapshot.current, revision) {
            let selector = pods_of(
                &snapshot.deployment.data,
                POD_TEMPLATE_HASH_LABEL,
                rev.id().as_str(),
            );
            let pods = deployment.api.pods(&selector).await?;
            self.pod_problems(&pods, &mut problems);
        }
        Ok(problems)
    }

    async fn inspect_workload(
        &self,
        workload: &K8sWorkload,
        revision: Option<&RevisionId>,
    ) -> Result<Vec<Problem>> {
        let snapshot = workload.snapshot().await?;
        let status = WorkloadStatus::of(snapshot.kind, &snapshot.object);
        let mut problems = Vec::new();
        self.unavailable(status.unavailable, &mut problems);
        if let Some(rev) = judged(&snapshot.revisions, snapshot.current, revision) {
            let label = match snapshot.kind {
                WorkloadKind::DaemonSet => rev.id().as_str(),
                _ => rev.name(),
            };
            let selector = pods_of(&snapshot.object.data, CONTROLLER_REVISION_HASH_LABEL, label);
            let pods = workload.api.pods(&selector).await?;
            self.pod_problems(&pods, &mut problems);
        }
        Ok(problems)
    }

    fn unavailable(&self, replicas: i32, problems: &mut Vec<Problem>) {
        if replicas > self.max_unavailable {
            problems.push(Problem::Unavailable {
                replicas,
                bound: self.max_unavailable,
            });
        }
    }

    fn pod_problems(&self, pods: &[Pod], problems: &mut Vec<Problem>) {
        for pod in pods {
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
}

/// The revision `id` names among `revisions`, else the current one (at
/// `current`).
fn judged<'a, R: Revision>(
    revisions: &'a [R],
    current: Option<usize>,
    id: Option<&RevisionId>,
) -> Option<&'a R> {
    id.and_then(|id| revisions.iter().find(|r| r.id() == id))
        .or_else(|| current.map(|i| &revisions[i]))
}

/// The selector of a workload's pods (its `spec.selector`) of one revision.
fn pods_of(object: &serde_json::Value, label: &str, value: &str) -> String {
    let selector: LabelSelector = object
        .pointer("/spec/selector")
        .cloned()
        .and_then(|s| serde_json::from_value(s).ok())
        .unwrap_or_default();
    let mut selector = selector_string(&selector);
    if !selector.is_empty() {
        selector.push(',');
    }
    selector.push_str(&format!("{label}={value}"));
    selector
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
        tracing::debug!(probe = %self.name, target = %context.target, revision = %context.revision, problems = %detail, "workload problems");
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
