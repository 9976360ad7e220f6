//! Continuous supervision: every new revision of every target is judged
//! without being asked, as Argo Rollouts and Flagger judge each rollout.
//!
//! A [`Supervisor`] looks at each target's current revision every
//! interval, and within 50 ms when the target says it changed
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

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::changes::Changes;
use crate::{Engine, Error, ErrorKind, Phase, Result, RevisionId, TargetId, WatchSpec, lock};

/// How often the targets' word of changes is looked at.
const WORD_SCAN: Duration = Duration::from_millis(50);

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

/// A supervised target between looks: a few hundred bytes, no task. One
/// scheduler task keeps every target's next look in a heap and starts
/// each look as a task of its own that ends with it; a task a target, as
/// before, cost 0.8 KB a target asleep.
struct Supervised {
    spec: WatchSpec,
    /// Told apart from an earlier supervision of the same target (removed
    /// and added again), whose scheduled looks are then stale.
    generation: u64,
    /// The revision whose watch the supervisor started last.
    watched: Option<RevisionId>,
    noticed: Noticed,
    /// The look in flight, if any.
    look: Option<tokio::task::AbortHandle>,
    /// The target gave word during the look: look again when it ends.
    again: bool,
    /// When the next look is scheduled (other scheduled times are stale).
    next_at: Option<Instant>,
}

/// What the scheduler is told.
enum Schedule {
    /// Look at the target at this time.
    At(Instant, TargetId, u64),
    /// The target's word of changes: look at once when it comes.
    Word(TargetId, u64, Changes),
}

struct Shared {
    engine: Engine,
    interval: Duration,
    targets: Mutex<BTreeMap<TargetId, Supervised>>,
    schedule: mpsc::UnboundedSender<Schedule>,
    generations: AtomicU64,
    /// Bumped on each removal: the scheduler then drops the words of
    /// targets no longer supervised (which stops what the backend runs to
    /// give them).
    removals: AtomicU64,
}

/// Supervises targets on one [`Engine`]: each new revision of each is
/// judged. Dropping the supervisor stops its looks (the engine's watches go
/// on).
pub struct Supervisor {
    shared: Arc<Shared>,
    /// The scheduler's inbox until its task starts (on the first target,
    /// within the runtime).
    inbox: Mutex<Option<mpsc::UnboundedReceiver<Schedule>>>,
    scheduler: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Supervisor")
            .field("interval", &self.shared.interval)
            .field("targets", &self.targets().len())
            .finish_non_exhaustive()
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if let Some(task) = &*lock(&self.scheduler) {
            task.abort();
        }
        for (_, s) in std::mem::take(&mut *self.shared.lock()) {
            if let Some(look) = s.look {
                look.abort();
            }
        }
    }
}

