//! Configuration: where the tracking server is, how to authenticate, and
//! which registered model and alias a target follows.

use std::time::Duration;

use rollback_core::http::Auth;
use rollback_core::policy::RetryPolicy;

use crate::{MlflowClient, MlflowError};

/// The environment variable MLflow reads the tracking server's URI from.
pub const ENV_TRACKING_URI: &str = "MLFLOW_TRACKING_URI";
/// The environment variable MLflow reads a bearer token from.
pub const ENV_TRACKING_TOKEN: &str = "MLFLOW_TRACKING_TOKEN";
/// The environment variable MLflow reads the basic-auth user name from.
pub const ENV_TRACKING_USERNAME: &str = "MLFLOW_TRACKING_USERNAME";
/// The environment variable MLflow reads the basic-auth password from.
pub const ENV_TRACKING_PASSWORD: &str = "MLFLOW_TRACKING_PASSWORD";

/// The credentials MLflow's own client would use: basic auth when both
/// `MLFLOW_TRACKING_USERNAME` and `MLFLOW_TRACKING_PASSWORD` are set (and
/// non-empty), else a bearer token from `MLFLOW_TRACKING_TOKEN`, else none.
pub fn auth_from_env() -> Option<Auth> {
    auth_from_vars(|name| std::env::var(name).ok())
}

/// [`auth_from_env`] over any source of variables.
pub fn auth_from_vars(var: impl Fn(&str) -> Option<String>) -> Option<Auth> {
    let non_empty = |name: &str| var(name).filter(|v| !v.is_empty());
    match (
        non_empty(ENV_TRACKING_USERNAME),
        non_empty(ENV_TRACKING_PASSWORD),
    ) {
        (Some(username), Some(password)) => Some(Auth::basic(username, password)),
        _ => non_empty(ENV_TRACKING_TOKEN).map(Auth::bearer),
    }
}

/// Which pointer of a registered model says what serves.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Pointer {
    /// An alias (`models:/recommender@champion`): MLflow 3's way.
    Alias(String),
    /// A stage (`Production`, `Staging`). **Deprecated by MLflow** since 2.9
    /// in favour of aliases; kept for registries that still use stages. A
    /// rollback transitions the version into the stage with
    /// `archive_existing_versions`.
    Stage(String),
}

impl Pointer {
    /// A short form for ids and messages: `alias champion`, `stage Production`.
    pub fn describe(&self) -> String {
        match self {
            Pointer::Alias(a) => format!("alias {a}"),
            Pointer::Stage(s) => format!("stage {s}"),
        }
    }

    /// The part of a move tag's key that names this pointer, short enough
    /// for MLflow's 250-character tag keys (the record itself names the
    /// pointer in full).
    pub(crate) fn tag_component(&self) -> String {
        let full = match self {
            Pointer::Alias(a) => a.clone(),
            Pointer::Stage(s) => format!("stage-{s}"),
        };
        match full.char_indices().nth(200) {
            Some((i, _)) => full[..i].to_owned(),
            None => full,
        }
    }

    /// Whether a move record is about this pointer.
    pub(crate) fn matches(&self, m: &crate::AliasMove) -> bool {
        match self {
            Pointer::Alias(a) => m.alias.as_deref() == Some(a.as_str()),
            Pointer::Stage(s) => m.stage.as_deref() == Some(s.as_str()),
        }
    }
}

