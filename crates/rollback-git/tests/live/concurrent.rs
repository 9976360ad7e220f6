//! A second clone pushing at the same time as the rollback: before the
//! engine's push (the client sees the branch moved), on the server between
//! its check and its ref update, and in a loop on another thread. The other
//! pushes are always kept; the rollback is rebuilt on them, or escalates
//! after `push_attempts` rejected pushes with nothing written.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rollback_core::{
    ErrorKind, RevisionRecord, RollbackOutcome, RollbackRequest, Rollbacker, Timestamp,
};
use rollback_git::{GitConfig, GitTarget};

use crate::support::{ENV, Remote, T0, client, git};

const DECIDED_AT: Timestamp = Timestamp::from_millis(1_795_780_800_000);

fn request(from: &str, to: &str) -> RollbackRequest {
    RollbackRequest::new(Arc::new(RevisionRecord::new(to)), DECIDED_AT)
        .from(rollback_core::RevisionId::new(from))
        .reason("error_rate breached")
}

/// A `git` that, on each of the engine's first `races` pushes, first lets
/// the other clone commit `file` (`{n}` is the race's number) and push.
fn rival_git(dir: &Path, remote: &Remote, races: u32, file: &str) -> PathBuf {
    let script = dir.join("git-with-a-rival");
    let count = dir.join("races");
    let identity: String = ENV
        .iter()
        .map(|(k, v)| format!("export {k}='{v}'\n"))
        .collect();
    std::fs::write(
        &script,
        format!(
            r#"#!/bin/sh
{identity}
case "$1" in --git-dir=*) if [ "$2" = push ]; then
  n=$(cat '{count}' 2>/dev/null || echo 0)
  if [ "$n" -lt {races} ]; then
    echo $((n + 1)) > '{count}'
    f=$(echo '{file}' | sed "s/{{n}}/$n/")
    (cd '{work}' && unset GIT_DIR && git pull -q --rebase origin main && mkdir -p "$(dirname "$f")" &&
      echo "rival $n" > "$f" && git add "$f" && git commit -qm "rival $n" && git push -q origin main) >&2 || exit 99
  fi
fi ;; esac
exec git "$@"
"#,
            count = count.display(),
            work = remote.work.display(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

async fn target_with(remote: &Remote, cache: &Path, program: &Path, attempts: u32) -> GitTarget {
    let config: GitConfig = remote.config(cache).push_attempts(attempts);
    GitTarget::connect(&config, Some(client().program(program)))
        .await
        .unwrap()
}

#[tokio::test]
async fn pushes_that_land_first_are_kept_and_the_rollback_is_rebuilt_on_them() {
    let (remote, seeded) = Remote::seed();
    let dir = tempfile::tempdir().unwrap();
    let program = rival_git(dir.path(), &remote, 2, "docs/rival-{n}.md");
    let target = target_with(&remote, &dir.path().join("cache"), &program, 3).await;
    let [_, web2, web3] = &seeded.web;
    let outcome = target
        .rollbacker()
        .rollback(&request(web3, web2))
        .await
        .unwrap();
    assert!(
        matches!(outcome, RollbackOutcome::RolledBack { .. }),
        "{outcome:?}"
    );
    assert_eq!(
        remote.subjects(),
        [
            format!("Roll back apps/web to {}", &web2[..12]),
            "rival 1".into(),
            "rival 0".into(),
            "web v3".into(),
            "api v2".into(),
            "web v2".into(),
            "web v1, api v1".into(),
        ]
    );
    assert_eq!(remote.object("main", "apps/web"), *web2);
    assert_eq!(remote.git(&["show", "main:docs/rival-1.md"]), "rival 1");
    assert_eq!(
        remote.git(&["diff", "--name-only", "main~1", "main"]),
        "apps/web/deploy.yaml"
    );
    assert!(remote.note(web3).unwrap().starts_with("Health: bad"));
}

#[tokio::test]
async fn rejected_push_attempts_escalate_with_nothing_written() {
    let (remote, seeded) = Remote::seed();
    let dir = tempfile::tempdir().unwrap();
    let program = rival_git(dir.path(), &remote, 3, "docs/rival-{n}.md");
    let target = target_with(&remote, &dir.path().join("cache"), &program, 3).await;
    let [_, web2, web3] = &seeded.web;
    let e = target
        .rollbacker()
        .rollback(&request(web3, web2))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert!(!e.is_retryable(), "escalates: the engine does not retry");
    let m = e.message();
    assert!(
        m.contains("rejected 3 times because others pushed meanwhile")
            && m.contains(&format!("apps/web on branch main of {}", remote.url))
            && m.contains("[rejected] (stale info)"),
        "{m}"
    );
    // The rivals' three commits, and nothing of the rollback.
    assert_eq!(
        remote.subjects()[..4],
        ["rival 2", "rival 1", "rival 0", "web v3"]
    );
    assert_eq!(remote.object("main", "apps/web"), *web3);
    assert_eq!(remote.git(&["notes", "--ref=rollback", "list"]), "");
}

#[tokio::test]
async fn a_rival_deploying_the_path_meanwhile_stops_the_rollback() {
    let (remote, seeded) = Remote::seed();
    let dir = tempfile::tempdir().unwrap();
    let program = rival_git(dir.path(), &remote, 1, "apps/web/rival-{n}.yaml");
    let target = target_with(&remote, &dir.path().join("cache"), &program, 3).await;
    let [_, web2, web3] = &seeded.web;
    let e = target
        .rollbacker()
        .rollback(&request(web3, web2))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert!(!e.is_retryable());
    let now = remote.object("main", "apps/web");
    assert!(
        e.message().contains(&format!(
            "holds {now}, not {web3} that the rollback was decided on: someone deployed meanwhile; nothing was written"
        )),
        "{}",
        e.message()
    );
    assert_eq!(remote.subjects()[0], "rival 0");
    assert_eq!(remote.git(&["notes", "--ref=rollback", "list"]), "");
}

#[tokio::test]
async fn a_push_that_loses_the_race_on_the_server_is_rebuilt() {
    let (remote, seeded) = Remote::seed();
    // A commit the server will move main to while our push is being
    // received: after its fast-forward check, before its ref update.
    remote.commit(
        T0 + 20_000,
        "landed meanwhile",
        &[("docs/meanwhile.md", "x\n")],
    );
    git(
        &remote.work,
        &["push", "--quiet", "origin", "HEAD:refs/heads/side"],
    );
    git(&remote.work, &["reset", "--quiet", "--hard", "HEAD~1"]);
    let side = remote.git(&["rev-parse", "side"]);
    let marker = remote.bare.join("raced-once");
    let hook = remote.bare.join("hooks/pre-receive");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nif [ ! -e '{marker}' ]; then touch '{marker}'\n  env -u GIT_QUARANTINE_PATH -u GIT_OBJECT_DIRECTORY -u GIT_ALTERNATE_OBJECT_DIRECTORIES git update-ref refs/heads/main {side} || exit 1\nfi\ncat > /dev/null\n",
            marker = marker.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let target = remote.target(cache.path()).await;
    let [_, web2, web3] = &seeded.web;
    let outcome = target
        .rollbacker()
        .rollback(&request(web3, web2))
        .await
        .unwrap();
    assert!(
        matches!(outcome, RollbackOutcome::RolledBack { .. }),
        "{outcome:?}"
    );
    assert!(marker.exists(), "the hook ran");
    assert_eq!(remote.git(&["rev-parse", "main~1"]), side);
    assert_eq!(
        remote.subjects()[..2],
        [
            format!("Roll back apps/web to {}", &web2[..12]),
            "landed meanwhile".to_owned()
        ]
    );
    assert_eq!(remote.object("main", "apps/web"), *web2);
}

#[tokio::test]
async fn a_second_clone_pushing_in_a_loop_loses_nothing() {
    let (remote, seeded) = Remote::seed();
    let cache = tempfile::tempdir().unwrap();
    let target = GitTarget::connect(
        &remote.config(cache.path()).push_attempts(20),
        Some(client()),
    )
    .await
    .unwrap();
    let [_, web2, web3] = &seeded.web;
    let work = remote.work.clone();
    let started = Arc::new(AtomicBool::new(false));
    let rival = {
        let started = started.clone();
        std::thread::spawn(move || {
            for n in 0..8 {
                std::fs::create_dir_all(work.join("docs")).unwrap();
                std::fs::write(work.join(format!("docs/loop-{n}.md")), format!("{n}\n")).unwrap();
                git(&work, &["add", "docs"]);
                git(&work, &["commit", "--quiet", "-m", &format!("loop {n}")]);
                started.store(true, Ordering::SeqCst);
                // Push until it lands, rebasing onto whatever landed first.
                for _ in 0..50 {
                    if push_quietly(&work) {
                        break;
                    }
                    git(&work, &["pull", "--quiet", "--rebase", "origin", "main"]);
                }
            }
        })
    };
    while !started.load(Ordering::SeqCst) {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let outcome = target
        .rollbacker()
        .rollback(&request(web3, web2))
        .await
        .unwrap();
    assert!(
        matches!(outcome, RollbackOutcome::RolledBack { .. }),
        "{outcome:?}"
    );
    rival.join().unwrap();
    let subjects = remote.subjects();
    for n in 0..8 {
        assert!(
            subjects.contains(&format!("loop {n}")),
            "loop {n} in {subjects:?}"
        );
    }
    assert_eq!(
        subjects
            .iter()
            .filter(|s| s.starts_with("Roll back"))
            .count(),
        1,
        "{subjects:?}"
    );
    assert_eq!(remote.object("main", "apps/web"), *web2);
}

fn push_quietly(work: &Path) -> bool {
    std::process::Command::new("git")
        .current_dir(work)
        .envs(ENV)
        .args(["push", "--quiet", "origin", "main"])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}
