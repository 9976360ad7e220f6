//! rollback-core's conformance suite against StatefulSets and DaemonSets on
//! the test API server (kmock plus tests/support/kube_apiserver.py): the
//! target and rollbacker checks with a stand-in controller, an interrupted
//! rollback, and bad input (no history, a revision that does not exist, a
//! wrong kind, a missing namespace), each a clear error naming what and
//! where.

mod support;
mod workloads;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use rollback_core::conformance::{self, InterruptionFixture};
use rollback_core::policy::RetryPolicy;
use rollback_core::registry::{Options, ProbeKind as _, Registry, TargetUrl};
use rollback_core::steps::Steps;
use rollback_core::{Convergence, ErrorKind, Result, Rollbacker, Target};
use rollback_k8s::{K8sWorkload, UndoOptions, UndoTo, WorkloadKind};
use serde_json::json;
use support::{KubeServer, Rev};
use workloads::{WSeed, three};

const NS: &str = "shop";
const KINDS: [WorkloadKind; 2] = [WorkloadKind::StatefulSet, WorkloadKind::DaemonSet];

fn handle(server: &KubeServer, kind: WorkloadKind, name: &str) -> K8sWorkload {
    K8sWorkload::builder(server.client(), kind)
        .namespace(NS)
        .name(name)
        .retry(RetryPolicy::NEVER)
        .poll_interval(Duration::from_millis(50))
        .build()
        .unwrap()
}

