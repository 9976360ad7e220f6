//! The command against a CodeDeploy deployment group on the extended moto
//! server (rollback-aws's test support; its agent takes new deployments to
//! `Succeeded`): `check`, `history`, `undo` (a new deployment of the
//! previous revision), and `watch` ending in 3, 0, 4, 5 and 1.

mod common;
#[allow(clippy::all, unreachable_pub)]
#[path = "../../rollback-aws/tests/support/mod.rs"]
mod support;

use std::path::Path;

use common::{Running, rollback, write};
use predicates::prelude::*;
use predicates::str::contains;
use support::{Group, github, github_id};

/// Credentials and region from the environment only: the AWS chain never
/// looks further (no instance metadata).
const ENV: [(&str, &str); 4] = [
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

fn cmd(dir: &Path) -> assert_cmd::Command {
    let mut c = rollback(dir);
    c.envs(ENV).env_remove("AWS_PROFILE");
    c
}

/// A group that ran c1, then c2 (both succeeded; c2 runs now).
async fn two_revisions(prefix: &str) -> Group {
    let g = Group::new(prefix).await;
    g.seed(&[(github("c1"), "Succeeded"), (github("c2"), "Succeeded")])
        .await;
    g
}

fn url(g: &Group) -> String {
    format!("codedeploy://{}/{}", g.app, g.name)
}

fn options(g: &Group) -> Vec<String> {
    vec![
        "--option".into(),
        format!("endpoint_url={}", g.moto.url()),
        "--option".into(),
        "poll_interval=100ms".into(),
    ]
}

fn watch_file(dir: &Path, g: &Group, endpoint: &str, bake: &str, per_revision: &str) {
    write(
        dir,
        "watch.yaml",
        &format!(
            "policy:\n  interval: 100ms\n  bake_time: {bake}\n  failure_limit: 1\n  verify: 500ms\n\
             probes:\n  - name: error_rate\n    success: \"< 0.01\"\n    scripted:\n      per_revision: {per_revision}\n\
             state: state\n\
             targets:\n  - url: {}\n    endpoint_url: {endpoint}\n    poll_interval: 100ms\n",
            url(g)
        ),
    );
}

fn per_revision(c2: f64, c1: f64) -> String {
    format!(
        "{{\"{}\": [{c2}], \"{}\": [{c1}]}}",
        github_id("c2"),
        github_id("c1")
    )
}

async fn run(dir: &Path, args: &[&str]) -> std::process::Output {
    let (dir, args) = (
        dir.to_owned(),
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    );
    tokio::task::spawn_blocking(move || cmd(&dir).args(args).output().unwrap())
        .await
        .unwrap()
}

fn words(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test]
async fn check_history_and_undo() {
    let g = two_revisions("cli-undo").await;
    let dir = tempfile::tempdir().unwrap();
    watch_file(
        dir.path(),
        &g,
        g.moto.url(),
        "1m",
        &per_revision(0.05, 0.001),
    );
    cmd(dir.path())
        .args(["check", "-c", "watch.yaml"])
        .assert()
        .code(0)
        .stdout(contains("SUCCESS: 1 target"));
    cmd(dir.path())
        .args(["history", &url(&g)])
        .args(options(&g))
        .assert()
        .code(0)
        .stdout(contains(format!(
            "2         good     *        {}",
            github_id("c2")
        )))
        .stdout(contains(format!(
            "1         good              {}",
            github_id("c1")
        )));

    // A client dry run reads only.
    let before = g.deployments().await.len();
    cmd(dir.path())
        .args(["undo", &url(&g), "--dry-run=client"])
        .args(options(&g))
        .assert()
        .code(0)
        .stdout(contains("(dry run)"));
    // CodeDeploy cannot validate a deployment without making it.
    cmd(dir.path())
        .args(["undo", &url(&g), "--dry-run=server"])
        .args(options(&g))
        .assert()
        .code(1)
        .stderr(contains("error: ").and(contains("dry run")));
    assert_eq!(
        g.deployments().await.len(),
        before,
        "dry runs deploy nothing"
    );

    let _agent = g.agent(&[]).await;
    let o = run(
        dir.path(),
        &[
            "undo",
            &url(&g),
            "--option",
            &format!("endpoint_url={}", g.moto.url()),
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", words(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with(&format!("{} rolled back", url(&g))),
        "{}",
        words(&o)
    );
    let newest = g.deployments().await.pop().unwrap();
    let commit = newest
        .revision()
        .and_then(|r| r.git_hub_location())
        .and_then(|l| l.commit_id());
    assert_eq!(
        commit,
        Some("c1"),
        "a new deployment of the previous revision"
    );
    // A revision number the history lacks.
    cmd(dir.path())
        .args(["undo", &url(&g), "--to-revision", "9"])
        .args(options(&g))
        .assert()
        .code(1)
        .stderr(contains("unable to find specified revision 9"));
}

#[tokio::test]
async fn watch_rolls_back_exit_3() {
    let g = two_revisions("cli-watch3").await;
    let _agent = g.agent(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    watch_file(
        dir.path(),
        &g,
        g.moto.url(),
        "10s",
        &per_revision(0.05, 0.001),
    );
    let o = run(dir.path(), &["watch", "-c", "watch.yaml"]).await;
    assert_eq!(o.status.code(), Some(3), "{}", words(&o));
    let newest = g.deployments().await.pop().unwrap();
    let commit = newest
        .revision()
        .and_then(|r| r.git_hub_location())
        .and_then(|l| l.commit_id());
    assert_eq!(commit, Some("c1"));
    assert_eq!(newest.status().map(|s| s.as_str()), Some("Succeeded"));
}

#[tokio::test]
async fn watch_ends_in_0_4_5_and_1() {
    let g = two_revisions("cli-watch").await;
    let _agent = g.agent(&[]).await;
    let words_of = |o: &std::process::Output| words(o);

    let d5 = tempfile::tempdir().unwrap();
    watch_file(
        d5.path(),
        &g,
        g.moto.url(),
        "1h",
        &per_revision(0.001, 0.001),
    );
    let o = run(d5.path(), &["watch", "--timeout", "1s", "-c", "watch.yaml"]).await;
    assert_eq!(o.status.code(), Some(5), "{}", words_of(&o));

    let d0 = tempfile::tempdir().unwrap();
    watch_file(
        d0.path(),
        &g,
        g.moto.url(),
        "600ms",
        &per_revision(0.001, 0.001),
    );
    let o = run(d0.path(), &["watch", "-c", "watch.yaml"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", words_of(&o));

    let d4 = tempfile::tempdir().unwrap();
    watch_file(
        d4.path(),
        &g,
        g.moto.url(),
        "10s",
        &per_revision(0.05, 0.05),
    );
    let o = run(d4.path(), &["watch", "-c", "watch.yaml"]).await;
    assert_eq!(o.status.code(), Some(4), "{}", words_of(&o));
    assert!(words_of(&o).contains(": escalated"), "{}", words_of(&o));

    // An endpoint nothing listens on: exit 1, nothing deployed.
    let before = g.deployments().await.len();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d1 = tempfile::tempdir().unwrap();
    watch_file(
        d1.path(),
        &g,
        &format!("http://127.0.0.1:{port}"),
        "10s",
        &per_revision(0.05, 0.001),
    );
    let o = run(d1.path(), &["watch", "-c", "watch.yaml"]).await;
    assert_eq!(o.status.code(), Some(1), "{}", words_of(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.starts_with("error: ") && stderr.lines().count() <= 3,
        "{stderr}"
    );
    assert_eq!(g.deployments().await.len(), before);
}

/// SIGINT while a rollback is in flight (its new deployment waits for the
/// agent): the command lets it finish, then exits 130; the next watch
/// resumes in verifying and ends 3. A second SIGINT stops at once; the
/// next watch carries the interrupted rollback out again, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_lets_an_in_flight_rollback_finish_or_leaves_it_resumable() {
    for twice in [false, true] {
        let g = two_revisions(if twice { "cli-sig2" } else { "cli-sig1" }).await;
        let dir = tempfile::tempdir().unwrap();
        watch_file(
            dir.path(),
            &g,
            g.moto.url(),
            "10s",
            &per_revision(0.05, 0.001),
        );
        let mut watch = Running::start_with(dir.path(), &["watch", "-c", "watch.yaml"], &ENV);
        watch.wait_for("waiting for", std::time::Duration::from_secs(60));
        watch.signal("INT");
        if twice {
            std::thread::sleep(std::time::Duration::from_millis(300));
            watch.signal("INT");
        } else {
            std::thread::sleep(std::time::Duration::from_millis(500));
            assert!(
                watch.child.try_wait().unwrap().is_none(),
                "it waits for the rollback"
            );
        }
        // Play the agent for the rollback's deployment (created before any agent would start).
        let rollback = g.deployments().await.pop().unwrap();
        let id = rollback.deployment_id().unwrap().to_owned();
        assert_eq!(
            rollback
                .revision()
                .and_then(|r| r.git_hub_location())
                .and_then(|l| l.commit_id()),
            Some("c1")
        );
        g.set_status(&id, "InProgress").await;
        g.set_status(&id, "Succeeded").await;
        let (code, lines) = tokio::task::spawn_blocking(move || watch.finish())
            .await
            .unwrap();
        assert_eq!(code, 130, "{}", lines.join("\n"));
        if !twice {
            assert!(
                lines
                    .iter()
                    .any(|l| l.contains("rolling_back -> verifying")),
                "{}",
                lines.join("\n")
            );
        }
        let deployments = g.deployments().await.len();
        let o = run(dir.path(), &["watch", "-c", "watch.yaml"]).await;
        assert_eq!(o.status.code(), Some(3), "{}", words(&o));
        let out = words(&o);
        if twice {
            assert!(
                out.contains("resumed watch of") && out.contains("while rolling_back"),
                "{out}"
            );
        } else {
            assert!(out.contains("while verifying"), "{out}");
        }
        assert_eq!(
            g.deployments().await.len(),
            deployments,
            "the rollback deployed once"
        );
    }
}
