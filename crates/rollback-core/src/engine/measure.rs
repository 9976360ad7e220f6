//! One round of measurements: every probe at once, fed to the machine in
//! policy order, each audited.

use std::future::{Future, poll_fn};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use super::run::WatchRun;
use crate::audit::AuditEntry;
use crate::machine::{Event, Step};
use crate::{Actor, Error, HealthProbe, Measurement, ProbeContext, Result};

impl WatchRun {
    /// Measure every probe concurrently; feed the results in policy order.
    /// Returns the first step that decided or changed phase: the rest of
    /// the round is recorded but no longer judged.
    pub(super) async fn measure(&mut self) -> Option<(Step, Actor)> {
        let ctx = ProbeContext::new(
            self.machine.state().watch.target.clone(),
            self.machine.judged_revision().clone(),
            self.now(),
        );
        let due_at = self.due_at.take();
        let timeout = self.spec.policy.interval.max(Duration::from_millis(1));
        let results = measure_all(&self.spec.probes, &ctx, timeout).await;
        for (i, mut result) in results.into_iter().enumerate() {
            let name = self.spec.policy.probes[i].name.clone();
            let event = match &mut result {
                // The machine judges numbers; the words go to the audit log.
                Ok(m) => Event::Measured {
                    probe: i,
                    measurement: Measurement {
                        value: m.value,
                        baseline: m.baseline,
                        detail: None,
                        samples: m.samples.take(),
                    },
                },
                Err(_) => Event::ProbeError { probe: i },
            };
            let step = self.feed(event);
            let entry = match result {
                Ok(m) => AuditEntry::Measured {
                    probe: name,
                    judged: ctx.revision.clone(),
                    value: m.value,
                    baseline: m.baseline,
                    verdict: step.verdict.map(|v| v.0),
                    cause: step.verdict.and_then(|v| v.1),
                    against: step.verdict.map(|_| self.machine.conditions()[i].clone()),
                    detail: {
                        let judged = step
                            .prediction
                            .as_ref()
                            .map(ToString::to_string)
                            .or_else(|| step.comparison.as_ref().map(ToString::to_string));
                        match (m.detail, judged) {
                            (d, None) => d,
                            (None, Some(p)) => Some(p),
                            (Some(d), Some(p)) => Some(format!("{d}; {p}")),
                        }
                    },
                    due_at,
                },
                Err(e) => AuditEntry::ProbeFailed {
                    probe: name,
                    judged: ctx.revision.clone(),
                    error: e.full_message(),
                },
            };
            self.audit(Actor::engine(), entry).await;
            if step.decision.is_some() || step.transition.is_some() {
                return Some((step, Actor::engine()));
            }
        }
        None
    }
}

type Measuring<'a> = Pin<Box<dyn Future<Output = Result<Measurement>> + Send + 'a>>;