async fn image(server: &KubeServer, kind: WorkloadKind, name: &str) -> String {
    let o = workloads::object_json(&server.client(), NS, kind, name).await;
    o["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn rollback_core_conformance_suite_passes_on_both_kinds() {
    let server = KubeServer::start();
    support::create_namespace(&server.client(), NS).await;
    for kind in KINDS {
        let mut seed = three(kind);
        seed.name = format!("web-{}", kind.singular());
        workloads::seed(&server.client(), NS, &seed).await;
        let target = handle(&server, kind, &seed.name);
        assert_eq!(
            target.id().as_str(),
            format!("k8s:shop/{}/{}", kind.singular(), seed.name)
        );
        let controller = workloads::spawn_controller(server.client(), NS, kind, &seed.name);
        conformance::check_target(&target).await.unwrap();
        let result = conformance::check_rollbacker(&target, &target.rollbacker()).await;
        controller.abort();
        let report = result.unwrap();
        for check in [
            "rollbacker_serves_its_target",
            "client_dry_run_changes_nothing",
            "server_dry_run",
            "unknown_revision_is_not_found",
            "rollback_makes_the_revision_current",
            "wait_converged_reports_convergence",
            "repeated_rollback_is_already_at",
        ] {
            assert!(report.passed.contains(&check), "{kind} {check}: {report:?}");
        }
        assert_eq!(image(&server, kind, &seed.name).await, "web:2", "{kind}");
    }
}

/// Fresh objects `web-0`, `web-1`, … of one kind, each with revision 1
/// (app:1, aaa) and revision 2 (app:2, bbb, current).
struct Interruptions {
    server: KubeServer,
    kind: WorkloadKind,
    made: AtomicUsize,
}

fn name_of(target: &Arc<dyn Target>) -> String {
    let id = target.id().as_str();
    id.rsplit('/').next().unwrap_or(id).to_owned()
}

#[async_trait]
impl InterruptionFixture for Interruptions {
    async fn setup(&self) -> Result<Arc<dyn Target>> {
        let name = format!("web-{}", self.made.fetch_add(1, Ordering::SeqCst));
        let seed = WSeed::new(
            self.kind,
            &name,
            vec![Rev::new(1, "aaa", "app:1"), Rev::new(2, "bbb", "app:2")],
        );
        workloads::seed(&self.server.client(), NS, &seed).await;
        Ok(Arc::new(handle(&self.server, self.kind, &name)))
    }

    fn rollbacker(&self, target: &Arc<dyn Target>, steps: Steps) -> Arc<dyn Rollbacker> {
        let name = name_of(target);
        Arc::new(
            K8sWorkload::builder(self.server.client(), self.kind)
                .namespace(NS)
                .name(name)
                .retry(RetryPolicy::NEVER)
                .steps(steps)
                .build()
                .unwrap(),
        )
    }

    /// What a rollback writes: the template the object runs, its generation
    /// (one more per patch) and its annotations (a rollback leaves them).
    async fn records(&self, target: &Arc<dyn Target>) -> Result<Vec<String>> {
        let name = name_of(target);
        let o = workloads::object_json(&self.server.client(), NS, self.kind, &name).await;
        let mut records: Vec<String> = o["metadata"]["annotations"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("annotation {k}={}", v.as_str().unwrap_or_default()))
            .collect();
        records.push(format!("template {}", target.current().await?.id()));
        records.push(format!("generation {}", o["metadata"]["generation"]));
        Ok(records)
    }
}

#[tokio::test]
async fn an_interrupted_rollback_completes_when_asked_again() {
    for kind in KINDS {
        let server = KubeServer::start();
        support::create_namespace(&server.client(), NS).await;
        let fixture = Interruptions {
            server,
            kind,
            made: AtomicUsize::new(0),
        };
        let report = conformance::check_interrupted_rollback(&fixture)
            .await
            .unwrap();
        assert_eq!(report.passed, ["interrupted_rollback_completes"], "{kind}");
        // The reference run, one stopped before the patch and one killed
        // after it, each on its own object.
        assert_eq!(fixture.made.load(Ordering::SeqCst), 3, "{kind}");
        let target: Arc<dyn Target> = Arc::new(handle(&fixture.server, kind, "web-1"));
        assert_eq!(
            fixture.records(&target).await.unwrap(),
            [
                "annotation kubernetes.io/change-cause=deploy app:2",
                "template aaa",
                "generation 2",
            ],
            "{kind}"
        );
    }
}

#[tokio::test]
async fn bad_input_is_a_clear_error_naming_what_and_where() {
    let server = KubeServer::start();
    let client = server.client();
    support::create_namespace(&client, NS).await;
    // A StatefulSet without history: no ControllerRevision at all (the
    // controller never ran), then only the current one.
    let mut bare = WSeed::new(
        WorkloadKind::StatefulSet,
        "bare",
        vec![Rev::new(1, "aaa", "db:1")],
    );
    workloads::seed(&client, NS, &bare).await;
    let bare_handle = handle(&server, WorkloadKind::StatefulSet, "bare");
    let e = bare_handle
        .undo(&UndoTo::Previous, &UndoOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(
        e.message(),
        "no last revision to roll back to: StatefulSet shop/bare has only revision 1 in its history; \
         `kubectl rollout history statefulset/bare -n shop` lists its revisions"
    );
    bare.name = "fresh".into();
    workloads::seed(&client, NS, &bare).await;
    workloads::revisions(&client, NS)
        .delete("fresh-aaa", &Default::default())
        .await
        .unwrap();
    let fresh = handle(&server, WorkloadKind::StatefulSet, "fresh");
    let e = fresh.current().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient);
    assert!(
        e.message().starts_with(
            "StatefulSet shop/fresh has no ControllerRevision with its current pod template yet"
        ),
        "{e}"
    );
    let e = fresh
        .undo(&UndoTo::Previous, &UndoOptions::default())
        .await
        .unwrap_err();
    assert!(
        e.message().starts_with(
            "no last revision to roll back to: StatefulSet shop/fresh has no ControllerRevision"
        ),
        "{e}"
    );

    // Revisions that do not exist.
    let mut ds = three(WorkloadKind::DaemonSet);
    ds.name = "agent".into();
    workloads::seed(&client, NS, &ds).await;
    let agent = handle(&server, WorkloadKind::DaemonSet, "agent");
    for n in [9, -1] {
        let e = agent
            .undo(&UndoTo::Number(n), &UndoOptions::default())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(
            e.message(),
            format!(
                "unable to find specified revision {n} in history of DaemonSet shop/agent; \
                 `kubectl rollout history daemonset/agent -n shop` lists its revisions"
            )
        );
    }
    let e = agent
        .undo(&UndoTo::Id("zzz".into()), &UndoOptions::default())
        .await
        .unwrap_err();
    assert!(
        e.message().starts_with(
            "revision zzz is not in the history of DaemonSet shop/agent (it has: ccc (revision 3), bbb (revision 2), aaa (revision 1))"
        ),
        "{e}"
    );

    // A wrong kind: a Deployment named as a StatefulSet, a DaemonSet named
    // as a StatefulSet; a missing object; a missing namespace.
    support::seed(
        &client,
        NS,
        &support::Seed::new("web", vec![Rev::new(1, "aaa", "web:1")]),
    )
    .await;
    let e = handle(&server, WorkloadKind::StatefulSet, "web")
        .current()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(
        e.message(),
        "StatefulSet web not found in namespace shop, but Deployment shop/web exists: it is a Deployment, \
         not a StatefulSet; name it k8s://shop/web"
    );
    let e = handle(&server, WorkloadKind::StatefulSet, "agent")
        .history()
        .await
        .unwrap_err();
    assert!(
        e.message()
            .ends_with("it is a DaemonSet, not a StatefulSet; name it k8s://shop/daemonset/agent"),
        "{e}"
    );
    let e = handle(&server, WorkloadKind::DaemonSet, "nothing")
        .history()
        .await
        .unwrap_err();
    assert_eq!(
        e.message(),
        "DaemonSet nothing not found in namespace shop; check the name (`kubectl get daemonsets -n shop`) \
         and the kubeconfig's cluster"
    );
    let e = K8sWorkload::builder(client.clone(), WorkloadKind::DaemonSet)
        .namespace("nowhere")
        .name("agent")
        .build()
        .unwrap()
        .history()
        .await
        .unwrap_err();
    assert!(
        e.message()
            .starts_with("namespace nowhere does not exist (looking for DaemonSet agent)"),
        "{e}"
    );

    // A ControllerRevision that holds no template.
    let mut odd = three(WorkloadKind::StatefulSet);
    odd.name = "odd".into();
    workloads::seed(&client, NS, &odd).await;
    workloads::revisions(&client, NS)
        .patch(
            "odd-aaa",
            &Default::default(),
            &kube::api::Patch::Merge(json!({"data": {"spec": null}})),
        )
        .await
        .unwrap();
    let e = handle(&server, WorkloadKind::StatefulSet, "odd")
        .history()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(
        e.message().starts_with(
            "ControllerRevision shop/odd-aaa (revision 1) of StatefulSet shop/odd holds no spec.template in its data"
        ),
        "{e}"
    );

    // Through the registry: a wrong kind in the URL, an option of Deployments only.
    let registry = Registry::new().scheme(rollback_k8s::k8s_scheme());
    let e = registry
        .check(
            &TargetUrl::parse("k8s://shop/replicaset/web-aaa").unwrap(),
            &Options::new(),
        )
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("\"replicaset\" is not a kind rollback-k8s rolls back"),
        "{e}"
    );
}

