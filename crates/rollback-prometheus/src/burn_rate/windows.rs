//! The arithmetic of multiwindow, multi-burn-rate alerting (the SRE
//! Workbook, chapter 5), without any network: window pairs, their scaling
//! to a short watch, and the judging of one set of counts.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use rollback_core::time::{duration, format_duration};
use serde::{Deserialize, Serialize};

/// One pair of windows: it fires when the error budget burns faster than
/// `factor` times the sustainable rate over both the long and the short
/// window (the short one makes the alert stop soon after the burn does).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowPair {
    /// The long window.
    #[serde(with = "duration")]
    pub long: Duration,
    /// The short window.
    #[serde(with = "duration")]
    pub short: Duration,
    /// The burn rate both must exceed: 1 spends the budget exactly over
    /// the SLO period, 14.4 spends 2 % of 30 days' budget in one hour.
    pub factor: f64,
}

const fn pair(long_min: u64, short_min: u64, factor: f64) -> WindowPair {
    WindowPair {
        long: Duration::from_secs(long_min * 60),
        short: Duration::from_secs(short_min * 60),
        factor,
    }
}

impl WindowPair {
    /// The Workbook's pairs for a 30-day SLO: 1h and 5m at 14.4 (2 % of
    /// the budget in an hour), 6h and 30m at 6 (5 % in 6 hours), 1d and 2h
    /// at 3 (10 % in a day), 3d and 6h at 1 (10 % in 3 days); sloth's
    /// `google-30d` windows.
    pub const WORKBOOK: [WindowPair; 4] = [
        pair(60, 5, 14.4),
        pair(360, 30, 6.0),
        pair(1440, 120, 3.0),
        pair(4320, 360, 1.0),
    ];

    /// The pair scaled by `ratio`, each window rounded to the second and
    /// at least `min_window`.
    fn scaled(self, ratio: f64, min_window: Duration) -> WindowPair {
        let scale = |d: Duration| {
            Duration::from_secs((d.as_secs_f64() * ratio).round() as u64).max(min_window)
        };
        WindowPair {
            long: scale(self.long),
            short: scale(self.short),
            factor: self.factor,
        }
    }

    /// Check a pair, naming the field under `windows[i]`.
    pub(crate) fn check(&self) -> Result<(), (&'static str, String)> {
        if self.short.is_zero() || self.long.is_zero() {
            return Err(("short", "windows must be longer than 0s".into()));
        }
        if self.short >= self.long {
            return Err((
                "short",
                format!(
                    "{} is not shorter than the long window {}",
                    format_duration(self.short),
                    format_duration(self.long)
                ),
            ));
        }
        if !(self.factor.is_finite() && self.factor > 0.0) {
            return Err((
                "factor",
                format!("{} is not a burn rate above 0", self.factor),
            ));
        }
        Ok(())
    }
}

impl fmt::Display for WindowPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} at {}x",
            promql_duration(self.long),
            promql_duration(self.short),
            self.factor
        )
    }
}

/// A window as a PromQL range: `1h`, `5m`, `90s`, `3d`.
pub fn promql_duration(d: Duration) -> String {
    let s = d.as_secs().max(1);
    for (unit, n) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if s.is_multiple_of(n) {
            return format!("{}{unit}", s / n);
        }
    }
    format!("{s}s")
}

/// The pairs for a watch of `watch`: when it is shorter than the longest
/// long window, every window is scaled by `watch / longest` (the ratios
/// between windows, and the factors, stay), as pyrra scales its windows from
/// their 28-day base to the SLO's period; a scaled window is rounded to the
/// second and never shorter than `min_window`.
pub fn scale(
    pairs: &[WindowPair],
    watch: Option<Duration>,
    min_window: Duration,
) -> Vec<WindowPair> {
    let longest = pairs.iter().map(|p| p.long).max().unwrap_or_default();
    match watch {
        Some(w) if !longest.is_zero() && w < longest => {
            let ratio = w.as_secs_f64() / longest.as_secs_f64();
            pairs.iter().map(|p| p.scaled(ratio, min_window)).collect()
        }
        _ => pairs.to_vec(),
    }
}

/// What one window's queries returned: `None` for an empty result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowCount {
    /// Bad requests (or events) in the window.
    pub bad: f64,
    /// All requests in the window; `None` when the query returned nothing.
    pub total: Option<f64>,
}

/// Why a pair was not judged.
#[derive(Debug, Clone, PartialEq)]
pub enum NotJudged {
    /// A window's total query returned nothing.
    NoData(Duration),
    /// A window's value was NaN or infinite.
    NotFinite(Duration),
    /// No requests in a window.
    NoTraffic(Duration),
    /// Fewer requests in the long window than the floor.
    TooLittleTraffic {
        /// The long window.
        window: Duration,
        /// Its requests.
        requests: f64,
        /// The floor.
        floor: f64,
    },
}

