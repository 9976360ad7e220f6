//! A pipeline stage as the tutorial's CI example runs it
//! (`tests/pipeline/stage.sh`): a shell script deploys a bad version of a
//! model on the real MLflow server, runs `rollback watch --timeout 2m`,
//! fails the stage with exit 3, and leaves the alias on the good version.

#[allow(clippy::all, unreachable_pub)]
#[path = "../../rollback-mlflow/tests/live/support.rs"]
mod support;

use std::process::Command;

#[tokio::test]
async fn a_stage_that_deploys_a_bad_version_fails_with_3_and_the_good_version_serves() {
    let uri = support::server_url().await;
    let model = support::unique("cli-stage");
    let client = support::client().await;
    support::seed(&client, &model, 2, Some(("champion", 2))).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rollback.yaml"),
        format!(
            "policy:\n  interval: 200ms\n  bake_time: 10m\n  failure_limit: 1\n  verify: 1s\n\
             probes:\n  - name: error_rate\n    success: \"< 0.01\"\n    scripted:\n      per_revision: {{\"3\": [0.002, 0.03, 0.04], \"2\": [0.001]}}\n\
             audit: audit.jsonl\nstate: state\n\
             targets:\n  - mlflow://{model}@champion\n"
        ),
    )
    .unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pipeline/stage.sh");
    let dir_path = dir.path().to_owned();
    let model_name = model.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("sh")
            .arg(script)
            .current_dir(&dir_path)
            .env("MLFLOW_TRACKING_URI", uri)
            .env("MODEL", &model_name)
            .env("ROLLBACK", env!("CARGO_BIN_EXE_rollback"))
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stdout}{stderr}");
    assert!(stdout.contains("deploying a new version"), "{stdout}");
    assert!(
        stdout.contains("decision rollback: roll back from 3 to 2"),
        "{stdout}"
    );
    assert!(
        stdout.contains("stage failed: version 3 was rolled back"),
        "{stdout}"
    );
    let serving = client
        .get_model_version_by_alias(&model, "champion")
        .await
        .unwrap();
    assert_eq!(serving.version, "2", "the good version serves again");
    // The stage left its audit trail, whole.
    let verify = Command::new(env!("CARGO_BIN_EXE_rollback"))
        .args(["audit", "verify", "audit.jsonl"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}
