//! Bad input: an unreachable remote, a missing repository or branch, a path
//! that does not exist at the tip, a revision not in the history, a push
//! the remote refuses, a branch rewritten behind the clone's back. Each is
//! a clear error naming what and where, and the remote is left as it was.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;

use rollback_core::{
    DryRun, ErrorKind, RevisionRecord, RollbackOutcome, RollbackRequest, Rollbacker, Target,
    Timestamp,
};
use rollback_git::{GitConfig, GitTarget};

use crate::support::{Daemon, Remote, T0, client, git};

const DECIDED_AT: Timestamp = Timestamp::from_millis(1_795_780_800_000);

fn request(from: &str, to: &str) -> RollbackRequest {
    RollbackRequest::new(Arc::new(RevisionRecord::new(to)), DECIDED_AT)
        .from(rollback_core::RevisionId::new(from))
        .reason("error_rate breached")
}

async fn target(config: GitConfig) -> GitTarget {
    GitTarget::connect(&config, Some(client())).await.unwrap()
}

#[tokio::test]
async fn an_unreachable_remote_is_transient_and_names_the_url() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("git://127.0.0.1:{port}/config.git");
    let cache = tempfile::tempdir().unwrap();
    let t = target(GitConfig::new(&url, "main", "apps/web").cache_dir(cache.path())).await;
    for e in [
        t.history().await.unwrap_err(),
        t.current().await.unwrap_err(),
        t.rollbacker()
            .rollback(&request(&"a".repeat(40), &"b".repeat(40)))
            .await
            .unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
        assert!(e.is_retryable());
        let m = e.message();
        assert!(
            m.starts_with(&format!(
                "target git:{url}#main:apps/web: fetching branch main of {url}: the remote is unreachable"
            )) && m.contains("Connection refused"),
            "{m}"
        );
    }
}

#[tokio::test]
async fn a_missing_repository_or_branch_is_not_found() {
    let cache = tempfile::tempdir().unwrap();
    let missing = format!("file://{}/nothing-here.git", cache.path().display());
    let e = target(GitConfig::new(&missing, "main", "apps/web").cache_dir(cache.path()))
        .await
        .history()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(
        e.message().contains(&format!(
            "fetching branch main of {missing}: there is no repository at that URL"
        )),
        "{}",
        e.message()
    );

    let daemon = Daemon::start();
    let url = format!("git://127.0.0.1:{}/nothing-here.git", daemon.port);
    let e = target(GitConfig::new(&url, "main", "apps/web").cache_dir(cache.path()))
        .await
        .current()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(
        e.message().contains("no such repository"),
        "{}",
        e.message()
    );

    let (remote, _) = daemon.seed("config");
    let e = target(GitConfig::new(&remote.url, "release", "apps/web").cache_dir(cache.path()))
        .await
        .history()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(
        e.message().contains(&format!(
            "fetching branch release of {}: the repository has no such branch: fatal: couldn't find remote ref refs/heads/release; `git ls-remote --heads URL` lists the branches",
            remote.url
        )),
        "{}",
        e.message()
    );
}

#[tokio::test]
async fn a_git_program_that_does_not_run_is_named() {
    let c = GitConfig::new("file:///srv/config.git", "main", "apps/web");
    let e = GitTarget::connect(&c, Some(client().program("/nonexistent/git")))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Permanent);
    assert!(
        e.message().starts_with(
            "running `git version`: the git program \"/nonexistent/git\" could not be run"
        ),
        "{}",
        e.message()
    );
}

