//! Canary and baseline samples from one query grouped by a label, for a
//! probe judged by `mann_whitney` ([`rollback_core::canary`]).

use std::collections::BTreeMap;

use rollback_core::canary::Samples;
use rollback_core::replay::Sample as ReplaySample;
use rollback_core::{Measurement, ProbeContext, RevisionId, TargetId};
use serde::{Deserialize, Serialize};

use crate::client::{QueryResult, RangeSeries};
use crate::error::PrometheusError;

/// How the series of one query split into canary and baseline samples:
/// every series whose `label` is `canary` is one canary sample, every one
/// whose `label` is `baseline` one baseline sample; others are left out.
/// `{{target}}` and `{{revision}}` in the two values are replaced.
///
/// ```yaml
/// query: 'avg by (pod, track) (rate(http_request_duration_seconds_sum[5m]) / rate(http_request_duration_seconds_count[5m]))'
/// samples: { label: track, canary: canary, baseline: baseline }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleSplit {
    /// The label that tells canary from baseline series.
    pub label: String,
    /// The label's value on the canary's series.
    pub canary: String,
    /// The label's value on the baseline's series.
    pub baseline: String,
}

/// Which side a series is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Canary,
    Baseline,
}

impl SampleSplit {
    pub(crate) fn check(&self) -> Result<(), PrometheusError> {
        for (field, v) in [
            ("label", &self.label),
            ("canary", &self.canary),
            ("baseline", &self.baseline),
        ] {
            if v.trim().is_empty() {
                return Err(PrometheusError::config(
                    format!("samples.{field}"),
                    "must not be empty",
                ));
            }
        }
        if self.canary == self.baseline {
            return Err(PrometheusError::config(
                "samples.baseline",
                format!(
                    "{:?} is also the canary's value: canary and baseline series must differ in {}",
                    self.baseline, self.label
                ),
            ));
        }
        Ok(())
    }

    fn values(&self, target: &TargetId, revision: &RevisionId) -> (String, String) {
        let render = |v: &str| {
            v.replace("{{target}}", target.as_str())
                .replace("{{revision}}", revision.as_str())
        };
        (render(&self.canary), render(&self.baseline))
    }

    fn side(
        &self,
        labels: &BTreeMap<String, String>,
        (canary, baseline): &(String, String),
    ) -> Option<Side> {
        match labels.get(&self.label) {
            Some(v) if v == canary => Some(Side::Canary),
            Some(v) if v == baseline => Some(Side::Baseline),
            _ => None,
        }
    }

    /// One measurement's samples from an instant query's result.
    pub(crate) fn measurement(
        &self,
        query: &str,
        result: QueryResult,
        context: &ProbeContext,
    ) -> Result<Measurement, PrometheusError> {
        let sides = self.values(&context.target, &context.revision);
        let shape = |reason: String| PrometheusError::Shape {
            query: query.to_owned(),
            reason,
        };
        let series = match result {
            QueryResult::Vector(series) => series,
            QueryResult::Scalar(_) => {
                return Err(shape(format!(
                    "the result is a scalar; samples need a vector of series grouped by {}",
                    self.label
                )));
            }
            QueryResult::Matrix(_) => {
                return Err(shape(
                    "the result is a range vector; wrap the range selector in a function such as rate(...[5m])".into(),
                ));
            }
            QueryResult::String(_) => {
                return Err(shape("the result is a string, not series".into()));
            }
        };
        let mut samples = Samples::default();
        for s in &series {
            match self.side(&s.labels, &sides) {
                Some(Side::Canary) => samples.canary.push(s.sample.value),
                Some(Side::Baseline) => samples.baseline.push(s.sample.value),
                None => {}
            }
        }
        Ok(Measurement::samples(samples))
    }

    /// The history of the samples, as replay reads them: at each time one
    /// row per series, the canary's values as values and the baseline's as
    /// baselines.
    pub(crate) fn history(
        &self,
        series: &[RangeSeries],
        target: &TargetId,
        revision: &RevisionId,
    ) -> Vec<ReplaySample> {
        let sides = self.values(target, revision);
        let mut rows = Vec::new();
        for s in series {
            let Some(side) = self.side(&s.labels, &sides) else {
                continue;
            };
            for p in &s.samples {
                rows.push(match side {
                    Side::Canary => ReplaySample {
                        at: p.at,
                        value: Some(p.value),
                        baseline: None,
                    },
                    Side::Baseline => ReplaySample {
                        at: p.at,
                        value: None,
                        baseline: Some(p.value),
                    },
                });
            }
        }
        rows.sort_by_key(|r| r.at);
        rows
    }
}
