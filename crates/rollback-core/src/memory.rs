//! In-memory backends to test a policy with: a [`InMemoryTarget`] with a
//! revision history, an [`InMemoryRollbacker`] that records what it did and can
//! be told to fail, and a [`ScriptedProbe`] that plays values, gaps and errors.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use crate::steps::Steps;
use crate::{
    Capabilities, Convergence, DryRun, Error, ErrorKind, HealthProbe, HistoryEntry, Mark,
    Measurement, ProbeContext, Result, RevisionHealth, RevisionId, RevisionRecord, RevisionRef,
    RollbackOutcome, RollbackRequest, Rollbacker, Target, TargetId, Timestamp,
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the data half
    // updated (every update is a single assignment), so poisoning is ignored.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug)]
struct TargetState {
    /// Newest first.
    history: Vec<(Arc<RevisionRecord>, RevisionHealth)>,
    current: RevisionId,
    /// The rollback records the backend keeps, oldest first.
    records: Vec<RollbackRecord>,
}

/// The record an [`InMemoryRollbacker`] keeps of each rollback in its
/// target, as a backend keeps a move record in a tag or an annotation:
/// written once per rollback (keyed by its decision time), whatever
/// interrupts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackRecord {
    /// The rollback's identity: [`RollbackRequest::decided_at`].
    pub decided_at: Timestamp,
    /// The revision rolled away from.
    pub from: Option<RevisionId>,
    /// The revision restored.
    pub to: RevisionId,
    /// Why.
    pub reason: String,
}

/// A target with a revision history, kept in memory. Cloning shares it.
///
/// Like a Kubernetes Deployment or a CodeDeploy group, deploying (or rolling
/// back to) a revision makes it the newest entry of the history.
#[derive(Debug, Clone)]
pub struct InMemoryTarget {
    id: TargetId,
    state: Arc<Mutex<TargetState>>,
}

impl InMemoryTarget {
    /// A target that had `revisions` deployed in this order (oldest first);
    /// the last one is current. At least one revision is needed.
    pub fn new(
        id: impl Into<String>,
        revisions: impl IntoIterator<Item = RevisionRecord>,
    ) -> Result<Self> {
        let id = TargetId::new(id);
        let mut history: Vec<_> = revisions
            .into_iter()
            .map(|r| (Arc::new(r), RevisionHealth::Unknown))
            .collect();
        history.reverse();
        let Some((newest, _)) = history.first() else {
            return Err(Error::invalid(format!(
                "in-memory target {id} needs at least one revision"
            )));
        };
        let current = newest.id.clone();
        let mut seen = std::collections::BTreeSet::new();
        for (r, _) in &history {
            if !seen.insert(&r.id) {
                return Err(Error::invalid(format!(
                    "in-memory target {id}: revision {} is listed twice",
                    r.id
                )));
            }
        }
        Ok(InMemoryTarget {
            id,
            state: Arc::new(Mutex::new(TargetState {
                history,
                current,
                records: Vec::new(),
            })),
        })
    }

    /// Deploy a revision: it becomes current and the newest entry.
    pub fn deploy(&self, revision: RevisionRecord) {
        let mut s = lock(&self.state);
        let health = s
            .history
            .iter()
            .position(|(r, _)| r.id == revision.id)
            .map(|i| s.history.remove(i).1);
        s.current = revision.id.clone();
        s.history
            .insert(0, (Arc::new(revision), health.unwrap_or_default()));
    }

    /// Set what the backend knows of a revision's health.
    pub fn set_health(&self, id: &RevisionId, health: RevisionHealth) -> Result<()> {
        let mut s = lock(&self.state);
        match s.history.iter_mut().find(|(r, _)| &r.id == id) {
            Some(entry) => {
                entry.1 = health;
                Ok(())
            }
            None => Err(self.unknown(id)),
        }
    }

    /// The id of the current revision.
    pub fn current_id(&self) -> RevisionId {
        lock(&self.state).current.clone()
    }

