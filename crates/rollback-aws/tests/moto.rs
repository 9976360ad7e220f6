//! The CodeDeploy target and rollbacker against moto's CodeDeploy server,
//! extended with StopDeployment, deployment statuses and paging (see
//! `support/moto_codedeploy_ext.py`). Needs the test venv (./scripts/test).

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_codedeploy::types::{
    AppSpecContent, BundleType, DeploymentCreator, DeploymentStatus, RevisionLocation,
    RevisionLocationType, S3Location,
};
use rollback_aws::{DeploymentProgress, attributes};
use rollback_core::audit::MemoryAuditSink;
use rollback_core::memory::ScriptedProbe;
use rollback_core::{
    Actor, Convergence, DryRun, ErrorKind, RevisionHealth, RevisionId, RevisionRecord, RevisionRef,
    RollbackOutcome, RollbackRequest, Rollbacker, Target, TargetExt, Timestamp, conformance,
};
use sha2::Digest;
use support::{Group, PAGE_SIZE, github, github_id};

/// When the tests' rollbacks were decided, by the engine's clock.
const DECIDED: Timestamp = Timestamp::from_millis(1_795_780_800_000);

fn request(to: RevisionRef) -> RollbackRequest {
    RollbackRequest::new(to, DECIDED)
        .reason("p99 latency 180ms breached the 100ms SLO")
        .actor(Actor::engine())
}

async fn revision(target: &dyn Target, id: &str) -> RevisionRef {
    target
        .find(&RevisionId::new(id))
        .await
        .unwrap_or_else(|e| panic!("{}", e.full_message()))
        .revision
}

/// (revision id, health, status of its newest deployment), newest first.
async fn summary(target: &dyn Target) -> Vec<(String, RevisionHealth, String)> {
    target
        .history()
        .await
        .unwrap()
        .iter()
        .map(|e| {
            (
                e.revision.id().to_string(),
                e.health,
                e.revision.attributes()[attributes::LATEST_STATUS].clone(),
            )
        })
        .collect()
}

const SPEC: &str = "version: 0.0\nResources: []\n";

fn s3(version: &str) -> RevisionLocation {
    RevisionLocation::builder()
        .revision_type(RevisionLocationType::S3)
        .s3_location(
            S3Location::builder()
                .bucket("bank-artifacts")
                .key("payments/app.zip")
                .bundle_type(BundleType::Zip)
                .version(version)
                .build(),
        )
        .build()
}

