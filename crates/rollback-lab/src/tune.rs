//! Tune: backtest many variations of a policy, on all cores, and find the
//! Pareto front of detection delay against false rollbacks.
//!
//! A search space is written in YAML or JSON: a `grid` (every combination
//! of the values listed) and/or a list of `variations`. A key is a policy
//! field (`failure_limit`, `consecutive_failure_limit`, `interval`, any
//! other), or `probes.NAME.FIELD` for one probe's field (its `success` or
//! `failure` threshold, its limits); `null` leaves the field unset, so the
//! default applies.
//!
//! ```yaml
//! grid:
//!   failure_limit: [0, 2, 5]
//!   consecutive_failure_limit: [null, 2, 4]
//!   interval: [10s, 30s]
//!   probes.error_rate.success: ["< 0.01", "< 0.02"]
//! variations:
//!   - { failure_limit: 10, probes.error_rate.failure: ">= 0.1" }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rayon::prelude::*;
use rollback_core::replay::{Replay, Series};
use rollback_core::{Error, Policy, Result};
use serde_json::Value;

use crate::backtest::{self, BacktestOptions, BacktestSummary};
use crate::report::secs;

/// One variation: policy fields and the values they take.
pub type Variation = BTreeMap<String, Value>;

/// The policies to try, as variations of a base policy.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TuneSpace {
    /// Every combination of these values, by field.
    #[serde(default)]
    pub grid: BTreeMap<String, Vec<Value>>,
    /// And these variations, each as it is written.
    #[serde(default)]
    pub variations: Vec<Variation>,
}

impl TuneSpace {
    /// Read a search space from YAML (JSON is YAML too).
    pub fn from_yaml(text: &str) -> Result<Self> {
        serde_yaml_ng::from_str(text).map_err(|e| Error::invalid(format!("tune space: {e}")))
    }

    /// Read a search space file (`.yaml`, `.yml` or `.json`).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::invalid(format!("cannot read tune space {}", path.display())).with_source(e)
        })?;
        Self::from_yaml(&text)
            .map_err(|e| Error::invalid(format!("{}: {}", path.display(), e.message())))
    }

    /// Every variation: the grid's combinations (the last key varying
    /// fastest), then the list. An empty space is the base policy alone.
    pub fn variations(&self) -> Vec<Variation> {
        let mut out: Vec<Variation> = vec![Variation::new()];
        for (key, values) in &self.grid {
            out = out
                .into_iter()
                .flat_map(|v| {
                    values.iter().map(move |value| {
                        let mut v = v.clone();
                        v.insert(key.clone(), value.clone());
                        v
                    })
                })
                .collect();
        }
        if self.grid.is_empty() {
            out.clear();
        }
        out.extend(self.variations.iter().cloned());
        if out.is_empty() {
            out.push(Variation::new());
        }
        out
    }
}

/// `base` with `variation` applied, validated. Errors name the field.
pub fn apply(base: &Policy, variation: &Variation) -> Result<Policy> {
    let mut doc = serde_json::to_value(base).expect("a policy serializes");
    for (key, value) in variation {
        let target = match key.strip_prefix("probes.") {
            Some(rest) => {
                let Some((probe, field)) = rest.rsplit_once('.') else {
                    return Err(Error::invalid(format!(
                        "tune: {key:?}: write a probe's field as probes.NAME.FIELD"
                    )));
                };
                let probes = doc["probes"].as_array_mut().expect("a policy has probes");
                let Some(p) = probes.iter_mut().find(|p| p["name"] == probe) else {
                    return Err(Error::invalid(format!(
                        "tune: {key:?}: the policy has no probe {probe:?}"
                    )));
                };
                (p.as_object_mut().expect("a probe is a mapping"), field)
            }
            None => (
                doc.as_object_mut().expect("a policy is a mapping"),
                key.as_str(),
            ),
        };
        let (object, field) = target;
        if value.is_null() {
            object.remove(field);
        } else {
            object.insert(field.to_owned(), value.clone());
        }
    }
    Policy::from_json(&doc.to_string()).map_err(|e| {
        Error::invalid(format!(
            "tune: variation {}: {e}",
            describe_variation(variation)
        ))
    })
}

