//! Offline tests over aws-smithy-mocks: pagination, batching and the mapping
//! of AWS errors, through the SDK's own deserialisation of error responses.

use std::sync::Arc;

use aws_sdk_codedeploy::Client;
use aws_sdk_codedeploy::config::retry::RetryConfig;
use aws_sdk_codedeploy::operation::batch_get_deployments::{
    BatchGetDeploymentsError, BatchGetDeploymentsOutput,
};
use aws_sdk_codedeploy::operation::create_deployment::CreateDeploymentOutput;
use aws_sdk_codedeploy::operation::get_deployment_group::GetDeploymentGroupOutput;
use aws_sdk_codedeploy::operation::list_deployments::ListDeploymentsOutput;
use aws_sdk_codedeploy::primitives::DateTime;
use aws_sdk_codedeploy::types::{
    DeploymentInfo, DeploymentStatus, GitHubLocation, RevisionLocation, RevisionLocationType,
};
use aws_smithy_mocks::{MockResponse, Rule, RuleMode, mock, mock_client};
use rollback_aws::{CodeDeployTarget, attributes};
use rollback_core::{
    Actor, ErrorKind, RevisionHealth, RevisionRef, RollbackRequest, Rollbacker, Target, Timestamp,
};

fn client(rules: &[&Rule]) -> Client {
    mock_client!(aws_sdk_codedeploy, RuleMode::MatchAny, rules, |c| c
        .retry_config(RetryConfig::disabled()))
}

fn target(client: Client) -> CodeDeployTarget {
    CodeDeployTarget::builder(client)
        .application("bank")
        .deployment_group("payments")
        .poll_interval(std::time::Duration::from_millis(5))
        .build()
        .unwrap()
}

/// Deployment `d<i>`, created at second `i`, of commit `c<i % 7>`; the
/// newest (`d<n-1>`) is in progress, the others succeeded.
fn deployment(i: usize, n: usize) -> DeploymentInfo {
    let status = if i + 1 == n {
        DeploymentStatus::InProgress
    } else {
        DeploymentStatus::Succeeded
    };
    DeploymentInfo::builder()
        .deployment_id(format!("d{i}"))
        .status(status)
        .create_time(DateTime::from_secs(1_700_000_000 + i as i64))
        .revision(
            RevisionLocation::builder()
                .revision_type(RevisionLocationType::GitHub)
                .git_hub_location(
                    GitHubLocation::builder()
                        .repository("bank/payments")
                        .commit_id(format!("c{}", i % 7))
                        .build(),
                )
                .build(),
        )
        .build()
}

/// A ListDeployments rule serving `n` ids newest first, `page` a page.
fn list_rule(n: usize, page: usize) -> Rule {
    mock!(Client::list_deployments).then_compute_output(move |req| {
        let start: usize = req
            .next_token()
            .and_then(|t| t.strip_prefix("p"))
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let ids: Vec<String> = (0..n)
            .rev()
            .map(|i| format!("d{i}"))
            .skip(start)
            .take(page)
            .collect();
        let mut out = ListDeploymentsOutput::builder().set_deployments(Some(ids));
        if start + page < n {
            out = out.next_token(format!("p{}", start + page));
        }
        out.build()
    })
}

/// A BatchGetDeployments rule that refuses more than 25 ids, as CodeDeploy does.
fn batch_rule(n: usize) -> Rule {
    mock!(Client::batch_get_deployments).then_compute_response(move |req| {
        if req.deployment_ids().len() > 25 {
            return MockResponse::Error(BatchGetDeploymentsError::generic(
                aws_sdk_codedeploy::error::ErrorMetadata::builder()
                    .code("BatchLimitExceededException")
                    .build(),
            ));
        }
        let infos = req
            .deployment_ids()
            .iter()
            .filter_map(|id| id.strip_prefix("d").and_then(|i| i.parse::<usize>().ok()))
            .map(|i| deployment(i, n))
            .collect();
        MockResponse::Output(
            BatchGetDeploymentsOutput::builder()
                .set_deployments_info(Some(infos))
                .build(),
        )
    })
}

