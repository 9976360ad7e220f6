//! One watch's steps: from its deadline or an input, feed the machine,
//! audit and persist its step, carry out its decision, then park the run
//! in its slot until the next deadline or input.

use std::sync::Arc;
use std::time::Duration;

use super::rollback::RollbackJob;
use super::slot::{Parked, Slot};
use super::{CommandReceipt, Inner, Input, WatchSpec};
use crate::audit::AuditEntry;
use crate::machine::{Decision, Event, Ignored, Machine, Phase, Step};
use crate::{
    Actor, Command, Error, Mark, Result, RevisionHealth, RevisionId, Timestamp, TriggerOutcome,
};

/// What carries a watch on from its slot.
pub(super) enum Wake {
    /// The watch has just started or resumed.
    Start,
    /// Its deadline has come or an input is queued (its loop sees which).
    Step,
}

type BoxedJob<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;

pub(super) struct WatchRun {
    pub(super) engine: Arc<Inner>,
    pub(super) spec: WatchSpec,
    pub(super) machine: Machine,
    /// The phase published and the inbox, shared with the engine and the
    /// handles; ended when this run is dropped (it ends or is aborted).
    slot: Arc<Slot>,
    /// Whether the machine handled events since its state was last saved.
    unsaved: bool,
    /// Whether the inbox still gives inputs (the engine still holds the watch).
    inputs_open: bool,
    /// The revisions the last event made the machine mark bad, for the
    /// backend's marks when it escalates or freezes.
    newly_bad: Vec<RevisionId>,
    /// When the next measurement is due: the deadline the run parked for
    /// (with the jitter), or the machine's own when it stepped at once.
    pub(super) due_at: Option<Timestamp>,
}

impl Drop for WatchRun {
    fn drop(&mut self) {
        self.slot.end();
    }
}

impl WatchRun {
    pub(super) fn new(
        engine: Arc<Inner>,
        spec: WatchSpec,
        machine: Machine,
        slot: Arc<Slot>,
    ) -> Self {
        WatchRun {
            engine,
            spec,
            machine,
            slot,
            unsaved: false,
            inputs_open: true,
            newly_bad: Vec::new(),
            due_at: None,
        }
    }

    pub(super) fn now(&self) -> Timestamp {
        self.engine.clock.now()
    }

    pub(super) async fn audit(&self, actor: Actor, entry: AuditEntry) {
        let watch = &self.machine.state().watch;
        self.engine
            .record(&watch.target, &watch.revision, actor, entry)
            .await;
    }

    /// Feed the machine an event now; its state is unsaved until [`Self::persist`].
    pub(super) fn feed(&mut self, event: Event) -> Step {
        self.unsaved = true;
        let bad = |m: &Machine| -> Vec<RevisionId> {
            m.state()
                .watch
                .history
                .iter()
                .filter(|c| c.health == RevisionHealth::Bad)
                .map(|c| c.id.clone())
                .collect()
        };
        let before = bad(&self.machine);
        let step = self.machine.handle(self.now(), event);
        self.newly_bad = bad(&self.machine)
            .into_iter()
            .filter(|id| !before.contains(id))
            .collect();
        step
    }

    pub(super) async fn persist(&mut self) {
        // A failed save stays unsaved, so the next chance tries again.
        let saved = self.engine.store.save(self.machine.state()).await;
        self.unsaved = saved.is_err();
        if let Err(e) = saved {
            tracing::error!(error = %e.full_message(), "state could not be persisted");
            let error = e.full_message();
            self.audit(Actor::engine(), AuditEntry::StoreFailed { error })
                .await;
        }
    }

    /// The watch's span for the logs of its steps.
    pub(super) fn span(&self) -> tracing::Span {
        let watch = &self.machine.state().watch;
        tracing::info_span!("watch", target = %watch.target, revision = %watch.revision)
    }

