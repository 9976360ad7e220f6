//! rollback-core's conformance suite against the test API server (kmock
//! plus tests/support/kube_apiserver.py): the rollbacker checks, an
//! interrupted rollback, and the engine on a crash-looping revision; and
//! connecting a handle from its configuration.

mod helpers;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use rollback_core::audit::MemoryAuditSink;
use rollback_core::conformance::{self, InterruptionFixture};
use rollback_core::policy::RetryPolicy;
use rollback_core::steps::Steps;
use rollback_core::{DryRun, ErrorKind, Result, RollbackOutcome, Rollbacker, Target};
use rollback_k8s::{K8sConfig, K8sDeployment, KubernetesProbe};
use serde_json::{Value, json};

use helpers::{NS, builder, image, request, three_revisions};
use support::{KubeServer, Rev, Seed};

#[tokio::test]
async fn rollback_core_conformance_suite_passes() {
    let server = KubeServer::start();
    three_revisions(&server).await;
    let target = builder(&server, "web").build().unwrap();
    let controller = support::spawn_controller(server.client(), NS, "web");
    rollback_core::conformance::check_target(&target)
        .await
        .unwrap();
    let result = rollback_core::conformance::check_rollbacker(&target, &target).await;
    controller.abort();
    let report = result.unwrap();
    assert_eq!(image(&server, "web").await, "web:2");
    for check in [
        "rollbacker_serves_its_target",
        "client_dry_run_changes_nothing",
        "server_dry_run",
        "unknown_revision_is_not_found",
        "rollback_makes_the_revision_current",
        "wait_converged_reports_convergence",
        "repeated_rollback_is_already_at",
    ] {
        assert!(report.passed.contains(&check), "{check}: {report:?}");
    }
    assert_eq!(
        report.skipped.iter().map(|s| s.0).collect::<Vec<_>>(),
        ["marks_read_back"],
        "{report:?}"
    );
}

#[tokio::test]
async fn the_engine_rolls_a_crash_looping_revision_back_and_verifies() {
    use rollback_core::{Engine, Phase, Policy, WatchSpec};
    let server = KubeServer::start();
    three_revisions(&server).await;
    let client = server.client();
    let crashing = json!({"name": "app", "image": "web:3", "imageID": "", "ready": false, "restartCount": 5,
                          "state": {"waiting": {"reason": "CrashLoopBackOff"}}});
    support::create_pod(&client, NS, "web", "ccc", "web-ccc-1", crashing).await;
    let deployment = Arc::new(builder(&server, "web").build().unwrap());
    let probe = KubernetesProbe::new("k8s_problems", (*deployment).clone());
    let policy = Policy::from_yaml(
        "interval: 100ms\nbake_time: 1m\nverify: 500ms\nconsecutive_failure_limit: 1\n\
         probes: [{name: k8s_problems, success: '== 0', failure: '> 0'}]",
    )
    .unwrap();
    let audit = MemoryAuditSink::new();
    let engine = Engine::builder().audit(Arc::new(audit.clone())).build();
    let controller = support::spawn_controller(client, NS, "web");
    let spec = WatchSpec::new(
        policy,
        deployment.clone(),
        deployment.clone(),
        vec![Arc::new(probe)],
    );
    let mut handle = engine.watch(spec).await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(30), handle.finished())
        .await
        .expect("the watch ends");
    controller.abort();
    assert!(
        matches!(end, Phase::RolledBack { .. }),
        "{end:?}; audit: {:#?}",
        audit.records()
    );
    assert_eq!(deployment.current().await.unwrap().id().as_str(), "bbb");
    assert_eq!(image(&server, "web").await, "web:2");
}

/// Fresh Deployments `web-0`, `web-1`, … in namespace shop, each with
/// revision 1 (app:1, hash aaa) and revision 2 (app:2, hash bbb, current),
/// as the controller leaves them.
struct Interruptions {
    server: KubeServer,
    made: AtomicUsize,
}

