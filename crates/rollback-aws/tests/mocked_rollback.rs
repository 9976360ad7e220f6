//! Offline rollbacks over aws-smithy-mocks: races with CodeDeploy (a
//! deployment that completes before it is stopped, a rollback deployment
//! that never appears), refusals, and waits that never end.

mod mock;

use std::sync::Arc;

use aws_sdk_codedeploy::Client;
use aws_sdk_codedeploy::operation::batch_get_deployments::BatchGetDeploymentsOutput;
use aws_sdk_codedeploy::operation::create_deployment::CreateDeploymentOutput;
use aws_sdk_codedeploy::operation::list_deployments::ListDeploymentsOutput;
use aws_sdk_codedeploy::types::DeploymentStatus;
use aws_smithy_mocks::mock;
use mock::{
    aws_error, batch_rule, client, deployment, in_flight_rules, list_rule, request, target,
};
use rollback_aws::{CodeDeployTarget, attributes};
use rollback_core::{ErrorKind, Rollbacker, Target};

#[tokio::test]
async fn a_deployment_that_completes_before_it_is_stopped_is_not_retried_forever() {
    // d2 (c2) is in progress, d1 (c1) succeeded: rolling back to c1 stops d2.
    let n = 3;
    let list = list_rule(n, 100);
    let batch = batch_rule(n);
    let completed = mock!(Client::stop_deployment)
        .sequence()
        .http_status(
            400,
            Some(aws_error(
                "DeploymentAlreadyCompletedException",
                "The deployment d2 has already completed",
            )),
        )
        .repeatedly()
        .build();
    let t = target(client(&[&list, &batch, &completed]));
    let history = t.history().await.unwrap();
    let to = history[1].revision.clone();
    assert_eq!(to.attributes()[attributes::GITHUB_COMMIT], "c1");
    let e = t.rollbacker().rollback(&request(to)).await.unwrap_err();
    assert_eq!(completed.num_calls(), 2, "one fresh plan, then the error");
    assert_eq!(e.kind(), ErrorKind::Permanent);
    assert!(!e.is_retryable());
    assert!(
        e.message().contains("DeploymentAlreadyCompletedException"),
        "{}",
        e.message()
    );
}

#[tokio::test]
async fn invalid_revisions_and_busy_groups_map_to_their_kinds() {
    // d1 (c1) succeeded and is newest, d0 (c0) succeeded: rolling back to c0 creates a deployment.
    let deployments = Arc::new(vec![deployment(1, 3), deployment(0, 3)]);
    let list = mock!(Client::list_deployments).then_output(|| {
        ListDeploymentsOutput::builder()
            .deployments("d1")
            .deployments("d0")
            .build()
    });
    let ds = deployments.clone();
    let batch = mock!(Client::batch_get_deployments).then_output(move || {
        BatchGetDeploymentsOutput::builder()
            .set_deployments_info(Some(ds.to_vec()))
            .build()
    });
    let create = mock!(Client::create_deployment)
        .sequence()
        .http_status(
            400,
            Some(aws_error(
                "InvalidRevisionException",
                "The revision is invalid",
            )),
        )
        .http_status(
            400,
            Some(aws_error(
                "DeploymentLimitExceededException",
                "The Deployment Group already has an active Deployment",
            )),
        )
        .output(|| {
            CreateDeploymentOutput::builder()
                .deployment_id("d9")
                .build()
        })
        .build();
    let t = target(client(&[&list, &batch, &create]));
    let to = t.history().await.unwrap()[1].revision.clone();
    let r = t.rollbacker();

    let e = r.rollback(&request(to.clone())).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(!e.is_retryable());

    let e = r.rollback(&request(to.clone())).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert!(e.is_retryable(), "the active deployment will complete");

    let done = r.rollback(&request(to)).await.unwrap();
    assert!(
        done.detail().contains("created deployment d9"),
        "{}",
        done.detail()
    );
    assert!(
        done.detail().contains("reverting deployment d1"),
        "{}",
        done.detail()
    );
    assert_eq!(create.num_calls(), 3);
}