#[tokio::test]
async fn targets_through_the_registry_and_waits_as_kubectl_rollout_status() {
    let server = KubeServer::start();
    let client = server.client();
    support::create_namespace(&client, NS).await;
    let mut sts = three(WorkloadKind::StatefulSet);
    sts.name = "db".into();
    workloads::seed(&client, NS, &sts).await;
    let registry = Registry::new().scheme(rollback_k8s::k8s_scheme());
    let mut options = Options::new();
    options.insert(
        "kubeconfig".into(),
        json!(server.kubeconfig().display().to_string()),
    );
    options.insert("poll_interval".into(), json!("50ms"));
    let backend = registry
        .connect(&TargetUrl::parse("k8s://shop/sts/db").unwrap(), &options)
        .await
        .unwrap();
    assert_eq!(backend.target.id().as_str(), "k8s:shop/statefulset/db");
    assert_eq!(backend.target.current().await.unwrap().id().as_str(), "ccc");
    let history: Vec<String> = backend
        .target
        .history()
        .await
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e.revision.label(),
                e.revision.attributes()["images"]
            )
        })
        .collect();
    assert_eq!(
        history,
        [
            "revision 3 app=web:3",
            "revision 2 app=web:2",
            "revision 1 app=web:1"
        ]
    );

    // A partitioned rolling update: done when the pods above the partition
    // run the new revision, as kubectl judges it.
    let db = handle(&server, WorkloadKind::StatefulSet, "db");
    workloads::objects(&client, NS, WorkloadKind::StatefulSet)
        .patch(
            "db",
            &Default::default(),
            &kube::api::Patch::Merge(
                json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 2}}}}),
            ),
        )
        .await
        .unwrap();
    workloads::set_status(
        &client,
        NS,
        WorkloadKind::StatefulSet,
        "db",
        json!({"observedGeneration": 2, "readyReplicas": 3, "updatedReplicas": 0}),
    )
    .await;
    let mut seen = Vec::new();
    let out = db
        .wait_rollout(Some(&"ccc".into()), Duration::from_millis(300), |s| {
            seen.push(s.message.clone())
        })
        .await
        .unwrap();
    assert!(matches!(out, Convergence::TimedOut { .. }), "{out:?}");
    assert_eq!(
        seen,
        ["Waiting for partitioned roll out to finish: 0 out of 1 new pods have been updated..."]
    );
    workloads::set_status(
        &client,
        NS,
        WorkloadKind::StatefulSet,
        "db",
        json!({"updatedReplicas": 1}),
    )
    .await;
    let out = db
        .wait_rollout(Some(&"ccc".into()), Duration::from_secs(5), |_| {})
        .await
        .unwrap();
    assert_eq!(out, Convergence::Converged);
    // Waiting for another revision than the one it runs fails at once.
    let out = db
        .wait_rollout(Some(&"aaa".into()), Duration::from_secs(5), |_| {})
        .await
        .unwrap();
    assert!(
        matches!(&out, Convergence::Failed { detail } if detail.contains("StatefulSet shop/db now runs revision 3 (ccc), not aaa")),
        "{out:?}"
    );

    // OnDelete: a rollback never converges by itself; the wait says why.
    let mut legacy = three(WorkloadKind::StatefulSet);
    legacy.name = "legacy".into();
    legacy.on_delete = true;
    workloads::seed(&client, NS, &legacy).await;
    let out = handle(&server, WorkloadKind::StatefulSet, "legacy")
        .wait_converged(&"ccc".into(), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        matches!(&out, Convergence::Failed { detail } if detail.contains("rollout status is only available for RollingUpdate strategy type")
            && detail.contains("kubectl delete pod")),
        "{out:?}"
    );
}