fn name_of(target: &Arc<dyn Target>) -> String {
    let id = target.id().as_str();
    id.rsplit('/').next().unwrap_or(id).to_owned()
}

impl Interruptions {
    /// A handle as a restarted process builds it: no retries of its own,
    /// so an interruption is not papered over.
    fn handle(&self, name: &str, steps: Steps) -> K8sDeployment {
        builder(&self.server, name)
            .retry(RetryPolicy::NEVER)
            .steps(steps)
            .build()
            .unwrap()
    }
}

#[async_trait]
impl InterruptionFixture for Interruptions {
    async fn setup(&self) -> Result<Arc<dyn Target>> {
        let name = format!("web-{}", self.made.fetch_add(1, Ordering::SeqCst));
        let seed = Seed::new(
            &name,
            vec![Rev::new(1, "aaa", "app:1"), Rev::new(2, "bbb", "app:2")],
        );
        support::seed(&self.server.client(), NS, &seed).await;
        Ok(Arc::new(self.handle(&name, Steps::new())))
    }

    fn rollbacker(&self, target: &Arc<dyn Target>, steps: Steps) -> Arc<dyn Rollbacker> {
        Arc::new(self.handle(&name_of(target), steps))
    }

    /// What the rollback writes into the Deployment: its annotations
    /// (change-cause and the revision annotations, as kubectl replaces
    /// them), the template it runs and its generation (one more per
    /// patch), with the Deployment's name left out.
    async fn records(&self, target: &Arc<dyn Target>) -> Result<Vec<String>> {
        let name = name_of(target);
        let d = support::deployment_json(&self.server.client(), NS, &name).await;
        let mut records: Vec<String> = d["metadata"]["annotations"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                let v = v.as_str().unwrap_or_default().replace(&name, "<name>");
                format!("annotation {k}={v}")
            })
            .collect();
        records.push(format!("template {}", target.current().await?.id()));
        records.push(format!("generation {}", d["metadata"]["generation"]));
        Ok(records)
    }
}

#[tokio::test]
async fn an_interrupted_rollback_completes_when_asked_again() {
    let server = KubeServer::start();
    support::create_namespace(&server.client(), NS).await;
    let fixture = Interruptions {
        server,
        made: AtomicUsize::new(0),
    };
    let report = conformance::check_interrupted_rollback(&fixture)
        .await
        .unwrap();
    assert_eq!(report.passed, ["interrupted_rollback_completes"]);
    // The reference run, one run stopped before the patch and one killed
    // after it (done, but not known to be), each on its own Deployment.
    assert_eq!(fixture.made.load(Ordering::SeqCst), 3);
    let target: Arc<dyn Target> = Arc::new(fixture.handle("web-1", Steps::new()));
    assert_eq!(
        fixture.records(&target).await.unwrap(),
        [
            "annotation deployment.kubernetes.io/revision=2",
            "annotation kubernetes.io/change-cause=deploy app:1",
            "template aaa",
            "generation 2",
        ]
    );
}

#[tokio::test]
async fn a_rollback_is_one_step_and_a_stop_before_it_changes_nothing() {
    let server = KubeServer::start();
    three_revisions(&server).await;
    let before = support::deployment_json(&server.client(), NS, "web").await;
    let steps = Steps::stop_after(0);
    let cut = builder(&server, "web")
        .retry(RetryPolicy::NEVER)
        .steps(steps.clone())
        .build()
        .unwrap();
    let err = cut
        .rollback(&request(Some("ccc"), "aaa", DryRun::None))
        .await
        .unwrap_err();
    assert!(
        err.message()
            .contains("interrupted before step 1 (patch the Deployment's template)"),
        "{err}"
    );
    assert_eq!(
        support::deployment_json(&server.client(), NS, "web").await,
        before
    );
    // Dry runs change nothing, so they take no step.
    for dry in [DryRun::Client, DryRun::Server] {
        let out = cut
            .rollback(&request(Some("ccc"), "aaa", dry))
            .await
            .unwrap();
        assert!(matches!(out, RollbackOutcome::DryRun { .. }), "{out:?}");
    }
    let steps = Steps::new();
    let whole = builder(&server, "web")
        .steps(steps.clone())
        .build()
        .unwrap();
    whole
        .rollback(&request(Some("ccc"), "aaa", DryRun::None))
        .await
        .unwrap();
    whole
        .rollback(&request(Some("ccc"), "aaa", DryRun::None))
        .await
        .unwrap();
    assert_eq!(
        steps.taken(),
        ["patch the Deployment's template"],
        "the repeated rollback found the template matching"
    );
    assert_eq!(image(&server, "web").await, "web:1");
}

