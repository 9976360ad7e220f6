//! What the engine records and leaves behind around a crash: write-ahead
//! audit, resumed rollbacks, the backend's marks on escalation, commands
//! for targets nobody watches, and a log that reads back and verifies.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rollback_core::audit::{
    ActionKind, AuditEntry, AuditSink, JsonLinesAuditSink, MemoryAuditSink, verify,
};
use rollback_core::memory::{InMemoryRollbacker, InMemoryTarget, ScriptedProbe};
use rollback_core::store::{FileStateStore, MemoryStateStore, StateStore};
use rollback_core::time::TokioClock;
use rollback_core::*;

const POLICY: &str = r#"
interval: 30s
bake_time: 5m
verify: 1m
retry: { max_attempts: 3, initial_backoff: 1s, max_backoff: 4s }
probes:
  - name: error_rate
    success: "< 0.01"
"#;

fn target() -> InMemoryTarget {
    let t = InMemoryTarget::new(
        "shop/checkout",
        [RevisionRecord::new("v1"), RevisionRecord::new("v2")],
    )
    .unwrap();
    t.set_health(&"v1".into(), RevisionHealth::Good).unwrap();
    t
}

fn engine(audit: Arc<dyn AuditSink>, store: Arc<dyn StateStore>) -> Engine {
    Engine::builder()
        .audit(audit)
        .store(store)
        .clock(Arc::new(TokioClock::starting_at(
            Timestamp::parse("2026-11-27T12:00:00Z").unwrap(),
        )))
        .jitter_seed(7)
        .build()
}

fn bad_v2() -> ScriptedProbe {
    ScriptedProbe::new("error_rate")
        .script_for("v2", [0.001, 0.002, 0.05])
        .script_for("v1", [0.001])
}

fn spec(t: &InMemoryTarget, r: Arc<dyn Rollbacker>, probe: ScriptedProbe) -> WatchSpec {
    WatchSpec::new(
        Policy::from_yaml(POLICY).unwrap(),
        Arc::new(t.clone()),
        r,
        vec![Arc::new(probe)],
    )
}

/// A rollbacker that looks at the audit log each time it is called: the
/// record of the call must already be there.
#[derive(Debug)]
struct Witness {
    inner: InMemoryRollbacker,
    audit: MemoryAuditSink,
    /// For each call: the `action_started` attempts already recorded.
    seen: Mutex<Vec<Vec<u32>>>,
}