    /// Carry the watch on from `wake` until it has nothing to do before its
    /// next deadline or input, then park it in its slot (ending this task),
    /// or end it.
    pub(super) async fn drive(mut self: Box<Self>, wake: Wake) {
        // What each step does is boxed while it runs, and built in a scope
        // that ends before it is awaited, so this future holds room for
        // neither the largest step nor every value moved into one (a
        // generator keeps a moved-from local's room until its scope ends).
        if let Wake::Start = wake
            && let Some(resume) = self.resume_rollback()
        {
            resume.await;
        }
        // The first step after a wake runs at once: this task was just
        // spawned, at the back of the runtime's queue. Yielding there too
        // put every step of a burst of deadlines through the queue twice.
        let mut first = true;
        loop {
            let yield_first = !std::mem::replace(&mut first, false);
            let job: BoxedJob<'_> = match self.slot.try_recv() {
                // Between two steps: nothing this watch decided is cut short.
                Some(input)
                    if matches!(*input, Input::Supersede { .. })
                        && matches!(self.machine.phase(), Phase::Observing { .. }) =>
                {
                    if let Input::Supersede { reply } = *input {
                        tracing::info!("superseded by a new revision");
                        let _ = reply.send(true);
                    }
                    return;
                }
                Some(input) => {
                    // Woken before the deadline it parked for: that due
                    // time is the machine's again once the input is read.
                    self.due_at = None;
                    Box::pin(self.answer(*input))
                }
                None => match self.wait() {
                    // Due already: step now, after letting the runtime's
                    // other tasks run if this task has stepped already (a
                    // deadline that does not move must not hold a worker).
                    Some(wait) if wait.is_zero() => Box::pin(async {
                        if yield_first {
                            tokio::task::yield_now().await;
                        }
                        if self.due_at.is_none() {
                            self.due_at = self.machine.next_deadline();
                        }
                        let step = self.feed(Event::Tick);
                        self.process(step, Actor::engine()).await;
                    }),
                    wait => {
                        let slot = self.slot.clone();
                        let timers = self.engine.timers.clone();
                        let at = wait.map(|w| tokio::time::Instant::now() + w);
                        self.due_at = wait.map(|w| self.now().plus(w));
                        match slot.park(self, at, &timers) {
                            Parked::Busy(run) => {
                                self = run;
                                continue;
                            }
                            Parked::Yes | Parked::Ended => return,
                        }
                    }
                },
            };
            job.await;
        }
    }

    /// A rollback interrupted by a restart, to carry out again (idempotently).
    fn resume_rollback(&mut self) -> Option<BoxedJob<'_>> {
        let Phase::RollingBack { to, by, since } = self.machine.phase().clone() else {
            return None;
        };
        let from = self.machine.state().watch.revision.clone();
        let reason = match &self.machine.state().breach {
            Some(b) => b.to_string(),
            None => "resuming an interrupted rollback".to_owned(),
        };
        Some(Box::pin(
            self.execute_rollback(to, from, reason, by, since, true),
        ))
    }

    /// How long until the machine's next deadline (with the engine's
    /// jitter), or `None` when it has none (it waits for inputs only).
    fn wait(&self) -> Option<Duration> {
        self.machine.next_deadline().map(|d| {
            let mut wait = d.since(self.now());
            if self.engine.max_jitter > 0.0 && !wait.is_zero() {
                let max = self.spec.policy.interval.mul_f64(self.engine.max_jitter);
                wait += max.mul_f64(self.engine.jitter.unit());
            }
            wait
        })
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
                let outcome = self.on_trigger(trigger.key, trigger.summary).await;
                let _ = reply.send(outcome);
            }
            // Rolling back, verifying, paused, awaiting approval or ended:
            // not superseded (observing is answered in `run`).
            Input::Supersede { reply } => {
                let _ = reply.send(false);
            }
        }
    }

    async fn on_command(&mut self, command: Command, actor: Actor) -> Result<CommandReceipt> {
        let kind = command.kind();
        let to = match &command {
            Command::Rollback { to } => to.clone(),
            _ => None,
        };
        let step = self.feed(Event::Command {
            command,
            actor: actor.clone(),
        });
        if let Some(Decision::Rejected { reason, .. }) = &step.decision {
            let entry = AuditEntry::CommandRejected {
                command: kind,
                reason: reason.clone(),
            };
            self.audit(actor, entry).await;
            return Err(Error::invalid(format!(
                "cannot {kind} target {}: {reason}",
                self.machine.state().watch.target
            )));
        }
        self.audit(
            actor.clone(),
            AuditEntry::CommandAccepted { command: kind, to },
        )
        .await;
        self.process(step, actor).await;
        Ok(CommandReceipt {
            phase: self.machine.phase().kind(),
        })
    }

    async fn on_trigger(&mut self, key: String, summary: String) -> TriggerOutcome {
        let step = self.feed(Event::Trigger {
            key: key.clone(),
            summary: summary.clone(),
        });
        let outcome = match step.ignored {
            Some(Ignored::DuplicateTrigger) => TriggerOutcome::Duplicate,
            Some(Ignored::NotJudging(p)) => TriggerOutcome::Ignored {
                reason: format!("the watch is {p}"),
            },
            _ => TriggerOutcome::Accepted,
        };
        let entry = AuditEntry::TriggerReceived {
            key,
            summary,
            outcome: outcome.clone(),
        };
        self.audit(Actor::new("alert"), entry).await;
        self.process(step, Actor::engine()).await;
        outcome
    }

    /// Record a step, persist, and carry out its decision (which may feed
    /// further events, processed in turn).
    pub(super) async fn process(&mut self, step: Step, actor: Actor) {
        let mut next = Some((step, actor));
        while let Some((step, actor)) = next.take() {
            if let Some((from, to)) = step.transition {
                self.audit(actor.clone(), AuditEntry::Transition { from, to })
                    .await;
                // Saved before anything is carried out: a restart resumes
                // the decision rather than forgetting it.
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
            if !matches!(decision, Decision::Measure | Decision::Rejected { .. }) {
                let (breach, to) = match &decision {
                    Decision::Rollback { to, reason, .. }
                    | Decision::AwaitApproval { to, reason } => {
                        (Some(reason.clone()), Some(to.clone()))
                    }
                    Decision::WouldRollBack { to, reason } => (Some(reason.clone()), to.clone()),
                    Decision::Escalate { .. } | Decision::Freeze { .. } => {
                        (self.machine.state().breach.as_deref().cloned(), None)
                    }
                    _ => (None, None),
                };
                let entry = AuditEntry::Decided {
                    decision: decision.kind(),
                    detail: decision.to_string(),
                    breach,
                    to,
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
                    let reason = reason.to_string();
                    let since = match self.machine.phase() {
                        Phase::RollingBack { since, .. } => *since,
                        _ => self.now(),
                    };
                    // Marked at the decision's time, as the rollback's own
                    // records are, so a backend writes the mark once.
                    self.mark_at(&from, RevisionHealth::Bad, &reason, since)
                        .await;
                    self.execute_rollback(to, from, reason, actor, since, false)
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
                Decision::Escalate { reason } | Decision::Freeze { reason } => {
                    // What the machine now knows is bad, the backend learns
                    // too, so no later choice of last known good picks it.
                    for id in std::mem::take(&mut self.newly_bad) {
                        self.mark(&id, RevisionHealth::Bad, &reason).await;
                    }
                    tracing::warn!("{reason}");
                    None
                }
                d @ (Decision::AwaitApproval { .. } | Decision::WouldRollBack { .. }) => {
                    // The watch's span names the target and revision.
                    tracing::warn!("{d}");
                    None
                }
                _ => None,
            };
            self.publish_phase();
        }
        // Counters changed without a transition: persist them too.
        if self.unsaved {
            self.persist().await;
        }
    }

    fn publish_phase(&self) {
        self.slot.set_phase(self.machine.phase());
    }

    /// Write a health mark to the backend, where it keeps them, now.
    async fn mark(&self, revision: &RevisionId, health: RevisionHealth, reason: &str) {
        self.mark_at(revision, health, reason, self.now()).await;
    }

    /// Write a health mark of the engine's time `at` to the backend.
    async fn mark_at(
        &self,
        revision: &RevisionId,
        health: RevisionHealth,
        reason: &str,
        at: Timestamp,
    ) {
        if !self.spec.target.capabilities().mark {
            return;
        }
        let mark = Mark::new(revision.clone(), health, reason, at);
        let entry = match self.spec.target.mark(&mark).await {
            Ok(()) => AuditEntry::Marked {
                subject: revision.clone(),
                health,
            },
            Err(e) => AuditEntry::ActionFailed {
                action: crate::audit::ActionKind::Mark,
                error: e.full_message(),
            },
        };
        self.audit(Actor::engine(), entry).await;
    }

    /// Carry out a rollback with retries, wait for convergence, and feed the
    /// result to the machine. `decided_at` is the rollback's identity, the
    /// same when a restart resumes it.
    async fn execute_rollback(
        &mut self,
        to: RevisionId,
        from: RevisionId,
        reason: String,
        actor: Actor,
        decided_at: Timestamp,
        resumed: bool,
    ) {
        let job = RollbackJob {
            engine: self.engine.clone(),
            spec: self.spec.clone(),
            target: self.machine.state().watch.target.clone(),
            watched: self.machine.state().watch.revision.clone(),
            actor: actor.clone(),
        };
        let running = job.run(&to, &from, reason, decided_at, resumed);
        tokio::pin!(running);
        // Operators and alerts get their answer while the rollback runs (the
        // machine rejects or ignores them while rolling back) instead of
        // waiting for convergence.
        let result = loop {
            tokio::select! {
                result = &mut running => break result,
                input = self.slot.recv(), if self.inputs_open => match input {
                    Some(input) => Box::pin(self.answer(*input)).await,
                    None => self.inputs_open = false,
                },
            }
        };
        let event = match result {
            Ok(()) => Event::RollbackSucceeded,
            Err(e) => Event::RollbackFailed {
                error: e.full_message(),
            },
        };
        let step = self.feed(event);
        Box::pin(self.process(step, actor)).await;
    }
}