#[tokio::test]
async fn a_path_missing_at_the_tip_is_not_found_naming_the_commit_that_deleted_it() {
    let (remote, seeded) = Remote::seed();
    let cache = tempfile::tempdir().unwrap();
    let e = target(GitConfig::new(&remote.url, "main", "apps/nope").cache_dir(cache.path()))
        .await
        .history()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(
        e.message()
            .contains("path apps/nope does not exist at the tip (commit ")
            && e.message().contains(&format!(
                "of branch main of {}, nor in its history",
                remote.url
            )),
        "{}",
        e.message()
    );

    git(&remote.work, &["rm", "--quiet", "-r", "apps/web"]);
    crate::support::git_at(
        &remote.work,
        Some(T0 + 20_000),
        &["commit", "--quiet", "-m", "retire web"],
    );
    remote.push();
    let tip = remote.git(&["rev-parse", "main"]);
    let t = remote.target(cache.path()).await;
    let e = t.current().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(
        e.message().contains(&format!(
            "path apps/web does not exist at the tip (commit {}) of branch main of {}: commit {} (\"retire web\") deleted it",
            &tip[..12],
            remote.url,
            &tip[..12]
        )),
        "{}",
        e.message()
    );
    let [_, web2, web3] = &seeded.web;
    let e = t
        .rollbacker()
        .rollback(&request(web3, web2))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(remote.git(&["rev-parse", "main"]), tip, "nothing written");
    assert_eq!(remote.git(&["notes", "--ref=rollback", "list"]), "");
}

#[tokio::test]
async fn a_revision_of_another_path_is_not_in_the_history() {
    let (remote, seeded) = Remote::seed();
    let cache = tempfile::tempdir().unwrap();
    let t = remote.target(cache.path()).await;
    let api = remote.object("main~3", "apps/api");
    let e = t
        .rollbacker()
        .rollback(&request(&seeded.web[2], &api))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(
        e.message().contains(&format!(
            "revision {api} is not in the history of apps/web on branch main of {} (the newest 100 commits that changed it)",
            remote.url
        )),
        "{}",
        e.message()
    );
}

#[tokio::test]
async fn a_push_the_remote_refuses_is_permanent_with_its_words_and_nothing_written() {
    let (remote, seeded) = Remote::seed();
    let hook = remote.bare.join("hooks/pre-receive");
    std::fs::write(
        &hook,
        "#!/bin/sh\necho 'change freeze until Monday: ask #release' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let tip = remote.git(&["rev-parse", "main"]);
    let cache = tempfile::tempdir().unwrap();
    let t = remote.target(cache.path()).await;
    let [_, web2, web3] = &seeded.web;
    let e = t
        .rollbacker()
        .rollback(&request(web3, web2))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Permanent);
    assert!(!e.is_retryable());
    let m = e.message();
    assert!(
        m.contains("the remote refused the push:")
            && m.contains("[remote rejected] (pre-receive hook declined)")
            && m.contains("(the remote said: change freeze until Monday: ask #release)"),
        "{m}"
    );
    assert_eq!(remote.git(&["rev-parse", "main"]), tip);
    assert_eq!(remote.git(&["notes", "--ref=rollback", "list"]), "");
}

#[tokio::test]
async fn a_remote_that_takes_no_pushes_refuses_them() {
    // git daemon without receive-pack: reads work, pushes do not.
    let daemon = Daemon::start_read_only();
    let (remote, seeded) = daemon.seed("config");
    let cache = tempfile::tempdir().unwrap();
    let t = remote.target(cache.path()).await;
    assert_eq!(t.history().await.unwrap().len(), 3);
    let [_, web2, web3] = &seeded.web;
    for dry_run in [DryRun::Client, DryRun::None] {
        let e = t
            .rollbacker()
            .rollback(&request(web3, web2).dry_run(dry_run))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthorized, "{dry_run}: {e}");
        assert!(
            e.message().contains(
                "the remote refused access: fatal: remote error: service not enabled: /config.git"
            ),
            "{}",
            e.message()
        );
    }
    assert_eq!(remote.object("main", "apps/web"), *web3);
}

