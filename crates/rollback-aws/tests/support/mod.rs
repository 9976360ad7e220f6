//! The extended moto CodeDeploy server ([`rollback_aws::local`]) for the
//! tests, and helpers to seed deployment groups.
//!
//! One server per test process, on a free loopback port. It exits when this
//! process does (it watches its stdin, which only this process holds).

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_sdk_codedeploy::Client;
use aws_sdk_codedeploy::types::{
    ComputePlatform, DeploymentInfo, GitHubLocation, RevisionLocation, RevisionLocationType,
};
use rollback_aws::local::{Agent, LocalCodeDeploy, venv_or};
use rollback_aws::{CodeDeployTarget, attributes};
use rollback_core::{
    Actor, RevisionHealth, RevisionId, RevisionRef, RollbackRequest, Target, TargetExt, Timestamp,
};

pub(crate) mod lambda;

/// ListDeployments page size of the test server: small, so that tests page.
pub(crate) const PAGE_SIZE: usize = 10;

static MOTO: OnceLock<Result<Arc<LocalCodeDeploy>, String>> = OnceLock::new();

/// The server of this test process, started on first use. Fails the test
/// (never skips it) when the server cannot start.
pub(crate) fn moto() -> &'static Arc<LocalCodeDeploy> {
    let started = MOTO.get_or_init(|| {
        let venv = venv_or(concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv"));
        LocalCodeDeploy::start(&venv, Some(PAGE_SIZE))
            .map(Arc::new)
            .map_err(|e| {
                format!(
                    "{}\n(the tests need moto[server]: run ./scripts/test, which installs it)",
                    e.full_message()
                )
            })
    });
    match started {
        Ok(m) => m,
        Err(e) => panic!("{e}"),
    }
}

/// When the tests' rollbacks were decided, by the engine's clock.
pub(crate) const DECIDED: Timestamp = Timestamp::from_millis(1_795_780_800_000);

/// The tests' rollback to `to`: decided at [`DECIDED`], by the engine.
pub(crate) fn request(to: RevisionRef) -> RollbackRequest {
    RollbackRequest::new(to, DECIDED)
        .reason("p99 latency 180ms breached the 100ms SLO")
        .actor(Actor::engine())
}

/// The revision of `target`'s history with this id.
pub(crate) async fn revision(target: &dyn Target, id: &str) -> RevisionRef {
    target
        .find(&RevisionId::new(id))
        .await
        .unwrap_or_else(|e| panic!("{}", e.full_message()))
        .revision
}

