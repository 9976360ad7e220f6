//! A registered model's alias on the real MLflow tracking server
//! (rollback-mlflow's test support starts one per test run) is moved to a
//! new version while the server runs: the server notices, judges the new
//! version and moves the alias back to the last known good one.

mod common;
#[allow(clippy::all, unreachable_pub)]
#[path = "../../rollback-mlflow/tests/live/support.rs"]
mod support;

use std::time::Duration;

use common::{SERVE, events, start, until, write};
use rollback_core::audit::MemoryAuditSink;
use rollback_core::machine::PhaseKind;

const WAIT: Duration = Duration::from_secs(60);

async fn alias_version(name: &str) -> String {
    support::client()
        .await
        .get_model_version_by_alias(name, "champion")
        .await
        .expect("the alias")
        .version
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alias_moved_while_serving_is_judged_and_moved_back() {
    let uri = support::server_url().await;
    let model = support::unique("serve");
    let client = support::client().await;
    support::seed(&client, &model, 3, Some(("champion", 2))).await;
    let dir = tempfile::tempdir().unwrap();
    // Version 3 fails its probe; 1 and 2 pass.
    let file = write(
        dir.path(),
        "rollback.yaml",
        &format!(
            "policy:\n  interval: 100ms\n  bake_time: 500ms\n  verify: 500ms\n\
             probes:\n  - name: error_rate\n    success: \"< 0.01\"\n    scripted:\n      per_revision: {{\"1\": [0.001], \"2\": [0.001], \"3\": [0.05]}}\n\
             state: state\naudit: audit.jsonl\n\
             targets:\n  - url: mlflow://{model}@champion\n    tracking_uri: {uri}\n{SERVE}  poll_interval: 200ms\n"
        ),
    );
    let audit = MemoryAuditSink::new();
    let server = start(&file, rollback::registry(), &audit).await;
    let id = format!("mlflow:{model}@champion");
    let phase = |server: &rollback_serve::Server| {
        server
            .engine()
            .phases()
            .into_iter()
            .find(|(t, _)| t.as_str() == id)
            .map(|(_, p)| p.kind())
    };
    until("version 2 promoted", WAIT, || {
        phase(&server) == Some(PhaseKind::Promoted)
    })
    .await;

    // Someone points the alias at version 3.
    client
        .set_alias(&model, "champion", "3")
        .await
        .expect("moving the alias");
    until("version 3 judged and rolled back", WAIT, || {
        phase(&server) == Some(PhaseKind::RolledBack)
    })
    .await;
    assert_eq!(alias_version(&model).await, "2");
    let seen = events(&audit, &id);
    let started: Vec<&String> = seen.iter().filter(|e| e.starts_with("started")).collect();
    assert_eq!(started, ["started 2", "started 3"], "{seen:?}");
    assert!(seen.contains(&"decided complete".to_owned()), "{seen:?}");
    // Version 3 is marked bad in MLflow's own tags, for the next reader.
    let v3 = client
        .get_model_version(&model, "3")
        .await
        .expect("version 3");
    assert!(
        v3.tags
            .iter()
            .any(|t| t.key == "rollback.health" && t.value == "bad"),
        "{:?}",
        v3.tags
    );
    server.shutdown().await;
}
