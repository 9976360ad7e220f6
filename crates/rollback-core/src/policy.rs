//! The rollback policy: when a change is judged, how, and what happens on a breach.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use crate::condition::{Condition, NoData};
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

/// The judging of one probe. Limits left out take the policy-wide value.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbePolicy {
    /// The probe's name; a [`crate::HealthProbe`] of this name measures it.
    pub name: String,
    /// When a measurement passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success: Option<Condition>,
    /// When a measurement fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Condition>,
    /// Overrides the policy's `failure_limit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_limit: Option<u32>,
    /// Overrides the policy's `consecutive_failure_limit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failure_limit: Option<u32>,
    /// Overrides the policy's `inconclusive_limit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inconclusive_limit: Option<u32>,
    /// Overrides the policy's `consecutive_error_limit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_error_limit: Option<u32>,
    /// Overrides the policy's `no_data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_data: Option<NoData>,
}

impl ProbePolicy {
    /// A probe policy with no conditions yet.
    pub fn new(name: impl Into<String>) -> Self {
        ProbePolicy {
            name: name.into(),
            success: None,
            failure: None,
            failure_limit: None,
            consecutive_failure_limit: None,
            inconclusive_limit: None,
            consecutive_error_limit: None,
            no_data: None,
        }
    }

    /// Set the success condition.
    pub fn success(mut self, c: Condition) -> Self {
        self.success = Some(c);
        self
    }

    /// Set the failure condition.
    pub fn failure(mut self, c: Condition) -> Self {
        self.failure = Some(c);
        self
    }
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
    /// YAML
    Yaml,
    /// JSON
    Json,
    /// TOML
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

