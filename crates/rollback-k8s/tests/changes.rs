//! `Target::changes` of a Deployment on the test API server: a watch (by
//! `metadata.name`) gives word of a new template and of the controller
//! having made its ReplicaSet, not of other status updates or of other
//! Deployments; dropping the receiver ends the watch.

mod helpers;
mod support;

use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use rollback_core::Target;
use serde_json::json;

use helpers::{NS, builder, three_revisions};
use support::{KubeServer, Rev, Seed};

const WAIT: Duration = Duration::from_secs(10);

async fn watches(server: &KubeServer) -> usize {
    server
        .requests()
        .await
        .iter()
        .filter(|r| {
            r.starts_with("GET /apis/apps/v1/namespaces/shop/deployments?")
                && r.contains("watch=true")
        })
        .count()
}

/// Wait until the watcher has listed and started watching.
async fn watching(server: &KubeServer) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while watches(server).await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no watch request: {:?}",
            server.requests().await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn no_word(rx: &mut rollback_core::changes::Changes, what: &str) {
    let word = tokio::time::timeout(Duration::from_millis(500), rx.changed()).await;
    assert!(word.is_err(), "word of a change after {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_gives_word_of_a_new_template_and_of_its_replica_set() {
    let server = KubeServer::start();
    three_revisions(&server).await;
    let client = server.client();
    support::seed(
        &client,
        NS,
        &Seed::new("other", vec![Rev::new(1, "ooo", "other:1")]),
    )
    .await;
    let target = builder(&server, "web").build().unwrap();
    let mut rx = target
        .changes()
        .expect("a Deployment gives word of changes");
    watching(&server).await;
    no_word(&mut rx, "starting").await;

    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), NS);
    // Another Deployment's new template: not this target's.
    let other = support::template("other", &Rev::new(2, "ppp", "other:2"), false);
    deployments
        .patch(
            "other",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": other}})),
        )
        .await
        .unwrap();
    no_word(&mut rx, "another Deployment changed").await;

    // A status update that is not the controller catching up: no word.
    deployments
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"availableReplicas": 2}})),
        )
        .await
        .unwrap();
    no_word(&mut rx, "a status update").await;

    // kubectl set image: a new template, a new generation.
    let template = support::template("web", &Rev::new(4, "ddd", "web:4"), false);
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": template}})),
        )
        .await
        .unwrap();
    tokio::time::timeout(WAIT, rx.changed())
        .await
        .expect("word of the new template")
        .unwrap();

    // The controller makes the ReplicaSet and observes the generation.
    assert!(support::controller_step(&client, NS, "web").await);
    tokio::time::timeout(WAIT, rx.changed())
        .await
        .expect("word of the controller's catching up")
        .unwrap();
    let current = target.current().await.unwrap();
    assert_ne!(current.id().as_str(), "ccc", "the new revision is current");

    // Dropped: the watch ends (no new watch request after the next event).
    drop(rx);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = watches(&server).await;
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        watches(&server).await,
        before,
        "the watch was not restarted"
    );
}
