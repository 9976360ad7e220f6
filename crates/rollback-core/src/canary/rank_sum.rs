//! The Wilcoxon rank-sum (Mann-Whitney U) test on the normal approximation
//! with continuity correction, and the Hodges-Lehmann estimate of the shift
//! between two samples with its confidence interval: the numbers R's
//! `wilcox.test(canary, baseline, conf.int = TRUE, exact = FALSE, correct = TRUE)`
//! gives (`statistic`, `p.value`, `estimate`, `conf.int`).
//!
//! The estimate and the bounds are roots of a step function of the shift
//! (the standardized rank sum of `canary - shift` against `baseline`). R
//! finds them with `uniroot` to an absolute tolerance of 1e-4; here they are
//! found by bisection down to adjacent floating-point numbers, so they do
//! not depend on the scale of the data. Where the function is zero over an
//! interval (the estimate when half the pairs lie on each side) the middle
//! of the interval is taken: the median of the pairwise differences.

use statrs::distribution::{ContinuousCDF, Normal};

/// The result of a two-sided rank-sum test of `canary` against `baseline`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankSum {
    /// The Mann-Whitney U of the canary (R's `W`): the pairs (canary,
    /// baseline) in which the canary's value is larger, ties counted half.
    pub u: f64,
    /// The standardized statistic, continuity-corrected.
    pub z: f64,
    /// The two-sided p-value on the normal approximation.
    pub p_value: f64,
    /// The Hodges-Lehmann estimate of the shift `canary - baseline`.
    pub estimate: f64,
    /// The lower bound of the shift's confidence interval.
    pub low: f64,
    /// The upper bound of the shift's confidence interval.
    pub high: f64,
    /// The interval's confidence level, such as 0.98.
    pub confidence: f64,
}

/// Why a rank-sum test cannot be computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RankSumError {
    /// One of the samples is empty.
    #[error("a rank-sum test needs at least one canary and one baseline value")]
    Empty,
    /// A value is NaN or infinite.
    #[error("a rank-sum test needs finite values; remove NaN first")]
    NotFinite,
    /// The confidence level is not strictly between 0 and 1.
    #[error("the confidence level must be strictly between 0 and 1")]
    Confidence,
}

/// The rank sum of `canary - shift` among the pooled values, and the tie
/// term `Σ (t³ - t)` over groups of `t` equal values. Both inputs sorted.
fn ranks(canary: &[f64], shift: f64, baseline: &[f64]) -> (f64, f64) {
    let (mut i, mut j) = (0, 0);
    let mut placed = 0usize;
    let (mut rank_sum, mut ties) = (0.0, 0.0);
    while i < canary.len() || j < baseline.len() {
        let next_c = canary.get(i).map(|c| c - shift);
        let next_b = baseline.get(j).copied();
        let v = match (next_c, next_b) {
            (Some(c), Some(b)) => c.min(b),
            (Some(c), None) => c,
            (None, Some(b)) => b,
            (None, None) => break,
        };
        let mut in_canary = 0usize;
        while canary.get(i).is_some_and(|c| c - shift == v) {
            in_canary += 1;
            i += 1;
        }
        let mut in_baseline = 0usize;
        while baseline.get(j).is_some_and(|b| *b == v) {
            in_baseline += 1;
            j += 1;
        }
        let t = (in_canary + in_baseline) as f64;
        // Ranks placed+1 ..= placed+t share their average.
        let average = placed as f64 + (t + 1.0) / 2.0;
        rank_sum += in_canary as f64 * average;
        ties += t * t * t - t;
        placed += in_canary + in_baseline;
    }
    (rank_sum, ties)
}

/// The two samples, sorted, with the counts as floats.
struct Pooled<'a> {
    canary: &'a [f64],
    baseline: &'a [f64],
    n: f64,
    m: f64,
}

impl Pooled<'_> {
    /// `U - nm/2` and the standard deviation of U under the null, for the
    /// canary shifted down by `shift`.
    fn centred(&self, shift: f64) -> (f64, f64) {
        let (n, m) = (self.n, self.m);
        let (rank_sum, ties) = ranks(self.canary, shift, self.baseline);
        let dz = rank_sum - n * (n + 1.0) / 2.0 - n * m / 2.0;
        let variance = (n * m / 12.0) * ((n + m + 1.0) - ties / ((n + m) * (n + m - 1.0)));
        (dz, variance.max(0.0).sqrt())
    }

    /// R's `wdiff`: the standardized rank statistic at `shift`, minus `zq`.
    /// Where every value is tied (no spread) the statistic is taken as 0.
    fn wdiff(&self, shift: f64, zq: f64, correct: bool) -> f64 {
        let (dz, sigma) = self.centred(shift);
        if sigma == 0.0 {
            return -zq;
        }
        let correction = if correct { 0.5 * sign(dz) } else { 0.0 };
        (dz - correction) / sigma - zq
    }

    /// The shift where `wdiff(·, zq)` changes sign, between the smallest and
    /// the largest pairwise difference (R's `root`).
    fn root(&self, zq: f64, correct: bool, low: f64, high: f64) -> f64 {
        let f = |d: f64| self.wdiff(d, zq, correct);
        if f(low) <= 0.0 {
            return low;
        }
        if f(high) >= 0.0 {
            return high;
        }
        // f(lo) > 0 > f(hi); f does not increase with the shift.
        let (mut lo, mut hi) = (low, high);
        loop {
            let mid = lo + (hi - lo) / 2.0;
            if mid <= lo || mid >= hi {
                return mid;
            }
            let v = f(mid);
            if v > 0.0 {
                lo = mid;
            } else if v < 0.0 {
                hi = mid;
            } else {
                // Zero over an interval around `mid`: take its middle.
                let left = boundary(lo, mid, |d| f(d) > 0.0);
                let right = boundary(mid, hi, |d| f(d) >= 0.0);
                return left + (right - left) / 2.0;
            }
        }
    }
}

