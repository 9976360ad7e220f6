//! Backtest: the machine run from every change point over its bake window,
//! and its would-be rollbacks held against labelled incidents.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rollback_core::machine::PhaseKind;
use rollback_core::replay::{Replay, ReplayMeasurement, ReplayOptions, ReplayReport, Series};
use rollback_core::{Policy, Result, Timestamp};

use crate::changes::ChangePoints;
use crate::incidents::Incident;
use crate::report::{rfc3339, rfc3339_option, secs};

/// What a backtest judges, and against what.
#[derive(Debug, Clone, PartialEq)]
pub struct BacktestOptions {
    /// When the changes happened.
    pub changes: ChangePoints,
    /// The labelled incidents; none: the report counts would-be rollbacks
    /// only, without detections, misses or false rollbacks.
    pub incidents: Vec<Incident>,
    /// How long after its change point each change is judged; default the
    /// policy's `initial_delay` plus `bake_time` (so a healthy change is
    /// promoted). A change is judged until the next change point at most:
    /// the next deploy replaces the revision judged. A measurement at the
    /// very time of the next change counts for both.
    pub watch_for: Option<Duration>,
}

impl BacktestOptions {
    /// Judge these change points, without incidents.
    pub fn new(changes: ChangePoints) -> Self {
        BacktestOptions {
            changes,
            incidents: Vec::new(),
            watch_for: None,
        }
    }

    /// Hold the would-be rollbacks against these incidents.
    pub fn incidents(mut self, incidents: Vec<Incident>) -> Self {
        self.incidents = incidents;
        self
    }
}

/// How the judging of one change ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ChangeOutcome {
    /// A rollback would have started (or, under `dry_run` or
    /// `approval: manual`, been proposed).
    Rollback,
    /// Healthy through the bake time: promoted.
    Promotion,
    /// Handed to humans (inconclusive or probe errors past their limit).
    Escalation,
    /// Breached but marked irreversible.
    Freeze,
    /// Still observing when the next change came or the data ended.
    Unfinished,
}

impl ChangeOutcome {
    fn of(report: &ReplayReport) -> Self {
        if report.rollback_at.is_some() {
            return ChangeOutcome::Rollback;
        }
        match report.phase.kind() {
            PhaseKind::Promoted => ChangeOutcome::Promotion,
            PhaseKind::Escalated => ChangeOutcome::Escalation,
            PhaseKind::Frozen => ChangeOutcome::Freeze,
            _ => ChangeOutcome::Unfinished,
        }
    }
}

/// The judging of one change point.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ChangeRun {
    /// The change point.
    #[serde(serialize_with = "rfc3339")]
    pub at: Timestamp,
    /// The end of its judging window (inclusive).
    #[serde(serialize_with = "rfc3339")]
    pub until: Timestamp,
    /// How it ended.
    pub outcome: ChangeOutcome,
    /// When the would-be rollback started, if one did.
    #[serde(serialize_with = "rfc3339_option")]
    pub rollback_at: Option<Timestamp>,
    /// The breach behind the rollback, or the reason of an escalation or freeze.
    pub reason: Option<String>,
    /// Measurement rounds judged.
    pub rounds: u64,
    /// The index (in [`BacktestReport::incidents`]) of the incident this
    /// rollback falls in, if any.
    pub incident: Option<usize>,
    /// A rollback outside every incident, when incidents were given.
    pub false_rollback: bool,
}

/// One labelled incident, and whether the policy caught it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct IncidentResult {
    /// The incident.
    #[serde(flatten)]
    pub incident: Incident,
    /// The first would-be rollback within it.
    #[serde(serialize_with = "rfc3339_option")]
    pub detected_at: Option<Timestamp>,
    /// From its start to that rollback, in seconds.
    pub delay_seconds: Option<f64>,
}

/// The distribution of detection delays, in seconds (nearest-rank percentiles).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct DelayStats {
    /// The shortest.
    pub min: f64,
    /// The median (the ⌈n/2⌉-th shortest).
    pub median: f64,
    /// The 90th percentile (the ⌈0.9 n⌉-th shortest).
    pub p90: f64,
    /// The longest.
    pub max: f64,
}

impl DelayStats {
    /// Of these delays; `None` when there are none.
    pub fn of(delays: &[f64]) -> Option<Self> {
        if delays.is_empty() {
            return None;
        }
        let mut d = delays.to_vec();
        d.sort_by(f64::total_cmp);
        let rank = |p: f64| d[((p * d.len() as f64).ceil() as usize).clamp(1, d.len()) - 1];
        Some(DelayStats {
            min: d[0],
            median: rank(0.5),
            p90: rank(0.9),
            max: d[d.len() - 1],
        })
    }
}