fn appspec(content: &str) -> RevisionLocation {
    RevisionLocation::builder()
        .revision_type(RevisionLocationType::AppSpecContent)
        .app_spec_content(AppSpecContent::builder().content(content).build())
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_passes_against_moto() {
    let g = Group::new("conformance").await;
    let ids = g
        .seed(&[
            (github("v1"), "Succeeded"),
            (github("v2"), "Succeeded"),
            (github("v3"), "Succeeded"),
        ])
        .await;
    let _agent = g.agent(&[]).await;
    let t = g.target();
    let r = t.rollbacker();
    conformance::check_target(&t)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", g.moto.stderr_tail()));
    conformance::check_rollbacker(&t, &r)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", g.moto.stderr_tail()));

    // The suite rolled v3 back to v2 with a new deployment whose description
    // names v3's deployment; that marks v3 bad from now on.
    let history = summary(&t).await;
    assert_eq!(
        history,
        vec![
            (github_id("v2"), RevisionHealth::Good, "Succeeded".into()),
            (github_id("v3"), RevisionHealth::Bad, "Succeeded".into()),
            (github_id("v1"), RevisionHealth::Good, "Succeeded".into()),
        ]
    );
    let current = t.current().await.unwrap();
    let rollback = g
        .deployment(&current.attributes()[attributes::LATEST_DEPLOYMENT])
        .await;
    let description = rollback.description().unwrap_or_default();
    assert!(
        description.starts_with(&format!(
            "Rollback of deployment {} (bank/payments@v3) to bank/payments@v2",
            ids[2]
        )),
        "{description}"
    );
    assert!(
        description.contains("by conformance-suite: rollback-core conformance suite"),
        "{description}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_reads_every_page_and_collapses_redeployments() {
    let g = Group::new("paging").await;
    let gh_c2 = github("c2");
    let spec = appspec(SPEC);
    // d0: first; d1..d28: seven rounds of [s3 v1 ok, c2 ok, AppSpec failed, s3 v2 ok];
    // d29: c2 failed; d30: s3 v1 in progress. 31 deployments: 4 pages of 10.
    let mut steps = vec![(github("first"), "Succeeded")];
    for _ in 0..7 {
        steps.push((s3("v1"), "Succeeded"));
        steps.push((gh_c2.clone(), "Succeeded"));
        steps.push((spec.clone(), "Failed"));
        steps.push((s3("v2"), "Succeeded"));
    }
    steps.push((gh_c2.clone(), "Failed"));
    steps.push((s3("v1"), "InProgress"));
    let ids = g.seed(&steps).await;
    assert_eq!(ids.len(), 31);
    assert!(ids.len() > 3 * PAGE_SIZE);

    let t = g.target();
    let (lists, batches) = (
        g.moto.calls("ListDeployments").await.unwrap(),
        g.moto.calls("BatchGetDeployments").await.unwrap(),
    );
    let history = t.history().await.unwrap();
    assert!(
        g.moto.calls("ListDeployments").await.unwrap() - lists >= 4,
        "31 deployments at 10 a page are 4 pages"
    );
    assert!(
        g.moto.calls("BatchGetDeployments").await.unwrap() - batches >= 2,
        "31 deployments are 25 + 6"
    );

    let spec_id = format!(
        "appspec:sha256:{}",
        sha2::Sha256::digest(SPEC.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let got: Vec<_> = history
        .iter()
        .map(|e| {
            (
                e.revision.id().to_string(),
                e.health,
                e.revision.attributes()[attributes::DEPLOYMENT_COUNT].clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "s3://bank-artifacts/payments/app.zip?versionId=v1".into(),
                RevisionHealth::Good,
                "8".into()
            ),
            (github_id("c2"), RevisionHealth::Bad, "8".into()),
            (
                "s3://bank-artifacts/payments/app.zip?versionId=v2".into(),
                RevisionHealth::Good,
                "7".into()
            ),
            (spec_id, RevisionHealth::Bad, "7".into()),
            (github_id("first"), RevisionHealth::Good, "1".into()),
        ]
    );
    // the oldest deployment was only on the last page
    assert_eq!(
        history[4].revision.attributes()[attributes::LATEST_DEPLOYMENT],
        ids[0]
    );
    assert_eq!(
        history[0].revision.attributes()[attributes::LATEST_DEPLOYMENT],
        ids[30]
    );
    assert_eq!(
        history[0].revision.attributes()[attributes::HEALTH_FROM],
        ids[25]
    );
    assert_eq!(
        history[0].revision.label(),
        "s3://bank-artifacts/payments/app.zip (version v1)"
    );
    let times: Vec<_> = history
        .iter()
        .map(|e| e.revision.created_at().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    assert_eq!(t.current().await.unwrap().id(), history[0].revision.id());
    conformance::check_target(&t).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_flight_bad_deployment_is_stopped_and_codedeploys_rollback_followed() {
    let g = Group::new("stop-auto").await;
    let ids = g
        .seed(&[(github("good"), "Succeeded"), (github("bad"), "InProgress")])
        .await;
    let seen: Arc<Mutex<Vec<DeploymentProgress>>> = Arc::default();
    let sink = seen.clone();
    let t = g
        .target_builder()
        .on_progress(move |p| sink.lock().unwrap().push(p.clone()))
        .build()
        .unwrap();
    let r = t.rollbacker();
    assert_eq!(
        summary(&t).await,
        vec![
            (
                github_id("bad"),
                RevisionHealth::Unknown,
                "InProgress".into()
            ),
            (github_id("good"), RevisionHealth::Good, "Succeeded".into()),
        ]
    );

    // A dry run says what it would do and changes nothing.
    let good = revision(&t, &github_id("good")).await;
    let dry = r
        .rollback(&request(good.clone()).dry_run(DryRun::Client))
        .await
        .unwrap();
    let RollbackOutcome::DryRun { detail } = dry else {
        panic!("{dry:?}")
    };
    assert!(
        detail.contains(&format!(
            "would stop deployment {} of bank/payments@bad with autoRollbackEnabled",
            ids[1]
        )),
        "{detail}"
    );
    assert_eq!(
        g.deployment(&ids[1]).await.status(),
        Some(&DeploymentStatus::InProgress)
    );

    let _agent = g.agent(&[]).await;
    let outcome = r
        .rollback(&request(good.clone()))
        .await
        .unwrap_or_else(|e| panic!("{}\n{}", e.full_message(), g.moto.stderr_tail()));
    let RollbackOutcome::RolledBack { detail } = &outcome else {
        panic!("{outcome:?}")
    };

    let stopped = g.deployment(&ids[1]).await;
    assert_eq!(stopped.status(), Some(&DeploymentStatus::Stopped));
    let rollback_id = stopped
        .rollback_info()
        .and_then(|i| i.rollback_deployment_id())
        .unwrap()
        .to_owned();
    assert!(
        detail.contains(&format!(
            "CodeDeploy's rollback deployment {rollback_id} redeploys bank/payments@good"
        )),
        "{detail}"
    );
    let rollback = g.deployment(&rollback_id).await;
    assert_eq!(
        rollback.creator(),
        Some(&DeploymentCreator::CodeDeployRollback)
    );
    assert_eq!(
        rollback
            .rollback_info()
            .and_then(|i| i.rollback_triggering_deployment_id()),
        Some(ids[1].as_str())
    );

    let converged = r
        .wait_converged(good.id(), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(converged, Convergence::Converged);
    let seen = seen.lock().unwrap().clone();
    let last = seen.last().unwrap();
    assert_eq!(
        (
            last.deployment_id.as_str(),
            last.status.as_str(),
            last.succeeded
        ),
        (rollback_id.as_str(), "Succeeded", 1)
    );
    assert!(
        seen.iter().all(|p| p.deployment_id == rollback_id),
        "{seen:?}"
    );

    assert_eq!(
        summary(&t).await,
        vec![
            (github_id("good"), RevisionHealth::Good, "Succeeded".into()),
            (github_id("bad"), RevisionHealth::Bad, "Stopped".into()),
        ]
    );
    let again = r.rollback(&request(good.clone())).await.unwrap();
    assert!(
        matches!(again, RollbackOutcome::AlreadyAt { .. }),
        "{again:?}"
    );
    let dry = r
        .rollback(&request(good).dry_run(DryRun::Client))
        .await
        .unwrap();
    assert!(
        matches!(&dry, RollbackOutcome::DryRun { detail } if detail.contains("would change nothing")),
        "{dry:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_flight_deployment_is_stopped_then_an_older_revision_redeployed() {
    let g = Group::new("stop-create").await;
    let ids = g
        .seed(&[
            (github("old"), "Succeeded"),
            (github("good"), "Succeeded"),
            (github("bad"), "InProgress"),
        ])
        .await;
    let _agent = g.agent(&[]).await;
    let t = g.target();
    let r = t.rollbacker();
    // CodeDeploy's own rollback would restore "good"; the request is "old".
    let old = revision(&t, &github_id("old")).await;
    let outcome = r
        .rollback(&request(old.clone()))
        .await
        .unwrap_or_else(|e| panic!("{}\n{}", e.full_message(), g.moto.stderr_tail()));
    assert!(
        outcome.detail().contains(&format!(
            "reverting deployment {} of bank/payments@bad",
            ids[2]
        )),
        "{outcome:?}"
    );

    let stopped = g.deployment(&ids[2]).await;
    assert_eq!(stopped.status(), Some(&DeploymentStatus::Stopped));
    assert_eq!(
        stopped
            .rollback_info()
            .and_then(|i| i.rollback_deployment_id()),
        None,
        "stopped without CodeDeploy's rollback"
    );
    assert_eq!(
        r.wait_converged(old.id(), Duration::from_secs(30))
            .await
            .unwrap(),
        Convergence::Converged
    );

    let current = t.current().await.unwrap();
    assert_eq!(current.id().as_str(), github_id("old"));
    let created = g
        .deployment(&current.attributes()[attributes::LATEST_DEPLOYMENT])
        .await;
    assert_eq!(created.creator(), Some(&DeploymentCreator::User));
    assert!(
        created
            .description()
            .unwrap()
            .starts_with(&format!("Rollback of deployment {} ", ids[2]))
    );
    assert_eq!(
        summary(&t).await,
        vec![
            (github_id("old"), RevisionHealth::Good, "Succeeded".into()),
            (github_id("bad"), RevisionHealth::Bad, "Stopped".into()),
            (github_id("good"), RevisionHealth::Good, "Succeeded".into()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_reports_timeouts_and_failed_rollback_deployments() {
    let g = Group::new("wait").await;
    let ids = g
        .seed(&[(github("good"), "Succeeded"), (github("bad"), "Succeeded")])
        .await;
    let t = g.target();
    let r = t.rollbacker();
    let good = revision(&t, &github_id("good")).await;

    // No agent: the rollback deployment stays Created.
    let outcome = r.rollback(&request(good.clone())).await.unwrap();
    assert!(
        outcome.detail().contains(&format!(
            "reverting deployment {} of bank/payments@bad",
            ids[1]
        )),
        "{outcome:?}"
    );
    let current = t.current().await.unwrap();
    let created = current.attributes()[attributes::LATEST_DEPLOYMENT].clone();
    match r
        .wait_converged(good.id(), Duration::from_millis(300))
        .await
        .unwrap()
    {
        Convergence::TimedOut { detail } => {
            assert!(
                detail.starts_with(&format!("deployment {created} is Created")),
                "{detail}"
            );
            assert!(detail.contains("0 succeeded"), "{detail}");
        }
        other => panic!("{other:?}"),
    }

    // While it is in progress, a repeated rollback finds it and changes nothing.
    g.set_status(&created, "InProgress").await;
    let again = r.rollback(&request(good.clone())).await.unwrap();
    assert!(
        matches!(&again, RollbackOutcome::AlreadyAt { detail } if detail.contains("is InProgress")),
        "{again:?}"
    );

    g.fail(
        &created,
        "SCRIPT_FAILED",
        "ValidateService failed on 1 of 2 instances",
    )
    .await;
    match r
        .wait_converged(good.id(), Duration::from_secs(5))
        .await
        .unwrap()
    {
        Convergence::Failed { detail } => {
            assert!(
                detail.contains(&format!("deployment {created} is Failed")),
                "{detail}"
            );
            assert!(
                detail.contains("SCRIPT_FAILED: ValidateService failed on 1 of 2 instances"),
                "{detail}"
            );
        }
        other => panic!("{other:?}"),
    }
    // The newest decisive deployment of "good" failed: CodeDeploy now calls it bad.
    assert_eq!(
        summary(&t).await,
        vec![
            (github_id("good"), RevisionHealth::Bad, "Failed".into()),
            (github_id("bad"), RevisionHealth::Bad, "Succeeded".into()),
        ]
    );
    // The same decision again (a retry, a restart) finds its failed
    // deployment and makes no second one.
    let creates = g.moto.calls("CreateDeployment").await.unwrap();
    let same = t
        .rollbacker()
        .rollback(&request(good.clone()))
        .await
        .unwrap();
    assert!(
        matches!(&same, RollbackOutcome::AlreadyAt { detail }
            if detail.contains(&format!("deployment {created} of bank/payments@good was created for this rollback"))),
        "{same:?}"
    );
    assert_eq!(g.moto.calls("CreateDeployment").await.unwrap(), creates);
    // A rollback decided after a failed rollback deploys again rather than claiming AlreadyAt.
    let later = RollbackRequest::new(good.clone(), DECIDED.plus(Duration::from_secs(60)))
        .reason("p99 latency 180ms breached the 100ms SLO");
    let third = r.rollback(&later).await.unwrap();
    assert!(
        third
            .detail()
            .contains(&format!("reverting deployment {created}")),
        "{third:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_map_to_clear_kinds_and_leave_the_group_unchanged() {
    let g = Group::new("errors").await;
    let ids = g
        .seed(&[(github("good"), "Succeeded"), (github("bad"), "InProgress")])
        .await;
    let t = g.target();
    let r = t.rollbacker();

    // Missing groups and applications.
    let missing_group = g.target_builder().deployment_group("nope").build().unwrap();
    let e = missing_group.history().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{}", e.full_message());
    assert!(
        e.message().contains("DeploymentGroupDoesNotExistException"),
        "{}",
        e.message()
    );
    let missing_app = g
        .target_builder()
        .application(format!("{}-gone", g.app))
        .build()
        .unwrap();
    assert_eq!(
        missing_app.current().await.unwrap_err().kind(),
        ErrorKind::NotFound
    );

    // A revision never deployed to the group.
    let unknown: RevisionRef = Arc::new(RevisionRecord::new(github_id("never")));
    let e = r.rollback(&request(unknown)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);

    // Throttling is retryable.
    g.moto
        .fail_next(
            "ListDeployments",
            &g.app,
            "ThrottlingException",
            "Rate exceeded",
            1,
        )
        .await
        .unwrap();
    let e = t.history().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient);
    assert!(e.is_retryable());
    assert!(
        e.message().contains("ThrottlingException: Rate exceeded"),
        "{}",
        e.message()
    );

    // Access denial is final and changes nothing.
    let good = revision(&t, &github_id("good")).await;
    g.moto
        .fail_next(
            "StopDeployment",
            &ids[1],
            "AccessDeniedException",
            "User is not authorized to perform: codedeploy:StopDeployment",
            1,
        )
        .await
        .unwrap();
    let e = r.rollback(&request(good.clone())).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized);
    assert!(!e.is_retryable());
    assert!(
        e.message()
            .contains("IAM policy allows codedeploy:StopDeployment"),
        "{}",
        e.message()
    );
    assert_eq!(
        g.deployment(&ids[1]).await.status(),
        Some(&DeploymentStatus::InProgress)
    );

    // A deployment that completes between the listing and the stop: plan again.
    g.moto
        .fail_next(
            "StopDeployment",
            &ids[1],
            "DeploymentAlreadyCompletedException",
            "The deployment has already completed",
            1,
        )
        .await
        .unwrap();
    let outcome = r
        .rollback(&request(good.clone()))
        .await
        .unwrap_or_else(|e| panic!("{}", e.full_message()));
    assert!(
        outcome
            .detail()
            .contains(&format!("stopped deployment {}", ids[1])),
        "{outcome:?}"
    );

    // StopDeployment of a completed deployment, for real.
    g.set_status(
        &t.current().await.unwrap().attributes()[attributes::LATEST_DEPLOYMENT],
        "Succeeded",
    )
    .await;
    let e = g
        .client
        .stop_deployment()
        .deployment_id(&ids[0])
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        aws_sdk_codedeploy::error::ProvideErrorMetadata::code(&e),
        Some("DeploymentAlreadyCompletedException")
    );

    // An invalid revision is refused for good.
    let bad = revision(&t, &github_id("bad")).await;
    g.moto
        .fail_next(
            "CreateDeployment",
            &g.app,
            "InvalidRevisionException",
            "The revision is invalid",
            1,
        )
        .await
        .unwrap();
    let e = r.rollback(&request(bad)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{}", e.full_message());
    assert!(!e.is_retryable());
    assert_eq!(t.current().await.unwrap().id().as_str(), github_id("good"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_stops_an_in_flight_bad_deployment_and_verifies_the_restored_revision() {
    use rollback_core::{Engine, Phase, Policy, WatchSpec};

    let g = Group::new("engine").await;
    let ids = g
        .seed(&[(github("v7"), "Succeeded"), (github("v8"), "InProgress")])
        .await;
    let _agent = g.agent(&[]).await;
    let t = g.target();
    let latency = ScriptedProbe::new("p99_latency_ms")
        .script_for(github_id("v8"), [82.0, 131.0])
        .script_for(github_id("v7"), [41.0]);
    let policy = Policy::from_yaml(
        "interval: 100ms\nbake_time: 1m\nverify: 300ms\nrollback_timeout: 30s\n\
         probes: [{name: p99_latency_ms, success: '<= 100', failure: '> 100'}]",
    )
    .unwrap();
    let audit = MemoryAuditSink::new();
    let engine = Engine::builder().audit(Arc::new(audit.clone())).build();
    let mut handle = engine
        .watch(WatchSpec::new(
            policy,
            Arc::new(t.clone()),
            Arc::new(t.rollbacker()),
            vec![Arc::new(latency)],
        ))
        .await
        .unwrap();
    let end = tokio::time::timeout(Duration::from_secs(60), handle.finished())
        .await
        .unwrap_or_else(|_| panic!("the watch did not end\n{}", g.moto.stderr_tail()));
    let log: Vec<String> = audit.records().iter().map(|r| r.describe()).collect();
    assert!(
        matches!(&end, Phase::RolledBack { to, .. } if to.as_str() == github_id("v7")),
        "{end:?}\n{log:#?}"
    );
    // v8 was still deploying: CodeDeploy stopped it and rolled back itself.
    let stopped = g.deployment(&ids[1]).await;
    assert_eq!(stopped.status(), Some(&DeploymentStatus::Stopped));
    assert!(
        stopped
            .rollback_info()
            .and_then(|i| i.rollback_deployment_id())
            .is_some()
    );
    assert!(
        log.iter()
            .any(|l| l.contains("CodeDeploy's rollback deployment")),
        "{log:#?}"
    );
    assert_eq!(
        summary(&t).await,
        vec![
            (github_id("v7"), RevisionHealth::Good, "Succeeded".into()),
            (github_id("v8"), RevisionHealth::Bad, "Stopped".into()),
        ]
    );
}
