//! `K8sDeployment::restart` against the test API server (kmock plus
//! tests/support/kube_apiserver.py), and its parity with `kubectl rollout
//! restart`: the same Deployment is seeded in namespaces `kubectl` and
//! `crate`, each side restarts its own, and the results must be equal apart
//! from the restartedAt value and server bookkeeping, with the same patch.

mod support;

use std::time::{Duration, SystemTime};

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use rollback_core::policy::RetryPolicy;
use rollback_core::steps::Steps;
use rollback_core::{Convergence, DryRun, ErrorKind, Target, Timestamp};
use rollback_k8s::patch::{RESTARTED_AT_ANNOTATION, restart_patch};
use rollback_k8s::{K8sDeployment, K8sDeploymentBuilder, RestartOptions};
use serde_json::{Value, json};
use support::{KubeServer, Rev, Seed};

const NS: &str = "shop";
const STRATEGIC: &str = "application/strategic-merge-patch+json";

fn builder(server: &KubeServer, ns: &str, name: &str) -> K8sDeploymentBuilder {
    K8sDeployment::builder(server.client())
        .namespace(ns)
        .name(name)
        .retry(RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(10),
        })
        .poll_interval(Duration::from_millis(50))
}

/// A restart at the caller's time now.
fn now() -> RestartOptions {
    RestartOptions::new(Timestamp::from(SystemTime::now()))
}

fn two_revisions() -> Seed {
    Seed::new(
        "web",
        vec![Rev::new(1, "aaa", "web:1"), Rev::new(2, "bbb", "web:2")],
    )
}

async fn seeded(server: &KubeServer, ns: &str, seed: &Seed) {
    let client = server.client();
    support::create_namespace(&client, ns).await;
    support::seed(&client, ns, seed).await;
}

fn restarted_at_of(d: &Value) -> Option<String> {
    d.pointer("/spec/template/metadata/annotations")
        .and_then(|a| a.get(RESTARTED_AT_ANNOTATION))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// A restartedAt value of ours: RFC 3339 in UTC, to the second, within a
/// few seconds of now.
fn assert_recent_stamp(stamp: &str) {
    let at = humantime::parse_rfc3339(stamp).unwrap_or_else(|e| panic!("{stamp:?}: {e}"));
    assert!(stamp.ends_with('Z') && stamp.len() == 20, "{stamp:?}");
    let age = SystemTime::now()
        .duration_since(at)
        .unwrap_or_else(|e| panic!("{stamp:?} is {:?} in the future", e.duration()));
    assert!(age < Duration::from_secs(10), "{stamp:?} is {age:?} old");
}

/// The PATCH requests to Deployments: (path, query, content type, body).
async fn deployment_patches(server: &KubeServer) -> Vec<(String, String, String, Value)> {
    server
        .request_log()
        .await
        .into_iter()
        .filter(|r| {
            r["method"] == "PATCH"
                && r["path"]
                    .as_str()
                    .is_some_and(|p| p.contains("/deployments/"))
        })
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
            let body = serde_json::from_str(&s("body")).unwrap_or(Value::Null);
            (s("path"), s("query"), s("content_type"), body)
        })
        .collect()
}