    /// The health mark of a revision, if it is in the history.
    pub fn health_of(&self, id: &RevisionId) -> Option<RevisionHealth> {
        lock(&self.state)
            .history
            .iter()
            .find(|(r, _)| &r.id == id)
            .map(|(_, h)| *h)
    }

    /// The rollback records kept in the target, oldest first.
    pub fn records(&self) -> Vec<RollbackRecord> {
        lock(&self.state).records.clone()
    }

    /// Keep `record` unless one with its decision time is kept already.
    fn keep_record(&self, record: RollbackRecord) {
        let mut s = lock(&self.state);
        if !s.records.iter().any(|r| r.decided_at == record.decided_at) {
            s.records.push(record);
        }
    }

    fn unknown(&self, id: &RevisionId) -> Error {
        Error::not_found(format!(
            "revision {id} is not in the history of target {}",
            self.id
        ))
    }

    fn roll_to(&self, id: &RevisionId) -> Result<bool> {
        let mut s = lock(&self.state);
        let Some(i) = s.history.iter().position(|(r, _)| &r.id == id) else {
            return Err(self.unknown(id));
        };
        if &s.current == id {
            return Ok(false);
        }
        let entry = s.history.remove(i);
        s.history.insert(0, entry);
        s.current = id.clone();
        Ok(true)
    }
}

#[async_trait]
impl Target for InMemoryTarget {
    fn id(&self) -> &TargetId {
        &self.id
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE.with_mark(true)
    }

    async fn current(&self) -> Result<RevisionRef> {
        let s = lock(&self.state);
        let current = s
            .history
            .iter()
            .find(|(r, _)| r.id == s.current)
            .map(|(r, _)| r.clone());
        current
            .map(|r| r as RevisionRef)
            .ok_or_else(|| self.unknown(&s.current))
    }

    async fn history(&self) -> Result<Vec<HistoryEntry>> {
        let s = lock(&self.state);
        Ok(s.history
            .iter()
            .map(|(r, h)| HistoryEntry::new(r.clone() as RevisionRef, *h))
            .collect())
    }

    async fn mark(&self, mark: &Mark) -> Result<()> {
        self.set_health(&mark.revision, mark.health)
    }
}

/// One call an [`InMemoryRollbacker`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRollback {
    /// The revision asked for.
    pub to: RevisionId,
    /// The revision rolled away from, as the caller saw it.
    pub from: Option<RevisionId>,
    /// Why.
    pub reason: String,
    /// Who asked.
    pub actor: crate::Actor,
    /// Whether it was a dry run, and which.
    pub dry_run: DryRun,
    /// What came of it: the outcome, or the error's message.
    pub result: std::result::Result<RollbackOutcome, String>,
}

#[derive(Debug, Default)]
struct RollbackerState {
    calls: Vec<RecordedRollback>,
    failures: VecDeque<ErrorKind>,
    fail_always: Option<ErrorKind>,
    converge_after: Duration,
    convergence_fails: Option<String>,
    steps: Steps,
}

/// Rolls an [`InMemoryTarget`] back, records every call, and can be told to fail.
#[derive(Debug, Clone)]
pub struct InMemoryRollbacker {
    target: InMemoryTarget,
    state: Arc<Mutex<RollbackerState>>,
}

impl InMemoryRollbacker {
    /// A rollbacker of `target`.
    pub fn new(target: &InMemoryTarget) -> Self {
        InMemoryRollbacker {
            target: target.clone(),
            state: Arc::default(),
        }
    }

    /// Make the next `n` calls fail with an error of `kind` (before changing anything).
    pub fn fail_next(&self, n: usize, kind: ErrorKind) {
        lock(&self.state)
            .failures
            .extend(std::iter::repeat_n(kind, n));
    }

    /// Make every call fail with an error of `kind`; `None` to stop.
    pub fn fail_always(&self, kind: Option<ErrorKind>) {
        lock(&self.state).fail_always = kind;
    }

