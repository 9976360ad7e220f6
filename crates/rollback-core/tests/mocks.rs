//! The mockall mocks (feature `mock`) drive the engine like real backends.
#![cfg(feature = "mock")]

use std::sync::Arc;

use rollback_core::mock::*;
use rollback_core::time::TokioClock;
use rollback_core::*;

#[tokio::test(start_paused = true)]
async fn mocked_backends_plug_into_the_engine() {
    let v1: RevisionRef = Arc::new(RevisionRecord::new("v1"));
    let v2: RevisionRef = Arc::new(RevisionRecord::new("v2"));
    let id = TargetId::new("mocked");

    let mut target = MockTarget::new();
    target.expect_id().return_const(id.clone());
    target
        .expect_capabilities()
        .return_const(Capabilities::NONE);
    let current = v2.clone();
    target
        .expect_current()
        .returning(move || Ok(current.clone()));
    let (h1, h2) = (v1.clone(), v2.clone());
    target.expect_history().returning(move || {
        Ok(vec![
            HistoryEntry::new(h2.clone(), RevisionHealth::Unknown),
            HistoryEntry::new(h1.clone(), RevisionHealth::Good),
        ])
    });

    let mut probe = MockHealthProbe::new();
    probe.expect_name().return_const("error_rate".to_owned());
    probe
        .expect_measure()
        .returning(|_| Ok(Measurement::value(0.5)));

    let mut rollbacker = MockRollbacker::new();
    rollbacker.expect_target().return_const(id.clone());
    rollbacker
        .expect_capabilities()
        .return_const(Capabilities::NONE);
    rollbacker
        .expect_rollback()
        .withf(|r: &RollbackRequest| {
            r.to.id().as_str() == "v1" && r.from.as_ref().is_some_and(|f| f.as_str() == "v2")
        })
        .times(1)
        .returning(|_| {
            Err(Error::new(
                ErrorKind::Unauthorized,
                "rollbacks are not allowed here",
            ))
        });

    let engine = Engine::builder()
        .clock(Arc::new(TokioClock::starting_at(Timestamp::EPOCH)))
        .build();
    let policy = Policy::from_yaml("probes: [{name: error_rate, success: '< 0.01'}]").unwrap();
    let spec = WatchSpec::new(
        policy,
        Arc::new(target),
        Arc::new(rollbacker),
        vec![Arc::new(probe)],
    );
    let end = engine.watch(spec).await.unwrap().finished().await;
    let Phase::Escalated { reason, .. } = end else {
        panic!("{end:?}")
    };
    assert!(
        reason.contains("rollbacks are not allowed here"),
        "{reason}"
    );
}