/// Between `lo` (where `holds`) and `hi` (where it does not), the point
/// where `holds` stops holding, to adjacent floating-point numbers.
fn boundary(mut lo: f64, mut hi: f64, holds: impl Fn(f64) -> bool) -> f64 {
    loop {
        let mid = lo + (hi - lo) / 2.0;
        if mid <= lo || mid >= hi {
            return mid;
        }
        if holds(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
}

fn sign(v: f64) -> f64 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// The two-sided rank-sum test of `canary` against `baseline` at
/// `confidence` (0.98 for a 98 % interval). Values must be finite; order
/// does not matter.
///
/// ```
/// use rollback_core::canary::rank_sum;
/// let t = rank_sum(&[1.8, 2.1, 2.4, 2.2, 1.9], &[1.0, 1.3, 0.9, 1.1, 1.2], 0.95).unwrap();
/// assert_eq!(t.u, 25.0);
/// assert!(t.low > 0.0 && t.estimate > t.low && t.high > t.estimate);
/// ```
pub fn rank_sum(
    canary: &[f64],
    baseline: &[f64],
    confidence: f64,
) -> Result<RankSum, RankSumError> {
    if canary.is_empty() || baseline.is_empty() {
        return Err(RankSumError::Empty);
    }
    if canary.iter().chain(baseline).any(|v| !v.is_finite()) {
        return Err(RankSumError::NotFinite);
    }
    if !(confidence > 0.0 && confidence < 1.0) {
        return Err(RankSumError::Confidence);
    }
    let mut c = canary.to_vec();
    let mut b = baseline.to_vec();
    c.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let pooled = Pooled {
        canary: &c,
        baseline: &b,
        n: c.len() as f64,
        m: b.len() as f64,
    };
    let normal = Normal::standard();

    let (dz, sigma) = pooled.centred(0.0);
    let u = dz + pooled.n * pooled.m / 2.0;
    let z = if sigma == 0.0 {
        0.0
    } else {
        (dz - 0.5 * sign(dz)) / sigma
    };
    let p_value = (2.0 * normal.cdf(z).min(normal.sf(z))).min(1.0);

    // Every pairwise difference lies between these two.
    let lowest = c[0] - b[b.len() - 1];
    let highest = c[c.len() - 1] - b[0];
    let zq = normal.inverse_cdf(1.0 - (1.0 - confidence) / 2.0);
    let low = pooled.root(zq, true, lowest, highest);
    let high = pooled.root(-zq, true, lowest, highest);
    // R estimates without the continuity correction.
    let estimate = pooled.root(0.0, false, lowest, highest);
    Ok(RankSum {
        u,
        z,
        p_value,
        estimate,
        low,
        high,
        confidence,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_is_the_median_of_pairwise_differences() {
        let c = [3.0, 7.0, 8.0];
        let b = [1.0, 2.0, 4.0];
        let t = rank_sum(&c, &b, 0.9).unwrap();
        // Differences: 2 1 -1 6 5 3 7 6 4 -> median 4.
        assert!((t.estimate - 4.0).abs() < 1e-12, "{t:?}");
        assert_eq!(t.u, 8.0);
        let mut even = rank_sum(&[3.0, 7.0], &[1.0, 2.0], 0.9).unwrap();
        // 2 1 6 5 -> the middle of 2 and 5.
        assert!((even.estimate - 3.5).abs() < 1e-12, "{even:?}");
        even = rank_sum(&[1.0, 2.0], &[3.0, 7.0], 0.9).unwrap();
        assert!((even.estimate + 3.5).abs() < 1e-12, "{even:?}");
    }

    #[test]
    fn constant_samples_shift_exactly() {
        let t = rank_sum(&[5.0; 6], &[3.0; 6], 0.98).unwrap();
        assert_eq!((t.estimate, t.low, t.high), (2.0, 2.0, 2.0));
        let t = rank_sum(&[4.0; 4], &[4.0; 5], 0.98).unwrap();
        assert_eq!((t.estimate, t.p_value), (0.0, 1.0));
    }

    #[test]
    fn bad_input_is_refused() {
        assert_eq!(rank_sum(&[], &[1.0], 0.9), Err(RankSumError::Empty));
        assert_eq!(
            rank_sum(&[f64::NAN], &[1.0], 0.9),
            Err(RankSumError::NotFinite)
        );
        assert_eq!(rank_sum(&[1.0], &[1.0], 1.0), Err(RankSumError::Confidence));
    }

    #[test]
    fn the_scale_does_not_matter() {
        let c = [0.0333, 0.0341, 0.0329, 0.0352, 0.0347];
        let b = [0.0311, 0.0318, 0.0322, 0.0309, 0.0315, 0.0320];
        let small = rank_sum(&c, &b, 0.98).unwrap();
        let scaled: Vec<f64> = c.iter().map(|v| v * 1e6).collect();
        let scaled_b: Vec<f64> = b.iter().map(|v| v * 1e6).collect();
        let big = rank_sum(&scaled, &scaled_b, 0.98).unwrap();
        for (a, b) in [
            (small.estimate, big.estimate),
            (small.low, big.low),
            (small.high, big.high),
        ] {
            assert!((a * 1e6 - b).abs() <= 1e-6 * b.abs(), "{a} {b}");
        }
        assert_eq!(small.u, big.u);
    }
}
