//! Configuration: where the tracking server is, how to authenticate, and
//! which registered model and alias a target follows.

use std::fmt;
use std::time::Duration;

use crate::MlflowError;

/// The environment variable MLflow reads the tracking server's URI from.
pub const ENV_TRACKING_URI: &str = "MLFLOW_TRACKING_URI";
/// The environment variable MLflow reads a bearer token from.
pub const ENV_TRACKING_TOKEN: &str = "MLFLOW_TRACKING_TOKEN";
/// The environment variable MLflow reads the basic-auth user name from.
pub const ENV_TRACKING_USERNAME: &str = "MLFLOW_TRACKING_USERNAME";
/// The environment variable MLflow reads the basic-auth password from.
pub const ENV_TRACKING_PASSWORD: &str = "MLFLOW_TRACKING_PASSWORD";

/// How requests to the tracking server authenticate.
///
/// The `Debug` form never shows a secret.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Auth {
    /// No `Authorization` header.
    #[default]
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// HTTP basic authentication, as MLflow's `basic-auth` app expects.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
}

impl Auth {
    /// Reads the credentials the way MLflow's own client does: basic auth
    /// when both `MLFLOW_TRACKING_USERNAME` and `MLFLOW_TRACKING_PASSWORD` are
    /// set (and non-empty), else a bearer token from `MLFLOW_TRACKING_TOKEN`,
    /// else none.
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Like [`Auth::from_env`], over any source of variables.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let non_empty = |name: &str| var(name).filter(|v| !v.is_empty());
        match (
            non_empty(ENV_TRACKING_USERNAME),
            non_empty(ENV_TRACKING_PASSWORD),
        ) {
            (Some(username), Some(password)) => Auth::Basic { username, password },
            _ => non_empty(ENV_TRACKING_TOKEN).map_or(Auth::None, Auth::Bearer),
        }
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Auth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
        }
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
    /// A short form for ids and messages: `@champion`, `stage Production`.
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

/// A target's configuration, as read from a policy file.
///
/// ```
/// let c: rollback_mlflow::MlflowConfig = serde_json::from_str(
///     r#"{"tracking_uri": "http://127.0.0.1:5000", "model": "recommender", "alias": "champion", "timeout": "10s"}"#,
/// ).unwrap();
/// assert_eq!(c.page_size, 100);
/// ```
///
/// Credentials are never part of it: they come from MLflow's environment
/// variables ([`Auth::from_env`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
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
    /// Versions per page when listing the history (1 to 10000). Default 100.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Timeout of each request to the tracking server. Default `30s`.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
}

impl MlflowConfig {
    /// A configuration for `model@alias`, with the server from `MLFLOW_TRACKING_URI`.
    pub fn alias(model: impl Into<String>, alias: impl Into<String>) -> Self {
        MlflowConfig {
            tracking_uri: None,
            model: model.into(),
            alias: Some(alias.into()),
            stage: None,
            page_size: default_page_size(),
            timeout: default_timeout(),
        }
    }

    /// The tracking URI: the configured one, else `MLFLOW_TRACKING_URI`.
    pub fn resolved_tracking_uri(&self) -> Result<String, MlflowError> {
        match &self.tracking_uri {
            Some(uri) => Ok(uri.clone()),
            None => std::env::var(ENV_TRACKING_URI).map_err(|_| {
                MlflowError::Config(format!(
                    "no tracking server for registered model {:?}: set `tracking_uri` or the environment variable {ENV_TRACKING_URI}",
                    self.model
                ))
            }),
        }
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
}

/// Human durations: `"30s"`, `"5m"`.
mod duration {
    use std::time::Duration;

    pub(super) fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Duration, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        humantime::parse_duration(s.trim()).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {s:?} ({e}); write it like \"30s\" or \"2m\""
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_follows_mlflow_precedence() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert_eq!(Auth::from_vars(vars(&[])), Auth::None);
        assert_eq!(
            Auth::from_vars(vars(&[(ENV_TRACKING_TOKEN, "t")])),
            Auth::Bearer("t".into())
        );
        let both = [
            (ENV_TRACKING_TOKEN, "t"),
            (ENV_TRACKING_USERNAME, "u"),
            (ENV_TRACKING_PASSWORD, "p"),
        ];
        let both: &'static [(&str, &str)] = Box::leak(Box::new(both));
        assert_eq!(
            Auth::from_vars(vars(both)),
            Auth::Basic {
                username: "u".into(),
                password: "p".into()
            }
        );
        assert_eq!(
            Auth::from_vars(vars(&[
                (ENV_TRACKING_USERNAME, "u"),
                (ENV_TRACKING_TOKEN, "")
            ])),
            Auth::None
        );
        let shown = format!(
            "{:?}",
            Auth::Basic {
                username: "u".into(),
                password: "hunter2".into()
            }
        );
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!format!("{:?}", Auth::Bearer("s3cret".into())).contains("s3cret"));
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
        let e = serde_json::from_str::<MlflowConfig>(
            r#"{"model": "m", "alias": "a", "timeout": "soon"}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("invalid duration \"soon\""), "{e}");
        let e =
            serde_json::from_str::<MlflowConfig>(r#"{"model": "m", "aliass": "a"}"#).unwrap_err();
        assert!(e.to_string().contains("aliass"), "{e}");
    }
}