    /// Make `wait_converged` take this long (virtual time under a paused tokio clock).
    pub fn converge_after(&self, d: Duration) {
        lock(&self.state).converge_after = d;
    }

    /// Make `wait_converged` report that convergence failed.
    pub fn fail_convergence(&self, detail: Option<String>) {
        lock(&self.state).convergence_fails = detail;
    }

    /// Count the steps of each rollback with `steps` (and stop after as many
    /// as it allows: see [`Steps::stop_after`]). A rollback takes two: move
    /// the target, then keep its record.
    pub fn steps(&self, steps: Steps) {
        lock(&self.state).steps = steps;
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<RecordedRollback> {
        lock(&self.state).calls.clone()
    }

    /// The calls that changed the target.
    pub fn performed(&self) -> Vec<RecordedRollback> {
        self.calls()
            .into_iter()
            .filter(|c| matches!(c.result, Ok(RollbackOutcome::RolledBack { .. })))
            .collect()
    }
}

#[async_trait]
impl Rollbacker for InMemoryRollbacker {
    fn target(&self) -> &TargetId {
        self.target.id()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE.with_convergence(true)
    }

    async fn rollback(&self, request: &RollbackRequest) -> Result<RollbackOutcome> {
        let to = request.to.id().clone();
        let id = self.target.id().clone();
        let (injected, steps) = {
            let mut s = lock(&self.state);
            (s.failures.pop_front().or(s.fail_always), s.steps.clone())
        };
        let result = match injected {
            Some(kind) => Err(Error::new(
                kind,
                format!("injected {kind} failure rolling back target {id} to {to}"),
            )),
            None if request.dry_run == DryRun::Server => Err(Error::unsupported(format!(
                "target {id} is in memory: there is no server to ask for a dry run; use a client dry run"
            ))),
            None if request.dry_run.is_dry() => {
                self.target
                    .find_revision(&to)
                    .map(|_| RollbackOutcome::DryRun {
                        detail: format!("would roll back {id} to {to}"),
                    })
            }
            None => self.roll(request, &steps).await,
        };
        lock(&self.state).calls.push(RecordedRollback {
            to,
            from: request.from.clone(),
            reason: request.reason.clone(),
            actor: request.actor.clone(),
            dry_run: request.dry_run,
            result: result.as_ref().map(Clone::clone).map_err(|e| e.to_string()),
        });
        result
    }

