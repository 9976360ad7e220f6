//! What the server learns from the engine's audit records: each target's
//! timeline and last decision for the API, and the metrics.
//!
//! The [`Observer`] is an [`AuditSink`] of the server's tee: records arrive
//! in order per target, so the time from a breach to its rollback call, a
//! rollback's duration and each target's phase follow from them without
//! touching the engine.
//!
//! A timeline keeps two lanes, so that the records of every interval (a
//! `measured` or `probe_failed` of each probe) never push out the rare ones
//! an operator looks for: the last `serve.timeline` records other than
//! measurements, and the last `serve.timeline_measurements` of each probe.
//! Each kept record is numbered as it arrives, and the timeline shows both
//! lanes in that order.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rollback_core::audit::{ActionKind, AuditEntry, AuditRecord, AuditSink};
use rollback_core::condition::{Verdict, VerdictCause};
use rollback_core::machine::{DecisionKind, PhaseKind};
use rollback_core::{Actor, Result, RevisionId, TargetId, Timestamp, TriggerOutcome};
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

/// How many records of each target the timeline keeps in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimelineCapacity {
    /// Records other than measurements (`serve.timeline`).
    pub(crate) events: usize,
    /// `measured` and `probe_failed` records per probe
    /// (`serve.timeline_measurements`).
    pub(crate) measurements: usize,
}

/// Kept events, each with its sequence number in the target's log, oldest
/// first.
type Lane = VecDeque<(u64, Event)>;

/// A probe's kept records, oldest first, numbered like the events'.
type MeasurementLane = VecDeque<(u64, Kept)>;

/// A record of a probe's lane: a `measured` record in short, or any other
/// (`probe_failed`, `store_failed`) as an event.
#[derive(Debug, Clone)]
enum Kept {
    Measured(Measurement),
    Event(Event),
}

/// A record as the timeline keeps it: its time, revision and actor (none:
/// the engine) beside the JSON of what happened alone, which is how the
/// record's JSON ends (its entry is written flat after those fields). The
/// target is the log's own. A watch's start is 112 bytes so, where the
/// record's JSON took 184 (a 160-byte allocation and its place in the
/// lane). It is written whole when the timeline is read.
#[derive(Debug, Clone)]
struct Event {
    at: Timestamp,
    revision: RevisionId,
    actor: Option<Box<str>>,
    /// The entry's JSON: `{"event":...}`.
    entry: Box<str>,
}

impl Event {
    fn of(record: &AuditRecord) -> Option<Self> {
        Some(Event {
            at: record.at,
            revision: record.revision.clone(),
            actor: (!record.actor.is_engine()).then(|| record.actor.as_str().into()),
            entry: serde_json::to_string(&record.entry).ok()?.into_boxed_str(),
        })
    }

    /// The record's JSON, of `target`.
    fn json(&self, target: &TargetId) -> Box<str> {
        let engine = Actor::engine();
        let actor = self.actor.as_deref().unwrap_or(engine.as_str());
        let fields = self.entry.strip_prefix('{').unwrap_or(&self.entry);
        let comma = if fields.starts_with('}') { "" } else { "," };
        format!(
            "{{\"at\":{},\"target\":{},\"revision\":{},\"actor\":{}{comma}{fields}",
            json(&self.at),
            json(target),
            json(&self.revision),
            json(&actor),
        )
        .into_boxed_str()
    }
}

fn json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// A `measured` record as its probe's lane keeps it: 104 bytes in the lane,
/// where its JSON took about 250 (a 224-byte allocation and its place in
/// the lane), and most targets keep two of them a probe. The target and
/// the probe are the lane's own. The conditions are shared with the lane's
/// newest record while they stay the same (they change with the policy
/// only). It is written as JSON when the timeline is read, and reads back
/// as the record it was.
#[derive(Debug, Clone)]
struct Measurement {
    at: Timestamp,
    value: Option<f64>,
    baseline: Option<f64>,
    revision: RevisionId,
    judged: RevisionId,
    against: Option<Arc<str>>,
    /// The actor when it is not the engine, the probe's detail, and a due
    /// time too far from the record's for `late_ms`: rare.
    rare: Option<Box<Rare>>,
    /// The record's time less its due time, in ms (`NOT_DUE`: none, or
    /// kept in `rare`). Four bytes in what was the struct's padding.
    late_ms: i32,
    verdict: Option<Verdict>,
    cause: Option<VerdictCause>,
}