/// Every probe's measurement, in policy order, the probes polled together
/// in the watch's own task. One that has not answered within `timeout`, or
/// that panics, has an error for its measurement.
///
/// A task for each probe (as before) cost a spawn, a trip through the
/// runtime's queue and a timer entry each measurement: with 10,000 targets
/// falling due together in `serve`, that was a part of each step's delay.
async fn measure_all(
    probes: &[Arc<dyn HealthProbe>],
    ctx: &ProbeContext,
    timeout: Duration,
) -> Vec<Result<Measurement>> {
    let mut pending: Vec<Option<Measuring<'_>>> =
        probes.iter().map(|p| Some(p.measure(ctx))).collect();
    let mut results: Vec<Option<Result<Measurement>>> = probes.iter().map(|_| None).collect();
    let mut deadline = pin!(tokio::time::sleep(timeout));
    poll_fn(|cx| {
        let mut waiting = false;
        for (i, slot) in pending.iter_mut().enumerate() {
            let Some(measuring) = slot else { continue };
            match catch_unwind(AssertUnwindSafe(|| measuring.as_mut().poll(cx))) {
                Ok(Poll::Pending) => waiting = true,
                Ok(Poll::Ready(r)) => {
                    results[i] = Some(r);
                    *slot = None;
                }
                Err(panic) => {
                    let why = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "no message".to_owned());
                    tracing::error!(probe = probes[i].name(), "the probe panicked: {why}");
                    results[i] = Some(Err(Error::transient(format!(
                        "probe {} panicked: {why}",
                        probes[i].name()
                    ))));
                    *slot = None;
                }
            }
        }
        if !waiting {
            return Poll::Ready(());
        }
        if deadline.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        for (i, slot) in pending.iter_mut().enumerate() {
            if slot.take().is_some() {
                results[i] = Some(Err(Error::transient(format!(
                    "probe {} took longer than the interval ({})",
                    probes[i].name(),
                    crate::time::format_duration(timeout)
                ))));
            }
        }
        Poll::Ready(())
    })
    .await;
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(Error::transient("no measurement"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;

    use super::*;

    /// Answers after `after`, panics, or never answers.
    #[derive(Debug)]
    enum Probe {
        Answers {
            name: &'static str,
            after: Duration,
            value: f64,
        },
        Panics,
        Hangs,
    }

    #[async_trait]
    impl HealthProbe for Probe {
        fn name(&self) -> &str {
            match self {
                Probe::Answers { name, .. } => name,
                Probe::Panics => "panics",
                Probe::Hangs => "hangs",
            }
        }

        async fn measure(&self, _: &ProbeContext) -> Result<Measurement> {
            match self {
                Probe::Answers { after, value, .. } => {
                    tokio::time::sleep(*after).await;
                    Ok(Measurement::value(*value))
                }
                Probe::Panics => {
                    tokio::task::yield_now().await;
                    panic!("index out of range");
                }
                Probe::Hangs => std::future::pending().await,
            }
        }
    }

    fn ctx() -> ProbeContext {
        ProbeContext::new("t".into(), "v2".into(), crate::Timestamp::EPOCH)
    }

    #[tokio::test(start_paused = true)]
    async fn every_probe_answers_in_policy_order_whichever_answers_first() {
        let probes: Vec<Arc<dyn HealthProbe>> = vec![
            Arc::new(Probe::Answers {
                name: "slow",
                after: Duration::from_secs(3),
                value: 1.0,
            }),
            Arc::new(Probe::Answers {
                name: "fast",
                after: Duration::ZERO,
                value: 2.0,
            }),
        ];
        let started = tokio::time::Instant::now();
        let got = measure_all(&probes, &ctx(), Duration::from_secs(10)).await;
        let values: Vec<_> = got.iter().map(|r| r.as_ref().unwrap().value).collect();
        assert_eq!(values, [Some(1.0), Some(2.0)]);
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(3),
            "measured together: the round takes as long as its slowest probe"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_that_panics_or_hangs_has_an_error_and_the_others_their_values() {
        let probes: Vec<Arc<dyn HealthProbe>> = vec![
            Arc::new(Probe::Panics),
            Arc::new(Probe::Answers {
                name: "ok",
                after: Duration::from_secs(1),
                value: 0.5,
            }),
            Arc::new(Probe::Hangs),
        ];
        let started = tokio::time::Instant::now();
        let got = measure_all(&probes, &ctx(), Duration::from_secs(10)).await;
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(10),
            "the hung probe is given up at the timeout"
        );
        let panicked = got[0].as_ref().unwrap_err().to_string();
        assert!(
            panicked.contains("probe panics panicked: index out of range"),
            "{panicked}"
        );
        assert_eq!(got[1].as_ref().unwrap().value, Some(0.5));
        let hung = got[2].as_ref().unwrap_err().to_string();
        assert!(
            hung.contains("probe hangs took longer than the interval (10s)"),
            "{hung}"
        );
    }
}