/// Checks an alias name the way MLflow will, so a bad one fails at
/// configuration time: `latest` and `v<number>` are reserved.
pub(crate) fn validate_alias(alias: &str) -> Result<(), MlflowError> {
    let reserved_version = alias.len() > 1
        && (alias.starts_with('v') || alias.starts_with('V'))
        && alias[1..].bytes().all(|b| b.is_ascii_digit());
    if alias.is_empty() {
        Err(MlflowError::Config("the alias must not be empty".into()))
    } else if alias.eq_ignore_ascii_case("latest") || reserved_version {
        Err(MlflowError::Config(format!(
            "alias {alias:?} is reserved by MLflow (`latest` and `v<number>` are); choose another, such as \"champion\""
        )))
    } else if !alias
        .chars()
        .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
    {
        Err(MlflowError::Config(format!(
            "alias {alias:?} holds characters MLflow refuses: only letters, digits, `_` and `-`"
        )))
    } else if alias.chars().count() > 255 {
        Err(MlflowError::Config(format!(
            "alias {alias:?} is longer than MLflow's 255 characters"
        )))
    } else {
        Ok(())
    }
}

/// The stages MLflow knows, in their canonical spelling (MLflow accepts any case).
pub(crate) fn canonical_stage(stage: &str) -> Result<&'static str, MlflowError> {
    ["None", "Staging", "Production", "Archived"]
        .into_iter()
        .find(|s| s.eq_ignore_ascii_case(stage.trim()))
        .filter(|s| *s == "Staging" || *s == "Production")
        .ok_or_else(|| {
            MlflowError::Config(format!(
                "stage {stage:?} cannot be a rollback target; use \"Production\" or \"Staging\" (or, better, an alias: MLflow deprecated stages)"
            ))
        })
}

fn default_page_size() -> u32 {
    100
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

fn no_retry() -> RetryPolicy {
    RetryPolicy::NEVER
}

/// An MLflow target as written in a configuration file, for
/// [`crate::MlflowTarget::connect`]. Values given here come first; what is
/// left out comes from MLflow's own environment variables, as MLflow's
/// client reads them (`MLFLOW_TRACKING_URI`, `MLFLOW_TRACKING_TOKEN`, or
/// `MLFLOW_TRACKING_USERNAME` and `MLFLOW_TRACKING_PASSWORD`).
///
/// ```
/// let c: rollback_mlflow::MlflowConfig = serde_json::from_str(r#"{
///     "tracking_uri": "http://127.0.0.1:5000",
///     "model": "recommender",
///     "alias": "champion",
///     "auth": {"bearer": {"token": "s3cret"}},
///     "timeout": "10s",
///     "retry": {"max_attempts": 3}
/// }"#).unwrap();
/// assert_eq!(c.page_size, 100);
/// assert_eq!(c.connect_timeout, std::time::Duration::from_secs(10));
/// assert!(!format!("{c:?}").contains("s3cret"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct MlflowConfig {
    /// The tracking server's base URL; `MLFLOW_TRACKING_URI` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_uri: Option<String>,
    /// The registered model's name.
    pub model: String,
    /// The alias that serves (`champion`). Exactly one of `alias` and `stage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Legacy: the stage that serves (`Production`); deprecated by MLflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// `{bearer: {token: …}}` or `{basic: {username: …, password: …}}`;
    /// MLflow's credential variables when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
    /// Versions per page when listing the history (1 to 10000). Default 100.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Timeout of each request to the tracking server. Default `30s`.
    #[serde(default = "default_timeout", with = "rollback_core::time::duration")]
    pub timeout: Duration,
    /// Timeout of connecting to the tracking server. Default `10s`.
    #[serde(
        default = "default_connect_timeout",
        with = "rollback_core::time::duration"
    )]
    pub connect_timeout: Duration,
    /// How a request that fails in passing (network, 429, 5xx) is retried.
    /// Default: not at all, since the engine retries a whole rollback by its
    /// policy and the attempts would multiply. Requests that create
    /// something are never retried.
    #[serde(default = "no_retry")]
    pub retry: RetryPolicy,
}

impl MlflowConfig {
    /// A configuration for `model@alias`, everything else by default (the
    /// server and credentials from MLflow's environment variables).
    pub fn alias(model: impl Into<String>, alias: impl Into<String>) -> Self {
        MlflowConfig {
            tracking_uri: None,
            model: model.into(),
            alias: Some(alias.into()),
            stage: None,
            auth: None,
            page_size: default_page_size(),
            timeout: default_timeout(),
            connect_timeout: default_connect_timeout(),
            retry: no_retry(),
        }
    }

