//! `RolloutRestartHook` end to end: an MLflow rollback against the real
//! tracking server, then a rollout restart of the model server's Deployment
//! on rollback-k8s's test API server (kmock plus its extension, started the
//! way rollback-k8s's own tests start it, from its `tests/support`).
#![cfg(feature = "k8s")]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rollback_core::{
    Convergence, ErrorKind, Revision, RollbackOutcome, Rollbacker, Target, TargetExt,
};
use rollback_k8s::K8sDeployment;
use rollback_k8s::patch::{RESTARTED_AT_ANNOTATION, templates_equal_ignoring_hash};
use rollback_mlflow::{MlflowTarget, PostRollbackHook as _, RolloutRestartHook};
use serde_json::{Value, json};

use crate::k8s_support::{self, KubeServer, Rev, Seed};
use crate::registry::{DECIDED_AT, request, target};
use crate::support::{client, seed, unique};

const NS: &str = "ml";
const SERVING: &str = "recommender-serving";

/// The test API server with the model server's Deployment as the controller
/// left it: one revision (hash `aaa`), image `serving:1.4`, three replicas.
async fn serving(paused: bool) -> KubeServer {
    let server = KubeServer::start();
    let client = server.client();
    k8s_support::create_namespace(&client, NS).await;
    let mut s = Seed::new(SERVING, vec![Rev::new(1, "aaa", "serving:1.4")]);
    s.paused = paused;
    k8s_support::seed(&client, NS, &s).await;
    server
}

fn deployment(server: &KubeServer) -> K8sDeployment {
    K8sDeployment::builder(server.client())
        .namespace(NS)
        .name(SERVING)
        .poll_interval(Duration::from_millis(50))
        .build()
        .unwrap()
}

async fn deployment_json(server: &KubeServer) -> Value {
    k8s_support::deployment_json(&server.client(), NS, SERVING).await
}

fn restarted_at(d: &Value) -> Option<SystemTime> {
    d.pointer("/spec/template/metadata/annotations")
        .and_then(|a| a.get(RESTARTED_AT_ANNOTATION))
        .and_then(Value::as_str)
        .map(|s| humantime::parse_rfc3339(s).unwrap_or_else(|e| panic!("{s:?}: {e}")))
}

/// A model at version 3 behind `champion`, with versions 1 to 3.
async fn model(prefix: &str) -> (String, MlflowTarget) {
    let name = unique(prefix);
    seed(&client().await, &name, 3, Some(("champion", 3))).await;
    let t = target(&name, 100).await;
    (name, t)
}

async fn alias_version(name: &str) -> String {
    client()
        .await
        .get_model_version_by_alias(name, "champion")
        .await
        .unwrap()
        .version
}

