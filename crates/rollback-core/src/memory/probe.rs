//! The scripted probe: values, gaps and errors played per revision.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::lock;
use crate::{Error, HealthProbe, Measurement, ProbeContext, Result, RevisionId};

/// One step of a [`ScriptedProbe`]'s script.
#[derive(Debug, Clone, PartialEq)]
pub enum ScriptStep {
    /// A value.
    Value(f64),
    /// A value with a baseline (for relative conditions).
    WithBaseline(f64, f64),
    /// Samples of canary and baseline, for a probe judged by `mann_whitney`.
    Samples(crate::canary::Samples),
    /// No data.
    NoData,
    /// The probe fails to measure with this message.
    Error(String),
}

impl From<f64> for ScriptStep {
    fn from(v: f64) -> Self {
        ScriptStep::Value(v)
    }
}

impl From<Option<f64>> for ScriptStep {
    fn from(v: Option<f64>) -> Self {
        v.map_or(ScriptStep::NoData, ScriptStep::Value)
    }
}

#[derive(Debug, Default)]
struct Script {
    steps: Vec<ScriptStep>,
    next: usize,
}

#[derive(Debug, Default)]
struct ProbeState {
    default: Script,
    by_revision: BTreeMap<RevisionId, Script>,
    measured: usize,
}

/// A probe that plays a script of values, gaps and errors, per revision.
///
/// Each revision plays its own script (or the default one) in order; when a
/// script runs out its last step repeats. A probe with no script for the
/// revision measured returns an error saying so.
#[derive(Debug, Clone)]
pub struct ScriptedProbe {
    name: String,
    state: Arc<Mutex<ProbeState>>,
}

impl ScriptedProbe {
    /// A probe with no script yet.
    pub fn new(name: impl Into<String>) -> Self {
        ScriptedProbe {
            name: name.into(),
            state: Arc::default(),
        }
    }

    /// The script for every revision without one of its own.
    pub fn script<S: Into<ScriptStep>>(self, steps: impl IntoIterator<Item = S>) -> Self {
        lock(&self.state).default = Script {
            steps: steps.into_iter().map(Into::into).collect(),
            next: 0,
        };
        self
    }

    /// The script for one revision.
    pub fn script_for<S: Into<ScriptStep>>(
        self,
        revision: impl Into<RevisionId>,
        steps: impl IntoIterator<Item = S>,
    ) -> Self {
        lock(&self.state).by_revision.insert(
            revision.into(),
            Script {
                steps: steps.into_iter().map(Into::into).collect(),
                next: 0,
            },
        );
        self
    }

    /// How many measurements were taken.
    pub fn measured(&self) -> usize {
        lock(&self.state).measured
    }
}

#[async_trait]
impl HealthProbe for ScriptedProbe {
    fn name(&self) -> &str {
        &self.name
    }

    async fn measure(&self, context: &ProbeContext) -> Result<Measurement> {
        let mut s = lock(&self.state);
        s.measured += 1;
        let s = &mut *s;
        let script = s
            .by_revision
            .get_mut(&context.revision)
            .unwrap_or(&mut s.default);
        let Some(step) = script
            .steps
            .get(script.next)
            .or(script.steps.last())
            .cloned()
        else {
            return Err(Error::invalid(format!(
                "scripted probe {} has no script for revision {}",
                self.name, context.revision
            )));
        };
        script.next = (script.next + 1).min(script.steps.len());
        match step {
            ScriptStep::Value(v) => Ok(Measurement::value(v)),
            ScriptStep::WithBaseline(v, b) => Ok(Measurement::with_baseline(v, b)),
            ScriptStep::Samples(samples) => Ok(Measurement::samples(samples)),
            ScriptStep::NoData => Ok(Measurement::NO_DATA),
            ScriptStep::Error(msg) => Err(Error::transient(format!("probe {}: {msg}", self.name))),
        }
    }
}
