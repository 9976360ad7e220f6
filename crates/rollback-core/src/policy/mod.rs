//! The rollback policy: when a change is judged, how, and what happens on a breach.

mod nesting;
mod probe;

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

pub use probe::ProbePolicy;
pub(crate) use probe::{ProbeRules, SharedRules, shared_rules};

use crate::condition::NoData;
pub use crate::retry::RetryPolicy;
use crate::time::duration;

/// What an approval of an automatic rollback takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Approval {
    /// Roll back as soon as the policy is breached.
    #[default]
    Auto,
    /// Wait for an authorized actor to approve.
    Manual,
}

/// What to do when a breached revision is marked irreversible (a schema migration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnIrreversible {
    /// Do not roll back; freeze and hand over to humans.
    #[default]
    Freeze,
    /// Roll back anyway.
    Rollback,
}

/// Which earlier revision an automatic rollback restores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RollbackTo {
    /// The newest revision known good; the newest not known bad when none is.
    #[default]
    LastKnownGood,
    /// The newest earlier revision not known bad (kubectl's `rollout undo`).
    Previous,
}

fn default_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_bake_time() -> Duration {
    Duration::from_secs(600)
}
fn default_verify() -> Duration {
    Duration::from_secs(300)
}
fn default_consecutive_error_limit() -> u32 {
    4
}
fn default_max_rollbacks() -> u32 {
    3
}
fn default_max_rollbacks_window() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_rollback_timeout() -> Duration {
    Duration::from_secs(600)
}
fn is_false(b: &bool) -> bool {
    !*b
}

/// A rollback policy. Deserializes from YAML, JSON or TOML; unknown fields are
/// refused. Always [`Policy::validate`] one built by hand; the `from_*`
/// constructors do it for you.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Time between two measurements. Default 30s.
    #[serde(default = "default_interval", with = "duration")]
    pub interval: Duration,
    /// Wait this long after the change before the first measurement. Default 0s.
    #[serde(default, with = "duration")]
    pub initial_delay: Duration,
    /// Healthy this long (after `initial_delay`) and the revision is promoted
    /// to known good. Default 10m.
    #[serde(default = "default_bake_time", with = "duration")]
    pub bake_time: Duration,
    /// Failed measurements tolerated per probe before a breach; the
    /// `failure_limit + 1`-th failure breaches. Default 0 when
    /// `consecutive_failure_limit` is not set either (as in Argo Rollouts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_limit: Option<u32>,
    /// Consecutive failed measurements tolerated per probe (hysteresis
    /// against flapping): the `limit + 1`-th failure in a row breaches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failure_limit: Option<u32>,
    /// Inconclusive measurements tolerated per probe; one more escalates to
    /// humans. Default 0 (as in Argo Rollouts).
    #[serde(default)]
    pub inconclusive_limit: u32,
    /// Probe errors in a row tolerated per probe; one more escalates. Default 4.
    #[serde(default = "default_consecutive_error_limit")]
    pub consecutive_error_limit: u32,
    /// How a measurement without data counts. Default `inconclusive`.
    #[serde(default)]
    pub no_data: NoData,
    /// Decide and record, never act.
    #[serde(default, skip_serializing_if = "is_false")]
    pub dry_run: bool,
    /// `auto`, or `manual`: a rollback waits for an authorized approver.
    #[serde(default)]
    pub approval: Approval,
    /// After a rollback, probes must pass this long on the restored revision.
    /// `0s` skips verification. Default 5m.
    #[serde(default = "default_verify", with = "duration")]
    pub verify: Duration,
    /// How long a rollback may take to converge. Default 10m.
    #[serde(default = "default_rollback_timeout", with = "duration")]
    pub rollback_timeout: Duration,
    /// At most this many automatic rollbacks of one target within
    /// `max_rollbacks_window`; past it, escalate. Default 3.
    #[serde(default = "default_max_rollbacks")]
    pub max_rollbacks: u32,
    /// The window `max_rollbacks` counts in. Default 24h.
    #[serde(default = "default_max_rollbacks_window", with = "duration")]
    pub max_rollbacks_window: Duration,
    /// No automatic rollback of a target within this long of its previous
    /// one; a breach then escalates. Default 0s.
    #[serde(default, with = "duration")]
    pub cooldown: Duration,
    /// What a breach of an irreversible revision does. Default `freeze`.
    #[serde(default)]
    pub on_irreversible: OnIrreversible,
    /// Which revision an automatic rollback restores. Default `last_known_good`.
    #[serde(default)]
    pub rollback_to: RollbackTo,
    /// How backend calls of a rollback are retried.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// The probes and how each is judged. At least one.
    pub probes: Vec<ProbePolicy>,
}

