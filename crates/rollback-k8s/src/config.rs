//! The serde configuration of a [`K8sDeployment`], and connecting one from it.

use std::path::PathBuf;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use rollback_core::policy::RetryPolicy;
use rollback_core::time::duration;
use rollback_core::{DryRun, Error, Result};

use crate::target::{DEFAULT_POLL_INTERVAL, K8sDeployment};

fn default_poll_interval() -> Duration {
    DEFAULT_POLL_INTERVAL
}

/// A Deployment to watch, as written in a configuration file (the watch
/// file's `k8s://NAMESPACE/DEPLOYMENT`):
///
/// ```
/// let config: rollback_k8s::K8sConfig = serde_json::from_str(
///     r#"{"namespace": "shop", "deployment": "checkout", "context": "prod", "poll_interval": "5s"}"#,
/// ).unwrap();
/// assert_eq!(config.poll_interval, std::time::Duration::from_secs(5));
/// assert_eq!(config.dry_run, rollback_core::DryRun::None);
/// ```
///
/// [`K8sDeployment::connect`] turns it into a handle.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct K8sConfig {
    /// The Deployment's namespace (`kubectl -n`), a DNS-1123 name.
    pub namespace: String,
    /// The Deployment's name (`deployment/NAME` to kubectl).
    pub deployment: String,
    /// The kubeconfig context to use (`kubectl --context`); the current
    /// context when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// A kubeconfig file to read instead of `KUBECONFIG` or
    /// `~/.kube/config` (`kubectl --kubeconfig`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<PathBuf>,
    /// `none` (default), `client` or `server`: the dry run of every change
    /// asked for without one, so `client` or `server` make a handle that
    /// never changes the Deployment (see [`crate::K8sDeploymentBuilder::dry_run`]).
    #[serde(default)]
    pub dry_run: DryRun,
    /// Resume a paused Deployment in the rollback instead of refusing it. Default false.
    #[serde(default)]
    pub resume_paused: bool,
    /// How often rollout status is read while waiting (`"2s"`, default).
    #[serde(default = "default_poll_interval", with = "duration")]
    pub poll_interval: Duration,
    /// The longest a wait for a rollout after a rollback lasts (`"5m"`),
    /// however long the engine allows; the engine's time when absent.
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

impl K8sConfig {
    /// The Deployment `deployment` in `namespace`, everything else by default.
    pub fn new(namespace: impl Into<String>, deployment: impl Into<String>) -> Self {
        K8sConfig {
            namespace: namespace.into(),
            deployment: deployment.into(),
            context: None,
            kubeconfig: None,
            dry_run: DryRun::None,
            resume_paused: false,
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

    /// Set `dry_run`.
    #[must_use]
    pub fn dry_run(mut self, dry_run: DryRun) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Set `resume_paused`.
    #[must_use]
    pub fn resume_paused(mut self, yes: bool) -> Self {
        self.resume_paused = yes;
        self
    }

    /// Set `poll_interval`.
    #[must_use]
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every;
        self
    }

    /// Set `rollout_timeout`.
    #[must_use]
    pub fn rollout_timeout(mut self, timeout: Duration) -> Self {
        self.rollout_timeout = Some(timeout);
        self
    }

    /// Set `retry`.
    #[must_use]
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The client kubectl would use: see [`kube_client`].
    async fn client(&self) -> Result<kube::Client> {
        kube_client(
            self.kubeconfig.as_deref(),
            self.context.as_deref(),
            "K8sConfig",
        )
        .await
    }
}

/// The client kubectl would use: the kubeconfig (`kubeconfig`, else
/// `KUBECONFIG`, else `~/.kube/config`) at `context` (else its current
/// context), or the in-cluster service account when there is no kubeconfig
/// and no context is named. Errors are [`rollback_core::ErrorKind::InvalidInput`],
/// their messages starting with `what` (the configuration the fields belong
/// to, such as `serve.leader_election`).
pub async fn kube_client(
    kubeconfig: Option<&std::path::Path>,
    context: Option<&str>,
    what: &str,
) -> Result<kube::Client> {
    let options = KubeConfigOptions {
        context: context.map(str::to_owned),
        ..KubeConfigOptions::default()
    };
    let named = match context {
        Some(c) => format!("context {c:?}"),
        None => "the current context".to_owned(),
    };
    let config = match (kubeconfig, context) {
        (Some(path), _) => {
            let file = Kubeconfig::read_from(path).map_err(|e| {
                Error::invalid(format!(
                    "{what}.kubeconfig: cannot read {}: {e}",
                    path.display()
                ))
            })?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|e| {
                    Error::invalid(format!(
                        "{what}: {named} of kubeconfig {}: {e}",
                        path.display()
                    ))
                })?
        }
        (None, Some(_)) => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| {
                Error::invalid(format!(
                    "{what}.context: {named} of the kubeconfig (KUBECONFIG or ~/.kube/config): {e}"
                ))
            })?,
        (None, None) => kube::Config::infer().await.map_err(|e| {
            Error::invalid(format!(
                "{what}: no Kubernetes credentials: {e}; set KUBECONFIG, or run in a pod with a service account"
            ))
        })?,
    };
    kube::Client::try_from(config).map_err(|e| {
        Error::invalid(format!(
            "{what}: building a Kubernetes client for {named}: {e}"
        ))
    })
}