/// The body of an AWS JSON error response.
fn aws_error(code: &str, message: &str) -> String {
    serde_json::json!({"__type": code, "message": message}).to_string()
}

fn request(to: RevisionRef) -> RollbackRequest {
    RollbackRequest::new(to, Timestamp::from_millis(1_795_780_800_000))
        .reason("latency SLO breached")
        .actor(Actor::engine())
}

#[tokio::test]
async fn history_reads_every_page_and_asks_for_25_deployments_at_a_time() {
    let n = 45;
    let list = list_rule(n, 20);
    let batch = batch_rule(n);
    let t = target(client(&[&list, &batch]));

    let history = t.history().await.unwrap();
    assert_eq!(list.num_calls(), 3, "45 ids at 20 a page are three pages");
    assert_eq!(batch.num_calls(), 2, "45 deployments are fetched 25 and 20");

    // d44 (c2, in progress) is newest; every commit appears once, in the
    // order of its newest deployment: d44 c2, d43 c1, d42 c0, d41 c6, …
    let commits: Vec<_> = history
        .iter()
        .map(|e| e.revision.attributes()[attributes::GITHUB_COMMIT].clone())
        .collect();
    assert_eq!(commits, ["c2", "c1", "c0", "c6", "c5", "c4", "c3"]);
    // c2's newest deployment is in progress; an older one (d37) succeeded.
    assert_eq!(history[0].health, RevisionHealth::Good);
    assert_eq!(
        history[0].revision.attributes()[attributes::HEALTH_FROM],
        "d37"
    );
    assert_eq!(
        history[0].revision.attributes()[attributes::LATEST_STATUS],
        "InProgress"
    );
    assert_eq!(
        history[0].revision.attributes()[attributes::DEPLOYMENT_COUNT],
        "7"
    );
    // the oldest deployment, d0 (c0), was only on the last page
    assert_eq!(
        history[2].revision.attributes()[attributes::DEPLOYMENT_COUNT],
        "7"
    );
    assert_eq!(t.current().await.unwrap().id(), history[0].revision.id());
}

#[tokio::test]
async fn a_page_token_that_comes_back_is_an_error_not_an_endless_loop() {
    let list = mock!(Client::list_deployments).then_output(|| {
        ListDeploymentsOutput::builder()
            .deployments("d1")
            .next_token("again")
            .build()
    });
    let t = target(client(&[&list]));
    let e = t.history().await.unwrap_err();
    assert_eq!(list.num_calls(), 2);
    assert!(e.message().contains("came back twice"), "{}", e.message());
}

#[tokio::test]
async fn throttling_and_server_errors_are_retryable() {
    let throttled = mock!(Client::list_deployments)
        .sequence()
        .http_status(400, Some(aws_error("ThrottlingException", "Rate exceeded")))
        .repeatedly()
        .build();
    let e = target(client(&[&throttled])).history().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient);
    assert!(e.is_retryable());
    assert!(
        e.message().contains("ThrottlingException: Rate exceeded"),
        "{}",
        e.message()
    );
    assert!(
        e.message().contains("deployment group bank/payments"),
        "{}",
        e.message()
    );

    let unavailable = mock!(Client::list_deployments)
        .sequence()
        .http_status(503, None)
        .repeatedly()
        .build();
    let e = target(client(&[&unavailable])).history().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient, "{}", e.full_message());
}

