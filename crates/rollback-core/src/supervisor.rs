//! Continuous supervision: every new revision of every target is judged
//! without being asked, as Argo Rollouts and Flagger judge each rollout.
//!
//! A [`Supervisor`] looks at each target's current revision every
//! interval, and at once when the target says it changed
//! ([`Target::changes`](crate::Target::changes): a Kubernetes watch, an
//! in-memory deploy). A revision it has not started a watch of gets one
//! ([`Engine::watch`]): a saved watch of it resumes where it was, a watch
//! that had ended stays ended (a revision already judged is not judged
//! again), and a new revision starts a new watch. Targets are added and
//! removed while it runs without disturbing the others.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> rollback_core::Result<()> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use rollback_core::memory::{InMemoryRollbacker, InMemoryTarget, ScriptedProbe};
//! use rollback_core::supervisor::Supervisor;
//! use rollback_core::time::TokioClock;
//! use rollback_core::*;
//! let target = InMemoryTarget::new("shop/checkout", [RevisionRecord::new("v1")])?;
//! let policy = Policy::from_yaml("interval: 10s\nbake_time: 1m\nprobes: [{name: e, success: '< 1'}]").unwrap();
//! let spec = WatchSpec::new(policy, Arc::new(target.clone()), Arc::new(InMemoryRollbacker::new(&target)),
//!     vec![Arc::new(ScriptedProbe::new("e").script([0.0]))]);
//! let engine = Engine::builder().clock(Arc::new(TokioClock::starting_at(Timestamp::EPOCH))).build();
//! let supervisor = Supervisor::new(engine.clone(), Duration::from_secs(5));
//! supervisor.add(spec)?;
//! tokio::time::sleep(Duration::from_secs(90)).await;
//! assert!(matches!(engine.phases()[0].1, Phase::Promoted { .. }));
//! // A deploy: the supervisor notices it and judges v2.
//! target.deploy(RevisionRecord::new("v2"));
//! tokio::time::sleep(Duration::from_secs(10)).await;
//! assert!(matches!(engine.phases()[0].1, Phase::Observing { .. }));
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{Engine, Error, ErrorKind, Phase, Result, RevisionId, TargetId, WatchSpec};

/// What the supervisor did about a target on its last look.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Noticed {
    /// Not looked at yet.
    Nothing,
    /// It runs this revision, and a watch of it was started or resumed.
    Watching(RevisionId),
    /// The look failed (the error's message); the next look tries again.
    Failed(String),
}

struct Supervised {
    task: tokio::task::JoinHandle<()>,
    noticed: Arc<Mutex<Noticed>>,
}

/// Supervises targets on one [`Engine`]: each new revision of each is
/// judged. Dropping the supervisor stops its looks (the engine's watches go
/// on).
pub struct Supervisor {
    engine: Engine,
    interval: Duration,
    targets: Mutex<BTreeMap<TargetId, Supervised>>,
}

impl fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Supervisor")
            .field("interval", &self.interval)
            .field("targets", &self.targets().len())
            .finish_non_exhaustive()
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        for (_, s) in std::mem::take(&mut *self.lock()) {
            s.task.abort();
        }
    }
}

