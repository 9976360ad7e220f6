//! Trend forecasts: early detection of a slow burn.
//!
//! A probe's `forecast` fits a trend to its last measurements (least
//! squares, or Holt's linear smoothing) and fails a measurement that still
//! passes its success condition when the trend crosses that condition's
//! bound within the horizon. The verdict's [`Prediction`] says when.
//!
//! ```yaml
//! probes:
//!   - name: error_rate
//!     success: "< 0.01"
//!     forecast:
//!       horizon: 10m          # fail when the trend reaches 0.01 within 10 minutes
//!       method: least_squares # or holt (with alpha and beta)
//!       window: 10            # the last 10 measurements
//! ```
//!
//! The trend is fitted to the latest `window` values the success condition
//! passed (of the current judging period: verifying a restored revision
//! starts again), and judges once it has that many; until then the plain
//! conditions judge alone. A value the conditions fail is theirs to count
//! and stays out of the fit, so one outlier does not tilt it. A failure
//! the conditions find is a failure whatever the trend says; the trend only
//! turns a pass into a failure, never the other way round.
//!
//! ```
//! use std::time::Duration;
//! use rollback_core::Timestamp;
//! use rollback_core::forecast::{Forecast, Trend};
//!
//! let forecast = Forecast::new(Duration::from_secs(600));
//! let mut trend = Trend::default();
//! let t = |min: i64| Timestamp::from_millis(min * 60_000);
//! for i in 0..10 {
//!     trend.push(t(i), 0.001 * i as f64, forecast.window); // +0.001 a minute
//! }
//! let success = "< 0.015".parse()?;
//! let p = forecast.predict(&success, &trend, t(9)).unwrap();
//! assert_eq!(p.breach_at, t(15)); // 0.009 now, 0.015 six minutes later
//! assert!(p.within_horizon());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use crate::condition::{
    Comparison, Condition, NoData, Verdict, VerdictCause, judge as judge_value,
};
use crate::time::duration;
use crate::{Measurement, Timestamp};

/// How a trend is fitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrendMethod {
    /// A least-squares line through the window's measurements.
    #[default]
    LeastSquares,
    /// Holt's linear (double exponential) smoothing over the window's
    /// measurements, with smoothing factors `alpha` (level) and `beta` (trend).
    Holt,
}

impl fmt::Display for TrendMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrendMethod::LeastSquares => "least squares",
            TrendMethod::Holt => "Holt's linear smoothing",
        })
    }
}

fn default_window() -> u32 {
    Forecast::DEFAULT_WINDOW
}

/// A probe's trend forecast (the `forecast` of a probe in a policy).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Forecast {
    /// A measurement fails when the trend crosses the success condition's
    /// bound within this long of it.
    #[serde(with = "duration")]
    pub horizon: Duration,
    /// How the trend is fitted. Default `least_squares`.
    #[serde(default)]
    pub method: TrendMethod,
    /// How many of the latest measurements the success condition passed
    /// are fitted; the forecast judges once it has this many. Default 10, at
    /// least 3, at most 1000.
    #[serde(default = "default_window")]
    pub window: u32,
    /// Holt's level smoothing factor, in (0, 1]. Default 0.3; `holt` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// Holt's trend smoothing factor, in (0, 1]. Default 0.1; `holt` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta: Option<f64>,
}

/// One measured value a trend is fitted to.
pub type TrendPoint = (Timestamp, f64);

/// The latest measurements of one probe, oldest first, as the machine keeps
/// them for its forecast (and persists them with its state).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Trend {
    points: VecDeque<TrendPoint>,
}

impl Trend {
    /// Add a measured value, keeping the latest `window`; a value that is
    /// not finite is left out.
    pub fn push(&mut self, at: Timestamp, value: f64, window: u32) {
        if !value.is_finite() {
            return;
        }
        self.points.push_back((at, value));
        while self.points.len() > window as usize {
            self.points.pop_front();
        }
    }

    /// The values kept, oldest first.
    pub fn points(&self) -> impl ExactSizeIterator<Item = &TrendPoint> {
        self.points.iter()
    }

    /// How many values are kept.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Forget every value (a new judging period).
    pub fn clear(&mut self) {
        self.points.clear();
    }
}

/// A fitted trend at the time of its latest point: its value then and its
/// slope, per second.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Line {
    level: f64,
    slope: f64,
}

fn seconds(from: Timestamp, to: Timestamp) -> f64 {
    (to.as_millis() - from.as_millis()) as f64 / 1000.0
}

