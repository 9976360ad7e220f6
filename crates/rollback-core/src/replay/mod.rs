//! Replay: run a policy over recorded series on virtual time, and report when
//! and why it would have rolled back.
//!
//! Series come as CSV (`timestamp,probe,value[,baseline]`, one sample a row)
//! or JSON (`{"probes": {"error_rate": [[t, v], …]}}`, where `t` is RFC 3339 or
//! Unix seconds and `v` a number, a numeric string as Prometheus writes them
//! (`"0.5"`, `"NaN"`, `"+Inf"`, `"-Inf"`), or `null` for no data). Rows may
//! come in any order (a newest-first export is fine): each probe's samples
//! are sorted by time once, samples of the same time kept in their order. A
//! probe without a sample within one interval before a measurement has no
//! data at that measurement.
//!
//! A probe judged by `mann_whitney` ([`crate::canary`]) measures every row of
//! its latest time as one measurement's samples: the rows' values are the
//! canary's, their baselines the baseline's (a row may hold either).

mod series;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use series::{Sample, Series};

use crate::condition::judge;
use crate::forecast::{self, Trend};
use crate::machine::{Decision, Event, Machine, Phase, ProbeCounts, Watch};
use crate::{
    Candidate, Error, Measurement, Policy, ProbeRules, Result, RevisionHealth, Timestamp, Verdict,
};

/// Where and how a replay runs.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// When the change happened; default: the first sample.
    pub start: Option<Timestamp>,
    /// Replay until then; default: the last sample.
    pub end: Option<Timestamp>,
}

/// One entry of a replay's timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayEvent {
    /// The virtual time of the decision, on the series' clock.
    pub at: Timestamp,
    /// What the machine decided.
    pub decision: Decision,
}

/// What a replay found.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayReport {
    /// The phase the replay ended in.
    pub phase: Phase,
    /// Every decision but `Measure`, in order.
    pub timeline: Vec<ReplayEvent>,
    /// When a rollback would have started (or, for a dry run or manual
    /// approval, been proposed), if at all.
    pub rollback_at: Option<Timestamp>,
    /// The breach behind that rollback, or what an escalation or a freeze
    /// gave as its reason; `None` when the replay ended without either.
    pub reason: Option<String>,
    /// Measurement rounds replayed.
    pub rounds: u64,
    /// Verdicts per probe: `[pass, fail, inconclusive]`.
    pub verdicts: BTreeMap<String, [u64; 3]>,
}

/// The watched revision in a replay.
pub const REPLAY_REVISION: &str = "replayed";
/// The known-good revision a replay would roll back to.
pub const REPLAY_PREVIOUS: &str = "previous";

/// Replay `policy` over `series` on virtual time. The replay stops at the
/// first decision that ends observation (a rollback, a promotion, an
/// escalation, …) or at the end of the data. The same inputs always give the
/// same report. To replay many windows of one series (a backtest), prepare a
/// [`Replay`] once and [`Replay::run`] it per window.
pub fn run(policy: &Policy, series: &Series, options: &ReplayOptions) -> Result<ReplayReport> {
    Ok(Replay::new(policy, series)?.run(options))
}

/// One judged measurement of a replay, as [`Replay::run_observed`] reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplayMeasurement {
    /// The virtual time of the measurement.
    pub at: Timestamp,
    /// The probe's index in the policy.
    pub probe: usize,
    /// The value measured (the latest sample less than one interval old), if any.
    pub value: Option<f64>,
    /// The baseline beside it, if any.
    pub baseline: Option<f64>,
    /// How the machine judged it.
    pub verdict: Verdict,
}

/// A replay prepared once: the policy validated and each of its probes found
/// in the series. [`Replay::run`] then replays any window of the series
/// without checking again, which is what a backtest of thousands of change
/// points over one series needs.
#[derive(Debug, Clone)]
pub struct Replay<'a> {
    policy: Arc<Policy>,
    rules: Vec<ProbeRules>,
    probes: Vec<&'a [Sample]>,
    first: Timestamp,
    last: Timestamp,
}

