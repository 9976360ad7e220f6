//! Canary against baseline, by statistics: Kayenta's Mann-Whitney judge.
//!
//! A probe returns [`Samples`], values of the canary and of the baseline
//! measured over the same window (per-pod values of one query grouped by a
//! label, or the points of two time series), in [`crate::Measurement::samples`].
//! A probe judged by [`MannWhitney`] (`mann_whitney:` in a policy, instead of
//! `success` and `failure`) classifies them as Kayenta's `NetflixACAJudge`
//! does:
//!
//! 1. NaN is removed from both samples. A side left empty is no data (judged
//!    by the policy's `no_data`); fewer than `min_samples` values on a side
//!    is inconclusive; an infinite value is inconclusive.
//! 2. Identical samples, or all values equal, pass.
//! 3. The two-sided rank-sum test ([`rank_sum`]) at `confidence` (default
//!    0.98) gives the Hodges-Lehmann estimate of the shift `canary -
//!    baseline` and its confidence interval. The canary is **higher** when
//!    the interval's lower bound lies above `tolerance × |estimate|`
//!    (default 0.25) and the mean ratio `mean(canary) / mean(baseline)` is
//!    at least `effect_size.allowed_increase` (default 1.0); **lower** when
//!    the upper bound lies below `-tolerance × |estimate|` and the ratio is
//!    at most `allowed_decrease`. A ratio that cannot be computed (a mean of
//!    0) does not stop the classification, as in Kayenta.
//! 4. Only the `direction` asked for (`increase`, `decrease`, or `either`,
//!    the default) fails; the other passes.
//! 5. With `critical: true`, a higher canary whose ratio reaches
//!    `critical_increase` (or a lower one at or below `critical_decrease`)
//!    breaches at once, whatever the failure limits.
//!
//! Where Kayenta adds Gaussian noise to two constant samples, this judge
//! takes their difference as the exact shift, so the same samples always
//! give the same verdict.
//!
//! ```
//! use rollback_core::canary::{MannWhitney, Samples};
//! use rollback_core::condition::{NoData, Verdict};
//! let judge = MannWhitney::default();
//! let slow = Samples::new(vec![130.0, 128.0, 141.0, 135.0, 133.0, 138.0], vec![101.0, 99.0, 104.0, 98.0, 102.0, 100.0]);
//! let j = judge.judge(&slow, NoData::Inconclusive);
//! assert_eq!(j.verdict, Verdict::Fail);
//! assert!(j.to_string().starts_with("canary higher than baseline"), "{j}");
//! ```

mod rank_sum;

use std::fmt;

pub use rank_sum::{RankSum, RankSumError, rank_sum};

use crate::condition::{NoData, Verdict, VerdictCause};

/// Values of the canary and of the baseline, measured over the same window.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Samples {
    /// The canary's values (the revision being judged).
    pub canary: Vec<f64>,
    /// The baseline's values (the stable revision, or a fresh copy of it).
    pub baseline: Vec<f64>,
}

impl Samples {
    /// Canary and baseline values.
    pub fn new(canary: Vec<f64>, baseline: Vec<f64>) -> Self {
        Samples { canary, baseline }
    }
}

/// Which change of the canary fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// A higher canary fails (latency, errors).
    Increase,
    /// A lower canary fails (throughput, click-through rate).
    Decrease,
    /// Either fails (Kayenta's default).
    #[default]
    Either,
}

/// Effect sizes by mean ratio, `mean(canary) / mean(baseline)`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EffectSize {
    /// A significantly higher canary fails only at this ratio or above. Default 1.0.
    #[serde(default = "one")]
    pub allowed_increase: f64,
    /// A significantly lower canary fails only at this ratio or below. Default 1.0.
    #[serde(default = "one")]
    pub allowed_decrease: f64,
    /// With `critical: true`, a higher canary at this ratio or above breaches at once. Default 1.0.
    #[serde(default = "one")]
    pub critical_increase: f64,
    /// With `critical: true`, a lower canary at this ratio or below breaches at once. Default 1.0.
    #[serde(default = "one")]
    pub critical_decrease: f64,
}

fn one() -> f64 {
    1.0
}
fn default_confidence() -> f64 {
    0.98
}
fn default_tolerance() -> f64 {
    0.25
}
fn default_min_samples() -> u32 {
    3
}

impl Default for EffectSize {
    fn default() -> Self {
        EffectSize {
            allowed_increase: 1.0,
            allowed_decrease: 1.0,
            critical_increase: 1.0,
            critical_decrease: 1.0,
        }
    }
}