/// The counts of a backtest.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct BacktestSummary {
    /// Change points judged.
    pub changes: usize,
    /// Would-be rollbacks.
    pub rollbacks: usize,
    /// Promotions.
    pub promotions: usize,
    /// Escalations to humans.
    pub escalations: usize,
    /// Freezes of irreversible changes.
    pub freezes: usize,
    /// Changes still observed when the next one came or the data ended.
    pub unfinished: usize,
    /// Labelled incidents.
    pub incidents: usize,
    /// Incidents with a rollback within them.
    pub detections: usize,
    /// Incidents without one.
    pub misses: usize,
    /// Rollbacks outside every incident (counted only when incidents are given).
    pub false_rollbacks: usize,
    /// Detection delays; `None` without detections.
    pub delay: Option<DelayStats>,
}

/// What a backtest found. The same inputs give the same report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BacktestReport {
    /// The counts.
    pub summary: BacktestSummary,
    /// Every change point, in time order.
    pub changes: Vec<ChangeRun>,
    /// Every incident, in start order.
    pub incidents: Vec<IncidentResult>,
}

impl BacktestReport {
    /// The report as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a report serializes")
    }

    /// The would-be rollbacks.
    pub fn rollbacks(&self) -> impl Iterator<Item = &ChangeRun> {
        self.changes
            .iter()
            .filter(|c| c.outcome == ChangeOutcome::Rollback)
    }
}

/// Backtest `policy` over `series`: judge every change point of `options`
/// with the decision machine, as [`rollback_core::replay`] does one, and
/// hold the would-be rollbacks against the incidents.
///
/// Each change is judged on the recorded history alone: a would-be rollback
/// does not change the metrics the next change is judged on.
pub fn backtest(
    policy: &Policy,
    series: &Series,
    options: &BacktestOptions,
) -> Result<BacktestReport> {
    let replay = Replay::new(policy, series)?;
    let changes = options.changes.resolve(series)?;
    Ok(run(&replay, &changes, options, None))
}

/// The backtest on a prepared replay and resolved change points, telling
/// `observe` (if any) every judged measurement.
pub(crate) fn run(
    replay: &Replay<'_>,
    changes: &[Timestamp],
    options: &BacktestOptions,
    mut observe: Option<&mut dyn FnMut(&ReplayMeasurement)>,
) -> BacktestReport {
    let policy: &Arc<Policy> = replay.policy();
    let watch_for = options
        .watch_for
        .unwrap_or(policy.initial_delay + policy.bake_time);
    let (_, last) = replay.span();
    let incidents = &options.incidents;
    let mut runs = Vec::with_capacity(changes.len());
    let mut summary = BacktestSummary {
        changes: changes.len(),
        incidents: incidents.len(),
        ..BacktestSummary::default()
    };
    let mut detected: Vec<Option<Timestamp>> = vec![None; incidents.len()];
    for (i, &at) in changes.iter().enumerate() {
        let mut until = at.plus(watch_for).min(last);
        if let Some(&next) = changes.get(i + 1) {
            until = until.min(next);
        }
        let window = ReplayOptions {
            start: Some(at),
            end: Some(until),
        };
        let report = match observe.as_deref_mut() {
            Some(observe) => replay.run_observed(&window, observe),
            None => replay.run(&window),
        };
        let outcome = ChangeOutcome::of(&report);
        match outcome {
            ChangeOutcome::Rollback => summary.rollbacks += 1,
            ChangeOutcome::Promotion => summary.promotions += 1,
            ChangeOutcome::Escalation => summary.escalations += 1,
            ChangeOutcome::Freeze => summary.freezes += 1,
            ChangeOutcome::Unfinished => summary.unfinished += 1,
        }
        let incident = report
            .rollback_at
            .and_then(|t| incidents.iter().position(|inc| inc.contains(t)));
        if let (Some(k), Some(t)) = (incident, report.rollback_at) {
            detected[k] = Some(detected[k].map_or(t, |d| d.min(t)));
        }
        let false_rollback =
            !incidents.is_empty() && report.rollback_at.is_some() && incident.is_none();
        summary.false_rollbacks += usize::from(false_rollback);
        runs.push(ChangeRun {
            at,
            until,
            outcome,
            rollback_at: report.rollback_at,
            reason: report.reason,
            rounds: report.rounds,
            incident,
            false_rollback,
        });
    }
    let results: Vec<IncidentResult> = incidents
        .iter()
        .zip(detected)
        .map(|(inc, d)| IncidentResult {
            incident: inc.clone(),
            detected_at: d,
            delay_seconds: d.map(|t| t.since(inc.start).as_secs_f64()),
        })
        .collect();
    let delays: Vec<f64> = results.iter().filter_map(|r| r.delay_seconds).collect();
    summary.detections = delays.len();
    summary.misses = incidents.len() - delays.len();
    summary.delay = DelayStats::of(&delays);
    BacktestReport {
        summary,
        changes: runs,
        incidents: results,
    }
}

