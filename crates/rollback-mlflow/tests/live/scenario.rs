//! The recommender scenario: a new model version lowers click-through rate,
//! the engine rolls the alias back to the last good version, serving reloads.

use std::sync::Arc;
use std::time::Duration;

use rollback_core::audit::{ActionKind, AuditEntry, MemoryAuditSink};
use rollback_core::memory::ScriptedProbe;
use rollback_core::{Engine, Phase, Policy, RevisionHealth, Target, WatchSpec};
use rollback_mlflow::tags;

use crate::hooks::Reloads;
use crate::registry::{mark, target};
use crate::support::{client, seed, unique};

#[tokio::test]
async fn a_click_through_rate_drop_moves_the_alias_back_and_serving_reloads() {
    let c = client().await;
    let name = unique("recommender");
    // Versions 1 and 2 served before; version 2 baked and is known good;
    // version 3 has just been made champion.
    seed(&c, &name, 3, Some(("champion", 3))).await;
    let t = target(&name, 100).await;
    t.mark(&mark("2", RevisionHealth::Good, "baked for 24h"))
        .await
        .unwrap();

    let reloads = Reloads::start(vec![200]).await;
    let rollbacker = t.rollbacker().hook(Arc::new(reloads.hook()));
    let ctr = ScriptedProbe::new("click_through_rate")
        .script_for("3", [0.041, 0.023, 0.022])
        .script_for("2", [0.040, 0.041]);
    let policy = Policy::from_yaml(
        "interval: 100ms\nbake_time: 1h\nverify: 300ms\nprobes:\n  - {name: click_through_rate, success: '>= 0.035', failure: '< 0.03'}\n",
    )
    .unwrap();
    let audit = MemoryAuditSink::new();
    let engine = Engine::builder()
        .audit(Arc::new(audit.clone()))
        .max_jitter(0.0)
        .build();
    let mut handle = engine
        .watch(WatchSpec::new(
            policy,
            Arc::new(t.clone()),
            Arc::new(rollbacker),
            vec![Arc::new(ctr)],
        ))
        .await
        .unwrap();
    let end = tokio::time::timeout(Duration::from_secs(60), handle.finished())
        .await
        .expect("the watch ended");
    assert!(
        matches!(&end, Phase::RolledBack { to, .. } if to.as_str() == "2"),
        "{end:?}\n{:#?}",
        audit.records()
    );

    // The registry: the alias is back on version 2, version 3 is tagged bad,
    // and the move is recorded with the engine's reason.
    assert_eq!(
        c.get_model_version_by_alias(&name, "champion")
            .await
            .unwrap()
            .version,
        "2"
    );
    assert_eq!(
        c.get_model_version(&name, "3")
            .await
            .unwrap()
            .tag(tags::HEALTH),
        Some("bad")
    );
    let moves = t.alias_moves().await.unwrap();
    assert_eq!(moves.len(), 1, "{moves:?}");
    assert_eq!(
        (moves[0].from.as_deref(), moves[0].to.as_str()),
        (Some("3"), "2")
    );
    assert_eq!(moves[0].actor, "rollback-engine");
    assert!(
        moves[0].reason.contains("click_through_rate"),
        "{:?}",
        moves[0].reason
    );

    // Serving was told once, with the move.
    let calls = reloads.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["to"], "2");
    assert_eq!(calls[0]["model"], name.as_str());

    // The audit log has the rollback.
    let succeeded = audit
        .records()
        .into_iter()
        .filter(|r| matches!(&r.entry, AuditEntry::ActionSucceeded { action, .. } if *action == ActionKind::Rollback))
        .count();
    assert_eq!(succeeded, 1);
}