/// (revision id, health, status of its newest deployment), newest first.
pub(crate) async fn summary(target: &dyn Target) -> Vec<(String, RevisionHealth, String)> {
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

static GROUPS: AtomicUsize = AtomicUsize::new(0);

/// A GitHub revision of the test repository.
pub(crate) fn github(commit: &str) -> RevisionLocation {
    RevisionLocation::builder()
        .revision_type(RevisionLocationType::GitHub)
        .git_hub_location(
            GitHubLocation::builder()
                .repository("bank/payments")
                .commit_id(commit)
                .build(),
        )
        .build()
}

/// The revision id of a GitHub commit of the test repository.
pub(crate) fn github_id(commit: &str) -> String {
    format!("github:bank/payments@{commit}")
}

/// A fresh application with one deployment group on the shared server.
pub(crate) struct Group {
    pub moto: &'static Arc<LocalCodeDeploy>,
    pub client: Client,
    pub app: String,
    pub name: String,
}

impl Group {
    pub(crate) async fn new(prefix: &str) -> Group {
        Group::on(prefix, None, None).await
    }

    /// A fresh application of `platform` (CodeDeploy's default, Server,
    /// when `None`) whose group deploys with `config`.
    pub(crate) async fn on(
        prefix: &str,
        platform: Option<ComputePlatform>,
        config: Option<&str>,
    ) -> Group {
        let moto = moto();
        let client = moto.client();
        let n = GROUPS.fetch_add(1, Ordering::SeqCst);
        let app = format!("{prefix}-{}-{n}", std::process::id());
        let name = "payments".to_owned();
        client
            .create_application()
            .application_name(&app)
            .set_compute_platform(platform)
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateApplication: {e:?}\n{}", moto.stderr_tail()));
        client
            .create_deployment_group()
            .application_name(&app)
            .deployment_group_name(&name)
            .service_role_arn("arn:aws:iam::123456789012:role/CodeDeployServiceRole")
            .set_deployment_config_name(config.map(str::to_owned))
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateDeploymentGroup: {e:?}\n{}", moto.stderr_tail()));
        Group {
            moto,
            client,
            app,
            name,
        }
    }

    /// The target under test: fast polling, short stop timeout.
    pub(crate) fn target(&self) -> CodeDeployTarget {
        self.target_builder().build().unwrap()
    }

    pub(crate) fn target_builder(&self) -> rollback_aws::CodeDeployTargetBuilder {
        CodeDeployTarget::builder(self.client.clone())
            .application(&self.app)
            .deployment_group(&self.name)
            .poll_interval(Duration::from_millis(50))
            .stop_timeout(Duration::from_secs(10))
    }

    /// Create a deployment of `revision`; it stays `Created`.
    pub(crate) async fn deploy(&self, revision: RevisionLocation) -> String {
        self.client
            .create_deployment()
            .application_name(&self.app)
            .deployment_group_name(&self.name)
            .revision(revision)
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateDeployment: {e:?}\n{}", self.moto.stderr_tail()))
            .deployment_id
            .unwrap()
    }

    pub(crate) async fn set_status(&self, id: &str, status: &str) {
        self.moto
            .set_status(id, status)
            .await
            .unwrap_or_else(|e| panic!("{}\n{}", e.full_message(), self.moto.stderr_tail()));
    }

    pub(crate) async fn fail(&self, id: &str, code: &str, message: &str) {
        self.moto.fail_deployment(id, code, message).await.unwrap();
    }

    /// Deploy each revision in turn (oldest first), moving each to its status
    /// through `InProgress`. Returns the deployment ids, oldest first.
    pub(crate) async fn seed(&self, steps: &[(RevisionLocation, &str)]) -> Vec<String> {
        let mut ids = Vec::new();
        for (revision, status) in steps {
            let id = self.deploy(revision.clone()).await;
            if *status != "Created" {
                self.set_status(&id, "InProgress").await;
                self.set_status(&id, status).await;
            }
            ids.push(id);
        }
        ids
    }

    pub(crate) async fn deployment(&self, id: &str) -> DeploymentInfo {
        self.client
            .get_deployment()
            .deployment_id(id)
            .send()
            .await
            .unwrap()
            .deployment_info
            .unwrap()
    }

    /// Every deployment of the group, oldest first (all pages).
    pub(crate) async fn deployments(&self) -> Vec<DeploymentInfo> {
        let mut ids = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_deployments()
                .application_name(&self.app)
                .deployment_group_name(&self.name)
                .set_next_token(token)
                .send()
                .await
                .unwrap_or_else(|e| panic!("ListDeployments: {e:?}\n{}", self.moto.stderr_tail()));
            ids.extend(page.deployments().iter().cloned());
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        let mut all = Vec::new();
        for chunk in ids.chunks(25) {
            let got = self
                .client
                .batch_get_deployments()
                .set_deployment_ids(Some(chunk.to_vec()))
                .send()
                .await
                .unwrap();
            all.extend(got.deployments_info().iter().cloned());
        }
        all.sort_by_key(|d| d.create_time().and_then(|t| t.to_millis().ok()));
        all
    }

    /// Play the CodeDeploy agent for deployments created from now on.
    pub(crate) async fn agent(&self, failing: &[&str]) -> Agent {
        self.moto
            .agent(&self.app, &self.name, failing, Duration::from_millis(100))
            .await
            .unwrap()
    }
}