    /// The tracking URI: the configured one, else `MLFLOW_TRACKING_URI`.
    pub fn resolved_tracking_uri(&self) -> Result<String, MlflowError> {
        match &self.tracking_uri {
            Some(uri) => Ok(uri.clone()),
            None => std::env::var(ENV_TRACKING_URI).map_err(|_| {
                MlflowError::Config(format!(
                    "no tracking server for registered model {:?}: set the field `tracking_uri` or the environment variable {ENV_TRACKING_URI}",
                    self.model
                ))
            }),
        }
    }

    /// The credentials: the configured ones, else MLflow's variables.
    pub fn resolved_auth(&self) -> Option<Auth> {
        self.auth.clone().or_else(auth_from_env)
    }

    /// The pointer, checking that exactly one of `alias` and `stage` is set.
    pub fn pointer(&self) -> Result<Pointer, MlflowError> {
        match (&self.alias, &self.stage) {
            (Some(a), None) => {
                validate_alias(a)
                    .map_err(|e| MlflowError::Config(format!("field `alias`: {e}")))?;
                Ok(Pointer::Alias(a.clone()))
            }
            (None, Some(s)) => {
                let s = canonical_stage(s)
                    .map_err(|e| MlflowError::Config(format!("field `stage`: {e}")))?;
                Ok(Pointer::Stage(s.to_owned()))
            }
            (Some(_), Some(_)) => Err(MlflowError::Config(format!(
                "registered model {:?}: set one of the fields `alias` and `stage`, not both",
                self.model
            ))),
            (None, None) => Err(MlflowError::Config(format!(
                "registered model {:?}: the field `alias` is missing (or, for a legacy registry, `stage`)",
                self.model
            ))),
        }
    }