/// An invalid policy: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid policy{}: field `{field}`: {reason}", source_name.as_ref().map(|s| format!(" in {s}")).unwrap_or_default())]
pub struct PolicyError {
    /// The field path, like `probes[1].success`.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
    /// The file or source it came from, if known.
    pub source_name: Option<String>,
}

impl PolicyError {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        PolicyError {
            field: field.into(),
            reason: reason.into(),
            source_name: None,
        }
    }
}

impl From<PolicyError> for crate::Error {
    fn from(e: PolicyError) -> Self {
        crate::Error::invalid(e.to_string())
    }
}

/// The format of a policy document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyFormat {
    /// YAML, as `serde_yaml_ng` reads it; [`Policy::from_file`] reads
    /// `.yaml` and `.yml` files as YAML.
    Yaml,
    /// [`Policy::from_file`] reads `.json` files as JSON.
    Json,
    /// [`Policy::from_file`] reads `.toml` files as TOML.
    Toml,
}

impl fmt::Display for PolicyFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PolicyFormat::Yaml => "YAML",
            PolicyFormat::Json => "JSON",
            PolicyFormat::Toml => "TOML",
        })
    }
}

fn path_error<E: fmt::Display>(e: serde_path_to_error::Error<E>) -> PolicyError {
    let field = e.path().to_string();
    let field = if field == "." {
        "(document)".to_owned()
    } else {
        field
    };
    PolicyError::new(field, e.inner().to_string())
}

fn too_long(size: &str) -> PolicyError {
    PolicyError::new(
        "(document)",
        format!(
            "the policy is {size}, more than the limit of 1 MiB ({} bytes); a policy is a few KiB: is this the policy file?",
            Policy::MAX_BYTES
        ),
    )
}

impl Policy {
    /// A policy with every default and these probes.
    pub fn with_probes(probes: Vec<ProbePolicy>) -> Self {
        Policy {
            interval: default_interval(),
            initial_delay: Duration::ZERO,
            bake_time: default_bake_time(),
            failure_limit: None,
            consecutive_failure_limit: None,
            inconclusive_limit: 0,
            consecutive_error_limit: default_consecutive_error_limit(),
            no_data: NoData::default(),
            dry_run: false,
            approval: Approval::default(),
            verify: default_verify(),
            rollback_timeout: default_rollback_timeout(),
            max_rollbacks: default_max_rollbacks(),
            max_rollbacks_window: default_max_rollbacks_window(),
            cooldown: Duration::ZERO,
            on_irreversible: OnIrreversible::default(),
            rollback_to: RollbackTo::default(),
            retry: RetryPolicy::default(),
            probes,
        }
    }

    /// The longest policy text [`Policy::parse`] and [`Policy::from_file`]
    /// read: 1 MiB. A policy is a few KiB; a longer text is the wrong file.
    pub const MAX_BYTES: usize = 1 << 20;

