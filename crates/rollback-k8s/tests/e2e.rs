//! End-to-end against a real cluster (kind, minikube, …), opt-in:
//!
//! ```text
//! ROLLBACK_K8S_E2E=1 KUBECONFIG=~/.kube/config cargo nextest run -p rollback-k8s --test e2e --success-output immediate
//! ```
//!
//! It creates a namespace `rollback-k8s-e2e-<random>`, ships three revisions
//! of a Deployment (image `registry.k8s.io/pause:3.9`, changing an env var),
//! lets the real deployment controller roll them out, runs rollback-core's
//! conformance suite (which rolls back and waits for convergence), checks that
//! the restored revision keeps its pod-template hash under a new number; the
//! same for a StatefulSet and a DaemonSet with the real controllers'
//! ControllerRevisions; and deletes the namespace. Without `ROLLBACK_K8S_E2E=1` it only says that it
//! did not run.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use rollback_core::{Convergence, Rollbacker, Target};
use rollback_k8s::{
    K8sConfig, K8sDeployment, K8sWorkload, K8sWorkloadConfig, UndoOptions, UndoTo, WorkloadKind,
};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(180);

#[tokio::test]
async fn real_cluster_end_to_end_runs_only_with_rollback_k8s_e2e_1() {
    if std::env::var("ROLLBACK_K8S_E2E").as_deref() != Ok("1") {
        eprintln!(
            "rollback-k8s e2e: NOT RUN. Set ROLLBACK_K8S_E2E=1 with a kubeconfig (KUBECONFIG or ~/.kube/config) \
             pointing at a disposable cluster (kind, minikube) to run it."
        );
        return;
    }
    let client = kube::Client::try_default()
        .await
        .expect("ROLLBACK_K8S_E2E=1 needs a working kubeconfig");
    let ns = format!("rollback-k8s-e2e-{:08x}", fastrand::u32(..));
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .expect("creating the test namespace");
    eprintln!("rollback-k8s e2e: running in namespace {ns}");
    let result = tokio::spawn(scenario(client.clone(), ns.clone())).await;
    let result = match result {
        Ok(()) => tokio::spawn(workloads(client.clone(), ns.clone())).await,
        failed => failed,
    };
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic.into_panic());
    }
}

async fn ship(api: &Api<Deployment>, target: &K8sDeployment, version: &str) {
    let patch = json!({
        "metadata": {"annotations": {"kubernetes.io/change-cause": format!("ship {version}")}},
        "spec": {"template": {"spec": {"containers": [{"name": "app", "env": [{"name": "VERSION", "value": version}]}]}}},
    });
    api.patch("web", &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .expect("shipping a revision");
    let done = target
        .wait_rollout(None, TIMEOUT, |s| eprintln!("  {}", s.message))
        .await
        .expect("rollout status");
    assert_eq!(done, Convergence::Converged, "rolling out {version}");
}

async fn scenario(client: kube::Client, ns: String) {
    let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{
                "name": "app", "image": "registry.k8s.io/pause:3.9", "env": [{"name": "VERSION", "value": "v1"}]}]}},
        },
    }))
    .unwrap();
    api.create(&PostParams::default(), &d)
        .await
        .expect("creating the Deployment");
    // The handle finds the cluster as kubectl does, through the kubeconfig.
    let config = K8sConfig::new(&ns, "web").poll_interval(Duration::from_secs(1));
    let target = K8sDeployment::connect(&config, None)
        .await
        .expect("connecting through the kubeconfig");
    let done = target
        .wait_rollout(None, TIMEOUT, |s| eprintln!("  {}", s.message))
        .await
        .unwrap();
    assert_eq!(done, Convergence::Converged);
    ship(&api, &target, "v2").await;
    ship(&api, &target, "v3").await;

    let history = target.history().await.unwrap();
    let labels: Vec<_> = history
        .iter()
        .map(|e| e.revision.label().to_owned())
        .collect();
    assert_eq!(labels, ["revision 3", "revision 2", "revision 1"]);
    let v2 = history[1].revision.id().clone();

    rollback_core::conformance::check_rollbacker(&target, &target.rollbacker())
        .await
        .expect("the conformance suite");
    let current = target.current().await.unwrap();
    assert_eq!(current.id(), &v2, "rolled back to the previous revision");
    assert_eq!(
        current.label(),
        "revision 4",
        "the controller renumbered it"
    );

    // kubectl's semantics on the real controller: previous now means revision 3.
    target
        .undo(&UndoTo::Previous, &UndoOptions::default())
        .await
        .unwrap();
    let done = target
        .wait_converged(&history[0].revision.id().clone(), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(done, Convergence::Converged);
}