    async fn wait_converged(
        &self,
        revision: &RevisionId,
        timeout: Duration,
    ) -> Result<Convergence> {
        let (after, fails) = {
            let s = lock(&self.state);
            (s.converge_after, s.convergence_fails.clone())
        };
        if let Some(detail) = fails {
            return Ok(Convergence::Failed { detail });
        }
        if after > timeout {
            tokio::time::sleep(timeout).await;
            return Ok(Convergence::TimedOut {
                detail: format!(
                    "{revision} needs {} to converge",
                    crate::time::format_duration(after)
                ),
            });
        }
        tokio::time::sleep(after).await;
        if &self.target.current_id() == revision {
            Ok(Convergence::Converged)
        } else {
            Ok(Convergence::Failed {
                detail: format!(
                    "target runs {} instead of {revision}",
                    self.target.current_id()
                ),
            })
        }
    }
}

impl InMemoryRollbacker {
    /// Move the target, then keep the record: two steps, either of which an
    /// interruption may cut short; asked again, the rollback completes.
    async fn roll(&self, request: &RollbackRequest, steps: &Steps) -> Result<RollbackOutcome> {
        let id = self.target.id();
        let to = request.to.id();
        self.target.find_revision(to)?;
        steps.step_paced("move the target").await?;
        let changed = self.target.roll_to(to)?;
        steps.step_paced("keep the rollback record").await?;
        self.target.keep_record(RollbackRecord {
            decided_at: request.decided_at,
            from: request.from.clone(),
            to: to.clone(),
            reason: request.reason.clone(),
        });
        Ok(if changed {
            RollbackOutcome::RolledBack {
                detail: format!("rolled {id} back to {to}"),
            }
        } else {
            RollbackOutcome::AlreadyAt {
                detail: format!("{id} already runs {to}"),
            }
        })
    }
}

impl InMemoryTarget {
    fn find_revision(&self, id: &RevisionId) -> Result<Arc<RevisionRecord>> {
        lock(&self.state)
            .history
            .iter()
            .find(|(r, _)| &r.id == id)
            .map(|(r, _)| r.clone())
            .ok_or_else(|| self.unknown(id))
    }
}

/// One step of a [`ScriptedProbe`]'s script.
#[derive(Debug, Clone, PartialEq)]
pub enum ScriptStep {
    /// A value.
    Value(f64),
    /// A value with a baseline (for relative conditions).
    WithBaseline(f64, f64),
    /// No data.
    NoData,
    /// The probe fails to measure with this message.
    Error(String),
}

impl From<f64> for ScriptStep {
    fn from(v: f64) -> Self {
        ScriptStep::Value(v)
    }
}

impl From<Option<f64>> for ScriptStep {
    fn from(v: Option<f64>) -> Self {
        v.map_or(ScriptStep::NoData, ScriptStep::Value)
    }
}

#[derive(Debug, Default)]
struct Script {
    steps: Vec<ScriptStep>,
    next: usize,
}

#[derive(Debug, Default)]
struct ProbeState {
    default: Script,
    by_revision: BTreeMap<RevisionId, Script>,
    measured: usize,
}

/// A probe that plays a script of values, gaps and errors, per revision.
///
/// Each revision plays its own script (or the default one) in order; when a
/// script runs out its last step repeats. A probe with no script for the
/// revision measured returns an error saying so.
#[derive(Debug, Clone)]
pub struct ScriptedProbe {
    name: String,
    state: Arc<Mutex<ProbeState>>,
}

impl ScriptedProbe {
    /// A probe with no script yet.
    pub fn new(name: impl Into<String>) -> Self {
        ScriptedProbe {
            name: name.into(),
            state: Arc::default(),
        }
    }

    /// The script for every revision without one of its own.
    pub fn script<S: Into<ScriptStep>>(self, steps: impl IntoIterator<Item = S>) -> Self {
        lock(&self.state).default = Script {
            steps: steps.into_iter().map(Into::into).collect(),
            next: 0,
        };
        self
    }

    /// The script for one revision.
    pub fn script_for<S: Into<ScriptStep>>(
        self,
        revision: impl Into<RevisionId>,
        steps: impl IntoIterator<Item = S>,
    ) -> Self {
        lock(&self.state).by_revision.insert(
            revision.into(),
            Script {
                steps: steps.into_iter().map(Into::into).collect(),
                next: 0,
            },
        );
        self
    }

    /// How many measurements were taken.
    pub fn measured(&self) -> usize {
        lock(&self.state).measured
    }
}

#[async_trait]
impl HealthProbe for ScriptedProbe {
    fn name(&self) -> &str {
        &self.name
    }