#[tokio::test]
async fn dry_runs_change_nothing() {
    let (remote, seeded) = Remote::seed();
    let cache = tempfile::tempdir().unwrap();
    let t = remote.target(cache.path()).await;
    let [_, web2, web3] = &seeded.web;
    let tip = remote.git(&["rev-parse", "main"]);
    let e = t
        .rollbacker()
        .rollback(&request(web3, web2).dry_run(DryRun::Server))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert!(
        e.message().contains("git has no server-side dry run"),
        "{e}"
    );
    let RollbackOutcome::DryRun { detail } = t
        .rollbacker()
        .rollback(&request(web3, web2).dry_run(DryRun::Client))
        .await
        .unwrap()
    else {
        panic!("a dry run")
    };
    assert!(
        detail.starts_with(&format!(
            "would push commit on apps/web on branch main of {} restoring it from {} to {} (as at commit ",
            remote.url,
            &web3[..12],
            &web2[..12]
        )) && detail.contains(&format!("and mark {} bad in refs/notes/rollback", &web3[..12]))
            && detail.contains("checked by reading and by git push --dry-run"),
        "{detail}"
    );
    assert_eq!(remote.git(&["rev-parse", "main"]), tip);
    assert_eq!(remote.git(&["for-each-ref", "refs/notes"]), "");
    // The plan says the same without pushing anything.
    let plan = t.rollbacker().plan(&request(web3, web2)).await.unwrap();
    assert!(!plan.is_complete());
    assert_eq!(plan.from(), Some(web3.as_str()));
    assert!(detail.contains(&plan.to_string()), "{plan}");
}

#[tokio::test]
async fn a_branch_rewritten_behind_the_clones_back_is_read_as_the_remote_holds_it() {
    let (remote, seeded) = Remote::seed();
    let cache = tempfile::tempdir().unwrap();
    let t = remote.target(cache.path()).await;
    let [_, web2, web3] = &seeded.web;
    assert_eq!(t.current().await.unwrap().id().as_str(), web3);
    // Someone force-pushes main back to before web v3.
    git(
        &remote.work,
        &["push", "--quiet", "--force", "origin", "main~1:main"],
    );
    assert_eq!(t.current().await.unwrap().id().as_str(), web2);
    assert_eq!(t.history().await.unwrap().len(), 2);
    // The engine's rollback away from web v3 finds web v2 already there.
    let outcome = t.rollbacker().rollback(&request(web3, web2)).await.unwrap();
    assert!(
        matches!(outcome, RollbackOutcome::AlreadyAt { .. }),
        "{outcome:?}"
    );
    assert_eq!(remote.git(&["log", "-1", "--format=%s", "main"]), "api v2");
}

#[tokio::test]
async fn a_remote_that_denies_non_fast_forwards_takes_the_rollback() {
    let (remote, seeded) = Remote::seed();
    remote.git(&["config", "receive.denyNonFastForwards", "true"]);
    let cache = tempfile::tempdir().unwrap();
    let t = remote.target(cache.path()).await;
    let [_, web2, web3] = &seeded.web;
    let outcome = t.rollbacker().rollback(&request(web3, web2)).await.unwrap();
    assert!(
        matches!(outcome, RollbackOutcome::RolledBack { .. }),
        "{outcome:?}"
    );
    assert_eq!(remote.object("main", "apps/web"), *web2);
}

#[tokio::test]
async fn a_git_killed_mid_fetch_leaves_nothing_that_stops_the_next_call() {
    let (remote, seeded) = Remote::seed();
    let cache = tempfile::tempdir().unwrap();
    let t = remote.target(cache.path()).await;
    assert_eq!(t.history().await.unwrap().len(), 3);
    // What a git killed while updating refs leaves behind.
    let clone = t.clone_dir().to_owned();
    std::fs::write(clone.join("refs/remotes/origin/main.lock"), "").unwrap();
    std::fs::write(clone.join("packed-refs.lock"), "").unwrap();
    remote.commit(
        T0 + 20_000,
        "web v4",
        &[("apps/web/deploy.yaml", "image: web:4\n")],
    );
    remote.push();
    let h = t.history().await.unwrap();
    assert_eq!(h.len(), 4);
    assert_ne!(h[0].revision.id().as_str(), seeded.web[2]);
    assert!(!clone.join("packed-refs.lock").exists());
    // A clone removed altogether is made again.
    std::fs::remove_dir_all(&clone).unwrap();
    assert_eq!(t.history().await.unwrap().len(), 4);
}