impl Supervisor {
    /// Look at every target each `interval` (at least 1 ms).
    pub fn new(engine: Engine, interval: Duration) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Supervisor {
            shared: Arc::new(Shared {
                engine,
                interval: interval.max(Duration::from_millis(1)),
                targets: Mutex::new(BTreeMap::new()),
                schedule: tx,
                generations: AtomicU64::new(0),
                removals: AtomicU64::new(0),
            }),
            inbox: Mutex::new(Some(rx)),
            scheduler: Mutex::new(None),
        }
    }

    /// Supervise a target. Its first look is at once: a saved watch
    /// resumes. A target already supervised is a `Conflict`. Called within
    /// a tokio runtime.
    pub fn add(&self, spec: WatchSpec) -> Result<()> {
        spec.policy.validate()?;
        let mut targets = self.start().lock();
        let id = spec.target.id().clone();
        if targets.contains_key(&id) {
            return Err(conflict(&id));
        }
        let (entry, first) = self.shared.supervised(spec);
        targets.insert(id, entry);
        drop(targets);
        self.shared.first_looks([first]);
        Ok(())
    }

    /// Supervise these targets, as [`Self::add`] each: what became of each,
    /// in order. The targets' table is built anew with the new ones, so it
    /// holds no room for more (a table grown one target at a time holds
    /// room for almost as many again: 120 bytes a target of 10,000).
    pub fn add_all(&self, specs: Vec<WatchSpec>) -> Vec<Result<()>> {
        let mut targets = self.start().lock();
        let mut fresh = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut firsts = Vec::new();
        let results = specs
            .into_iter()
            .map(|spec| {
                spec.policy.validate()?;
                let id = spec.target.id().clone();
                if targets.contains_key(&id) || !seen.insert(id.clone()) {
                    return Err(conflict(&id));
                }
                let (entry, first) = self.shared.supervised(spec);
                firsts.push(first);
                fresh.push((id, entry));
                Ok(())
            })
            .collect();
        // Collected into a tree at once (sorted, then built with full
        // nodes), which `append` merges with the table the same way.
        let mut fresh: BTreeMap<TargetId, Supervised> = fresh.into_iter().collect();
        targets.append(&mut fresh);
        drop(targets);
        self.shared.first_looks(firsts);
        results
    }

    /// The shared state, with the scheduler started (on the first target,
    /// within the runtime).
    fn start(&self) -> &Shared {
        if let Some(inbox) = lock(&self.inbox).take() {
            *lock(&self.scheduler) = Some(tokio::spawn(schedule(self.shared.clone(), inbox)));
        }
        &self.shared
    }

    /// Stop supervising a target and its watch (its saved state stays, so
    /// adding it again resumes). Whether it was supervised.
    pub fn remove(&self, target: &TargetId) -> bool {
        let Some(s) = self.shared.lock().remove(target) else {
            return false;
        };
        self.shared.removals.fetch_add(1, Ordering::SeqCst);
        if let Some(look) = s.look {
            look.abort();
        }
        self.shared.engine.unwatch(target);
        true
    }

    /// Supervise exactly `specs`: add the targets that are new, remove the
    /// ones that are gone, leave the others undisturbed (a reload of the
    /// watch file). Returns the targets added and removed. A new target
    /// whose policy is invalid is not added, and the first such error is
    /// returned (the other changes are made).
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
        let new: Vec<WatchSpec> = {
            let targets = self.shared.lock();
            wanted
                .into_values()
                .filter(|s| !targets.contains_key(s.target.id()))
                .collect()
        };
        let ids: Vec<TargetId> = new.iter().map(|s| s.target.id().clone()).collect();
        let mut added = Vec::new();
        let mut first_error = None;
        for (id, result) in ids.into_iter().zip(self.add_all(new)) {
            match result {
                Ok(()) => added.push(id),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok((added, gone)),
        }
    }

    /// The targets supervised, sorted.
    pub fn targets(&self) -> Vec<TargetId> {
        self.shared.lock().keys().cloned().collect()
    }

    /// What the last look at the target found, if it is supervised.
    pub fn noticed_of(&self, target: &TargetId) -> Option<Noticed> {
        self.shared.lock().get(target).map(|s| s.noticed.clone())
    }

    /// What the last look at each target found.
    pub fn noticed(&self) -> Vec<(TargetId, Noticed)> {
        self.shared
            .lock()
            .iter()
            .map(|(t, s)| (t.clone(), s.noticed.clone()))
            .collect()
    }
}

/// A new target's id, generation, first look and word of changes.
type FirstLook = (TargetId, u64, Instant, Option<Changes>);

fn conflict(id: &TargetId) -> Error {
    Error::new(
        ErrorKind::Conflict,
        format!("target {id} is already supervised"),
    )
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<TargetId, Supervised>> {
        lock(&self.targets)
    }

    /// A newly supervised target, and its first look (due now) to schedule
    /// once it is in the table, with its word of changes if it gives any.
    fn supervised(&self, spec: WatchSpec) -> (Supervised, FirstLook) {
        let word = spec.target.changes();
        let generation = self.generations.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let first = (spec.target.id().clone(), generation, now, word);
        let entry = Supervised {
            spec,
            generation,
            watched: None,
            noticed: Noticed::Nothing,
            look: None,
            again: false,
            next_at: Some(now),
        };
        (entry, first)
    }

    /// Schedule the first looks of newly supervised targets (once they are
    /// in the table) and their words of changes.
    fn first_looks(&self, firsts: impl IntoIterator<Item = FirstLook>) {
        for (id, generation, at, word) in firsts {
            let _ = self.schedule.send(Schedule::At(at, id.clone(), generation));
            if let Some(word) = word {
                let _ = self.schedule.send(Schedule::Word(id, generation, word));
            }
        }
    }

    /// Start a look at the target unless it is gone, the time is stale (the
    /// look was rescheduled), or a look is in flight (then it looks again
    /// when that one ends). `scheduled`: the time it was scheduled for;
    /// `None`: the target gave word.
    fn start_look(self: &Arc<Self>, id: &TargetId, generation: u64, scheduled: Option<Instant>) {
        let mut targets = self.lock();
        let Some(s) = targets.get_mut(id).filter(|s| s.generation == generation) else {
            return;
        };
        if scheduled.is_some() && s.next_at != scheduled {
            return;
        }
        if s.look.is_some() {
            s.again = true;
            return;
        }
        s.next_at = None;
        let (spec, watched) = (s.spec.clone(), s.watched.clone());
        let shared = self.clone();
        let target = id.clone();
        let task = tokio::spawn(async move {
            let (watched, noticed) = look(&shared.engine, &spec, watched).await;
            if let Some(Noticed::Failed(e)) = &noticed {
                tracing::warn!(target = %target, "cannot supervise: {e}");
            }
            shared.looked(&target, generation, watched, noticed);
        });
        s.look = Some(task.abort_handle());
    }

    /// A look ended: keep what it found, schedule the next.
    fn looked(
        &self,
        id: &TargetId,
        generation: u64,
        watched: Option<RevisionId>,
        noticed: Option<Noticed>,
    ) {
        let mut targets = self.lock();
        let Some(s) = targets.get_mut(id).filter(|s| s.generation == generation) else {
            return;
        };
        s.watched = watched;
        if let Some(n) = noticed {
            s.noticed = n;
        }
        s.look = None;
        let now = Instant::now();
        let at = if std::mem::take(&mut s.again) {
            now
        } else {
            now + self.interval
        };
        s.next_at = Some(at);
        let _ = self.schedule.send(Schedule::At(at, id.clone(), generation));
    }
}

