//! The Deployment target, rollbacker, dry runs, rollout status and probe
//! against the test API server (kmock plus tests/support/kube_apiserver.py).

mod helpers;
mod support;

use std::time::Duration;

use rollback_core::{
    Convergence, DryRun, ErrorKind, HealthProbe, ProbeContext, RollbackOutcome, Rollbacker, Target,
    Timestamp,
};
use rollback_k8s::{KubernetesProbe, Problem, UndoOptions, UndoTo};
use serde_json::{Value, json};

use helpers::{NS, builder, image, patches, request, resource_version, three_revisions};
use support::{KubeServer, Rev, Seed};

#[tokio::test]
async fn history_is_newest_first_with_template_hash_ids_and_attributes() {
    let server = KubeServer::start();
    let mut seed = three_revisions(&server).await;
    // A ReplicaSet of another Deployment with the same labels is not in the history.
    seed.name = "web".into();
    let client = server.client();
    let target = builder(&server, "web").build().unwrap();
    let history = target.history().await.unwrap();
    let ids: Vec<_> = history
        .iter()
        .map(|e| e.revision.id().to_string())
        .collect();
    assert_eq!(ids, ["ccc", "bbb", "aaa"]);
    let labels: Vec<_> = history
        .iter()
        .map(|e| e.revision.label().to_owned())
        .collect();
    assert_eq!(labels, ["revision 3", "revision 2", "revision 1"]);
    let attrs = history[1].revision.attributes();
    assert_eq!(attrs["images"], "app=web:2");
    assert_eq!(attrs["image.app"], "web:2");
    assert_eq!(attrs["change-cause"], "deploy web:2");
    assert_eq!(attrs["replicaset"], "web-bbb");
    assert!(
        Timestamp::parse(&attrs["created"]).is_some(),
        "created is a time: {}",
        attrs["created"]
    );
    assert_eq!(target.current().await.unwrap().id().as_str(), "ccc");
    assert_eq!(target.id().as_str(), "k8s:shop/web");

    // An orphan ReplicaSet matching the selector, but owned by nobody, is ignored.
    let rs: k8s_openapi::api::apps::v1::ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "web-zzz", "labels": {"app": "web", "pod-template-hash": "zzz"},
                      "annotations": {"deployment.kubernetes.io/revision": "9"}},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": support::template("web", &Rev::new(9, "zzz", "web:9"), true)},
    }))
    .unwrap();
    kube::Api::<k8s_openapi::api::apps::v1::ReplicaSet>::namespaced(client, NS)
        .create(&Default::default(), &rs)
        .await
        .unwrap();
    assert_eq!(target.history().await.unwrap().len(), 3);
}

#[tokio::test]
async fn undo_to_previous_then_to_a_number_renumbers_but_keeps_ids() {
    let server = KubeServer::start();
    three_revisions(&server).await;
    let target = builder(&server, "web").build().unwrap();
    let out = target
        .undo(&UndoTo::Previous, &UndoOptions::default())
        .await
        .unwrap();
    assert!(matches!(out, RollbackOutcome::RolledBack { .. }), "{out:?}");
    assert!(out.detail().contains("revision 2"), "{}", out.detail());
    assert_eq!(image(&server, "web").await, "web:2");
    // Before the controller acts, the current revision is the ReplicaSet with the restored template.
    assert_eq!(target.current().await.unwrap().id().as_str(), "bbb");
    support::controller_step(&server.client(), NS, "web").await;
    let history = target.history().await.unwrap();
    let ids: Vec<_> = history
        .iter()
        .map(|e| (e.revision.id().to_string(), e.revision.label().to_owned()))
        .collect();
    assert_eq!(
        ids,
        [
            ("bbb".into(), "revision 4".into()),
            ("ccc".into(), "revision 3".into()),
            ("aaa".into(), "revision 1".into())
        ]
    );

    let out = target
        .undo(&UndoTo::Number(1), &UndoOptions::default())
        .await
        .unwrap();
    assert!(matches!(out, RollbackOutcome::RolledBack { .. }), "{out:?}");
    assert_eq!(image(&server, "web").await, "web:1");
}

