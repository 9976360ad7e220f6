//! The async driver: runs probes on schedule, feeds the machine, carries out
//! its decisions through the backends, audits and persists every step.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;

use crate::audit::{AuditEntry, AuditRecord, AuditSink, MemoryAuditSink};
use crate::machine::{Decision, Event, Ignored, Machine, MachineState, Phase, Step, Watch};
use crate::store::{MemoryStateStore, StateStore};
use crate::{
    Actor, AllowAll, Authorizer, Candidate, Clock, Command, Convergence, Error, ErrorKind,
    HealthProbe, Policy, ProbeContext, Result, RevisionHealth, RevisionId, RollbackOutcome,
    RollbackRequest, Rollbacker, SystemClock, Target, TargetId, Trigger, TriggerOutcome,
    TriggerSink,
};

/// A source of randomness for jitter: a number in `[0, 1)`. Inject a fixed
/// one for exact tests.
pub trait Jitter: fmt::Debug + Send + Sync + 'static {
    /// The next number in `[0, 1)`.
    fn unit(&self) -> f64;
}

/// Jitter from a seeded pseudo-random generator.
#[derive(Debug)]
pub struct SeededJitter(Mutex<fastrand::Rng>);

impl SeededJitter {
    /// Seeded with `seed`: the same seed gives the same sequence.
    pub fn new(seed: u64) -> Self {
        SeededJitter(Mutex::new(fastrand::Rng::with_seed(seed)))
    }
}

impl Jitter for SeededJitter {
    fn unit(&self) -> f64 {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).f64()
    }
}

/// What the engine watches: one target, how to roll it back, its probes, and the policy.
#[derive(Debug, Clone)]
pub struct WatchSpec {
    /// The policy (validated by [`Engine::watch`]).
    pub policy: Arc<Policy>,
    /// The target.
    pub target: Arc<dyn Target>,
    /// Its rollbacker.
    pub rollbacker: Arc<dyn Rollbacker>,
    /// One probe per probe of the policy, matched by name.
    pub probes: Vec<Arc<dyn HealthProbe>>,
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
            probes,
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
}

/// What became of an accepted operator command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandReceipt {
    /// The phase after the command (and any rollback it started) was handled.
    pub phase: crate::PhaseKind,
}

struct Running {
    /// The watched revision.
    revision: RevisionId,
    inputs: mpsc::Sender<Input>,
    phase: watch::Receiver<Phase>,
    task: tokio::task::JoinHandle<()>,
}

struct Inner {
    audit: Arc<dyn AuditSink>,
    store: Arc<dyn StateStore>,
    authorizer: Arc<dyn Authorizer>,
    clock: Arc<dyn Clock>,
    jitter: Arc<dyn Jitter>,
    max_jitter: f64,
    watches: Mutex<HashMap<TargetId, Running>>,
}

impl Inner {
    /// Audit an entry about `target` and its watched `revision`, now.
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
        audit(&*self.audit, &record).await;
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
    /// [`crate::TokioClock`] under tokio's paused time.
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
    /// The randomness behind jitter and retry backoff.
    pub fn jitter(mut self, jitter: Arc<dyn Jitter>) -> Self {
        self.jitter = jitter;
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
            }),
        }
    }
}

/// A running watch.
#[derive(Debug)]
pub struct WatchHandle {
    target: TargetId,
    phase: watch::Receiver<Phase>,
}

impl WatchHandle {
    /// The target.
    pub fn target(&self) -> &TargetId {
        &self.target
    }

    /// The phase now.
    pub fn phase(&self) -> Phase {
        self.phase.borrow().clone()
    }

    /// Wait until the watch reaches a terminal phase and return it.
    pub async fn finished(&mut self) -> Phase {
        self.wait_for(|p| p.kind().is_terminal()).await
    }

