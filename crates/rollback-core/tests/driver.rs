//! The driver against the in-memory backends, on tokio's paused clock.

use std::sync::Arc;
use std::time::Duration;

use rollback_core::audit::{AuditEntry, MemoryAuditSink};
use rollback_core::auth::{AllowAll, Authorizer, CommandKind, Grants};
use rollback_core::machine::PhaseKind;
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

struct Fixture {
    target: InMemoryTarget,
    rollbacker: InMemoryRollbacker,
    audit: MemoryAuditSink,
    engine: Engine,
}

fn fixture(store: Arc<dyn StateStore>) -> Fixture {
    let target = InMemoryTarget::new(
        "shop/checkout",
        [RevisionRecord::new("v1"), RevisionRecord::new("v2")],
    )
    .unwrap();
    target
        .set_health(&"v1".into(), RevisionHealth::Good)
        .unwrap();
    let rollbacker = InMemoryRollbacker::new(&target);
    let audit = MemoryAuditSink::new();
    let engine = engine_with(store, audit.clone(), Arc::new(AllowAll));
    Fixture {
        target,
        rollbacker,
        audit,
        engine,
    }
}

fn engine_with(
    store: Arc<dyn StateStore>,
    audit: MemoryAuditSink,
    authorizer: Arc<dyn Authorizer>,
) -> Engine {
    Engine::builder()
        .audit(Arc::new(audit))
        .store(store)
        .authorizer(authorizer)
        .clock(Arc::new(TokioClock::starting_at(
            Timestamp::parse("2026-11-27T12:00:00Z").unwrap(),
        )))
        .jitter_seed(7)
        .build()
}

fn spec(f: &Fixture, policy: &str, probe: ScriptedProbe) -> WatchSpec {
    WatchSpec::new(
        Policy::from_yaml(policy).unwrap(),
        Arc::new(f.target.clone()),
        Arc::new(f.rollbacker.clone()),
        vec![Arc::new(probe)],
    )
}

fn bad_v2() -> ScriptedProbe {
    ScriptedProbe::new("error_rate")
        .script_for("v2", [0.001, 0.002, 0.05])
        .script_for("v1", [0.001])
}