#[tokio::test]
async fn rollback_to_an_id_is_idempotent_and_the_patch_has_a_precondition() {
    let server = KubeServer::start();
    three_revisions(&server).await;
    let target = builder(&server, "web").build().unwrap();
    server.clear_requests().await;
    let rv = resource_version(&server, "web").await;
    server.clear_requests().await;
    let out = target
        .rollback(&request(Some("ccc"), "aaa", DryRun::None))
        .await
        .unwrap();
    assert!(matches!(out, RollbackOutcome::RolledBack { .. }), "{out:?}");
    let log = server.request_log().await;
    let calls: Vec<_> = log
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["method"].as_str().unwrap(),
                r["path"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        calls,
        [
            "GET /apis/apps/v1/namespaces/shop/deployments/web",
            "GET /apis/apps/v1/namespaces/shop/replicasets",
            "PATCH /apis/apps/v1/namespaces/shop/deployments/web",
        ]
    );
    assert_eq!(log[1]["query"], json!("&labelSelector=app%3Dweb"));
    assert_eq!(log[2]["content_type"], json!("application/json-patch+json"));
    let ops: Value = serde_json::from_str(log[2]["body"].as_str().unwrap()).unwrap();
    let paths: Vec<_> = ops
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["op"].clone(), o["path"].clone()))
        .collect();
    assert_eq!(
        paths,
        [
            (json!("replace"), json!("/metadata/resourceVersion")),
            (json!("replace"), json!("/spec/template")),
            (json!("replace"), json!("/metadata/annotations")),
        ]
    );
    assert_eq!(ops[0]["value"], json!(rv));
    assert_eq!(image(&server, "web").await, "web:1");
    let again = target
        .rollback(&request(Some("ccc"), "aaa", DryRun::None))
        .await
        .unwrap();
    assert!(
        matches!(again, RollbackOutcome::AlreadyAt { .. }),
        "{again:?}"
    );
    assert!(
        again
            .detail()
            .starts_with("skipped rollback (current template already matches revision 1)"),
        "{}",
        again.detail()
    );
    assert_eq!(
        patches(&server).await.len(),
        1,
        "the repeated rollback sent no patch"
    );
}

#[tokio::test]
async fn dry_runs_change_nothing() {
    let server = KubeServer::start();
    three_revisions(&server).await;
    let rv = resource_version(&server, "web").await;
    let target = builder(&server, "web").build().unwrap();
    server.clear_requests().await;
    let out = target
        .rollback(&request(None, "aaa", DryRun::Server))
        .await
        .unwrap();
    assert!(matches!(out, RollbackOutcome::DryRun { .. }), "{out:?}");
    assert!(
        out.detail().starts_with("server dry run"),
        "{}",
        out.detail()
    );
    let p = patches(&server).await;
    assert_eq!(p.len(), 1);
    assert!(p[0].contains("dryRun=All"), "{p:?}");
    assert_eq!(resource_version(&server, "web").await, rv);

    let client_side = builder(&server, "web")
        .dry_run(DryRun::Client)
        .build()
        .unwrap();
    server.clear_requests().await;
    let out = client_side
        .rollback(&request(None, "aaa", DryRun::Client))
        .await
        .unwrap();
    assert!(
        out.detail().contains(
            "would roll back Deployment shop/web to revision 1 (pod-template-hash aaa, app=web:1)"
        ),
        "{}",
        out.detail()
    );
    assert!(patches(&server).await.is_empty());
    assert_eq!(resource_version(&server, "web").await, rv);
    // Every API server takes a server dry run, whatever the handle's default.
    assert!(Target::capabilities(&client_side).server_dry_run);
    assert!(Target::capabilities(&target).server_dry_run);
}

