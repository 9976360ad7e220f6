//! Serverless CodeDeploy against moto's server (extended, see
//! `support/moto_codedeploy_ext.py`): Lambda deployment groups whose
//! AppSpec revisions shift an alias of a function in moto's own Lambda
//! service, checked with boto3's GetAlias; the conformance suite (with
//! check_interrupted_rollback), CodeDeploy's own rollback of a canary in
//! flight, ECS revisions, and bad input. Needs the test venv (./scripts/test).

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_codedeploy::types::{ComputePlatform, DeploymentCreator, DeploymentStatus};
use rollback_aws::attributes;
use rollback_core::conformance::{self, InterruptionFixture};
use rollback_core::steps::Steps;
use rollback_core::{
    Convergence, ErrorKind, Result, RevisionHealth, RollbackOutcome, Rollbacker, Target, TargetId,
};
use support::lambda::{LambdaGroup, appspec_yaml, content};
use support::{Group, request, revision, summary};

const ALL_AT_ONCE: &str = "CodeDeployDefault.LambdaAllAtOnce";
const CANARY: &str = "CodeDeployDefault.LambdaCanary10Percent5Minutes";

/// The Lambda AppSpec a deployment carries: (CurrentVersion, TargetVersion).
fn versions(d: &aws_sdk_codedeploy::types::DeploymentInfo) -> (String, String) {
    let text = d
        .revision()
        .and_then(|r| r.app_spec_content())
        .and_then(|c| c.content())
        .unwrap_or_default();
    let doc: serde_json::Value = serde_yaml_ng::from_str(text).unwrap();
    let props = doc["Resources"][0]
        .as_object()
        .and_then(|r| r.values().next())
        .map(|r| r["Properties"].clone())
        .unwrap_or_default();
    let v = |k: &str| match &props[k] {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    (v("CurrentVersion"), v("TargetVersion"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_passes_on_a_lambda_group_and_the_alias_shifts_back() {
    let l = LambdaGroup::new("lambda-conformance", ALL_AT_ONCE, 3).await;
    let ids = l.seed(&[(1, 2, "Succeeded"), (2, 3, "Succeeded")]).await;
    assert_eq!(l.alias(), ("3".into(), serde_json::Value::Null));
    let _agent = l.group.agent(&[]).await;
    let t = l.group.target();
    let r = t.rollbacker();
    conformance::check_target(&t)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", l.group.moto.stderr_tail()));
    let report = conformance::check_rollbacker(&t, &r)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", l.group.moto.stderr_tail()));
    for check in [
        "client_dry_run_changes_nothing",
        "rollback_makes_the_revision_current",
        "wait_converged_reports_convergence",
        "repeated_rollback_is_already_at",
    ] {
        assert!(report.passed.contains(&check), "{report:?}");
    }

    // The suite rolled @3 back to @2: a deployment of the last good AppSpec
    // shifting the alias from 3, and Lambda's alias is back on version 2.
    assert_eq!(
        summary(&t).await,
        vec![
            (l.id(2), RevisionHealth::Good, "Succeeded".into()),
            (l.id(3), RevisionHealth::Bad, "Succeeded".into()),
        ]
    );
    let current = t.current().await.unwrap();
    assert_eq!(current.attributes()[attributes::COMPUTE_PLATFORM], "Lambda");
    assert_eq!(current.attributes()[attributes::LAMBDA_TARGET_VERSION], "2");
    assert_eq!(
        current.attributes()[attributes::LAMBDA_CURRENT_VERSION],
        "3"
    );
    let rollback = l
        .group
        .deployment(&current.attributes()[attributes::LATEST_DEPLOYMENT])
        .await;
    assert_eq!(versions(&rollback), ("3".into(), "2".into()));
    let description = rollback.description().unwrap_or_default();
    assert!(
        description.starts_with(&format!(
            "Rollback of deployment {} ({}:live@3) to {}:live@2",
            ids[1], l.function, l.function
        )),
        "{description}"
    );
    // The hooks of the good AppSpec are kept.
    let text = rollback.revision().unwrap().app_spec_content().unwrap();
    assert!(
        text.content()
            .unwrap()
            .contains(&format!("{}-smoke", l.function)),
        "{text:?}"
    );
    assert_eq!(l.alias(), ("2".into(), serde_json::Value::Null));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_in_flight_is_stopped_and_codedeploy_shifts_the_alias_back() {
    let l = LambdaGroup::new("lambda-canary", CANARY, 3).await;
    let ids = l.seed(&[(1, 2, "Succeeded"), (2, 3, "InProgress")]).await;
    // 10 % of the traffic on version 3.
    assert_eq!(
        l.alias(),
        (
            "2".into(),
            serde_json::json!({"AdditionalVersionWeights": {"3": 0.1}})
        )
    );
    let t = l.group.target();
    assert_eq!(t.current().await.unwrap().id().as_str(), l.id(3));
    let r = t.rollbacker();
    let to = revision(&t, &l.id(2)).await;
    let dry = r
        .rollback(&request(to.clone()).dry_run(rollback_core::DryRun::Client))
        .await
        .unwrap();
    assert!(
        dry.detail().contains(&format!(
            "would stop deployment {} of {}:live@3 with autoRollbackEnabled",
            ids[1], l.function
        )),
        "{dry:?}"
    );
    let _agent = l.group.agent(&[]).await;
    let outcome = r.rollback(&request(to)).await.unwrap();
    assert!(
        matches!(outcome, RollbackOutcome::RolledBack { .. }),
        "{outcome:?}"
    );
    let converged = r
        .wait_converged(
            &rollback_core::RevisionId::new(l.id(2)),
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    assert_eq!(converged, Convergence::Converged);
    // CodeDeploy's rollback deployment shifted the alias from 3 back to 2.
    let all = l.group.deployments().await;
    let codedeploys = all.last().unwrap();
    assert_eq!(
        codedeploys.creator(),
        Some(&DeploymentCreator::CodeDeployRollback)
    );
    assert_eq!(versions(codedeploys), ("3".into(), "2".into()));
    assert_eq!(
        l.group.deployment(&ids[1]).await.status(),
        Some(&DeploymentStatus::Stopped)
    );
    assert_eq!(l.alias(), ("2".into(), serde_json::Value::Null));
    assert_eq!(
        summary(&t).await,
        vec![
            (l.id(2), RevisionHealth::Good, "Succeeded".into()),
            (l.id(3), RevisionHealth::Bad, "Stopped".into()),
        ]
    );
}

/// Lambda groups seeded alike, by target id.
struct Seeded {
    prefix: &'static str,
    config: &'static str,
    /// (CurrentVersion, TargetVersion, status), oldest first.
    seed: &'static [(u32, u32, &'static str)],
    groups: Mutex<HashMap<TargetId, Arc<LambdaGroup>>>,
}

impl Seeded {
    fn group(&self, target: &Arc<dyn Target>) -> Arc<LambdaGroup> {
        self.groups.lock().unwrap()[target.id()].clone()
    }
}

#[async_trait]
impl InterruptionFixture for Seeded {
    async fn setup(&self) -> Result<Arc<dyn Target>> {
        let l = LambdaGroup::with_function(self.prefix, self.config, 3, Some(self.prefix)).await;
        l.seed(self.seed).await;
        let target = l.group.target();
        self.groups
            .lock()
            .unwrap()
            .insert(target.id().clone(), Arc::new(l));
        Ok(Arc::new(target))
    }

    fn rollbacker(&self, target: &Arc<dyn Target>, steps: Steps) -> Arc<dyn Rollbacker> {
        Arc::new(self.group(target).group.target().rollbacker().steps(steps))
    }

    /// The rollback deployments (ours, or CodeDeploy's after a stop) and the
    /// stopped ones: place, shift, status, creator, the rollback's
    /// description without ids and names; and where the alias is.
    async fn records(&self, target: &Arc<dyn Target>) -> Result<Vec<String>> {
        let l = self.group(target);
        let all = l.group.deployments().await;
        let place: HashMap<String, usize> = all
            .iter()
            .enumerate()
            .map(|(i, d)| (d.deployment_id().unwrap_or_default().to_owned(), i + 1))
            .collect();
        let mut out: Vec<String> = all
            .iter()
            .filter(|d| {
                d.description().is_some_and(|t| t.starts_with("Rollback"))
                    || d.creator() == Some(&DeploymentCreator::CodeDeployRollback)
                    || d.status() == Some(&DeploymentStatus::Stopped)
            })
            .map(|d| {
                let (from, to) = versions(d);
                let text = place.iter().fold(
                    d.description()
                        .unwrap_or_default()
                        .replace(&l.function, "fn"),
                    |t, (id, n)| t.replace(id.as_str(), &format!("#{n}")),
                );
                format!(
                    "#{} {from}->{to} {} by {} {text}",
                    place[d.deployment_id().unwrap_or_default()],
                    d.status().map(|s| s.as_str()).unwrap_or("?"),
                    d.creator().map(|c| c.as_str()).unwrap_or("?"),
                )
                .trim_end()
                .to_owned()
            })
            .collect();
        out.push(format!("alias {:?}", l.alias()));
        Ok(out)
    }
}

/// The end of the description of [`support::request`]'s rollback deployment.
const DESCRIBED: &str = ", decided at 2026-11-27T12:00:00.000Z, by rollback-engine: p99 latency 180ms breached the 100ms SLO";

/// Run the check, after making sure that an uninterrupted rollback of the
/// fixture takes `steps` and leaves `records`.
async fn check_interrupted(fixture: Seeded, steps: &[&str], records: &[&str]) {
    let target = fixture.setup().await.unwrap();
    let to = target.history().await.unwrap()[1].revision.clone();
    let counted = Steps::new();
    fixture
        .rollbacker(&target, counted.clone())
        .rollback(&request(to))
        .await
        .unwrap_or_else(|e| panic!("{}", e.full_message()));
    assert_eq!(counted.taken(), steps);
    assert_eq!(fixture.records(&target).await.unwrap(), records);
    let report = conformance::check_interrupted_rollback(&fixture)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", support::moto().stderr_tail()));
    assert_eq!(report.passed, ["interrupted_rollback_completes"]);
}

/// A completed shift to 3 after one to 2: one step, `CreateDeployment` of
/// the AppSpec shifting 3 back to 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_lambda_rollback_completes_once() {
    check_interrupted(
        Seeded {
            prefix: "lambda-cut-create",
            config: ALL_AT_ONCE,
            seed: &[(1, 2, "Succeeded"), (2, 3, "Succeeded")],
            groups: Mutex::default(),
        },
        &["create a deployment of the revision"],
        &[
            &format!("#3 3->2 Created by user Rollback of deployment #2 (fn:live@3) to fn:live@2{DESCRIBED}"),
            // No agent runs: the rollback deployment has not shifted it yet.
            "alias (\"3\", Null)",
        ],
    )
    .await;
}

/// A canary to 3 in flight: one step, `StopDeployment(autoRollbackEnabled)`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_stop_of_a_canary_completes_once() {
    check_interrupted(
        Seeded {
            prefix: "lambda-cut-stop",
            config: CANARY,
            seed: &[(1, 2, "Succeeded"), (2, 3, "InProgress")],
            groups: Mutex::default(),
        },
        &["stop the deployment in flight with autoRollbackEnabled"],
        &[
            "#2 2->3 Stopped by user",
            "#3 3->2 Created by codeDeployRollback",
            // Stopped mid-canary: 10 % still on 3 until the rollback runs.
            "alias (\"2\", Object {\"AdditionalVersionWeights\": Object {\"3\": Number(0.1)}})",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appspecs_that_do_not_read_are_named_and_never_deployed() {
    let l = LambdaGroup::new("lambda-bad-appspec", ALL_AT_ONCE, 3).await;
    let no_target = appspec_yaml(&l.function, 1, 2).replace("        TargetVersion: \"2\"\n", "");
    let ids = l
        .group
        .seed(&[
            (content(&no_target), "Succeeded"),
            (content("Resources: [unclosed"), "Failed"),
            (l.shift(1, 3), "Succeeded"),
        ])
        .await;
    let t = l.group.target();
    let history = t.history().await.unwrap();
    let errors: Vec<Option<&str>> = history
        .iter()
        .map(|e| {
            e.revision
                .attributes()
                .get(attributes::APPSPEC_ERROR)
                .map(String::as_str)
        })
        .collect();
    assert_eq!(errors.len(), 3, "{history:?}");
    assert_eq!(errors[0], None);
    assert!(
        errors[1].unwrap().starts_with("not YAML or JSON"),
        "{errors:?}"
    );
    assert_eq!(
        errors[2],
        Some("Resources[0].payments.Properties.TargetVersion: missing")
    );
    let unreadable = history[2].revision.clone();
    assert!(unreadable.id().as_str().starts_with("appspec:sha256:"));
    let e = t
        .rollbacker()
        .rollback(&request(unreadable))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(
        e.message().contains(&format!(
            "the AppSpec of its deployment {} does not read: Resources[0].payments.Properties.TargetVersion: missing",
            ids[0]
        )),
        "{}",
        e.message()
    );
    assert_eq!(l.group.deployments().await.len(), 3, "nothing deployed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_an_unknown_platform_is_refused_by_name() {
    let g = Group::on("quantum", Some(ComputePlatform::from("Quantum")), None).await;
    let t = g.target();
    let e = t.history().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert!(
        e.message().contains(&format!(
            "CodeDeploy deployment group {}/payments: its application is of compute platform \"Quantum\", which rollback-aws does not know",
            g.app
        )),
        "{}",
        e.message()
    );
    let id = g.deploy(content("version: 0.0")).await;
    let e = t.current().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert!(
        e.message().contains(&format!(
            "deployment {id} is of compute platform \"Quantum\""
        )),
        "{}",
        e.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_revisions_are_task_definitions_and_roll_back_by_redeploying_the_appspec() {
    let g = Group::on(
        "ecs",
        Some(ComputePlatform::Ecs),
        Some("CodeDeployDefault.ECSAllAtOnce"),
    )
    .await;
    let spec = |n: u32| {
        format!(
            "version: 0.0
Resources:
  - TargetService:
      Type: AWS::ECS::Service
      Properties:
        TaskDefinition: \"arn:aws:ecs:us-east-1:123456789012:task-definition/payments:{n}\"
        LoadBalancerInfo:
          ContainerName: \"web\"
          ContainerPort: 8080
"
        )
    };
    g.seed(&[
        (content(&spec(6)), "Succeeded"),
        (content(&spec(7)), "Succeeded"),
    ])
    .await;
    let id = |n: u32| {
        format!("ecs:arn:aws:ecs:us-east-1:123456789012:task-definition/payments:{n}#web:8080")
    };
    let t = g.target();
    let current = t.current().await.unwrap();
    assert_eq!(current.id().as_str(), id(7));
    assert_eq!(current.label(), "task definition payments:7 (web:8080)");
    assert_eq!(current.attributes()[attributes::ECS_CONTAINER_PORT], "8080");
    let _agent = g.agent(&[]).await;
    let r = t.rollbacker();
    r.rollback(&request(revision(&t, &id(6)).await))
        .await
        .unwrap();
    assert_eq!(
        r.wait_converged(t.current().await.unwrap().id(), Duration::from_secs(20))
            .await
            .unwrap(),
        Convergence::Converged
    );
    let all = g.deployments().await;
    let text = |i: usize| {
        all[i]
            .revision()
            .and_then(|r| r.app_spec_content())
            .and_then(|c| c.content())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(text(2), spec(6), "the good AppSpec redeployed as it was");
    assert_eq!(
        summary(&t).await,
        vec![
            (id(6), RevisionHealth::Good, "Succeeded".into()),
            (id(7), RevisionHealth::Bad, "Succeeded".into()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_that_cannot_tell_where_the_alias_is_stops_nothing() {
    let l = LambdaGroup::new("lambda-unknown-alias", ALL_AT_ONCE, 3).await;
    let no_target = appspec_yaml(&l.function, 3, 4).replace("        TargetVersion: \"4\"\n", "");
    let mut steps = vec![(l.shift(1, 2), "Succeeded"), (l.shift(2, 3), "Succeeded")];
    steps.push((content(&no_target), "InProgress"));
    let ids = l.group.seed(&steps).await;
    let t = l.group.target();
    // CodeDeploy's own rollback would restore @3, so the plan is a stop
    // then a deployment of @2, whose AppSpec needs the alias's version.
    let e = t
        .rollbacker()
        .rollback(&request(revision(&t, &l.id(2)).await))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Permanent);
    assert!(
        e.message().contains(&format!(
            "cannot shift alias live of function {} back to version 2: the version alias live of function {} is on is unknown, because of the newest deployment {}: its AppSpec does not read (Resources[0].payments.Properties.TargetVersion: missing)",
            l.function, l.function, ids[2]
        )),
        "{}",
        e.message()
    );
    assert_eq!(
        l.group.deployment(&ids[2]).await.status(),
        Some(&DeploymentStatus::InProgress),
        "not stopped"
    );
    assert_eq!(l.group.deployments().await.len(), 3, "nothing deployed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_rolls_a_lambda_group_back_and_verifies_the_last_good_version() {
    use rollback_aws::{CodeDeployConfig, CodeDeployTarget};
    use rollback_core::audit::MemoryAuditSink;
    use rollback_core::memory::ScriptedProbe;
    use rollback_core::{Engine, Phase, Policy, WatchSpec};

    let l = LambdaGroup::new("lambda-engine", ALL_AT_ONCE, 3).await;
    l.seed(&[(1, 2, "Succeeded"), (2, 3, "Succeeded")]).await;
    let _agent = l.group.agent(&[]).await;
    // The configuration of a Server group: the platform comes from CodeDeploy.
    let mut config = CodeDeployConfig::new(&l.group.app, &l.group.name);
    config.poll_interval = Duration::from_millis(50);
    let t = CodeDeployTarget::connect(&config, Some(l.group.client.clone()))
        .await
        .unwrap();
    let errors = ScriptedProbe::new("error_rate")
        .script_for(l.id(3), [0.004, 0.031])
        .script_for(l.id(2), [0.002]);
    let policy = Policy::from_yaml(
        "interval: 100ms\nbake_time: 1m\nverify: 300ms\nrollback_timeout: 30s\n\
         probes: [{name: error_rate, success: '< 0.01', failure: '>= 0.01'}]",
    )
    .unwrap();
    let audit = MemoryAuditSink::new();
    let engine = Engine::builder().audit(Arc::new(audit.clone())).build();
    let mut handle = engine
        .watch(WatchSpec::new(
            policy,
            Arc::new(t.clone()),
            Arc::new(t.rollbacker()),
            vec![Arc::new(errors)],
        ))
        .await
        .unwrap();
    let end = tokio::time::timeout(Duration::from_secs(60), handle.finished())
        .await
        .unwrap_or_else(|_| panic!("the watch did not end\n{}", l.group.moto.stderr_tail()));
    let log: Vec<String> = audit.records().iter().map(|r| r.describe()).collect();
    assert!(
        matches!(&end, Phase::RolledBack { to, .. } if to.as_str() == l.id(2)),
        "{end:?}\n{log:#?}"
    );
    assert_eq!(l.alias(), ("2".into(), serde_json::Value::Null));
    assert_eq!(
        summary(&t).await,
        vec![
            (l.id(2), RevisionHealth::Good, "Succeeded".into()),
            (l.id(3), RevisionHealth::Bad, "Succeeded".into()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failed_shift_the_alias_is_shifted_back_from_the_failed_version() {
    let l = LambdaGroup::new("lambda-failed", ALL_AT_ONCE, 3).await;
    l.seed(&[(1, 2, "Succeeded")]).await;
    let _agent = l.group.agent(&["3"]).await;
    let t = l.group.target();
    let failed = l.group.deploy(l.shift(2, 3)).await;
    let r = t.rollbacker();
    assert!(matches!(
        r.wait_converged(
            &rollback_core::RevisionId::new(l.id(3)),
            Duration::from_secs(20)
        )
        .await
        .unwrap(),
        Convergence::Failed { .. }
    ));
    // All at once: the failed deployment left the alias on 3.
    assert_eq!(l.alias(), ("3".into(), serde_json::Value::Null));
    assert_eq!(t.history().await.unwrap()[0].health, RevisionHealth::Bad);
    r.rollback(&request(revision(&t, &l.id(2)).await))
        .await
        .unwrap();
    assert_eq!(
        r.wait_converged(
            &rollback_core::RevisionId::new(l.id(2)),
            Duration::from_secs(20)
        )
        .await
        .unwrap(),
        Convergence::Converged
    );
    let all = l.group.deployments().await;
    assert_eq!(versions(all.last().unwrap()), ("3".into(), "2".into()));
    assert!(
        all.last()
            .unwrap()
            .description()
            .unwrap_or_default()
            .starts_with(&format!("Rollback of deployment {failed} ")),
        "{all:?}"
    );
    assert_eq!(l.alias(), ("2".into(), serde_json::Value::Null));
}