/// `late_ms` of a record with no due time, or one kept in `rare`.
const NOT_DUE: i32 = i32::MIN;

#[derive(Debug, Clone)]
struct Rare {
    actor: Option<Actor>,
    detail: Option<String>,
    due_at: Option<Timestamp>,
}

impl Measurement {
    /// The record in short, or `None` when it is not a `measured` one.
    fn of(record: &AuditRecord) -> Option<Self> {
        let AuditEntry::Measured {
            judged,
            value,
            baseline,
            verdict,
            cause,
            against,
            detail,
            due_at,
            ..
        } = &record.entry
        else {
            return None;
        };
        let actor = (!record.actor.is_engine()).then(|| record.actor.clone());
        let late_ms = due_at
            .and_then(|due| i32::try_from(record.at.as_millis().checked_sub(due.as_millis())?).ok())
            .filter(|&late| late != NOT_DUE);
        let far_due = due_at.filter(|_| late_ms.is_none());
        Some(Measurement {
            at: record.at,
            value: *value,
            baseline: *baseline,
            revision: record.revision.clone(),
            judged: judged.clone(),
            against: against.as_deref().map(Arc::from),
            rare: (actor.is_some() || detail.is_some() || far_due.is_some()).then(|| {
                Box::new(Rare {
                    actor,
                    detail: detail.clone(),
                    due_at: far_due,
                })
            }),
            late_ms: late_ms.unwrap_or(NOT_DUE),
            verdict: *verdict,
            cause: *cause,
        })
    }

    /// The record again, of `target`'s probe `probe`.
    fn record(&self, target: &TargetId, probe: &str) -> AuditRecord {
        let (actor, detail, far_due) = match self.rare.as_deref() {
            Some(rare) => (rare.actor.clone(), rare.detail.clone(), rare.due_at),
            None => (None, None, None),
        };
        let due_at = far_due.or_else(|| {
            (self.late_ms != NOT_DUE)
                .then(|| Timestamp::from_millis(self.at.as_millis() - i64::from(self.late_ms)))
        });
        AuditRecord {
            at: self.at,
            target: target.clone(),
            revision: self.revision.clone(),
            actor: actor.unwrap_or_else(Actor::engine),
            entry: AuditEntry::Measured {
                probe: probe.to_owned(),
                judged: self.judged.clone(),
                value: self.value,
                baseline: self.baseline,
                verdict: self.verdict,
                cause: self.cause,
                against: self.against.as_deref().map(str::to_owned),
                detail,
                due_at,
            },
        }
    }
}

/// A kept record on its way into a timeline.
enum Shown<'a> {
    Event(&'a Event),
    /// A measurement in short, of this probe.
    Measured(&'a str, &'a Measurement),
}

/// Push `item` and drop the oldest records beyond `capacity`.
fn keep<T>(lane: &mut VecDeque<(u64, T)>, capacity: usize, seq: u64, item: T) {
    if capacity == 0 {
        return;
    }
    while lane.len() >= capacity {
        lane.pop_front();
    }
    if lane.len() == lane.capacity() {
        // Grown by doubling from one record, not from four, and never past
        // the capacity: most targets keep a record or two in a lane.
        let more = lane.len().max(1).min(capacity - lane.len());
        lane.reserve_exact(more);
    }
    lane.push_back((seq, item));
}

/// Drop the oldest records beyond `capacity`, and the memory they held.
fn trim<T>(lane: &mut VecDeque<(u64, T)>, capacity: usize) {
    if lane.len() > capacity {
        lane.drain(..lane.len() - capacity);
        lane.shrink_to_fit();
    }
}