impl fmt::Display for BacktestSummary {
    /// Two or three lines: the outcomes, then the incidents and delays.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} changes: {} would-be rollbacks, {} promotions, {} escalations, {} freezes, {} unfinished",
            self.changes,
            self.rollbacks,
            self.promotions,
            self.escalations,
            self.freezes,
            self.unfinished
        )?;
        if self.incidents > 0 {
            write!(
                f,
                "\n{} incidents: {} detected, {} missed; {} false rollbacks",
                self.incidents, self.detections, self.misses, self.false_rollbacks
            )?;
            if let Some(d) = self.delay {
                write!(
                    f,
                    "\ndetection delay: min {}, median {}, p90 {}, max {}",
                    secs(d.min),
                    secs(d.median),
                    secs(d.p90),
                    secs(d.max)
                )?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for BacktestReport {
    /// The summary, every would-be rollback (with the incident it detects
    /// or `false rollback`), and every missed incident.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.summary)?;
        let mut rollbacks = self.rollbacks().peekable();
        if rollbacks.peek().is_some() {
            writeln!(f, "would-be rollbacks:")?;
        }
        for r in rollbacks {
            let at = r.rollback_at.expect("a rollback has its time");
            let verdict = match r.incident {
                Some(k) => {
                    let inc = &self.incidents[k].incident;
                    format!(
                        "detects {} after {}",
                        inc.name
                            .clone()
                            .unwrap_or_else(|| format!("incident {}", inc.start)),
                        secs(at.since(inc.start).as_secs_f64())
                    )
                }
                None if r.false_rollback => "false rollback".to_owned(),
                None => "rollback".to_owned(),
            };
            writeln!(
                f,
                "  {at}  change {} ({} after): {verdict}: {}",
                r.at,
                secs(at.since(r.at).as_secs_f64()),
                r.reason.as_deref().unwrap_or("")
            )?;
        }
        let missed: Vec<&IncidentResult> = self
            .incidents
            .iter()
            .filter(|i| i.detected_at.is_none())
            .collect();
        if !missed.is_empty() {
            writeln!(f, "missed incidents:")?;
        }
        for m in missed {
            writeln!(
                f,
                "  {} {} to {}",
                m.incident.name.as_deref().unwrap_or("incident"),
                m.incident.start,
                m.incident.end
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rollback_core::replay::Sample;

    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_millis(1_795_780_800_000 + s * 1000)
    }

    #[test]
    fn nearest_rank_delays() {
        let d = DelayStats::of(&[30.0, 10.0, 20.0, 40.0]).unwrap();
        assert_eq!((d.min, d.median, d.p90, d.max), (10.0, 20.0, 40.0, 40.0));
        assert_eq!(DelayStats::of(&[]), None);
        let d = DelayStats::of(&(1..=10).map(f64::from).collect::<Vec<_>>()).unwrap();
        assert_eq!((d.median, d.p90), (5.0, 9.0));
    }

    /// Three deploys an hour apart; the second is bad from 20 minutes in,
    /// the third has a short blip the policy catches without an incident.
    #[test]
    fn detections_misses_false_rollbacks_and_delays() {
        let mut series = Series::new();
        for s in (0..3 * 3600).step_by(10) {
            let bad = (4800..5400).contains(&s) || (7300..7340).contains(&s);
            series.push(
                "error_rate",
                Sample {
                    at: t(s),
                    value: Some(if bad { 0.2 } else { 0.001 }),
                    baseline: None,
                },
            );
        }
        let policy = Policy::from_yaml(
            "interval: 10s\nbake_time: 1h\nconsecutive_failure_limit: 2\nprobes: [{name: error_rate, success: '< 0.05'}]",
        )
        .unwrap();
        let incidents = vec![
            Incident {
                start: t(4800),
                end: t(5400),
                name: Some("INC-1".into()),
            },
            Incident {
                start: t(9000),
                end: t(9500),
                name: Some("INC-2".into()),
            },
        ];
        let options = BacktestOptions::new(ChangePoints::Every(Duration::from_secs(3600)))
            .incidents(incidents);
        let report = backtest(&policy, &series, &options).unwrap();
        let s = report.summary;
        assert_eq!((s.changes, s.rollbacks, s.promotions), (3, 2, 1));
        assert_eq!((s.detections, s.misses, s.false_rollbacks), (1, 1, 1));
        assert_eq!(report.incidents[0].detected_at, Some(t(4820)));
        assert_eq!(s.delay.unwrap().median, 20.0);
        assert_eq!(report.changes[2].rollback_at, Some(t(7320)));
        assert!(report.changes[2].false_rollback);
        let text = report.to_string();
        assert!(text.contains("detects INC-1 after 20s"), "{text}");
        assert!(text.contains("false rollback"), "{text}");
        assert!(text.contains("missed incidents:\n  INC-2"), "{text}");
        assert_eq!(report.to_json()["summary"]["false_rollbacks"], 1);
        assert_eq!(
            report.to_json()["changes"][1]["rollback_at"],
            "2026-11-27T13:20:20.000Z"
        );
        assert_eq!(backtest(&policy, &series, &options).unwrap(), report);
    }
}
