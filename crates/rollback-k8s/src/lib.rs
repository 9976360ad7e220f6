//! `rollback-k8s`: Kubernetes Deployments, StatefulSets and DaemonSets for
//! the rollback engine, with `kubectl rollout undo` semantics.
//!
//! - [`K8sDeployment`] is a [`rollback_core::Target`]: its revisions are the
//!   ReplicaSets the Deployment controls (controller ownerReference by uid),
//!   numbered by `deployment.kubernetes.io/revision`, newest first, each
//!   identified by its `pod-template-hash` (stable across the renumbering a
//!   rollback causes). See [`K8sRevision`] for the attributes.
//! - It is also a [`rollback_core::Rollbacker`]: [`K8sDeployment::undo`]
//!   restores the previous revision, a revision number or a revision id
//!   exactly as `kubectl rollout undo [--to-revision]` does, with a
//!   resourceVersion precondition kubectl lacks; the engine's rollbacks go to
//!   the revision id it chose (the last known good one by default).
//! - [`K8sDeployment::restart`] restarts its pods as `kubectl rollout
//!   restart` does (a new `kubectl.kubernetes.io/restartedAt` in the pod
//!   template), for servers that must reload what they loaded at start.
//! - [`K8sDeployment::wait_rollout`] waits like `kubectl rollout status`.
//! - [`LeaseElector`] elects a leader on a `coordination.k8s.io/v1` Lease
//!   with client-go's semantics, and [`ConfigMapStateStore`] keeps the
//!   engine's state in ConfigMaps with resourceVersion preconditions: two
//!   replicas of `rollback serve`, one of them acting.
//! - [`K8sWorkload`] is a StatefulSet or DaemonSet as a target and
//!   rollbacker: its revisions are the ControllerRevisions it controls,
//!   [`K8sWorkload::undo`] restores one as `kubectl rollout undo` does (the
//!   revision's strategic merge patch with `$patch: replace`), and
//!   [`K8sWorkload::wait_rollout`] waits like `kubectl rollout status`
//!   (partitioned rolling updates, `updatedNumberScheduled`).
//! - [`KubernetesProbe`] counts a Deployment's, StatefulSet's or DaemonSet's
//!   problems (a Deployment's progress deadline, unavailable replicas,
//!   restarts and CrashLoopBackOff of the judged revision's pods); judge it
//!   with `failure: "> 0"`.
//!
//! Connect one from its [`K8sConfig`] (credentials as kubectl finds them,
//! or a `kube::Client` you have), or build one around a client with
//! [`K8sDeployment::builder`]:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use rollback_k8s::{K8sConfig, K8sDeployment, UndoOptions, UndoTo};
//! let checkout = K8sDeployment::connect(&K8sConfig::new("shop", "checkout"), None).await?;
//! let outcome = checkout.undo(&UndoTo::Previous, &UndoOptions::default()).await?;
//! println!("{}", outcome.detail());
//! let done = checkout.wait_rollout(None, Duration::from_secs(300), |s| println!("{}", s.message)).await?;
//! println!("{done:?}");
//! # Ok(()) }
//! ```

mod client;
mod config;
mod error;
pub mod lease;
pub mod patch;
mod plan;
mod probe;
mod registry;
mod restart;
mod revision;
mod rollbacker;
mod state_store;
mod status;
mod target;
mod workload;

pub use config::{K8sConfig, kube_client};
pub use lease::{LeaseElector, LeaseTimings};
pub use probe::{KubernetesProbe, Problem};
pub use registry::{K8sTargetConfig, KubernetesProbeKind, k8s_scheme, k8s_target_config};
pub use restart::{RestartOptions, RestartOutcome};
pub use revision::K8sRevision;
pub use rollbacker::{UndoOptions, UndoTo};
pub use state_store::ConfigMapStateStore;
pub use status::{PROGRESS_DEADLINE_EXCEEDED, RolloutStatus};
pub use target::{K8sDeployment, K8sDeploymentBuilder, Snapshot};
pub use workload::{
    K8sControllerRevision, K8sWorkload, K8sWorkloadBuilder, K8sWorkloadConfig, WorkloadKind,
    WorkloadSnapshot, WorkloadStatus,
};