/// A target's log: 80 bytes in the map, and what it keeps.
#[derive(Debug, Default)]
struct TargetLog {
    /// The sequence number of the next kept record.
    next_seq: u64,
    /// The last records other than measurements: what an operator looks
    /// for (watches, decisions, transitions, actions, commands, alerts),
    /// which the records of every interval must not push out.
    events: Lane,
    /// The last measurements (`measured`, `probe_failed`) of each probe,
    /// by probe name (a policy has few probes).
    measurements: Vec<(Box<str>, MeasurementLane)>,
    phase: Option<PhaseKind>,
    /// Kept from a target's first decision on (most of 10,000 targets
    /// never have one).
    decided: Option<Box<Decided>>,
}

#[derive(Debug, Default)]
struct Decided {
    last_decision: Option<LastDecision>,
    /// When the breach waiting for its rollback call was decided.
    breach_at: Option<Timestamp>,
    /// When the running rollback's first backend call was made.
    rollback_started_at: Option<Timestamp>,
}

impl TargetLog {
    fn trim(&mut self, capacity: TimelineCapacity) {
        trim(&mut self.events, capacity.events);
        if capacity.measurements == 0 {
            self.measurements = Vec::new();
        }
        for (_, lane) in &mut self.measurements {
            trim(lane, capacity.measurements);
        }
    }
}

/// The lane of a record that can come every interval (a probe's, or the
/// state store's), or `None` for an event.
fn measured_probe(entry: &AuditEntry) -> Option<&str> {
    match entry {
        AuditEntry::Measured { probe, .. } | AuditEntry::ProbeFailed { probe, .. } => Some(probe),
        // The state is saved each interval: a store that is down fails each
        // time, and must not push the decisions out either. (A probe
        // named "(state store)" would share the lane: bounded all the same.)
        AuditEntry::StoreFailed { .. } => Some("(state store)"),
        _ => None,
    }
}

/// Timelines, last decisions and metrics from the audit records.
#[derive(Debug)]
pub(crate) struct Observer {
    metrics: Arc<Metrics>,
    events: AtomicUsize,
    measurements: AtomicUsize,
    /// Only supervised targets are kept: a command naming any string must
    /// not make the server keep a log of it.
    /// A tree, built anew with full nodes when targets are added together
    /// (a hash table's slack was 60 bytes a target).
    targets: Mutex<BTreeMap<TargetId, TargetLog>>,
}

fn seconds(from: Timestamp, to: Timestamp) -> f64 {
    to.since(from).as_secs_f64()
}

