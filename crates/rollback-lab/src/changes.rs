//! Change points: when the changes a backtest judges happened.

use std::path::Path;
use std::time::Duration;

use rollback_core::replay::{Sample, Series};
use rollback_core::{Error, Result, Timestamp};

/// When changes happened.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ChangePoints {
    /// These deploy times (any order; duplicates count once).
    At(Vec<Timestamp>),
    /// A simulated deploy every `period`, from the series' first sample.
    Every(Duration),
    /// A deploy wherever this series of the input changes value, such as
    /// `kube_deployment_status_observed_generation` or a version label's
    /// value: each sample whose value differs from the one before it.
    OnChangeOf(String),
}

impl ChangePoints {
    /// The change times, sorted, within the series' span (a deploy time
    /// before the first sample or after the last one judges nothing).
    pub fn resolve(&self, series: &Series) -> Result<Vec<Timestamp>> {
        let Some((first, last)) = series.span() else {
            return Err(Error::invalid("the series is empty"));
        };
        let mut times = match self {
            ChangePoints::At(times) => times.clone(),
            ChangePoints::Every(period) => {
                if period.is_zero() {
                    return Err(Error::invalid(
                        "a deploy every 0s: give a period of at least 1ms",
                    ));
                }
                let mut times = Vec::new();
                let mut t = first;
                while t <= last {
                    times.push(t);
                    t = t.plus(*period);
                }
                times
            }
            ChangePoints::OnChangeOf(name) => {
                let samples = series.samples(name);
                if samples.is_empty() {
                    return Err(Error::invalid(format!(
                        "change points on changes of {name:?}: the series has no samples of it (it has: {})",
                        series.probes().collect::<Vec<_>>().join(", ")
                    )));
                }
                value_changes(samples)
            }
        };
        times.retain(|t| (first..=last).contains(t));
        times.sort();
        times.dedup();
        Ok(times)
    }
}

/// The times at which a series changes value: each sample whose value
/// differs from its predecessor's (no data and NaN are skipped, so a scrape
/// gap is not a deploy).
pub fn value_changes(samples: &[Sample]) -> Vec<Timestamp> {
    let mut out = Vec::new();
    let mut last: Option<f64> = None;
    for s in samples {
        let Some(v) = s.value.filter(|v| !v.is_nan()) else {
            continue;
        };
        if last.is_some_and(|l| l != v) {
            out.push(s.at);
        }
        last = Some(v);
    }
    out
}

/// Read deploy times from a file: one time a line (RFC 3339 or Unix
/// seconds), or a CSV whose first column is the time (a header line and
/// further columns, such as the revision, are skipped); `#` starts a comment.
pub fn read_change_points(path: &Path) -> Result<Vec<Timestamp>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::invalid(format!("cannot read change points {}", path.display())).with_source(e)
    })?;
    parse_change_points(&text)
        .map_err(|e| Error::invalid(format!("{}: {}", path.display(), e.message())))
}

/// [`read_change_points`] of a text.
pub fn parse_change_points(text: &str) -> Result<Vec<Timestamp>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let first = line
            .split(',')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches('"');
        match Timestamp::parse(first) {
            Some(t) => out.push(t),
            None if out.is_empty() && i == 0 => {} // a header
            None => {
                return Err(Error::invalid(format!(
                    "line {}: {first:?} is neither RFC 3339 nor Unix seconds",
                    i + 1
                )));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_millis(s * 1000)
    }

    fn series(values: &[(i64, Option<f64>)]) -> Series {
        values
            .iter()
            .map(|(s, v)| {
                (
                    "gen",
                    Sample {
                        at: t(*s),
                        value: *v,
                        baseline: None,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn changes_of_a_generation_are_deploys() {
        let s = series(&[
            (0, Some(3.0)),
            (10, Some(3.0)),
            (20, None),
            (30, Some(4.0)),
            (40, Some(f64::NAN)),
            (50, Some(4.0)),
            (60, Some(5.0)),
        ]);
        assert_eq!(
            ChangePoints::OnChangeOf("gen".into()).resolve(&s).unwrap(),
            [t(30), t(60)]
        );
        let e = ChangePoints::OnChangeOf("x".into())
            .resolve(&s)
            .unwrap_err()
            .to_string();
        assert!(e.contains("has: gen"), "{e}");
    }

    #[test]
    fn every_period_and_given_times_within_the_span() {
        let s = series(&[(0, Some(1.0)), (100, Some(1.0))]);
        assert_eq!(
            ChangePoints::Every(Duration::from_secs(30))
                .resolve(&s)
                .unwrap(),
            [t(0), t(30), t(60), t(90)]
        );
        assert_eq!(
            ChangePoints::At(vec![t(50), t(-5), t(10), t(50), t(101)])
                .resolve(&s)
                .unwrap(),
            [t(10), t(50)]
        );
    }

    #[test]
    fn a_file_of_times_with_a_header_and_comments() {
        let text = "time,revision\n# deploys\n1795780800,v1\n2026-11-27T13:00:00Z,v2\n\n";
        assert_eq!(
            parse_change_points(text).unwrap(),
            [
                Timestamp::from_millis(1_795_780_800_000),
                Timestamp::from_millis(1_795_784_400_000)
            ]
        );
        let e = parse_change_points("1795780800\nsoon\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
    }
}