/// Kayenta's Mann-Whitney judge of canary against baseline (see the
/// [module docs](self)); `mann_whitney:` of a probe in a policy.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MannWhitney {
    /// The confidence level of the shift's interval. Default 0.98.
    #[serde(default = "default_confidence")]
    pub confidence: f64,
    /// How far beyond 0 the interval must lie, as a fraction of the
    /// estimate's size. Default 0.25.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// Which change fails. Default `either`.
    #[serde(default)]
    pub direction: Direction,
    /// Effect sizes by mean ratio.
    #[serde(default)]
    pub effect_size: EffectSize,
    /// A critical metric: a change past the critical effect size breaches
    /// at once. Default false.
    #[serde(default)]
    pub critical: bool,
    /// Fewer values than this on either side (after NaN is removed) is
    /// inconclusive. Default 3.
    #[serde(default = "default_min_samples")]
    pub min_samples: u32,
}

impl Default for MannWhitney {
    fn default() -> Self {
        MannWhitney {
            confidence: default_confidence(),
            tolerance: default_tolerance(),
            direction: Direction::default(),
            effect_size: EffectSize::default(),
            critical: false,
            min_samples: default_min_samples(),
        }
    }
}

/// How the judge classified the samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Classification {
    /// No significant difference in the direction that fails.
    Pass,
    /// The canary is significantly higher.
    High,
    /// The canary is significantly lower.
    Low,
    /// Not judged: no data, too few values, or an infinite one.
    Unjudged,
}

/// The judge's verdict on one measurement's samples, with its numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judgement {
    /// The verdict.
    pub verdict: Verdict,
    /// Why.
    pub cause: VerdictCause,
    /// The classification.
    pub classification: Classification,
    /// Past the critical effect size of a critical metric: breaches at once.
    pub critical: bool,
    /// The rank-sum test, when it ran.
    pub test: Option<RankSum>,
    /// `mean(canary) / mean(baseline)`; `None` when a mean is 0 or a side is empty.
    pub mean_ratio: Option<f64>,
    /// Canary values judged (after NaN removal).
    pub canary: usize,
    /// Baseline values judged (after NaN removal).
    pub baseline: usize,
    /// NaN values removed from both sides.
    pub removed: usize,
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

impl MannWhitney {
    /// Check the settings: `Err((field, reason))`, the field relative to
    /// the `mann_whitney` mapping.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !(self.confidence > 0.0 && self.confidence < 1.0) {
            return Err((
                "confidence",
                format!(
                    "{} is not strictly between 0 and 1 (0.98 for 98 %)",
                    self.confidence
                ),
            ));
        }
        if !(self.tolerance.is_finite() && self.tolerance >= 0.0) {
            return Err((
                "tolerance",
                format!("{} is not a fraction of 0 or more", self.tolerance),
            ));
        }
        let e = &self.effect_size;
        for (field, v) in [
            ("effect_size.allowed_increase", e.allowed_increase),
            ("effect_size.allowed_decrease", e.allowed_decrease),
            ("effect_size.critical_increase", e.critical_increase),
            ("effect_size.critical_decrease", e.critical_decrease),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err((
                    field,
                    format!("{v} is not a ratio of means greater than 0 (1.1 for 10 % higher)"),
                ));
            }
        }
        if self.min_samples == 0 {
            return Err(("min_samples", "must be at least 1".into()));
        }
        Ok(())
    }

    /// Judge a measurement's samples; one without samples is no data when
    /// it has no value either, and inconclusive ([`VerdictCause::NoSamples`])
    /// when it has one.
    pub fn judge_measurement(&self, m: &crate::Measurement, no_data: NoData) -> Judgement {
        match &m.samples {
            Some(samples) => self.judge(samples, no_data),
            None => {
                let mut j = self.judge(&Samples::default(), no_data);
                if m.value.is_some() {
                    j.verdict = Verdict::Inconclusive;
                    j.cause = VerdictCause::NoSamples;
                }
                j
            }
        }
    }

    /// Judge `samples`: NaN removed, then classified (see the [module docs](self)).
    pub fn judge(&self, samples: &Samples, no_data: NoData) -> Judgement {
        let canary: Vec<f64> = samples
            .canary
            .iter()
            .copied()
            .filter(|v| !v.is_nan())
            .collect();
        let baseline: Vec<f64> = samples
            .baseline
            .iter()
            .copied()
            .filter(|v| !v.is_nan())
            .collect();
        let removed = samples.canary.len() + samples.baseline.len() - canary.len() - baseline.len();
        let mut j = Judgement {
            verdict: Verdict::Inconclusive,
            cause: VerdictCause::NoData,
            classification: Classification::Unjudged,
            critical: false,
            test: None,
            mean_ratio: None,
            canary: canary.len(),
            baseline: baseline.len(),
            removed,
        };
        if canary.is_empty() || baseline.is_empty() {
            j.verdict = match no_data {
                NoData::Inconclusive => Verdict::Inconclusive,
                NoData::Fail => Verdict::Fail,
                NoData::Pass => Verdict::Pass,
            };
            return j;
        }
        if canary.iter().chain(&baseline).any(|v| v.is_infinite()) {
            j.cause = VerdictCause::NotFinite;
            return j;
        }
        let min = self.min_samples as usize;
        if canary.len() < min || baseline.len() < min {
            j.cause = VerdictCause::TooFewSamples;
            return j;
        }
        let (mc, mb) = (mean(&canary), mean(&baseline));
        j.mean_ratio = (mc != 0.0 && mb != 0.0).then(|| mc / mb);
        let pass = |mut j: Judgement| {
            j.verdict = Verdict::Pass;
            j.cause = VerdictCause::NoSignificantDifference;
            j.classification = Classification::Pass;
            j
        };
        let mut sorted_c = canary.clone();
        let mut sorted_b = baseline.clone();
        sorted_c.sort_by(f64::total_cmp);
        sorted_b.sort_by(f64::total_cmp);
        if sorted_c == sorted_b || sorted_c.iter().chain(&sorted_b).all(|v| *v == sorted_c[0]) {
            return pass(j);
        }
        let test = match rank_sum(&canary, &baseline, self.confidence) {
            Ok(t) => t,
            // Only a bad confidence level is left, which `check` refuses.
            Err(_) => return j,
        };
        j.test = Some(test);
        let bound = self.tolerance * test.estimate.abs();
        let ratio = j.mean_ratio;
        let e = &self.effect_size;
        let high = matches!(self.direction, Direction::Increase | Direction::Either)
            && test.low > bound
            && ratio.is_none_or(|r| r >= e.allowed_increase);
        let low = matches!(self.direction, Direction::Decrease | Direction::Either)
            && test.high < -bound
            && ratio.is_none_or(|r| r <= e.allowed_decrease);
        if high {
            j.classification = Classification::High;
            j.critical = self.critical && ratio.is_none_or(|r| r >= e.critical_increase);
            j.cause = if j.critical {
                VerdictCause::CriticallyHigher
            } else {
                VerdictCause::CanaryHigher
            };
        } else if low {
            j.classification = Classification::Low;
            j.critical = self.critical && ratio.is_none_or(|r| r <= e.critical_decrease);
            j.cause = if j.critical {
                VerdictCause::CriticallyLower
            } else {
                VerdictCause::CanaryLower
            };
        } else {
            return pass(j);
        }
        j.verdict = Verdict::Fail;
        j
    }
}