impl Observer {
    pub(crate) fn new(metrics: Arc<Metrics>, capacity: TimelineCapacity) -> Self {
        Observer {
            metrics,
            events: AtomicUsize::new(capacity.events),
            measurements: AtomicUsize::new(capacity.measurements),
            targets: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<TargetId, TargetLog>> {
        self.targets.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn capacity(&self) -> TimelineCapacity {
        TimelineCapacity {
            events: self.events.load(Ordering::Relaxed),
            measurements: self.measurements.load(Ordering::Relaxed),
        }
    }

    /// Keep at most this many records per target from now on, and trim
    /// the logs to it.
    pub(crate) fn set_capacity(&self, capacity: TimelineCapacity) {
        self.events.store(capacity.events, Ordering::Relaxed);
        self.measurements
            .store(capacity.measurements, Ordering::Relaxed);
        for log in self.lock().values_mut() {
            log.trim(capacity);
        }
    }

    /// Start keeping the logs of these targets (in one go).
    pub(crate) fn track_all<'a>(&self, targets: impl IntoIterator<Item = &'a TargetId>) {
        let mut logs = self.lock();
        let mut fresh: BTreeMap<TargetId, TargetLog> = targets
            .into_iter()
            .filter(|t| !logs.contains_key(*t))
            .map(|t| (t.clone(), TargetLog::default()))
            .collect();
        logs.append(&mut fresh);
    }

    /// Drop the target's log and its phase series.
    pub(crate) fn forget(&self, target: &TargetId) {
        if let Some(log) = self.lock().remove(target)
            && let Some(phase) = log.phase
        {
            self.metrics.forget_phase(target.as_str(), phase);
        }
    }

    /// The target's last `limit` kept records (JSON, oldest first): its
    /// events and each probe's last measurements, in the order they
    /// arrived; `None` when it is not tracked.
    pub(crate) fn timeline(&self, target: &TargetId, limit: usize) -> Option<Vec<Box<str>>> {
        let targets = self.lock();
        let log = targets.get(target)?;
        let mut kept: Vec<(u64, Shown<'_>)> = log
            .events
            .iter()
            .map(|(seq, event)| (*seq, Shown::Event(event)))
            .chain(log.measurements.iter().flat_map(|(probe, lane)| {
                lane.iter().map(move |(seq, kept)| match kept {
                    Kept::Event(event) => (*seq, Shown::Event(event)),
                    Kept::Measured(m) => (*seq, Shown::Measured(probe, m)),
                })
            }))
            .collect();
        kept.sort_unstable_by_key(|(seq, _)| *seq);
        let skip = kept.len().saturating_sub(limit);
        Some(
            kept[skip..]
                .iter()
                .map(|(_, kept)| match kept {
                    Shown::Event(event) => event.json(target),
                    Shown::Measured(probe, m) => serde_json::to_string(&m.record(target, probe))
                        .unwrap_or_default()
                        .into_boxed_str(),
                })
                .collect(),
        )
    }

    /// The target's last decision.
    pub(crate) fn last_decision(&self, target: &TargetId) -> Option<LastDecision> {
        self.lock()
            .get(target)?
            .decided
            .as_ref()?
            .last_decision
            .clone()
    }

    fn count(&self, r: &AuditRecord) {
        let m = &self.metrics;
        match &r.entry {
            AuditEntry::Measured {
                probe,
                verdict,
                due_at,
                ..
            } => {
                if let Some(due) = due_at {
                    // One judged before its due time (a clock stepped back)
                    // counts as no delay.
                    m.measurement_delay(seconds(*due, r.at));
                }
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
                if let Some(d) = &mut log.decided {
                    d.breach_at = None;
                    d.rollback_started_at = None;
                }
            }
            AuditEntry::WatchResumed { phase } => {
                m.phase(target, log.phase, *phase);
                log.phase = Some(*phase);
            }
            AuditEntry::Transition { from, to } => {
                if *from == PhaseKind::RollingBack {
                    m.rollback_ended(target, *to != PhaseKind::Escalated);
                    if let Some(started) = log
                        .decided
                        .as_mut()
                        .and_then(|d| d.rollback_started_at.take())
                    {
                        m.rollback_duration(seconds(started, r.at));
                    }
                }
                m.phase(target, log.phase, *to);
                log.phase = Some(*to);
            }
            AuditEntry::Decided {
                decision, detail, ..
            } => {
                let d = log.decided.get_or_insert_default();
                match decision {
                    DecisionKind::Rollback | DecisionKind::AwaitApproval => {
                        d.breach_at.get_or_insert(r.at);
                    }
                    DecisionKind::Escalate | DecisionKind::Freeze | DecisionKind::Promote => {
                        d.breach_at = None;
                    }
                    _ => {}
                }
                d.last_decision = Some(LastDecision {
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
                let d = log.decided.get_or_insert_default();
                d.rollback_started_at = Some(r.at);
                if let Some(breach) = d.breach_at.take() {
                    m.breach_to_call(seconds(breach, r.at));
                }
            }
            _ => {}
        }
    }

    /// Follow one record: metrics, phase, last decision, and the timeline
    /// of its target if it is tracked.
    fn observe(&self, record: &AuditRecord) {
        self.count(record);
        let probe = measured_probe(&record.entry);
        let capacity = self.capacity();
        let lane_capacity = if probe.is_some() {
            capacity.measurements
        } else {
            capacity.events
        };
        // Made before the lock is taken, and only when it is kept: a
        // measurement in short, any other record as an event.
        let kept = (lane_capacity > 0)
            .then(|| match Measurement::of(record) {
                Some(m) => Some(Kept::Measured(m)),
                None => Event::of(record).map(Kept::Event),
            })
            .flatten();
        let mut targets = self.lock();
        let Some(log) = targets.get_mut(&record.target) else {
            return;
        };
        self.follow(log, record);
        let Some(mut kept) = kept else {
            return;
        };
        // Read again under the lock: a reload that changed the capacity
        // since has already trimmed the logs to it.
        let capacity = self.capacity();
        let seq = log.next_seq;
        log.next_seq += 1;
        match probe {
            None => {
                // Only the records of a probe's lane are kept in short.
                if let Kept::Event(event) = kept {
                    keep(&mut log.events, capacity.events, seq, event);
                }
            }
            Some(probe) => {
                if capacity.measurements == 0 {
                    return;
                }
                let lanes = &mut log.measurements;
                let i = match lanes.iter().position(|(name, _)| **name == *probe) {
                    Some(i) => i,
                    None => {
                        // One probe at a time: room for four would be 144
                        // bytes a target held for nothing.
                        lanes.reserve_exact(1);
                        lanes.push((probe.into(), MeasurementLane::new()));
                        lanes.len() - 1
                    }
                };
                let lane = &mut lanes[i].1;
                // The same conditions as the newest's: shared.
                if let (Kept::Measured(new), Some((_, Kept::Measured(newest)))) =
                    (&mut kept, lane.back())
                    && new.against.is_some()
                    && new.against == newest.against
                {
                    new.against.clone_from(&newest.against);
                }
                keep(lane, capacity.measurements, seq, kept);
            }
        }
    }
}

#[async_trait]
impl AuditSink for Observer {
    async fn record(&self, record: &AuditRecord) -> Result<()> {
        self.observe(record);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGET: &str = "k8s:shop/checkout";

    fn record(second: i64, entry: AuditEntry) -> AuditRecord {
        AuditRecord {
            at: Timestamp::from_millis(1_795_780_800_000 + second * 1000),
            target: TARGET.into(),
            revision: "v2".into(),
            actor: Actor::engine(),
            entry,
        }
    }

    fn measured(probe: &str, value: f64) -> AuditEntry {
        AuditEntry::Measured {
            probe: probe.into(),
            judged: "v2".into(),
            value: Some(value),
            baseline: None,
            verdict: Some(rollback_core::condition::Verdict::Pass),
            cause: None,
            against: Some("value < 0.01".into()),
            detail: None,
            due_at: None,
        }
    }

    /// A watch whose probes `a` and `b` measure many times, with a probe
    /// failure of `b`, then a breach, its rollback decision and the
    /// rollback's start.
    fn watch() -> Vec<AuditRecord> {
        let mut out = vec![record(0, AuditEntry::WatchStarted { dry_run: false })];
        for i in 1..=20 {
            out.push(record(i, measured("a", i as f64)));
            out.push(record(i, measured("b", i as f64)));
        }
        out.push(record(
            21,
            AuditEntry::ProbeFailed {
                probe: "b".into(),
                judged: "v2".into(),
                error: "the metrics backend is down".into(),
            },
        ));
        out.push(record(21, measured("a", 21.0)));
        out.push(record(
            21,
            AuditEntry::Decided {
                decision: DecisionKind::Rollback,
                detail: "roll back to v1: a breached".into(),
                breach: None,
                to: Some("v1".into()),
            },
        ));
        out.push(record(
            21,
            AuditEntry::Transition {
                from: PhaseKind::Observing,
                to: PhaseKind::RollingBack,
            },
        ));
        out.push(record(22, measured("a", 22.0)));
        out.push(record(
            22,
            AuditEntry::ActionStarted {
                action: ActionKind::Rollback,
                subject: "v1".into(),
                attempt: 1,
            },
        ));
        out
    }

    fn observer(events: usize, measurements: usize) -> Observer {
        let o = Observer::new(
            Arc::new(Metrics::new()),
            TimelineCapacity {
                events,
                measurements,
            },
        );
        o.track_all([&TARGET.into()]);
        o
    }

    /// The timeline, read back as records.
    fn timeline(o: &Observer, limit: usize) -> Vec<AuditRecord> {
        o.timeline(&TARGET.into(), limit)
            .expect("tracked")
            .iter()
            .map(|json| serde_json::from_str(json).expect("a record"))
            .collect()
    }

    /// Observe `records`: the timeline is their JSON, byte for byte.
    fn observed_read_back_whole(o: &Observer, records: &[AuditRecord]) {
        for r in records {
            o.observe(r);
        }
        let want: Vec<Box<str>> = records
            .iter()
            .map(|r| serde_json::to_string(r).expect("json").into_boxed_str())
            .collect();
        assert_eq!(o.timeline(&TARGET.into(), 100).expect("tracked"), want);
    }

    /// The records of `all` at these indices.
    fn pick(all: &[AuditRecord], indices: &[usize]) -> Vec<AuditRecord> {
        indices.iter().map(|i| all[*i].clone()).collect()
    }

    #[test]
    fn a_log_is_small_and_a_lane_holds_no_room_beyond_what_it_keeps() {
        assert!(std::mem::size_of::<TargetLog>() <= 80);
        let o = observer(50, 2);
        o.observe(&record(0, AuditEntry::WatchStarted { dry_run: false }));
        for i in 1..=5 {
            o.observe(&record(i, measured("a", i as f64)));
        }
        let targets = o.lock();
        let log = &targets[&TargetId::from(TARGET)];
        assert_eq!(log.events.capacity(), 1);
        assert_eq!(log.measurements.capacity(), 1);
        assert_eq!(log.measurements[0].1.len(), 2);
        assert_eq!(log.measurements[0].1.capacity(), 2);
    }

    #[test]
    fn a_measurement_kept_in_short_reads_back_as_the_record_it_was() {
        assert!(std::mem::size_of::<(u64, Kept)>() <= 112);
        let o = observer(50, 10);
        let mut records = vec![record(1, measured("a", 0.001))];
        let mut odd = record(
            2,
            AuditEntry::Measured {
                probe: "a".into(),
                judged: "v1".into(),
                value: Some(f64::NAN),
                baseline: Some(f64::INFINITY),
                verdict: Some(rollback_core::condition::Verdict::Fail),
                cause: Some(VerdictCause::CanaryHigher),
                against: Some("canary higher than baseline".into()),
                detail: Some("p99 of \"checkout\"".into()),
                // Too far from the record's time for the short form.
                due_at: Some(Timestamp::EPOCH),
            },
        );
        odd.actor = Actor::new("alice@example.com");
        odd.revision = "v3".into();
        records.push(odd);
        records.push(record(
            3,
            AuditEntry::Measured {
                probe: "a".into(),
                judged: "v2".into(),
                value: None,
                baseline: None,
                verdict: None,
                cause: None,
                against: None,
                detail: None,
                due_at: Some(Timestamp::from_millis(1_795_780_803_000 - 7)),
            },
        ));
        records.push(record(4, measured("a", 0.002)));
        let mut early = record(5, measured("a", 0.003));
        if let AuditEntry::Measured { due_at, .. } = &mut early.entry {
            *due_at = Some(Timestamp::from_millis(1_795_780_805_000 + 2));
        }
        records.push(early);
        observed_read_back_whole(&o, &records);
        // The same conditions as the lane's newest: one copy.
        let o = observer(50, 10);
        o.observe(&records[0]);
        o.observe(&records[3]);
        let targets = o.lock();
        let lane = &targets[&TargetId::from(TARGET)].measurements[0].1;
        let against: Vec<&Arc<str>> = lane
            .iter()
            .filter_map(|(_, k)| match k {
                Kept::Measured(m) => m.against.as_ref(),
                Kept::Event(_) => None,
            })
            .collect();
        assert_eq!(against.len(), 2);
        assert!(Arc::ptr_eq(against[0], against[1]));
    }

    #[test]
    fn every_kept_record_reads_back_byte_for_byte() {
        assert!(std::mem::size_of::<(u64, Event)>() <= 64);
        let o = observer(50, 50);
        let mut records = watch();
        let mut by_operator = record(
            23,
            AuditEntry::ActionSucceeded {
                action: ActionKind::Rollback,
                detail: "restored v1".into(),
            },
        );
        by_operator.actor = Actor::new("alice@example.com");
        records.push(by_operator);
        records.push(record(
            24,
            AuditEntry::StoreFailed {
                error: "disk \"full\"\n".into(),
            },
        ));
        observed_read_back_whole(&o, &records);
    }

    #[test]
    fn a_state_store_failing_each_interval_does_not_push_out_the_events() {
        let o = observer(2, 2);
        let started = record(0, AuditEntry::WatchStarted { dry_run: false });
        o.observe(&started);
        let failures: Vec<AuditRecord> = (1..=10)
            .map(|i| {
                record(
                    i,
                    AuditEntry::StoreFailed {
                        error: format!("disk full ({i})"),
                    },
                )
            })
            .collect();
        for r in &failures {
            o.observe(r);
        }
        assert_eq!(
            timeline(&o, 50),
            [started, failures[8].clone(), failures[9].clone()]
        );
    }

    #[test]
    fn measurements_do_not_push_out_the_events() {
        let o = observer(3, 2);
        let records = watch();
        for r in &records {
            o.observe(r);
        }
        // Index: 0 watch started, 1..=40 a and b measured, 41 b failed,
        // 42 a measured, 43 decided, 44 transition, 45 a measured,
        // 46 rollback started.
        assert_eq!(records.len(), 47);
        // The 3 newest events (43, 44, 46) and the 2 newest measurements
        // of a (42, 45) and of b (40, 41), in the order they came.
        let all = pick(&records, &[40, 41, 42, 43, 44, 45, 46]);
        assert_eq!(timeline(&o, 50), all);
        // `limit` keeps the newest of them all.
        assert_eq!(timeline(&o, 4), pick(&records, &[43, 44, 45, 46]));
        assert_eq!(timeline(&o, 0), []);
        assert_eq!(o.timeline(&"k8s:shop/other".into(), 50), None);
    }

    #[test]
    fn a_reload_trims_both_lanes_and_keeps_to_the_new_sizes() {
        let o = observer(3, 2);
        let records = watch();
        for r in &records {
            o.observe(r);
        }
        o.set_capacity(TimelineCapacity {
            events: 1,
            measurements: 1,
        });
        // The newest event (46), the newest of b (41) and of a (45).
        assert_eq!(timeline(&o, 50), pick(&records, &[41, 45, 46]));
        let more = [
            record(23, measured("a", 23.0)),
            record(
                23,
                AuditEntry::ActionSucceeded {
                    action: ActionKind::Rollback,
                    detail: "restored v1".into(),
                },
            ),
        ];
        for r in &more {
            o.observe(r);
        }
        let mut expected = pick(&records, &[41]);
        expected.extend(more.iter().cloned());
        assert_eq!(timeline(&o, 50), expected);
        // Larger again: kept from now on, what was dropped stays dropped.
        o.set_capacity(TimelineCapacity {
            events: 50,
            measurements: 2,
        });
        let last = record(24, measured("b", 24.0));
        o.observe(&last);
        expected.push(last);
        assert_eq!(timeline(&o, 50), expected);
    }

    #[test]
    fn nothing_kept_yet_metrics_and_the_last_decision_followed() {
        let o = observer(0, 0);
        for r in &watch() {
            o.observe(r);
        }
        assert_eq!(timeline(&o, 50), []);
        let last = o.last_decision(&TARGET.into()).expect("a decision");
        assert_eq!(last.decision, DecisionKind::Rollback);
        let metrics = o.metrics.encode(false);
        for line in [
            r#"rollback_measurements_total{probe="a",verdict="pass"} 22"#,
            r#"rollback_probe_errors_total{probe="b"} 1"#,
            r#"rollback_decisions_total{decision="rollback"} 1"#,
            r#"rollback_target_phase{target="k8s:shop/checkout",phase="rolling_back"} 1"#,
        ] {
            assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
        }
        // Events only, or measurements only.
        let records = watch();
        let o = observer(2, 0);
        for r in &records {
            o.observe(r);
        }
        assert_eq!(timeline(&o, 50), pick(&records, &[44, 46]));
        let o = observer(0, 1);
        for r in &records {
            o.observe(r);
        }
        assert_eq!(timeline(&o, 50), pick(&records, &[41, 45]));
    }
}
