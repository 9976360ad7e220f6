//! kubectl parity: the same Deployment is seeded twice on one test API server,
//! in namespace `kubectl` and in namespace `crate`; `kubectl rollout undo`
//! runs against the first and `K8sDeployment::undo` against the second, and
//! the resulting Deployments must be equal apart from server bookkeeping (uid,
//! resourceVersion, creationTimestamp, namespace), with the same outcome. When
//! both patch, the JSON patches must be kubectl's operations exactly, the
//! crate's only preceded by its resourceVersion precondition.

mod helpers;
mod support;

use helpers::three;
use rollback_core::policy::RetryPolicy;
use rollback_core::{DryRun, ErrorKind, RollbackOutcome};
use rollback_k8s::{K8sDeployment, UndoOptions, UndoTo};
use serde_json::Value;
use support::{KubeServer, Rev, Seed};

/// What kubectl did: Ok(stdout) or Err(stderr).
type KubectlResult = Result<String, String>;

struct Run {
    before: Value,
    kubectl: KubectlResult,
    kubectl_after: Value,
    ours: rollback_core::Result<RollbackOutcome>,
    ours_after: Value,
}

async fn run(seed: &Seed, to_revision: Option<i64>) -> Run {
    run_with(seed, to_revision, None).await
}

fn drop_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), drop_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(drop_nulls).collect()),
        other => other.clone(),
    }
}

/// The PATCH a namespace's Deployment received: (query, JSON patch body).
fn patch_of(log: &[Value], ns: &str) -> Option<(String, Value)> {
    let path = format!("/apis/apps/v1/namespaces/{ns}/deployments/web");
    log.iter()
        .find(|r| r["method"] == "PATCH" && r["path"] == path.as_str())
        .map(|r| {
            assert_eq!(r["content_type"], "application/json-patch+json");
            (
                r["query"].as_str().unwrap_or_default().to_owned(),
                serde_json::from_str(r["body"].as_str().unwrap_or("null")).unwrap(),
            )
        })
}

async fn run_with(seed: &Seed, to_revision: Option<i64>, dry_run: Option<DryRun>) -> Run {
    let server = KubeServer::start();
    let client = server.client();
    for ns in ["kubectl", "crate"] {
        support::create_namespace(&client, ns).await;
        support::seed(&client, ns, seed).await;
    }
    let before =
        support::without_bookkeeping(support::deployment_json(&client, "crate", &seed.name).await);
    assert_eq!(
        support::without_bookkeeping(
            support::deployment_json(&client, "kubectl", &seed.name).await
        ),
        before,
        "both namespaces start equal"
    );
    server.clear_requests().await;

    let resource = format!("deployment/{}", seed.name);
    let flag = to_revision.map(|n| format!("--to-revision={n}"));
    let mut args = vec!["-n", "kubectl", "rollout", "undo", resource.as_str()];
    args.extend(flag.as_deref());
    match dry_run {
        Some(DryRun::Server) => args.push("--dry-run=server"),
        Some(DryRun::Client) => args.push("--dry-run=client"),
        Some(DryRun::None) | None => {}
    }
    let (ok, stdout, stderr) = server.kubectl(&args);
    let kubectl = if ok {
        Ok(stdout.trim().to_owned())
    } else {
        Err(stderr.trim().to_owned())
    };

    let deployment = K8sDeployment::builder(client.clone())
        .namespace("crate")
        .name(&seed.name)
        .retry(RetryPolicy::NEVER)
        .build()
        .unwrap();
    let to = to_revision.map_or(UndoTo::Previous, UndoTo::Number);
    let ours = deployment
        .undo(
            &to,
            &UndoOptions {
                dry_run: dry_run.unwrap_or_default(),
                expect_current: None,
            },
        )
        .await;

    // The same patch: kubectl's two operations, after the crate's resourceVersion precondition.
    // (kubectl's Go encoding adds `creationTimestamp: null` to the template; the server drops it.)
    let log = server.request_log().await;
    match (patch_of(&log, "kubectl"), patch_of(&log, "crate")) {
        (Some((kq, kubectl_ops)), Some((cq, ours_ops))) => {
            assert_eq!(
                kq.contains("dryRun=All"),
                cq.contains("dryRun=All"),
                "{kq} versus {cq}"
            );
            let ours_ops = ours_ops.as_array().cloned().unwrap_or_default();
            assert_eq!(
                ours_ops.first().map(|o| o["path"].clone()),
                Some(Value::from("/metadata/resourceVersion"))
            );
            assert_eq!(
                drop_nulls(&kubectl_ops),
                Value::Array(ours_ops[1..].to_vec()),
                "the patches differ"
            );
        }
        (None, None) => {}
        (k, c) => panic!("only one side patched: kubectl {k:?}, crate {c:?}"),
    }

    let kubectl_after = support::without_bookkeeping(
        support::deployment_json(&client, "kubectl", &seed.name).await,
    );
    let ours_after =
        support::without_bookkeeping(support::deployment_json(&client, "crate", &seed.name).await);
    assert_eq!(
        ours_after, kubectl_after,
        "kubectl: {kubectl:?}; ours: {ours:?}"
    );
    Run {
        before,
        kubectl,
        kubectl_after,
        ours,
        ours_after,
    }
}