/// A pod of `name`'s revision whose pods carry `controller-revision-hash`
/// `hash`, with one container's status.
async fn workload_pod(
    server: &KubeServer,
    name: &str,
    hash: &str,
    pod: &str,
    status: serde_json::Value,
) {
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(server.client(), NS);
    let p = serde_json::from_value(json!({
        "metadata": {"name": pod, "labels": {"app": name, "controller-revision-hash": hash}},
        "spec": {"containers": [{"name": "app", "image": "img"}]},
    }))
    .unwrap();
    pods.create(&Default::default(), &p).await.unwrap();
    pods.patch_status(
        pod,
        &Default::default(),
        &kube::api::Patch::Merge(
            json!({"status": {"phase": "Running", "containerStatuses": [status]}}),
        ),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn the_kubernetes_probe_judges_a_statefulset_s_and_a_daemonset_s_pods_of_the_revision() {
    use rollback_core::{HealthProbe, ProbeContext, Timestamp};
    use rollback_k8s::{KubernetesProbe, Problem};

    let server = KubeServer::start();
    let client = server.client();
    support::create_namespace(&client, NS).await;
    let crashing = json!({"name": "app", "image": "img", "imageID": "", "ready": false, "restartCount": 4,
                          "state": {"waiting": {"reason": "CrashLoopBackOff"}}});
    let healthy = json!({"name": "app", "image": "img", "imageID": "", "ready": true, "restartCount": 0,
                         "state": {"running": {}}});
    for (kind, name) in [
        (WorkloadKind::StatefulSet, "db"),
        (WorkloadKind::DaemonSet, "agent"),
    ] {
        let mut seed = three(kind);
        seed.name = name.into();
        workloads::seed(&client, NS, &seed).await;
        // The pods' label, as each controller writes it: the
        // ControllerRevision's name for a StatefulSet, its hash for a
        // DaemonSet.
        let label = |hash: &str| match kind {
            WorkloadKind::StatefulSet => format!("{name}-{hash}"),
            _ => hash.to_owned(),
        };
        workload_pod(
            &server,
            name,
            &label("ccc"),
            &format!("{name}-0"),
            healthy.clone(),
        )
        .await;
        workload_pod(
            &server,
            name,
            &label("ccc"),
            &format!("{name}-1"),
            crashing.clone(),
        )
        .await;
        workload_pod(
            &server,
            name,
            &label("bbb"),
            &format!("{name}-2"),
            crashing.clone(),
        )
        .await;

        let workload = handle(&server, kind, name);
        let probe = KubernetesProbe::of_workload("pods", workload.clone()).max_restarts(1);
        let context =
            |rev: &str| ProbeContext::new(workload.id().clone(), rev.into(), Timestamp::EPOCH);
        assert_eq!(
            probe.inspect(Some(&"ccc".into())).await.unwrap(),
            vec![
                Problem::Restarts {
                    pod: format!("{name}-1"),
                    container: "app".into(),
                    count: 4
                },
                Problem::CrashLoopBackOff {
                    pod: format!("{name}-1"),
                    container: "app".into()
                },
            ],
            "{kind:?}: only the judged revision's pods"
        );
        assert_eq!(
            probe.measure(&context("ccc")).await.unwrap().value,
            Some(2.0),
            "{kind:?}"
        );
        assert_eq!(
            probe.measure(&context("bbb")).await.unwrap().value,
            Some(2.0),
            "{kind:?}"
        );
        assert_eq!(
            probe.measure(&context("aaa")).await.unwrap().value,
            Some(0.0),
            "{kind:?}: no pods"
        );
        // The current revision when none is named.
        assert_eq!(probe.inspect(None).await.unwrap().len(), 2, "{kind:?}");
        // The watch file's `kubernetes:` probe on the workload's URL.
        let url = TargetUrl::parse(&format!("k8s://{NS}/{}/{name}", kind.singular())).unwrap();
        let target_options = json!({"kubeconfig": server.kubeconfig()});
        let from_file = rollback_k8s::KubernetesProbeKind
            .build(rollback_core::registry::ProbeFor {
                name: "pods",
                options: json!({"max_restarts": 1}).as_object().unwrap(),
                url: &url,
                target_options: target_options.as_object().unwrap(),
            })
            .await
            .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        let m = from_file.measure(&context("ccc")).await.unwrap();
        assert_eq!(m.value, Some(2.0), "{kind:?}: {m:?}");
        assert!(
            m.detail
                .as_deref()
                .is_some_and(|d| d.contains("CrashLoopBackOff")),
            "{kind:?}: {m:?}"
        );

        // Unavailable replicas, as each kind's status counts them.
        let status = match kind {
            WorkloadKind::StatefulSet => json!({"status": {"availableReplicas": 1}}),
            _ => json!({"status": {"numberUnavailable": 2}}),
        };
        workloads::objects(&client, NS, kind)
            .patch_status(name, &Default::default(), &kube::api::Patch::Merge(status))
            .await
            .unwrap();
        let problems = probe.inspect(Some(&"aaa".into())).await.unwrap();
        assert_eq!(
            problems,
            vec![Problem::Unavailable {
                replicas: 2,
                bound: 0
            }],
            "{kind:?}: 3 wanted"
        );
        let tolerant = KubernetesProbe::of_workload("pods", workload.clone()).max_unavailable(2);
        assert!(
            tolerant
                .inspect(Some(&"aaa".into()))
                .await
                .unwrap()
                .is_empty(),
            "{kind:?}"
        );
    }
}
