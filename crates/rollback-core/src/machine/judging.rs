//! Measurements and the judging periods: counting verdicts against each
//! probe's limits, and the end of the bake time or of the verification.

use super::{Breach, Decision, Ignored, Limit, Machine, Phase, Step};
use crate::condition::{Verdict, VerdictCause};
use crate::forecast::judge;
use crate::{Actor, Measurement, RevisionHealth, Timestamp};

impl Machine {
    fn advance_schedule(&mut self, now: Timestamp) {
        let interval = self.policy.interval;
        let mut next = self.state.next_measure_at.plus(interval);
        if next <= now {
            // The driver was late: skip the missed slots instead of bursting.
            let behind = now.since(next).as_millis() / interval.as_millis().max(1) + 1;
            next = next.plus(interval.saturating_mul(u32::try_from(behind).unwrap_or(u32::MAX)));
        }
        self.state.next_measure_at = next;
    }

    pub(super) fn on_tick(&mut self, now: Timestamp) -> Step {
        let end = match &self.state.phase {
            Phase::Observing { bake_until } => *bake_until,
            Phase::Verifying { until, .. } => *until,
            _ => return Step::NOTHING,
        };
        if self.state.next_measure_at <= end && now >= self.state.next_measure_at {
            self.advance_schedule(now);
            return Step {
                decision: Some(Decision::Measure),
                ..Step::NOTHING
            };
        }
        if now < end {
            return Step::NOTHING;
        }
        // The period is over and every measurement it scheduled was asked for.
        let unproven = self.state.counts.iter().position(|c| c.passes == 0);
        match (&self.state.phase, unproven) {
            (Phase::Observing { .. }, None) => {
                let revision = self.state.watch.revision.clone();
                self.mark(&revision, RevisionHealth::Good);
                let actor = Actor::engine();
                self.step(
                    Phase::Promoted {
                        at: now,
                        by: actor.clone(),
                    },
                    Decision::Promote { revision, actor },
                )
            }
            (Phase::Observing { .. }, Some(i)) => {
                let reason = format!(
                    "bake time ended without a single passing measurement of probe {}; not promoting a revision nothing vouched for",
                    self.policy.probes[i].name
                );
                self.escalate(now, reason)
            }
            (Phase::Verifying { restored, .. }, None) => {
                let restored = restored.clone();
                self.mark(&restored, RevisionHealth::Good);
                self.step(
                    Phase::RolledBack {
                        to: restored.clone(),
                        at: now,
                    },
                    Decision::Complete {
                        restored,
                        verified: true,
                    },
                )
            }
            (Phase::Verifying { restored, .. }, Some(i)) => {
                let reason = format!(
                    "verification of restored revision {restored} ended without a single passing measurement of probe {}",
                    self.policy.probes[i].name
                );
                self.escalate(now, reason)
            }
            _ => Step::NOTHING,
        }
    }

    pub(super) fn on_measurement(
        &mut self,
        now: Timestamp,
        probe: usize,
        m: Option<Measurement>,
    ) -> Step {
        let verifying = match self.state.phase {
            Phase::Observing { .. } => false,
            Phase::Verifying { .. } => true,
            ref other => {
                return Step {
                    ignored: Some(Ignored::NotJudging(other.kind())),
                    ..Step::NOTHING
                };
            }
        };
        let (Some(rules), Some(counts)) = (
            self.shared.rules.get(probe),
            self.state.counts.get_mut(probe),
        ) else {
            return Step::NOTHING;
        };
        let forecast = rules
            .forecast
            .as_ref()
            .zip(self.state.trends.get_mut(probe));
        let mut comparison = None;
        let (verdict, cause, prediction) = match &m {
            Some(m) if rules.mann_whitney.is_some() => {
                let j = rules
                    .mann_whitney
                    .as_ref()
                    .map(|judge| judge.judge_measurement(m, rules.no_data))
                    .expect("checked by the guard");
                comparison = Some(j);
                (j.verdict, Some(j.cause), None)
            }
            Some(m) => {
                let j = judge(
                    m,
                    rules.success.as_ref(),
                    rules.failure.as_ref(),
                    rules.no_data,
                    forecast,
                    now,
                );
                (j.verdict, Some(j.cause), j.prediction)
            }
            None => (Verdict::Error, None, None),
        };
        let mut exceeded = None;
        match verdict {
            Verdict::Pass => {
                counts.passes += 1;
                counts.consecutive_failures = 0;
                counts.consecutive_errors = 0;
            }
            Verdict::Fail => {
                counts.failures += 1;
                counts.consecutive_failures += 1;
                counts.consecutive_errors = 0;
                if cause.is_some_and(VerdictCause::is_critical) {
                    exceeded = Some((Limit::CriticalEffect, 0, counts.failures));
                } else if let Some(l) = rules.failure_limit.filter(|l| counts.failures > *l) {
                    exceeded = Some((Limit::FailureLimit, l, counts.failures));
                } else if let Some(l) = rules
                    .consecutive_failure_limit
                    .filter(|l| counts.consecutive_failures > *l)
                {
                    exceeded = Some((
                        Limit::ConsecutiveFailureLimit,
                        l,
                        counts.consecutive_failures,
                    ));
                }
            }
            Verdict::Inconclusive => {
                counts.inconclusives += 1;
                counts.consecutive_errors = 0;
                if counts.inconclusives > rules.inconclusive_limit {
                    exceeded = Some((
                        Limit::InconclusiveLimit,
                        rules.inconclusive_limit,
                        counts.inconclusives,
                    ));
                }
            }
            Verdict::Error => {
                counts.consecutive_errors += 1;
                if counts.consecutive_errors > rules.consecutive_error_limit {
                    exceeded = Some((
                        Limit::ConsecutiveErrorLimit,
                        rules.consecutive_error_limit,
                        counts.consecutive_errors,
                    ));
                }
            }
        }
        let Some((limit, allowed, count)) = exceeded else {
            return Step {
                verdict: Some((verdict, cause)),
                prediction,
                comparison,
                ..Step::NOTHING
            };
        };
        let breach = Breach::Probe {
            probe: self.policy.probes[probe].name.clone(),
            limit,
            allowed,
            count,
            value: m.as_ref().and_then(|m| m.value),
            verdict_cause: cause,
            conditions: rules.describe(),
        };
        let mut step = match (limit, verifying) {
            (
                Limit::FailureLimit | Limit::ConsecutiveFailureLimit | Limit::CriticalEffect,
                false,
            ) => self.on_breach(now, breach),
            (_, true) => {
                let restored = self.judged_revision().clone();
                self.mark(&restored, RevisionHealth::Bad);
                self.escalate(
                    now,
                    format!("verification of restored revision {restored} failed: {breach}"),
                )
            }
            (_, false) => {
                let reason = format!(
                    "{breach}; humans must judge revision {}",
                    self.state.watch.revision
                );
                self.state.breach = Some(Box::new(breach));
                self.escalate(now, reason)
            }
        };
        step.verdict = Some((verdict, cause));
        step.prediction = prediction;
        step.comparison = comparison;
        step
    }
}