#[tokio::test]
async fn restart_sets_restarted_at_and_the_controller_rolls_out_a_new_replica_set() {
    let server = KubeServer::start();
    seeded(&server, NS, &two_revisions()).await;
    let client = server.client();
    let before = support::deployment_json(&client, NS, "web").await;
    let web = builder(&server, NS, "web").build().unwrap();
    server.clear_requests().await;

    let out = web.restart(&now()).await.unwrap();
    assert_recent_stamp(&out.restarted_at);
    assert!(!out.dry_run);
    assert_eq!(out.generation, Some(2));
    assert_eq!(
        out.detail,
        format!(
            "restarted Deployment shop/web (kubectl.kubernetes.io/restartedAt={}): the controller replaces its pods with a new ReplicaSet",
            out.restarted_at
        )
    );

    // One strategic merge patch of the one annotation, no precondition.
    let patches = deployment_patches(&server).await;
    assert_eq!(patches.len(), 1, "{patches:?}");
    let (path, query, content_type, body) = &patches[0];
    assert_eq!(path, "/apis/apps/v1/namespaces/shop/deployments/web");
    assert!(!query.contains("dryRun"), "{query}");
    assert_eq!(content_type, STRATEGIC);
    assert_eq!(body, &restart_patch(&out.restarted_at));

    // Only the template's annotation changed (and the generation with it).
    let after = support::deployment_json(&client, NS, "web").await;
    assert_eq!(
        restarted_at_of(&after).as_deref(),
        Some(out.restarted_at.as_str())
    );
    let mut expected = before.clone();
    expected["spec"]["template"]["metadata"]["annotations"] =
        json!({RESTARTED_AT_ANNOTATION: out.restarted_at});
    expected["metadata"]["generation"] = json!(2);
    expected["metadata"]["resourceVersion"] = after["metadata"]["resourceVersion"].clone();
    assert_eq!(after, expected);

    // The template changed, so the controller makes a new ReplicaSet, revision 3.
    // Until the controller has made it, no ReplicaSet has the Deployment's template.
    let err = web.current().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
    let status = web.rollout_status().await.unwrap();
    assert!(!status.done, "{status:?}");
    let controller = support::spawn_controller(client.clone(), NS, "web");
    let done = web
        .wait_rollout(None, Duration::from_secs(20), |_| {})
        .await
        .unwrap();
    controller.abort();
    assert_eq!(done, Convergence::Converged);
    let history = web.history().await.unwrap();
    assert_eq!(history.len(), 3);
    let current = web.current().await.unwrap();
    assert_ne!(current.id().as_str(), "bbb");
    assert_eq!(current.label(), "revision 3");
    assert_eq!(history[0].revision.id(), current.id());
    let snapshot = web.snapshot().await.unwrap();
    let new_rs = &snapshot.revisions[snapshot.current.unwrap()];
    assert_eq!(
        new_rs
            .template()
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(RESTARTED_AT_ANNOTATION)),
        Some(&json!(out.restarted_at))
    );
    assert_eq!(
        new_rs.template().pointer("/spec/containers/0/image"),
        Some(&json!("web:2")),
        "the same containers restart"
    );
}

#[tokio::test]
async fn restarting_twice_within_a_second_still_changes_the_template() {
    let server = KubeServer::start();
    seeded(&server, NS, &two_revisions()).await;
    let web = builder(&server, NS, "web").build().unwrap();
    let first = web.restart(&now()).await.unwrap();
    let second = web.restart(&now()).await.unwrap();
    assert_recent_stamp(&second.restarted_at);
    let t1 = humantime::parse_rfc3339(&first.restarted_at).unwrap();
    let t2 = humantime::parse_rfc3339(&second.restarted_at).unwrap();
    assert!(
        t2 > t1,
        "{} then {}",
        first.restarted_at,
        second.restarted_at
    );
    assert_eq!(second.generation, Some(3));
    let d = support::deployment_json(&server.client(), NS, "web").await;
    assert_eq!(restarted_at_of(&d), Some(second.restarted_at));
}