/// A variation as `key=value, …`.
pub fn describe_variation(variation: &Variation) -> String {
    if variation.is_empty() {
        return "the base policy".into();
    }
    variation
        .iter()
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}={s}"),
            v => format!("{k}={v}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// How to tune.
#[derive(Debug, Clone, PartialEq)]
pub struct TuneOptions {
    /// The backtest each policy goes through.
    pub backtest: BacktestOptions,
    /// The policies to try.
    pub space: TuneSpace,
    /// The most false rollbacks the best policy may have.
    pub false_rollback_budget: usize,
}

/// One policy tried.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TuneCandidate {
    /// What was varied.
    pub variation: Variation,
    /// The policy tried.
    #[serde(skip)]
    pub policy: Policy,
    /// Its backtest.
    pub summary: BacktestSummary,
    /// Whether it is on the Pareto front.
    pub pareto: bool,
}

impl TuneCandidate {
    /// The median detection delay in seconds; infinite without a detection.
    pub fn median_delay(&self) -> f64 {
        self.summary.delay.map_or(f64::INFINITY, |d| d.median)
    }

    /// What it is judged by, smaller being better: false rollbacks, misses,
    /// median delay.
    fn objectives(&self) -> (f64, f64, f64) {
        (
            self.summary.false_rollbacks as f64,
            self.summary.misses as f64,
            self.median_delay(),
        )
    }
}

/// What tuning found.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TuneReport {
    /// Every policy tried, in the space's order.
    pub candidates: Vec<TuneCandidate>,
    /// The indexes of the Pareto front, by false rollbacks then delay.
    pub front: Vec<usize>,
    /// The false-rollback budget.
    pub false_rollback_budget: usize,
    /// The best policy within the budget: the fewest misses, then the
    /// shortest median, p90 and max delay, then the fewest false rollbacks,
    /// then the first in the space; `None` when none is within the budget.
    pub best: Option<usize>,
}

/// Backtest every variation of `base` in `options.space` over `series`, in
/// parallel on rayon's pool (all cores unless the caller installs another).
/// The report is the same whatever the number of threads.
///
/// The Pareto front holds the policies no other beats on all of false
/// rollbacks, missed incidents and median detection delay (a policy
/// without detections has an infinite delay).
pub fn tune(base: &Policy, series: &Series, options: &TuneOptions) -> Result<TuneReport> {
    let policies: Vec<(Variation, Policy)> = options
        .space
        .variations()
        .into_iter()
        .map(|v| apply(base, &v).map(|p| (v, p)))
        .collect::<Result<_>>()?;
    let changes = options.backtest.changes.resolve(series)?;
    let summaries: Vec<BacktestSummary> = policies
        .par_iter()
        .map(|(_, policy)| {
            let replay = Replay::shared(Arc::new(policy.clone()), series)?;
            Ok(backtest::run(&replay, &changes, &options.backtest, None).summary)
        })
        .collect::<Result<_>>()?;
    let mut candidates: Vec<TuneCandidate> = policies
        .into_iter()
        .zip(summaries)
        .map(|((variation, policy), summary)| TuneCandidate {
            variation,
            policy,
            summary,
            pareto: false,
        })
        .collect();
    let dominates = |a: (f64, f64, f64), b: (f64, f64, f64)| {
        a.0 <= b.0 && a.1 <= b.1 && a.2 <= b.2 && (a.0 < b.0 || a.1 < b.1 || a.2 < b.2)
    };
    let objectives: Vec<_> = candidates.iter().map(TuneCandidate::objectives).collect();
    let mut front: Vec<usize> = (0..candidates.len())
        .filter(|&i| !objectives.iter().any(|o| dominates(*o, objectives[i])))
        .collect();
    front.sort_by(|&a, &b| {
        objectives[a]
            .0
            .total_cmp(&objectives[b].0)
            .then(objectives[a].2.total_cmp(&objectives[b].2))
            .then(a.cmp(&b))
    });
    for &i in &front {
        candidates[i].pareto = true;
    }
    let key = |c: &TuneCandidate| {
        let d = c.summary.delay;
        let inf = f64::INFINITY;
        (
            c.summary.misses,
            d.map_or(inf, |d| d.median),
            d.map_or(inf, |d| d.p90),
            d.map_or(inf, |d| d.max),
            c.summary.false_rollbacks,
        )
    };
    let best = candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.summary.false_rollbacks <= options.false_rollback_budget)
        .min_by(|(i, a), (j, b)| {
            let (ka, kb) = (key(a), key(b));
            ka.0.cmp(&kb.0)
                .then(ka.1.total_cmp(&kb.1))
                .then(ka.2.total_cmp(&kb.2))
                .then(ka.3.total_cmp(&kb.3))
                .then(ka.4.cmp(&kb.4))
                .then(i.cmp(j))
        })
        .map(|(i, _)| i);
    Ok(TuneReport {
        candidates,
        front,
        false_rollback_budget: options.false_rollback_budget,
        best,
    })
}