impl<'a> Replay<'a> {
    /// Check `policy` ([`Policy::validate`]) and find each of its probes in
    /// `series`; an error names a probe the series lacks.
    pub fn new(policy: &Policy, series: &'a Series) -> Result<Self> {
        Self::shared(Arc::new(policy.clone()), series)
    }

    /// [`Replay::new`] with a policy already shared, without copying it.
    pub fn shared(policy: Arc<Policy>, series: &'a Series) -> Result<Self> {
        policy.validate()?;
        for p in &policy.probes {
            if series.samples(&p.name).is_empty() {
                return Err(Error::invalid(format!(
                    "the series has no samples for the policy's probe {:?} (it has: {})",
                    p.name,
                    series.probes().collect::<Vec<_>>().join(", ")
                )));
            }
        }
        let Some((first, last)) = series.span() else {
            return Err(Error::invalid("the series is empty"));
        };
        let probes = policy
            .probes
            .iter()
            .map(|p| series.samples(&p.name))
            .collect();
        Ok(Replay {
            rules: policy.rules(),
            policy,
            probes,
            first,
            last,
        })
    }

    /// The policy it replays.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// The first and last sample times of the series.
    pub fn span(&self) -> (Timestamp, Timestamp) {
        (self.first, self.last)
    }

    /// Replay one window (see [`run`]).
    pub fn run(&self, options: &ReplayOptions) -> ReplayReport {
        self.replay(options, |_| {})
    }

    /// [`Replay::run`], telling `observe` every judged measurement in order
    /// (for plots of verdicts).
    pub fn run_observed(
        &self,
        options: &ReplayOptions,
        observe: &mut dyn FnMut(&ReplayMeasurement),
    ) -> ReplayReport {
        self.replay(options, observe)
    }

