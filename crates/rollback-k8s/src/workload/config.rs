//! The serde configuration of a [`K8sWorkload`], and connecting one from it.

use std::path::PathBuf;
use std::time::Duration;

use rollback_core::policy::RetryPolicy;
use rollback_core::time::duration;
use rollback_core::{DryRun, Result};

use super::{K8sWorkload, WorkloadKind};
use crate::config::kube_client;
use crate::target::DEFAULT_POLL_INTERVAL;

fn default_poll_interval() -> Duration {
    DEFAULT_POLL_INTERVAL
}

/// A StatefulSet or DaemonSet to watch, as written in a configuration file
/// (the watch file's `k8s://NAMESPACE/statefulset/NAME` and
/// `k8s://NAMESPACE/daemonset/NAME`):
///
/// ```
/// use rollback_k8s::{K8sWorkloadConfig, WorkloadKind};
/// let config: K8sWorkloadConfig = serde_json::from_str(
///     r#"{"namespace": "shop", "kind": "statefulset", "name": "db", "poll_interval": "5s"}"#,
/// ).unwrap();
/// assert_eq!(config.kind, WorkloadKind::StatefulSet);
/// assert_eq!(config.poll_interval, std::time::Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct K8sWorkloadConfig {
    /// The namespace (`kubectl -n`).
    pub namespace: String,
    /// `statefulset` or `daemonset`.
    pub kind: WorkloadKind,
    /// The object's name (`statefulset/NAME` to kubectl).
    pub name: String,
    /// The kubeconfig context (`kubectl --context`); the current one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// A kubeconfig file instead of `KUBECONFIG` or `~/.kube/config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<PathBuf>,
    /// `none` (default), `client` or `server`: the dry run of every change
    /// asked for without one.
    #[serde(default)]
    pub dry_run: DryRun,
    /// How often rollout status is read while waiting (`"2s"`, default).
    #[serde(default = "default_poll_interval", with = "duration")]
    pub poll_interval: Duration,
    /// The longest a wait for a rollout after a rollback lasts; the
    /// engine's time when absent.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration::option"
    )]
    pub rollout_timeout: Option<Duration>,
    /// How 409, 429 and 5xx answers are retried.
    #[serde(default)]
    pub retry: RetryPolicy,
}

impl K8sWorkloadConfig {
    /// The `kind` named `name` in `namespace`, everything else by default.
    pub fn new(namespace: impl Into<String>, kind: WorkloadKind, name: impl Into<String>) -> Self {
        K8sWorkloadConfig {
            namespace: namespace.into(),
            kind,
            name: name.into(),
            context: None,
            kubeconfig: None,
            dry_run: DryRun::None,
            poll_interval: DEFAULT_POLL_INTERVAL,
            rollout_timeout: None,
            retry: RetryPolicy::default(),
        }
    }

    /// Set `context`.
    #[must_use]
    pub fn context(mut self, context: impl Into<String>) -> Self {
        self.context = Some(context.into());
        self
    }

    /// Set `kubeconfig`.
    #[must_use]
    pub fn kubeconfig(mut self, path: impl Into<PathBuf>) -> Self {
        self.kubeconfig = Some(path.into());
        self
    }

    /// Set `poll_interval`.
    #[must_use]
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every;
        self
    }

    /// Set `retry`.
    #[must_use]
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }
}

impl K8sWorkload {
    /// The object `config` names, through `client` when given, else
    /// through a client found the way kubectl finds one. Nothing is read
    /// yet; a missing kubeconfig or context, or an invalid name, is
    /// [`rollback_core::ErrorKind::InvalidInput`] naming the field.
    pub async fn connect(
        config: &K8sWorkloadConfig,
        client: Option<kube::Client>,
    ) -> Result<K8sWorkload> {
        let client = match client {
            Some(c) => c,
            None => {
                kube_client(
                    config.kubeconfig.as_deref(),
                    config.context.as_deref(),
                    "K8sWorkloadConfig",
                )
                .await?
            }
        };
        K8sWorkload::builder(client, config.kind)
            .namespace(&config.namespace)
            .name(&config.name)
            .dry_run(config.dry_run)
            .poll_interval(config.poll_interval)
            .rollout_timeout(config.rollout_timeout)
            .retry(config.retry)
            .build()
    }
}