    /// Wait until the phase satisfies `f`.
    pub async fn wait_for(&mut self, mut f: impl FnMut(&Phase) -> bool) -> Phase {
        let reached = self.phase.wait_for(|p| f(p)).await.map(|p| p.clone());
        reached.unwrap_or_else(|_| self.phase.borrow().clone())
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
    /// that name, a target already watched, a corrupt saved state (the error
    /// names the file).
    pub async fn watch(&self, spec: WatchSpec) -> Result<WatchHandle> {
        spec.policy.validate()?;
        let target_id = spec.target.id().clone();
        let probes = order_probes(&spec.policy, &spec.probes, &target_id)?;
        if let Some(r) = self.watches().get(&target_id)
            && !r.task.is_finished()
            && !r.phase.borrow().kind().is_terminal()
        {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "target {target_id} is already being watched ({}); wait for it to end first",
                    r.phase.borrow().kind()
                ),
            ));
        }
        let saved = self.inner.store.load(&target_id).await?;
        let current = spec.target.current().await?;
        let now = self.inner.clock.now();
        let resumed;
        let machine = match saved {
            Some(state) if concerns(&state, current.id()) => {
                resumed = true;
                Machine::resume(spec.policy.clone(), state)?
            }
            saved => {
                resumed = false;
                let history = spec.target.history().await?;
                let mut candidates: Vec<Candidate> = history
                    .iter()
                    .map(|e| Candidate {
                        id: e.revision.id().clone(),
                        health: e.health,
                    })
                    .collect();
                let mut rollbacks = Vec::new();
                if let Some(old) = saved {
                    // What earlier watches learned outranks "unknown".
                    for c in &mut candidates {
                        if c.health == RevisionHealth::Unknown
                            && let Some(o) = old.watch.history.iter().find(|o| o.id == c.id)
                        {
                            c.health = o.health;
                        }
                    }
                    rollbacks = old.watch.rollbacks;
                }
                let watch = Watch {
                    target: target_id.clone(),
                    revision: current.id().clone(),
                    irreversible: current.is_irreversible(),
                    history: candidates,
                    rollbacks,
                };
                Machine::new(spec.policy.clone(), watch, now)
            }
        };
        let (phase_tx, phase_rx) = watch::channel(machine.phase().clone());
        let (tx, rx) = mpsc::channel(64);
        let mut run = WatchRun {
            engine: self.inner.clone(),
            conditions: spec.policy.rules().iter().map(|r| r.describe()).collect(),
            spec: WatchSpec { probes, ..spec },
            machine,
            phase: phase_tx,
            inputs: rx,
            unsaved: false,
            inputs_open: true,
        };
        if resumed {
            run.audit(
                Actor::engine(),
                AuditEntry::WatchResumed {
                    phase: run.machine.phase().kind(),
                },
            )
            .await;
        } else {
            run.audit(
                Actor::engine(),
                AuditEntry::WatchStarted {
                    dry_run: run.spec.policy.dry_run,
                },
            )
            .await;
            run.persist().await;
        }
        let revision = run.machine.state().watch.revision.clone();
        let span = tracing::info_span!("watch", target = %target_id, revision = %revision);
        let task = tokio::spawn(run.run().instrument(span));
        self.watches().insert(
            target_id.clone(),
            Running {
                revision,
                inputs: tx,
                phase: phase_rx.clone(),
                task,
            },
        );
        Ok(WatchHandle {
            target: target_id,
            phase: phase_rx,
        })
    }

    /// Stop supervising a target (its saved state stays). Returns whether it was watched.
    pub fn unwatch(&self, target: &TargetId) -> bool {
        match self.watches().remove(target) {
            Some(r) => {
                r.task.abort();
                true
            }
            None => false,
        }
    }

    /// The phase of each watched target.
    pub fn phases(&self) -> Vec<(TargetId, Phase)> {
        let mut v: Vec<_> = self
            .watches()
            .iter()
            .map(|(t, r)| (t.clone(), r.phase.borrow().clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    fn sender(&self, target: &TargetId) -> Option<mpsc::Sender<Input>> {
        self.watches()
            .get(target)
            .filter(|r| !r.task.is_finished())
            .map(|r| r.inputs.clone())
    }

    /// Give an operator command. The [`Authorizer`] decides first; a denial
    /// is audited and returned as an [`ErrorKind::Unauthorized`] error. A
    /// command the machine cannot take now is an [`ErrorKind::InvalidInput`]
    /// error with the reason.
    pub async fn command(
        &self,
        target: &TargetId,
        command: Command,
        actor: Actor,
    ) -> Result<CommandReceipt> {
        if let Err(denied) = self
            .inner
            .authorizer
            .authorize(&actor, command.kind(), target)
        {
            // The watched revision, when the target is watched.
            let revision = self.watches().get(target).map(|r| r.revision.clone());
            let revision = revision.unwrap_or_else(|| RevisionId::new("-"));
            let entry = AuditEntry::CommandDenied {
                command: command.kind(),
                reason: denied.reason.clone(),
            };
            self.inner.record(target, &revision, actor, entry).await;
            return Err(Error::new(ErrorKind::Unauthorized, denied.to_string()));
        }
        let Some(tx) = self.sender(target) else {
            return Err(Error::not_found(format!(
                "target {target} is not being watched by this engine"
            )));
        };
        let (reply, rx) = oneshot::channel();
        tx.send(Input::Command {
            command,
            actor,
            reply,
        })
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
        if tx.send(Input::Trigger { trigger, reply }).await.is_err() {
            return Ok(TriggerOutcome::NoWatch);
        }
        Ok(rx.await.unwrap_or(TriggerOutcome::NoWatch))
    }
}

/// Whether a saved watch is about what the target runs now: the judged
/// revision, or the revision a rollback restores (or restored). Otherwise
/// someone deployed something else since, and a new watch starts.
fn concerns(state: &MachineState, current: &RevisionId) -> bool {
    if &state.watch.revision == current {
        return true;
    }
    match &state.phase {
        Phase::RollingBack { to, .. } | Phase::RolledBack { to, .. } => to == current,
        Phase::Verifying { restored, .. } => restored == current,
        _ => false,
    }
}

fn order_probes(
    policy: &Policy,
    probes: &[Arc<dyn HealthProbe>],
    target: &TargetId,
) -> Result<Vec<Arc<dyn HealthProbe>>> {
    for p in probes {
        if policy.probe_index(p.name()).is_none() {
            return Err(Error::invalid(format!(
                "probe {:?} given for target {target} is not in the policy (the policy has: {})",
                p.name(),
                policy
                    .probes
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    policy
        .probes
        .iter()
        .map(|pp| {
            probes.iter().find(|p| p.name() == pp.name).cloned().ok_or_else(|| {
                Error::invalid(format!("the policy's probe {:?} has no HealthProbe of that name for target {target}", pp.name))
            })
        })
        .collect()
}

async fn audit(sink: &dyn AuditSink, record: &AuditRecord) {
    tracing::debug!(target: "rollback::audit", "{record}");
    if let Err(e) = sink.record(record).await {
        tracing::error!(error = %e.full_message(), "audit record could not be stored: {record}");
    }
}

struct WatchRun {
    engine: Arc<Inner>,
    /// The conditions of each probe, as written, for the audit log.
    conditions: Vec<String>,
    spec: WatchSpec,
    machine: Machine,
    phase: watch::Sender<Phase>,
    inputs: mpsc::Receiver<Input>,
    /// Whether the machine handled events since its state was last saved.
    unsaved: bool,
    /// Whether `inputs` is still open (the engine still holds its sender).
    inputs_open: bool,
}

impl WatchRun {
    fn now(&self) -> crate::Timestamp {
        self.engine.clock.now()
    }

    async fn audit(&self, actor: Actor, entry: AuditEntry) {
        let watch = &self.machine.state().watch;
        self.engine
            .record(&watch.target, &watch.revision, actor, entry)
            .await;
    }

    /// Feed the machine an event now; its state is unsaved until [`Self::persist`].
    fn feed(&mut self, event: Event) -> Step {
        self.unsaved = true;
        self.machine.handle(self.now(), event)
    }

    async fn persist(&mut self) {
        // A failed save stays unsaved, so the next chance tries again.
        let saved = self.engine.store.save(self.machine.state()).await;
        self.unsaved = saved.is_err();
        if let Err(e) = saved {
            tracing::error!(error = %e.full_message(), "state could not be persisted");
            self.audit(
                Actor::engine(),
                AuditEntry::StoreFailed {
                    error: e.full_message(),
                },
            )
            .await;
        }
    }

    async fn run(mut self) {
        // A rollback interrupted by a restart is carried out again (idempotently).
        if let Phase::RollingBack { to, by, .. } = self.machine.phase().clone() {
            let from = self.machine.state().watch.revision.clone();
            self.execute_rollback(to, from, "resuming an interrupted rollback".into(), by)
                .await;
        }
        loop {
            let sleep = self.machine.next_deadline().map(|d| {
                let mut wait = d.since(self.now());
                if self.engine.max_jitter > 0.0 && !wait.is_zero() {
                    let max = self.spec.policy.interval.mul_f64(self.engine.max_jitter);
                    wait += max.mul_f64(self.engine.jitter.unit());
                }
                wait
            });
            tokio::select! {
                input = self.inputs.recv() => match input {
                    Some(input) => self.answer(input).await,
                    None => return,
                },
                _ = tokio::time::sleep(sleep.unwrap_or(Duration::ZERO)), if sleep.is_some() => {
                    let step = self.feed(Event::Tick);
                    self.process(step, Actor::engine()).await;
                }
            }
        }
    }

    async fn answer(&mut self, input: Input) {
        match input {
            Input::Command {
                command,
                actor,
                reply,
            } => {
                let result = self.on_command(command, actor).await;
                let _ = reply.send(result);
            }
            Input::Trigger { trigger, reply } => {
                let outcome = self.on_trigger(trigger).await;
                let _ = reply.send(outcome);
            }
        }
    }

    async fn on_command(&mut self, command: Command, actor: Actor) -> Result<CommandReceipt> {
        let text = command.to_string();
        let kind = command.kind();
        let step = self.feed(Event::Command {
            command,
            actor: actor.clone(),
        });
        if let Some(Decision::Rejected { reason, .. }) = &step.decision {
            self.audit(
                actor,
                AuditEntry::CommandRejected {
                    command: kind,
                    reason: reason.clone(),
                },
            )
            .await;
            return Err(Error::invalid(format!(
                "cannot {kind} target {}: {reason}",
                self.machine.state().watch.target
            )));
        }
        self.audit(actor.clone(), AuditEntry::CommandAccepted { command: text })
            .await;
        self.process(step, actor).await;
        Ok(CommandReceipt {
            phase: self.machine.phase().kind(),
        })
    }

    async fn on_trigger(&mut self, trigger: Trigger) -> TriggerOutcome {
        let key = trigger.key.clone();
        let summary = trigger.summary.clone();
        let step = self.feed(Event::Trigger {
            key: trigger.key,
            summary: trigger.summary,
        });
        let outcome = match step.ignored {
            Some(Ignored::DuplicateTrigger) => TriggerOutcome::Duplicate,
            Some(Ignored::NotJudging(p)) => TriggerOutcome::Ignored {
                reason: format!("the watch is {p}"),
            },
            None => TriggerOutcome::Accepted,
        };
        let text = match &outcome {
            TriggerOutcome::Accepted => "accepted".to_owned(),
            TriggerOutcome::Duplicate => "duplicate, ignored".to_owned(),
            TriggerOutcome::Ignored { reason } => format!("ignored: {reason}"),
            TriggerOutcome::NoWatch => "no watch".to_owned(),
        };
        self.audit(
            Actor::new("alert"),
            AuditEntry::TriggerReceived {
                key,
                summary,
                outcome: text,
            },
        )
        .await;
        self.process(step, Actor::engine()).await;
        outcome
    }

    /// Record a step, persist, and carry out its decision (which may feed
    /// further events, processed in turn).
    async fn process(&mut self, step: Step, actor: Actor) {
        let mut next = Some((step, actor));
        while let Some((step, actor)) = next.take() {
            if let Some((from, to)) = step.transition {
                self.audit(actor.clone(), AuditEntry::Transition { from, to })
                    .await;
                self.persist().await;
                // A terminal phase is shown once its decision is carried out
                // (the promoted revision marked good, ...), so whoever waits
                // for the end sees its effects.
                if !to.is_terminal() {
                    self.publish_phase();
                }
            }
            let Some(decision) = step.decision else {
                self.publish_phase();
                continue;
            };
            // Measurements and rejections are audited where they are handled.
            let detail = (!matches!(decision, Decision::Measure | Decision::Rejected { .. }))
                .then(|| describe(&decision));
            if let Some(detail) = &detail {
                let entry = AuditEntry::Decided {
                    decision: kind_of(&decision).into(),
                    detail: detail.clone(),
                };
                self.audit(actor.clone(), entry).await;
            }
            next = match decision {
                Decision::Measure => self.measure().await,
                Decision::Rollback {
                    to,
                    from,
                    reason,
                    actor,
                } => {
                    self.mark(&from, RevisionHealth::Bad, &reason.to_string())
                        .await;
                    self.execute_rollback(to, from, reason.to_string(), actor)
                        .await;
                    None
                }
                Decision::Promote { revision, .. } => {
                    self.mark(
                        &revision,
                        RevisionHealth::Good,
                        "promoted after the bake time",
                    )
                    .await;
                    None
                }
                Decision::Complete {
                    restored,
                    verified: true,
                } => {
                    self.mark(&restored, RevisionHealth::Good, "verified after a rollback")
                        .await;
                    None
                }
                Decision::AwaitApproval { .. } | Decision::WouldRollBack { .. } => {
                    // The watch's span names the target and revision.
                    tracing::warn!("{}", detail.unwrap_or_default());
                    None
                }
                Decision::Escalate { reason } | Decision::Freeze { reason } => {
                    tracing::warn!("{reason}");
                    None
                }
                Decision::Complete { .. } | Decision::Rejected { .. } => None,
            };
            self.publish_phase();
        }
        // Counters changed without a transition: persist them too.
        if self.unsaved {
            self.persist().await;
        }
    }

    fn publish_phase(&self) {
        if *self.phase.borrow() != *self.machine.phase() {
            self.phase.send_replace(self.machine.phase().clone());
        }
    }

    async fn mark(&self, revision: &RevisionId, health: RevisionHealth, reason: &str) {
        if !self.spec.target.capabilities().mark {
            return;
        }
        if let Err(e) = self.spec.target.mark(revision, health, reason).await {
            self.audit(
                Actor::engine(),
                AuditEntry::ActionFailed {
                    action: "mark".into(),
                    error: e.full_message(),
                },
            )
            .await;
        }
    }

    /// Measure every probe concurrently; feed the results in policy order.
    async fn measure(&mut self) -> Option<(Step, Actor)> {
        let ctx = ProbeContext {
            target: self.machine.state().watch.target.clone(),
            revision: self.machine.judged_revision().clone(),
            at: self.now(),
        };
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
                        crate::format_duration(timeout)
                    ))),
                };
                (i, r)
            });
        }
        let mut results: Vec<(usize, Result<crate::Measurement>)> =
            Vec::with_capacity(self.spec.probes.len());
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(r) => results.push(r),
                Err(e) => tracing::error!("a probe task panicked: {e}"),
            }
        }
        results.sort_by_key(|(i, _)| *i);
        for (i, result) in results {
            let name = self.spec.policy.probes[i].name.clone();
            let (event, failed) = match &result {
                Ok(m) => (
                    // The machine judges numbers; the words go to the audit log.
                    Event::Measured {
                        probe: i,
                        measurement: crate::Measurement {
                            value: m.value,
                            baseline: m.baseline,
                            detail: None,
                        },
                    },
                    None,
                ),
                Err(e) => (Event::ProbeError { probe: i }, Some(e.full_message())),
            };
            let step = self.feed(event);
            let entry = match (result, failed) {
                (Ok(m), _) => AuditEntry::Measured {
                    probe: name,
                    judged: ctx.revision.clone(),
                    value: m.value,
                    baseline: m.baseline,
                    verdict: step.verdict.map(|v| v.0),
                    cause: step.verdict.and_then(|v| v.1),
                    against: step.verdict.map(|_| self.conditions[i].clone()),
                    detail: m.detail,
                },
                (Err(_), error) => AuditEntry::ProbeFailed {
                    probe: name,
                    judged: ctx.revision.clone(),
                    error: error.unwrap_or_default(),
                },
            };
            self.audit(Actor::engine(), entry).await;
            if step.decision.is_some() || step.transition.is_some() {
                // The rest of this round is recorded but no longer judged.
                return Some((step, Actor::engine()));
            }
        }
        None
    }

    /// Carry out a rollback with retries, wait for convergence, and feed the
    /// result to the machine.
    async fn execute_rollback(
        &mut self,
        to: RevisionId,
        from: RevisionId,
        reason: String,
        actor: Actor,
    ) {
        let job = RollbackJob {
            engine: self.engine.clone(),
            spec: self.spec.clone(),
            target: self.machine.state().watch.target.clone(),
            watched: self.machine.state().watch.revision.clone(),
        };
        let running = job.run(&to, &from, reason, actor.clone());
        tokio::pin!(running);
        // Operators and alerts get their answer while the rollback runs (the
        // machine rejects or ignores them while rolling back) instead of
        // waiting for convergence.
        let result = loop {
            tokio::select! {
                result = &mut running => break result,
                input = self.inputs.recv(), if self.inputs_open => match input {
                    Some(input) => Box::pin(self.answer(input)).await,
                    None => self.inputs_open = false,
                },
            }
        };
        let event = match result {
            Ok(()) => Event::RollbackSucceeded,
            Err(e) => Event::RollbackFailed { error: e },
        };
        let step = self.feed(event);
        Box::pin(self.process(step, actor)).await;
    }
}