fn least_squares(points: &VecDeque<TrendPoint>) -> Option<Line> {
    let (last, _) = *points.back()?;
    let n = points.len() as f64;
    let (sx, sy) = points.iter().fold((0.0, 0.0), |(sx, sy), &(t, y)| {
        (sx + seconds(last, t), sy + y)
    });
    let (mx, my) = (sx / n, sy / n);
    let (sxy, sxx) = points.iter().fold((0.0, 0.0), |(sxy, sxx), &(t, y)| {
        let dx = seconds(last, t) - mx;
        (sxy + dx * (y - my), sxx + dx * dx)
    });
    if sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    // x is 0 at the last point.
    Some(Line {
        level: my - slope * mx,
        slope,
    })
}

/// Holt's smoothing through the window, started from the window's
/// least-squares line at its first point (two noisy points make a poor
/// start for the trend, which a small `beta` keeps for long).
fn holt(points: &VecDeque<TrendPoint>, alpha: f64, beta: f64) -> Option<Line> {
    let start = least_squares(points)?;
    let (first, _) = *points.front()?;
    let (last, _) = *points.back()?;
    let mut slope = start.slope;
    let mut level = start.level + slope * seconds(last, first);
    let mut at = first;
    for &(t, y) in points.iter().skip(1) {
        let dt = seconds(at, t);
        if dt <= 0.0 {
            return None;
        }
        let next = alpha * y + (1.0 - alpha) * (level + slope * dt);
        slope = beta * (next - level) / dt + (1.0 - beta) * slope;
        level = next;
        at = t;
    }
    Some(Line { level, slope })
}

/// When a trend crosses a success condition's bound, as a forecast found it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// How the trend was fitted.
    pub method: TrendMethod,
    /// How many measurements it was fitted to.
    pub points: usize,
    /// The trend's value at the latest measurement.
    pub level: f64,
    /// The trend's slope, per second.
    pub slope: f64,
    /// The success condition.
    pub condition: Condition,
    /// The condition's bound the trend crosses.
    pub bound: f64,
    /// The latest measurement's time.
    pub at: Timestamp,
    /// When the trend crosses the bound: `at` when its value is past it already.
    pub breach_at: Timestamp,
    /// The forecast's horizon.
    pub horizon: Duration,
}

impl Prediction {
    /// Whether the breach comes within the horizon.
    pub fn within_horizon(&self) -> bool {
        self.breach_at <= self.at.plus(self.horizon)
    }
}

impl fmt::Display for Prediction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per_minute = self.slope * 60.0;
        let way = if per_minute >= 0.0 {
            "rising"
        } else {
            "falling"
        };
        write!(
            f,
            "forecast ({} over the last {} measurements): {:.6} now, {way} {:.6} a minute; ",
            self.method,
            self.points,
            self.level,
            per_minute.abs()
        )?;
        if self.breach_at <= self.at {
            write!(
                f,
                "the trend is already past {} of success {}",
                self.bound, self.condition
            )?;
        } else {
            write!(
                f,
                "reaches {} of success {} at {}, in {}",
                self.bound,
                self.condition,
                self.breach_at,
                crate::time::format_duration(self.breach_at.since(self.at))
            )?;
        }
        write!(
            f,
            " (horizon {})",
            crate::time::format_duration(self.horizon)
        )
    }
}

