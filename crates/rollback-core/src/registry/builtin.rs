//! The schemes and probe kinds every build has: `memory://` targets and
//! `scripted` probes, for demos and drills.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use super::{Backend, Options, ProbeFor, ProbeKind, TargetScheme, TargetUrl};
use crate::memory::{InMemoryRollbacker, InMemoryTarget, ScriptStep, ScriptedProbe};
use crate::{Error, HealthProbe, Result, RevisionHealth, RevisionRecord};

/// `memory://NAME`: an in-memory target named NAME with `revisions` (oldest
/// first, the last one current; each an id or `{id, health}`).
#[derive(Debug, Clone, Copy)]
pub struct Memory;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MemoryOptions {
    revisions: Vec<MemoryRevision>,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum MemoryRevision {
    Id(String),
    Marked {
        id: String,
        #[serde(default)]
        health: RevisionHealth,
    },
}

impl MemoryRevision {
    fn id(&self) -> &str {
        match self {
            MemoryRevision::Id(id) | MemoryRevision::Marked { id, .. } => id,
        }
    }
}

impl Memory {
    fn build(url: &TargetUrl, options: &Options) -> Result<InMemoryTarget> {
        let o: MemoryOptions = super::options(options)?;
        let target = InMemoryTarget::new(
            url.rest(),
            o.revisions.iter().map(|r| RevisionRecord::new(r.id())),
        )?;
        for r in &o.revisions {
            if let MemoryRevision::Marked { id, health } = r {
                target.set_health(&id.as_str().into(), *health)?;
            }
        }
        Ok(target)
    }
}

#[async_trait]
impl TargetScheme for Memory {
    fn scheme(&self) -> &'static str {
        "memory"
    }

    fn form(&self) -> &'static str {
        "memory://NAME"
    }

    fn check(&self, url: &TargetUrl, options: &Options) -> Result<()> {
        Self::build(url, options).map(|_| ())
    }

    async fn connect(&self, url: &TargetUrl, options: &Options) -> Result<Backend> {
        let target = Self::build(url, options)?;
        let rollbacker = InMemoryRollbacker::new(&target);
        Ok(Backend {
            target: Arc::new(target),
            rollbacker: Arc::new(rollbacker),
        })
    }
}

/// `scripted`: values played back, the same for every revision
/// (`values: [0.002, 0.03]`) or per revision (`per_revision: {v2: [0.03],
/// v1: [0.001]}`); `null` is no data; `{canary: [...], baseline: [...]}` is
/// one measurement's samples for a probe judged by `mann_whitney`; the last
/// value repeats.
///
/// The targets of a file share the scripts of one definition: each target
/// gets a probe of its own place in them ([`ScriptedProbe::fresh`]), not a
/// copy (1.4 KB a target of the `serve` benchmark's five scripts).
#[derive(Debug, Default)]
pub struct Scripted {
    /// The probe last built, by its name and options.
    last: std::sync::Mutex<Option<(String, ScriptedProbe)>>,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum ScriptValue {
    Value(Option<f64>),
    Samples(crate::canary::Samples),
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptedOptions {
    #[serde(default)]
    values: Vec<ScriptValue>,
    #[serde(default)]
    per_revision: BTreeMap<String, Vec<ScriptValue>>,
}

fn steps(values: &[ScriptValue]) -> Vec<ScriptStep> {
    values
        .iter()
        .map(|v| match v {
            ScriptValue::Value(v) => v.map_or(ScriptStep::NoData, ScriptStep::Value),
            ScriptValue::Samples(s) => ScriptStep::Samples(s.clone()),
        })
        .collect()
}

impl Scripted {
    fn parse(options: &Options) -> Result<ScriptedOptions> {
        let o: ScriptedOptions = super::options(options)?;
        if o.values.is_empty() && o.per_revision.is_empty() {
            return Err(Error::invalid(
                "a scripted probe needs `values` or `per_revision`",
            ));
        }
        Ok(o)
    }
}

#[async_trait]
impl ProbeKind for Scripted {
    fn kind(&self) -> &'static str {
        "scripted"
    }

    fn check(&self, options: &Options) -> Result<()> {
        Self::parse(options).map(|_| ())
    }

    async fn build(&self, probe: ProbeFor<'_>) -> Result<Arc<dyn HealthProbe>> {
        let key = format!(
            "{}\n{}",
            probe.name,
            serde_json::Value::Object(probe.options.clone())
        );
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((k, p)) = &*last
            && *k == key
        {
            return Ok(Arc::new(p.fresh(probe.name)));
        }
        let o = Self::parse(probe.options)?;
        let mut p = ScriptedProbe::new(probe.name).script(steps(&o.values));
        for (revision, values) in &o.per_revision {
            p = p.script_for(revision.as_str(), steps(values));
        }
        let built = p.fresh(probe.name);
        *last = Some((key, p));
        Ok(Arc::new(built))
    }
}
