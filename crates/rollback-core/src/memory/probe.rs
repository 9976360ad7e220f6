//! The scripted probe: values, gaps and errors played per revision.

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

/// The scripts, which never change once the probe is built: shared by the
/// probes [`ScriptedProbe::fresh`] makes (one a target in a watch file of
/// many targets), each with its own place in them.
#[derive(Debug, Default, Clone)]
struct Scripts {
    default: Vec<ScriptStep>,
    by_revision: Vec<(RevisionId, Vec<ScriptStep>)>,
}

impl Scripts {
    /// The script of a revision: its index (0 the default, `i + 1` the
    /// `i`-th revision's) and its steps.
    fn of(&self, revision: &RevisionId) -> (usize, &[ScriptStep]) {
        match self.by_revision.iter().position(|(r, _)| r == revision) {
            Some(i) => (i + 1, &self.by_revision[i].1),
            None => (0, &self.default),
        }
    }
}

#[derive(Debug, Default)]
struct ProbeState {
    scripts: Arc<Scripts>,
    /// The next step of each script, by [`Scripts::of`]'s index.
    next: Vec<usize>,
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
        {
            let mut s = lock(&self.state);
            Arc::make_mut(&mut s.scripts).default = steps.into_iter().map(Into::into).collect();
            if let Some(n) = s.next.first_mut() {
                *n = 0;
            }
        }
        self
    }

    /// The script for one revision.
    pub fn script_for<S: Into<ScriptStep>>(
        self,
        revision: impl Into<RevisionId>,
        steps: impl IntoIterator<Item = S>,
    ) -> Self {
        let revision = revision.into();
        let steps: Vec<ScriptStep> = steps.into_iter().map(Into::into).collect();
        {
            let mut s = lock(&self.state);
            let scripts = Arc::make_mut(&mut s.scripts);
            let i = match scripts.by_revision.iter().position(|(r, _)| *r == revision) {
                Some(i) => {
                    scripts.by_revision[i].1 = steps;
                    i
                }
                None => {
                    scripts.by_revision.push((revision, steps));
                    scripts.by_revision.len() - 1
                }
            };
            if let Some(n) = s.next.get_mut(i + 1) {
                *n = 0;
            }
        }
        self
    }

    /// A probe of another name playing the same scripts from their start,
    /// sharing them (the registry builds one a target from one definition).
    pub fn fresh(&self, name: impl Into<String>) -> Self {
        let scripts = lock(&self.state).scripts.clone();
        ScriptedProbe {
            name: name.into(),
            state: Arc::new(Mutex::new(ProbeState {
                scripts,
                next: Vec::new(),
                measured: 0,
            })),
        }
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
        let (i, steps) = s.scripts.of(&context.revision);
        if s.next.len() <= i {
            s.next.resize(i + 1, 0);
        }
        let next = &mut s.next[i];
        let Some(step) = steps.get(*next).or(steps.last()).cloned() else {
            return Err(Error::invalid(format!(
                "scripted probe {} has no script for revision {}",
                self.name, context.revision
            )));
        };
        *next = (*next + 1).min(steps.len());
        match step {
            ScriptStep::Value(v) => Ok(Measurement::value(v)),
            ScriptStep::WithBaseline(v, b) => Ok(Measurement::with_baseline(v, b)),
            ScriptStep::Samples(samples) => Ok(Measurement::samples(samples)),
            ScriptStep::NoData => Ok(Measurement::NO_DATA),
            ScriptStep::Error(msg) => Err(Error::transient(format!("probe {}: {msg}", self.name))),
        }
    }
}
