//! How the Deployment handle fails: missing namespaces, Deployments and
//! revisions, bad revision annotations, RBAC denials, retried conflicts and
//! server errors, and concurrent changes, against the test API server.

mod helpers;
mod support;

use std::time::Duration;

use rollback_core::policy::RetryPolicy;
use rollback_core::{DryRun, ErrorKind, RollbackOutcome, Rollbacker, Target};
use rollback_k8s::{K8sDeployment, UndoOptions, UndoTo};
use serde_json::json;

use helpers::{NS, builder, image, patches, request, resource_version, three_revisions};
use support::{KubeServer, Rev, Seed};

#[tokio::test]
async fn unknown_namespace_deployment_and_revisions_are_clear_not_found_errors() {
    let server = KubeServer::start();
    three_revisions(&server).await;
    let rv = resource_version(&server, "web").await;

    let nowhere = K8sDeployment::builder(server.client())
        .namespace("nowhere")
        .name("web")
        .build()
        .unwrap();
    let err = nowhere.history().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(
        err.message()
            .starts_with("namespace nowhere does not exist"),
        "{}",
        err.message()
    );

    // Without the right to read namespaces, the message cannot tell the two apart.
    server
        .fault(json!({"verb": "get", "resource": "namespaces", "status": 403, "count": 1}))
        .await;
    let err = nowhere.current().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(
        err.message()
            .starts_with("Deployment web not found in namespace nowhere"),
        "{}",
        err.message()
    );

    let missing = builder(&server, "api").build().unwrap();
    let err = missing.current().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(
        err.message()
            .starts_with("Deployment api not found in namespace shop"),
        "{}",
        err.message()
    );

    let target = builder(&server, "web").build().unwrap();
    let err = target
        .undo(&UndoTo::Number(7), &UndoOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(
        err.message()
            .starts_with("unable to find specified revision 7 in history"),
        "{}",
        err.message()
    );
    assert!(
        err.message()
            .contains("kubectl rollout history deployment/web -n shop"),
        "{}",
        err.message()
    );
    let err = target
        .undo(&UndoTo::Number(-1), &UndoOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);

    let err = target
        .rollback(&request(None, "nope", DryRun::None))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(
        err.message()
            .contains("ccc (revision 3), bbb (revision 2), aaa (revision 1)"),
        "{}",
        err.message()
    );
    assert_eq!(resource_version(&server, "web").await, rv);

    let err = K8sDeployment::builder(server.client())
        .namespace("Shop")
        .name("web")
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let err = K8sDeployment::builder(server.client())
        .name("web")
        .build()
        .unwrap_err();
    assert!(
        err.message().contains("namespace is required"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn no_history_and_unparsable_revision_annotations_are_clear_errors() {
    let server = KubeServer::start();
    let client = server.client();
    support::create_namespace(&client, NS).await;
    support::seed(
        &client,
        NS,
        &Seed::new("solo", vec![Rev::new(1, "aaa", "solo:1")]),
    )
    .await;
    let solo = builder(&server, "solo").build().unwrap();
    let err = solo
        .undo(&UndoTo::Previous, &UndoOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(
        err.message()
            .starts_with("no rollout history found for deployment \"solo\""),
        "{}",
        err.message()
    );

    let mut bad = Rev::new(2, "bbb", "odd:2");
    bad.number = "two".into();
    support::seed(
        &client,
        NS,
        &Seed::new(
            "odd",
            vec![
                Rev::new(1, "aaa", "odd:1"),
                bad,
                Rev::new(3, "ccc", "odd:3"),
            ],
        ),
    )
    .await;
    let rv = resource_version(&server, "odd").await;
    let odd = builder(&server, "odd").build().unwrap();
    let err = odd
        .undo(&UndoTo::Previous, &UndoOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(
        err.message().starts_with("ReplicaSet shop/odd-bbb of Deployment shop/odd has an unparsable deployment.kubernetes.io/revision annotation \"two\""),
        "{}",
        err.message()
    );
    assert!(
        err.message()
            .contains("kubectl annotate rs odd-bbb -n shop --overwrite"),
        "{}",
        err.message()
    );
    assert_eq!(
        odd.history().await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(resource_version(&server, "odd").await, rv);
}

#[tokio::test]
async fn rbac_denial_is_unauthorized_with_what_to_grant_and_leaves_the_deployment_alone() {
    let server = KubeServer::start();
    three_revisions(&server).await;
    let rv = resource_version(&server, "web").await;
    server
        .fault(json!({"verb": "patch", "resource": "deployments", "status": 403}))
        .await;
    server.clear_requests().await;
    let target = builder(&server, "web").build().unwrap();
    let err = target
        .undo(&UndoTo::Previous, &UndoOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    assert!(!err.is_retryable());
    assert!(
        err.message().contains("deployments.apps \"web\" is forbidden: User \"system:anonymous\" cannot patch resource \"deployments\""),
        "{}",
        err.message()
    );
    assert!(
        err.message()
            .contains("kubectl auth can-i patch deployments -n shop"),
        "{}",
        err.message()
    );
    assert_eq!(patches(&server).await.len(), 1, "403 is not retried");
    assert_eq!(resource_version(&server, "web").await, rv);

    server
        .fault(json!({"verb": "list", "resource": "replicasets", "status": 403}))
        .await;
    let err = target.history().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    assert!(
        err.message().contains("grant `list` on `replicasets`"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn conflicts_throttling_and_server_errors_are_retried_per_policy() {
    let server = KubeServer::start();
    three_revisions(&server).await;
    let target = builder(&server, "web").build().unwrap();
    for (status, reason) in [
        (409, "Conflict"),
        (429, "TooManyRequests"),
        (503, "ServiceUnavailable"),
    ] {
        server.fault(json!({"verb": "patch", "resource": "deployments", "status": status, "reason": reason, "count": 1})).await;
    }
    server.clear_requests().await;
    // Three failures in a row need four tries.
    let four = builder(&server, "web")
        .retry(RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(5),
        })
        .build()
        .unwrap();
    let out = four
        .undo(&UndoTo::Previous, &UndoOptions::default())
        .await
        .unwrap();
    assert!(matches!(out, RollbackOutcome::RolledBack { .. }));
    assert_eq!(patches(&server).await.len(), 4);
    assert_eq!(image(&server, "web").await, "web:2");

    server
        .fault(json!({"verb": "patch", "resource": "deployments", "status": 500}))
        .await;
    let rv = resource_version(&server, "web").await;
    let err = target
        .undo(&UndoTo::Number(1), &UndoOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert!(err.message().contains("retry later"), "{}", err.message());
    assert_eq!(resource_version(&server, "web").await, rv);
}

#[tokio::test]
async fn a_concurrent_change_is_not_overwritten() {
    let server = KubeServer::start();
    three_revisions(&server).await;
    let target = builder(&server, "web").build().unwrap();

    // A writer adds an annotation between our read and our patch: 409, then a fresh try succeeds.
    server
        .fault(
            json!({"verb": "patch", "resource": "deployments", "count": 1,
                      "mutate": {"metadata": {"labels": {"touched": "yes"}}}}),
        )
        .await;
    server.clear_requests().await;
    let out = target
        .rollback(&request(Some("ccc"), "bbb", DryRun::None))
        .await
        .unwrap();
    assert!(matches!(out, RollbackOutcome::RolledBack { .. }));
    assert_eq!(
        patches(&server).await.len(),
        2,
        "the stale patch was refused, the fresh one applied"
    );
    let d = support::deployment_json(&server.client(), NS, "web").await;
    assert_eq!(d["metadata"]["labels"]["touched"], json!("yes"));
    assert_eq!(image(&server, "web").await, "web:2");

    // A writer ships a new template meanwhile: the rollback does not overwrite it.
    server
        .fault(json!({"verb": "patch", "resource": "deployments", "count": 1,
                      "mutate": {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "web:4"}]}}}}}))
        .await;
    let err = target
        .rollback(&request(Some("bbb"), "aaa", DryRun::None))
        .await
        .unwrap_err();
    assert_eq!(image(&server, "web").await, "web:4", "{err}");
    support::controller_step(&server.client(), NS, "web").await;
    let err = target
        .rollback(&request(Some("bbb"), "aaa", DryRun::None))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(
        err.message().contains("changed concurrently"),
        "{}",
        err.message()
    );
    assert_eq!(image(&server, "web").await, "web:4");
}
