//! The engine: the only async, clock-reading part. It runs probes on
//! schedule, feeds each watch's machine, carries out its decisions through
//! the backends, audits and persists every step.
//!
//! - this file: the [`Engine`] API (watch, command, trigger) and its builder;
//! - `start`: the pure choice between resuming a saved watch and a new one;
//! - `run`: one watch's steps, from its machine's decisions to actions;
//! - `slot`: what a watch shares (phase, inbox) and where its run parks
//!   between steps, with no task;
//! - `timers`: the deadlines of the parked watches, and the one task that
//!   wakes them;
//! - `measure`: one round of measurements;
//! - `rollback`: one rollback carried out through the backend.

mod jitter;
mod measure;
mod rollback;
mod run;
mod slot;
mod start;
mod timers;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::oneshot;

use crate::audit::{AuditEntry, AuditRecord, AuditSink, MemoryAuditSink};
use crate::auth::{AllowAll, Authorizer};
use crate::machine::{Machine, Phase, PhaseKind};
use crate::store::{MemoryStateStore, StateStore};
use crate::time::{Clock, SystemClock};
use crate::{
    Actor, Command, Error, ErrorKind, HealthProbe, Policy, Result, RevisionId, Rollbacker, Target,
    TargetId, Trigger, TriggerOutcome, TriggerSink,
};
use jitter::{Jitter, SeededJitter};
use run::{Wake, WatchRun};
use slot::Slot;
use timers::Timers;

/// What the engine watches: one target, how to roll it back, its probes, and the policy.
#[derive(Debug, Clone)]
pub struct WatchSpec {
    /// The policy (validated by [`Engine::watch`]).
    pub policy: Arc<Policy>,
    /// The target.
    pub target: Arc<dyn Target>,
    /// Its rollbacker: [`Rollbacker::target`] must be this target.
    pub rollbacker: Arc<dyn Rollbacker>,
    /// One probe per probe of the policy, matched by name. Shared by the
    /// spec's clones (a supervisor, a server and the watch each keep one).
    pub probes: Arc<[Arc<dyn HealthProbe>]>,
}

impl WatchSpec {
    /// A watch spec.
    pub fn new(
        policy: impl Into<Arc<Policy>>,
        target: Arc<dyn Target>,
        rollbacker: Arc<dyn Rollbacker>,
        probes: Vec<Arc<dyn HealthProbe>>,
    ) -> Self {
        WatchSpec {
            policy: policy.into(),
            target,
            rollbacker,
            probes: probes.into(),
        }
    }
}

enum Input {
    Command {
        command: Command,
        actor: Actor,
        reply: oneshot::Sender<Result<CommandReceipt>>,
    },
    Trigger {
        trigger: Trigger,
        reply: oneshot::Sender<TriggerOutcome>,
    },
    /// End the watch if it only observes (see [`Engine::supersede`]).
    Supersede { reply: oneshot::Sender<bool> },
}

/// What became of an accepted operator command.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommandReceipt {
    /// The phase after the command (and any rollback it started) was handled.
    pub phase: PhaseKind,
}

struct Running {
    /// The watched revision.
    revision: RevisionId,
    /// Its phase, inbox and (between steps) its run.
    slot: Arc<Slot>,
}

impl Drop for Running {
    /// The engine lets go of the watch: its run reads what is queued, then
    /// ends (a parked run ends at once; an ended watch's run stays parked
    /// for inputs until then).
    fn drop(&mut self) {
        self.slot.close();
    }
}

struct Inner {
    audit: Arc<dyn AuditSink>,
    store: Arc<dyn StateStore>,
    authorizer: Arc<dyn Authorizer>,
    clock: Arc<dyn Clock>,
    jitter: Arc<dyn Jitter>,
    max_jitter: f64,
    watches: Mutex<HashMap<TargetId, Running>>,
    /// The deadlines of the parked watches.
    timers: Arc<Timers>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.timers.stop();
    }
}