#[tokio::test]
async fn access_denial_and_missing_groups_are_final() {
    let denied = mock!(Client::list_deployments)
        .sequence()
        .http_status(
            400,
            Some(aws_error(
                "AccessDeniedException",
                "not authorized to perform codedeploy:ListDeployments",
            )),
        )
        .repeatedly()
        .build();
    let e = target(client(&[&denied])).history().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized);
    assert!(!e.is_retryable());
    assert!(
        e.message().contains("codedeploy:ListDeployments"),
        "{}",
        e.message()
    );

    // CodeDeploy lists nothing for a missing group; the target asks for the group.
    let empty =
        mock!(Client::list_deployments).then_output(|| ListDeploymentsOutput::builder().build());
    let missing = mock!(Client::get_deployment_group)
        .sequence()
        .http_status(
            400,
            Some(aws_error(
                "DeploymentGroupDoesNotExistException",
                "No Deployment Group found for name: payments",
            )),
        )
        .repeatedly()
        .build();
    let t = target(client(&[&empty, &missing]));
    let e = t.history().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(!e.is_retryable());
    assert!(
        e.message()
            .contains("check the application and deployment group names"),
        "{}",
        e.message()
    );

    // An existing group without deployments has an empty history and no current revision.
    let found = mock!(Client::get_deployment_group)
        .then_output(|| GetDeploymentGroupOutput::builder().build());
    let t = target(client(&[&empty, &found]));
    assert!(t.history().await.unwrap().is_empty());
    assert_eq!(t.current().await.unwrap_err().kind(), ErrorKind::NotFound);
}

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

/// A client of an unreachable endpoint with these credentials (or none).
fn client_with_credentials(provider: Option<FailingCredentials>) -> Client {
    let mut conf = aws_sdk_codedeploy::Config::builder()
        .behavior_version(aws_sdk_codedeploy::config::BehaviorVersion::latest())
        .region(aws_sdk_codedeploy::config::Region::new("us-east-1"))
        .endpoint_url("http://127.0.0.1:9")
        .retry_config(RetryConfig::disabled());
    if let Some(p) = provider {
        conf = conf.credentials_provider(p);
    }
    Client::from_conf(conf.build())
}

#[derive(Debug)]
struct FailingCredentials(fn() -> aws_credential_types::provider::error::CredentialsError);

impl aws_credential_types::provider::ProvideCredentials for FailingCredentials {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::ready(Err((self.0)()))
    }
}

#[tokio::test]
async fn missing_credentials_are_unauthorized_and_failing_providers_transient() {
    use aws_credential_types::provider::error::CredentialsError;

    let e = target(client_with_credentials(None))
        .history()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{}", e.full_message());
    assert!(
        e.message().contains("no AWS credentials could be loaded"),
        "{}",
        e.message()
    );

    let none =
        FailingCredentials(|| CredentialsError::not_loaded("no credentials in the environment"));
    let e = target(client_with_credentials(Some(none)))
        .history()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{}", e.full_message());

    let slow = FailingCredentials(|| {
        CredentialsError::provider_timed_out(std::time::Duration::from_secs(5))
    });
    let e = target(client_with_credentials(Some(slow)))
        .history()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient, "{}", e.full_message());
    assert!(e.is_retryable());
}

#[tokio::test]
async fn a_history_window_asks_codedeploy_for_recent_deployments_only() {
    let hour_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - 3600;
    let list = mock!(Client::list_deployments)
        .match_requests(move |req| {
            req.create_time_range()
                .and_then(|r| r.start())
                .is_some_and(|start| (start.secs() - hour_ago).abs() < 60)
        })
        .then_output(|| ListDeploymentsOutput::builder().build());
    let found = mock!(Client::get_deployment_group)
        .then_output(|| GetDeploymentGroupOutput::builder().build());
    let t = CodeDeployTarget::builder(client(&[&list, &found]))
        .application("bank")
        .deployment_group("payments")
        .history_window(std::time::Duration::from_secs(3600))
        .build()
        .unwrap();
    let e = t.current().await.unwrap_err();
    assert_eq!(list.num_calls(), 1);
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(
        e.message().contains("history window of 1h"),
        "{}",
        e.message()
    );

    let zero = CodeDeployTarget::builder(client(&[]))
        .application("bank")
        .deployment_group("payments")
        .history_window(std::time::Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(
        zero.message().starts_with("history_window:"),
        "{}",
        zero.message()
    );
}

/// d2 (c2) in progress, d1 (c1) succeeded, d0 (c0) succeeded.
fn in_flight_rules() -> (Rule, Rule) {
    (list_rule(3, 100), batch_rule(3))
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