    /// A client built from this configuration: its server, credentials,
    /// timeouts and retry, with MLflow's variables for what it leaves out.
    pub fn client(&self) -> Result<MlflowClient, MlflowError> {
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .build()
            .map_err(|e| {
                MlflowError::Config(format!(
                    "building the HTTP client for registered model {:?} failed: {e}",
                    self.model
                ))
            })?;
        let uri = self.resolved_tracking_uri()?;
        Ok(MlflowClient::with_http_client(http, &uri)
            .map_err(|e| MlflowError::Config(format!("field `tracking_uri`: {e}")))?
            .with_auth(self.resolved_auth())
            .with_retry(self.retry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn auth_follows_mlflow_precedence() {
        assert_eq!(auth_from_vars(vars(&[])), None);
        assert_eq!(
            auth_from_vars(vars(&[(ENV_TRACKING_TOKEN, "t")])),
            Some(Auth::bearer("t"))
        );
        let both = [
            (ENV_TRACKING_TOKEN, "t"),
            (ENV_TRACKING_USERNAME, "u"),
            (ENV_TRACKING_PASSWORD, "p"),
        ];
        assert_eq!(auth_from_vars(vars(&both)), Some(Auth::basic("u", "p")));
        assert_eq!(
            auth_from_vars(vars(&[
                (ENV_TRACKING_USERNAME, "u"),
                (ENV_TRACKING_TOKEN, "")
            ])),
            None
        );
        let shown = format!("{:?}", Auth::basic("u", "hunter2"));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!format!("{:?}", Auth::bearer("s3cret")).contains("s3cret"));
    }

    #[test]
    fn config_names_the_bad_field() {
        let c: MlflowConfig = serde_json::from_str(r#"{"model": "m", "alias": "latest"}"#).unwrap();
        let e = c.pointer().unwrap_err().to_string();
        assert!(e.contains("field `alias`") && e.contains("reserved"), "{e}");
        let c: MlflowConfig = serde_json::from_str(r#"{"model": "m", "alias": "v12"}"#).unwrap();
        assert!(c.pointer().is_err());
        let c: MlflowConfig = serde_json::from_str(r#"{"model": "m", "alias": "v1x"}"#).unwrap();
        assert_eq!(c.pointer().unwrap(), Pointer::Alias("v1x".into()));
        let c: MlflowConfig =
            serde_json::from_str(r#"{"model": "m", "alias": "prod champion"}"#).unwrap();
        assert!(
            c.pointer()
                .unwrap_err()
                .to_string()
                .contains("characters MLflow refuses")
        );
        let c: MlflowConfig = serde_json::from_str(r#"{"model": "m"}"#).unwrap();
        assert!(
            c.pointer()
                .unwrap_err()
                .to_string()
                .contains("field `alias` is missing")
        );
        let c: MlflowConfig =
            serde_json::from_str(r#"{"model": "m", "stage": "production"}"#).unwrap();
        assert_eq!(c.pointer().unwrap(), Pointer::Stage("Production".into()));
        let c: MlflowConfig =
            serde_json::from_str(r#"{"model": "m", "stage": "Archived"}"#).unwrap();
        assert!(
            c.pointer()
                .unwrap_err()
                .to_string()
                .contains("field `stage`")
        );
        let refused = |json: &str| {
            serde_json::from_str::<MlflowConfig>(json)
                .unwrap_err()
                .to_string()
        };
        for (json, says) in [
            (
                r#"{"model": "m", "alias": "a", "timeout": "soon"}"#,
                "invalid duration \"soon\"",
            ),
            (r#"{"model": "m", "aliass": "a"}"#, "aliass"),
            (
                r#"{"model": "m", "alias": "a", "auth": {"token": "t"}}"#,
                "token",
            ),
            (
                r#"{"model": "m", "alias": "a", "retry": {"attempts": 2}}"#,
                "attempts",
            ),
        ] {
            let e = refused(json);
            assert!(e.contains(says), "{json}: {e}");
        }
    }

    #[test]
    fn read_as_the_watch_file_reads_options_errors_name_the_field() {
        let read = |json: serde_json::Value| {
            rollback_core::registry::options::<MlflowConfig>(json.as_object().unwrap())
        };
        let c = read(serde_json::json!({"model": "m", "alias": "a", "timeout": "5s"})).unwrap();
        assert_eq!(c.timeout, Duration::from_secs(5));
        let e = read(serde_json::json!({"model": "m", "alias": "a", "timeout": "soon"}))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("`timeout`: invalid duration"), "{e}");
        let e = read(serde_json::json!({"model": "m", "retry": {"max_attempts": "x"}}))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("`retry.max_attempts`:"), "{e}");
    }

    #[test]
    fn config_values_come_before_the_environment() {
        let c: MlflowConfig = serde_json::from_str(
            r#"{"model": "m", "alias": "a", "tracking_uri": "http://127.0.0.1:5000/mlflow",
                "auth": {"basic": {"username": "u", "password": "p"}},
                "connect_timeout": "2s", "retry": {"max_attempts": 2}}"#,
        )
        .unwrap();
        assert_eq!(c.resolved_auth(), Some(Auth::basic("u", "p")));
        assert_eq!(c.connect_timeout, Duration::from_secs(2));
        assert_eq!(c.retry.max_attempts, 2);
        let client = c.client().unwrap();
        assert_eq!(client.base_url().as_str(), "http://127.0.0.1:5000/mlflow/");
        let defaults = MlflowConfig::alias("m", "a");
        assert_eq!(defaults.retry, RetryPolicy::NEVER);
        let back: MlflowConfig =
            serde_json::from_str(&serde_json::to_string(&defaults).unwrap()).unwrap();
        assert_eq!(back, defaults);
        let mut bad = MlflowConfig::alias("m", "a");
        bad.tracking_uri = Some("file:///tmp/mlruns".into());
        let e = bad.client().unwrap_err().to_string();
        assert!(e.contains("field `tracking_uri`"), "{e}");
    }
}