    /// How deeply a policy text may nest: 64 levels. A policy nests 3 deep
    /// (`probes`, its list, a probe). The depth is counted in one linear pass
    /// before parsing, because the YAML parser slows down quadratically with
    /// nesting (40 KB of `[` took seconds). What is counted:
    /// - JSON and TOML: each open `[` and `{` outside strings and comments
    ///   (a TOML `[[table]]` header counts 2 on its own line; dotted keys,
    ///   which TOML's parser bounds itself, do not count);
    /// - YAML: each open collection as the YAML parser reads it: flow `[`
    ///   and `{` (and the one-pair mapping of a `[key: value]` entry), block
    ///   mappings and sequences, a collection used as a key one level under
    ///   its mapping. Brackets in quoted, plain (`name: p[99]`) and block
    ///   (`|`, `>`) scalars and in comments are text, as they are to YAML.
    ///
    /// The YAML count agrees with `serde_yaml_ng`'s nesting on the texts the
    /// fuzz tests make (`tests/fuzz.rs`); anchors and aliases count where
    /// they are written, not where they are used.
    pub const MAX_DEPTH: usize = 64;

    /// Parse and validate a policy in `format`. Texts longer than
    /// [`Policy::MAX_BYTES`] or nested deeper than [`Policy::MAX_DEPTH`] are
    /// refused before parsing.
    pub fn parse(text: &str, format: PolicyFormat) -> Result<Self, PolicyError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        check_document(text, format)?;
        let policy: Policy = match format {
            PolicyFormat::Yaml => {
                let de = serde_yaml_ng::Deserializer::from_str(text);
                serde_path_to_error::deserialize(de).map_err(path_error)?
            }
            PolicyFormat::Json => {
                let mut de = serde_json::Deserializer::from_str(text);
                serde_path_to_error::deserialize(&mut de).map_err(path_error)?
            }
            PolicyFormat::Toml => {
                let de = toml::Deserializer::parse(text)
                    .map_err(|e| PolicyError::new("(document)", e.to_string().trim().to_owned()))?;
                serde_path_to_error::deserialize(de).map_err(path_error)?
            }
        };
        policy.validate()?;
        Ok(policy)
    }

    /// Parse and validate a YAML policy.
    pub fn from_yaml(text: &str) -> Result<Self, PolicyError> {
        Self::parse(text, PolicyFormat::Yaml)
    }

    /// Parse and validate a JSON policy.
    pub fn from_json(text: &str) -> Result<Self, PolicyError> {
        Self::parse(text, PolicyFormat::Json)
    }

    /// Parse and validate a TOML policy.
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        Self::parse(text, PolicyFormat::Toml)
    }

    /// Read a policy file; the format follows the extension (`.yaml`/`.yml`,
    /// `.json`, `.toml`). Errors name the file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, PolicyError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let with_name = |mut e: PolicyError| {
            e.source_name = Some(name.clone());
            e
        };
        let format = match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => PolicyFormat::Yaml,
            Some("json") => PolicyFormat::Json,
            Some("toml") => PolicyFormat::Toml,
            _ => {
                return Err(with_name(PolicyError::new(
                    "(file)",
                    "unknown policy format: name the file .yaml, .yml, .json or .toml",
                )));
            }
        };
        let cannot_read = |e: std::io::Error| {
            with_name(PolicyError::new("(file)", format!("cannot read it: {e}")))
        };
        let file = std::fs::File::open(path).map_err(cannot_read)?;
        let mut bytes = Vec::new();
        file.take(Self::MAX_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(cannot_read)?;
        if bytes.len() > Self::MAX_BYTES {
            let size = std::fs::metadata(path)
                .map(|m| format!("{} bytes", m.len()))
                .unwrap_or_else(|_| "longer".into());
            return Err(with_name(too_long(&size)));
        }
        let text = String::from_utf8(bytes)
            .map_err(|e| cannot_read(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        Self::parse(&text, format).map_err(with_name)
    }

    /// Check every rule a deserialized policy cannot express in its types.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.interval.is_zero() {
            return Err(PolicyError::new("interval", "must be greater than 0s"));
        }
        if self.interval < Duration::from_millis(1) {
            return Err(PolicyError::new("interval", "must be at least 1ms"));
        }
        if self.bake_time < self.interval {
            return Err(PolicyError::new(
                "bake_time",
                format!(
                    "{} is shorter than the interval {}: the revision would be promoted before a single measurement",
                    humantime::format_duration(self.bake_time),
                    humantime::format_duration(self.interval)
                ),
            ));
        }
        if !self.verify.is_zero() && self.verify < self.interval {
            return Err(PolicyError::new(
                "verify",
                format!(
                    "{} is shorter than the interval {}: use 0s to skip verification, or at least one interval",
                    humantime::format_duration(self.verify),
                    humantime::format_duration(self.interval)
                ),
            ));
        }
        if self.max_rollbacks == 0 {
            return Err(PolicyError::new(
                "max_rollbacks",
                "must be at least 1; use dry_run: true to never act",
            ));
        }
        if self.rollback_timeout.is_zero() {
            return Err(PolicyError::new(
                "rollback_timeout",
                "must be greater than 0s",
            ));
        }
        self.retry
            .validate()
            .map_err(|(field, reason)| PolicyError::new(format!("retry.{field}"), reason))?;
        if self.probes.is_empty() {
            return Err(PolicyError::new("probes", "at least one probe is required"));
        }
        let mut first_of: HashMap<&str, usize> = HashMap::with_capacity(self.probes.len());
        for (i, p) in self.probes.iter().enumerate() {
            let at = |f: &str| format!("probes[{i}].{f}");
            if p.name.trim().is_empty() {
                return Err(PolicyError::new(at("name"), "must not be empty"));
            }
            if let Some(&j) = first_of.get(p.name.as_str()) {
                return Err(PolicyError::new(
                    at("name"),
                    format!(
                        "{:?} is already the name of probes[{j}]; probe names must be unique",
                        p.name
                    ),
                ));
            }
            first_of.insert(&p.name, i);
            if let Some(judge) = &p.mann_whitney {
                judge.check().map_err(|(field, reason)| {
                    PolicyError::new(at(&format!("mann_whitney.{field}")), reason)
                })?;
                for (field, set) in [
                    ("success", p.success.is_some()),
                    ("failure", p.failure.is_some()),
                    ("forecast", p.forecast.is_some()),
                ] {
                    if set {
                        return Err(PolicyError::new(
                            at(field),
                            format!(
                                "probe {:?} is judged by mann_whitney, canary against baseline; it takes no `{field}`",
                                p.name
                            ),
                        ));
                    }
                }
                continue;
            }
            if let Some(f) = &p.forecast {
                f.check(p.success.as_ref()).map_err(|(field, reason)| {
                    let field = if field.is_empty() {
                        at("forecast")
                    } else {
                        at(&format!("forecast.{field}"))
                    };
                    PolicyError::new(field, reason)
                })?;
            }
            if p.success.is_none() && p.failure.is_none() {
                return Err(PolicyError::new(
                    format!("probes[{i}]"),
                    format!(
                        "probe {:?} needs a `success` or a `failure` condition (or both), or a `mann_whitney` judge",
                        p.name
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The index of the probe with this name.
    pub fn probe_index(&self, name: &str) -> Option<usize> {
        self.probes.iter().position(|p| p.name == name)
    }
}

/// Refuse a document longer than [`Policy::MAX_BYTES`] or nested deeper
/// than [`Policy::MAX_DEPTH`], before any parser sees it (the watch file
/// reads its text through the same gate).
pub(crate) fn check_document(text: &str, format: PolicyFormat) -> Result<(), PolicyError> {
    if text.len() > Policy::MAX_BYTES {
        return Err(too_long(&format!("{} bytes", text.len())));
    }
    if let Some(line) = nesting::too_deep(text, format, Policy::MAX_DEPTH) {
        return Err(PolicyError::new(
            "(document)",
            format!(
                "the {format} text nests more than {} levels deep at line {line}, the most a policy may; a policy nests 3 deep (probes, their list, a probe)",
                Policy::MAX_DEPTH
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
