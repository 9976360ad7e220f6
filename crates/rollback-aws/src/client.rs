//! The raw CodeDeploy calls one deployment group needs.

use std::collections::HashSet;

use aws_sdk_codedeploy::Client;
use aws_sdk_codedeploy::primitives::DateTime;
use aws_sdk_codedeploy::types::{ComputePlatform, DeploymentInfo, RevisionLocation, TimeRange};
use rollback_core::Timestamp;

use crate::error::ApiError;

/// `BatchGetDeployments` takes at most this many ids a call.
pub(crate) const BATCH_LIMIT: usize = 25;

/// A guard against a server that hands out the same page token forever.
const MAX_PAGES: usize = 100_000;

/// The CodeDeploy API of one deployment group.
#[derive(Debug, Clone)]
pub(crate) struct GroupApi {
    pub(crate) client: Client,
    pub(crate) application: String,
    pub(crate) group: String,
}

impl GroupApi {
    /// Every deployment id of the group created at `created_since` or later
    /// (all when `None`), all pages, in the order CodeDeploy lists them.
    pub(crate) async fn list_deployment_ids(
        &self,
        created_since: Option<Timestamp>,
    ) -> Result<Vec<String>, ApiError> {
        let mut ids = Vec::new();
        let mut seen_tokens = HashSet::new();
        let mut token: Option<String> = None;
        let range = created_since.map(|start| {
            TimeRange::builder()
                .start(DateTime::from_millis(start.as_millis()))
                .build()
        });
        for _ in 0..MAX_PAGES {
            let page = self
                .client
                .list_deployments()
                .application_name(&self.application)
                .deployment_group_name(&self.group)
                .set_next_token(token.clone())
                .set_create_time_range(range.clone())
                .send()
                .await
                .map_err(|e| ApiError::from_sdk("ListDeployments", e))?;
            ids.extend(page.deployments().iter().cloned());
            match page.next_token() {
                Some(next) if !next.is_empty() => {
                    if !seen_tokens.insert(next.to_owned()) {
                        return Err(ApiError::malformed(
                            "ListDeployments",
                            format!(
                                "the page token {next} came back twice; the listing would never end"
                            ),
                        ));
                    }
                    token = Some(next.to_owned());
                }
                _ => return Ok(ids),
            }
        }
        Err(ApiError::malformed(
            "ListDeployments",
            format!("more than {MAX_PAGES} pages of deployments"),
        ))
    }

    /// The deployments with these ids, fetched `BATCH_LIMIT` at a time.
    /// Ids CodeDeploy does not know are left out, as CodeDeploy does.
    pub(crate) async fn batch_get(&self, ids: &[String]) -> Result<Vec<DeploymentInfo>, ApiError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(BATCH_LIMIT) {
            let page = self
                .client
                .batch_get_deployments()
                .set_deployment_ids(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| ApiError::from_sdk("BatchGetDeployments", e))?;
            out.extend(page.deployments_info().iter().cloned());
        }
        Ok(out)
    }

    /// One deployment.
    pub(crate) async fn get(&self, id: &str) -> Result<DeploymentInfo, ApiError> {
        let out = self
            .client
            .get_deployment()
            .deployment_id(id)
            .send()
            .await
            .map_err(|e| ApiError::from_sdk("GetDeployment", e))?;
        out.deployment_info.ok_or_else(|| {
            ApiError::malformed(
                "GetDeployment",
                format!("no deploymentInfo for deployment {id}"),
            )
        })
    }

    /// The compute platform of the group's application, as CodeDeploy names
    /// it; fails when the application or the deployment group does not exist.
    pub(crate) async fn check_group(&self) -> Result<Option<ComputePlatform>, ApiError> {
        let out = self
            .client
            .get_deployment_group()
            .application_name(&self.application)
            .deployment_group_name(&self.group)
            .send()
            .await
            .map_err(|e| ApiError::from_sdk("GetDeploymentGroup", e))?;
        Ok(out.deployment_group_info.and_then(|g| g.compute_platform))
    }

    /// Stop a deployment; with `auto_rollback`, CodeDeploy redeploys the
    /// group's last successful revision. Returns CodeDeploy's status message.
    pub(crate) async fn stop(&self, id: &str, auto_rollback: bool) -> Result<String, ApiError> {
        let out = self
            .client
            .stop_deployment()
            .deployment_id(id)
            .auto_rollback_enabled(auto_rollback)
            .send()
            .await
            .map_err(|e| ApiError::from_sdk("StopDeployment", e))?;
        let status = out
            .status()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default();
        Ok(match out.status_message() {
            Some(m) if !m.is_empty() => format!("{status}: {m}"),
            _ => status,
        })
    }

    /// Create a deployment of `revision`; returns its id.
    pub(crate) async fn create(
        &self,
        revision: RevisionLocation,
        description: String,
    ) -> Result<String, ApiError> {
        let out = self
            .client
            .create_deployment()
            .application_name(&self.application)
            .deployment_group_name(&self.group)
            .revision(revision)
            .description(description)
            .send()
            .await
            .map_err(|e| ApiError::from_sdk("CreateDeployment", e))?;
        out.deployment_id
            .filter(|id| !id.is_empty())
            .ok_or_else(|| {
                ApiError::malformed("CreateDeployment", "CodeDeploy returned no deployment id")
            })
    }
}