/// One rollback carried out through the backend, independent of the watch's
/// machine so the watch can answer commands meanwhile.
struct RollbackJob {
    engine: Arc<Inner>,
    spec: WatchSpec,
    target: TargetId,
    watched: RevisionId,
}

impl RollbackJob {
    async fn audit(&self, actor: Actor, entry: AuditEntry) {
        self.engine
            .record(&self.target, &self.watched, actor, entry)
            .await;
    }

    async fn run(
        &self,
        to: &RevisionId,
        from: &RevisionId,
        reason: String,
        actor: Actor,
    ) -> std::result::Result<(), String> {
        // Read what the target runs now (retrying passing failures): a
        // rollback must not undo a change nobody judged.
        let target = self.spec.target.clone();
        let jitter = self.engine.jitter.clone();
        let read = self
            .spec
            .policy
            .retry
            .run(
                |_| {
                    let target = target.clone();
                    async move { Ok((target.current().await?, target.history().await?)) }
                },
                || jitter.unit(),
                |_, _, _| {},
            )
            .await;
        let (current, history) = match read {
            Ok(read) => read,
            Err(e) => {
                return Err(format!("cannot read the target: {}", e.full_message()));
            }
        };
        if current.id() != from && current.id() != to {
            return Err(format!(
                "target {} now runs {}, not {from} that was judged: someone changed it meanwhile, so it was not rolled back to {to}; judge the new revision first",
                self.spec.target.id(),
                current.id()
            ));
        }
        let Some(entry) = history.into_iter().find(|e| e.revision.id() == to) else {
            return Err(format!(
                "revision {to} is no longer in the history of target {}",
                self.spec.target.id()
            ));
        };
        let request = RollbackRequest {
            target: self.spec.target.id().clone(),
            from: Some(from.clone()),
            to: entry.revision,
            reason,
            actor: actor.clone(),
            dry_run: false,
        };
        let retry = self.spec.policy.retry;
        let jitter = self.engine.jitter.clone();
        let rollbacker = self.spec.rollbacker.clone();
        let mut attempts = 0;
        let mut retries: Vec<(u32, String, Duration)> = Vec::new();
        let outcome = retry
            .run(
                |attempt| {
                    let rollbacker = rollbacker.clone();
                    let request = request.clone();
                    attempts = attempt;
                    async move { rollbacker.rollback(&request).await }
                },
                || jitter.unit(),
                |attempt, e, wait| {
                    tracing::warn!(attempt, error = %e.full_message(), "rollback failed, retrying in {wait:?}");
                    retries.push((attempt, e.full_message(), wait));
                },
            )
            .await;
        // The retry loop cannot await the sink: audit every try after the fact, in order.
        for attempt in 1..=attempts {
            self.audit(
                actor.clone(),
                AuditEntry::ActionStarted {
                    action: "rollback".into(),
                    revision: to.clone(),
                    attempt,
                },
            )
            .await;
            if let Some((_, error, wait)) = retries.iter().find(|r| r.0 == attempt) {
                let entry = AuditEntry::ActionRetrying {
                    action: "rollback".into(),
                    attempt,
                    error: error.clone(),
                    wait_ms: wait.as_millis() as u64,
                };
                self.audit(actor.clone(), entry).await;
            }
        }
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                let error = e.full_message();
                self.audit(
                    actor,
                    AuditEntry::ActionFailed {
                        action: "rollback".into(),
                        error: error.clone(),
                    },
                )
                .await;
                return Err(error);
            }
        };
        let detail = match &outcome {
            RollbackOutcome::AlreadyAt { detail } => {
                format!("already there, nothing changed: {detail}")
            }
            other => other.detail().to_owned(),
        };
        self.audit(
            actor.clone(),
            AuditEntry::ActionSucceeded {
                action: "rollback".into(),
                detail,
            },
        )
        .await;
        self.audit(
            actor.clone(),
            AuditEntry::ActionStarted {
                action: "wait_converged".into(),
                revision: to.clone(),
                attempt: 1,
            },
        )
        .await;
        match self
            .spec
            .rollbacker
            .wait_converged(to, self.spec.policy.rollback_timeout)
            .await
        {
            Ok(Convergence::Converged) => {
                self.audit(
                    actor,
                    AuditEntry::ActionSucceeded {
                        action: "wait_converged".into(),
                        detail: format!("{to} converged"),
                    },
                )
                .await;
                Ok(())
            }
            Ok(Convergence::TimedOut { detail }) | Ok(Convergence::Failed { detail }) => {
                self.convergence_failed(actor, format!("{to} did not converge: {detail}"))
                    .await
            }
            Err(e) => {
                let error = format!("waiting for {to} to converge: {}", e.full_message());
                self.convergence_failed(actor, error).await
            }
        }
    }

    async fn convergence_failed(
        &self,
        actor: Actor,
        error: String,
    ) -> std::result::Result<(), String> {
        let entry = AuditEntry::ActionFailed {
            action: "wait_converged".into(),
            error: error.clone(),
        };
        self.audit(actor, entry).await;
        Err(error)
    }
}