impl Supervisor {
    /// Look at every target each `interval` (at least 1 ms).
    pub fn new(engine: Engine, interval: Duration) -> Self {
        Supervisor {
            engine,
            interval: interval.max(Duration::from_millis(1)),
            targets: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<TargetId, Supervised>> {
        self.targets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Supervise a target. Its first look is at once: a saved watch
    /// resumes. A target already supervised is a `Conflict`.
    pub fn add(&self, spec: WatchSpec) -> Result<()> {
        spec.policy.validate()?;
        let id = spec.target.id().clone();
        let mut targets = self.lock();
        if targets.contains_key(&id) {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("target {id} is already supervised"),
            ));
        }
        let noticed = Arc::new(Mutex::new(Noticed::Nothing));
        let task = tokio::spawn(look_after(
            self.engine.clone(),
            spec,
            self.interval,
            noticed.clone(),
        ));
        targets.insert(id, Supervised { task, noticed });
        Ok(())
    }

    /// Stop supervising a target and its watch (its saved state stays, so
    /// adding it again resumes). Whether it was supervised.
    pub fn remove(&self, target: &TargetId) -> bool {
        let Some(s) = self.lock().remove(target) else {
            return false;
        };
        s.task.abort();
        self.engine.unwatch(target);
        true
    }

    /// Supervise exactly `specs`: add the targets that are new, remove the
    /// ones that are gone, leave the others undisturbed (a reload of the
    /// watch file). Returns the targets added and removed.
    pub fn replace(&self, specs: Vec<WatchSpec>) -> Result<(Vec<TargetId>, Vec<TargetId>)> {
        let wanted: BTreeMap<TargetId, WatchSpec> = specs
            .into_iter()
            .map(|s| (s.target.id().clone(), s))
            .collect();
        let gone: Vec<TargetId> = self
            .targets()
            .into_iter()
            .filter(|t| !wanted.contains_key(t))
            .collect();
        for t in &gone {
            self.remove(t);
        }
        let mut added = Vec::new();
        for (id, spec) in wanted {
            if !self.lock().contains_key(&id) {
                self.add(spec)?;
                added.push(id);
            }
        }
        Ok((added, gone))
    }

    /// The targets supervised, sorted.
    pub fn targets(&self) -> Vec<TargetId> {
        self.lock().keys().cloned().collect()
    }

    /// What the last look at each target found.
    pub fn noticed(&self) -> Vec<(TargetId, Noticed)> {
        self.lock()
            .iter()
            .map(|(t, s)| {
                let n = s.noticed.lock().unwrap_or_else(|e| e.into_inner()).clone();
                (t.clone(), n)
            })
            .collect()
    }
}

/// Look at one target each interval; start a watch of each revision not
/// watched yet.
async fn look_after(
    engine: Engine,
    spec: WatchSpec,
    interval: Duration,
    noticed: Arc<Mutex<Noticed>>,
) {
    let id = spec.target.id().clone();
    let mut watched: Option<RevisionId> = None;
    let mut changes = spec.target.changes();
    loop {
        let now = match spec.target.current().await {
            Ok(current) => {
                let current = current.id().clone();
                // One target's phase: a look must not copy every
                // target's (with 10,000 targets, each interval's looks
                // would copy 10^8 phases under the engine's lock).
                let mut phase = engine.phase(&id);
                // A deploy while the last one is still being observed
                // supersedes it, as a new rollout aborts the analysis of
                // the last in Argo Rollouts: the old watch stops (its
                // revision no longer runs) and the new revision is judged
                // now, not after the old one's bake time. A watch that is
                // rolling back, verifying or waiting for approval is left to
                // finish: what it does changes what runs.
                if matches!(phase, Some(Phase::Observing { .. }))
                    && watched.as_ref().is_some_and(|w| *w != current)
                {
                    tracing::info!(target = %id, revision = %current, "a new revision supersedes the one observed");
                    engine.unwatch(&id);
                    phase = None;
                }
                let busy = phase.as_ref().is_some_and(|p| !p.kind().is_terminal());
                // What a rollback restored is not a new revision: its
                // watch ended rolled back to it.
                if let Some(Phase::RolledBack { to, .. }) = &phase
                    && *to == current
                {
                    watched = Some(current.clone());
                }
                if watched.as_ref() == Some(&current) || busy {
                    None
                } else {
                    // Boxed: this future lives as long as the target is
                    // supervised; the watch's start only while it runs.
                    match Box::pin(engine.watch(spec.clone())).await {
                        Ok(_) => {
                            tracing::info!(target = %id, revision = %current, "watching");
                            watched = Some(current.clone());
                            Some(Noticed::Watching(current))
                        }
                        Err(e) => Some(Noticed::Failed(e.full_message())),
                    }
                }
            }
            Err(e) => Some(Noticed::Failed(e.full_message())),
        };
        if let Some(n) = now {
            if let Noticed::Failed(e) = &n {
                tracing::warn!(target = %id, "cannot supervise: {e}");
            }
            *noticed.lock().unwrap_or_else(|e| e.into_inner()) = n;
        }
        // The next look: after the interval, or at once when the target
        // says it changed (its word is a hint; a target that stops giving
        // it is polled).
        match changes.as_mut() {
            Some(rx) => tokio::select! {
                () = tokio::time::sleep(interval) => {}
                changed = rx.changed() => if changed.is_err() {
                    changes = None;
                },
            },
            None => tokio::time::sleep(interval).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::MemoryAuditSink;
    use crate::memory::{InMemoryRollbacker, InMemoryTarget, ScriptedProbe};
    use crate::store::MemoryStateStore;
    use crate::time::TokioClock;
    use crate::{Policy, RevisionHealth, RevisionRecord, Timestamp};

    const POLICY: &str = "interval: 10s\nbake_time: 1m\nverify: 20s\nprobes: [{name: error_rate, success: '< 0.01'}]";

    fn engine(store: &MemoryStateStore, audit: &MemoryAuditSink) -> Engine {
        Engine::builder()
            .clock(Arc::new(TokioClock::starting_at(Timestamp::EPOCH)))
            .store(Arc::new(store.clone()))
            .audit(Arc::new(audit.clone()))
            .max_jitter(0.0)
            .build()
    }

    fn spec(t: &InMemoryTarget, probe: ScriptedProbe) -> WatchSpec {
        WatchSpec::new(
            Policy::from_yaml(POLICY).unwrap(),
            Arc::new(t.clone()),
            Arc::new(InMemoryRollbacker::new(t)),
            vec![Arc::new(probe)],
        )
    }

    fn phase_of(e: &Engine, id: &str) -> Option<Phase> {
        let one = e.phase(&TargetId::new(id));
        let all = e
            .phases()
            .into_iter()
            .find(|(t, _)| t.as_str() == id)
            .map(|(_, p)| p);
        assert_eq!(one, all, "Engine::phase agrees with Engine::phases");
        one
    }

    fn watches_started(audit: &MemoryAuditSink) -> Vec<String> {
        audit
            .records()
            .iter()
            .filter(|r| matches!(r.entry, crate::audit::AuditEntry::WatchStarted { .. }))
            .map(|r| format!("{} {}", r.target, r.revision))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_target_that_says_it_changed_is_looked_at_at_once() {
        let (store, audit) = (MemoryStateStore::new(), MemoryAuditSink::new());
        let t = InMemoryTarget::new("web", [RevisionRecord::new("v1")]).unwrap();
        let probe = ScriptedProbe::new("error_rate").script([0.001]);
        let e = engine(&store, &audit);
        // An hour between polls: only the target's word can be noticed.
        let s = Supervisor::new(e.clone(), Duration::from_secs(3600));
        s.add(spec(&t, probe)).unwrap();
        tokio::time::sleep(Duration::from_secs(70)).await;
        assert!(matches!(phase_of(&e, "web"), Some(Phase::Promoted { .. })));
        t.deploy(RevisionRecord::new("v2"));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(watches_started(&audit), ["web v1", "web v2"]);
        assert!(matches!(phase_of(&e, "web"), Some(Phase::Observing { .. })));
    }

    #[tokio::test(start_paused = true)]
    async fn a_deploy_during_the_bake_supersedes_the_revision_observed() {
        let (store, audit) = (MemoryStateStore::new(), MemoryAuditSink::new());
        let t = InMemoryTarget::new("web", [RevisionRecord::new("v1")]).unwrap();
        let probe = ScriptedProbe::new("error_rate")
            .script_for("v1", [0.001])
            .script_for("v2", [0.001])
            .script_for("v3", [0.001, 0.05, 0.05]);
        let e = engine(&store, &audit);
        let s = Supervisor::new(e.clone(), Duration::from_secs(5));
        s.add(spec(&t, probe)).unwrap();
        tokio::time::sleep(Duration::from_secs(70)).await;
        t.deploy(RevisionRecord::new("v2"));
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(matches!(phase_of(&e, "web"), Some(Phase::Observing { .. })));
        // v3 ships 20 s into v2's one-minute bake: judged at once, and
        // rolled back to v1 (v2 was never promoted).
        t.deploy(RevisionRecord::new("v3"));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(watches_started(&audit), ["web v1", "web v2", "web v3"]);
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert!(
            matches!(phase_of(&e, "web"), Some(Phase::RolledBack { ref to, .. }) if to.as_str() == "v1"),
            "{:?}",
            phase_of(&e, "web")
        );
        assert_eq!(t.health_of(&"v3".into()), Some(RevisionHealth::Bad));
        assert_eq!(t.health_of(&"v2".into()), Some(RevisionHealth::Unknown));
    }

    #[tokio::test(start_paused = true)]
    async fn every_new_revision_is_judged_once() {
        let (store, audit) = (MemoryStateStore::new(), MemoryAuditSink::new());
        let t = InMemoryTarget::new("web", [RevisionRecord::new("v1")]).unwrap();
        let probe = ScriptedProbe::new("error_rate")
            .script_for("v1", [0.001])
            .script_for("v2", [0.001, 0.05, 0.05])
            .script_for("v3", [0.001]);
        let e = engine(&store, &audit);
        let s = Supervisor::new(e.clone(), Duration::from_secs(5));
        s.add(spec(&t, probe)).unwrap();
        tokio::time::sleep(Duration::from_secs(70)).await;
        assert!(matches!(phase_of(&e, "web"), Some(Phase::Promoted { .. })));

        // v2 ships and breaches: rolled back to v1, which is not judged again.
        t.deploy(RevisionRecord::new("v2"));
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert!(matches!(
            phase_of(&e, "web"),
            Some(Phase::RolledBack { .. })
        ));
        assert_eq!(t.current_id().as_str(), "v1");
        assert_eq!(t.health_of(&"v2".into()), Some(RevisionHealth::Bad));
        // What the rollback restored is not looked at as a new revision:
        // no watch of it is started or resumed.
        assert!(
            !audit
                .records()
                .iter()
                .any(|r| matches!(r.entry, crate::audit::AuditEntry::WatchResumed { .. })),
            "{:?}",
            audit.records()
        );

        // v3 ships: judged and promoted.
        t.deploy(RevisionRecord::new("v3"));
        tokio::time::sleep(Duration::from_secs(90)).await;
        assert!(matches!(phase_of(&e, "web"), Some(Phase::Promoted { .. })));
        assert_eq!(watches_started(&audit), ["web v1", "web v2", "web v3"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_restart_resumes_and_a_reload_disturbs_nobody_else() {
        let (store, audit) = (MemoryStateStore::new(), MemoryAuditSink::new());
        let a = InMemoryTarget::new("a", [RevisionRecord::new("v1")]).unwrap();
        let b = InMemoryTarget::new("b", [RevisionRecord::new("v1")]).unwrap();
        let probe = || ScriptedProbe::new("error_rate").script([0.001]);
        let e = engine(&store, &audit);
        let s = Supervisor::new(e.clone(), Duration::from_secs(5));
        s.add(spec(&a, probe())).unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(matches!(phase_of(&e, "a"), Some(Phase::Observing { .. })));
        let e2 = e.clone();
        drop(s);
        e2.unwatch(&"a".into());

        // A new process on the same store resumes a's watch; a reload adds b.
        let audit2 = MemoryAuditSink::new();
        let e = engine(&store, &audit2);
        let s = Supervisor::new(e.clone(), Duration::from_secs(5));
        s.add(spec(&a, probe())).unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            audit2
                .records()
                .iter()
                .any(|r| matches!(r.entry, crate::audit::AuditEntry::WatchResumed { .. }))
        );
        let (added, gone) = s
            .replace(vec![spec(&a, probe()), spec(&b, probe())])
            .unwrap();
        assert_eq!((added.len(), gone.len()), (1, 0));
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(matches!(phase_of(&e, "a"), Some(Phase::Promoted { .. })));
        let (added, gone) = s.replace(vec![spec(&b, probe())]).unwrap();
        assert_eq!((added, gone), (vec![], vec![TargetId::new("a")]));
        assert_eq!(s.targets(), [TargetId::new("b")]);
        assert!(phase_of(&e, "b").is_some());
        assert!(s.add(spec(&b, probe())).is_err());
    }
}
