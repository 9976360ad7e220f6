//! The watch file: everything a watch needs in one file (YAML, JSON or
//! TOML), so that no Rust program is needed to watch a change.
//!
//! ```yaml
//! policy:                       # inline, or a path: `policy: canary.yaml`
//!   interval: 30s
//!   failure_limit: 1
//!   verify: 2m
//! audit: audit.jsonl            # JSON lines (.jsonl, .json), else a text timeline
//! state: state/                 # where each target's state is kept
//! probes:
//!   - name: error_rate
//!     success: "< 0.01"         # conditions, as in the policy
//!     prometheus:               # the probe's kind and its options
//!       url: http://prometheus:9090
//!       query: 'sum(rate(http_requests_total{code=~"5..",revision="{{revision}}"}[1m])) / sum(rate(http_requests_total{revision="{{revision}}"}[1m]))'
//!       auth: { bearer: { token: "${PROMETHEUS_TOKEN}" } }
//! targets:                      # each measured by every probe, judged by the one policy
//!   - url: k8s://shop/checkout
//!     context: kind-kind        # the backend's options
//!   - url: mlflow://recommender@champion
//! ```
//!
//! - Unknown fields are refused; every problem names the file and the field
//!   path (`targets[1].context`), and [`WatchFile::load`] lists them all.
//! - Secrets come only from the environment: `${NAME}` in any string is the
//!   variable's value (`$$` is a `$`); an unset variable is a problem naming
//!   it. A substituted value is never printed: messages show `${NAME}`.
//! - Relative paths (the policy, the audit log, the state directory) are
//!   relative to the watch file's directory.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use crate::audit::{AuditSink, JsonLinesAuditSink, TextAuditSink};
use crate::policy::PolicyFormat;
use crate::registry::{Options, ProbeFor, Registry, TargetUrl};
use crate::store::{FileStateStore, StateStore};
use crate::{Error, HealthProbe, Policy, Result, WatchSpec};

/// The keys of a probe entry that are the policy's, not the probe kind's.
const CONDITION_KEYS: [&str; 7] = [
    "success",
    "failure",
    "failure_limit",
    "consecutive_failure_limit",
    "inconclusive_limit",
    "consecutive_error_limit",
    "no_data",
];

/// How the audit log is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditFormat {
    /// A human timeline, one line per record.
    Text,
    /// JSON lines with a hash chain ([`JsonLinesAuditSink`]).
    JsonLines,
}

/// Where the audit log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFile {
    /// The file.
    pub path: PathBuf,
    /// Its format.
    pub format: AuditFormat,
}

/// One probe of the file: its kind (`prometheus`) and that kind's options.
#[derive(Debug, Clone)]
pub struct ProbeEntry {
    /// The name the policy judges it by.
    pub name: String,
    /// The probe kind.
    pub kind: String,
    /// The kind's options.
    pub options: Options,
}

/// One target of the file.
#[derive(Debug, Clone)]
pub struct TargetEntry {
    /// Its URL.
    pub url: TargetUrl,
    /// The backend's options.
    pub options: Options,
}

/// A problem in a watch file: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The field path, like `targets[1].url`, or `(file)`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field `{}`: {}", self.field, self.message)
    }
}

/// Every problem found in a watch file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct WatchFileError {
    /// The file.
    pub source_name: String,
    /// The problems, in file order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for WatchFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "{} problem{} in watch file {}",
            n,
            if n == 1 { "" } else { "s" },
            self.source_name
        )?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

impl From<WatchFileError> for Error {
    fn from(e: WatchFileError) -> Self {
        Error::invalid(e.to_string())
    }
}

/// A watch file, checked against a [`Registry`]: every URL has a known
/// scheme, every probe a known kind, every option reads, and the policy's
/// probes and the file's probes match.
#[derive(Debug, Clone)]
pub struct WatchFile {
    /// Where it came from, for messages.
    pub source_name: String,
    /// The policy, with the file's probe conditions.
    pub policy: Arc<Policy>,
    /// Where the audit log goes, if anywhere.
    pub audit: Option<AuditFile>,
    /// Where state is kept, if anywhere (else in memory).
    pub state: Option<PathBuf>,
    /// The probes, in file order.
    pub probes: Vec<ProbeEntry>,
    /// The targets, in file order.
    pub targets: Vec<TargetEntry>,
}

/// Problems, collected with the substituted secrets they must not show.
#[derive(Default)]
struct Problems {
    list: Vec<Problem>,
    secrets: Vec<(String, String)>,
}