#[tokio::test]
async fn a_paused_deployment_is_refused_with_kubectls_message_and_left_alone() {
    let server = KubeServer::start();
    let mut seed = two_revisions();
    seed.paused = true;
    seeded(&server, NS, &seed).await;
    let before = support::deployment_json(&server.client(), NS, "web").await;
    // resume_paused is for undo only: a restart never resumes.
    let web = builder(&server, NS, "web")
        .resume_paused(true)
        .build()
        .unwrap();
    server.clear_requests().await;
    let err = web.restart(&now()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert_eq!(
        err.message(),
        "deployments.apps \"web\" can't restart paused deployment (run rollout resume first): \
         resume it with 'kubectl rollout resume deployment/web -n shop' and try again"
    );
    assert!(deployment_patches(&server).await.is_empty());
    assert_eq!(
        support::deployment_json(&server.client(), NS, "web").await,
        before
    );
}

#[tokio::test]
async fn restart_dry_runs_store_nothing() {
    let server = KubeServer::start();
    seeded(&server, NS, &two_revisions()).await;
    let client = server.client();
    let before = support::deployment_json(&client, NS, "web").await;
    let server_side = builder(&server, NS, "web").build().unwrap();
    server.clear_requests().await;
    let out = server_side
        .restart(&now().dry_run(DryRun::Server))
        .await
        .unwrap();
    assert!(out.dry_run);
    assert_recent_stamp(&out.restarted_at);
    assert_eq!(out.generation, Some(2), "what the server would store");
    assert!(
        out.detail
            .starts_with("server dry run: the API server accepted restarting Deployment shop/web"),
        "{}",
        out.detail
    );
    let patches = deployment_patches(&server).await;
    assert_eq!(patches.len(), 1);
    assert!(patches[0].1.contains("dryRun=All"), "{patches:?}");
    assert_eq!(support::deployment_json(&client, NS, "web").await, before);

    let client_side = builder(&server, NS, "web")
        .dry_run(DryRun::Client)
        .build()
        .unwrap();
    server.clear_requests().await;
    // The handle's default dry run applies to a restart asked without one.
    let out = client_side.restart(&now()).await.unwrap();
    assert!(out.dry_run);
    assert_eq!(out.generation, Some(1));
    assert_eq!(
        out.detail,
        format!(
            "client dry run: would restart Deployment shop/web (kubectl.kubernetes.io/restartedAt={})",
            out.restarted_at
        )
    );
    assert!(deployment_patches(&server).await.is_empty());
    assert_eq!(support::deployment_json(&client, NS, "web").await, before);
}

#[tokio::test]
async fn restart_failures_are_clear_and_transient_ones_are_retried() {
    let server = KubeServer::start();
    seeded(&server, NS, &two_revisions()).await;
    let client = server.client();

    let missing = builder(&server, NS, "nope").build().unwrap();
    let err = missing.restart(&now()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(
        err.message()
            .starts_with("Deployment nope not found in namespace shop"),
        "{}",
        err.message()
    );

    let web = builder(&server, NS, "web").build().unwrap();
    server
        .fault(json!({"verb": "patch", "resource": "deployments", "status": 503, "reason": "ServiceUnavailable", "count": 2}))
        .await;
    server.clear_requests().await;
    let out = web.restart(&now()).await.unwrap();
    assert_eq!(
        deployment_patches(&server).await.len(),
        3,
        "two 503s, then success"
    );
    let d = support::deployment_json(&client, NS, "web").await;
    assert_eq!(restarted_at_of(&d), Some(out.restarted_at));

    let before = support::deployment_json(&client, NS, "web").await;
    server
        .fault(json!({"verb": "patch", "resource": "deployments", "status": 403}))
        .await;
    let err = web.restart(&now()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    assert!(
        err.message()
            .contains("grant `patch` on `deployments` in namespace `shop`"),
        "{}",
        err.message()
    );
    assert_eq!(support::deployment_json(&client, NS, "web").await, before);
}

#[tokio::test]
async fn restart_stamps_the_callers_time_and_moves_a_repeated_one_to_the_next_second() {
    let server = KubeServer::start();
    seeded(&server, NS, &two_revisions()).await;
    let web = builder(&server, NS, "web").build().unwrap();
    let at = Timestamp::parse("2026-11-18T11:06:40.250Z").unwrap();
    let first = web.restart(&RestartOptions::new(at)).await.unwrap();
    assert_eq!(first.restarted_at, "2026-11-18T11:06:40Z");
    // The same time again (a retried hook): the template would not change,
    // so the stamp is the next second, and the pods restart again.
    let again = web.restart(&RestartOptions::new(at)).await.unwrap();
    assert_eq!(again.restarted_at, "2026-11-18T11:06:41Z");
    assert_eq!(again.generation, Some(3));
    let d = support::deployment_json(&server.client(), NS, "web").await;
    assert_eq!(restarted_at_of(&d).as_deref(), Some("2026-11-18T11:06:41Z"));
    // A dry run on the request wins over the handle's default.
    let client_side = builder(&server, NS, "web")
        .dry_run(DryRun::Client)
        .build()
        .unwrap();
    server.clear_requests().await;
    let out = client_side
        .restart(&RestartOptions::new(at).dry_run(DryRun::Server))
        .await
        .unwrap();
    assert!(out.detail.starts_with("server dry run"), "{}", out.detail);
    assert_eq!(deployment_patches(&server).await.len(), 1);
}

#[tokio::test]
async fn a_restart_is_one_step_and_a_stop_before_it_changes_nothing() {
    let server = KubeServer::start();
    seeded(&server, NS, &two_revisions()).await;
    let before = support::deployment_json(&server.client(), NS, "web").await;
    let steps = Steps::stop_after(0);
    let web = builder(&server, NS, "web")
        .retry(RetryPolicy::NEVER)
        .steps(steps.clone())
        .build()
        .unwrap();
    server.clear_requests().await;
    let err = web.restart(&now()).await.unwrap_err();
    assert!(
        err.message()
            .contains("interrupted before step 1 (patch the Deployment's restartedAt)"),
        "{err}"
    );
    assert!(deployment_patches(&server).await.is_empty());
    assert_eq!(
        support::deployment_json(&server.client(), NS, "web").await,
        before
    );
    let steps = Steps::new();
    let web = builder(&server, NS, "web")
        .steps(steps.clone())
        .build()
        .unwrap();
    web.restart(&now().dry_run(DryRun::Server)).await.unwrap();
    web.restart(&now()).await.unwrap();
    assert_eq!(steps.taken(), ["patch the Deployment's restartedAt"]);
}

#[tokio::test]
async fn a_restart_asked_again_with_the_same_time_happens_once() {
    let server = KubeServer::start();
    seeded(&server, NS, &two_revisions()).await;
    let web = builder(&server, NS, "web").build().unwrap();
    let at = now().at;
    let first = web
        .restart(&RestartOptions::new(at).once(true))
        .await
        .unwrap();
    assert!(!first.already);
    server.clear_requests().await;
    let again = web
        .restart(&RestartOptions::new(at).once(true))
        .await
        .unwrap();
    assert!(again.already, "{again:?}");
    assert_eq!(again.restarted_at, first.restarted_at);
    assert!(
        deployment_patches(&server).await.is_empty(),
        "the repeat patched"
    );
    // Without `once`, as kubectl: every call restarts.
    let third = web.restart(&RestartOptions::new(at)).await.unwrap();
    assert!(!third.already);
    assert_ne!(third.restarted_at, first.restarted_at);
}

// --- parity with kubectl rollout restart ------------------------------------

struct Parity {
    kubectl: Result<String, String>,
    ours: rollback_core::Result<rollback_k8s::RestartOutcome>,
    kubectl_after: Value,
    ours_after: Value,
    before: Value,
}

/// The Deployment without bookkeeping, its restartedAt value replaced by a
/// placeholder (the value itself is the current time on either side).
fn comparable(mut d: Value, restarted: &Option<String>) -> Value {
    d = support::without_bookkeeping(d);
    if let (Some(_), Some(a)) = (
        restarted,
        d.pointer_mut("/spec/template/metadata/annotations")
            .and_then(Value::as_object_mut),
    ) {
        a.insert(RESTARTED_AT_ANNOTATION.into(), json!("<restartedAt>"));
    }
    d
}

/// Seed `seed` in both namespaces, give both the same template annotations,
/// restart with kubectl in one and with the crate in the other.
async fn parity(seed: &Seed, template_annotations: Option<Value>, name: &str) -> Parity {
    let server = KubeServer::start();
    let client = server.client();
    for ns in ["kubectl", "crate"] {
        seeded(&server, ns, seed).await;
        if let Some(a) = &template_annotations {
            let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
            api.patch(
                &seed.name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"template": {"metadata": {"annotations": a}}}})),
            )
            .await
            .unwrap();
        }
    }
    let before = support::deployment_json(&client, "crate", &seed.name).await;
    assert_eq!(
        support::without_bookkeeping(
            support::deployment_json(&client, "kubectl", &seed.name).await
        ),
        support::without_bookkeeping(before.clone()),
        "both namespaces start equal"
    );
    server.clear_requests().await;

    let resource = format!("deployment/{name}");
    let (ok, stdout, stderr) =
        server.kubectl(&["-n", "kubectl", "rollout", "restart", resource.as_str()]);
    let kubectl = if ok {
        Ok(stdout.trim().to_owned())
    } else {
        Err(stderr.trim().to_owned())
    };
    let ours = K8sDeployment::builder(client.clone())
        .namespace("crate")
        .name(name)
        .retry(RetryPolicy::NEVER)
        .build()
        .unwrap()
        .restart(&now())
        .await;

    // The same strategic merge patch on both sides, apart from the time.
    let patches = deployment_patches(&server).await;
    let side = |ns: &str| {
        patches
            .iter()
            .find(|p| p.0.contains(&format!("/namespaces/{ns}/")))
            .cloned()
    };
    match (side("kubectl"), side("crate")) {
        (Some(k), Some(c)) => {
            assert_eq!((k.2.as_str(), c.2.as_str()), (STRATEGIC, STRATEGIC));
            assert_eq!(k.1, "fieldManager=kubectl-rollout");
            assert!(!c.1.contains("dryRun"), "{}", c.1);
            let stamp = |b: &Value| {
                b.pointer("/spec/template/metadata/annotations")
                    .and_then(|a| a.get(RESTARTED_AT_ANNOTATION))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .unwrap_or_default()
            };
            assert_eq!(
                restart_patch(&stamp(&k.3)),
                k.3,
                "kubectl's patch is only the annotation"
            );
            assert_eq!(restart_patch(&stamp(&c.3)), c.3);
        }
        (None, None) => {}
        (k, c) => panic!("only one side patched: kubectl {k:?}, crate {c:?}"),
    }

    let kubectl_after = support::deployment_json(&client, "kubectl", &seed.name).await;
    let ours_after = support::deployment_json(&client, "crate", &seed.name).await;
    Parity {
        kubectl,
        ours,
        kubectl_after,
        ours_after,
        before,
    }
}

