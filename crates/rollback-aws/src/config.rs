//! Serde configuration of a CodeDeploy target, and connecting to it.

use std::time::Duration;

use aws_sdk_codedeploy::Client;
use aws_sdk_codedeploy::config::Region;
use aws_sdk_codedeploy::config::retry::RetryConfig;
use aws_sdk_codedeploy::config::timeout::TimeoutConfig;
use rollback_core::policy::RetryPolicy;
use rollback_core::time::duration;
use rollback_core::{Error, Result};

use crate::target::{CodeDeployTarget, DEFAULT_POLL_INTERVAL, DEFAULT_STOP_TIMEOUT};

fn default_poll_interval() -> Duration {
    DEFAULT_POLL_INTERVAL
}
fn default_stop_timeout() -> Duration {
    DEFAULT_STOP_TIMEOUT
}

/// A CodeDeploy deployment group as written in a configuration file, for
/// [`CodeDeployTarget::connect`]:
///
/// ```
/// let config: rollback_aws::CodeDeployConfig = serde_json::from_str(r#"{
///     "application": "bank",
///     "deployment_group": "payments",
///     "region": "eu-west-1",
///     "poll_interval": "10s",
///     "retry": {"max_attempts": 5}
/// }"#).unwrap();
/// assert_eq!(config.poll_interval, std::time::Duration::from_secs(10));
/// ```
///
/// Credentials come from the AWS default chain (environment, profile, SSO,
/// container or instance role); `region`, `profile` and `endpoint_url`
/// override what the chain finds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeDeployConfig {
    /// The CodeDeploy application.
    pub application: String,
    /// The deployment group of the application.
    pub deployment_group: String,
    /// The AWS region; the chain's (`AWS_REGION`, the profile) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// A named profile of `~/.aws/config` to take credentials and region from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Another endpoint than AWS's: a VPC endpoint, or a local server such
    /// as moto (`http://127.0.0.1:5000`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// How often a deployment's status is read while waiting (default 5s).
    #[serde(default = "default_poll_interval", with = "duration")]
    pub poll_interval: Duration,
    /// How long a rollback waits for a stopped deployment to stop and for
    /// CodeDeploy's rollback deployment to appear (default 2m).
    #[serde(default = "default_stop_timeout", with = "duration")]
    pub stop_timeout: Duration,
    /// How long one CodeDeploy call may take, its retries included; no
    /// limit but the SDK's connect and read timeouts when absent.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration::option"
    )]
    pub call_timeout: Option<Duration>,
    /// Read only the deployments created within this long (e.g. "90d"); all when absent.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration::option"
    )]
    pub history_window: Option<Duration>,
    /// How the SDK retries throttling and passing failures of one call;
    /// the SDK's standard retries (3 attempts) when absent. The engine
    /// retries a whole rollback on top, by its policy's `retry`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
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
            call_timeout: None,
            history_window: None,
            retry: None,
        }
    }

    /// The SDK's retry configuration for `retry`, or an error naming the field.
    fn retry_config(&self) -> Result<Option<RetryConfig>> {
        let Some(r) = self.retry else {
            return Ok(None);
        };
        if r.max_attempts == 0 {
            return Err(Error::invalid(
                "retry.max_attempts: must be at least 1 (the first try)",
            ));
        }
        if r.max_backoff < r.initial_backoff {
            return Err(Error::invalid(
                "retry.max_backoff: must not be shorter than retry.initial_backoff",
            ));
        }
        Ok(Some(
            RetryConfig::standard()
                .with_max_attempts(r.max_attempts)
                .with_initial_backoff(r.initial_backoff)
                .with_max_backoff(r.max_backoff),
        ))
    }

    fn timeout_config(&self) -> Option<TimeoutConfig> {
        self.call_timeout
            .map(|t| TimeoutConfig::builder().operation_timeout(t).build())
    }

    /// A client from the AWS default chain with this configuration's overrides.
    async fn load_client(&self) -> Result<Client> {
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
        if let Some(retry) = self.retry_config()? {
            loader = loader.retry_config(retry);
        }
        if let Some(timeout) = self.timeout_config() {
            loader = loader.timeout_config(timeout);
        }
        Ok(Client::new(&loader.load().await))
    }

    /// The caller's client with this configuration's overrides: the values
    /// written in the configuration win over the client's own.
    fn adjust(&self, client: Client) -> Result<Client> {
        if self.profile.is_some() {
            return Err(Error::invalid(
                "profile: names credentials to load, but a client with its own credentials was given; leave one of them out",
            ));
        }
        let retry = self.retry_config()?;
        let timeout = self.timeout_config();
        if self.region.is_none()
            && self.endpoint_url.is_none()
            && retry.is_none()
            && timeout.is_none()
        {
            return Ok(client);
        }
        let mut conf = client.config().to_builder();
        if let Some(region) = &self.region {
            conf = conf.region(Region::new(region.clone()));
        }
        if let Some(url) = &self.endpoint_url {
            conf = conf.endpoint_url(url);
        }
        if let Some(retry) = retry {
            conf = conf.retry_config(retry);
        }
        if let Some(timeout) = timeout {
            conf = conf.timeout_config(timeout);
        }
        Ok(Client::from_conf(conf.build()))
    }
}