impl Problems {
    fn add(&mut self, field: impl Into<String>, message: impl fmt::Display) {
        let mut message = message.to_string();
        for (value, name) in &self.secrets {
            if !value.is_empty() {
                message = message.replace(value.as_str(), &format!("${{{name}}}"));
            }
        }
        self.list.push(Problem {
            field: field.into(),
            message,
        });
    }
}

fn format_of(path: &Path) -> Option<PolicyFormat> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("yaml" | "yml") => Some(PolicyFormat::Yaml),
        Some("json") => Some(PolicyFormat::Json),
        Some("toml") => Some(PolicyFormat::Toml),
        _ => None,
    }
}

/// Read a document of `format` into a tree, within the limits a policy has.
fn tree(text: &str, format: PolicyFormat) -> std::result::Result<Value, Problem> {
    let problem = |field: String, message: String| Problem { field, message };
    crate::policy::check_document(text, format)
        .map_err(|e| problem(e.field.clone(), e.reason.clone()))?;
    match format {
        PolicyFormat::Yaml => {
            serde_yaml_ng::from_str(text).map_err(|e| problem("(document)".into(), e.to_string()))
        }
        PolicyFormat::Json => {
            serde_json::from_str(text).map_err(|e| problem("(document)".into(), e.to_string()))
        }
        PolicyFormat::Toml => toml::from_str(text)
            .map_err(|e| problem("(document)".into(), e.to_string().trim().to_owned())),
    }
}

/// Replace `${NAME}` in every string of `value` with the variable's value.
fn substitute(
    value: &mut Value,
    field: &str,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) {
    match value {
        Value::String(s) if s.contains('$') => {
            let mut out = String::with_capacity(s.len());
            let mut rest = s.as_str();
            while let Some(i) = rest.find('$') {
                out.push_str(&rest[..i]);
                let after = &rest[i + 1..];
                if let Some(tail) = after.strip_prefix('$') {
                    out.push('$');
                    rest = tail;
                } else if let Some(body) = after.strip_prefix('{')
                    && let Some(end) = body.find('}')
                {
                    let name = &body[..end];
                    let valid = name
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                    if !valid {
                        problems.add(
                            field,
                            format!("${{{name}}} is not a variable name ([A-Za-z_][A-Za-z0-9_]*)"),
                        );
                    } else if let Some(v) = env(name) {
                        problems.secrets.push((v.clone(), name.to_owned()));
                        out.push_str(&v);
                    } else {
                        problems.add(field, format!("the environment variable {name} is not set"));
                    }
                    rest = &body[end + 1..];
                } else {
                    out.push('$');
                    rest = after;
                }
            }
            out.push_str(rest);
            *s = out;
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                substitute(item, &format!("{field}[{i}]"), env, problems);
            }
        }
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let sub = if field.is_empty() {
                    k.clone()
                } else {
                    format!("{field}.{k}")
                };
                substitute(v, &sub, env, problems);
            }
        }
        _ => {}
    }
}

fn relative(dir: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_owned()
    } else {
        dir.join(p)
    }
}

impl WatchFile {
    /// Read and check the watch file at `path`, with the environment's
    /// variables. Every problem is listed.
    pub fn load(
        path: impl AsRef<Path>,
        registry: &Registry,
    ) -> std::result::Result<Self, WatchFileError> {
        Self::load_with_env(path, registry, &|name| std::env::var(name).ok())
    }