/// A StatefulSet and a DaemonSet: three revisions shipped, the conformance
/// suite (a rollback to the previous revision, waited for), the restored
/// ControllerRevision renumbered, then kubectl's "previous" once more.
async fn workloads(client: kube::Client, ns: String) {
    for kind in [WorkloadKind::StatefulSet, WorkloadKind::DaemonSet] {
        let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
            client.clone(),
            &ns,
            &match kind {
                WorkloadKind::StatefulSet => {
                    kube::api::ApiResource::erase::<k8s_openapi::api::apps::v1::StatefulSet>(&())
                }
                _ => kube::api::ApiResource::erase::<k8s_openapi::api::apps::v1::DaemonSet>(&()),
            },
        );
        let name = kind.singular();
        let mut spec = json!({
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{
                "name": "app", "image": "registry.k8s.io/pause:3.9", "env": [{"name": "VERSION", "value": "v1"}]}]}},
        });
        if kind == WorkloadKind::StatefulSet {
            spec["replicas"] = json!(2);
            spec["serviceName"] = json!(name);
        }
        let object: kube::api::DynamicObject = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": kind.kind(), "metadata": {"name": name}, "spec": spec,
        }))
        .unwrap();
        api.create(&PostParams::default(), &object)
            .await
            .unwrap_or_else(|e| panic!("creating the {kind}: {e}"));
        let config = K8sWorkloadConfig::new(&ns, kind, name).poll_interval(Duration::from_secs(1));
        let target = K8sWorkload::connect(&config, None)
            .await
            .expect("connecting through the kubeconfig");
        let wait = || async {
            target
                .wait_rollout(None, TIMEOUT, |s| eprintln!("  {}", s.message))
                .await
                .expect("rollout status")
        };
        assert_eq!(wait().await, Convergence::Converged, "{kind} v1");
        for version in ["v2", "v3"] {
            let patch = json!({"spec": {"template": {"spec": {"containers": [
                {"name": "app", "env": [{"name": "VERSION", "value": version}]}]}}}});
            api.patch(name, &PatchParams::default(), &Patch::Strategic(patch))
                .await
                .expect("shipping a revision");
            assert_eq!(wait().await, Convergence::Converged, "{kind} {version}");
        }
        let history = target.history().await.unwrap();
        let labels: Vec<_> = history
            .iter()
            .map(|e| e.revision.label().to_owned())
            .collect();
        assert_eq!(labels, ["revision 3", "revision 2", "revision 1"], "{kind}");
        let v2 = history[1].revision.id().clone();
        rollback_core::conformance::check_rollbacker(&target, &target.rollbacker())
            .await
            .unwrap_or_else(|e| panic!("the conformance suite on the {kind}: {e}"));
        let current = target.current().await.unwrap();
        assert_eq!(
            current.id(),
            &v2,
            "{kind}: rolled back to the previous revision"
        );
        assert_eq!(
            current.label(),
            "revision 4",
            "{kind}: the controller renumbered it"
        );
        target
            .undo(&UndoTo::Previous, &UndoOptions::default())
            .await
            .unwrap();
        let done = target
            .wait_converged(&history[0].revision.id().clone(), TIMEOUT)
            .await
            .unwrap();
        assert_eq!(done, Convergence::Converged, "{kind}");
    }
}
