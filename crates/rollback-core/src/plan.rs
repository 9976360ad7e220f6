//! Plans: targets that depend on each other (a frontend on an API on a
//! schema; one service in several regions) judged as one change.
//!
//! A breach of the change on any target rolls back every target that runs
//! it, **dependents before what they depend on**, one at a time, each
//! verified before the next starts; targets that do not run the change are
//! left alone (a partial or regional rollback). The change is what each
//! target runs when the plan starts, unless the target's history marks that
//! revision known good (the release has not reached it). When a step fails, the plan
//! stops: the targets not yet rolled back are left for humans, each saying
//! why.
//!
//! Each target's watch runs with `approval: manual`, so that no target
//! rolls back on its own; the plan approves the breached one and asks the
//! others for a rollback, in its order, through [`Engine::command`] (as the
//! actor `rollback-plan`, which the authorizer must allow).
//!
//! ```
//! use rollback_core::plan::rollback_order;
//! use std::collections::BTreeMap;
//! let deps = BTreeMap::from([
//!     ("frontend".into(), vec!["api".into()]),
//!     ("api".into(), vec!["schema".into()]),
//!     ("schema".into(), vec![]),
//! ]);
//! let order = rollback_order(&deps).unwrap();
//! assert_eq!(order, ["frontend".into(), "api".into(), "schema".into()] as [rollback_core::TargetId; 3]);
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::machine::PhaseKind;
use crate::{
    Actor, Approval, Command, Engine, Error, Phase, Result, RevisionId, TargetId, WatchSpec,
};

/// One target of a plan, and the targets it depends on (they are rolled
/// back after it).
#[derive(Debug, Clone)]
pub struct PlanTarget {
    /// The target's watch.
    pub spec: WatchSpec,
    /// The targets this one needs: rolled back after it.
    pub depends_on: Vec<TargetId>,
}

impl PlanTarget {
    /// A target that depends on `depends_on`.
    pub fn new(spec: WatchSpec, depends_on: impl IntoIterator<Item = TargetId>) -> Self {
        PlanTarget {
            spec,
            depends_on: depends_on.into_iter().collect(),
        }
    }
}

/// The order to roll back `deps` (each target with the targets it depends
/// on): every target before the targets it depends on; among targets free
/// to go, in id order, so the order is the same every time. A dependency on
/// a target not listed, or a cycle, is an error naming it.
pub fn rollback_order(deps: &BTreeMap<TargetId, Vec<TargetId>>) -> Result<Vec<TargetId>> {
    for (t, ds) in deps {
        if let Some(d) = ds.iter().find(|d| !deps.contains_key(*d)) {
            return Err(Error::invalid(format!(
                "plan: target {t} depends on {d}, which is not in the plan"
            )));
        }
    }
    // How many targets still to roll back depend on each target.
    let mut waiting: BTreeMap<&TargetId, usize> = deps.keys().map(|t| (t, 0)).collect();
    for ds in deps.values() {
        for d in ds.iter().collect::<BTreeSet<_>>() {
            *waiting.get_mut(d).expect("checked above") += 1;
        }
    }
    let mut free: BTreeSet<&TargetId> = waiting
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(t, _)| *t)
        .collect();
    let mut order = Vec::with_capacity(deps.len());
    while let Some(t) = free.pop_first() {
        order.push(t.clone());
        for d in deps[t].iter().collect::<BTreeSet<_>>() {
            let n = waiting.get_mut(d).expect("checked above");
            *n -= 1;
            if *n == 0 {
                free.insert(d);
            }
        }
    }
    if order.len() < deps.len() {
        let stuck: Vec<String> = waiting
            .iter()
            .filter(|(t, _)| !order.contains(t))
            .map(|(t, _)| t.to_string())
            .collect();
        return Err(Error::invalid(format!(
            "plan: the dependencies of {} form a cycle; a plan needs an order",
            stuck.join(", ")
        )));
    }
    Ok(order)
}

