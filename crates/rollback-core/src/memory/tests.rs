use std::sync::Arc;

use super::*;
use crate::{
    Actor, DryRun, ErrorKind, HealthProbe, HistoryEntry, Measurement, ProbeContext, RevisionRecord,
    RollbackOutcome, RollbackRequest, Rollbacker, Target, Timestamp,
};

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
async fn a_rollbacker_holds_its_state_from_its_first_call_on_and_clones_share_it() {
    let t = target();
    let r = InMemoryRollbacker::new(&t);
    let twin = r.clone();
    assert!(r.calls().is_empty());
    assert!(!r.holds_state(), "nothing held before a call");
    // A setting made through one clone holds for the other.
    twin.fail_next(1, ErrorKind::Transient);
    assert!(r.holds_state());
    assert!(r.rollback(&request(&t, "v1")).await.is_err());
    assert!(r.rollback(&request(&t, "v1")).await.is_ok());
    assert_eq!(twin.calls().len(), 2);
    assert_eq!(t.current_id().as_str(), "v1");
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
async fn fresh_scripted_probes_share_the_scripts_and_play_them_each_from_the_start() {
    let ctx = |rev: &str| ProbeContext {
        target: "t".into(),
        revision: rev.into(),
        at: Timestamp::EPOCH,
    };
    let a = ScriptedProbe::new("e")
        .script([1.0, 2.0])
        .script_for("v2", [5.0, 6.0]);
    assert_eq!(
        a.measure(&ctx("v2")).await.unwrap(),
        Measurement::value(5.0)
    );
    let b = a.fresh("f");
    assert_eq!(b.name(), "f");
    assert_eq!(
        b.measure(&ctx("v2")).await.unwrap(),
        Measurement::value(5.0)
    );
    assert_eq!(
        b.measure(&ctx("v1")).await.unwrap(),
        Measurement::value(1.0)
    );
    assert_eq!(
        a.measure(&ctx("v2")).await.unwrap(),
        Measurement::value(6.0)
    );
    assert_eq!((a.measured(), b.measured()), (2, 2));
    // Scripting the copy changes the copy only.
    let c = b.fresh("g").script_for("v2", [9.0]);
    assert_eq!(
        c.measure(&ctx("v2")).await.unwrap(),
        Measurement::value(9.0)
    );
    assert_eq!(
        b.measure(&ctx("v2")).await.unwrap(),
        Measurement::value(6.0)
    );

    // The registry builds one probe a target from one definition: each
    // plays from the start.
    let registry = crate::registry::Registry::with_memory();
    let kind = registry.probe_kind("scripted").unwrap();
    let options: crate::registry::Options =
        serde_json::from_str(r#"{"per_revision": {"v2": [0.1, 0.2]}}"#).unwrap();
    let (url, none) = (
        crate::registry::TargetUrl::parse("memory://t").unwrap(),
        crate::registry::Options::new(),
    );
    let mut built = Vec::new();
    for _ in 0..2 {
        let p = kind
            .build(crate::registry::ProbeFor {
                name: "e",
                options: &options,
                url: &url,
                target_options: &none,
            })
            .await
            .unwrap();
        built.push(p);
    }
    for p in &built {
        assert_eq!(
            p.measure(&ctx("v2")).await.unwrap(),
            Measurement::value(0.1)
        );
    }
    assert_eq!(
        built[0].measure(&ctx("v2")).await.unwrap(),
        Measurement::value(0.2)
    );
    assert_eq!(
        built[1].measure(&ctx("v2")).await.unwrap(),
        Measurement::value(0.2)
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