impl CodeDeployTarget {
    /// The deployment group a configuration names, over `client` when the
    /// caller has one (the configuration's `region`, `endpoint_url`,
    /// `retry` and `call_timeout` are applied to it), else over a client
    /// built from the AWS default chain. Errors name the configuration field.
    ///
    /// ```no_run
    /// # async fn demo() -> rollback_core::Result<()> {
    /// use rollback_aws::{CodeDeployConfig, CodeDeployTarget};
    /// let target = CodeDeployTarget::connect(&CodeDeployConfig::new("bank", "payments"), None).await?;
    /// let rollbacker = target.rollbacker();
    /// # let _ = rollbacker; Ok(()) }
    /// ```
    pub async fn connect(config: &CodeDeployConfig, client: Option<Client>) -> Result<Self> {
        let client = match client {
            Some(client) => config.adjust(client)?,
            None => config.load_client().await?,
        };
        let mut builder = CodeDeployTarget::builder(client)
            .application(&config.application)
            .deployment_group(&config.deployment_group)
            .poll_interval(config.poll_interval)
            .stop_timeout(config.stop_timeout);
        if let Some(window) = config.history_window {
            builder = builder.history_window(window);
        }
        builder.build()
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

    #[test]
    fn errors_name_the_field() {
        let read = |json: &str| {
            let mut de = serde_json::Deserializer::from_str(json);
            serde_path_to_error::deserialize::<_, CodeDeployConfig>(&mut de)
                .unwrap_err()
                .path()
                .to_string()
        };
        assert_eq!(
            read(r#"{"application": "a", "deployment_group": "g", "call_timeout": "soon"}"#),
            "call_timeout"
        );
        assert_eq!(
            read(
                r#"{"application": "a", "deployment_group": "g", "retry": {"max_attempts": "x"}}"#
            ),
            "retry.max_attempts"
        );
        let mut c = CodeDeployConfig::new("a", "g");
        c.retry = Some(RetryPolicy {
            max_attempts: 0,
            ..RetryPolicy::default()
        });
        let e = c.retry_config().unwrap_err();
        assert!(
            e.message().starts_with("retry.max_attempts:"),
            "{}",
            e.message()
        );
    }

    #[tokio::test]
    async fn the_configuration_overrides_what_the_chain_or_the_client_brings() {
        let mut c = CodeDeployConfig::new("bank", "payments");
        c.region = Some("eu-west-1".into());
        c.retry = Some(RetryPolicy::NEVER);
        c.call_timeout = Some(Duration::from_secs(7));
        let loaded = c.load_client().await.unwrap();
        let given = c
            .adjust(Client::from_conf(
                aws_sdk_codedeploy::Config::builder()
                    .behavior_version(aws_sdk_codedeploy::config::BehaviorVersion::latest())
                    .region(Region::new("us-east-1"))
                    .build(),
            ))
            .unwrap();
        for client in [loaded, given] {
            let conf = client.config();
            assert_eq!(conf.region().map(|r| r.as_ref()), Some("eu-west-1"));
            assert_eq!(conf.retry_config().map(|r| r.max_attempts()), Some(1));
            assert_eq!(
                conf.timeout_config().and_then(|t| t.operation_timeout()),
                Some(Duration::from_secs(7))
            );
        }
        c.profile = Some("prod".into());
        let e = c
            .adjust(Client::from_conf(
                aws_sdk_codedeploy::Config::builder().build(),
            ))
            .unwrap_err();
        assert!(e.message().starts_with("profile:"), "{}", e.message());
    }
}