#[tokio::test]
async fn a_handles_dry_run_applies_to_changes_asked_without_one() {
    let server = KubeServer::start();
    three_revisions(&server).await;
    let rv = resource_version(&server, "web").await;
    let server_side = builder(&server, "web")
        .dry_run(DryRun::Server)
        .build()
        .unwrap();
    server.clear_requests().await;
    let out = server_side
        .rollback(&request(None, "aaa", DryRun::None))
        .await
        .unwrap();
    assert!(
        out.detail().starts_with("server dry run"),
        "{}",
        out.detail()
    );
    let p = patches(&server).await;
    assert!(p.len() == 1 && p[0].contains("dryRun=All"), "{p:?}");
    let out = server_side
        .undo(&UndoTo::Previous, &UndoOptions::default())
        .await
        .unwrap();
    assert!(matches!(out, RollbackOutcome::DryRun { .. }), "{out:?}");

    // A request's own dry run wins: a server dry run through a client-side handle.
    let client_side = builder(&server, "web")
        .dry_run(DryRun::Client)
        .build()
        .unwrap();
    server.clear_requests().await;
    let out = client_side
        .rollback(&request(None, "aaa", DryRun::Server))
        .await
        .unwrap();
    assert!(
        out.detail().starts_with("server dry run"),
        "{}",
        out.detail()
    );
    assert_eq!(patches(&server).await.len(), 1);
    let out = client_side
        .rollback(&request(None, "aaa", DryRun::None))
        .await
        .unwrap();
    assert!(
        out.detail().starts_with("client dry run"),
        "{}",
        out.detail()
    );
    assert_eq!(
        patches(&server).await.len(),
        1,
        "a client dry run sends nothing"
    );
    assert_eq!(resource_version(&server, "web").await, rv);
}