#[tokio::test]
async fn when_codedeploy_stops_without_rolling_back_the_rollbacker_deploys_itself() {
    use aws_sdk_codedeploy::operation::get_deployment::GetDeploymentOutput;
    use aws_sdk_codedeploy::operation::stop_deployment::StopDeploymentOutput;
    use aws_sdk_codedeploy::types::{RollbackInfo, StopStatus};

    let (list, batch) = in_flight_rules();
    let stop = mock!(Client::stop_deployment)
        .match_requests(|req| {
            req.deployment_id() == Some("d2") && req.auto_rollback_enabled() == Some(true)
        })
        .then_output(|| {
            StopDeploymentOutput::builder()
                .status(StopStatus::Succeeded)
                .build()
        });
    let stopped = mock!(Client::get_deployment)
        .match_requests(|req| req.deployment_id() == Some("d2"))
        .then_output(|| {
            let mut d = deployment(2, 3);
            d.status = Some(DeploymentStatus::Stopped);
            d.rollback_info = Some(
                RollbackInfo::builder()
                    .rollback_message(
                        "Automatic rollback was not performed: no last successful revision",
                    )
                    .build(),
            );
            GetDeploymentOutput::builder().deployment_info(d).build()
        });
    let create = mock!(Client::create_deployment)
        .match_requests(|req| {
            req.description().is_some_and(|d| {
                d.starts_with("Rollback of deployment d2 (bank/payments@c2) to bank/payments@c1")
            })
        })
        .then_output(|| {
            CreateDeploymentOutput::builder()
                .deployment_id("d3")
                .build()
        });
    let t = target(client(&[&list, &batch, &stop, &stopped, &create]));
    let to = t.history().await.unwrap()[1].revision.clone();
    let done = t.rollbacker().rollback(&request(to)).await.unwrap();
    assert_eq!((stop.num_calls(), create.num_calls()), (1, 1));
    assert!(
        done.detail().contains("created deployment d3"),
        "{}",
        done.detail()
    );
}

#[tokio::test]
async fn a_rollback_deployment_that_never_appears_is_a_retryable_error() {
    use aws_sdk_codedeploy::operation::get_deployment::GetDeploymentOutput;
    use aws_sdk_codedeploy::operation::stop_deployment::StopDeploymentOutput;
    use aws_sdk_codedeploy::types::StopStatus;

    let (list, batch) = in_flight_rules();
    let stop = mock!(Client::stop_deployment).then_output(|| {
        StopDeploymentOutput::builder()
            .status(StopStatus::Pending)
            .build()
    });
    let still_going = mock!(Client::get_deployment).then_output(|| {
        GetDeploymentOutput::builder()
            .deployment_info(deployment(2, 3))
            .build()
    });
    let create = mock!(Client::create_deployment).then_output(|| {
        CreateDeploymentOutput::builder()
            .deployment_id("d3")
            .build()
    });
    let t = CodeDeployTarget::builder(client(&[&list, &batch, &stop, &still_going, &create]))
        .application("bank")
        .deployment_group("payments")
        .poll_interval(std::time::Duration::from_millis(10))
        .stop_timeout(std::time::Duration::from_millis(100))
        .build()
        .unwrap();
    let to = t.history().await.unwrap()[1].revision.clone();
    let e = t.rollbacker().rollback(&request(to)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient);
    assert!(
        e.message().contains("named no rollback deployment"),
        "{}",
        e.message()
    );
    assert!(still_going.num_calls() >= 2);
    assert_eq!(
        create.num_calls(),
        0,
        "nothing is deployed behind CodeDeploy's back"
    );
}

#[tokio::test]
async fn endless_timeouts_do_not_overflow() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use aws_sdk_codedeploy::operation::get_deployment::GetDeploymentOutput;
    use aws_sdk_codedeploy::operation::stop_deployment::StopDeploymentOutput;
    use aws_sdk_codedeploy::types::{RollbackInfo, StopStatus};

    // d2 (c2) in flight is stopped; CodeDeploy names its rollback d3 (c1)
    // on the second read, and d3 succeeds on its second read.
    let (list, batch) = in_flight_rules();
    let stop = mock!(Client::stop_deployment).then_output(|| {
        StopDeploymentOutput::builder()
            .status(StopStatus::Pending)
            .build()
    });
    let reads = Arc::new(AtomicUsize::new(0));
    let seen = reads.clone();
    let get = mock!(Client::get_deployment).then_compute_output(move |req| {
        let n = seen.fetch_add(1, Ordering::SeqCst);
        let d = match req.deployment_id() {
            Some("d2") => {
                let mut d = deployment(2, 3);
                if n > 0 {
                    d.status = Some(DeploymentStatus::Stopped);
                    d.rollback_info =
                        Some(RollbackInfo::builder().rollback_deployment_id("d3").build());
                }
                d
            }
            _ => {
                let mut d = deployment(1, 3);
                d.deployment_id = Some("d3".into());
                d.status = Some(if n > 3 {
                    DeploymentStatus::Succeeded
                } else {
                    DeploymentStatus::InProgress
                });
                d
            }
        };
        GetDeploymentOutput::builder().deployment_info(d).build()
    });
    let t = CodeDeployTarget::builder(client(&[&list, &batch, &stop, &get]))
        .application("bank")
        .deployment_group("payments")
        .poll_interval(std::time::Duration::from_millis(5))
        .stop_timeout(std::time::Duration::MAX)
        .build()
        .unwrap();
    let to = t.history().await.unwrap()[1].revision.clone();
    let r = t.rollbacker();
    let done = r.rollback(&request(to.clone())).await.unwrap();
    assert!(
        done.detail()
            .contains("CodeDeploy's rollback deployment d3"),
        "{}",
        done.detail()
    );
    assert_eq!(
        r.wait_converged(to.id(), std::time::Duration::MAX)
            .await
            .unwrap(),
        rollback_core::Convergence::Converged
    );
    assert!(reads.load(Ordering::SeqCst) > 4);
}
