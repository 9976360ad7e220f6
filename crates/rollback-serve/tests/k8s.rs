//! A Deployment on the test API server (kmock, from rollback-k8s's test
//! support, with its stand-in deployment controller) gets a new revision
//! while the server runs: the server notices it, judges it and rolls it
//! back to the last known good ReplicaSet, without a restart. Its poll is
//! an hour apart: the Deployment's watch is what gives word of the deploy.

mod common;
#[allow(clippy::all, unreachable_pub)]
#[path = "../../rollback-k8s/tests/support/mod.rs"]
mod support;

use std::time::Duration;

use common::{BOT, Bot, SERVE, events, start, until, write};
use kube::api::{Api, Patch, PatchParams};
use rollback_core::audit::MemoryAuditSink;
use rollback_core::machine::PhaseKind;
use serde_json::json;
use support::{KubeServer, Rev, Seed};

const WAIT: Duration = Duration::from_secs(30);

async fn image(server: &KubeServer) -> String {
    let d = support::deployment_json(&server.client(), "shop", "web").await;
    d["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_revision_shipped_while_serving_is_judged_and_rolled_back() {
    let kube = KubeServer::start();
    let client = kube.client();
    support::create_namespace(&client, "shop").await;
    support::seed(
        &client,
        "shop",
        &Seed::new(
            "web",
            vec![Rev::new(1, "aaa", "web:1"), Rev::new(2, "bbb", "web:2")],
        ),
    )
    .await;
    let controller = support::spawn_controller(client.clone(), "shop", "web");
    let dir = tempfile::tempdir().unwrap();
    // Every revision but the two seeded ones fails its probe.
    let file = write(
        dir.path(),
        "rollback.yaml",
        &format!(
            "policy:\n  interval: 100ms\n  bake_time: 500ms\n  verify: 500ms\n\
             probes:\n  - name: error_rate\n    success: \"< 0.01\"\n    scripted:\n      values: [0.05]\n      per_revision: {{aaa: [0.001], bbb: [0.001]}}\n\
             state: state\naudit: audit.jsonl\n\
             targets:\n  - url: k8s://shop/web\n    kubeconfig: {}\n    poll_interval: 100ms\n{SERVE}  poll_interval: 1h\n",
            kube.kubeconfig().display()
        ),
    );
    let audit = MemoryAuditSink::new();
    let server = start(&file, rollback::registry(), &audit).await;
    let bot = Bot::new(&server, Some(BOT));
    let phase = |server: &rollback_serve::Server| {
        server
            .engine()
            .phases()
            .into_iter()
            .find(|(t, _)| t.as_str() == "k8s:shop/web")
            .map(|(_, p)| p.kind())
    };
    until("revision bbb promoted", WAIT, || {
        phase(&server) == Some(PhaseKind::Promoted)
    })
    .await;

    // kubectl set image, as the API server sees it: a new template.
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), "shop");
    let template = support::template("web", &Rev::new(3, "ccc", "web:3"), false);
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": template}})),
        )
        .await
        .expect("a new revision");
    until("the new revision judged and rolled back", WAIT, || {
        phase(&server) == Some(PhaseKind::RolledBack)
    })
    .await;
    assert_eq!(
        image(&kube).await,
        "web:2",
        "back on the last known good template"
    );
    let seen = events(&audit, "k8s:shop/web");
    assert_eq!(seen[0], "started bbb", "{seen:?}");
    assert!(seen.contains(&"decided rollback".to_owned()), "{seen:?}");
    assert!(seen.contains(&"decided complete".to_owned()), "{seen:?}");
    let started: Vec<&String> = seen.iter().filter(|e| e.starts_with("started")).collect();
    assert_eq!(started.len(), 2, "bbb, then the new revision: {seen:?}");

    // The API shows it as a bot sees it.
    let (status, view) = bot.get("/api/v1/targets/k8s%3Ashop%2Fweb").await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["url"], "k8s://shop/web");
    assert_eq!(view["phase"]["phase"], "rolled_back");
    assert_eq!(view["phase"]["to"], "bbb");
    assert_eq!(view["last_decision"]["decision"], "complete");
    server.shutdown().await;
    controller.abort();
}
