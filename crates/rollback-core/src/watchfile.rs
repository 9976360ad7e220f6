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

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use crate::audit::{AuditSink, JsonLinesAuditSink, TextAuditSink};
use crate::policy::PolicyFormat;
use crate::registry::{Options, ProbeFor, Registry, TargetUrl};
use crate::store::{FileStateStore, StateStore};
use crate::{Error, HealthProbe, Policy, Result, WatchSpec};

mod parse;

use parse::{Problems, format_of, relative, substitute, tree};

/// The keys of a probe entry that are the policy's, not the probe kind's.
const CONDITION_KEYS: [&str; 9] = [
    "success",
    "failure",
    "failure_limit",
    "consecutive_failure_limit",
    "inconclusive_limit",
    "consecutive_error_limit",
    "no_data",
    "forecast",
    "mann_whitney",
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
    /// The targets of the file this one needs (`depends_on`): with any,
    /// the file's targets are one [`crate::plan::Plan`].
    pub depends_on: Vec<TargetUrl>,
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
    /// The `serve` section, for `rollback serve` to read (listen address,
    /// operator tokens, notifications, the receiver's routes); the watch
    /// file only checks that it is a mapping.
    pub serve: Option<Options>,
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
            if !["policy", "audit", "state", "probes", "targets", "serve"].contains(&key.as_str()) {
                p.add(
                    key.as_str(),
                    "unknown field; a watch file has policy, audit, state, probes, targets and serve",
                );
            }
        }
        let audit = parse::audit(root.remove("audit"), dir, &mut p);
        let state = match root.remove("state") {
            None => None,
            Some(Value::String(s)) => Some(relative(dir, &s)),
            Some(_) => {
                p.add("state", "a directory path");
                None
            }
        };
        let serve = match root.remove("serve") {
            None => None,
            Some(Value::Object(m)) => Some(m),
            Some(_) => {
                p.add("serve", "a mapping: the settings of `rollback serve`");
                None
            }
        };
        let probes = parse::probes(root.remove("probes"), registry, &mut p);
        let targets = parse::targets(root.remove("targets"), registry, &mut p);
        let policy = parse::policy(root.remove("policy"), &probes, dir, &mut p);
        match policy {
            Some(policy) if p.list.is_empty() => Ok(WatchFile {
                source_name: source_name.to_owned(),
                policy: Arc::new(policy),
                audit,
                state,
                probes: probes.into_iter().map(|(e, _)| e).collect(),
                targets,
                serve,
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

    /// The file's targets as one plan, when any of them `depends_on`
    /// another; `specs` are [`WatchFile::resolve`]'s, in file order.
    pub fn plan(&self, specs: Vec<WatchSpec>) -> Result<Option<crate::plan::Plan>> {
        if self.targets.iter().all(|t| t.depends_on.is_empty()) {
            return Ok(None);
        }
        let ids: Vec<crate::TargetId> = specs.iter().map(|s| s.target.id().clone()).collect();
        let id_of = |url: &TargetUrl| {
            self.targets
                .iter()
                .position(|t| &t.url == url)
                .and_then(|i| ids.get(i).cloned())
                .ok_or_else(|| url.error("is not a target of this file"))
        };
        let mut targets = Vec::with_capacity(specs.len());
        for (entry, spec) in self.targets.iter().zip(specs) {
            let depends_on = entry
                .depends_on
                .iter()
                .map(id_of)
                .collect::<Result<Vec<_>>>()?;
            targets.push(crate::plan::PlanTarget::new(spec, depends_on));
        }
        crate::plan::Plan::new(targets).map(Some)
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

#[cfg(test)]
mod tests;