impl fmt::Display for MannWhitney {
    /// `mann_whitney (98 %, tolerance 0.25, increase)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let direction = match self.direction {
            Direction::Increase => "increase",
            Direction::Decrease => "decrease",
            Direction::Either => "either",
        };
        write!(
            f,
            "mann_whitney ({} %, tolerance {}, {direction}",
            self.confidence * 100.0,
            self.tolerance
        )?;
        if self.critical {
            f.write_str(", critical")?;
        }
        f.write_str(")")
    }
}

/// A number with 5 significant digits (`0.000012346`, `12.346`, `12346`).
struct Significant(f64);

impl fmt::Display for Significant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        if v == 0.0 || !v.is_finite() {
            return write!(f, "{v}");
        }
        let magnitude = v.abs().log10().floor() as i32;
        let decimals = (4 - magnitude).clamp(0, 17) as usize;
        write!(f, "{v:.decimals$}")
    }
}

impl fmt::Display for Judgement {
    /// `canary higher than baseline: shift 3.1 (98 % interval 1.2 to 5.0),
    /// mean ratio 1.21, p 0.0031; 12 canary and 12 baseline values`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match (self.classification, self.critical, self.cause) {
            (Classification::High, true, _) => "canary critically higher than baseline",
            (Classification::High, false, _) => "canary higher than baseline",
            (Classification::Low, true, _) => "canary critically lower than baseline",
            (Classification::Low, false, _) => "canary lower than baseline",
            (Classification::Pass, ..) => "no significant difference from baseline",
            (_, _, VerdictCause::TooFewSamples) => "too few values to compare",
            (_, _, VerdictCause::NotFinite) => "an infinite value, not compared",
            (_, _, VerdictCause::NoSamples) => {
                "one value, not samples of canary and baseline: the probe needs `samples`"
            }
            _ => "no data on one side",
        };
        f.write_str(what)?;
        let mut sep = ": ";
        if let Some(t) = &self.test {
            write!(
                f,
                "{sep}shift {} ({} % interval {} to {}), p {:.4}",
                Significant(t.estimate),
                t.confidence * 100.0,
                Significant(t.low),
                Significant(t.high),
                t.p_value
            )?;
            sep = ", ";
        }
        if let Some(r) = self.mean_ratio {
            write!(f, "{sep}mean ratio {r:.4}")?;
        }
        write!(
            f,
            "; {} canary and {} baseline values",
            self.canary, self.baseline
        )?;
        if self.removed > 0 {
            write!(f, ", {} NaN removed", self.removed)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