/// The scheduler: each target's next look in a heap, and the targets' word
/// of changes looked at every 50 ms (an atomic load each: 10,000 targets
/// cost a tenth of a millisecond a scan, where a task or a future waiting
/// on each word would cost a few hundred bytes a target).
async fn schedule(shared: Arc<Shared>, mut inbox: mpsc::UnboundedReceiver<Schedule>) {
    let mut due: BinaryHeap<Reverse<(Instant, u64, TargetId)>> = BinaryHeap::new();
    let mut words: Vec<(TargetId, u64, Changes)> = Vec::new();
    let mut removals = shared.removals.load(Ordering::SeqCst);
    let mut scan = tokio::time::interval(WORD_SCAN);
    scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let next = due.peek().map(|Reverse((at, _, _))| *at);
        tokio::select! {
            told = inbox.recv() => match told {
                Some(Schedule::At(at, id, generation)) => due.push(Reverse((at, generation, id))),
                Some(Schedule::Word(id, generation, word)) => words.push((id, generation, word)),
                None => return,
            },
            () = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                let now = Instant::now();
                while let Some(Reverse((at, _, _))) = due.peek()
                    && *at <= now
                {
                    let Some(Reverse((at, generation, id))) = due.pop() else {
                        break;
                    };
                    shared.start_look(&id, generation, Some(at));
                }
            }
            _ = scan.tick(), if !words.is_empty() => {
                let now = shared.removals.load(Ordering::SeqCst);
                if now != removals {
                    removals = now;
                    let targets = shared.lock();
                    words.retain(|(id, generation, _)| {
                        targets.get(id).is_some_and(|s| s.generation == *generation)
                    });
                }
                words.retain_mut(|(id, generation, word)| match word.has_changed() {
                    Ok(true) => {
                        word.mark_seen();
                        shared.start_look(id, *generation, None);
                        true
                    }
                    Ok(false) => true,
                    // The target stopped giving word: it is polled.
                    Err(_) => false,
                });
            }
        }
    }
}