/// What became of one target of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PlanOutcome {
    /// Judged on its own and ended there (promoted, or ended in a phase of
    /// its own): no rollback of the plan touched it.
    Judged(Phase),
    /// Rolled back by the plan (and verified, where the policy verifies).
    RolledBack(Phase),
    /// It ran the change, but an earlier step of the plan failed: left for
    /// humans, as it was.
    Stopped {
        /// Which step failed, and why.
        reason: String,
    },
    /// The plan's rollback of it failed: the plan stopped here.
    Failed(Phase),
}

impl fmt::Display for PlanOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanOutcome::Judged(p) => write!(f, "judged on its own: {}", p.kind()),
            PlanOutcome::RolledBack(p) => write!(f, "rolled back by the plan: {}", p.kind()),
            PlanOutcome::Stopped { reason } => write!(f, "not rolled back: {reason}"),
            PlanOutcome::Failed(p) => write!(f, "its rollback failed: {}", p.kind()),
        }
    }
}

/// What a plan did, per target, in plan order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanReport {
    /// Each target and its outcome.
    pub targets: Vec<(TargetId, PlanOutcome)>,
    /// The order the plan rolled targets back in (empty: no breach).
    pub rolled_back: Vec<TargetId>,
}

/// A set of targets judged as one change. Built with [`Plan::new`], which
/// checks the dependencies.
#[derive(Debug, Clone)]
pub struct Plan {
    targets: Vec<PlanTarget>,
    order: Vec<TargetId>,
}

fn actor() -> Actor {
    Actor::new("rollback-plan")
}

impl Plan {
    /// A plan of `targets`; an error names a duplicate target, an unknown
    /// dependency or a cycle.
    pub fn new(targets: Vec<PlanTarget>) -> Result<Self> {
        let mut deps = BTreeMap::new();
        for t in &targets {
            let id = t.spec.target.id().clone();
            if deps.insert(id.clone(), t.depends_on.clone()).is_some() {
                return Err(Error::invalid(format!("plan: target {id} is listed twice")));
            }
        }
        let order = rollback_order(&deps)?;
        Ok(Plan { targets, order })
    }

    /// The order a breach would roll the targets back in (those that run
    /// the change).
    pub fn order(&self) -> &[TargetId] {
        &self.order
    }