fn events(audit: &MemoryAuditSink) -> Vec<String> {
    audit
        .records()
        .iter()
        .filter_map(|r| match &r.entry {
            AuditEntry::Transition { from, to } => Some(format!("{from}->{to}")),
            AuditEntry::Decided { decision, .. } => Some(format!("decided {decision}")),
            AuditEntry::ActionStarted {
                action, attempt, ..
            } => Some(format!("{action} try {attempt}")),
            AuditEntry::ActionRetrying { action, .. } => Some(format!("{action} retrying")),
            AuditEntry::ActionFailed { action, .. } => Some(format!("{action} failed")),
            AuditEntry::CommandDenied { command, .. } => Some(format!("denied {command}")),
            AuditEntry::CommandAccepted { command, to: None } => {
                Some(format!("accepted {command}"))
            }
            AuditEntry::CommandAccepted {
                command,
                to: Some(to),
            } => Some(format!("accepted {command} to {to}")),
            AuditEntry::TriggerReceived { outcome, .. } => Some(format!("trigger {outcome}")),
            AuditEntry::WatchResumed { phase } => Some(format!("resumed {phase}")),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_breach_rolls_back_verifies_and_audits_every_step() {
    let f = fixture(Arc::new(MemoryStateStore::new()));
    let started = tokio::time::Instant::now();
    let mut h = f.engine.watch(spec(&f, POLICY, bad_v2())).await.unwrap();
    let end = h.finished().await;
    assert!(
        matches!(&end, Phase::RolledBack { to, .. } if to.as_str() == "v1"),
        "{end:?}"
    );
    assert_eq!(f.target.current_id().as_str(), "v1");
    assert_eq!(f.target.health_of(&"v2".into()), Some(RevisionHealth::Bad));
    assert_eq!(f.target.health_of(&"v1".into()), Some(RevisionHealth::Good));
    let performed = f.rollbacker.performed();
    assert_eq!(performed.len(), 1);
    assert_eq!(performed[0].from.as_ref().map(|r| r.as_str()), Some("v2"));
    assert!(
        performed[0]
            .reason
            .contains("probe error_rate failed 1 times (failure_limit 0)"),
        "{}",
        performed[0].reason
    );
    assert_eq!(
        events(&f.audit),
        [
            // The transition is persisted before the decision is carried out.
            "observing->rolling_back",
            "decided rollback",
            "rollback try 1",
            "wait_converged try 1",
            "rolling_back->verifying",
            "verifying->rolled_back",
            "decided complete",
        ]
    );
    // Third measurement at 60s (+ jitter) breaches; verification takes 1m.
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(120) && elapsed < Duration::from_secs(140),
        "{elapsed:?}"
    );
    let measured = f
        .audit
        .records()
        .iter()
        .filter(|r| matches!(r.entry, AuditEntry::Measured { .. }))
        .count();
    assert_eq!(measured, 5, "3 on v2, 2 verifying v1");
    // The rollback's decision carries its breach and revision with their
    // structure, for notifications.
    let decided = f
        .audit
        .records()
        .into_iter()
        .find_map(|r| match r.entry {
            AuditEntry::Decided {
                decision: rollback_core::machine::DecisionKind::Rollback,
                breach,
                to,
                ..
            } => Some((breach, to)),
            _ => None,
        })
        .expect("a rollback decision");
    let Some(rollback_core::machine::Breach::Probe {
        probe,
        limit,
        allowed,
        count,
        value,
        conditions,
        ..
    }) = decided.0
    else {
        panic!("a probe breach: {:?}", decided.0);
    };
    assert_eq!(
        (
            probe.as_str(),
            limit,
            allowed,
            count,
            value,
            conditions.as_str()
        ),
        (
            "error_rate",
            rollback_core::machine::Limit::FailureLimit,
            0,
            1,
            Some(0.05),
            "success < 0.01"
        )
    );
    assert_eq!(decided.1.as_ref().map(|t| t.as_str()), Some("v1"));
}

#[tokio::test(start_paused = true)]
async fn a_healthy_revision_is_promoted_and_nothing_is_rolled_back() {
    let f = fixture(Arc::new(MemoryStateStore::new()));
    let probe = ScriptedProbe::new("error_rate").script([0.001]);
    let end = f
        .engine
        .watch(spec(&f, POLICY, probe))
        .await
        .unwrap()
        .finished()
        .await;
    assert!(matches!(end, Phase::Promoted { .. }), "{end:?}");
    assert!(f.rollbacker.calls().is_empty());
    assert_eq!(f.target.health_of(&"v2".into()), Some(RevisionHealth::Good));
}

#[tokio::test(start_paused = true)]
async fn transient_rollback_errors_are_retried_with_backoff() {
    let f = fixture(Arc::new(MemoryStateStore::new()));
    f.rollbacker.fail_next(2, ErrorKind::Transient);
    let end = f
        .engine
        .watch(spec(&f, POLICY, bad_v2()))
        .await
        .unwrap()
        .finished()
        .await;
    assert!(matches!(end, Phase::RolledBack { .. }), "{end:?}");
    assert_eq!(f.rollbacker.calls().len(), 3);
    assert_eq!(f.rollbacker.performed().len(), 1);
    let ev = events(&f.audit);
    assert_eq!(
        ev.iter().filter(|e| *e == "rollback retrying").count(),
        2,
        "{ev:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_permanent_rollback_error_escalates_without_retrying() {
    let f = fixture(Arc::new(MemoryStateStore::new()));
    f.rollbacker.fail_always(Some(ErrorKind::Unauthorized));
    let end = f
        .engine
        .watch(spec(&f, POLICY, bad_v2()))
        .await
        .unwrap()
        .finished()
        .await;
    let Phase::Escalated { reason, .. } = end else {
        panic!("{end:?}")
    };
    assert!(
        reason.contains("rollback to v1 failed")
            && reason.contains("injected unauthorized failure"),
        "{reason}"
    );
    assert_eq!(f.rollbacker.calls().len(), 1);
    assert_eq!(f.target.current_id().as_str(), "v2");
}

#[tokio::test(start_paused = true)]
async fn manual_approval_waits_for_an_authorized_approver_and_denials_are_audited() {
    let store: Arc<dyn StateStore> = Arc::new(MemoryStateStore::new());
    let mut f = fixture(store.clone());
    let grants = Grants::new().allow(Actor::new("oncall"), [CommandKind::Approve]);
    f.engine = engine_with(store, f.audit.clone(), Arc::new(grants));
    let policy = format!("approval: manual\n{POLICY}");
    let mut h = f.engine.watch(spec(&f, &policy, bad_v2())).await.unwrap();
    h.wait_for(|p| matches!(p, Phase::AwaitingApproval { .. }))
        .await;
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(
        f.rollbacker.calls().is_empty(),
        "never acts without an approver"
    );

    let target = TargetId::new("shop/checkout");
    let e = f
        .engine
        .command(&target, Command::Approve, Actor::new("intern"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized);
    assert!(f.rollbacker.calls().is_empty());
    let e = f
        .engine
        .command(&target, Command::Pause, Actor::new("oncall"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized);

    let receipt = f
        .engine
        .command(&target, Command::Approve, Actor::new("oncall"))
        .await
        .unwrap();
    assert_eq!(receipt.phase, PhaseKind::Verifying);
    assert!(matches!(h.finished().await, Phase::RolledBack { .. }));
    assert_eq!(f.rollbacker.performed()[0].actor, Actor::new("oncall"));
    let ev = events(&f.audit);
    assert!(
        ev.contains(&"denied approve".to_owned()) && ev.contains(&"denied pause".to_owned()),
        "{ev:?}"
    );
    assert!(ev.contains(&"accepted approve".to_owned()), "{ev:?}");
}

#[tokio::test(start_paused = true)]
async fn a_restarted_engine_resumes_an_interrupted_rollback_without_acting_twice() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn StateStore> = Arc::new(FileStateStore::new(dir.path()).unwrap());
    let f = fixture(store.clone());
    // The rollback happens, then the process dies while waiting for convergence.
    f.rollbacker.converge_after(Duration::from_secs(300));
    let mut h = f.engine.watch(spec(&f, POLICY, bad_v2())).await.unwrap();
    h.wait_for(|p| matches!(p, Phase::RollingBack { .. })).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(f.rollbacker.performed().len(), 1);
    let target = TargetId::new("shop/checkout");
    assert!(f.engine.unwatch(&target));

    let audit2 = MemoryAuditSink::new();
    let engine2 = engine_with(store.clone(), audit2.clone(), Arc::new(AllowAll));
    f.rollbacker.converge_after(Duration::ZERO);
    let mut h2 = engine2.watch(spec(&f, POLICY, bad_v2())).await.unwrap();
    let end = h2.finished().await;
    assert!(matches!(end, Phase::RolledBack { .. }), "{end:?}");
    assert_eq!(
        f.rollbacker.performed().len(),
        1,
        "the second try found the rollback done"
    );
    assert_eq!(f.rollbacker.calls().len(), 2);
    assert!(matches!(
        f.rollbacker.calls()[1].result,
        Ok(RollbackOutcome::AlreadyAt { .. })
    ));
    assert_eq!(events(&audit2)[0], "resumed rolling_back");

    // A third start finds the watch ended on the current revision: nothing runs.
    let engine3 = engine_with(store, MemoryAuditSink::new(), Arc::new(AllowAll));
    let h3 = engine3.watch(spec(&f, POLICY, bad_v2())).await.unwrap();
    assert!(matches!(h3.phase(), Phase::RolledBack { .. }));
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(f.rollbacker.calls().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_corrupt_state_file_stops_the_engine_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStateStore::new(dir.path()).unwrap();
    let target = TargetId::new("shop/checkout");
    std::fs::write(store.path_of(&target), b"{\"format\": 1, \"state\": {").unwrap();
    let f = fixture(Arc::new(store.clone()));
    let e = f
        .engine
        .watch(spec(&f, POLICY, bad_v2()))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt);
    assert!(
        e.to_string().contains("shop%2Fcheckout.json") && e.to_string().contains("corrupt"),
        "{e}"
    );
    assert!(
        std::fs::read(store.path_of(&target))
            .unwrap()
            .starts_with(b"{\"format\""),
        "left as it was"
    );
    assert!(f.rollbacker.calls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn repeated_alerts_roll_back_once() {
    let f = fixture(Arc::new(MemoryStateStore::new()));
    let probe = ScriptedProbe::new("error_rate").script([0.001]);
    let mut h = f.engine.watch(spec(&f, POLICY, probe)).await.unwrap();
    let target = TargetId::new("shop/checkout");
    let alert = Trigger {
        key: "fp1@2026-11-27T12:00:10Z".into(),
        summary: "HighErrorRate".into(),
    };
    let first = f.engine.trigger(&target, alert.clone()).await.unwrap();
    assert_eq!(first, TriggerOutcome::Accepted);
    for _ in 0..5 {
        let again = f.engine.trigger(&target, alert.clone()).await.unwrap();
        assert_ne!(again, TriggerOutcome::Accepted);
    }
    assert!(matches!(h.finished().await, Phase::RolledBack { .. }));
    assert_eq!(f.rollbacker.performed().len(), 1);
    let other = f
        .engine
        .trigger(&TargetId::new("nobody"), alert)
        .await
        .unwrap();
    assert_eq!(other, TriggerOutcome::NoWatch);
}

#[tokio::test(start_paused = true)]
async fn dry_run_decides_and_records_but_never_acts() {
    let f = fixture(Arc::new(MemoryStateStore::new()));
    let policy = format!("dry_run: true\n{POLICY}");
    let end = f
        .engine
        .watch(spec(&f, &policy, bad_v2()))
        .await
        .unwrap()
        .finished()
        .await;
    assert!(
        matches!(&end, Phase::DryRunBreached { would_roll_back_to: Some(v), .. } if v.as_str() == "v1"),
        "{end:?}"
    );
    assert!(f.rollbacker.calls().is_empty());
    assert_eq!(f.target.current_id().as_str(), "v2");
    assert!(events(&f.audit).contains(&"decided would_roll_back".to_owned()));
}

#[tokio::test(start_paused = true)]
async fn probes_must_match_the_policy() {
    let f = fixture(Arc::new(MemoryStateStore::new()));
    let e = f
        .engine
        .watch(spec(&f, POLICY, ScriptedProbe::new("latency")))
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("probe \"latency\" given for target shop/checkout is not in the policy"),
        "{e}"
    );
    let mut s = spec(&f, POLICY, bad_v2());
    s.probes = Vec::new().into();
    let e = f.engine.watch(s).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("the policy's probe \"error_rate\" has no HealthProbe"),
        "{e}"
    );
}

#[tokio::test(start_paused = true)]
async fn one_engine_supervises_many_targets() {
    let engine = engine_with(
        Arc::new(MemoryStateStore::new()),
        MemoryAuditSink::new(),
        Arc::new(AllowAll),
    );
    let mut handles = Vec::new();
    let mut targets = Vec::new();
    for (i, region) in ["eu", "us", "ap"].iter().enumerate() {
        let t = InMemoryTarget::new(
            format!("stream/{region}"),
            [
                RevisionRecord::new("codec-1"),
                RevisionRecord::new("codec-2"),
            ],
        )
        .unwrap();
        let bad = i != 1;
        let probe = ScriptedProbe::new("error_rate")
            .script_for("codec-2", [if bad { 0.2 } else { 0.001 }])
            .script([0.001]);
        let r = InMemoryRollbacker::new(&t);
        let spec = WatchSpec::new(
            Policy::from_yaml(POLICY).unwrap(),
            Arc::new(t.clone()),
            Arc::new(r),
            vec![Arc::new(probe)],
        );
        handles.push(engine.watch(spec).await.unwrap());
        targets.push(t);
    }
    for h in &mut handles {
        h.finished().await;
    }
    let now: Vec<_> = targets.iter().map(|t| t.current_id().to_string()).collect();
    assert_eq!(now, ["codec-1", "codec-2", "codec-1"]);
    assert_eq!(engine.phases().len(), 3);
}

/// A probe that says in words what its value stands for.
#[derive(Debug)]
struct Describing;

#[async_trait::async_trait]
impl HealthProbe for Describing {
    fn name(&self) -> &str {
        "error_rate"
    }
    async fn measure(&self, _: &ProbeContext) -> Result<Measurement> {
        Ok(Measurement::value(2.0).with_detail("2 pods in CrashLoopBackOff"))
    }
}

#[tokio::test(start_paused = true)]
async fn a_probes_words_reach_the_audit_log() {
    let f = fixture(Arc::new(MemoryStateStore::new()));
    let policy =
        Policy::from_yaml("verify: 0s\nprobes: [{name: error_rate, failure: '> 0'}]").unwrap();
    let spec = WatchSpec::new(
        policy,
        Arc::new(f.target.clone()),
        Arc::new(f.rollbacker.clone()),
        vec![Arc::new(Describing)],
    );
    let end = f.engine.watch(spec).await.unwrap().finished().await;
    assert!(matches!(end, Phase::RolledBack { .. }), "{end:?}");
    let line = f
        .audit
        .records()
        .iter()
        .find(|r| matches!(r.entry, AuditEntry::Measured { .. }))
        .map(|r| r.describe())
        .unwrap();
    assert_eq!(
        line,
        "error_rate on v2 = 2 (2 pods in CrashLoopBackOff) -> fail (failure condition matched) [failure > 0]"
    );
}

#[tokio::test(start_paused = true)]
async fn a_change_made_during_the_watch_is_never_rolled_back_blindly() {
    let f = fixture(Arc::new(MemoryStateStore::new()));
    let mut h = f.engine.watch(spec(&f, POLICY, bad_v2())).await.unwrap();
    // Someone deploys v3 by hand before the probe's third measurement of v2 fails.
    tokio::time::sleep(Duration::from_secs(45)).await;
    f.target.deploy(RevisionRecord::new("v3"));
    let end = h.finished().await;
    let Phase::Escalated { reason, .. } = end else {
        panic!("{end:?}")
    };
    assert!(
        reason.contains("now runs v3, not v2 that was judged"),
        "{reason}"
    );
    assert!(f.rollbacker.calls().is_empty());
    assert_eq!(f.target.current_id().as_str(), "v3");
}

#[tokio::test(start_paused = true)]
async fn commands_are_answered_while_a_rollback_converges() {
    let f = fixture(Arc::new(MemoryStateStore::new()));
    f.rollbacker.converge_after(Duration::from_secs(300));
    let mut h = f.engine.watch(spec(&f, POLICY, bad_v2())).await.unwrap();
    h.wait_for(|p| matches!(p, Phase::RollingBack { .. })).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let asked = tokio::time::Instant::now();
    let target = TargetId::new("shop/checkout");
    let e = f
        .engine
        .command(&target, Command::Pause, Actor::new("oncall"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("a rollback is in progress"), "{e}");
    let alert = Trigger {
        key: "k".into(),
        summary: "HighErrorRate".into(),
    };
    let outcome = f.engine.trigger(&target, alert).await.unwrap();
    assert!(
        matches!(outcome, TriggerOutcome::Ignored { .. }),
        "{outcome:?}"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "answered at once, not after convergence"
    );
    assert!(matches!(h.finished().await, Phase::RolledBack { .. }));
    assert_eq!(f.rollbacker.performed().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_saved_watch_of_a_revision_no_longer_running_gives_way_to_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn StateStore> = Arc::new(FileStateStore::new(dir.path()).unwrap());
    let f = fixture(store.clone());
    let healthy = || ScriptedProbe::new("error_rate").script([0.001]);
    let h = f.engine.watch(spec(&f, POLICY, healthy())).await.unwrap();
    tokio::time::sleep(Duration::from_secs(40)).await;
    assert!(matches!(h.phase(), Phase::Observing { .. }));
    // The process stops while observing v2; meanwhile v3 is deployed.
    f.engine.unwatch(&TargetId::new("shop/checkout"));
    f.target.deploy(RevisionRecord::new("v3"));

    let audit2 = MemoryAuditSink::new();
    let engine2 = engine_with(store, audit2.clone(), Arc::new(AllowAll));
    let end = engine2
        .watch(spec(&f, POLICY, healthy()))
        .await
        .unwrap()
        .finished()
        .await;
    assert!(matches!(end, Phase::Promoted { .. }), "{end:?}");
    assert_eq!(f.target.health_of(&"v3".into()), Some(RevisionHealth::Good));
    let first = &audit2.records()[0];
    assert_eq!(first.revision.as_str(), "v3");
    assert!(
        matches!(first.entry, AuditEntry::WatchStarted { .. }),
        "{first:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn counts_are_saved_between_transitions() {
    let store = MemoryStateStore::new();
    let f = fixture(Arc::new(store.clone()));
    let probe = ScriptedProbe::new("error_rate").script([0.001]);
    let h = f.engine.watch(spec(&f, POLICY, probe)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(65)).await;
    assert!(matches!(h.phase(), Phase::Observing { .. }));
    let saved = store
        .load(&TargetId::new("shop/checkout"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(saved.counts[0].passes, 3, "measured at 0s, 30s and 60s");
}

/// Targets `t0`..`tN` of one engine, each with its own rollbacker and a
/// healthy v2.
fn many(n: usize) -> Vec<(InMemoryTarget, WatchSpec)> {
    (0..n)
        .map(|i| {
            let target = InMemoryTarget::new(
                format!("t{i}"),
                [RevisionRecord::new("v1"), RevisionRecord::new("v2")],
            )
            .unwrap();
            let rollbacker = InMemoryRollbacker::new(&target);
            let probe = ScriptedProbe::new("error_rate").script([0.001]);
            let spec = WatchSpec::new(
                Policy::from_yaml(POLICY).unwrap(),
                Arc::new(target.clone()),
                Arc::new(rollbacker),
                vec![Arc::new(probe)],
            );
            (target, spec)
        })
        .collect()
}

/// An engine with memory state and audit, and its audit log.
fn memory_engine() -> (Engine, MemoryAuditSink) {
    let audit = MemoryAuditSink::new();
    let engine = engine_with(
        Arc::new(MemoryStateStore::new()),
        audit.clone(),
        Arc::new(AllowAll),
    );
    (engine, audit)
}

fn measured(audit: &MemoryAuditSink, target: &str) -> usize {
    audit
        .records()
        .iter()
        .filter(|r| r.target.as_str() == target && matches!(r.entry, AuditEntry::Measured { .. }))
        .count()
}

#[tokio::test(start_paused = true)]
async fn watches_between_steps_hold_no_task_and_keep_their_schedule() {
    let (engine, audit) = memory_engine();
    let tasks = tokio::runtime::Handle::current().metrics();
    let before = tasks.num_alive_tasks();
    let mut handles = Vec::new();
    for (_, spec) in many(200) {
        handles.push(engine.watch(spec).await.unwrap());
    }
    // At the start and after each of four intervals of 30 s (and the
    // jitter's 3 s at most).
    tokio::time::sleep(Duration::from_secs(125)).await;
    for i in 0..200 {
        assert_eq!(measured(&audit, &format!("t{i}")), 5, "t{i}");
    }
    // Parked between measurements: only the engine's timer runs.
    assert!(
        tasks.num_alive_tasks() <= before + 1,
        "{} tasks alive for 200 watches",
        tasks.num_alive_tasks()
    );
    // A command wakes a parked watch, and its schedule goes on after.
    let t7 = TargetId::new("t7");
    let paused = engine
        .command(&t7, Command::Pause, Actor::new("oncall"))
        .await
        .unwrap();
    assert_eq!(paused.phase, PhaseKind::Paused);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(measured(&audit, "t7"), 5, "paused: no measurement");
    assert_eq!(measured(&audit, "t8"), 7);
    engine
        .command(&t7, Command::Resume, Actor::new("oncall"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(65)).await;
    assert!(measured(&audit, "t7") > 5, "resumed: measured again");
    assert_eq!(measured(&audit, "t8"), 9);
    assert_eq!(handles[7].phase().kind(), PhaseKind::Observing);
}

#[tokio::test(start_paused = true)]
async fn an_unwatched_parked_watch_ends_and_measures_no_more() {
    let (engine, audit) = memory_engine();
    let mut specs = many(2).into_iter();
    let (_, a) = specs.next().unwrap();
    let (_, b) = specs.next().unwrap();
    let mut ha = engine.watch(a).await.unwrap();
    let _hb = engine.watch(b).await.unwrap();
    tokio::time::sleep(Duration::from_secs(35)).await;
    assert_eq!(measured(&audit, "t0"), 2);
    assert!(engine.unwatch(&"t0".into()));
    // Ended at once: the handle sees its last phase.
    let end = tokio::time::timeout(Duration::from_millis(1), ha.finished())
        .await
        .expect("the parked watch ended when unwatched");
    assert_eq!(end.kind(), PhaseKind::Observing);
    assert_eq!(engine.phase(&"t0".into()), None);
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(measured(&audit, "t0"), 2, "no measurement after unwatch");
    assert_eq!(measured(&audit, "t1"), 6, "the other watch goes on");
    // Watched again: a new watch resumes the saved one.
    let (_, a) = many(1).pop().unwrap();
    engine.watch(a).await.unwrap();
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert!(measured(&audit, "t0") > 2);
}

#[tokio::test(start_paused = true)]
async fn each_measurement_records_when_it_was_due_with_the_jitter() {
    let f = fixture(Arc::new(MemoryStateStore::new()));
    let healthy = ScriptedProbe::new("error_rate").script_for("v2", [0.001]);
    let _h = f.engine.watch(spec(&f, POLICY, healthy)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(100)).await;
    let records = f.audit.records();
    let started = records
        .iter()
        .find(|r| matches!(r.entry, AuditEntry::WatchStarted { .. }))
        .unwrap()
        .at;
    let dues: Vec<(Timestamp, Timestamp)> = records
        .iter()
        .filter_map(|r| match &r.entry {
            AuditEntry::Measured { due_at, .. } => Some((due_at.expect("a due time"), r.at)),
            _ => None,
        })
        .collect();
    assert_eq!(dues.len(), 4, "at the start and after each 30 s: {dues:?}");
    assert_eq!(dues[0].0, started, "the first is due at the start");
    let mut jittered = 0;
    for (k, (due, at)) in dues.iter().enumerate().skip(1) {
        // The schedule's time plus up to 10 % of the interval.
        let after = due.since(started).as_millis() - 30_000 * k as u128;
        assert!(
            after <= 3_000,
            "measurement {k} due {after} ms after its slot"
        );
        jittered += usize::from(after > 0);
        // (The timer rounds a deadline up to its next millisecond.)
        assert!(
            at.since(*due) <= Duration::from_millis(1),
            "on the paused clock, judged when due: {at:?} for {due:?}"
        );
    }
    assert!(jittered > 0, "the jitter moved some due times: {dues:?}");
}
