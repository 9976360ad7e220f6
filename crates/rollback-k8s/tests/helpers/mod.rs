//! What the kmock test files share: a handle builder with fast retries, the
//! three-revision seed, rollback requests, and reads of the Deployment.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use rollback_core::policy::RetryPolicy;
use rollback_core::{
    Actor, DryRun, RevisionId, RevisionRecord, RevisionRef, RollbackRequest, Timestamp,
};
use rollback_k8s::{K8sDeployment, K8sDeploymentBuilder};
use serde_json::Value;

use crate::support::{self, KubeServer, Rev, Seed};

pub(crate) const NS: &str = "shop";

/// When the tests' rollbacks were decided.
pub(crate) const DECIDED_AT: Timestamp = Timestamp::from_millis(1_795_780_800_000);

pub(crate) fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(20),
    }
}

pub(crate) fn builder(server: &KubeServer, name: &str) -> K8sDeploymentBuilder {
    K8sDeployment::builder(server.client())
        .namespace(NS)
        .name(name)
        .retry(fast_retry())
        .poll_interval(Duration::from_millis(50))
}

/// web: revisions 1 (web:1, hash aaa), 2 (web:2, hash bbb), 3 (web:3, hash ccc, current).
pub(crate) fn three() -> Seed {
    Seed::new(
        "web",
        vec![
            Rev::new(1, "aaa", "web:1"),
            Rev::new(2, "bbb", "web:2"),
            Rev::new(3, "ccc", "web:3"),
        ],
    )
}

/// [`three`], seeded in namespace [`NS`].
pub(crate) async fn three_revisions(server: &KubeServer) -> Seed {
    let client = server.client();
    support::create_namespace(&client, NS).await;
    let seed = three();
    support::seed(&client, NS, &seed).await;
    seed
}

pub(crate) fn request(from: Option<&str>, to: &str, dry_run: DryRun) -> RollbackRequest {
    RollbackRequest::new(Arc::new(RevisionRecord::new(to)) as RevisionRef, DECIDED_AT)
        .from(from.map(RevisionId::from))
        .reason("test")
        .actor(Actor::new("test"))
        .dry_run(dry_run)
}

/// A string of the Deployment `name` in [`NS`], by JSON pointer; empty when absent.
pub(crate) async fn field(server: &KubeServer, name: &str, pointer: &str) -> String {
    let d = support::deployment_json(&server.client(), NS, name).await;
    d.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

pub(crate) async fn image(server: &KubeServer, name: &str) -> String {
    field(server, name, "/spec/template/spec/containers/0/image").await
}

pub(crate) async fn resource_version(server: &KubeServer, name: &str) -> String {
    field(server, name, "/metadata/resourceVersion").await
}

pub(crate) async fn patches(server: &KubeServer) -> Vec<String> {
    server
        .requests()
        .await
        .into_iter()
        .filter(|r| r.starts_with("PATCH"))
        .collect()
}