/// Both restarted, and the Deployments are equal but for the time.
fn assert_both_restarted(p: &Parity) {
    let stdout = p.kubectl.as_ref().expect("kubectl restarted");
    assert_eq!(stdout, "deployment.apps/web restarted");
    let out = p.ours.as_ref().expect("the crate restarted");
    assert_recent_stamp(&out.restarted_at);
    let theirs = restarted_at_of(&p.kubectl_after).expect("kubectl's restartedAt");
    let ours = restarted_at_of(&p.ours_after);
    assert_eq!(ours.as_deref(), Some(out.restarted_at.as_str()));
    assert_ne!(restarted_at_of(&p.before), ours, "a new value");
    // kubectl writes the local time with its offset; the crate writes UTC.
    if theirs.ends_with('Z') {
        assert_recent_stamp(&theirs);
    }
    assert_eq!(
        comparable(p.ours_after.clone(), &ours),
        comparable(p.kubectl_after.clone(), &Some(theirs)),
    );
    let generation = |d: &Value| d["metadata"]["generation"].as_i64().unwrap();
    assert_eq!(generation(&p.ours_after), generation(&p.before) + 1);
}

#[tokio::test]
async fn parity_restart() {
    let p = parity(&two_revisions(), None, "web").await;
    assert_both_restarted(&p);
}