#[async_trait]
impl Rollbacker for Witness {
    fn target(&self) -> &TargetId {
        self.inner.target()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn rollback(&self, request: &RollbackRequest) -> Result<RollbackOutcome> {
        let started = self
            .audit
            .records()
            .iter()
            .filter_map(|r| match r.entry {
                AuditEntry::ActionStarted {
                    action: ActionKind::Rollback,
                    attempt,
                    ..
                } => Some(attempt),
                _ => None,
            })
            .collect();
        self.seen.lock().unwrap().push(started);
        self.inner.rollback(request).await
    }
    async fn wait_converged(&self, revision: &RevisionId, t: Duration) -> Result<Convergence> {
        self.inner.wait_converged(revision, t).await
    }
}

#[tokio::test(start_paused = true)]
async fn each_rollback_call_is_audited_before_it_is_made() {
    let t = target();
    let inner = InMemoryRollbacker::new(&t);
    inner.fail_next(1, ErrorKind::Transient);
    let audit = MemoryAuditSink::new();
    let witness = Arc::new(Witness {
        inner,
        audit: audit.clone(),
        seen: Mutex::new(Vec::new()),
    });
    let e = engine(Arc::new(audit.clone()), Arc::new(MemoryStateStore::new()));
    let end = e
        .watch(spec(&t, witness.clone(), bad_v2()))
        .await
        .unwrap()
        .finished()
        .await;
    assert!(matches!(end, Phase::RolledBack { .. }), "{end:?}");
    // Try 1 (failed, transient) and try 2 each found their own record.
    assert_eq!(*witness.seen.lock().unwrap(), [vec![1], vec![1, 2]]);
    let order: Vec<String> = audit
        .records()
        .iter()
        .filter_map(|r| match &r.entry {
            AuditEntry::ActionStarted {
                action, attempt, ..
            } => Some(format!("{action} started {attempt}")),
            AuditEntry::ActionRetrying { attempt, .. } => Some(format!("retrying {attempt}")),
            AuditEntry::ActionSucceeded { action, .. } => Some(format!("{action} done")),
            _ => None,
        })
        .collect();
    assert_eq!(
        order,
        [
            "rollback started 1",
            "retrying 1",
            "rollback started 2",
            "rollback done",
            "wait_converged started 1",
            "wait_converged done"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_resumed_rollback_records_what_it_found() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn StateStore> = Arc::new(FileStateStore::new(dir.path()).unwrap());
    let t = target();
    let r = InMemoryRollbacker::new(&t);
    // Killed while the target converges: the move happened.
    r.converge_after(Duration::from_secs(300));
    let first = engine(Arc::new(MemoryAuditSink::new()), store.clone());
    let mut h = first
        .watch(spec(&t, Arc::new(r.clone()), bad_v2()))
        .await
        .unwrap();
    h.wait_for(|p| matches!(p, Phase::RollingBack { .. })).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    first.unwatch(&"shop/checkout".into());

    r.converge_after(Duration::ZERO);
    let audit = MemoryAuditSink::new();
    let second = engine(Arc::new(audit.clone()), store);
    let end = second
        .watch(spec(&t, Arc::new(r.clone()), bad_v2()))
        .await
        .unwrap()
        .finished()
        .await;
    assert!(matches!(end, Phase::RolledBack { .. }), "{end:?}");
    let resumed: Vec<_> = audit
        .records()
        .into_iter()
        .filter(|rec| matches!(rec.entry, AuditEntry::ActionResumed { .. }))
        .collect();
    assert_eq!(resumed.len(), 1);
    assert_eq!(
        resumed[0].describe(),
        "resuming an interrupted rollback to v1: the target runs v1"
    );
    // The same rollback both times: one record of it in the target.
    assert_eq!(t.records().len(), 1);
    assert_eq!(r.performed().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_escalation_marks_the_judged_revision_bad_in_the_backend() {
    // Nothing to roll back to: v1 is known bad.
    let t = target();
    t.set_health(&"v1".into(), RevisionHealth::Bad).unwrap();
    let r = InMemoryRollbacker::new(&t);
    let audit = MemoryAuditSink::new();
    let e = engine(Arc::new(audit.clone()), Arc::new(MemoryStateStore::new()));
    let end = e
        .watch(spec(&t, Arc::new(r.clone()), bad_v2()))
        .await
        .unwrap()
        .finished()
        .await;
    assert!(matches!(end, Phase::Escalated { .. }), "{end:?}");
    assert_eq!(t.health_of(&"v2".into()), Some(RevisionHealth::Bad));
    assert!(r.calls().is_empty());
    assert!(audit.records().iter().any(|rec| matches!(
        &rec.entry,
        AuditEntry::Marked { subject, health: RevisionHealth::Bad } if subject.as_str() == "v2"
    )));

    // A failed verification marks the restored revision bad: the next
    // choice of last known good must not pick it.
    let t = target();
    let r = InMemoryRollbacker::new(&t);
    let probe = ScriptedProbe::new("error_rate")
        .script_for("v2", [0.001, 0.002, 0.05])
        .script_for("v1", [0.09]);
    let e = engine(
        Arc::new(MemoryAuditSink::new()),
        Arc::new(MemoryStateStore::new()),
    );
    let end = e
        .watch(spec(&t, Arc::new(r), probe))
        .await
        .unwrap()
        .finished()
        .await;
    assert!(matches!(end, Phase::Escalated { .. }), "{end:?}");
    assert_eq!(t.health_of(&"v1".into()), Some(RevisionHealth::Bad));
    assert_eq!(t.health_of(&"v2".into()), Some(RevisionHealth::Bad));
}

#[tokio::test(start_paused = true)]
async fn a_command_for_a_target_nobody_watches_is_audited() {
    let audit = MemoryAuditSink::new();
    let e = engine(Arc::new(audit.clone()), Arc::new(MemoryStateStore::new()));
    let err = e
        .command(&"shop/cart".into(), Command::Approve, Actor::new("oncall"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let records = audit.records();
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0].describe(),
        "oncall gave command approve, rejected: target shop/cart is not being watched by this engine"
    );
}

#[tokio::test(start_paused = true)]
async fn a_rollbacker_of_another_target_is_refused() {
    let t = target();
    let other = InMemoryTarget::new("shop/cart", [RevisionRecord::new("v1")]).unwrap();
    let e = engine(
        Arc::new(MemoryAuditSink::new()),
        Arc::new(MemoryStateStore::new()),
    );
    let err = e
        .watch(spec(
            &t,
            Arc::new(InMemoryRollbacker::new(&other)),
            bad_v2(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(
        err.to_string().contains("rollbacker of target shop/cart"),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_engine_s_log_reads_back_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let t = target();
    let r = InMemoryRollbacker::new(&t);
    r.fail_next(1, ErrorKind::Transient);
    let sink = Arc::new(JsonLinesAuditSink::open(&path).await.unwrap());
    let e = engine(sink, Arc::new(MemoryStateStore::new()));
    let end = e
        .watch(spec(&t, Arc::new(r), bad_v2()))
        .await
        .unwrap()
        .finished()
        .await;
    assert!(matches!(end, Phase::RolledBack { .. }), "{end:?}");
    let log = JsonLinesAuditSink::read(&path).unwrap();
    assert!(log.torn_lines.is_empty());
    assert!(log.records.iter().any(|rec| matches!(
        &rec.entry,
        AuditEntry::ActionStarted { action: ActionKind::Rollback, subject, attempt: 2 } if subject.as_str() == "v1"
    )));
    assert!(log.records.iter().any(|rec| matches!(
        &rec.entry,
        AuditEntry::Decided { decision, .. } if decision.as_str() == "rollback"
    )));
    let report = verify(&path).unwrap();
    assert!(report.is_intact(), "{:?}", report.broken);
    assert_eq!(report.records, log.records.len());
}

#[tokio::test(start_paused = true)]
async fn a_watch_is_superseded_only_while_it_observes_never_in_a_rollback() {
    let store: Arc<dyn StateStore> = Arc::new(MemoryStateStore::new());
    let audit = MemoryAuditSink::new();
    let e = engine(Arc::new(audit.clone()), store);
    let id: TargetId = "shop/checkout".into();
    assert!(
        !e.supersede(&id).await,
        "nothing watched: nothing superseded"
    );

    // Observing: superseded, and a new watch may start at once.
    let t = target();
    let r = InMemoryRollbacker::new(&t);
    let healthy = ScriptedProbe::new("error_rate").script([0.001]);
    e.watch(spec(&t, Arc::new(r.clone()), healthy.clone()))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(e.supersede(&id).await);
    assert_eq!(e.phase(&id), None);
    e.watch(spec(&t, Arc::new(r.clone()), healthy))
        .await
        .unwrap();
    assert!(matches!(e.phase(&id), Some(Phase::Observing { .. })));
    e.unwatch(&id);

    // Rolling back (the target converges for five minutes): not superseded,
    // and the rollback ends as it would have.
    let t = target();
    let r = InMemoryRollbacker::new(&t);
    r.converge_after(Duration::from_secs(300));
    let mut h = e
        .watch(spec(&t, Arc::new(r.clone()), bad_v2()))
        .await
        .unwrap();
    h.wait_for(|p| matches!(p, Phase::RollingBack { .. })).await;
    assert!(!e.supersede(&id).await);
    assert!(matches!(e.phase(&id), Some(Phase::RollingBack { .. })));
    let end = h.finished().await;
    assert!(matches!(end, Phase::RolledBack { .. }), "{end:?}");
    assert_eq!(r.performed().len(), 1);
    assert_eq!(t.current_id().as_str(), "v1");
    // Ended: nothing left to supersede.
    assert!(!e.supersede(&id).await);
}
