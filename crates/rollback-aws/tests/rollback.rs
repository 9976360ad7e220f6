//! Rollbacks of a CodeDeploy deployment group against moto's CodeDeploy
//! server, extended with StopDeployment and deployment statuses (see
//! `support/moto_codedeploy_ext.py`): stopping a deployment in flight,
//! deploying again, waiting, a lost answer, and the engine end to end.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_codedeploy::types::{DeploymentCreator, DeploymentStatus};
use rollback_aws::{DeploymentProgress, attributes};
use rollback_core::audit::MemoryAuditSink;
use rollback_core::memory::ScriptedProbe;
use rollback_core::{
    Convergence, DryRun, RevisionHealth, RollbackOutcome, RollbackRequest, Rollbacker, Target,
};
use support::{DECIDED, Group, github, github_id, request, revision, summary};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_whose_answer_was_lost_is_found_not_deployed_again() {
    let g = Group::new("lost").await;
    g.seed(&[(github("good"), "Succeeded"), (github("bad"), "Succeeded")])
        .await;
    let t = g.target();
    let good = revision(&t, &github_id("good")).await;

    // CreateDeployment takes effect, but its answer never arrives.
    g.moto
        .lose_next_answer("CreateDeployment", &g.app)
        .await
        .unwrap();
    let e = t
        .rollbacker()
        .rollback(&request(good.clone()))
        .await
        .unwrap_err();
    assert!(e.is_retryable(), "{}", e.full_message());
    let ours = |ds: Vec<aws_sdk_codedeploy::types::DeploymentInfo>| -> Vec<String> {
        ds.into_iter()
            .filter(|d| d.description().is_some_and(|t| t.starts_with("Rollback")))
            .map(|d| d.deployment_id().unwrap_or_default().to_owned())
            .collect()
    };
    let made = ours(g.deployments().await);
    assert_eq!(made.len(), 1, "{made:?}");
    // It fails before the engine asks again.
    g.fail(&made[0], "SCRIPT_FAILED", "ApplicationStart failed")
        .await;

    // Asked again with the same decision by a new rollbacker (a restart):
    // it finds its deployment, makes no second one, and follows it.
    let creates = g.moto.calls("CreateDeployment").await.unwrap();
    let r = t.rollbacker();
    let again = r.rollback(&request(good.clone())).await.unwrap();
    assert!(
        matches!(&again, RollbackOutcome::AlreadyAt { detail } if detail.contains(&made[0])),
        "{again:?}"
    );
    assert_eq!(g.moto.calls("CreateDeployment").await.unwrap(), creates);
    assert_eq!(ours(g.deployments().await), made);
    match r
        .wait_converged(good.id(), Duration::from_secs(5))
        .await
        .unwrap()
    {
        Convergence::Failed { detail } => {
            assert!(detail.contains("ApplicationStart failed"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
    // Another decision deploys again.
    let later = RollbackRequest::new(good, DECIDED.plus(Duration::from_secs(60)));
    assert!(matches!(
        r.rollback(&later).await.unwrap(),
        RollbackOutcome::RolledBack { .. }
    ));
    assert_eq!(ours(g.deployments().await).len(), 2);
}