    /// The replay. While the machine observes, rounds whose measurements
    /// all stay within every limit are judged here, with the machine's own
    /// `judge` and effective rules and the machine's counting, and the
    /// counts are handed to the machine in one go ([`Machine::resume`]);
    /// the round that would go past a limit, the end of the bake time and
    /// every other phase go through the machine itself, event by event, so
    /// every decision is the machine's. `tests::fast_path` checks that the
    /// reports equal those of feeding the machine every event.
    fn replay(
        &self,
        options: &ReplayOptions,
        mut observe: impl FnMut(&ReplayMeasurement),
    ) -> ReplayReport {
        let policy = &self.policy;
        let start = options.start.unwrap_or(self.first);
        let end = options.end.unwrap_or(self.last);
        let probes = &self.probes;
        let mut cursors: Vec<usize> = probes
            .iter()
            .map(|s| s.partition_point(|x| x.at < start))
            .collect();
        let staleness = Staleness::of(policy.interval);
        let watch = Watch::new(
            "replay",
            REPLAY_REVISION,
            vec![
                Candidate::new(REPLAY_REVISION, RevisionHealth::Unknown),
                Candidate::new(REPLAY_PREVIOUS, RevisionHealth::Good),
            ],
        );
        let mut machine = Machine::new(policy.clone(), watch, start);
        let mut report = ReplayReport {
            phase: machine.phase().clone(),
            timeline: Vec::new(),
            rollback_at: None,
            reason: None,
            rounds: 0,
            verdicts: BTreeMap::new(),
        };
        let mut counts = vec![[0u64; 3]; probes.len()];
        let mut tentative = vec![ProbeCounts::default(); probes.len()];
        let mut judged = vec![(Verdict::Pass, None, None); probes.len()];
        let mut tentative_trends: Vec<Trend> = Vec::new();
        'run: loop {
            if let Phase::Observing { bake_until } = *machine.phase() {
                let state = machine.state();
                let mut probe_counts = state.counts.clone();
                // The trends of forecasting probes: judged and kept round by
                // round, like the counts.
                let mut trends = state.trends.clone();
                tentative_trends.resize(trends.len(), Trend::default());
                let mut next = state.next_measure_at;
                let mut advanced = false;
                'round: while next <= bake_until && next <= end {
                    let now = next;
                    tentative.copy_from_slice(&probe_counts);
                    for (i, samples) in probes.iter().enumerate() {
                        let rules = &self.rules[i];
                        if let Some(judge) = &rules.mann_whitney {
                            let m = sample_sets(samples, &mut cursors[i], now, staleness);
                            let j = judge.judge_measurement(&m, rules.no_data);
                            if j.critical || !count(&mut tentative[i], rules, j.verdict) {
                                // A critical change or past a limit: the machine judges this round.
                                break 'round;
                            }
                            judged[i] = (j.verdict, m.value, m.baseline);
                            continue;
                        }
                        let m = measurement(samples, &mut cursors[i], now, staleness);
                        let verdict = match (&rules.forecast, tentative_trends.get_mut(i)) {
                            (Some(f), Some(trend)) => {
                                trend.clone_from(&trends[i]);
                                forecast::judge(
                                    &m,
                                    rules.success.as_ref(),
                                    rules.failure.as_ref(),
                                    rules.no_data,
                                    Some((f, trend)),
                                    now,
                                )
                                .verdict
                            }
                            _ => {
                                judge(
                                    &m,
                                    rules.success.as_ref(),
                                    rules.failure.as_ref(),
                                    rules.no_data,
                                )
                                .0
                            }
                        };
                        if !count(&mut tentative[i], rules, verdict) {
                            // Past a limit: the machine judges this round.
                            break 'round;
                        }
                        judged[i] = (verdict, m.value, m.baseline);
                    }
                    std::mem::swap(&mut probe_counts, &mut tentative);
                    for (i, r) in self.rules.iter().enumerate() {
                        if r.forecast.is_some() {
                            std::mem::swap(&mut trends[i], &mut tentative_trends[i]);
                        }
                    }
                    for (i, &(verdict, value, baseline)) in judged.iter().enumerate() {
                        tally(&mut counts[i], verdict);
                        observe(&ReplayMeasurement {
                            at: now,
                            probe: i,
                            value,
                            baseline,
                            verdict,
                        });
                    }
                    report.rounds += 1;
                    next = next.plus(policy.interval);
                    advanced = true;
                }
                if advanced {
                    let mut state = machine.state().clone();
                    state.counts = probe_counts;
                    state.trends = trends;
                    state.next_measure_at = next;
                    machine = Machine::resume(policy.clone(), state)
                        .expect("the state came from a machine of this policy");
                }
            }
            let Some(now) = machine.next_deadline() else {
                break;
            };
            if now > end {
                break;
            }
            let step = machine.handle(now, Event::Tick);
            match step.decision {
                Some(Decision::Measure) => {
                    report.rounds += 1;
                    for (i, samples) in probes.iter().enumerate() {
                        let m = if self.rules[i].mann_whitney.is_some() {
                            sample_sets(samples, &mut cursors[i], now, staleness)
                        } else {
                            measurement(samples, &mut cursors[i], now, staleness)
                        };
                        let (value, baseline) = (m.value, m.baseline);
                        let step = machine.handle(
                            now,
                            Event::Measured {
                                probe: i,
                                measurement: m,
                            },
                        );
                        if let Some((verdict, _)) = step.verdict {
                            tally(&mut counts[i], verdict);
                            observe(&ReplayMeasurement {
                                at: now,
                                probe: i,
                                value,
                                baseline,
                                verdict,
                            });
                        }
                        if let Some(d) = step.decision {
                            record(&mut report, now, d);
                            break 'run;
                        }
                    }
                }
                Some(d) => {
                    record(&mut report, now, d);
                    break;
                }
                None => {}
            }
        }
        report.verdicts = policy
            .probes
            .iter()
            .zip(counts)
            .map(|(p, c)| (p.name.clone(), c))
            .collect();
        report.phase = machine.phase().clone();
        report
    }
}

