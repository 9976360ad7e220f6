//! Offline tests over aws-smithy-mocks: pagination, batching, the history
//! window and the mapping of AWS errors, through the SDK's own
//! deserialisation of error responses.

mod mock;

use std::sync::Arc;

use aws_sdk_codedeploy::Client;
use aws_sdk_codedeploy::config::retry::RetryConfig;
use aws_sdk_codedeploy::operation::get_deployment_group::GetDeploymentGroupOutput;
use aws_sdk_codedeploy::operation::list_deployments::ListDeploymentsOutput;
use aws_sdk_codedeploy::primitives::DateTime;
use aws_smithy_mocks::mock;
use mock::{aws_error, batch_rule, client, list_rule, target};
use rollback_aws::{CodeDeployTarget, attributes};
use rollback_core::time::ManualClock;
use rollback_core::{ErrorKind, RevisionHealth, Target, Timestamp};

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

#[tokio::test]
async fn a_plain_http_status_means_what_it_means_everywhere() {
    for status in [
        400, 401, 403, 404, 408, 409, 410, 413, 418, 422, 425, 429, 500, 501, 502, 503, 504,
    ] {
        let plain = mock!(Client::list_deployments)
            .sequence()
            .http_status(status, None)
            .repeatedly()
            .build();
        let e = target(client(&[&plain])).history().await.unwrap_err();
        assert_eq!(
            e.kind(),
            rollback_core::http::error_kind(status),
            "HTTP {status}: {}",
            e.full_message()
        );
    }
}

#[tokio::test]
async fn the_history_window_is_measured_on_the_targets_clock() {
    let now = Timestamp::from_millis(1_795_780_800_000);
    let starts: Arc<std::sync::Mutex<Vec<Option<DateTime>>>> = Arc::default();
    let seen = starts.clone();
    let list = mock!(Client::list_deployments).then_compute_output(move |req| {
        let start = req.create_time_range().and_then(|r| r.start()).copied();
        seen.lock().unwrap().push(start);
        ListDeploymentsOutput::builder().build()
    });
    let found = mock!(Client::get_deployment_group)
        .then_output(|| GetDeploymentGroupOutput::builder().build());
    let clock = ManualClock::at(now);
    let t = CodeDeployTarget::builder(client(&[&list, &found]))
        .application("bank")
        .deployment_group("payments")
        .history_window(std::time::Duration::from_secs(3600))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    assert!(t.history().await.unwrap().is_empty());
    // A day later, the window has moved by a day.
    clock.advance(std::time::Duration::from_secs(86_400));
    assert!(t.history().await.unwrap().is_empty());
    let hour_before = |t: Timestamp| Some(DateTime::from_millis(t.as_millis() - 3_600_000));
    assert_eq!(
        *starts.lock().unwrap(),
        [
            hour_before(now),
            hour_before(now.plus(std::time::Duration::from_secs(86_400)))
        ]
    );
}
