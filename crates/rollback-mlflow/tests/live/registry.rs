//! The target and the rollbacker against a real MLflow tracking server.

use std::sync::Arc;

use crate::support::{self, client, seed, unique};
use rollback_core::{
    Actor, DryRun, ErrorKind, Mark, RevisionHealth, RevisionId, RevisionRef, RollbackOutcome,
    RollbackRequest, Rollbacker, Target, TargetExt, Timestamp,
};
use rollback_mlflow::{MlflowTarget, tags};

/// When the tests' rollbacks were decided: 2026-11-27T12:00:00Z.
pub(crate) const DECIDED_AT: Timestamp = Timestamp::from_millis(1_795_780_800_000);

/// A rollback decided at [`DECIDED_AT`]: the same request each time, as the
/// engine retries it.
pub(crate) fn request(from: Option<&str>, to: RevisionRef, dry_run: bool) -> RollbackRequest {
    request_at(from, to, dry_run, DECIDED_AT)
}

/// Another rollback, decided at `decided_at`.
pub(crate) fn request_at(
    from: Option<&str>,
    to: RevisionRef,
    dry_run: bool,
    decided_at: Timestamp,
) -> RollbackRequest {
    RollbackRequest::new(to, decided_at)
        .from(from.map(RevisionId::from))
        .reason("click-through rate fell from 4.1% to 2.3%")
        .actor(Actor::new("oncall@example.com"))
        .dry_run(if dry_run {
            DryRun::Client
        } else {
            DryRun::None
        })
}

/// A verdict at [`DECIDED_AT`].
pub(crate) fn mark(revision: &str, health: RevisionHealth, reason: &str) -> Mark {
    Mark::new(revision.into(), health, reason, DECIDED_AT)
}

pub(crate) async fn target(name: &str, page_size: u32) -> MlflowTarget {
    MlflowTarget::builder(client().await)
        .model(name)
        .alias("champion")
        .page_size(page_size)
        .build()
        .unwrap()
}

#[tokio::test]
async fn current_is_the_alias_version_with_run_source_and_tags() {
    let name = unique("current");
    seed(&client().await, &name, 3, Some(("champion", 2))).await;
    let t = target(&name, 100).await;
    assert_eq!(t.id().as_str(), format!("mlflow:{name}@champion"));
    let current = t.current().await.unwrap();
    assert_eq!(current.id().as_str(), "2");
    assert_eq!(current.label(), "version 2");
    let attrs = current.attributes();
    assert_eq!(attrs["run_id"], "run-2");
    assert_eq!(attrs["source"], format!("s3://models/{name}/2"));
    assert_eq!(attrs["tag.trained_on"], "2026-11-02");
    assert_eq!(attrs["status"], "READY");
    assert!(current.created_at().is_some());

    let history = t.history().await.unwrap();
    let ids: Vec<_> = history
        .iter()
        .map(|e| e.revision.id().as_str().to_owned())
        .collect();
    assert_eq!(ids, ["3", "2", "1"], "newest first");
    assert!(history.iter().all(|e| e.health == RevisionHealth::Unknown));
}

#[tokio::test]
async fn history_follows_more_than_one_page() {
    let name = unique("pages");
    seed(&client().await, &name, 7, Some(("champion", 7))).await;
    let paged = target(&name, 3).await.history().await.unwrap();
    let ids: Vec<_> = paged
        .iter()
        .map(|e| e.revision.id().as_str().parse::<u32>().unwrap())
        .collect();
    assert_eq!(
        ids,
        [7, 6, 5, 4, 3, 2, 1],
        "three pages of 3, 3 and 1 versions"
    );
    let whole = target(&name, 100).await.history().await.unwrap();
    assert_eq!(whole.len(), paged.len());
    // One page exactly full: the server's last token must not loop.
    let exact = target(&name, 7).await.history().await.unwrap();
    assert_eq!(exact.len(), 7);
}