impl Inner {
    /// Audit an entry about `target` and its watched `revision`, now. A
    /// failing sink is logged, never stops the engine.
    async fn record(
        &self,
        target: &TargetId,
        revision: &RevisionId,
        actor: Actor,
        entry: AuditEntry,
    ) {
        let record = AuditRecord {
            at: self.clock.now(),
            target: target.clone(),
            revision: revision.clone(),
            actor,
            entry,
        };
        tracing::debug!(target: "rollback::audit", "{record}");
        if let Err(e) = self.audit.record(&record).await {
            tracing::error!(error = %e.full_message(), "audit record could not be stored: {record}");
        }
    }
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("audit", &self.audit)
            .field("store", &self.store)
            .field("authorizer", &self.authorizer)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

/// Supervises many targets in one process. Cheap to clone.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> rollback_core::Result<()> {
/// use std::sync::Arc;
/// use rollback_core::audit::MemoryAuditSink;
/// use rollback_core::memory::{InMemoryRollbacker, InMemoryTarget, ScriptedProbe};
/// use rollback_core::time::TokioClock;
/// use rollback_core::*;
/// let target = InMemoryTarget::new("shop/checkout", [RevisionRecord::new("v1"), RevisionRecord::new("v2")])?;
/// target.set_health(&"v1".into(), RevisionHealth::Good)?;
/// let probe = ScriptedProbe::new("error_rate").script_for("v2", [0.002, 0.09]).script_for("v1", [0.001]);
/// let policy = Policy::from_yaml("interval: 30s\nverify: 1m\nprobes: [{name: error_rate, success: '< 0.01'}]").unwrap();
/// let audit = MemoryAuditSink::new();
/// let engine = Engine::builder().audit(Arc::new(audit.clone())).clock(Arc::new(TokioClock::starting_at(Timestamp::EPOCH))).build();
/// let rollbacker = InMemoryRollbacker::new(&target);
/// let mut handle = engine
///     .watch(WatchSpec::new(policy, Arc::new(target.clone()), Arc::new(rollbacker), vec![Arc::new(probe)]))
///     .await?;
/// let end = handle.finished().await;
/// assert!(matches!(end, Phase::RolledBack { .. }));
/// assert_eq!(target.current_id().as_str(), "v1");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// Builds an [`Engine`].
#[derive(Debug)]
pub struct EngineBuilder {
    audit: Arc<dyn AuditSink>,
    store: Arc<dyn StateStore>,
    authorizer: Arc<dyn Authorizer>,
    clock: Arc<dyn Clock>,
    jitter: Arc<dyn Jitter>,
    max_jitter: f64,
}

impl EngineBuilder {
    /// Where audit records go. Default: in memory.
    pub fn audit(mut self, sink: Arc<dyn AuditSink>) -> Self {
        self.audit = sink;
        self
    }
    /// Where state is persisted. Default: in memory (nothing survives a restart).
    pub fn store(mut self, store: Arc<dyn StateStore>) -> Self {
        self.store = store;
        self
    }
    /// Who may give operator commands. Default: [`AllowAll`].
    pub fn authorizer(mut self, authorizer: Arc<dyn Authorizer>) -> Self {
        self.authorizer = authorizer;
        self
    }
    /// Where time comes from. Default: the system clock. Use a
    /// [`crate::time::TokioClock`] under tokio's paused time.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
    /// Delay each measurement by up to `fraction` of the interval, at random,
    /// so many watches do not query in lockstep. Default 0.1; clamped to [0, 0.5].
    pub fn max_jitter(mut self, fraction: f64) -> Self {
        self.max_jitter = if fraction.is_finite() {
            fraction.clamp(0.0, 0.5)
        } else {
            0.0
        };
        self
    }
    /// Seed the randomness behind jitter and retry backoff: the same seed
    /// gives the same waits, for exact tests. Default: a random seed.
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.jitter = Arc::new(SeededJitter::new(seed));
        self
    }
    /// Build it.
    pub fn build(self) -> Engine {
        Engine {
            inner: Arc::new(Inner {
                audit: self.audit,
                store: self.store,
                authorizer: self.authorizer,
                clock: self.clock,
                jitter: self.jitter,
                max_jitter: self.max_jitter,
                watches: Mutex::new(HashMap::new()),
                timers: Arc::default(),
            }),
        }
    }
}

/// A running watch.
#[derive(Debug)]
pub struct WatchHandle {
    target: TargetId,
    slot: Arc<Slot>,
}

impl WatchHandle {
    /// The target.
    pub fn target(&self) -> &TargetId {
        &self.target
    }

    /// The phase now.
    pub fn phase(&self) -> Phase {
        self.slot.phase()
    }