/// One look at a target: start a watch of its revision unless it is
/// watched already. What it watches now, and what to show of the look.
async fn look(
    engine: &Engine,
    spec: &WatchSpec,
    mut watched: Option<RevisionId>,
) -> (Option<RevisionId>, Option<Noticed>) {
    let id = spec.target.id();
    let current = match spec.target.current().await {
        Ok(current) => current.id().clone(),
        Err(e) => return (watched, Some(Noticed::Failed(e.full_message()))),
    };
    // One target's phase: a look must not copy every target's (with 10,000
    // targets, each interval's looks would copy 10^8 phases under the
    // engine's lock).
    let mut phase = engine.phase(id);
    // A deploy while the last one is still being observed supersedes it, as
    // a new rollout aborts the analysis of the last in Argo Rollouts: the
    // old watch stops (its revision no longer runs) and the new revision is
    // judged now, not after the old one's bake time. A watch that is rolling
    // back, verifying or waiting for approval is left to finish: what it
    // does changes what runs.
    if matches!(phase, Some(Phase::Observing { .. }))
        && watched.as_ref().is_some_and(|w| *w != current)
    {
        // The watch decides between two of its steps: one that has just
        // judged a breach goes on to roll back.
        if engine.supersede(id).await {
            tracing::info!(target = %id, revision = %current, "a new revision supersedes the one observed");
            phase = None;
        } else {
            phase = engine.phase(id);
        }
    }
    let busy = phase.as_ref().is_some_and(|p| !p.kind().is_terminal());
    // What a rollback restored is not a new revision: its watch ended
    // rolled back to it.
    if let Some(Phase::RolledBack { to, .. }) = &phase
        && *to == current
    {
        watched = Some(current.clone());
    }
    if watched.as_ref() == Some(&current) || busy {
        return (watched, None);
    }
    match Box::pin(engine.watch(spec.clone())).await {
        Ok(_) => {
            tracing::info!(target = %id, revision = %current, "watching");
            (Some(current.clone()), Some(Noticed::Watching(current)))
        }
        Err(e) => (watched, Some(Noticed::Failed(e.full_message()))),
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

    /// A target whose word of changes the test gives, counting looks.
    #[derive(Debug)]
    struct Worded {
        inner: InMemoryTarget,
        word: crate::changes::ChangeSender,
        looks: Arc<AtomicU64>,
    }

    #[async_trait::async_trait]
    impl crate::Target for Worded {
        fn id(&self) -> &TargetId {
            crate::Target::id(&self.inner)
        }
        async fn current(&self) -> Result<crate::RevisionRef> {
            self.looks.fetch_add(1, Ordering::SeqCst);
            self.inner.current().await
        }
        async fn history(&self) -> Result<Vec<crate::HistoryEntry>> {
            self.inner.history().await
        }
        fn changes(&self) -> Option<Changes> {
            Some(self.word.subscribe())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_word_is_one_look_and_a_removed_target_s_word_is_let_go() {
        let (store, audit) = (MemoryStateStore::new(), MemoryAuditSink::new());
        let inner = InMemoryTarget::new("web", [RevisionRecord::new("v1")]).unwrap();
        let word = crate::changes::ChangeSender::new();
        let looks = Arc::new(AtomicU64::new(0));
        let target = Worded {
            inner: inner.clone(),
            word: word.clone(),
            looks: looks.clone(),
        };
        let e = engine(&store, &audit);
        let s = Supervisor::new(e.clone(), Duration::from_secs(60));
        let probe = ScriptedProbe::new("error_rate").script([0.001]);
        s.add(WatchSpec::new(
            Policy::from_yaml(POLICY).unwrap(),
            Arc::new(target),
            Arc::new(InMemoryRollbacker::new(&inner)),
            vec![Arc::new(probe)],
        ))
        .unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(word.receivers(), 1, "the supervisor holds the word");
        let after_start = looks.load(Ordering::SeqCst);
        // Word, twice before a scan: one look, not one a scan or a word.
        word.send();
        word.send();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(looks.load(Ordering::SeqCst), after_start + 1);
        // Polls go on each interval.
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert_eq!(looks.load(Ordering::SeqCst), after_start + 3);
        assert!(s.remove(&TargetId::new("web")));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(word.receivers(), 0, "a removed target's word is dropped");
        let removed = looks.load(Ordering::SeqCst);
        word.send();
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(
            looks.load(Ordering::SeqCst),
            removed,
            "no look after removal"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn targets_added_together_are_each_judged_and_each_refusal_named() {
        let (store, audit) = (MemoryStateStore::new(), MemoryAuditSink::new());
        let e = engine(&store, &audit);
        let s = Supervisor::new(e.clone(), Duration::from_secs(5));
        let target = |id: &str| InMemoryTarget::new(id, [RevisionRecord::new("v1")]).unwrap();
        let probe = || ScriptedProbe::new("error_rate").script([0.001]);
        let (a, b, c) = (target("a"), target("b"), target("c"));
        s.add(spec(&a, probe())).unwrap();
        let mut invalid = spec(&c, probe());
        let mut policy = (*invalid.policy).clone();
        policy.bake_time = Duration::from_secs(1);
        invalid.policy = Arc::new(policy);
        let results = s.add_all(vec![
            spec(&b, probe()),
            spec(&a, probe()),
            invalid,
            spec(&b, probe()),
            spec(&c, probe()),
        ]);
        let kinds: Vec<Option<ErrorKind>> = results
            .iter()
            .map(|r| r.as_ref().err().map(Error::kind))
            .collect();
        // a was supervised already, b twice in the batch; c's first spec
        // has a bake time shorter than its interval.
        assert!(
            matches!(
                kinds[..],
                [
                    None,
                    Some(ErrorKind::Conflict),
                    Some(_),
                    Some(ErrorKind::Conflict),
                    None
                ]
            ),
            "{results:?}"
        );
        assert!(
            results[2]
                .as_ref()
                .unwrap_err()
                .to_string()
                .contains("bake_time")
        );
        assert_eq!(s.targets(), ["a", "b", "c"].map(TargetId::new));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut started = watches_started(&audit);
        started.sort();
        assert_eq!(started, ["a v1", "b v1", "c v1"]);
        // Each goes on being looked at: a deploy of b is judged.
        b.deploy(RevisionRecord::new("v2"));
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert!(watches_started(&audit).contains(&"b v2".to_owned()));
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
        // Within one scan of the word (50 ms).
        tokio::time::sleep(Duration::from_millis(60)).await;
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
        tokio::time::sleep(Duration::from_millis(60)).await;
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