#[tokio::test]
async fn a_rollback_restarts_the_model_server_and_waits_for_its_new_replica_set() {
    let (name, t) = model("restart").await;
    let server = serving(false).await;
    let before = deployment_json(&server).await;
    assert_eq!(restarted_at(&before), None);
    let old_rs_template = deployment(&server).snapshot().await.unwrap().revisions[0]
        .template()
        .clone();
    assert!(templates_equal_ignoring_hash(
        &old_rs_template,
        &before["spec"]["template"]
    ));
    // The stand-in deployment controller rolls out whatever the template becomes.
    let controller = k8s_support::spawn_controller(server.client(), NS, SERVING);
    let hook =
        RolloutRestartHook::new(deployment(&server)).wait_for_rollout(Duration::from_secs(30));
    assert_eq!(
        hook.name(),
        "rollout restart of Deployment ml/recommender-serving"
    );
    let r = t.rollbacker().hook(Arc::new(hook));
    let good = t.find(&"2".into()).await.unwrap().revision;

    let out = r.rollback(&request(Some("3"), good, false)).await.unwrap();
    assert!(matches!(out, RollbackOutcome::RolledBack { .. }), "{out:?}");

    // The alias moved...
    assert_eq!(alias_version(&name).await, "2");
    assert_eq!(t.current().await.unwrap().id().as_str(), "2");
    // ...the template got a new restartedAt, and nothing else changed in it...
    let after = deployment_json(&server).await;
    let at = restarted_at(&after).expect("a restartedAt annotation");
    // Before, the restart read the clock; now it is stamped with the move's
    // decision time, as every other record of the rollback.
    assert_eq!(
        at,
        DECIDED_AT.to_system_time(),
        "restartedAt is the rollback's decision time"
    );
    let mut expected_template = before["spec"]["template"].clone();
    expected_template["metadata"]["annotations"] = json!({
        RESTARTED_AT_ANNOTATION: after.pointer("/spec/template/metadata/annotations/kubectl.kubernetes.io~1restartedAt").unwrap(),
    });
    assert_eq!(after["spec"]["template"], expected_template);
    // ...so no existing ReplicaSet matches it and the controller made a new one,
    // which the hook waited for (the rollout had converged when it returned).
    assert!(!templates_equal_ignoring_hash(
        &old_rs_template,
        &after["spec"]["template"]
    ));
    let snapshot = deployment(&server).snapshot().await.unwrap();
    assert_eq!(snapshot.revisions.len(), 2, "{:?}", snapshot.revisions);
    let current = snapshot.current_revision().unwrap();
    assert_ne!(current.id().as_str(), "aaa");
    assert_eq!(current.number(), 2);
    assert!(templates_equal_ignoring_hash(
        current.template(),
        &after["spec"]["template"]
    ));
    let status = deployment(&server).rollout_status().await.unwrap();
    assert!(status.done, "{status:?}");
    assert_eq!(status.observed_generation, 2);

    // The engine's convergence check waits for the model server too.
    let converged = r
        .wait_converged(&"2".into(), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(converged, Convergence::Converged);
    controller.abort();

    // One restart, as kubectl sends it.
    let patches: Vec<Value> = server
        .request_log()
        .await
        .into_iter()
        .filter(|q| {
            q["method"] == "PATCH" && q["path"].as_str().is_some_and(|p| p.ends_with(SERVING))
        })
        .collect();
    let restarts: Vec<&Value> = patches
        .iter()
        .filter(|q| q["content_type"] == "application/strategic-merge-patch+json")
        .collect();
    assert_eq!(restarts.len(), 1, "{patches:?}");
}

#[tokio::test]
async fn without_waiting_the_hook_returns_after_the_restart_and_convergence_waits_for_the_rollout()
{
    let (name, t) = model("restart-nowait").await;
    let server = serving(false).await;
    let r = t
        .rollbacker()
        .hook(Arc::new(RolloutRestartHook::new(deployment(&server))));
    let good = t.find(&"1".into()).await.unwrap().revision;
    r.rollback(&request(Some("3"), good, false)).await.unwrap();
    assert_eq!(alias_version(&name).await, "1");
    assert!(restarted_at(&deployment_json(&server).await).is_some());
    // No controller yet: the restart has not rolled out.
    let status = deployment(&server).rollout_status().await.unwrap();
    assert!(!status.done, "{status:?}");
    let waited = r
        .wait_converged(&"1".into(), Duration::from_millis(300))
        .await
        .unwrap();
    assert!(
        matches!(&waited, Convergence::TimedOut { detail } if detail == "Waiting for deployment spec update to be observed..."),
        "{waited:?}"
    );
    let controller = k8s_support::spawn_controller(server.client(), NS, SERVING);
    let waited = r
        .wait_converged(&"1".into(), Duration::from_secs(30))
        .await
        .unwrap();
    controller.abort();
    assert_eq!(waited, Convergence::Converged);
    assert_eq!(
        deployment(&server)
            .snapshot()
            .await
            .unwrap()
            .revisions
            .len(),
        2
    );
}

#[tokio::test]
async fn a_paused_model_server_fails_the_hook_saying_the_alias_moved_and_a_repeat_restarts_it() {
    let (name, t) = model("restart-paused").await;
    let server = serving(true).await;
    let before = deployment_json(&server).await;
    let r = t
        .rollbacker()
        .hook(Arc::new(RolloutRestartHook::new(deployment(&server))));
    let good = t.find(&"2".into()).await.unwrap().revision;

    let e = r
        .rollback(&request(Some("3"), good.clone(), false))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Permanent, "{e}");
    let m = e.message();
    assert!(m.contains("moved from version 3 to version 2, but the post-rollback hook rollout restart of Deployment ml/recommender-serving failed"), "{m}");
    assert!(m.contains(&format!("alias champion of registered model {name:?} already points at version 2, but restarting the model server Deployment ml/recommender-serving failed")), "{m}");
    assert!(
        m.contains("can't restart paused deployment (run rollout resume first)"),
        "{m}"
    );
    assert_eq!(
        alias_version(&name).await,
        "2",
        "the alias moved all the same"
    );
    assert_eq!(
        deployment_json(&server).await,
        before,
        "the Deployment is left alone"
    );

    // Once resumed, the same request finds the alias moved and runs the hook again.
    let api: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(server.client(), NS);
    api.patch(
        SERVING,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"spec": {"paused": false}})),
    )
    .await
    .unwrap();
    let out = r.rollback(&request(Some("3"), good, false)).await.unwrap();
    assert!(
        out.detail()
            .contains("the post-rollback hooks that had failed ran again"),
        "{}",
        out.detail()
    );
    assert!(restarted_at(&deployment_json(&server).await).is_some());
}

#[tokio::test]
async fn a_rollout_that_does_not_converge_in_time_fails_the_hook_saying_the_alias_moved() {
    let (name, t) = model("restart-slow").await;
    let server = serving(false).await;
    // No controller: the restart is stored but never rolls out.
    let hook =
        RolloutRestartHook::new(deployment(&server)).wait_for_rollout(Duration::from_millis(300));
    let r = t.rollbacker().hook(Arc::new(hook));
    let good = t.find(&"2".into()).await.unwrap().revision;
    let e = r
        .rollback(&request(Some("3"), good, false))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Permanent, "{e}");
    assert!(
        !e.is_retryable(),
        "restarting again would start the rollout over"
    );
    let m = e.message();
    assert!(m.contains(&format!("alias champion of registered model {name:?} already points at version 2, and the model server Deployment ml/recommender-serving was restarted")), "{m}");
    assert!(m.contains("but its rollout did not complete within 300ms (last: Waiting for deployment spec update to be observed...)"), "{m}");
    assert!(
        m.contains("kubectl rollout status deployment/recommender-serving -n ml"),
        "{m}"
    );
    assert_eq!(alias_version(&name).await, "2");
    assert!(restarted_at(&deployment_json(&server).await).is_some());
}

#[tokio::test]
async fn a_missing_model_server_deployment_is_a_not_found_error_after_the_alias_moved() {
    let (name, t) = model("restart-missing").await;
    let server = serving(false).await;
    let missing = K8sDeployment::builder(server.client())
        .namespace(NS)
        .name("no-such-server")
        .build()
        .unwrap();
    let r = t
        .rollbacker()
        .hook(Arc::new(RolloutRestartHook::new(missing)));
    let good = t.find(&"1".into()).await.unwrap().revision;
    let e = r
        .rollback(&request(Some("3"), good, false))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.message().contains("already points at version 1"), "{e}");
    assert!(
        e.message()
            .contains("Deployment no-such-server not found in namespace ml"),
        "{e}"
    );
    assert_eq!(alias_version(&name).await, "1");
}