/// Why a forecast cannot judge a probe, for [`Forecast::check`].
pub(crate) type CheckError = (&'static str, String);

impl Forecast {
    /// The default `window`.
    pub const DEFAULT_WINDOW: u32 = 10;
    /// The default `alpha` of `holt`.
    pub const DEFAULT_ALPHA: f64 = 0.3;
    /// The default `beta` of `holt`.
    pub const DEFAULT_BETA: f64 = 0.1;

    /// A least-squares forecast over the default window with this horizon.
    pub fn new(horizon: Duration) -> Self {
        Forecast {
            horizon,
            method: TrendMethod::LeastSquares,
            window: Self::DEFAULT_WINDOW,
            alpha: None,
            beta: None,
        }
    }

    /// Check the forecast against the success condition it forecasts; an
    /// error names the field (under `forecast`) and says why.
    pub(crate) fn check(&self, success: Option<&Condition>) -> Result<(), CheckError> {
        if self.horizon.is_zero() {
            return Err(("horizon", "must be greater than 0s".into()));
        }
        if !(3..=1000).contains(&self.window) {
            return Err((
                "window",
                format!(
                    "{} measurements: a trend is fitted to 3 to 1000",
                    self.window
                ),
            ));
        }
        for (field, v) in [("alpha", self.alpha), ("beta", self.beta)] {
            match v {
                Some(_) if self.method != TrendMethod::Holt => {
                    return Err((
                        field,
                        format!("applies to method holt only, not {}", self.method),
                    ));
                }
                Some(v) if !(v > 0.0 && v <= 1.0) => {
                    return Err((field, format!("{v} is not in (0, 1]")));
                }
                _ => {}
            }
        }
        match success {
            None => Err((
                "",
                "a forecast needs a `success` condition to forecast the breach of".into(),
            )),
            Some(c) if bounds(c).is_none() => Err((
                "",
                format!(
                    "cannot forecast success {c}: a trend crosses the bound of `<`, `<=`, `>`, `>=` or `between`"
                ),
            )),
            Some(_) => Ok(()),
        }
    }

    /// Fit the trend and find when it crosses `success`'s bound; `None`
    /// before the window is full, when the fit is degenerate, or when the
    /// trend never crosses (flat, or moving away from the bound). `now` is
    /// the latest measurement's time.
    pub fn predict(
        &self,
        success: &Condition,
        trend: &Trend,
        now: Timestamp,
    ) -> Option<Prediction> {
        if trend.len() < self.window as usize {
            return None;
        }
        let line = match self.method {
            TrendMethod::LeastSquares => least_squares(&trend.points)?,
            TrendMethod::Holt => holt(
                &trend.points,
                self.alpha.unwrap_or(Self::DEFAULT_ALPHA),
                self.beta.unwrap_or(Self::DEFAULT_BETA),
            )?,
        };
        if !line.level.is_finite() || !line.slope.is_finite() {
            return None;
        }
        let (low, high) = bounds(success)?;
        let (bound, past) = match (low, high) {
            (_, Some((h, strict))) if is_past(line.level, h, strict, true) => (h, true),
            (Some((l, strict)), _) if is_past(line.level, l, strict, false) => (l, true),
            (_, Some((h, _))) if line.slope > 0.0 => (h, false),
            (Some((l, _)), _) if line.slope < 0.0 => (l, false),
            _ => return None,
        };
        let breach_at = if past {
            now
        } else {
            let secs = (bound - line.level) / line.slope;
            // Further than a century is never.
            if !(0.0..3.2e9).contains(&secs) {
                return None;
            }
            now.plus(Duration::from_secs_f64(secs))
        };
        Some(Prediction {
            method: self.method,
            points: trend.len(),
            level: line.level,
            slope: line.slope,
            condition: *success,
            bound,
            at: now,
            breach_at,
            horizon: self.horizon,
        })
    }
}

/// Whether `v` is past a bound: above an upper one (`strict`: `< b`, so `b`
/// itself is past), or below a lower one.
fn is_past(v: f64, b: f64, strict: bool, upper: bool) -> bool {
    match (upper, strict) {
        (true, true) => v >= b,
        (true, false) => v > b,
        (false, true) => v <= b,
        (false, false) => v < b,
    }
}

/// A bound of a condition and whether it is strict.
type Bound = Option<(f64, bool)>;

/// The lower and upper bounds a value must stay within for `c` to hold;
/// `None` for conditions a trend cannot cross (`==`, `!=`, `outside`, relative).
fn bounds(c: &Condition) -> Option<(Bound, Bound)> {
    match *c {
        Condition::Threshold(Comparison::Lt, t) => Some((None, Some((t, true)))),
        Condition::Threshold(Comparison::Le, t) => Some((None, Some((t, false)))),
        Condition::Threshold(Comparison::Gt, t) => Some((Some((t, true)), None)),
        Condition::Threshold(Comparison::Ge, t) => Some((Some((t, false)), None)),
        Condition::Range {
            low,
            high,
            inside: true,
        } => Some((Some((low, false)), Some((high, false)))),
        _ => None,
    }
}

/// A measurement judged with its probe's conditions and forecast, as the
/// machine (and the replay's fast path) judge it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Judged {
    pub verdict: Verdict,
    pub cause: VerdictCause,
    pub prediction: Option<Prediction>,
}

/// Judge `m` at `now`: the conditions first; then, for a value the success
/// condition passes, the forecast over `trend` (which takes the value).
pub(crate) fn judge(
    m: &Measurement,
    success: Option<&Condition>,
    failure: Option<&Condition>,
    no_data: NoData,
    forecast: Option<(&Forecast, &mut Trend)>,
    now: Timestamp,
) -> Judged {
    let (verdict, cause) = judge_value(m, success, failure, no_data);
    let mut judged = Judged {
        verdict,
        cause,
        prediction: None,
    };
    // The trend is fitted to the values the success condition passes: one
    // it fails is the conditions' to count, and an outlier past the bound
    // would tilt the fit for a whole window after it.
    let (Some((f, trend)), Some(v), VerdictCause::SuccessMatched) = (forecast, m.value, cause)
    else {
        return judged;
    };
    trend.push(now, v, f.window);
    if let Some(s) = success
        && let Some(p) = f.predict(s, trend, now)
        && p.within_horizon()
    {
        judged.verdict = Verdict::Fail;
        judged.cause = VerdictCause::ForecastBreach;
        judged.prediction = Some(p);
    }
    judged
}

#[cfg(test)]
mod tests;