    /// Watch every target on `engine` and carry out the plan until every
    /// watch has ended (or was stopped by the plan and left for humans).
    pub async fn run(self, engine: &Engine) -> Result<PlanReport> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut change: BTreeMap<TargetId, RevisionId> = BTreeMap::new();
        let mut tasks = BTreeMap::new();
        for t in &self.targets {
            let mut policy = (*t.spec.policy).clone();
            policy.approval = Approval::Manual;
            let spec = WatchSpec {
                policy: Arc::new(policy),
                ..t.spec.clone()
            };
            let id = spec.target.id().clone();
            // The change: what it runs now, unless that is known good (a
            // region the release has not reached).
            let current = spec.target.current().await?.id().clone();
            let known_good =
                spec.target.history().await?.iter().any(|e| {
                    e.revision.id() == &current && e.health == crate::RevisionHealth::Good
                });
            if !known_good {
                change.insert(id.clone(), current);
            }
            let handle = engine.watch(spec).await?;
            tasks.insert(
                id.clone(),
                tokio::spawn(report_phases(id, handle, tx.clone())),
            );
        }
        drop(tx);
        let mut ended: BTreeMap<TargetId, Phase> = BTreeMap::new();
        let mut outcomes: BTreeMap<TargetId, PlanOutcome> = BTreeMap::new();
        let mut rolled_back = Vec::new();
        let mut breached = false;
        while let Some((id, phase)) = rx.recv().await {
            if phase.kind().is_terminal() {
                ended.insert(id, phase);
                continue;
            }
            if outcomes.contains_key(&id) {
                continue;
            }
            if breached || !self.runs(&id, &change).await {
                // A breach of its own, outside the change: what the watch
                // would have done without the plan.
                if let Err(e) = engine.command(&id, Command::Approve, actor()).await {
                    tracing::warn!(target = %id, "cannot approve its own rollback: {e}");
                }
                continue;
            }
            breached = true;
            tracing::warn!(target = %id, "the change breached: rolling back every target that runs it, dependents first");
            let mut stop: Option<String> = None;
            for t in self.order.clone() {
                if !self.runs(&t, &change).await {
                    continue;
                }
                if let Some(reason) = &stop {
                    // Left as it is for humans; the plan waits no longer for it.
                    if let Some(task) = tasks.get(&t) {
                        task.abort();
                    }
                    outcomes.insert(
                        t,
                        PlanOutcome::Stopped {
                            reason: reason.clone(),
                        },
                    );
                    continue;
                }
                rolled_back.push(t.clone());
                match self.roll_back(engine, &t).await {
                    Ok(p @ Phase::RolledBack { .. }) => {
                        outcomes.insert(t, PlanOutcome::RolledBack(p));
                    }
                    Ok(p) => {
                        stop = Some(format!("the rollback of {t} ended {}", p.kind()));
                        outcomes.insert(t, PlanOutcome::Failed(p));
                    }
                    Err(e) => {
                        stop = Some(format!("the rollback of {t} was refused: {}", e.message()));
                        if let Some(task) = tasks.get(&t) {
                            task.abort();
                        }
                        outcomes.insert(
                            t,
                            PlanOutcome::Stopped {
                                reason: e.full_message(),
                            },
                        );
                    }
                }
            }
        }
        let targets = self
            .order
            .iter()
            .filter_map(|t| {
                let outcome = outcomes
                    .remove(t)
                    .or_else(|| ended.remove(t).map(PlanOutcome::Judged))?;
                Some((t.clone(), outcome))
            })
            .collect();
        Ok(PlanReport {
            targets,
            rolled_back,
        })
    }

    /// Whether `id` still runs the revision it ran when the plan started.
    async fn runs(&self, id: &TargetId, change: &BTreeMap<TargetId, RevisionId>) -> bool {
        match self.spec_of(id).target.current().await {
            Ok(c) => Some(c.id()) == change.get(id),
            Err(e) => {
                tracing::warn!(target = %id, "cannot read what it runs: {e}");
                false
            }
        }
    }

    fn spec_of(&self, id: &TargetId) -> &WatchSpec {
        &self
            .targets
            .iter()
            .find(|t| t.spec.target.id() == id)
            .expect("the order holds the plan's targets")
            .spec
    }

    /// Approve the target's waiting rollback, or ask for one; wait until
    /// its watch ends.
    async fn roll_back(&self, engine: &Engine, id: &TargetId) -> Result<Phase> {
        let waiting = engine
            .phases()
            .into_iter()
            .any(|(t, p)| &t == id && p.kind() == PhaseKind::AwaitingApproval);
        let command = if waiting {
            Command::Approve
        } else {
            Command::Rollback { to: None }
        };
        engine.command(id, command, actor()).await?;
        loop {
            let phase = engine
                .phases()
                .into_iter()
                .find(|(t, _)| t == id)
                .map(|(_, p)| p);
            match phase {
                Some(p) if p.kind().is_terminal() => return Ok(p),
                Some(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
                None => {
                    return Err(Error::not_found(format!(
                        "target {id} is no longer watched"
                    )));
                }
            }
        }
    }
}

/// Send each breach waiting for approval, and the end, of one watch.
async fn report_phases(
    id: TargetId,
    mut handle: crate::WatchHandle,
    tx: mpsc::UnboundedSender<(TargetId, Phase)>,
) {
    loop {
        let p = handle
            .wait_for(|p| p.kind().is_terminal() || p.kind() == PhaseKind::AwaitingApproval)
            .await;
        let terminal = p.kind().is_terminal();
        if tx.send((id.clone(), p)).is_err() || terminal {
            return;
        }
        handle
            .wait_for(|p| p.kind() != PhaseKind::AwaitingApproval)
            .await;
    }
}

#[cfg(test)]
mod tests;