    /// Wait until the watch reaches a terminal phase and return it.
    pub async fn finished(&mut self) -> Phase {
        self.wait_for(|p| p.kind().is_terminal()).await
    }

    /// Wait until the phase satisfies `f`.
    pub async fn wait_for(&mut self, f: impl FnMut(&Phase) -> bool) -> Phase {
        self.slot.wait_for(f).await
    }
}

impl Default for Engine {
    fn default() -> Self {
        Engine::builder().build()
    }
}

impl Engine {
    /// A builder with in-memory audit and state, [`AllowAll`] and the system clock.
    pub fn builder() -> EngineBuilder {
        EngineBuilder {
            audit: Arc::new(MemoryAuditSink::new()),
            store: Arc::new(MemoryStateStore::new()),
            authorizer: Arc::new(AllowAll),
            clock: Arc::new(SystemClock),
            jitter: Arc::new(SeededJitter::new(fastrand::u64(..))),
            max_jitter: 0.1,
        }
    }

    fn watches(&self) -> std::sync::MutexGuard<'_, HashMap<TargetId, Running>> {
        self.inner.watches.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Start watching the target's current revision, or resume the watch the
    /// state store holds for it.
    ///
    /// - A saved watch about what the target runs now (the judged revision,
    ///   or the one its rollback restores) resumes where it was: an
    ///   interrupted rollback is carried out again, which the rollbacker's
    ///   idempotence turns into a no-op when it had already happened; a watch
    ///   that had ended is not started again, the handle shows its end.
    /// - No saved state, or a saved watch of a revision the target no longer
    ///   runs (someone deployed since): a new watch of the current revision
    ///   starts, keeping what the old one learned (health marks, past
    ///   rollbacks).
    ///
    /// Errors: an invalid policy, a policy probe without a [`HealthProbe`] of
    /// that name, a rollbacker of another target, a target already watched,
    /// a corrupt saved state (the error names the file).
    pub async fn watch(&self, spec: WatchSpec) -> Result<WatchHandle> {
        spec.policy.validate()?;
        let target_id = spec.target.id().clone();
        if spec.rollbacker.target() != &target_id {
            return Err(Error::invalid(format!(
                "the watch of target {target_id} was given the rollbacker of target {}; pair each target with its own rollbacker",
                spec.rollbacker.target()
            )));
        }
        let probes = start::order_probes(&spec.policy, &spec.probes, &target_id)?;
        if let Some(r) = self.watches().get(&target_id)
            && !r.slot.is_ended()
            && !r.slot.with_phase(|p| p.kind().is_terminal())
        {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "target {target_id} is already being watched ({}); wait for it to end first",
                    r.slot.with_phase(Phase::kind)
                ),
            ));
        }
        let saved = self.inner.store.load(&target_id).await?;
        let current = spec.target.current().await?;
        let history = spec.target.history().await?;
        let now = self.inner.clock.now();
        let start = start::choose(saved, &target_id, &*current, &history);
        let resumed = matches!(start, start::Start::Resume(_));
        let machine = match start {
            start::Start::Resume(state) => Machine::resume(spec.policy.clone(), *state)?,
            start::Start::Fresh(watch) => Machine::new(spec.policy.clone(), *watch, now),
        };
        let slot = Arc::new(Slot::new(machine.phase().clone()));
        let mut run = WatchRun::new(
            self.inner.clone(),
            WatchSpec { probes, ..spec },
            machine,
            slot.clone(),
        );
        if resumed {
            let phase = run.machine.phase().kind();
            run.audit(Actor::engine(), AuditEntry::WatchResumed { phase })
                .await;
        } else {
            let dry_run = run.spec.policy.dry_run;
            run.audit(Actor::engine(), AuditEntry::WatchStarted { dry_run })
                .await;
            run.persist().await;
        }
        let revision = run.machine.state().watch.revision.clone();
        // Boxed: it is parked in its slot between steps (and an async fn
        // would keep a second copy of a by-value argument).
        slot.start(Box::new(run), Wake::Start);
        self.watches().insert(
            target_id.clone(),
            Running {
                revision,
                slot: slot.clone(),
            },
        );
        Ok(WatchHandle {
            target: target_id,
            slot,
        })
    }

    /// Stop supervising a target (its saved state stays). Returns whether it was watched.
    pub fn unwatch(&self, target: &TargetId) -> bool {
        match self.watches().remove(target) {
            Some(r) => {
                r.slot.abort();
                true
            }
            None => false,
        }
    }

    /// A new revision supersedes the one watched, as a new rollout aborts
    /// the analysis of the last in Argo Rollouts: the watch ends if it only
    /// observes, decided by the watch itself between two of its steps, so
    /// a breach it is acting on is never cut short. A watch rolling back,
    /// verifying, paused or awaiting approval goes on. Whether it ended (its
    /// saved state stays; a new watch of the target may start at once).
    pub async fn supersede(&self, target: &TargetId) -> bool {
        let Some(slot) = self.sender(target) else {
            return false;
        };
        let (reply, rx) = oneshot::channel();
        if slot
            .send(Box::new(Input::Supersede { reply }))
            .await
            .is_err()
        {
            return false;
        }
        if rx.await != Ok(true) {
            return false;
        }
        // The run answered and ends without another step.
        let mut watches = self.watches();
        if watches
            .get(target)
            .is_some_and(|r| Arc::ptr_eq(&r.slot, &slot))
            && let Some(r) = watches.remove(target)
        {
            r.slot.abort();
        }
        true
    }

    /// The phase of one watched target, without copying the others'.
    pub fn phase(&self, target: &TargetId) -> Option<Phase> {
        self.watches().get(target).map(|r| r.slot.phase())
    }

    /// The phase of each watched target.
    pub fn phases(&self) -> Vec<(TargetId, Phase)> {
        let mut v: Vec<_> = self
            .watches()
            .iter()
            .map(|(t, r)| (t.clone(), r.slot.phase()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    fn sender(&self, target: &TargetId) -> Option<Arc<Slot>> {
        self.watches()
            .get(target)
            .filter(|r| !r.slot.is_ended())
            .map(|r| r.slot.clone())
    }

    /// Give an operator command. The [`Authorizer`] decides first; a denial
    /// is audited and returned as an [`ErrorKind::Unauthorized`] error. A
    /// command the machine cannot take now is an [`ErrorKind::InvalidInput`]
    /// error with the reason; a target this engine does not watch is
    /// [`ErrorKind::NotFound`]. Both are audited too.
    pub async fn command(
        &self,
        target: &TargetId,
        command: Command,
        actor: Actor,
    ) -> Result<CommandReceipt> {
        // The watched revision, when the target is watched.
        let revision = self.watches().get(target).map(|r| r.revision.clone());
        let revision = revision.unwrap_or_else(|| RevisionId::new("-"));
        if let Err(denied) = self
            .inner
            .authorizer
            .authorize(&actor, command.kind(), target)
        {
            let entry = AuditEntry::CommandDenied {
                command: command.kind(),
                reason: denied.reason.clone(),
            };
            self.inner.record(target, &revision, actor, entry).await;
            return Err(Error::new(ErrorKind::Unauthorized, denied.to_string()));
        }
        let Some(tx) = self.sender(target) else {
            let reason = format!("target {target} is not being watched by this engine");
            let entry = AuditEntry::CommandRejected {
                command: command.kind(),
                reason: reason.clone(),
            };
            self.inner.record(target, &revision, actor, entry).await;
            return Err(Error::not_found(reason));
        };
        let (reply, rx) = oneshot::channel();
        tx.send(Box::new(Input::Command {
            command,
            actor,
            reply,
        }))
        .await
        .map_err(|_| Error::permanent(format!("the watch of target {target} has stopped")))?;
        rx.await.map_err(|_| {
            Error::permanent(format!(
                "the watch of target {target} stopped before answering"
            ))
        })?
    }
}

#[async_trait]
impl TriggerSink for Engine {
    async fn trigger(&self, target: &TargetId, trigger: Trigger) -> Result<TriggerOutcome> {
        let Some(tx) = self.sender(target) else {
            return Ok(TriggerOutcome::NoWatch);
        };
        let (reply, rx) = oneshot::channel();
        if tx
            .send(Box::new(Input::Trigger { trigger, reply }))
            .await
            .is_err()
        {
            return Ok(TriggerOutcome::NoWatch);
        }
        Ok(rx.await.unwrap_or(TriggerOutcome::NoWatch))
    }
}