    /// Parse and validate a policy in `format`.
    pub fn parse(text: &str, format: PolicyFormat) -> Result<Self, PolicyError> {
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
        let text = std::fs::read_to_string(path)
            .map_err(|e| with_name(PolicyError::new("(file)", format!("cannot read it: {e}"))))?;
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
            if p.success.is_none() && p.failure.is_none() {
                return Err(PolicyError::new(
                    format!("probes[{i}]"),
                    format!(
                        "probe {:?} needs a `success` or a `failure` condition (or both)",
                        p.name
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The effective rules of each probe, in policy order.
    pub fn rules(&self) -> Vec<ProbeRules> {
        self.probes
            .iter()
            .map(|p| {
                let failure_limit = p.failure_limit.or(self.failure_limit);
                let consecutive_failure_limit = p
                    .consecutive_failure_limit
                    .or(self.consecutive_failure_limit);
                let failure_limit = match (failure_limit, consecutive_failure_limit) {
                    (None, None) => Some(0),
                    (f, _) => f,
                };
                ProbeRules {
                    success: p.success,
                    failure: p.failure,
                    failure_limit,
                    consecutive_failure_limit,
                    inconclusive_limit: p.inconclusive_limit.unwrap_or(self.inconclusive_limit),
                    consecutive_error_limit: p
                        .consecutive_error_limit
                        .unwrap_or(self.consecutive_error_limit),
                    no_data: p.no_data.unwrap_or(self.no_data),
                }
            })
            .collect()
    }

    /// The index of the probe with this name.
    pub fn probe_index(&self, name: &str) -> Option<usize> {
        self.probes.iter().position(|p| p.name == name)
    }
}

/// The effective judging rules of one probe, with policy-wide defaults applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeRules {
    /// When a measurement passes.
    pub success: Option<Condition>,
    /// When a measurement fails.
    pub failure: Option<Condition>,
    /// Failed measurements tolerated, if limited.
    pub failure_limit: Option<u32>,
    /// Failed measurements in a row tolerated, if limited.
    pub consecutive_failure_limit: Option<u32>,
    /// Inconclusive measurements tolerated.
    pub inconclusive_limit: u32,
    /// Probe errors in a row tolerated.
    pub consecutive_error_limit: u32,
    /// How no data counts.
    pub no_data: NoData,
}

impl ProbeRules {
    /// The conditions as written: `success < 0.01, failure >= 0.05`.
    pub fn describe(&self) -> String {
        match (&self.success, &self.failure) {
            (Some(s), Some(f)) => format!("success {s}, failure {f}"),
            (Some(s), None) => format!("success {s}"),
            (None, Some(f)) => format!("failure {f}"),
            (None, None) => "no condition".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
interval: 10s
initial_delay: 1m
bake_time: 15m
failure_limit: 1
consecutive_failure_limit: 2
inconclusive_limit: 3
consecutive_error_limit: 5
no_data: fail
dry_run: true
approval: manual
verify: 2m
max_rollbacks: 2
max_rollbacks_window: 12h
cooldown: 30m
on_irreversible: rollback
rollback_to: previous
retry: { max_attempts: 5, initial_backoff: 100ms, max_backoff: 2s }
probes:
  - name: error_rate
    success: "< 0.01"
    failure: ">= 0.05"
  - name: latency_p99
    success: "<= +10%"
    failure_limit: 3
    no_data: inconclusive
"#;

    #[test]
    fn every_knob_parses_from_yaml() {
        let p = Policy::from_yaml(YAML).unwrap();
        assert_eq!(p.interval, Duration::from_secs(10));
        assert_eq!(p.initial_delay, Duration::from_secs(60));
        assert_eq!(p.bake_time, Duration::from_secs(900));
        assert_eq!(p.failure_limit, Some(1));
        assert_eq!(p.consecutive_failure_limit, Some(2));
        assert_eq!(p.inconclusive_limit, 3);
        assert_eq!(p.consecutive_error_limit, 5);
        assert_eq!(p.no_data, NoData::Fail);
        assert!(p.dry_run);
        assert_eq!(p.approval, Approval::Manual);
        assert_eq!(p.verify, Duration::from_secs(120));
        assert_eq!(p.max_rollbacks, 2);
        assert_eq!(p.max_rollbacks_window, Duration::from_secs(12 * 3600));
        assert_eq!(p.cooldown, Duration::from_secs(1800));
        assert_eq!(p.on_irreversible, OnIrreversible::Rollback);
        assert_eq!(p.rollback_to, RollbackTo::Previous);
        assert_eq!(p.retry.max_attempts, 5);
        let rules = p.rules();
        assert_eq!(rules[0].failure_limit, Some(1));
        assert_eq!(rules[1].failure_limit, Some(3));
        assert_eq!(rules[1].no_data, NoData::Inconclusive);
        assert_eq!(rules[0].no_data, NoData::Fail);
        assert!(rules[1].success.unwrap().is_relative());
    }

    #[test]
    fn json_and_toml_say_the_same() {
        let yaml = Policy::from_yaml(YAML).unwrap();
        let json = serde_json::to_string(&yaml).unwrap();
        assert_eq!(Policy::from_json(&json).unwrap(), yaml);
        let toml_text = toml::to_string(&yaml).unwrap();
        assert_eq!(Policy::from_toml(&toml_text).unwrap(), yaml);
    }

    #[test]
    fn defaults_follow_argo() {
        let p = Policy::from_yaml("probes: [{name: e, success: '< 1'}]").unwrap();
        assert_eq!(p.interval, Duration::from_secs(30));
        assert_eq!(p.consecutive_error_limit, 4);
        assert_eq!(p.inconclusive_limit, 0);
        assert_eq!(p.rules()[0].failure_limit, Some(0));
        let p =
            Policy::from_yaml("consecutive_failure_limit: 2\nprobes: [{name: e, success: '< 1'}]")
                .unwrap();
        assert_eq!(
            p.rules()[0].failure_limit,
            None,
            "hysteresis alone must not be cut short by failure_limit 0"
        );
    }

    fn err(yaml: &str) -> PolicyError {
        Policy::from_yaml(yaml).unwrap_err()
    }

    #[test]
    fn errors_name_the_field_and_the_reason() {
        let e = err("probes: [{name: e, sucess: '< 1'}]");
        assert_eq!(e.field, "probes[0].sucess");
        assert!(e.reason.contains("unknown field `sucess`"), "{e}");

        let e = err("interval: 5 parsecs\nprobes: [{name: e, success: '< 1'}]");
        assert_eq!(e.field, "interval");
        assert!(e.reason.contains("invalid duration \"5 parsecs\""), "{e}");

        let e = err("probes: [{name: e, success: '< 1%'}]");
        assert_eq!(e.field, "probes[0].success");
        assert!(e.reason.contains("percentage without a sign"), "{e}");

        let e = err("probes: [{name: e}]");
        assert_eq!(e.field, "probes[0]");
        assert!(e.reason.contains("needs a `success` or a `failure`"), "{e}");

        let e = err("probes: []");
        assert_eq!(e.field, "probes");

        let e = err("probes: [{name: e, success: '< 1'}, {name: e, failure: '> 2'}]");
        assert_eq!(e.field, "probes[1].name");

        let e = err("interval: 0s\nprobes: [{name: e, success: '< 1'}]");
        assert_eq!(e.field, "interval");

        let e = err("bake_time: 10s\ninterval: 1m\nprobes: [{name: e, success: '< 1'}]");
        assert_eq!(e.field, "bake_time");

        let e = err("no_data: maybe\nprobes: [{name: e, success: '< 1'}]");
        assert_eq!(e.field, "no_data");

        let e = err("probes: [{name: e, success: '< 1'}]\nextra: 1");
        assert!(e.reason.contains("unknown field `extra`"), "{e}");
        assert!(e.to_string().starts_with("invalid policy: field"), "{e}");
    }

    #[test]
    fn file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("canary.yaml");
        std::fs::write(&path, "probes: [{name: e, success: 'soon'}]").unwrap();
        let e = Policy::from_file(&path).unwrap_err();
        assert!(e.to_string().contains("canary.yaml"), "{e}");
        assert_eq!(e.field, "probes[0].success");
        let e = Policy::from_file(dir.path().join("canary.ini")).unwrap_err();
        assert!(e.reason.contains("unknown policy format"), "{e}");
    }

    fn probes(n: usize) -> Vec<ProbePolicy> {
        (0..n)
            .map(|i| ProbePolicy::new(format!("p{i}")).success("< 1".parse().unwrap()))
            .collect()
    }

    #[test]
    fn forty_thousand_probes_validate_and_a_late_duplicate_names_both_indices() {
        let mut policy = Policy::with_probes(probes(40_000));
        policy.validate().unwrap();
        policy
            .probes
            .push(ProbePolicy::new("p39998").failure("> 2".parse().unwrap()));
        let e = policy.validate().unwrap_err();
        assert_eq!(e.field, "probes[40000].name");
        assert_eq!(
            e.reason,
            "\"p39998\" is already the name of probes[39998]; probe names must be unique"
        );
        policy.probes[40_000].name = "p0".into();
        policy
            .probes
            .push(ProbePolicy::new("p0").failure("> 2".parse().unwrap()));
        let e = policy.validate().unwrap_err();
        assert_eq!(
            e.field, "probes[40000].name",
            "the first duplicate is reported"
        );
        assert!(e.reason.contains("already the name of probes[0];"), "{e}");
    }
}
