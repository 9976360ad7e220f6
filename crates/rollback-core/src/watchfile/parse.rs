//! Reading the parts of a watch file: the document's tree, `${NAME}`
//! substitution, and each section (audit, probes, targets, policy) with its
//! problems.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{AuditFile, AuditFormat, CONDITION_KEYS, ProbeEntry, Problem, TargetEntry};
use crate::Policy;
use crate::policy::PolicyFormat;
use crate::registry::{Options, Registry, TargetUrl};

/// Problems, collected with the substituted secrets they must not show.
#[derive(Default)]
pub(super) struct Problems {
    pub(super) list: Vec<Problem>,
    pub(super) secrets: Vec<(String, String)>,
}

impl Problems {
    pub(super) fn add(&mut self, field: impl Into<String>, message: impl fmt::Display) {
        let mut message = message.to_string();
        for (value, name) in &self.secrets {
            message = mask(&message, value, &format!("${{{name}}}"));
        }
        self.list.push(Problem {
            field: field.into(),
            message,
        });
    }
}

/// `message` with each occurrence of a variable's `value` shown as its
/// name. A value under four characters is hidden only where it stands
/// alone (not inside a word): masked everywhere, a one-letter value turned
/// "unknown" into "un${KEY}nown", and such a value hides nothing.
pub(super) fn mask(message: &str, value: &str, name: &str) -> String {
    if value.is_empty() {
        return message.to_owned();
    }
    if value.chars().count() >= 4 {
        return message.replace(value, name);
    }
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    let mut before: Option<char> = None;
    while let Some(at) = rest.find(value) {
        let (head, tail) = rest.split_at(at);
        let after = tail[value.len()..].chars().next();
        let prev = head.chars().next_back().or(before);
        out.push_str(head);
        if word(prev) || word(after) {
            out.push_str(value);
        } else {
            out.push_str(name);
        }
        before = value.chars().next_back();
        rest = &tail[value.len()..];
    }
    out.push_str(rest);
    out
}

pub(super) fn format_of(path: &Path) -> Option<PolicyFormat> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("yaml" | "yml") => Some(PolicyFormat::Yaml),
        Some("json") => Some(PolicyFormat::Json),
        Some("toml") => Some(PolicyFormat::Toml),
        _ => None,
    }
}

/// Read a document of `format` into a tree, within the limits a policy has.
pub(super) fn tree(text: &str, format: PolicyFormat) -> std::result::Result<Value, Problem> {
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
pub(super) fn substitute(
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

pub(super) fn relative(dir: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_owned()
    } else {
        dir.join(p)
    }
}

pub(super) fn audit(value: Option<Value>, dir: &Path, p: &mut Problems) -> Option<AuditFile> {
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
pub(super) fn probes(
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

pub(super) fn targets(
    value: Option<Value>,
    registry: &Registry,
    p: &mut Problems,
) -> Vec<TargetEntry> {
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
        let (url, mut options) = match item {
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
        // The plan's key, not the backend's.
        let depends_on = match options.remove("depends_on") {
            None => Vec::new(),
            Some(Value::Array(urls)) => urls
                .iter()
                .filter_map(|u| match u.as_str().map(TargetUrl::parse) {
                    Some(Ok(u)) => Some(u),
                    _ => {
                        p.add(at(".depends_on"), format!("{u} is not the URL of a target"));
                        None
                    }
                })
                .collect(),
            Some(_) => {
                p.add(
                    at(".depends_on"),
                    "a list of the URLs of the targets this one needs",
                );
                Vec::new()
            }
        };
        if let Err(e) = registry.check(&url, &options) {
            p.add(at(""), e.message());
            continue;
        }
        out.push(TargetEntry {
            url,
            options,
            depends_on,
        });
    }
    plan_problems(&out, p);
    out
}

/// Dependencies on targets the file does not hold, and cycles.
fn plan_problems(targets: &[TargetEntry], p: &mut Problems) {
    if targets.iter().all(|t| t.depends_on.is_empty()) {
        return;
    }
    let deps: BTreeMap<crate::TargetId, Vec<crate::TargetId>> = targets
        .iter()
        .map(|t| {
            let ds = t
                .depends_on
                .iter()
                .map(|d| crate::TargetId::new(d.as_str()))
                .collect();
            (crate::TargetId::new(t.url.as_str()), ds)
        })
        .collect();
    if let Err(e) = crate::plan::rollback_order(&deps) {
        let field = targets
            .iter()
            .position(|t| !t.depends_on.is_empty())
            .map_or("targets".to_owned(), |i| format!("targets[{i}].depends_on"));
        p.add(field, e.message());
    }
}

/// The policy, with the conditions the file's probes carry; every probe
/// the policy judges must be defined in the file, and the other way round.
pub(super) fn policy(
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
            p.add(field_of(&e.field, &origin), without_position(&e.reason));
            None
        }
    }
}

/// A reason without serde_json's " at line N column M": the position is
/// in the merged copy the policy was parsed from, not in the file (the
/// field's path says where it was written).
pub(super) fn without_position(reason: &str) -> &str {
    match reason.rsplit_once(" at line ") {
        Some((head, tail))
            if tail.split_once(" column ").is_some_and(|(l, c)| {
                !l.is_empty()
                    && !c.is_empty()
                    && l.bytes().all(|b| b.is_ascii_digit())
                    && c.bytes().all(|b| b.is_ascii_digit())
            }) =>
        {
            head
        }
        _ => reason,
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