/// How old a sample may be and still be measured: less than one interval,
/// in milliseconds (as `Timestamp::since` counts them).
#[derive(Debug, Clone, Copy)]
struct Staleness(i64);

impl Staleness {
    fn of(interval: std::time::Duration) -> Self {
        Staleness(i64::try_from(interval.as_millis()).unwrap_or(i64::MAX))
    }
}

/// What a probe measures at `now`: its latest sample at or before `now`, if
/// less than `staleness` old; `cursor` moves forward past `now`.
fn measurement(
    samples: &[Sample],
    cursor: &mut usize,
    now: Timestamp,
    staleness: Staleness,
) -> Measurement {
    while let Some(s) = samples.get(*cursor)
        && s.at <= now
    {
        *cursor += 1;
    }
    // The sample is at or before `now`, so `now.since(at) < interval` is
    // this difference of milliseconds.
    match cursor.checked_sub(1).and_then(|j| samples.get(j)) {
        Some(s) if now.as_millis().saturating_sub(s.at.as_millis()) < staleness.0 => Measurement {
            value: s.value,
            baseline: s.baseline,
            detail: None,
            samples: None,
        },
        _ => Measurement::NO_DATA,
    }
}

/// What a probe judged by `mann_whitney` measures at `now`: every sample
/// of its latest time at or before `now` (if less than `staleness` old),
/// the values as the canary's and the baselines as the baseline's.
fn sample_sets(
    samples: &[Sample],
    cursor: &mut usize,
    now: Timestamp,
    staleness: Staleness,
) -> Measurement {
    let latest = measurement(samples, cursor, now, staleness);
    let Some(last) = cursor.checked_sub(1).and_then(|j| samples.get(j)) else {
        return latest;
    };
    if now.as_millis().saturating_sub(last.at.as_millis()) >= staleness.0 {
        return latest;
    }
    let first = samples[..*cursor].partition_point(|s| s.at < last.at);
    let rows = &samples[first..*cursor];
    Measurement::samples(crate::canary::Samples::new(
        rows.iter().filter_map(|s| s.value).collect(),
        rows.iter().filter_map(|s| s.baseline).collect(),
    ))
}

/// Count a verdict as the observing machine does; `false` when the count
/// goes past one of the probe's limits (the machine then decides).
fn count(c: &mut ProbeCounts, rules: &ProbeRules, verdict: Verdict) -> bool {
    match verdict {
        Verdict::Pass => {
            c.passes += 1;
            c.consecutive_failures = 0;
            c.consecutive_errors = 0;
            true
        }
        Verdict::Fail => {
            c.failures += 1;
            c.consecutive_failures += 1;
            c.consecutive_errors = 0;
            !(rules.failure_limit.is_some_and(|l| c.failures > l)
                || rules
                    .consecutive_failure_limit
                    .is_some_and(|l| c.consecutive_failures > l))
        }
        Verdict::Inconclusive => {
            c.inconclusives += 1;
            c.consecutive_errors = 0;
            c.inconclusives <= rules.inconclusive_limit
        }
        // A replay never has probe errors; let the machine count one.
        Verdict::Error => false,
    }
}

fn tally(c: &mut [u64; 3], verdict: Verdict) {
    match verdict {
        Verdict::Pass => c[0] += 1,
        Verdict::Fail => c[1] += 1,
        Verdict::Inconclusive => c[2] += 1,
        Verdict::Error => {}
    }
}

fn record(report: &mut ReplayReport, at: Timestamp, decision: Decision) {
    match &decision {
        Decision::Rollback { reason, .. }
        | Decision::AwaitApproval { reason, .. }
        | Decision::WouldRollBack { reason, .. } => {
            report.rollback_at = Some(at);
            report.reason = Some(reason.to_string());
        }
        Decision::Escalate { reason } | Decision::Freeze { reason } => {
            report.reason = Some(reason.clone())
        }
        _ => {}
    }
    report.timeline.push(ReplayEvent { at, decision });
}

#[cfg(test)]
mod tests;
