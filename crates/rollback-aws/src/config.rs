//! Serde configuration of a CodeDeploy target, for policy files.

use std::time::Duration;

use aws_sdk_codedeploy::Client;
use aws_sdk_codedeploy::config::Region;
use rollback_core::Result;

use crate::target::{CodeDeployTarget, DEFAULT_POLL_INTERVAL, DEFAULT_STOP_TIMEOUT};

fn default_poll_interval() -> Duration {
    DEFAULT_POLL_INTERVAL
}
fn default_stop_timeout() -> Duration {
    DEFAULT_STOP_TIMEOUT
}

/// A CodeDeploy deployment group as written in a configuration file:
///
/// ```yaml
/// application: bank
/// deployment_group: payments
/// region: eu-west-1          # optional: else the AWS configuration chain
/// poll_interval: 10s         # optional, default 5s
/// ```
///
/// Credentials always come from the standard AWS configuration chain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeDeployConfig {
    /// The CodeDeploy application.
    pub application: String,
    /// The deployment group.
    pub deployment_group: String,
    /// The AWS region; the configuration chain's (`AWS_REGION`, profile) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// A named profile of `~/.aws/config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Another endpoint than AWS's (a VPC endpoint, a local emulator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// How often a deployment's status is read while waiting.
    #[serde(default = "default_poll_interval", with = "duration")]
    pub poll_interval: Duration,
    /// How long a rollback waits for a stopped deployment and CodeDeploy's rollback deployment.
    #[serde(default = "default_stop_timeout", with = "duration")]
    pub stop_timeout: Duration,
    /// Read only the deployments created within this long (e.g. "90d"); all when absent.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "optional_duration"
    )]
    pub history_window: Option<Duration>,
}

impl CodeDeployConfig {
    /// A configuration with defaults for everything but the names.
    pub fn new(application: impl Into<String>, deployment_group: impl Into<String>) -> Self {
        CodeDeployConfig {
            application: application.into(),
            deployment_group: deployment_group.into(),
            region: None,
            profile: None,
            endpoint_url: None,
            poll_interval: DEFAULT_POLL_INTERVAL,
            stop_timeout: DEFAULT_STOP_TIMEOUT,
            history_window: None,
        }
    }

    /// Load the AWS configuration chain with this configuration's overrides
    /// and build the target.
    pub async fn into_target(self) -> Result<CodeDeployTarget> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(profile) = &self.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(url) = &self.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let sdk = loader.load().await;
        let mut builder = CodeDeployTarget::builder(Client::new(&sdk))
            .application(self.application)
            .deployment_group(self.deployment_group)
            .poll_interval(self.poll_interval)
            .stop_timeout(self.stop_timeout);
        if let Some(window) = self.history_window {
            builder = builder.history_window(window);
        }
        builder.build()
    }
}

/// Human durations ("30s", "5m") in serde.
mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {text:?} ({e}); write e.g. \"30s\" or \"5m\""
            ))
        })
    }
}

/// An optional human duration.
mod optional_duration {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::duration::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        super::duration::deserialize(d).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_human_durations_and_refuses_unknown_fields() {
        let c: CodeDeployConfig = serde_json::from_str(
            r#"{"application": "bank", "deployment_group": "payments", "poll_interval": "10s", "region": "eu-west-1", "history_window": "90days"}"#,
        )
        .unwrap();
        assert_eq!(c.poll_interval, Duration::from_secs(10));
        assert_eq!(c.stop_timeout, DEFAULT_STOP_TIMEOUT);
        assert_eq!(c.region.as_deref(), Some("eu-west-1"));
        assert_eq!(c.history_window, Some(Duration::from_secs(90 * 86_400)));
        let back: CodeDeployConfig =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);

        let e = serde_json::from_str::<CodeDeployConfig>(
            r#"{"application": "a", "deployment_group": "g", "group": "x"}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `group`"), "{e}");
        let e = serde_json::from_str::<CodeDeployConfig>(
            r#"{"application": "a", "deployment_group": "g", "poll_interval": "soon"}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("invalid duration \"soon\""), "{e}");
    }
}
