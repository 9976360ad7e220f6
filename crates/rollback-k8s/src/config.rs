//! The serde configuration of a [`K8sDeployment`].

use std::time::Duration;

use rollback_core::{Result, RetryPolicy};

use crate::target::{DryRun, K8sDeployment};

fn default_poll_interval() -> Duration {
    Duration::from_secs(2)
}

/// A Deployment to watch, as written in a configuration file:
///
/// ```
/// let config: rollback_k8s::K8sDeploymentConfig = serde_json::from_str(
///     r#"{"namespace": "shop", "name": "checkout", "poll_interval": "5s", "dry_run": "client"}"#,
/// ).unwrap();
/// assert_eq!(config.poll_interval, std::time::Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct K8sDeploymentConfig {
    /// The namespace.
    pub namespace: String,
    /// The Deployment's name.
    pub name: String,
    /// `server` (default) or `client` dry runs.
    #[serde(default)]
    pub dry_run: DryRun,
    /// Resume a paused Deployment in the rollback instead of refusing it. Default false.
    #[serde(default)]
    pub resume_paused: bool,
    /// How often rollout status is read while waiting (`"2s"`, default).
    #[serde(default = "default_poll_interval", with = "human_duration")]
    pub poll_interval: Duration,
    /// How 409, 429 and 5xx answers are retried.
    #[serde(default)]
    pub retry: RetryPolicy,
}

mod human_duration {
    use std::time::Duration;

    pub(super) fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Duration, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "{text:?} is not a duration like \"2s\" or \"1m\": {e}"
            ))
        })
    }
}

impl K8sDeployment {
    /// A Deployment handle from its configuration.
    pub fn from_config(
        client: kube::Client,
        config: &K8sDeploymentConfig,
    ) -> Result<K8sDeployment> {
        K8sDeployment::builder(client)
            .namespace(&config.namespace)
            .name(&config.name)
            .dry_run(config.dry_run)
            .resume_paused(config.resume_paused)
            .poll_interval(config.poll_interval)
            .retry(config.retry)
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_and_unknown_fields_are_named() {
        let c: K8sDeploymentConfig =
            serde_json::from_str(r#"{"namespace": "shop", "name": "web"}"#).unwrap();
        assert_eq!(c.dry_run, DryRun::Server);
        assert_eq!(c.poll_interval, Duration::from_secs(2));
        assert_eq!(c.retry, RetryPolicy::default());
        let back: K8sDeploymentConfig =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let err = serde_json::from_str::<K8sDeploymentConfig>(
            r#"{"namespace": "shop", "name": "web", "replicas": 3}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field `replicas`"), "{err}");
        let err = serde_json::from_str::<K8sDeploymentConfig>(
            r#"{"namespace": "shop", "name": "web", "poll_interval": "often"}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("\"often\" is not a duration"), "{err}");
    }
}
