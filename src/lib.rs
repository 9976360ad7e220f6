//! `rollback`: watch a change after it ships, judge its health against SLOs,
//! roll it back to the last known good revision when it breaches them, check
//! that health came back, and record every step.
//!
//! This crate gathers the workspace: [`core`] (always), and the backends
//! behind features: `prometheus`, `k8s`, `aws`, `mlflow`, `git`, `web` (`full` for all).
//! See the README (below) for a tour and the policy reference.
#![doc = ""]
#![doc = include_str!("../README.md")]

pub use rollback_core as core;
pub use rollback_core::*;

#[cfg(feature = "aws")]
pub use rollback_aws as aws;
#[cfg(feature = "git")]
pub use rollback_git as git;
#[cfg(feature = "k8s")]
pub use rollback_k8s as k8s;
#[cfg(feature = "mlflow")]
pub use rollback_mlflow as mlflow;
#[cfg(feature = "prometheus")]
pub use rollback_prometheus as prometheus;
#[cfg(feature = "web")]
pub use rollback_web as web;

/// The registry of this build: `memory://` targets and `scripted` probes
/// always; `k8s://` targets and `kubernetes` probes (feature `k8s`),
/// `codedeploy://` (feature `aws`), `mlflow://` (feature `mlflow`),
/// `git+file://`, `git+ssh://`, `git+https://`, `git+http://` and `git://`
/// (feature `git`), `prometheus` and `burn_rate` probes (feature `prometheus`) and `web`
/// probes (feature `web`).
///
/// ```
/// let registry = rollback::registry();
/// assert!(registry.schemes().contains(&"memory"));
/// ```
pub fn registry() -> rollback_core::registry::Registry {
    let registry = rollback_core::registry::Registry::with_memory();
    #[cfg(feature = "k8s")]
    let registry = registry
        .scheme(rollback_k8s::k8s_scheme())
        .probe(rollback_k8s::KubernetesProbeKind);
    #[cfg(feature = "aws")]
    let registry = registry.scheme(rollback_aws::codedeploy_scheme());
    #[cfg(feature = "mlflow")]
    let registry = registry.scheme(rollback_mlflow::mlflow_scheme());
    #[cfg(feature = "git")]
    let registry = rollback_git::register(registry);
    #[cfg(feature = "prometheus")]
    let registry = registry
        .probe(rollback_prometheus::PrometheusProbeKind)
        .probe(rollback_prometheus::BurnRateProbeKind);
    #[cfg(feature = "web")]
    let registry = rollback_web::register(registry);
    registry
}
