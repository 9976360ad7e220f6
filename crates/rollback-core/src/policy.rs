//! The rollback policy: when a change is judged, how, and what happens on a breach.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
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
    pub(crate) fn rules(&self) -> Vec<ProbeRules> {
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
pub(crate) struct ProbeRules {
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

/// How deeply a policy text nests, measured in one linear pass before it
/// reaches a parser. [`Policy::MAX_DEPTH`] says what is counted. The YAML
/// count follows the rules of libyaml's scanner (the parser under
/// `serde_yaml_ng`) for where a token starts, so that a bracket it reads as
/// text (in a quoted, plain or block scalar, or a comment) is not counted,
/// and one it reads as nesting is.
mod nesting {
    use super::PolicyFormat;

    /// The line (from 1) at which `text` first nests deeper than `limit`.
    pub(super) fn too_deep(text: &str, format: PolicyFormat, limit: usize) -> Option<usize> {
        let b = text.as_bytes();
        match format {
            PolicyFormat::Json => brackets(b, limit, false),
            PolicyFormat::Toml => brackets(b, limit, true),
            PolicyFormat::Yaml => Yaml::new(b, limit).run(),
        }
    }

    /// JSON, and TOML with its comments and four kinds of strings: every
    /// `[` and `{` outside strings and comments opens a level.
    fn brackets(b: &[u8], limit: usize, toml: bool) -> Option<usize> {
        let (mut depth, mut line, mut i) = (0usize, 1usize, 0usize);
        while let Some(&c) = b.get(i) {
            i += 1;
            match c {
                b'\n' => line += 1,
                b'[' | b'{' => {
                    depth += 1;
                    if depth > limit {
                        return Some(line);
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                b'"' if !toml => i = string_end(b, i, b'"', true, true, &mut line),
                b'#' if toml => {
                    while b.get(i).is_some_and(|&c| c != b'\n') {
                        i += 1;
                    }
                }
                b'"' | b'\'' if toml => {
                    let escapes = c == b'"';
                    if b[i..].starts_with(&[c, c]) {
                        // """…""" or '''…''': to three quotes, and up to two
                        // more that belong to the string.
                        i += 2;
                        loop {
                            i = string_end(b, i, c, escapes, true, &mut line);
                            if i >= b.len() || b[i..].starts_with(&[c, c]) {
                                break;
                            }
                        }
                        i = (i + 2).min(b.len());
                        for _ in 0..2 {
                            if b.get(i) == Some(&c) {
                                i += 1;
                            }
                        }
                    } else {
                        i = string_end(b, i, c, escapes, false, &mut line);
                    }
                }
                _ => {}
            }
        }
        None
    }

    /// The index after the quote closing a string whose content starts at
    /// `i`. A string that cannot span lines ends at the line break (left for
    /// the caller to count).
    fn string_end(
        b: &[u8],
        mut i: usize,
        quote: u8,
        escapes: bool,
        multiline: bool,
        line: &mut usize,
    ) -> usize {
        while let Some(&c) = b.get(i) {
            if c == b'\n' {
                if !multiline {
                    return i;
                }
                *line += 1;
            }
            i += 1;
            if c == quote {
                return i;
            }
            if escapes && c == b'\\' && b.get(i).is_some_and(|&e| e != b'\n' || multiline) {
                if b[i] == b'\n' {
                    *line += 1;
                }
                i += 1;
            }
        }
        i
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Block {
        Mapping,
        Sequence,
        /// A sequence at the column of its mapping (`key:` then `- a`).
        IndentlessSequence,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Flow {
        Sequence,
        Mapping,
        /// The one-pair mapping of a `key: value` entry in a flow sequence.
        Pair,
    }

    /// A reading of YAML that keeps just enough of libyaml's scanner state to
    /// know where tokens start: its flow collections, its stack of block
    /// indentations, and whether it is inside a plain scalar.
    struct Yaml<'a> {
        b: &'a [u8],
        limit: usize,
        i: usize,
        line: usize,
        line_start: usize,
        /// The next byte begins a line in block context.
        fresh_line: bool,
        /// Open flow collections, innermost last, each with the deepest
        /// nesting reached inside it; in flow context when any.
        flow: Vec<(Flow, usize)>,
        /// How many levels the last flow collection to close nested.
        closed_depth: usize,
        /// The last token closed a flow collection: a `:` now makes that
        /// collection a key, under a mapping that opens only then.
        after_close: bool,
        /// A key reached deeper than the limit, counted once its mapping opened.
        too_deep: bool,
        /// Open block collections, innermost last: their column and kind.
        blocks: Vec<(usize, Block)>,
        /// Inside a plain (unquoted) scalar, where quotes and, in block
        /// context, brackets are text.
        plain: bool,
        /// The column of the first token of the current block node: the key,
        /// if a `:` follows.
        key: Option<usize>,
    }

    impl<'a> Yaml<'a> {
        fn new(b: &'a [u8], limit: usize) -> Self {
            let bom = if b.starts_with("\u{feff}".as_bytes()) {
                3
            } else {
                0
            };
            Yaml {
                b,
                limit,
                i: bom,
                line: 1,
                line_start: bom,
                fresh_line: true,
                flow: Vec::new(),
                closed_depth: 0,
                after_close: false,
                too_deep: false,
                blocks: Vec::new(),
                plain: false,
                key: None,
            }
        }

        /// The length of the line break at `i`, 0 if none: YAML 1.1 breaks
        /// lines at CR, LF, CR LF, NEL, LS and PS.
        fn line_break(&self, i: usize) -> usize {
            match &self.b[i.min(self.b.len())..] {
                [b'\r', b'\n', ..] => 2,
                [b'\r' | b'\n', ..] => 1,
                [0xC2, 0x85, ..] => 2,
                [0xE2, 0x80, 0xA8 | 0xA9, ..] => 3,
                _ => 0,
            }
        }

        fn blank(&self, i: usize) -> bool {
            matches!(self.b.get(i), Some(b' ' | b'\t'))
        }

        /// A blank, a line break or the end.
        fn blankz(&self, i: usize) -> bool {
            i >= self.b.len() || self.blank(i) || self.line_break(i) > 0
        }

        fn new_line(&mut self, len: usize) {
            self.i += len;
            self.line += 1;
            self.line_start = self.i;
        }

        fn skip_to_line_break(&mut self) {
            while self.i < self.b.len() && self.line_break(self.i) == 0 {
                self.i += 1;
            }
        }

        fn height(&self) -> usize {
            self.flow.len() + self.blocks.len()
        }

        fn open_flow(&mut self, kind: Flow) {
            let height = self.height() + 1;
            self.flow.push((kind, height));
        }

        fn close_flow(&mut self) -> Option<Flow> {
            let (kind, deepest) = self.flow.pop()?;
            let height = self.height();
            if let Some((_, parent)) = self.flow.last_mut() {
                *parent = (*parent).max(deepest);
            }
            self.closed_depth = deepest.saturating_sub(height);
            Some(kind)
        }

        /// A mapping just opened at the current height around the key before
        /// it: when that key is a flow collection (the token before closed
        /// one), its levels lie one deeper than they were counted.
        fn key_under_new_mapping(&mut self, key_is_collection: bool) {
            if key_is_collection {
                let deepest = self.height() + self.closed_depth;
                self.too_deep |= deepest > self.limit;
                if let Some((_, d)) = self.flow.last_mut() {
                    *d = (*d).max(deepest);
                }
            }
        }

        fn top(&self) -> Option<(usize, Block)> {
            self.blocks.last().copied()
        }

        /// libyaml's `roll_indent`: a block collection opens at `col` if it
        /// is right of the innermost one.
        fn open_block(&mut self, col: usize, kind: Block) {
            match self.top() {
                Some((c, _)) if c >= col => {
                    if c == col
                        && kind == Block::Sequence
                        && self.top().unwrap().1 == Block::Mapping
                    {
                        self.blocks.push((col, Block::IndentlessSequence));
                    }
                }
                _ => self.blocks.push((col, kind)),
            }
        }

        /// libyaml's `unroll_indent` before a block token at `col`.
        fn close_blocks(&mut self, col: usize, entry: bool) {
            while let Some((c, kind)) = self.top() {
                if c > col || (c == col && kind == Block::IndentlessSequence && !entry) {
                    self.blocks.pop();
                } else {
                    break;
                }
            }
        }

        fn run(mut self) -> Option<usize> {
            while self.i < self.b.len() {
                if std::mem::take(&mut self.fresh_line) && self.flow.is_empty() {
                    self.block_line();
                    continue;
                }
                let n = self.line_break(self.i);
                if n > 0 {
                    self.new_line(n);
                    self.fresh_line = true;
                } else if self.blank(self.i) {
                    self.i += 1;
                } else if self.plain {
                    self.plain_char();
                } else {
                    self.token();
                }
                if self.too_deep || self.height() > self.limit {
                    return Some(self.line);
                }
            }
            None
        }

        /// The start of a line in block context: a blank or comment line, a
        /// document marker, a directive, the continuation of a plain scalar,
        /// or a new token.
        fn block_line(&mut self) {
            let mut k = self.i;
            while self.blank(k) {
                k += 1;
            }
            if k >= self.b.len() || self.line_break(k) > 0 {
                self.i = k;
                return;
            }
            let rest = &self.b[k..];
            let col = k - self.line_start;
            if rest[0] == b'#' {
                self.plain = false;
                self.i = k;
                self.skip_to_line_break();
                return;
            }
            if col == 0
                && (rest.starts_with(b"---") || rest.starts_with(b"..."))
                && self.blankz(k + 3)
            {
                self.blocks.clear();
                self.plain = false;
                self.key = None;
                self.i = k + 3;
                return;
            }
            if col == 0 && rest[0] == b'%' {
                self.plain = false;
                self.i = k;
                self.skip_to_line_break();
                return;
            }
            self.i = k;
            if self.plain && self.top().is_none_or(|(c, _)| col > c) {
                return;
            }
            self.plain = false;
            self.key = None;
        }

        /// Inside a plain scalar: what ends it, else text.
        fn plain_char(&mut self) {
            let c = self.b[self.i];
            let after_blank = self.i == self.line_start || self.blank(self.i - 1);
            let ends = match c {
                b'#' => after_blank,
                b':' => {
                    self.blankz(self.i + 1)
                        || (!self.flow.is_empty()
                            && matches!(
                                self.b.get(self.i + 1),
                                Some(b',' | b'?' | b'[' | b']' | b'{' | b'}')
                            ))
                }
                b',' | b'[' | b']' | b'{' | b'}' => !self.flow.is_empty(),
                _ => false,
            };
            if ends {
                self.plain = false;
            } else {
                self.i += 1;
            }
        }

        fn mark_key(&mut self, col: usize) {
            if self.flow.is_empty() && self.key.is_none() {
                self.key = Some(col);
            }
        }

        /// A token starts at `self.i`, as libyaml's `fetch_next_token` sees it.
        fn token(&mut self) {
            let i = self.i;
            let c = self.b[i];
            let col = i - self.line_start;
            let block = self.flow.is_empty();
            let indicator = !block || self.blankz(i + 1);
            let after_close = std::mem::take(&mut self.after_close);
            if block {
                self.close_blocks(col, c == b'-' && self.blankz(i + 1));
            }
            self.i += 1;
            match c {
                b'#' => self.skip_to_line_break(),
                b'[' | b'{' => {
                    self.mark_key(col);
                    self.open_flow(if c == b'[' {
                        Flow::Sequence
                    } else {
                        Flow::Mapping
                    });
                }
                b']' | b'}' => {
                    if self.close_flow() == Some(Flow::Pair) {
                        self.close_flow();
                    }
                    self.after_close = true;
                }
                b',' => {
                    if self.flow.last().is_some_and(|f| f.0 == Flow::Pair) {
                        self.close_flow();
                    }
                }
                b'-' if self.blankz(i + 1) => {
                    if block {
                        self.open_block(col, Block::Sequence);
                    }
                    self.key = None;
                }
                b'?' | b':' if indicator => {
                    let height = self.height();
                    if block {
                        let at = if c == b'?' {
                            col
                        } else {
                            self.key.unwrap_or(col)
                        };
                        self.open_block(at, Block::Mapping);
                    } else if self.flow.last().is_some_and(|f| f.0 == Flow::Sequence) {
                        self.open_flow(Flow::Pair);
                    }
                    if c == b':' && self.height() > height {
                        self.key_under_new_mapping(after_close);
                    }
                    self.key = None;
                }
                b'*' | b'&' | b'!' => {
                    self.mark_key(col);
                    while !self.blankz(self.i)
                        && !matches!(self.b[self.i], b',' | b'[' | b']' | b'{' | b'}')
                    {
                        self.i += 1;
                    }
                }
                b'|' | b'>' if block => self.block_scalar(),
                b'\'' | b'"' => {
                    self.mark_key(col);
                    self.quoted(c);
                }
                _ => {
                    self.mark_key(col);
                    self.plain = true;
                }
            }
        }

        /// A quoted scalar, across lines, to its closing quote.
        fn quoted(&mut self, quote: u8) {
            while self.i < self.b.len() {
                let n = self.line_break(self.i);
                if n > 0 {
                    self.new_line(n);
                    continue;
                }
                let c = self.b[self.i];
                self.i += 1;
                if c == b'\\' && quote == b'"' {
                    let n = self.line_break(self.i);
                    if n > 0 {
                        self.new_line(n);
                    } else {
                        self.i += 1;
                    }
                } else if c == quote {
                    if quote == b'\'' && self.b.get(self.i) == Some(&b'\'') {
                        self.i += 1;
                    } else {
                        return;
                    }
                }
            }
        }

        /// A literal (`|`) or folded (`>`) block scalar: its header, then its
        /// lines, indented as libyaml's `scan_block_scalar` decides.
        fn block_scalar(&mut self) {
            let mut increment = 0;
            while let Some(&c) = self.b.get(self.i) {
                match c {
                    b'+' | b'-' => {}
                    b'1'..=b'9' => increment = usize::from(c - b'0'),
                    _ => break,
                }
                self.i += 1;
            }
            self.skip_to_line_break();
            let n = self.line_break(self.i);
            if n == 0 {
                return;
            }
            self.new_line(n);
            let parent = self.top().map(|(c, _)| c);
            let mut indent = match (increment, parent) {
                (0, _) => 0,
                (m, Some(p)) => p + m,
                (m, None) => m,
            };
            if indent == 0 {
                let mut deepest = 0;
                let mut j = self.i;
                loop {
                    let start = j;
                    while self.b.get(j) == Some(&b' ') {
                        j += 1;
                    }
                    deepest = deepest.max(j - start);
                    let n = self.line_break(j);
                    if n == 0 {
                        break;
                    }
                    j += n;
                }
                indent = deepest.max(parent.map_or(0, |p| p + 1)).max(1);
            }
            loop {
                let mut k = self.i;
                while self.b.get(k) == Some(&b' ') {
                    k += 1;
                }
                if k >= self.b.len() {
                    self.i = k;
                    return;
                }
                let n = self.line_break(k);
                if n == 0 && k - self.i < indent {
                    self.fresh_line = true;
                    return;
                }
                self.i = k;
                self.skip_to_line_break();
                let n = self.line_break(self.i);
                if n == 0 {
                    return;
                }
                self.new_line(n);
            }
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

    fn depth_error(text: &str, format: PolicyFormat) -> PolicyError {
        let e = Policy::parse(text, format).unwrap_err();
        assert_eq!(e.field, "(document)", "{e}");
        assert!(
            e.reason.contains("nests more than 64 levels deep"),
            "{format}: {e}"
        );
        e
    }

    fn not_too_deep(text: &str, format: PolicyFormat) {
        let valid = match format {
            PolicyFormat::Yaml => serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text).is_ok(),
            PolicyFormat::Json => serde_json::from_str::<serde_json::Value>(text).is_ok(),
            PolicyFormat::Toml => toml::from_str::<toml::Table>(text).is_ok(),
        };
        assert!(valid, "not valid {format}: {text}");
        assert_eq!(
            nesting::too_deep(text, format, Policy::MAX_DEPTH),
            None,
            "{format}: {text}"
        );
    }

    #[test]
    fn forty_kilobytes_of_open_brackets_fail_fast_in_every_format() {
        let brackets = "[".repeat(40 * 1024);
        for format in [PolicyFormat::Yaml, PolicyFormat::Json, PolicyFormat::Toml] {
            let e = depth_error(&brackets, format);
            assert!(e.reason.contains("at line 1"), "{e}");
        }
        let e = depth_error(
            &format!("interval: 10s\nprobes: {brackets}"),
            PolicyFormat::Yaml,
        );
        assert!(e.reason.contains("YAML text"), "{e}");
        assert!(e.reason.contains("at line 2"), "{e}");
        depth_error(&format!("{{\"probes\": {brackets}"), PolicyFormat::Json);
        depth_error(&format!("probes = {brackets}"), PolicyFormat::Toml);
        depth_error(&"{a: ".repeat(10_000), PolicyFormat::Yaml);
        depth_error(&"- ".repeat(10_000), PolicyFormat::Yaml);
        let indented: String = (0..100).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
        depth_error(&indented, PolicyFormat::Yaml);
    }

    #[test]
    fn sixty_four_levels_pass_and_sixty_five_do_not() {
        for (format, key) in [
            (PolicyFormat::Yaml, ""),
            (PolicyFormat::Json, ""),
            (PolicyFormat::Toml, "a = "),
        ] {
            let ok = format!("{key}{}{}", "[".repeat(64), "]".repeat(64));
            not_too_deep(&ok, format);
            let deep = format!("{key}{}{}", "[".repeat(65), "]".repeat(65));
            assert_eq!(nesting::too_deep(&deep, format, 64), Some(1), "{format}");
        }
        let block: String = (0..64).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
        not_too_deep(&block, PolicyFormat::Yaml);
        let block: String = (0..65).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
        assert_eq!(nesting::too_deep(&block, PolicyFormat::Yaml, 64), Some(65));
        // `[k: v]` is a sequence of a one-pair mapping: two levels.
        let pairs = format!("{}v{}", "[k: ".repeat(32), "]".repeat(32));
        not_too_deep(&pairs, PolicyFormat::Yaml);
        let pairs = format!("[{}v{}]", "[k: ".repeat(32), "]".repeat(32));
        assert_eq!(nesting::too_deep(&pairs, PolicyFormat::Yaml, 64), Some(1));
        not_too_deep(
            &format!("[{}v{}]", "{k: ".repeat(63), "}".repeat(63)),
            PolicyFormat::Yaml,
        );
        // A collection as a key lies under the mapping that opens at its `:`.
        let key = format!("{}{}", "[".repeat(63), "]".repeat(63));
        not_too_deep(&format!("{key}: v"), PolicyFormat::Yaml);
        not_too_deep(&format!("[{key}]"), PolicyFormat::Yaml);
        let key = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert_eq!(
            nesting::too_deep(&format!("{key}: v"), PolicyFormat::Yaml, 64),
            Some(1)
        );
        assert_eq!(
            nesting::too_deep(&format!("[{key}: v]"), PolicyFormat::Yaml, 65),
            Some(1)
        );
    }

    #[test]
    fn brackets_in_strings_comments_and_text_do_not_count() {
        let many = "[{".repeat(100);
        for yaml in [
            format!("probes: [{{name: \"{many}\", success: '< 1'}}]"),
            format!("probes: [{{name: '{many}''{many}', success: '< 1'}}]"),
            format!("# {many}\nprobes: [{{name: e, success: '< 1'}}] # {many}"),
            format!("probes:\n  - name: p{many}\n    success: < 1"),
            format!("probes:\n  - name: >\n      {many}\n\n      {many}\n    success: < 1"),
            format!("probes:\n  - name: |2-\n      {many}\n    success: < 1"),
            format!("probes:\n  - name: a\n     \"{many}\n    success: < 1"),
            format!("probes: [{{name: \"a\n  {many}\", success: '< 1'}}]"),
            format!("probes: [{{name: \"a\\\"{many}\", success: '< 1'}}]"),
        ] {
            not_too_deep(&yaml, PolicyFormat::Yaml);
        }
        for json in [
            format!("{{\"probes\": [{{\"name\": \"{many}\", \"success\": \"< 1\"}}]}}"),
            format!("{{\"probes\": [{{\"name\": \"\\\"{many}\", \"success\": \"< 1\"}}]}}"),
        ] {
            not_too_deep(&json, PolicyFormat::Json);
        }
        for toml in [
            format!("# {many}\n[[probes]]\nname = \"{many}\" # {many}\nsuccess = '{many}'"),
            format!("[[probes]]\nname = \"\"\"\n{many}\"\"\"\"\nsuccess = '''{many}\n{many}'''"),
            format!("[[probes]]\nname = \"\\\"{many}\"\nsuccess = \"< 1\""),
        ] {
            not_too_deep(&toml, PolicyFormat::Toml);
        }
    }

    #[test]
    fn what_yaml_reads_as_nesting_counts_whatever_precedes_it() {
        let deep = "[".repeat(100);
        for yaml in [
            // A quote inside unquoted text opens no string.
            format!("interval: 30s \"\nprobes: {deep}"),
            format!("interval: it's\nprobes: {deep}"),
            format!("probes: [a \"b, {deep}"),
            format!("probes: [a'b, {deep}"),
            // A comment ends at any YAML line break, CR included.
            format!("# comment\rprobes: {deep}"),
            format!("# comment\u{2028}probes: {deep}"),
            // A block scalar ends at its first less indented line.
            format!("a: |\n  \"\nprobes: {deep}"),
            format!("- a: |\n  b: {deep}"),
            // Unquoted text continues on more indented lines only.
            format!("a:\n  b\n  \"c\nprobes: {deep}"),
            // Brackets open after an anchor, a tag or a document start.
            format!("probes: &a {deep}"),
            format!("probes: !!seq {deep}"),
            format!("--- {deep}"),
        ] {
            depth_error(&yaml, PolicyFormat::Yaml);
        }
    }

    #[test]
    fn texts_over_one_mebibyte_are_refused_before_parsing() {
        let head = "probes: [{name: e, success: '< 1'}]\n";
        let big = format!("{head}{}", "#".repeat(2 << 20));
        let e = Policy::from_yaml(&big).unwrap_err();
        assert_eq!(e.field, "(document)");
        let size = big.len();
        assert!(
            e.reason.contains(&format!(
                "the policy is {size} bytes, more than the limit of 1 MiB (1048576 bytes)"
            )),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.yaml");
        std::fs::write(&path, &big).unwrap();
        let e = Policy::from_file(&path).unwrap_err();
        assert!(
            e.to_string().starts_with(&format!(
                "invalid policy in {}: field `(document)`: the policy is {size} bytes",
                path.display()
            )),
            "{e}"
        );
        let at_limit = format!("{head}{}", "#".repeat(Policy::MAX_BYTES - head.len()));
        std::fs::write(&path, &at_limit).unwrap();
        Policy::from_file(&path).unwrap();
    }

    #[test]
    fn policies_in_every_style_pass_the_limits() {
        let p = Policy::from_yaml(YAML).unwrap();
        Policy::from_json(&serde_json::to_string_pretty(&p).unwrap()).unwrap();
        Policy::from_toml(&toml::to_string(&p).unwrap()).unwrap();
        Policy::from_yaml(&serde_yaml_ng::to_string(&p).unwrap()).unwrap();
        Policy::from_yaml(
            "{interval: 10s, retry: {max_attempts: 2}, probes: [{name: e, success: '< 1'}, {name: \"f\", failure: \"> 2\"}]}",
        )
        .unwrap();
        Policy::from_yaml(
            "%YAML 1.2\n---\nprobes:\n- &probe\n  name: e # the error rate\n  success: < 0.01\n- name: f\n  failure: |-\n    > 2\n...\n",
        )
        .unwrap();
        Policy::from_yaml("interval: 10s\r\nprobes:\r\n  - {name: e, success: '< 1'}\r\n").unwrap();
    }
}