#[tokio::test]
async fn connect_finds_credentials_as_kubectl_does_and_the_suite_passes_on_it() {
    let server = KubeServer::start();
    three_revisions(&server).await;
    let config = K8sConfig::new(NS, "web")
        .kubeconfig(server.kubeconfig())
        .context("kmock")
        .poll_interval(Duration::from_millis(50))
        .retry(helpers::fast_retry());
    let target = K8sDeployment::connect(&config, None).await.unwrap();
    assert_eq!(target.id().as_str(), "k8s:shop/web");
    assert_eq!(target.rollbacker().target(), target.id());
    let controller = support::spawn_controller(server.client(), NS, "web");
    let result = conformance::check_rollbacker(&target, &target.rollbacker()).await;
    controller.abort();
    result.unwrap();

    // The kubeconfig's current context, and a client the caller has.
    let current = K8sConfig::new(NS, "web").kubeconfig(server.kubeconfig());
    let t = K8sDeployment::connect(&current, None).await.unwrap();
    assert_eq!(t.current().await.unwrap().id().as_str(), "bbb");
    let t = K8sDeployment::connect(&K8sConfig::new(NS, "web"), Some(server.client()))
        .await
        .unwrap();
    assert_eq!(t.current().await.unwrap().id().as_str(), "bbb");
}

#[tokio::test]
async fn connect_errors_name_the_field() {
    let server = KubeServer::start();
    let kubeconfig = server.kubeconfig();
    let cases = [
        (
            K8sConfig::new(NS, "web")
                .kubeconfig(&kubeconfig)
                .context("prod"),
            "K8sConfig: context \"prod\" of kubeconfig",
        ),
        (
            K8sConfig::new(NS, "web").kubeconfig(server.dir.path().join("nope")),
            "K8sConfig.kubeconfig: cannot read",
        ),
        (
            K8sConfig::new("Shop", "web").kubeconfig(&kubeconfig),
            "K8sDeployment: namespace \"Shop\" is not a valid Kubernetes name",
        ),
        (
            K8sConfig::new(NS, "web")
                .kubeconfig(&kubeconfig)
                .poll_interval(Duration::ZERO),
            "K8sDeployment: poll_interval must be more than zero",
        ),
    ];
    for (config, message) in cases {
        let err = K8sDeployment::connect(&config, None).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert!(err.message().starts_with(message), "{err}");
    }
}

#[tokio::test]
async fn wait_converged_stops_at_the_rollout_timeout() {
    let server = KubeServer::start();
    three_revisions(&server).await;
    let target = builder(&server, "web")
        .rollout_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    target
        .rollback(&request(Some("ccc"), "bbb", DryRun::None))
        .await
        .unwrap();
    // No controller: the rollout never converges.
    let start = std::time::Instant::now();
    let out = target
        .wait_converged(&"bbb".into(), Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        matches!(out, rollback_core::Convergence::TimedOut { .. }),
        "{out:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    let d: Value = support::deployment_json(&server.client(), NS, "web").await;
    assert_eq!(d["metadata"]["generation"], json!(2));
}