impl fmt::Display for NotJudged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotJudged::NoData(w) => write!(f, "no data over {}", promql_duration(*w)),
            NotJudged::NotFinite(w) => write!(f, "NaN or infinite over {}", promql_duration(*w)),
            NotJudged::NoTraffic(w) => write!(f, "no traffic over {}", promql_duration(*w)),
            NotJudged::TooLittleTraffic {
                window,
                requests,
                floor,
            } => write!(
                f,
                "{} requests over {}, under the floor of {}",
                self::requests(*requests),
                promql_duration(*window),
                self::requests(*floor)
            ),
        }
    }
}

/// The burn rates of one judged pair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Burn {
    /// Over the long window.
    pub long: f64,
    /// Over the short window.
    pub short: f64,
}

/// The judging of every pair from one set of counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// Each pair and its burn rates, or why it was not judged.
    pub pairs: Vec<(WindowPair, Result<Burn, NotJudged>)>,
    /// The error budget (1 − objective), as a ratio.
    pub budget: f64,
    /// The share of the budget left over the longest long window, if known
    /// (negative when overspent).
    pub budget_left: Option<(f64, Duration)>,
}

impl Assessment {
    /// The measurement: the highest, over the judged pairs, of the smaller
    /// of the pair's two burn rates divided by its factor. Above 1 a pair
    /// fires (both its windows burn faster than its factor); NaN when no
    /// pair could be judged.
    pub fn value(&self) -> f64 {
        self.judged()
            .map(|(p, b)| b.long.min(b.short) / p.factor)
            .fold(f64::NAN, f64::max)
    }

    fn judged(&self) -> impl Iterator<Item = (&WindowPair, &Burn)> {
        self.pairs
            .iter()
            .filter_map(|(p, r)| r.as_ref().ok().map(|b| (p, b)))
    }

    /// The pair behind [`Assessment::value`], with its burn rates.
    pub fn worst(&self) -> Option<(&WindowPair, &Burn)> {
        self.judged().max_by(|(p, a), (q, b)| {
            (a.long.min(a.short) / p.factor).total_cmp(&(b.long.min(b.short) / q.factor))
        })
    }

    /// Whether a pair fires.
    pub fn fires(&self) -> bool {
        self.value() > 1.0
    }
}

impl fmt::Display for Assessment {
    /// `pair 1h/5m at 14.4x fires: burn rates 20.50 over 1h and 31.20 over
    /// 5m; error budget left 93.2 % over 3d`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.worst() {
            Some((p, b)) => {
                let verb = if self.fires() {
                    format!("pair {p} fires")
                } else {
                    format!("no pair fires; nearest {p}")
                };
                write!(
                    f,
                    "{verb}: burn rates {} over {} and {} over {}",
                    num(b.long),
                    promql_duration(p.long),
                    num(b.short),
                    promql_duration(p.short)
                )?;
            }
            None => f.write_str("no pair could be judged")?,
        }
        match self.budget_left {
            Some((left, w)) => write!(
                f,
                "; error budget left {:.1} % over {}",
                left * 100.0,
                promql_duration(w)
            )?,
            None => f.write_str("; error budget left unknown")?,
        }
        let skipped: Vec<String> = self
            .pairs
            .iter()
            .filter_map(|(p, r)| r.as_ref().err().map(|why| format!("{p} ({why})")))
            .collect();
        if !skipped.is_empty() {
            write!(f, "; not judged: {}", skipped.join(", "))?;
        }
        Ok(())
    }
}

/// A burn rate for a detail: two decimals, or three significant digits when small.
fn num(v: f64) -> String {
    if v != 0.0 && v.abs() < 0.01 {
        format!("{v:.3e}")
    } else {
        format!("{v:.2}")
    }
}

/// A number of requests: whole when it is (increase() extrapolates).
fn requests(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Judge every pair from the counts of each window; `budget` is
/// 1 − objective, `floor` the fewest requests a long window needs.
pub fn assess(
    pairs: &[WindowPair],
    budget: f64,
    floor: f64,
    counts: &BTreeMap<Duration, WindowCount>,
) -> Assessment {
    let get = |w: Duration| -> Result<(f64, f64), NotJudged> {
        let c = counts.get(&w).copied().ok_or(NotJudged::NoData(w))?;
        let total = c.total.ok_or(NotJudged::NoData(w))?;
        if !(c.bad.is_finite() && total.is_finite()) {
            return Err(NotJudged::NotFinite(w));
        }
        if total <= 0.0 {
            return Err(NotJudged::NoTraffic(w));
        }
        Ok((c.bad, total))
    };
    let judged = pairs
        .iter()
        .map(|p| {
            let burn = (|| {
                let (long_bad, long_total) = get(p.long)?;
                if long_total < floor {
                    return Err(NotJudged::TooLittleTraffic {
                        window: p.long,
                        requests: long_total,
                        floor,
                    });
                }
                let (short_bad, short_total) = get(p.short)?;
                Ok(Burn {
                    long: long_bad / long_total / budget,
                    short: short_bad / short_total / budget,
                })
            })();
            (*p, burn)
        })
        .collect();
    let longest = pairs.iter().map(|p| p.long).max();
    let budget_left = longest.and_then(|w| {
        let (bad, total) = get(w).ok()?;
        Some((1.0 - bad / total / budget, w))
    });
    Assessment {
        pairs: judged,
        budget,
        budget_left,
    }
}

#[cfg(test)]
mod tests;