impl K8sDeployment {
    /// The Deployment `config` names, through `client` when given, else
    /// through a client found the way kubectl finds one (see
    /// [`K8sConfig::context`] and [`K8sConfig::kubeconfig`]; in a pod, its
    /// service account). Nothing is read from the Deployment yet; a
    /// missing kubeconfig or context, or an invalid name, is
    /// [`rollback_core::ErrorKind::InvalidInput`] naming the field.
    ///
    /// ```no_run
    /// # async fn demo() -> rollback_core::Result<()> {
    /// use rollback_k8s::{K8sConfig, K8sDeployment};
    /// let config = K8sConfig::new("shop", "checkout").context("prod");
    /// let checkout = K8sDeployment::connect(&config, None).await?;
    /// let rollbacker = checkout.rollbacker();
    /// # let _ = rollbacker; Ok(()) }
    /// ```
    pub async fn connect(
        config: &K8sConfig,
        client: Option<kube::Client>,
    ) -> Result<K8sDeployment> {
        let client = match client {
            Some(c) => c,
            None => config.client().await?,
        };
        K8sDeployment::builder(client)
            .namespace(&config.namespace)
            .name(&config.deployment)
            .dry_run(config.dry_run)
            .resume_paused(config.resume_paused)
            .poll_interval(config.poll_interval)
            .rollout_timeout(config.rollout_timeout)
            .retry(config.retry)
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_and_unknown_fields_are_named() {
        let c: K8sConfig =
            serde_json::from_str(r#"{"namespace": "shop", "deployment": "web"}"#).unwrap();
        assert_eq!(c, K8sConfig::new("shop", "web"));
        assert_eq!(c.dry_run, DryRun::None);
        assert_eq!(c.poll_interval, Duration::from_secs(2));
        assert_eq!(c.retry, RetryPolicy::default());
        let back: K8sConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let err = serde_json::from_str::<K8sConfig>(
            r#"{"namespace": "shop", "deployment": "web", "replicas": 3}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field `replicas`"), "{err}");
        let err = serde_json::from_str::<K8sConfig>(
            r#"{"namespace": "shop", "deployment": "web", "poll_interval": "often"}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("invalid duration \"often\""), "{err}");
        let err = serde_json::from_str::<K8sConfig>(r#"{"namespace": "shop", "name": "web"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `name`"), "{err}");
    }

    #[test]
    fn read_as_the_watch_file_reads_options_errors_name_the_field() {
        let read = |json: serde_json::Value| {
            rollback_core::registry::options::<K8sConfig>(json.as_object().unwrap())
        };
        let c = read(
            serde_json::json!({"namespace": "shop", "deployment": "web", "rollout_timeout": "5m"}),
        )
        .unwrap();
        assert_eq!(c.rollout_timeout, Some(Duration::from_secs(300)));
        for (json, says) in [
            (
                serde_json::json!({"namespace": "shop", "deployment": "web", "poll_interval": "often"}),
                "`poll_interval`: invalid duration \"often\"",
            ),
            (
                serde_json::json!({"namespace": "shop", "deployment": "web", "dry_run": "yes"}),
                "`dry_run`: unknown variant `yes`",
            ),
            (
                serde_json::json!({"namespace": "shop", "deployment": "web", "retry": {"max_attempts": "x"}}),
                "`retry.max_attempts`:",
            ),
            (
                serde_json::json!({"namespace": "shop", "deployment": "web", "contxt": "prod"}),
                "unknown field `contxt`",
            ),
        ] {
            let e = read(json.clone()).unwrap_err().to_string();
            assert!(e.contains(says), "{json}: {e}");
        }
    }

    #[test]
    fn every_field_reads_as_written() {
        let c: K8sConfig = serde_json::from_str(
            r#"{"namespace": "shop", "deployment": "web", "context": "prod", "kubeconfig": "/k",
                "dry_run": "server", "resume_paused": true, "poll_interval": "5s",
                "rollout_timeout": "10m", "retry": {"max_attempts": 1, "initial_backoff": "0s", "max_backoff": "0s"}}"#,
        )
        .unwrap();
        let want = K8sConfig::new("shop", "web")
            .context("prod")
            .kubeconfig("/k")
            .dry_run(DryRun::Server)
            .resume_paused(true)
            .poll_interval(Duration::from_secs(5))
            .rollout_timeout(Duration::from_secs(600))
            .retry(RetryPolicy::NEVER);
        assert_eq!(c, want);
        let back: K8sConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }
}
