//! What the server learns from the engine's audit records: each target's
//! timeline and last decision for the API, and the metrics.
//!
//! The [`Observer`] is an [`AuditSink`] of the server's tee: records arrive
//! in order per target, so the time from a breach to its rollback call, a
//! rollback's duration and each target's phase follow from them without
//! touching the engine.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rollback_core::audit::{ActionKind, AuditEntry, AuditRecord, AuditSink};
use rollback_core::machine::{DecisionKind, PhaseKind};
use rollback_core::{Actor, Result, TargetId, Timestamp, TriggerOutcome};
use serde::Serialize;

use crate::metrics::Metrics;

/// A target's last decision, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct LastDecision {
    pub(crate) decision: DecisionKind,
    pub(crate) detail: String,
    /// Milliseconds since the Unix epoch, as the audit log writes times.
    pub(crate) at: Timestamp,
    pub(crate) actor: Actor,
}

#[derive(Debug, Default)]
struct TargetLog {
    /// The last records, as JSON (smaller than the records themselves).
    records: VecDeque<Box<str>>,
    last_decision: Option<LastDecision>,
    phase: Option<PhaseKind>,
    /// When the breach waiting for its rollback call was decided.
    breach_at: Option<Timestamp>,
    /// When the running rollback's first backend call was made.
    rollback_started_at: Option<Timestamp>,
}

/// Timelines, last decisions and metrics from the audit records.
#[derive(Debug)]
pub(crate) struct Observer {
    metrics: Arc<Metrics>,
    capacity: AtomicUsize,
    /// Only supervised targets are kept: a command naming any string must
    /// not make the server keep a log of it.
    targets: Mutex<HashMap<TargetId, TargetLog>>,
}

fn seconds(from: Timestamp, to: Timestamp) -> f64 {
    to.since(from).as_secs_f64()
}

impl Observer {
    pub(crate) fn new(metrics: Arc<Metrics>, capacity: usize) -> Self {
        Observer {
            metrics,
            capacity: AtomicUsize::new(capacity),
            targets: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TargetId, TargetLog>> {
        self.targets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keep at most `n` records per target from now on.
    pub(crate) fn set_capacity(&self, n: usize) {
        self.capacity.store(n, Ordering::Relaxed);
        for log in self.lock().values_mut() {
            while log.records.len() > n {
                log.records.pop_front();
            }
        }
    }

    /// Start keeping the target's log.
    pub(crate) fn track(&self, target: &TargetId) {
        self.lock().entry(target.clone()).or_default();
    }

    /// Drop the target's log and its phase series.
    pub(crate) fn forget(&self, target: &TargetId) {
        if let Some(log) = self.lock().remove(target)
            && let Some(phase) = log.phase
        {
            self.metrics.forget_phase(target.as_str(), phase);
        }
    }

    /// The target's last `limit` records (JSON, oldest first), or `None` when it is not tracked.
    pub(crate) fn timeline(&self, target: &TargetId, limit: usize) -> Option<Vec<Box<str>>> {
        let targets = self.lock();
        let log = targets.get(target)?;
        let skip = log.records.len().saturating_sub(limit);
        Some(log.records.iter().skip(skip).cloned().collect())
    }

    /// The target's last decision.
    pub(crate) fn last_decision(&self, target: &TargetId) -> Option<LastDecision> {
        self.lock().get(target)?.last_decision.clone()
    }

    fn count(&self, r: &AuditRecord) {
        let m = &self.metrics;
        match &r.entry {
            AuditEntry::Measured { probe, verdict, .. } => {
                let verdict = match verdict {
                    Some(rollback_core::condition::Verdict::Pass) => "pass",
                    Some(rollback_core::condition::Verdict::Fail) => "fail",
                    Some(rollback_core::condition::Verdict::Inconclusive) => "inconclusive",
                    Some(rollback_core::condition::Verdict::Error) => "error",
                    None => "not_judged",
                };
                m.measurement(probe, verdict);
            }
            AuditEntry::ProbeFailed { probe, .. } => m.probe_error(probe),
            AuditEntry::Decided { decision, .. } => m.decision(*decision),
            AuditEntry::TriggerReceived { outcome, .. } => m.alert(match outcome {
                TriggerOutcome::Accepted => "accepted",
                TriggerOutcome::Duplicate => "duplicate",
                TriggerOutcome::Ignored { .. } => "ignored",
                TriggerOutcome::NoWatch => "no_watch",
                _ => "other",
            }),
            _ => {}
        }
    }

    fn follow(&self, log: &mut TargetLog, r: &AuditRecord) {
        let m = &self.metrics;
        let target = r.target.as_str();
        match &r.entry {
            AuditEntry::WatchStarted { .. } => {
                m.phase(target, log.phase, PhaseKind::Observing);
                log.phase = Some(PhaseKind::Observing);
                log.breach_at = None;
                log.rollback_started_at = None;
            }
            AuditEntry::WatchResumed { phase } => {
                m.phase(target, log.phase, *phase);
                log.phase = Some(*phase);
            }
            AuditEntry::Transition { from, to } => {
                if *from == PhaseKind::RollingBack {
                    m.rollback_ended(target, *to != PhaseKind::Escalated);
                    if let Some(started) = log.rollback_started_at.take() {
                        m.rollback_duration(seconds(started, r.at));
                    }
                }
                m.phase(target, log.phase, *to);
                log.phase = Some(*to);
            }
            AuditEntry::Decided {
                decision, detail, ..
            } => {
                match decision {
                    DecisionKind::Rollback | DecisionKind::AwaitApproval => {
                        log.breach_at.get_or_insert(r.at);
                    }
                    DecisionKind::Escalate | DecisionKind::Freeze | DecisionKind::Promote => {
                        log.breach_at = None;
                    }
                    _ => {}
                }
                log.last_decision = Some(LastDecision {
                    decision: *decision,
                    detail: detail.clone(),
                    at: r.at,
                    actor: r.actor.clone(),
                });
            }
            AuditEntry::ActionStarted {
                action: ActionKind::Rollback,
                attempt: 1,
                ..
            } => {
                log.rollback_started_at = Some(r.at);
                if let Some(breach) = log.breach_at.take() {
                    m.breach_to_call(seconds(breach, r.at));
                }
            }
            _ => {}
        }
    }
}

#[async_trait]
impl AuditSink for Observer {
    async fn record(&self, record: &AuditRecord) -> Result<()> {
        self.count(record);
        let capacity = self.capacity.load(Ordering::Relaxed);
        let json = if capacity > 0 {
            serde_json::to_string(record).ok()
        } else {
            None
        };
        let mut targets = self.lock();
        let Some(log) = targets.get_mut(&record.target) else {
            return Ok(());
        };
        self.follow(log, record);
        if let Some(json) = json {
            log.records.push_back(json.into_boxed_str());
            while log.records.len() > capacity {
                log.records.pop_front();
            }
        }
        Ok(())
    }
}