/// The kind of a decision, as audited.
pub fn kind_of(d: &Decision) -> &'static str {
    match d {
        Decision::Measure => "measure",
        Decision::Rollback { .. } => "rollback",
        Decision::AwaitApproval { .. } => "await_approval",
        Decision::WouldRollBack { .. } => "would_roll_back",
        Decision::Promote { .. } => "promote",
        Decision::Complete { .. } => "complete",
        Decision::Escalate { .. } => "escalate",
        Decision::Freeze { .. } => "freeze",
        Decision::Rejected { .. } => "rejected",
    }
}

/// A human description of a decision with its reason.
pub fn describe(d: &Decision) -> String {
    match d {
        Decision::Measure => "measure every probe".into(),
        Decision::Rollback {
            to,
            from,
            reason,
            actor,
        } => format!("roll back from {from} to {to} ({actor}): {reason}"),
        Decision::AwaitApproval { to, reason } => {
            format!("rollback to {to} waits for approval: {reason}")
        }
        Decision::WouldRollBack {
            to: Some(to),
            reason,
        } => format!("dry run, would roll back to {to}: {reason}"),
        Decision::WouldRollBack { to: None, reason } => {
            format!("dry run, would roll back but no revision is available: {reason}")
        }
        Decision::Promote { revision, actor } => {
            format!("promote {revision} to known good ({actor})")
        }
        Decision::Complete {
            restored,
            verified: true,
        } => format!("rollback to {restored} verified"),
        Decision::Complete {
            restored,
            verified: false,
        } => format!("rolled back to {restored} (no verification configured)"),
        Decision::Escalate { reason } => format!("escalate to humans: {reason}"),
        Decision::Freeze { reason } => format!("freeze: {reason}"),
        Decision::Rejected { command, reason } => format!("{command} rejected: {reason}"),
    }
}
