//! The CodeDeploy target against moto's CodeDeploy server, extended with
//! StopDeployment, deployment statuses and paging (see
//! `support/moto_codedeploy_ext.py`): the conformance suite, the history,
//! error mapping, and connecting from a configuration. Needs the test venv
//! (./scripts/test).

mod support;

use std::sync::Arc;

use aws_sdk_codedeploy::types::{
    AppSpecContent, BundleType, DeploymentStatus, RevisionLocation, RevisionLocationType,
    S3Location,
};
use rollback_aws::{CodeDeployConfig, CodeDeployTarget, attributes};
use rollback_core::policy::RetryPolicy;
use rollback_core::{
    ErrorKind, RevisionHealth, RevisionRecord, RevisionRef, Rollbacker, Target, conformance,
};
use sha2::Digest;
use support::{Group, PAGE_SIZE, github, github_id, request, revision, summary};

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
    let report = conformance::check_rollbacker(&t, &r)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", g.moto.stderr_tail()));
    for check in [
        "server_dry_run",
        "client_dry_run_changes_nothing",
        "wait_converged_reports_convergence",
        "repeated_rollback_is_already_at",
    ] {
        assert!(report.passed.contains(&check), "{report:?}");
    }
    assert_eq!(
        report.skipped,
        [("marks_read_back", "the target keeps no health marks")]
    );

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
async fn connect_applies_the_configuration_over_the_given_client() {
    let g = Group::new("connect").await;
    g.seed(&[(github("good"), "Succeeded"), (github("bad"), "Succeeded")])
        .await;
    // A client of an endpoint where nothing listens: the configuration's
    // endpoint wins over it.
    let elsewhere = aws_sdk_codedeploy::Client::from_conf(
        g.client
            .config()
            .to_builder()
            .endpoint_url("http://127.0.0.1:9")
            .build(),
    );
    let mut config: CodeDeployConfig = serde_json::from_value(serde_json::json!({
        "application": g.app,
        "deployment_group": g.name,
        "endpoint_url": g.moto.url(),
        "region": "us-east-1",
        "poll_interval": "50ms",
        "retry": {"max_attempts": 1},
    }))
    .unwrap();
    let t = CodeDeployTarget::connect(&config, Some(elsewhere.clone()))
        .await
        .unwrap_or_else(|e| panic!("{}", e.full_message()));
    assert_eq!(t.id().as_str(), format!("codedeploy:{}/payments", g.app));
    assert_eq!(t.current().await.unwrap().id().as_str(), github_id("bad"));
    conformance::rollbacker_serves_its_target(&t, &t.rollbacker())
        .await
        .unwrap();

    // Without the endpoint, the client's own is used, and fails at once
    // (no SDK retries: the configuration says one attempt).
    config.endpoint_url = None;
    config.retry = Some(RetryPolicy::NEVER);
    let t = CodeDeployTarget::connect(&config, Some(elsewhere))
        .await
        .unwrap();
    let e = t.history().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient, "{}", e.full_message());

    config.application = String::new();
    let e = CodeDeployTarget::connect(&config, Some(g.client.clone()))
        .await
        .unwrap_err();
    assert!(e.message().starts_with("application:"), "{}", e.message());
}