fn rolled_back(run: &Run) {
    assert_eq!(
        run.kubectl.as_deref(),
        Ok("deployment.apps/web rolled back")
    );
    assert!(
        matches!(run.ours, Ok(RollbackOutcome::RolledBack { .. })),
        "{:?}",
        run.ours
    );
    assert_ne!(
        run.ours_after, run.before,
        "the rollback changed the Deployment"
    );
}

fn refused(run: &Run, kubectl_error: &str, kind: ErrorKind) {
    let stderr = run.kubectl.as_ref().expect_err("kubectl refuses");
    assert_eq!(stderr, &format!("error: {kubectl_error}"));
    let err = run.ours.as_ref().expect_err("the crate refuses");
    assert_eq!(err.kind(), kind);
    assert!(
        err.message()
            .starts_with(kubectl_error.trim_end_matches(" in history")),
        "{}",
        err.message()
    );
    assert_eq!(run.kubectl_after, run.before, "kubectl left it untouched");
    assert_eq!(run.ours_after, run.before, "the crate left it untouched");
}

#[tokio::test]
async fn parity_previous_revision() {
    let run = run(&three(), None).await;
    rolled_back(&run);
    assert_eq!(
        run.ours_after["spec"]["template"]["spec"]["containers"][0]["image"],
        "web:2"
    );
}

#[tokio::test]
async fn parity_given_revision() {
    let run = run(&three(), Some(1)).await;
    rolled_back(&run);
    assert_eq!(
        run.ours_after["spec"]["template"]["spec"]["containers"][0]["image"],
        "web:1"
    );
}

#[tokio::test]
async fn parity_paused_deployment() {
    let mut seed = three();
    seed.paused = true;
    let run = run(&seed, None).await;
    // kubectl 1.32 names no resource in the hint; kubectl's current source
    // (and the crate) say 'kubectl rollout resume deployment/web'.
    let stderr = run.kubectl.as_ref().expect_err("kubectl refuses");
    let common =
        "you cannot rollback a paused deployment; resume it first with 'kubectl rollout resume";
    assert!(stderr.starts_with(&format!("error: {common}")), "{stderr}");
    let err = run.ours.as_ref().expect_err("the crate refuses");
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(
        err.message()
            .starts_with(&format!("{common} deployment/web' and try again")),
        "{}",
        err.message()
    );
    assert_eq!(run.kubectl_after, run.before);
    assert_eq!(run.ours_after, run.before);
}

#[tokio::test]
async fn parity_template_already_matches() {
    let run = run(&three(), Some(3)).await;
    assert_eq!(
        run.kubectl.as_deref(),
        Ok("deployment.apps/web skipped rollback (current template already matches revision 3)")
    );
    match &run.ours {
        Ok(RollbackOutcome::AlreadyAt { detail }) => {
            assert!(
                detail
                    .starts_with("skipped rollback (current template already matches revision 3)"),
                "{detail}"
            )
        }
        other => panic!("expected AlreadyAt, got {other:?}"),
    }
    assert_eq!(run.ours_after, run.before);
}

#[tokio::test]
async fn parity_no_history() {
    let run = run(&Seed::new("web", vec![Rev::new(1, "aaa", "web:1")]), None).await;
    refused(
        &run,
        "no rollout history found for deployment \"web\"",
        ErrorKind::NotFound,
    );
}

#[tokio::test]
async fn parity_pruned_revision() {
    // Revision 2's ReplicaSet was pruned (revisionHistoryLimit).
    let seed = Seed::new(
        "web",
        vec![
            Rev::new(1, "aaa", "web:1"),
            Rev::new(3, "ccc", "web:3"),
            Rev::new(4, "ddd", "web:4"),
        ],
    );
    let run = run(&seed, Some(2)).await;
    refused(
        &run,
        "unable to find specified revision 2 in history",
        ErrorKind::NotFound,
    );
    // And "previous" skips the gap: revision 3.
    let run = self::run(&seed, None).await;
    rolled_back(&run);
    assert_eq!(
        run.ours_after["spec"]["template"]["spec"]["containers"][0]["image"],
        "web:3"
    );
}

