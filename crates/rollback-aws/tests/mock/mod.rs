//! Offline CodeDeploy over aws-smithy-mocks, shared by the mocked tests:
//! a deployment group of `n` deployments served page by page.

#![allow(dead_code)]

use aws_sdk_codedeploy::Client;
use aws_sdk_codedeploy::config::retry::RetryConfig;
use aws_sdk_codedeploy::operation::batch_get_deployments::{
    BatchGetDeploymentsError, BatchGetDeploymentsOutput,
};
use aws_sdk_codedeploy::operation::list_deployments::ListDeploymentsOutput;
use aws_sdk_codedeploy::primitives::DateTime;
use aws_sdk_codedeploy::types::{
    DeploymentInfo, DeploymentStatus, GitHubLocation, RevisionLocation, RevisionLocationType,
};
use aws_smithy_mocks::{MockResponse, Rule, RuleMode, mock, mock_client};
use rollback_aws::CodeDeployTarget;
use rollback_core::{Actor, RevisionRef, RollbackRequest, Timestamp};

pub(crate) fn client(rules: &[&Rule]) -> Client {
    mock_client!(aws_sdk_codedeploy, RuleMode::MatchAny, rules, |c| c
        .retry_config(RetryConfig::disabled()))
}

pub(crate) fn target(client: Client) -> CodeDeployTarget {
    CodeDeployTarget::builder(client)
        .application("bank")
        .deployment_group("payments")
        .poll_interval(std::time::Duration::from_millis(5))
        .build()
        .unwrap()
}

/// Deployment `d<i>`, created at second `i`, of commit `c<i % 7>`; the
/// newest (`d<n-1>`) is in progress, the others succeeded.
pub(crate) fn deployment(i: usize, n: usize) -> DeploymentInfo {
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
pub(crate) fn list_rule(n: usize, page: usize) -> Rule {
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
pub(crate) fn batch_rule(n: usize) -> Rule {
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
pub(crate) fn aws_error(code: &str, message: &str) -> String {
    serde_json::json!({"__type": code, "message": message}).to_string()
}

pub(crate) fn request(to: RevisionRef) -> RollbackRequest {
    RollbackRequest::new(to, Timestamp::from_millis(1_795_780_800_000))
        .reason("latency SLO breached")
        .actor(Actor::engine())
}

/// d2 (c2) in progress, d1 (c1) succeeded, d0 (c0) succeeded.
pub(crate) fn in_flight_rules() -> (Rule, Rule) {
    (list_rule(3, 100), batch_rule(3))
}