impl TuneReport {
    /// The report as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a report serializes")
    }

    /// The best policy within the budget as a YAML policy file, with a
    /// comment saying what it was tuned on; `None` when none is within it.
    pub fn best_policy_yaml(&self) -> Option<String> {
        let c = &self.candidates[self.best?];
        let yaml = serde_yaml_ng::to_string(&c.policy).expect("a policy serializes");
        Some(format!(
            "# tuned by rollback-lab: {}\n# backtest: {}\n{yaml}",
            describe_variation(&c.variation),
            c.summary.to_string().replace('\n', "\n# ")
        ))
    }
}

fn delay_text(c: &TuneCandidate) -> String {
    match c.summary.delay {
        Some(d) => format!("median {} p90 {}", secs(d.median), secs(d.p90)),
        None => "no detection".into(),
    }
}

impl fmt::Display for TuneReport {
    /// The Pareto front, then the best policy within the budget.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} policies tried; Pareto front of false rollbacks, misses and median delay:",
            self.candidates.len()
        )?;
        for &i in &self.front {
            let c = &self.candidates[i];
            writeln!(
                f,
                "  #{i:<4} {} false rollbacks, {} missed, {}: {}",
                c.summary.false_rollbacks,
                c.summary.misses,
                delay_text(c),
                describe_variation(&c.variation)
            )?;
        }
        match self.best {
            Some(i) => {
                let c = &self.candidates[i];
                writeln!(
                    f,
                    "best within {} false rollbacks: #{i}: {} ({} false rollbacks, {} missed, {})",
                    self.false_rollback_budget,
                    describe_variation(&c.variation),
                    c.summary.false_rollbacks,
                    c.summary.misses,
                    delay_text(c)
                )
            }
            None => writeln!(
                f,
                "no policy stays within {} false rollbacks",
                self.false_rollback_budget
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "interval: 10s\nbake_time: 1h\nprobes: [{name: error_rate, success: '< 0.05'}, {name: latency, success: '< 0.2'}]";

    #[test]
    fn a_grid_and_a_list() {
        let space = TuneSpace::from_yaml(
            "grid:\n  failure_limit: [0, 1]\n  interval: [10s, 30s, 1m]\nvariations:\n  - {consecutive_failure_limit: 3}\n",
        )
        .unwrap();
        let v = space.variations();
        assert_eq!(v.len(), 7);
        assert_eq!(describe_variation(&v[1]), "failure_limit=0, interval=30s");
        assert_eq!(describe_variation(&v[6]), "consecutive_failure_limit=3");
        assert_eq!(TuneSpace::default().variations(), [Variation::new()]);
    }

    #[test]
    fn variations_apply_to_the_policy_and_its_probes() {
        let base = Policy::from_yaml(BASE).unwrap();
        let v: Variation = serde_json::from_str(
            r#"{"interval": "30s", "consecutive_failure_limit": 2, "probes.error_rate.success": "< 0.02", "probes.latency.failure": ">= 1"}"#,
        )
        .unwrap();
        let p = apply(&base, &v).unwrap();
        assert_eq!(p.interval, std::time::Duration::from_secs(30));
        assert_eq!(p.consecutive_failure_limit, Some(2));
        assert_eq!(p.probes[0].success.unwrap().to_string(), "< 0.02");
        assert_eq!(p.probes[1].failure.unwrap().to_string(), ">= 1");
        let unset: Variation = serde_json::from_str(r#"{"probes.latency.success": null}"#).unwrap();
        let e = apply(&base, &unset).unwrap_err().to_string();
        assert!(e.contains("needs a `success` or a `failure`"), "{e}");
        let bad: Variation = serde_json::from_str(r#"{"probes.nope.success": "< 1"}"#).unwrap();
        assert!(
            apply(&base, &bad)
                .unwrap_err()
                .to_string()
                .contains("no probe \"nope\"")
        );
        let typo: Variation = serde_json::from_str(r#"{"failure_limt": 1}"#).unwrap();
        let e = apply(&base, &typo).unwrap_err().to_string();
        assert!(e.contains("failure_limt"), "{e}");
        assert_eq!(apply(&base, &Variation::new()).unwrap(), base);
    }
}