    async fn measure(&self, context: &ProbeContext) -> Result<Measurement> {
        let mut s = lock(&self.state);
        s.measured += 1;
        let s = &mut *s;
        let script = s
            .by_revision
            .get_mut(&context.revision)
            .unwrap_or(&mut s.default);
        let Some(step) = script
            .steps
            .get(script.next)
            .or(script.steps.last())
            .cloned()
        else {
            return Err(Error::invalid(format!(
                "scripted probe {} has no script for revision {}",
                self.name, context.revision
            )));
        };
        script.next = (script.next + 1).min(script.steps.len());
        match step {
            ScriptStep::Value(v) => Ok(Measurement::value(v)),
            ScriptStep::WithBaseline(v, b) => Ok(Measurement::with_baseline(v, b)),
            ScriptStep::NoData => Ok(Measurement::NO_DATA),
            ScriptStep::Error(msg) => Err(Error::transient(format!("probe {}: {msg}", self.name))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Actor, Timestamp};

    fn target() -> InMemoryTarget {
        InMemoryTarget::new(
            "shop/checkout",
            [RevisionRecord::new("v1"), RevisionRecord::new("v2")],
        )
        .unwrap()
    }

    fn request(t: &InMemoryTarget, to: &str) -> RollbackRequest {
        RollbackRequest::new(Arc::new(RevisionRecord::new(to)), Timestamp::EPOCH)
            .from(t.current_id())
            .reason("test")
            .actor(Actor::engine())
    }

    #[tokio::test]
    async fn history_is_newest_first_and_rollback_moves_to_the_top() {
        let t = target();
        let ids = |h: Vec<HistoryEntry>| {
            h.iter()
                .map(|e| e.revision.id().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(t.history().await.unwrap()), ["v2", "v1"]);
        let r = InMemoryRollbacker::new(&t);
        assert!(matches!(
            r.rollback(&request(&t, "v1")).await.unwrap(),
            RollbackOutcome::RolledBack { .. }
        ));
        assert_eq!(t.current_id().as_str(), "v1");
        assert_eq!(ids(t.history().await.unwrap()), ["v1", "v2"]);
        assert!(matches!(
            r.rollback(&request(&t, "v1")).await.unwrap(),
            RollbackOutcome::AlreadyAt { .. }
        ));
        assert_eq!(r.performed().len(), 1);
        assert_eq!(r.calls().len(), 2);
    }

    #[tokio::test]
    async fn unknown_revisions_and_injected_failures_change_nothing() {
        let t = target();
        let r = InMemoryRollbacker::new(&t);
        let e = r.rollback(&request(&t, "v9")).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(
            e.to_string(),
            "revision v9 is not in the history of target shop/checkout"
        );
        r.fail_next(1, ErrorKind::Transient);
        assert!(
            r.rollback(&request(&t, "v1"))
                .await
                .unwrap_err()
                .is_retryable()
        );
        assert_eq!(t.current_id().as_str(), "v2");
        let mut dry = request(&t, "v1");
        dry.dry_run = DryRun::Client;
        assert!(matches!(
            r.rollback(&dry).await.unwrap(),
            RollbackOutcome::DryRun { .. }
        ));
        assert_eq!(t.current_id().as_str(), "v2");
        assert!(InMemoryTarget::new("x", []).is_err());
        assert!(
            InMemoryTarget::new("x", [RevisionRecord::new("a"), RevisionRecord::new("a")]).is_err()
        );
    }

    #[tokio::test]
    async fn scripted_probe_plays_per_revision_and_repeats_the_last_step() {
        let p = ScriptedProbe::new("error_rate").script([0.001]).script_for(
            "v2",
            [
                ScriptStep::Value(0.5),
                ScriptStep::NoData,
                ScriptStep::Error("timeout".into()),
            ],
        );
        let ctx = |rev: &str| ProbeContext {
            target: "t".into(),
            revision: rev.into(),
            at: Timestamp::EPOCH,
        };
        assert_eq!(
            p.measure(&ctx("v2")).await.unwrap(),
            Measurement::value(0.5)
        );
        assert_eq!(p.measure(&ctx("v2")).await.unwrap(), Measurement::NO_DATA);
        assert!(p.measure(&ctx("v2")).await.is_err());
        assert!(
            p.measure(&ctx("v2")).await.is_err(),
            "the last step repeats"
        );
        assert_eq!(
            p.measure(&ctx("v1")).await.unwrap(),
            Measurement::value(0.001)
        );
        assert_eq!(p.measured(), 5);
        let empty = ScriptedProbe::new("x");
        assert!(
            empty
                .measure(&ctx("v1"))
                .await
                .unwrap_err()
                .to_string()
                .contains("no script")
        );
    }
}