#[tokio::test]
async fn paused_deployments_are_refused_unless_resuming_is_asked_for() {
    let server = KubeServer::start();
    let client = server.client();
    support::create_namespace(&client, NS).await;
    let mut seed = Seed::new(
        "web",
        vec![Rev::new(1, "aaa", "web:1"), Rev::new(2, "bbb", "web:2")],
    );
    seed.paused = true;
    support::seed(&client, NS, &seed).await;
    let rv = resource_version(&server, "web").await;
    let target = builder(&server, "web").build().unwrap();
    let err = target
        .undo(&UndoTo::Previous, &UndoOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(
        err.message().starts_with("you cannot rollback a paused deployment; resume it first with 'kubectl rollout resume deployment/web' and try again"),
        "{}",
        err.message()
    );
    assert_eq!(resource_version(&server, "web").await, rv);

    let resuming = builder(&server, "web").resume_paused(true).build().unwrap();
    let out = resuming
        .undo(&UndoTo::Previous, &UndoOptions::default())
        .await
        .unwrap();
    assert!(out.detail().ends_with("and resumed it"), "{}", out.detail());
    let d = support::deployment_json(&client, NS, "web").await;
    assert_eq!(d["spec"]["paused"], json!(false));
    assert_eq!(image(&server, "web").await, "web:1");
}

#[tokio::test]
async fn several_containers_and_replica_set_annotations_are_restored_like_kubectl() {
    let server = KubeServer::start();
    let client = server.client();
    support::create_namespace(&client, NS).await;
    let mut old = Rev::new(1, "aaa", "app:1");
    old.containers.push(("sidecar".into(), "proxy:1".into()));
    old.init_containers
        .push(("migrate".into(), "migrate:1".into()));
    old.extra_annotations
        .insert("team".into(), "payments".into());
    let mut new = Rev::new(2, "bbb", "app:2");
    new.containers.push(("sidecar".into(), "proxy:2".into()));
    let mut seed = Seed::new("multi", vec![old, new]);
    seed.deployment_annotations.insert(
        "kubectl.kubernetes.io/last-applied-configuration".into(),
        "{}".into(),
    );
    seed.deployment_annotations
        .insert("owner".into(), "someone".into());
    support::seed(&client, NS, &seed).await;
    let target = builder(&server, "multi").build().unwrap();
    let rev = &target.history().await.unwrap()[1].revision;
    assert_eq!(rev.attributes()["images"], "app=app:1,sidecar=proxy:1");
    assert_eq!(rev.attributes()["image.migrate"], "migrate:1");
    target
        .undo(&UndoTo::Previous, &UndoOptions::default())
        .await
        .unwrap();
    let d = support::deployment_json(&client, NS, "multi").await;
    assert_eq!(
        d["spec"]["template"],
        support::template("multi", &seed.revs[0], false)
    );
    assert_eq!(
        d["metadata"]["annotations"],
        json!({
            "deployment.kubernetes.io/revision": "2",
            "kubectl.kubernetes.io/last-applied-configuration": "{}",
            "kubernetes.io/change-cause": "deploy app:1",
            "team": "payments",
        })
    );
}

#[tokio::test]
async fn rollout_status_waits_for_convergence_and_reports_progress() {
    let server = KubeServer::start();
    three_revisions(&server).await;
    let target = builder(&server, "web").build().unwrap();
    target
        .undo(&UndoTo::Previous, &UndoOptions::default())
        .await
        .unwrap();
    assert!(!target.rollout_status().await.unwrap().done);
    // Nothing converges without a controller.
    let out = target
        .wait_rollout(Some(&"bbb".into()), Duration::from_millis(300), |_| {})
        .await
        .unwrap();
    assert_eq!(
        out,
        Convergence::TimedOut {
            detail: "Waiting for deployment spec update to be observed...".into()
        }
    );

    let controller = support::spawn_controller(server.client(), NS, "web");
    let mut seen = Vec::new();
    let out = target
        .wait_rollout(Some(&"bbb".into()), Duration::from_secs(20), |s| {
            seen.push(s.message.clone())
        })
        .await
        .unwrap();
    controller.abort();
    assert_eq!(out, Convergence::Converged);
    assert_eq!(
        seen.last().map(String::as_str),
        Some("deployment \"web\" successfully rolled out"),
        "{seen:?}"
    );
    // Waiting for another revision than the one that runs fails at once.
    let out = target
        .wait_converged(&"aaa".into(), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        matches!(&out, Convergence::Failed { detail } if detail.contains("now runs revision 4 (pod-template-hash bbb)")),
        "{out:?}"
    );

    // A progress deadline ends the wait as failed.
    let stuck = json!({"status": {"conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}});
    kube::Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(server.client(), NS)
        .patch_status("web", &Default::default(), &kube::api::Patch::Merge(stuck))
        .await
        .unwrap();
    let out = target
        .wait_converged(&"bbb".into(), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        out,
        Convergence::Failed {
            detail: "deployment \"web\" exceeded its progress deadline".into()
        }
    );
}

#[tokio::test]
async fn kubernetes_probe_counts_problems_of_the_judged_revision() {
    let server = KubeServer::start();
    three_revisions(&server).await;
    let client = server.client();
    let target = builder(&server, "web").build().unwrap();
    let probe = KubernetesProbe::new("k8s", target.clone()).max_restarts(1);
    let context = |rev: &str| ProbeContext::new(target.id().clone(), rev.into(), Timestamp::EPOCH);
    assert_eq!(
        probe.measure(&context("ccc")).await.unwrap().value,
        Some(0.0)
    );

    let healthy = json!({"name": "app", "image": "web:3", "imageID": "", "ready": true, "restartCount": 1, "state": {"running": {}}});
    let crashing = json!({"name": "app", "image": "web:3", "imageID": "", "ready": false, "restartCount": 4,
                          "state": {"waiting": {"reason": "CrashLoopBackOff"}}});
    support::create_pod(&client, NS, "web", "ccc", "web-ccc-1", healthy.clone()).await;
    support::create_pod(&client, NS, "web", "ccc", "web-ccc-2", crashing.clone()).await;
    support::create_pod(&client, NS, "web", "bbb", "web-bbb-1", crashing).await;
    assert_eq!(
        probe.measure(&context("ccc")).await.unwrap().value,
        Some(2.0)
    );
    assert_eq!(
        probe.inspect(Some(&"ccc".into())).await.unwrap(),
        vec![
            Problem::Restarts {
                pod: "web-ccc-2".into(),
                container: "app".into(),
                count: 4
            },
            Problem::CrashLoopBackOff {
                pod: "web-ccc-2".into(),
                container: "app".into()
            },
        ]
    );
    assert_eq!(
        probe.measure(&context("aaa")).await.unwrap().value,
        Some(0.0)
    );

    let status = json!({"status": {"unavailableReplicas": 2,
        "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}});
    kube::Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(client, NS)
        .patch_status("web", &Default::default(), &kube::api::Patch::Merge(status))
        .await
        .unwrap();
    assert_eq!(
        probe.inspect(Some(&"aaa".into())).await.unwrap(),
        vec![
            Problem::ProgressDeadlineExceeded,
            Problem::Unavailable {
                replicas: 2,
                bound: 0
            }
        ]
    );
    assert_eq!(
        probe
            .clone()
            .max_unavailable(2)
            .measure(&context("aaa"))
            .await
            .unwrap()
            .value,
        Some(1.0)
    );
    assert_eq!(probe.name(), "k8s");
}