    /// [`WatchFile::load`] with variables from `env`.
    pub fn load_with_env(
        path: impl AsRef<Path>,
        registry: &Registry,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> std::result::Result<Self, WatchFileError> {
        let path = path.as_ref();
        let source_name = path.display().to_string();
        let fail = |field: &str, message: String| WatchFileError {
            source_name: source_name.clone(),
            problems: vec![Problem {
                field: field.to_owned(),
                message,
            }],
        };
        let Some(format) = format_of(path) else {
            return Err(fail(
                "(file)",
                "unknown format: name the file .yaml, .yml, .json or .toml".into(),
            ));
        };
        let bytes =
            std::fs::read(path).map_err(|e| fail("(file)", format!("cannot read it: {e}")))?;
        if bytes.len() > Policy::MAX_BYTES {
            return Err(fail(
                "(file)",
                format!(
                    "{} bytes; a watch file may hold at most {}",
                    bytes.len(),
                    Policy::MAX_BYTES
                ),
            ));
        }
        let text =
            String::from_utf8(bytes).map_err(|e| fail("(file)", format!("not UTF-8: {e}")))?;
        let dir = path.parent().unwrap_or(Path::new(".")).to_owned();
        Self::parse(&text, format, &source_name, &dir, registry, env)
    }

    /// Parse and check a watch file's text; relative paths are relative to
    /// `dir`; `source_name` names it in messages.
    pub fn parse(
        text: &str,
        format: PolicyFormat,
        source_name: &str,
        dir: &Path,
        registry: &Registry,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> std::result::Result<Self, WatchFileError> {
        let mut p = Problems::default();
        let done = |p: Problems| WatchFileError {
            source_name: source_name.to_owned(),
            problems: p.list,
        };
        let mut root = match tree(text, format) {
            Ok(v) => v,
            Err(problem) => {
                p.list.push(problem);
                return Err(done(p));
            }
        };
        substitute(&mut root, "", env, &mut p);
        let Value::Object(mut root) = root else {
            p.add(
                "(document)",
                "a watch file is a mapping with `targets`, `probes` and `policy`",
            );
            return Err(done(p));
        };
        for key in root.keys() {
            if !["policy", "audit", "state", "probes", "targets"].contains(&key.as_str()) {
                p.add(
                    key.as_str(),
                    "unknown field; a watch file has policy, audit, state, probes and targets",
                );
            }
        }
        let audit = audit(root.remove("audit"), dir, &mut p);
        let state = match root.remove("state") {
            None => None,
            Some(Value::String(s)) => Some(relative(dir, &s)),
            Some(_) => {
                p.add("state", "a directory path");
                None
            }
        };
        let probes = probes(root.remove("probes"), registry, &mut p);
        let targets = targets(root.remove("targets"), registry, &mut p);
        let policy = policy(root.remove("policy"), &probes, dir, &mut p);
        match policy {
            Some(policy) if p.list.is_empty() => Ok(WatchFile {
                source_name: source_name.to_owned(),
                policy: Arc::new(policy),
                audit,
                state,
                probes: probes.into_iter().map(|(e, _)| e).collect(),
                targets,
            }),
            _ => Err(done(p)),
        }
    }

    /// Build each target's [`WatchSpec`]: connect its backend and build its
    /// probes. Errors name the target's URL.
    pub async fn resolve(&self, registry: &Registry) -> Result<Vec<WatchSpec>> {
        let mut specs = Vec::with_capacity(self.targets.len());
        for t in &self.targets {
            let backend = registry.connect(&t.url, &t.options).await?;
            let mut probes: Vec<Arc<dyn HealthProbe>> = Vec::with_capacity(self.probes.len());
            for probe in &self.probes {
                let built = registry
                    .probe_kind(&probe.kind)?
                    .build(ProbeFor {
                        name: &probe.name,
                        options: &probe.options,
                        url: &t.url,
                        target_options: &t.options,
                    })
                    .await
                    .map_err(|e| {
                        t.url
                            .error(format!("probe {}: {}", probe.name, e.full_message()))
                    })?;
                probes.push(built);
            }
            specs.push(WatchSpec::new(
                self.policy.clone(),
                backend.target,
                backend.rollbacker,
                probes,
            ));
        }
        Ok(specs)
    }

    /// The audit sink the file names, or `None`.
    pub async fn audit_sink(&self) -> Result<Option<Arc<dyn AuditSink>>> {
        let Some(a) = &self.audit else {
            return Ok(None);
        };
        Ok(Some(match a.format {
            AuditFormat::JsonLines => Arc::new(JsonLinesAuditSink::open(&a.path).await?),
            AuditFormat::Text => {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&a.path)
                    .map_err(|e| {
                        Error::permanent(format!("cannot open audit timeline {}", a.path.display()))
                            .with_source(e)
                    })?;
                Arc::new(TextAuditSink::new(f))
            }
        }))
    }

    /// The state store the file names, or `None`.
    pub fn state_store(&self) -> Result<Option<Arc<dyn StateStore>>> {
        self.state
            .as_ref()
            .map(|dir| Ok(Arc::new(FileStateStore::new(dir)?) as Arc<dyn StateStore>))
            .transpose()
    }
}

fn audit(value: Option<Value>, dir: &Path, p: &mut Problems) -> Option<AuditFile> {
    let by_extension = |path: &str| {
        if path.ends_with(".jsonl") || path.ends_with(".json") {
            AuditFormat::JsonLines
        } else {
            AuditFormat::Text
        }
    };
    match value? {
        Value::String(path) => Some(AuditFile {
            format: by_extension(&path),
            path: relative(dir, &path),
        }),
        Value::Object(mut m) => {
            let path = match m.remove("path") {
                Some(Value::String(s)) => s,
                _ => {
                    p.add("audit.path", "the audit log's file path is missing");
                    return None;
                }
            };
            let format = match m.remove("format") {
                None => by_extension(&path),
                Some(Value::String(f)) if f == "text" => AuditFormat::Text,
                Some(Value::String(f)) if f == "jsonl" || f == "json_lines" => {
                    AuditFormat::JsonLines
                }
                Some(_) => {
                    p.add("audit.format", "text or jsonl");
                    return None;
                }
            };
            for k in m.keys() {
                p.add(
                    format!("audit.{k}"),
                    "unknown field; audit has path and format",
                );
            }
            Some(AuditFile {
                path: relative(dir, &path),
                format,
            })
        }
        _ => {
            p.add("audit", "a file path, or {path, format}");
            None
        }
    }
}

/// The probes, each with the policy conditions it carries.
fn probes(
    value: Option<Value>,
    registry: &Registry,
    p: &mut Problems,
) -> Vec<(ProbeEntry, Options)> {
    let Some(value) = value else {
        return Vec::new();
    };
    let Value::Array(items) = value else {
        p.add("probes", "a list of probes");
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut names = BTreeMap::new();
    for (i, item) in items.into_iter().enumerate() {
        let at = |f: &str| format!("probes[{i}]{f}");
        let Value::Object(mut m) = item else {
            p.add(
                at(""),
                "a probe is a mapping with a name, its conditions and its kind",
            );
            continue;
        };
        let name = match m.remove("name") {
            Some(Value::String(n)) if !n.trim().is_empty() => n,
            _ => {
                p.add(at(".name"), "every probe needs a name");
                continue;
            }
        };
        if let Some(j) = names.insert(name.clone(), i) {
            p.add(
                at(".name"),
                format!("{name:?} is already the name of probes[{j}]"),
            );
        }
        let mut conditions = Options::new();
        for key in CONDITION_KEYS {
            if let Some(v) = m.remove(key) {
                conditions.insert(key.to_owned(), v);
            }
        }
        let kinds: Vec<String> = m.keys().cloned().collect();
        let kind = match kinds.as_slice() {
            [kind] => kind.clone(),
            [] => {
                p.add(
                    at(""),
                    format!(
                        "probe {name:?} has no kind; give one of {}",
                        registry.probe_kinds().join(", ")
                    ),
                );
                continue;
            }
            _ => {
                p.add(
                    at(""),
                    format!(
                        "probe {name:?} has several kinds or unknown fields: {}",
                        kinds.join(", ")
                    ),
                );
                continue;
            }
        };
        let options = match m.remove(&kind) {
            Some(Value::Object(o)) => o,
            Some(Value::Null) => Options::new(),
            _ => {
                p.add(
                    at(&format!(".{kind}")),
                    "the probe's options are a mapping (`{}` for none)",
                );
                continue;
            }
        };
        match registry.probe_kind(&kind) {
            Err(e) => p.add(at(&format!(".{kind}")), e.message()),
            Ok(k) => {
                if let Err(e) = k.check(&options) {
                    p.add(at(&format!(".{kind}")), e.message());
                }
            }
        }
        out.push((
            ProbeEntry {
                name,
                kind,
                options,
            },
            conditions,
        ));
    }
    out
}

fn targets(value: Option<Value>, registry: &Registry, p: &mut Problems) -> Vec<TargetEntry> {
    let items = match value {
        Some(Value::Array(items)) if !items.is_empty() => items,
        _ => {
            p.add(
                "targets",
                "at least one target is needed: a list of {url, ...options}",
            );
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    let mut seen = BTreeMap::new();
    for (i, item) in items.into_iter().enumerate() {
        let at = |f: &str| format!("targets[{i}]{f}");
        let (url, options) = match item {
            Value::String(url) => (url, Options::new()),
            Value::Object(mut m) => match m.remove("url") {
                Some(Value::String(url)) => (url, m),
                _ => {
                    p.add(at(".url"), "every target needs a url");
                    continue;
                }
            },
            _ => {
                p.add(
                    at(""),
                    "a target is a URL, or a mapping with url and the backend's options",
                );
                continue;
            }
        };
        let url = match TargetUrl::parse(&url) {
            Ok(u) => u,
            Err(e) => {
                p.add(at(".url"), e.message());
                continue;
            }
        };
        if let Some(j) = seen.insert(url.as_str().to_owned(), i) {
            p.add(at(".url"), format!("target {url} is already targets[{j}]"));
            continue;
        }
        if let Err(e) = registry.check(&url, &options) {
            p.add(at(""), e.message());
            continue;
        }
        out.push(TargetEntry { url, options });
    }
    out
}

/// The policy, with the conditions the file's probes carry; every probe
/// the policy judges must be defined in the file, and the other way round.
fn policy(
    value: Option<Value>,
    probes: &[(ProbeEntry, Options)],
    dir: &Path,
    p: &mut Problems,
) -> Option<Policy> {
    let (mut tree, from) = match value {
        None => (Value::Object(Options::new()), "policy".to_owned()),
        Some(Value::String(path)) => {
            let file = relative(dir, &path);
            let Some(format) = format_of(&file) else {
                p.add(
                    "policy",
                    format!("{path}: name the policy file .yaml, .yml, .json or .toml"),
                );
                return None;
            };
            let text = match std::fs::read_to_string(&file) {
                Ok(t) => t,
                Err(e) => {
                    p.add("policy", format!("cannot read {}: {e}", file.display()));
                    return None;
                }
            };
            match tree(&text, format) {
                Ok(t) => (t, file.display().to_string()),
                Err(problem) => {
                    p.add(
                        format!("policy ({}) {}", file.display(), problem.field),
                        problem.message,
                    );
                    return None;
                }
            }
        }
        Some(v @ Value::Object(_)) => (v, "policy".to_owned()),
        Some(_) => {
            p.add("policy", "a mapping, or the path of a policy file");
            return None;
        }
    };
    let Value::Object(map) = &mut tree else {
        p.add("policy", format!("{from} is not a mapping"));
        return None;
    };
    let listed = match map.remove("probes") {
        None => Vec::new(),
        Some(Value::Array(items)) => items,
        Some(_) => {
            p.add("policy.probes", "a list of probes");
            return None;
        }
    };
    let mut merged: Vec<Value> = Vec::new();
    // For each merged probe, the file's probes[i] it came from, if any.
    let mut origin: Vec<Option<usize>> = Vec::new();
    let mut in_policy = BTreeSet::new();
    for item in listed {
        let name = item
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let file_probe = probes.iter().find(|(e, _)| e.name == name);
        match file_probe {
            None => p.add(
                "policy.probes",
                format!(
                    "the policy judges probe {name:?}, which the file's probes do not define (they define: {})",
                    probes.iter().map(|(e, _)| e.name.as_str()).collect::<Vec<_>>().join(", ")
                ),
            ),
            Some((_, conditions)) if !conditions.is_empty() => p.add(
                "policy.probes",
                format!("the conditions of probe {name:?} are given twice: in the policy and in probes"),
            ),
            Some(_) => {}
        }
        in_policy.insert(name);
        merged.push(item);
        origin.push(None);
    }
    for (i, (entry, conditions)) in probes.iter().enumerate() {
        if in_policy.contains(&entry.name) {
            continue;
        }
        if conditions.is_empty() {
            p.add(
                "probes",
                format!(
                    "probe {:?} has no conditions (success or failure) here or in the policy",
                    entry.name
                ),
            );
            continue;
        }
        let mut item = conditions.clone();
        item.insert("name".into(), Value::String(entry.name.clone()));
        merged.push(Value::Object(item));
        origin.push(Some(i));
    }
    map.insert("probes".into(), Value::Array(merged));
    let json = serde_json::to_string(&tree).ok()?;
    match Policy::from_json(&json) {
        Ok(policy) => Some(policy),
        Err(e) => {
            p.add(field_of(&e.field, &origin), e.reason);
            None
        }
    }
}

/// Where a field of the merged policy was written: `probes[j].x` of a
/// condition the file's `probes[i]` carried is `probes[i].x`; the rest is
/// the policy's.
fn field_of(field: &str, origin: &[Option<usize>]) -> String {
    if let Some(rest) = field.strip_prefix("probes[")
        && let Some((j, tail)) = rest.split_once(']')
        && let Ok(j) = j.parse::<usize>()
        && let Some(Some(i)) = origin.get(j)
    {
        return format!("probes[{i}]{tail}");
    }
    format!("policy.{field}")
}

#[cfg(test)]
mod tests;
