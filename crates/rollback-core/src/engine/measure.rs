//! One round of measurements: every probe at once, fed to the machine in
//! policy order, each audited.

use std::time::Duration;

use super::run::WatchRun;
use crate::audit::AuditEntry;
use crate::machine::{Event, Step};
use crate::{Actor, Error, Measurement, ProbeContext, Result};

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
        let timeout = self.spec.policy.interval.max(Duration::from_millis(1));
        let mut set = tokio::task::JoinSet::new();
        for (i, probe) in self.spec.probes.iter().enumerate() {
            let probe = probe.clone();
            let ctx = ctx.clone();
            set.spawn(async move {
                let r = match tokio::time::timeout(timeout, probe.measure(&ctx)).await {
                    Ok(r) => r,
                    Err(_) => Err(Error::transient(format!(
                        "probe {} took longer than the interval ({})",
                        probe.name(),
                        crate::time::format_duration(timeout)
                    ))),
                };
                (i, r)
            });
        }
        let mut results: Vec<(usize, Result<Measurement>)> =
            Vec::with_capacity(self.spec.probes.len());
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(r) => results.push(r),
                Err(e) => tracing::error!("a probe task panicked: {e}"),
            }
        }
        results.sort_by_key(|(i, _)| *i);
        for (i, mut result) in results {
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