#[tokio::test]
async fn parity_restart_keeps_other_template_annotations_and_replaces_an_earlier_restart() {
    let annotations = json!({
        "prometheus.io/scrape": "true",
        RESTARTED_AT_ANNOTATION: "2025-01-02T03:04:05Z",
    });
    let p = parity(&two_revisions(), Some(annotations), "web").await;
    assert_both_restarted(&p);
    assert_eq!(
        p.ours_after
            .pointer("/spec/template/metadata/annotations/prometheus.io~1scrape"),
        Some(&json!("true"))
    );
}

#[tokio::test]
async fn parity_restart_paused_deployment() {
    let mut seed = two_revisions();
    seed.paused = true;
    let p = parity(&seed, None, "web").await;
    let kubectl = p.kubectl.as_ref().expect_err("kubectl refuses");
    let reason =
        "deployments.apps \"web\" can't restart paused deployment (run rollout resume first)";
    assert_eq!(kubectl, &format!("error: {reason}"));
    let ours = p.ours.as_ref().expect_err("the crate refuses");
    assert_eq!(ours.kind(), ErrorKind::Permanent);
    assert!(ours.message().starts_with(reason), "{}", ours.message());
    assert_eq!(p.ours_after, p.before, "left alone");
    assert_eq!(
        support::without_bookkeeping(p.kubectl_after.clone()),
        support::without_bookkeeping(p.ours_after.clone())
    );
}

#[tokio::test]
async fn parity_restart_missing_deployment() {
    let p = parity(&two_revisions(), None, "nope").await;
    let kubectl = p.kubectl.as_ref().expect_err("kubectl fails");
    assert!(
        kubectl.contains("deployments.apps \"nope\" not found"),
        "{kubectl}"
    );
    let ours = p.ours.as_ref().expect_err("the crate fails");
    assert_eq!(ours.kind(), ErrorKind::NotFound);
    assert!(
        ours.message()
            .starts_with("Deployment nope not found in namespace crate"),
        "{}",
        ours.message()
    );
    assert_eq!(p.ours_after, p.before);
}