#[tokio::test]
async fn unset_alias_unknown_model_and_unknown_versions_are_not_found() {
    let c = client().await;
    let name = unique("missing");
    seed(&c, &name, 2, None).await;
    let t = target(&name, 100).await;
    let e = t.current().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.message().contains("alias \"champion\" is not set"), "{e}");
    assert_eq!(t.history().await.unwrap_err().kind(), ErrorKind::NotFound);

    let gone = target(&unique("no-such-model"), 100).await;
    let e = gone.current().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.message().contains("RESOURCE_DOES_NOT_EXIST"), "{e}");

    c.set_alias(&name, "champion", "2").await.unwrap();
    let r = t.rollbacker();
    for missing in ["9", "not-a-version", "-1"] {
        let to: RevisionRef = Arc::new(rollback_core::RevisionRecord::new(missing));
        let e = r
            .rollback(&request(Some("2"), to, false))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{missing}: {e}");
        assert_eq!(
            t.current().await.unwrap().id().as_str(),
            "2",
            "nothing changed"
        );
    }
    let e = t
        .mark(&mark("42", RevisionHealth::Bad, "x"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

#[tokio::test]
async fn rollback_moves_the_alias_tags_the_bad_version_and_records_the_move() {
    let name = unique("rollback");
    seed(&client().await, &name, 3, Some(("champion", 3))).await;
    let t = target(&name, 100).await;
    let r = t.rollbacker();
    let good = t.find(&"2".into()).await.unwrap().revision;

    let dry = r
        .rollback(&request(Some("3"), good.clone(), true))
        .await
        .unwrap();
    assert!(
        matches!(&dry, RollbackOutcome::DryRun { detail } if detail.contains("from version 3 to version 2")),
        "{dry:?}"
    );
    assert_eq!(
        t.current().await.unwrap().id().as_str(),
        "3",
        "a dry run changes nothing"
    );
    assert!(t.alias_moves().await.unwrap().is_empty());

    let done = r
        .rollback(&request(Some("3"), good.clone(), false))
        .await
        .unwrap();
    assert!(
        matches!(&done, RollbackOutcome::RolledBack { .. }),
        "{done:?}"
    );
    assert!(!done.detail().contains("WARNING"), "{done:?}");
    assert_eq!(t.current().await.unwrap().id().as_str(), "2");

    let again = r
        .rollback(&request(Some("2"), good.clone(), false))
        .await
        .unwrap();
    assert!(
        matches!(again, RollbackOutcome::AlreadyAt { .. }),
        "{again:?}"
    );

    let history = t.history().await.unwrap();
    let health = |id: &str| {
        history
            .iter()
            .find(|e| e.revision.id().as_str() == id)
            .unwrap()
            .health
    };
    assert_eq!(health("3"), RevisionHealth::Bad);
    assert_eq!(health("2"), RevisionHealth::Unknown);
    let bad = t.find(&"3".into()).await.unwrap().revision;
    assert_eq!(
        bad.attributes()[&format!("tag.{}", tags::HEALTH_REASON)],
        "click-through rate fell from 4.1% to 2.3%"
    );

    let moves = t.alias_moves().await.unwrap();
    assert_eq!(moves.len(), 1, "{moves:?}");
    let m = &moves[0];
    assert_eq!((m.from.as_deref(), m.to.as_str()), (Some("3"), "2"));
    assert_eq!(m.alias.as_deref(), Some("champion"));
    assert_eq!(m.actor, "oncall@example.com");
    assert_eq!(m.reason, "click-through rate fell from 4.1% to 2.3%");
    assert!(m.at.ends_with('Z') && m.at_ms > 0, "{m:?}");
    // The times are the engine's decision time, not the clock's.
    assert_eq!(m.at, "2026-11-27T12:00:00.000Z");
    assert_eq!(m.at_ms, DECIDED_AT.as_millis());
    assert_eq!(
        m.hooks,
        rollback_mlflow::HooksState::Done,
        "no hooks to run"
    );
    assert_eq!(
        bad.attributes()[&format!("tag.{}", tags::HEALTH_AT)],
        "2026-11-27T12:00:00.000Z"
    );
    assert!(
        bad.attributes()
            .contains_key("tag.rollback.move.champion.1795780800000"),
        "the record's key ends with the decision time: {:?}",
        bad.attributes()
    );
    // The record sits on both versions.
    for v in ["2", "3"] {
        let version = client().await.get_model_version(&name, v).await.unwrap();
        let records: Vec<_> = version
            .tags
            .iter()
            .filter(|t| t.key.starts_with(tags::MOVE_PREFIX))
            .collect();
        assert_eq!(records.len(), 1, "version {v}: {:?}", version.tags);
    }

    // A second move back and forth keeps both records, oldest first.
    let three = t.find(&"3".into()).await.unwrap().revision;
    let later = DECIDED_AT.plus(std::time::Duration::from_secs(3600));
    r.rollback(&request_at(Some("2"), three, false, later))
        .await
        .unwrap();
    let moves = t.alias_moves().await.unwrap();
    let path: Vec<_> = moves
        .iter()
        .map(|m| (m.from.clone().unwrap(), m.to.clone()))
        .collect();
    assert_eq!(
        path,
        [
            ("3".to_owned(), "2".to_owned()),
            ("2".to_owned(), "3".to_owned())
        ]
    );
}

#[tokio::test]
async fn the_plan_says_what_a_rollback_will_write_and_then_that_nothing_is_left() {
    let name = unique("plan");
    seed(&client().await, &name, 2, Some(("champion", 2))).await;
    let t = target(&name, 100).await;
    let r = t.rollbacker();
    let one = t.find(&"1".into()).await.unwrap().revision;
    let req = request(Some("2"), one, false);
    let plan = r.plan(&req).await.unwrap();
    assert!(plan.moves_pointer() && !plan.is_complete());
    assert_eq!(plan.record_key(), "rollback.move.champion.1795780800000");
    assert_eq!(
        plan.to_string(),
        format!(
            "tag version 2 bad (rollback.health.reason, rollback.health.at, rollback.health); \
             move alias champion of registered model {name:?} from version 2 to version 1; \
             record the move as tag rollback.move.champion.1795780800000 on versions 1 and 2"
        )
    );
    let dry = r
        .rollback(&req.clone().dry_run(rollback_core::DryRun::Client))
        .await
        .unwrap();
    assert_eq!(
        dry.detail(),
        format!("would {plan} (MLflow has no server-side dry run: checked by reading)")
    );
    let e = r
        .rollback(&req.clone().dry_run(rollback_core::DryRun::Server))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.message().contains("use a client dry run"), "{e}");
    r.rollback(&req).await.unwrap();
    let after = r.plan(&req).await.unwrap();
    assert!(after.is_complete(), "{after}");
    assert_eq!(
        after.to_string(),
        format!("nothing: alias champion of registered model {name:?} already points at version 1")
    );
}

#[tokio::test]
async fn a_rollback_cut_short_after_the_move_is_completed_by_a_new_rollbacker() {
    let c = client().await;
    let name = unique("cut");
    seed(&c, &name, 2, Some(("champion", 2))).await;
    let t = target(&name, 100).await;
    let one = t.find(&"1".into()).await.unwrap().revision;
    let req = request(Some("2"), one, false);
    // Killed after the three health tags and the move: no record anywhere.
    let steps = rollback_core::steps::Steps::stop_after(4);
    let e = t
        .rollbacker()
        .steps(steps.clone())
        .rollback(&req)
        .await
        .unwrap_err();
    assert!(e.message().contains("interrupted before step 5"), "{e}");
    assert_eq!(
        steps.taken().last().map(String::as_str),
        Some("move alias champion to version 1")
    );
    assert_eq!(t.current().await.unwrap().id().as_str(), "1");
    assert!(t.alias_moves().await.unwrap().is_empty());
    // Before, the restarted engine got "already there" and the move stayed unrecorded.
    let again = t.rollbacker().rollback(&req).await.unwrap();
    assert!(
        matches!(&again, RollbackOutcome::AlreadyAt { detail } if detail.contains("recorded the move on versions 1 and 2")),
        "{again:?}"
    );
    let moves = t.alias_moves().await.unwrap();
    assert_eq!(moves.len(), 1, "{moves:?}");
    assert_eq!(
        (moves[0].from.as_deref(), moves[0].to.as_str()),
        (Some("2"), "1")
    );
    for v in ["1", "2"] {
        let version = c.get_model_version(&name, v).await.unwrap();
        let records = version
            .tags
            .iter()
            .filter(|t| t.key.starts_with(tags::MOVE_PREFIX))
            .count();
        assert_eq!(records, 1, "version {v}: {:?}", version.tags);
    }
    // Once complete, the same request writes nothing more.
    let third = t.rollbacker().rollback(&req).await.unwrap();
    assert_eq!(
        third.detail(),
        format!("alias champion of registered model {name:?} already points at version 1")
    );
}

#[tokio::test]
async fn a_rollback_refuses_when_the_alias_moved_since_it_was_judged() {
    let c = client().await;
    let name = unique("conflict");
    seed(&c, &name, 4, Some(("champion", 3))).await;
    let t = target(&name, 100).await;
    // Someone ships version 4 after the engine judged version 3.
    c.set_alias(&name, "champion", "4").await.unwrap();
    let good = t.find(&"2".into()).await.unwrap().revision;
    let e = t
        .rollbacker()
        .rollback(&request(Some("3"), good, false))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(
        !e.is_retryable(),
        "a moved alias is not worth retrying: {e}"
    );
    assert!(e.message().contains("now points at version 4"), "{e}");
    assert_eq!(t.current().await.unwrap().id().as_str(), "4");
    let four = c.get_model_version(&name, "4").await.unwrap();
    assert_eq!(four.tag(tags::HEALTH), None, "nothing was tagged");
}

#[tokio::test]
async fn mark_keeps_health_in_version_tags() {
    let name = unique("mark");
    seed(&client().await, &name, 2, Some(("champion", 2))).await;
    let t = target(&name, 100).await;
    assert!(t.capabilities().mark);
    t.mark(&mark("1", RevisionHealth::Good, "baked for 1h"))
        .await
        .unwrap();
    t.mark(&mark("2", RevisionHealth::Bad, "CTR breach"))
        .await
        .unwrap();
    let h = t.history().await.unwrap();
    assert_eq!(
        h.iter().map(|e| e.health).collect::<Vec<_>>(),
        [RevisionHealth::Bad, RevisionHealth::Good]
    );
    // The mark's time is the engine's (Mark::at), not the clock's.
    assert_eq!(
        h[1].revision.attributes()[&format!("tag.{}", tags::HEALTH_AT)],
        "2026-11-27T12:00:00.000Z"
    );
    t.mark(&mark("2", RevisionHealth::Unknown, "forgiven"))
        .await
        .unwrap();
    let h = t.history().await.unwrap();
    assert_eq!(h[0].health, RevisionHealth::Unknown);
    assert!(
        !h[0]
            .revision
            .attributes()
            .contains_key(&format!("tag.{}", tags::HEALTH_REASON))
    );
}

#[tokio::test]
async fn the_conformance_suite_passes() {
    let name = unique("conformance");
    seed(&client().await, &name, 3, Some(("champion", 3))).await;
    let t = target(&name, 2).await;
    rollback_core::conformance::check_target(&t).await.unwrap();
    rollback_core::conformance::check_rollbacker(&t, &t.rollbacker())
        .await
        .unwrap();
    assert_eq!(t.current().await.unwrap().id().as_str(), "2");
}

#[tokio::test]
async fn mlflows_python_client_sees_the_restored_version() {
    let name = unique("python");
    seed(&client().await, &name, 3, Some(("champion", 3))).await;
    let t = target(&name, 100).await;
    let good = t.find(&"1".into()).await.unwrap().revision;
    t.rollbacker()
        .rollback(&request(Some("3"), good, false))
        .await
        .unwrap();

    // MLflow's own client, as serving would resolve models:/<name>@champion.
    let venv = rollback_mlflow::local_server::find_venv().unwrap();
    let script = "import json, sys\n\
from mlflow import MlflowClient\n\
c = MlflowClient(sys.argv[1])\n\
v = c.get_model_version_by_alias(sys.argv[2], 'champion')\n\
bad = c.get_model_version(sys.argv[2], '3')\n\
print(v.version, v.source, bad.tags.get('rollback.health'))\n\
for r in [json.loads(x.tags['rollback.move.champion.1795780800000']) for x in (v, bad)]: print(r['from'], r['to'], r['at'], r['hooks'])";
    let url = support::server_url().await;
    let out = std::process::Command::new(venv.join("bin/python"))
        .args(["-c", script, url, &name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next().unwrap_or_default(),
        format!("1 s3://models/{name}/1 bad")
    );
    // MLflow's client reads the same move record on both versions.
    let record = "3 1 2026-11-27T12:00:00.000Z done";
    assert_eq!(lines.collect::<Vec<_>>(), [record, record]);
}

#[tokio::test]
async fn a_long_alias_keeps_its_move_records_within_mlflows_key_limit() {
    let c = client().await;
    let name = unique("long-alias");
    let alias = "a".repeat(255);
    seed(&c, &name, 2, Some((&alias, 2))).await;
    let t = MlflowTarget::builder(c.clone())
        .model(&name)
        .alias(&alias)
        .build()
        .unwrap();
    let one = t.find(&"1".into()).await.unwrap().revision;
    let done = t
        .rollbacker()
        .rollback(&request(Some("2"), one, false))
        .await
        .unwrap();
    assert!(!done.detail().contains("WARNING"), "{done:?}");
    let moves = t.alias_moves().await.unwrap();
    assert_eq!(moves.len(), 1);
    assert_eq!(moves[0].alias.as_deref(), Some(alias.as_str()));
}

#[tokio::test]
async fn a_target_from_a_config_file_and_convergence_reads_the_alias() {
    let c = client().await;
    let name = unique("config");
    seed(&c, &name, 2, Some(("champion", 2))).await;
    let yaml = serde_json::json!({
        "tracking_uri": support::server_url().await,
        "model": name,
        "alias": "champion",
        "page_size": 1,
        "timeout": "5s",
    });
    let config: rollback_mlflow::MlflowConfig = serde_json::from_value(yaml).unwrap();
    let t = MlflowTarget::connect(&config, None).await.unwrap();
    assert_eq!(t.history().await.unwrap().len(), 2);
    let r = t.rollbacker();
    use rollback_core::Convergence;
    assert_eq!(
        r.wait_converged(&"2".into(), std::time::Duration::from_secs(1))
            .await
            .unwrap(),
        Convergence::Converged
    );
    let other = r
        .wait_converged(&"1".into(), std::time::Duration::from_secs(1))
        .await
        .unwrap();
    assert!(
        matches!(&other, Convergence::Failed { detail } if detail.contains("points at version 2")),
        "{other:?}"
    );
}