#[tokio::test]
async fn parity_several_containers() {
    let mut old = Rev::new(1, "aaa", "app:1");
    old.containers.push(("sidecar".into(), "proxy:1".into()));
    old.init_containers
        .push(("migrate".into(), "migrate:1".into()));
    old.env = Some("legacy".into());
    let mut new = Rev::new(2, "bbb", "app:2");
    new.containers.push(("sidecar".into(), "proxy:2".into()));
    new.containers.push(("metrics".into(), "exporter:2".into()));
    let run = run(&Seed::new("web", vec![old, new]), None).await;
    rolled_back(&run);
    let containers = run.ours_after["spec"]["template"]["spec"]["containers"]
        .as_array()
        .map(Vec::len);
    assert_eq!(containers, Some(2));
}

#[tokio::test]
async fn parity_extra_annotations_on_the_replica_set_and_the_deployment() {
    let mut seed = three();
    seed.revs[1]
        .extra_annotations
        .insert("team".into(), "payments".into());
    seed.revs[1].extra_annotations.insert(
        "deployment.kubernetes.io/revision-history".into(),
        "1".into(),
    );
    seed.revs[1].extra_annotations.insert(
        "kubectl.kubernetes.io/last-applied-configuration".into(),
        "{\"old\":true}".into(),
    );
    seed.revs[1].change_cause = None;
    seed.deployment_annotations.insert(
        "kubectl.kubernetes.io/last-applied-configuration".into(),
        "{\"new\":true}".into(),
    );
    seed.deployment_annotations
        .insert("owner".into(), "dropped by kubectl".into());
    let run = run(&seed, None).await;
    rolled_back(&run);
    let annotations = &run.ours_after["metadata"]["annotations"];
    assert_eq!(annotations["team"], "payments");
    assert_eq!(
        annotations["kubectl.kubernetes.io/last-applied-configuration"],
        "{\"new\":true}"
    );
    assert!(
        annotations.get("owner").is_none()
            && annotations.get("kubernetes.io/change-cause").is_none(),
        "{annotations}"
    );
}

#[tokio::test]
async fn parity_server_dry_run() {
    let run = run_with(&three(), Some(1), Some(DryRun::Server)).await;
    assert_eq!(
        run.kubectl.as_deref(),
        Ok("deployment.apps/web rolled back (server dry run)")
    );
    assert!(
        matches!(run.ours, Ok(RollbackOutcome::DryRun { .. })),
        "{:?}",
        run.ours
    );
    assert_eq!(run.ours_after, run.before);
}

#[tokio::test]
async fn parity_client_dry_run() {
    let run = run_with(&three(), None, Some(DryRun::Client)).await;
    let stdout = run.kubectl.as_ref().expect("kubectl prints the template");
    assert!(
        stdout.contains("web:2") && stdout.ends_with("(dry run)"),
        "{stdout}"
    );
    match &run.ours {
        Ok(RollbackOutcome::DryRun { detail }) => assert!(
            detail.contains("revision 2") && detail.contains("app=web:2"),
            "{detail}"
        ),
        other => panic!("expected DryRun, got {other:?}"),
    }
    assert_eq!(run.ours_after, run.before);
}

/// kubectl answers a client dry run before it looks at `spec.paused`, and
/// a server dry run after: the crate in the same order.
#[tokio::test]
async fn parity_dry_runs_of_a_paused_deployment() {
    let mut seed = three();
    seed.paused = true;
    let run = run_with(&seed, None, Some(DryRun::Client)).await;
    let stdout = run.kubectl.as_ref().expect("kubectl prints the template");
    assert!(
        stdout.contains("web:2") && stdout.ends_with("(dry run)"),
        "{stdout}"
    );
    match &run.ours {
        Ok(RollbackOutcome::DryRun { detail }) => assert_eq!(
            detail,
            "client dry run: would roll back Deployment crate/web to revision 2 (pod-template-hash bbb, app=web:2), \
             but it is paused: a rollback is refused until it is resumed"
        ),
        other => panic!("expected DryRun, got {other:?}"),
    }
    assert_eq!(run.ours_after, run.before);

    let run = run_with(&seed, None, Some(DryRun::Server)).await;
    let stderr = run.kubectl.as_ref().expect_err("kubectl refuses");
    assert!(
        stderr.starts_with("error: you cannot rollback a paused deployment"),
        "{stderr}"
    );
    let err = run.ours.as_ref().expect_err("the crate refuses");
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(
        err.message()
            .starts_with("you cannot rollback a paused deployment"),
        "{}",
        err.message()
    );
    assert_eq!(run.ours_after, run.before);
}

