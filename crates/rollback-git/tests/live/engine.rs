//! The whole loop on a real remote: the engine watches the path's newest
//! revision, a probe breaches, the engine rolls the path back by a commit,
//! verifies, and the marks it writes land as notes. And the target built
//! from its URL through the registry, as the watch file does.

use std::sync::Arc;

use rollback_core::audit::MemoryAuditSink;
use rollback_core::memory::ScriptedProbe;
use rollback_core::registry::{Registry, TargetUrl};
use rollback_core::{Engine, Mark, Phase, Policy, RevisionHealth, Target, Timestamp, WatchSpec};

use crate::support::{Daemon, Remote};

#[tokio::test]
async fn the_engine_rolls_a_bad_config_change_back_by_a_commit() {
    let (remote, seeded) = Remote::seed();
    let cache = tempfile::tempdir().unwrap();
    let target = remote.target(cache.path()).await;
    let [_, web2, web3] = &seeded.web;
    target
        .mark(&Mark::new(
            web2.as_str().into(),
            RevisionHealth::Good,
            "promoted",
            Timestamp::from_millis(1_795_000_000_000),
        ))
        .await
        .unwrap();
    let policy = Policy::from_yaml(
        r#"
interval: 50ms
failure_limit: 1
verify: 150ms
probes: [{ name: error_rate, success: "< 0.01" }]
"#,
    )
    .unwrap();
    let probe = ScriptedProbe::new("error_rate")
        .script_for(web3.as_str(), [0.004, 0.02, 0.03])
        .script_for(web2.as_str(), [0.001]);
    let audit = MemoryAuditSink::new();
    let engine = Engine::builder()
        .audit(Arc::new(audit.clone()))
        .max_jitter(0.0)
        .build();
    let spec = WatchSpec::new(
        policy,
        Arc::new(target.clone()),
        Arc::new(target.rollbacker()),
        vec![Arc::new(probe)],
    );
    let end = engine.watch(spec).await.unwrap().finished().await;
    assert!(matches!(end, Phase::RolledBack { .. }), "{end:?}");

    // One rollback commit restoring web v2, its reason the breach.
    assert_eq!(remote.object("main", "apps/web"), *web2);
    assert_eq!(
        remote.git(&[
            "rev-list",
            "--count",
            "--grep=^Rollback-Decided-At:",
            "main"
        ]),
        "1"
    );
    let reason = remote.git(&[
        "log",
        "-1",
        "--format=%(trailers:key=Reason,valueonly)",
        "main",
    ]);
    assert!(reason.contains("error_rate"), "{reason}");
    let decided = remote.git(&[
        "log",
        "-1",
        "--format=%(trailers:key=Rollback-Decided-At,valueonly)",
        "main",
    ]);
    // web v3 marked bad once (by the engine and by the rollback: the same
    // mark), web v2 good twice (promoted, then verified after the rollback).
    let bad = remote.note(web3).unwrap();
    assert_eq!(bad.matches("Health: bad").count(), 1, "{bad}");
    assert!(bad.contains(&format!("Marked-At: {decided}")), "{bad}");
    let good = remote.note(web2).unwrap();
    assert_eq!(good.matches("Health: good").count(), 2, "{good}");
    let h = target.history().await.unwrap();
    assert_eq!(h[0].revision.id().as_str(), web2);
    assert_eq!(h[0].health, RevisionHealth::Good);
    assert_eq!(h[1].health, RevisionHealth::Bad);
    assert!(
        audit
            .records()
            .iter()
            .any(|r| r.describe().starts_with("decision rollback"))
    );
}

#[tokio::test]
async fn targets_come_from_their_urls_through_the_registry() {
    let registry = rollback_git::register(Registry::with_memory());
    let daemon = Daemon::start();
    let (served, seeded) = daemon.seed("config");
    let (local, _) = Remote::seed();
    let cache = tempfile::tempdir().unwrap();
    let options = serde_json::json!({"cache_dir": cache.path(), "push_attempts": 2});
    for (url, repository) in [
        (
            format!("git+{}#main:apps/web", local.url),
            local.url.clone(),
        ),
        (format!("{}#main:apps/web", served.url), served.url.clone()),
    ] {
        let url = TargetUrl::parse(&url).unwrap();
        let backend = registry
            .connect(&url, options.as_object().unwrap())
            .await
            .unwrap();
        assert_eq!(
            backend.target.id().as_str(),
            format!("git:{repository}#main:apps/web")
        );
        assert_eq!(backend.rollbacker.target(), backend.target.id());
        let h = backend.target.history().await.unwrap();
        assert_eq!(h.len(), 3);
        assert_eq!(h[0].revision.id().as_str(), seeded.web[2]);
    }
}
