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

mod series;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use series::{Sample, Series};

use crate::machine::{Decision, Event, Machine, Phase, Watch};
use crate::{Candidate, Error, Measurement, Policy, Result, RevisionHealth, Timestamp, Verdict};

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
/// same report.
pub fn run(policy: &Policy, series: &Series, options: &ReplayOptions) -> Result<ReplayReport> {
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
    let start = options.start.unwrap_or(first);
    let end = options.end.unwrap_or(last);
    let probes: Vec<&[Sample]> = policy
        .probes
        .iter()
        .map(|p| series.samples(&p.name))
        .collect();
    let mut cursors = vec![0usize; probes.len()];
    let staleness = policy.interval;
    let watch = Watch::new(
        "replay",
        REPLAY_REVISION,
        vec![
            Candidate::new(REPLAY_REVISION, RevisionHealth::Unknown),
            Candidate::new(REPLAY_PREVIOUS, RevisionHealth::Good),
        ],
    );
    let mut machine = Machine::new(Arc::new(policy.clone()), watch, start);
    let mut report = ReplayReport {
        phase: machine.phase().clone(),
        timeline: Vec::new(),
        rollback_at: None,
        reason: None,
        rounds: 0,
        verdicts: policy
            .probes
            .iter()
            .map(|p| (p.name.clone(), [0; 3]))
            .collect(),
    };
    let mut counts = vec![[0u64; 3]; probes.len()];
    'run: while let Some(now) = machine.next_deadline() {
        if now > end {
            break;
        }
        let step = machine.handle(now, Event::Tick);
        match step.decision {
            Some(Decision::Measure) => {
                report.rounds += 1;
                for (i, samples) in probes.iter().enumerate() {
                    let c = &mut cursors[i];
                    while *c < samples.len() && samples[*c].at <= now {
                        *c += 1;
                    }
                    let m = match c.checked_sub(1).map(|j| samples[j]) {
                        Some(s) if now.since(s.at) < staleness => Measurement {
                            value: s.value,
                            baseline: s.baseline,
                            detail: None,
                        },
                        _ => Measurement::NO_DATA,
                    };
                    let step = machine.handle(
                        now,
                        Event::Measured {
                            probe: i,
                            measurement: m,
                        },
                    );
                    match step.verdict {
                        Some((Verdict::Pass, _)) => counts[i][0] += 1,
                        Some((Verdict::Fail, _)) => counts[i][1] += 1,
                        Some((Verdict::Inconclusive, _)) => counts[i][2] += 1,
                        _ => {}
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
    for (name, c) in policy.probes.iter().zip(counts) {
        report.verdicts.insert(name.name.clone(), c);
    }
    report.phase = machine.phase().clone();
    Ok(report)
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