/// A dry run where the template already matches sends no patch on either
/// side; the crate answers it as a dry run.
#[tokio::test]
async fn parity_dry_runs_when_the_template_already_matches() {
    let run = run_with(&three(), Some(3), Some(DryRun::Server)).await;
    assert_eq!(
        run.kubectl.as_deref(),
        Ok(
            "deployment.apps/web skipped rollback (current template already matches revision 3) (server dry run)"
        )
    );
    match &run.ours {
        Ok(RollbackOutcome::DryRun { detail }) => assert!(
            detail.starts_with(
                "server dry run: skipped rollback (current template already matches revision 3)"
            ),
            "{detail}"
        ),
        other => panic!("expected DryRun, got {other:?}"),
    }
    assert_eq!(run.ours_after, run.before);

    let run = run_with(&three(), Some(3), Some(DryRun::Client)).await;
    let stdout = run.kubectl.as_ref().expect("kubectl prints the template");
    assert!(
        stdout.contains("web:3") && stdout.ends_with("(dry run)"),
        "{stdout}"
    );
    match &run.ours {
        Ok(RollbackOutcome::DryRun { detail }) => assert!(
            detail.starts_with(
                "client dry run: skipped rollback (current template already matches revision 3)"
            ),
            "{detail}"
        ),
        other => panic!("expected DryRun, got {other:?}"),
    }
    assert_eq!(run.ours_after, run.before);
}

/// After a rollback the controller renumbers the restored ReplicaSet, so a
/// second `undo` goes back to the revision just rolled away from: both agree
/// at every step.
#[tokio::test]
async fn parity_undo_twice_with_the_controller_renumbering() {
    let server = KubeServer::start();
    let client = server.client();
    for ns in ["kubectl", "crate"] {
        support::create_namespace(&client, ns).await;
        support::seed(&client, ns, &three()).await;
    }
    let ours = K8sDeployment::builder(client.clone())
        .namespace("crate")
        .name("web")
        .build()
        .unwrap();
    for expected in ["web:2", "web:3", "web:2"] {
        let (ok, stdout, stderr) =
            server.kubectl(&["-n", "kubectl", "rollout", "undo", "deployment/web"]);
        assert!(ok, "{stdout} {stderr}");
        ours.undo(&UndoTo::Previous, &UndoOptions::default())
            .await
            .unwrap();
        for ns in ["kubectl", "crate"] {
            assert!(
                support::controller_step(&client, ns, "web").await,
                "the controller acted in {ns}"
            );
        }
        let k =
            support::without_bookkeeping(support::deployment_json(&client, "kubectl", "web").await);
        let c =
            support::without_bookkeeping(support::deployment_json(&client, "crate", "web").await);
        assert_eq!(c, k);
        assert_eq!(
            c["spec"]["template"]["spec"]["containers"][0]["image"],
            expected
        );
    }
}

/// Where the crate deliberately differs: kubectl silently skips a ReplicaSet
/// whose revision annotation does not parse (and may then roll back further
/// than the user thinks); the crate refuses with an error naming it.
#[tokio::test]
async fn divergence_unparsable_revision_annotation() {
    let mut seed = three();
    seed.revs[1].number = "2x".into();
    let server = KubeServer::start();
    let client = server.client();
    support::create_namespace(&client, "kubectl").await;
    support::seed(&client, "kubectl", &seed).await;
    let (ok, stdout, _) = server.kubectl(&["-n", "kubectl", "rollout", "undo", "deployment/web"]);
    assert!(ok && stdout.contains("rolled back"), "{stdout}");
    let after = support::deployment_json(&client, "kubectl", "web").await;
    assert_eq!(
        after["spec"]["template"]["spec"]["containers"][0]["image"], "web:1",
        "kubectl skipped revision 2"
    );

    support::create_namespace(&client, "crate").await;
    support::seed(&client, "crate", &seed).await;
    let ours = K8sDeployment::builder(client.clone())
        .namespace("crate")
        .name("web")
        .build()
        .unwrap();
    let err = ours
        .undo(&UndoTo::Previous, &UndoOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(
        err.message()
            .contains("unparsable deployment.kubernetes.io/revision annotation \"2x\""),
        "{}",
        err.message()
    );
}
