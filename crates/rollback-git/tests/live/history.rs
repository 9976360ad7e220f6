//! What the history of a path is: the first-parent commits that changed it,
//! newest first, one revision per tree (a restore commit is the revision it
//! restores), for a directory, a single file and the whole tree.

use std::sync::Arc;

use rollback_core::{
    Revision as _, RevisionHealth, RevisionRecord, RollbackOutcome, RollbackRequest, Rollbacker,
    Target, Timestamp,
};
use rollback_git::{GitConfig, GitTarget, attributes};

use crate::support::{Remote, T0, client, git, git_at};

fn owned(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

fn ids(h: &[rollback_core::HistoryEntry]) -> Vec<String> {
    h.iter().map(|e| e.revision.id().to_string()).collect()
}

async fn target_on(remote: &Remote, cache: &std::path::Path, path: &str) -> GitTarget {
    GitTarget::connect(
        &GitConfig::new(&remote.url, "main", path).cache_dir(cache),
        Some(client()),
    )
    .await
    .unwrap()
}

fn rollback_to(to: &str, at_ms: i64) -> RollbackRequest {
    RollbackRequest::new(
        Arc::new(RevisionRecord::new(to)),
        Timestamp::from_millis(at_ms),
    )
    .reason("breached")
}

#[tokio::test]
async fn revisions_are_the_commits_that_changed_the_path_newest_first() {
    let (remote, seeded) = Remote::seed();
    let cache = tempfile::tempdir().unwrap();
    let t = remote.target(cache.path()).await;
    let h = t.history().await.unwrap();
    let [web1, web2, web3] = &seeded.web;
    assert_eq!(
        ids(&h),
        owned(&[web3, web2, web1]),
        "api v2 changed another path"
    );
    let newest = &h[0].revision;
    assert_eq!(newest.attributes()[attributes::SUBJECT], "web v3");
    assert_eq!(newest.attributes()[attributes::OBJECT], "tree");
    assert_eq!(
        newest.attributes()[attributes::AUTHOR],
        "Dev <dev@example.com>"
    );
    assert_eq!(
        newest.attributes()[attributes::COMMIT],
        remote.git(&["rev-parse", "main"])
    );
    assert_eq!(
        newest.created_at(),
        Some(Timestamp::from_millis((T0 + 10800) * 1000))
    );
    assert_eq!(
        newest.label(),
        format!(
            "tree {} (commit {})",
            &web3[..7],
            &remote.git(&["rev-parse", "main"])[..7]
        )
    );
    assert!(h.iter().all(|e| e.health == RevisionHealth::Unknown));
    let current = t.current_revision().await.unwrap();
    assert_eq!(current.id().as_str(), web3);
    assert_eq!(current.commit(), remote.git(&["rev-parse", "main"]));
}

#[tokio::test]
async fn a_restore_commit_is_the_revision_it_restores() {
    let (remote, seeded) = Remote::seed();
    let [web1, web2, web3] = &seeded.web;
    // A human reverts web v3 by hand: the tree of web v2 again.
    git(&remote.work, &["revert", "--no-edit", "HEAD"]);
    remote.push();
    let cache = tempfile::tempdir().unwrap();
    let t = remote.target(cache.path()).await;
    let h = t.history().await.unwrap();
    assert_eq!(
        ids(&h),
        owned(&[web2, web3, web1]),
        "web v2 once, at its newest commit"
    );
    assert!(h[0].revision.attributes()[attributes::SUBJECT].starts_with("Revert \"web v3\""));
    // Rolling back to web v2 is already done.
    let outcome = t
        .rollbacker()
        .rollback(
            &rollback_to(web2, 1_795_780_800_000)
                .from(rollback_core::RevisionId::new(web2.as_str())),
        )
        .await
        .unwrap();
    assert!(
        matches!(outcome, RollbackOutcome::AlreadyAt { .. }),
        "{outcome:?}"
    );
    // Rolling back to web v1, then the engine's rollback commit is itself
    // the revision web v1 at the top of the history.
    let outcome = t
        .rollbacker()
        .rollback(&rollback_to(web1, 1_795_780_900_000))
        .await
        .unwrap();
    assert!(
        matches!(outcome, RollbackOutcome::RolledBack { .. }),
        "{outcome:?}"
    );
    let h = t.history().await.unwrap();
    assert_eq!(ids(&h), owned(&[web1, web2, web3]));
    assert_eq!(
        h[0].revision.attributes()[attributes::ROLLED_BACK_FROM],
        *web2
    );
    assert_eq!(
        h[1].health,
        RevisionHealth::Bad,
        "the rollback marked web v2 bad"
    );
    assert_eq!(
        h[0].revision.created_at(),
        Some(Timestamp::from_millis(1_795_780_900_000)),
        "dated at the decision"
    );
}

#[tokio::test]
async fn a_single_file_keeps_its_mode_and_its_neighbours() {
    let (remote, _) = Remote::seed();
    let script = remote.work.join("apps/web/migrate.sh");
    std::fs::write(&script, "echo v1\n").unwrap();
    git(&remote.work, &["add", "apps/web/migrate.sh"]);
    git(
        &remote.work,
        &["update-index", "--chmod=+x", "apps/web/migrate.sh"],
    );
    git_at(
        &remote.work,
        Some(T0 + 20_000),
        &["commit", "--quiet", "-m", "migrate v1"],
    );
    remote.commit(
        T0 + 21_000,
        "migrate v2 and web v4",
        &[
            ("apps/web/migrate.sh", "echo v2\n"),
            ("apps/web/deploy.yaml", "image: web:4\n"),
        ],
    );
    remote.push();
    let cache = tempfile::tempdir().unwrap();
    let t = target_on(&remote, cache.path(), "apps/web/migrate.sh").await;
    let h = t.history().await.unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!(h[0].revision.attributes()[attributes::OBJECT], "blob");
    let v1 = remote.object("main~1", "apps/web/migrate.sh");
    assert_eq!(h[1].revision.id().as_str(), v1);
    let outcome = t
        .rollbacker()
        .rollback(&rollback_to(&v1, 1_795_780_800_000))
        .await
        .unwrap();
    assert!(
        matches!(outcome, RollbackOutcome::RolledBack { .. }),
        "{outcome:?}"
    );
    assert_eq!(remote.git(&["show", "main:apps/web/migrate.sh"]), "echo v1");
    assert_eq!(
        remote.git(&["ls-tree", "main", "apps/web/migrate.sh"]),
        format!("100755 blob {v1}\tapps/web/migrate.sh")
    );
    assert_eq!(
        remote.git(&["show", "main:apps/web/deploy.yaml"]),
        "image: web:4"
    );
}

#[tokio::test]
async fn the_whole_tree_is_a_target_too() {
    let (remote, _) = Remote::seed();
    let cache = tempfile::tempdir().unwrap();
    let t = target_on(&remote, cache.path(), ".").await;
    let h = t.history().await.unwrap();
    assert_eq!(h.len(), 4, "every commit");
    let api_v2 = remote.object("main~1", "");
    assert_eq!(h[1].revision.id().as_str(), api_v2);
    t.rollbacker()
        .rollback(&rollback_to(&api_v2, 1_795_780_800_000))
        .await
        .unwrap();
    assert_eq!(remote.object("main", ""), api_v2);
    assert_eq!(
        remote.git(&[
            "log",
            "-1",
            "--format=%(trailers:key=Rollback-Path,valueonly)",
            "main"
        ]),
        "."
    );
}

#[tokio::test]
async fn merged_branches_count_once_at_their_merge_and_irreversible_changes_say_so() {
    let (remote, seeded) = Remote::seed();
    git(&remote.work, &["checkout", "--quiet", "-b", "feature"]);
    remote.commit(
        T0 + 20_000,
        "web v4 step 1",
        &[("apps/web/deploy.yaml", "image: web:4a\n")],
    );
    remote.commit(
        T0 + 21_000,
        "web v4 step 2",
        &[("apps/web/deploy.yaml", "image: web:4\n")],
    );
    git(&remote.work, &["checkout", "--quiet", "main"]);
    git_at(
        &remote.work,
        Some(T0 + 22_000),
        &[
            "merge",
            "--quiet",
            "--no-ff",
            "-m",
            "Merge web v4\n\nRollback-Irreversible: true",
            "feature",
        ],
    );
    remote.push();
    let cache = tempfile::tempdir().unwrap();
    let t = remote.target(cache.path()).await;
    let h = t.history().await.unwrap();
    let [web1, web2, web3] = &seeded.web;
    let web4 = remote.object("main", "apps/web");
    assert_eq!(
        ids(&h),
        owned(&[&web4, web3, web2, web1]),
        "the feature's steps are no revision"
    );
    assert!(h[0].revision.is_irreversible());
    assert!(!h[1].revision.is_irreversible());
    let limited = GitTarget::connect(
        &remote.config(cache.path()).history_limit(2),
        Some(client()),
    )
    .await
    .unwrap();
    assert_eq!(
        ids(&limited.history().await.unwrap()),
        owned(&[&web4, web3])
    );
}

#[tokio::test]
async fn paths_with_unusual_names_are_taken_literally() {
    let (remote, _) = Remote::seed();
    remote.commit(
        T0 + 20_000,
        "odd v1",
        &[("apps/wéb [eu]*/deploy.yaml", "v: 1\n")],
    );
    remote.commit(
        T0 + 21_000,
        "odd v2",
        &[("apps/wéb [eu]*/deploy.yaml", "v: 2\n")],
    );
    remote.push();
    let cache = tempfile::tempdir().unwrap();
    let t = target_on(&remote, cache.path(), "apps/wéb [eu]*").await;
    let h = t.history().await.unwrap();
    assert_eq!(h.len(), 2);
    let v1 = h[1].revision.id().to_string();
    t.rollbacker()
        .rollback(&rollback_to(&v1, 1_795_780_800_000))
        .await
        .unwrap();
    assert_eq!(
        remote.git(&["show", "main:apps/wéb [eu]*/deploy.yaml"]),
        "v: 1"
    );
}
