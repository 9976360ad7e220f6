//! The command against a registered model's alias on the real MLflow
//! tracking server (rollback-mlflow's test support starts one per test
//! run): `check`, `history`, `undo` (the alias moves), and `watch` ending
//! in 3, 0, 4, 5 and 1.

mod common;
#[allow(clippy::all, unreachable_pub)]
#[path = "../../rollback-mlflow/tests/live/support.rs"]
mod support;

use std::path::Path;

use common::{rollback, write};
use predicates::prelude::*;
use predicates::str::contains;

async fn alias_version(name: &str) -> String {
    support::client()
        .await
        .get_model_version_by_alias(name, "champion")
        .await
        .expect("the alias")
        .version
}

fn watch_file(dir: &Path, model: &str, uri: &str, bake: &str, per_revision: &str) {
    write(
        dir,
        "watch.yaml",
        &format!(
            "policy:\n  interval: 100ms\n  bake_time: {bake}\n  failure_limit: 1\n  verify: 500ms\n\
             probes:\n  - name: error_rate\n    success: \"< 0.01\"\n    scripted:\n      per_revision: {per_revision}\n\
             state: state\n\
             targets:\n  - url: mlflow://{model}@champion\n    tracking_uri: {uri}\n"
        ),
    );
}

async fn run(dir: &Path, args: &[&str]) -> std::process::Output {
    let (dir, args) = (
        dir.to_owned(),
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    );
    tokio::task::spawn_blocking(move || rollback(&dir).args(args).output().unwrap())
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
    let uri = support::server_url().await;
    let model = support::unique("cli-undo");
    support::seed(&support::client().await, &model, 3, Some(("champion", 3))).await;
    let url = format!("mlflow://{model}@champion");
    let option = format!("tracking_uri={uri}");
    let dir = tempfile::tempdir().unwrap();
    watch_file(dir.path(), &model, uri, "1m", "{\"3\": [0.05]}");
    rollback(dir.path())
        .args(["check", "-c", "watch.yaml"])
        .assert()
        .code(0)
        .stdout(contains("SUCCESS"));
    rollback(dir.path())
        .args(["history", &url, "--option", &option])
        .assert()
        .code(0)
        .stdout(contains("3         unknown  *        3   version 3"))
        .stdout(contains("1         unknown           1   version 1"));
    // -c FILE gives the target's options.
    rollback(dir.path())
        .args([
            "undo",
            &url,
            "-c",
            "watch.yaml",
            "--to-revision",
            "1",
            "--dry-run=client",
        ])
        .assert()
        .code(0)
        .stdout(contains("(dry run)"));
    assert_eq!(alias_version(&model).await, "3");
    rollback(dir.path())
        .args(["undo", &url, "--option", &option])
        .assert()
        .code(0)
        .stdout(contains(format!("{url} rolled back")));
    assert_eq!(alias_version(&model).await, "2");
    rollback(dir.path())
        .args(["undo", &url, "--option", &option, "--to", "1"])
        .assert()
        .code(0);
    assert_eq!(alias_version(&model).await, "1");
    rollback(dir.path())
        .args(["undo", &url, "--option", &option, "--to", "1"])
        .assert()
        .code(0)
        .stdout(contains("skipped rollback"));
    rollback(dir.path())
        .args(["undo", &url, "--option", &option, "--to", "7"])
        .assert()
        .code(1)
        .stderr(contains("revision 7 is not in the history"));
    assert_eq!(alias_version(&model).await, "1");
}

#[tokio::test]
async fn watch_rolls_back_exit_3() {
    let uri = support::server_url().await;
    let model = support::unique("cli-watch3");
    support::seed(&support::client().await, &model, 2, Some(("champion", 2))).await;
    let dir = tempfile::tempdir().unwrap();
    watch_file(
        dir.path(),
        &model,
        uri,
        "10s",
        "{\"2\": [0.05], \"1\": [0.001]}",
    );
    let o = run(dir.path(), &["watch", "-c", "watch.yaml"]).await;
    assert_eq!(o.status.code(), Some(3), "{}", words(&o));
    assert_eq!(alias_version(&model).await, "1");
    rollback(dir.path())
        .args([
            "history",
            &format!("mlflow://{model}@champion"),
            "-c",
            "watch.yaml",
        ])
        .assert()
        .code(0)
        .stdout(contains("2         bad").and(contains("1         good")));
}

#[tokio::test]
async fn watch_ends_in_0_4_5_and_1() {
    let uri = support::server_url().await;
    let model = support::unique("cli-watch");
    support::seed(&support::client().await, &model, 2, Some(("champion", 2))).await;

    let d5 = tempfile::tempdir().unwrap();
    watch_file(d5.path(), &model, uri, "1h", "{\"2\": [0.001]}");
    let o = run(d5.path(), &["watch", "--timeout", "1s", "-c", "watch.yaml"]).await;
    assert_eq!(o.status.code(), Some(5), "{}", words(&o));

    let d0 = tempfile::tempdir().unwrap();
    watch_file(d0.path(), &model, uri, "600ms", "{\"2\": [0.001]}");
    let o = run(d0.path(), &["watch", "-c", "watch.yaml"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", words(&o));
    assert_eq!(alias_version(&model).await, "2");

    let d4 = tempfile::tempdir().unwrap();
    watch_file(
        d4.path(),
        &model,
        uri,
        "10s",
        "{\"2\": [0.05], \"1\": [0.05]}",
    );
    // Version 2 was just promoted (marked good); only a failed verification of 1 escalates.
    let o = run(d4.path(), &["watch", "-c", "watch.yaml"]).await;
    assert_eq!(o.status.code(), Some(4), "{}", words(&o));

    let before = alias_version(&model).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d1 = tempfile::tempdir().unwrap();
    watch_file(
        d1.path(),
        &model,
        &format!("http://127.0.0.1:{port}"),
        "10s",
        "{\"2\": [0.05]}",
    );
    let o = run(d1.path(), &["watch", "-c", "watch.yaml"]).await;
    assert_eq!(o.status.code(), Some(1), "{}", words(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.starts_with("error: ") && stderr.contains(&model),
        "{stderr}"
    );
    assert_eq!(alias_version(&model).await, before);
}
