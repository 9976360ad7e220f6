//! From a deployment group's deployments to its revision history.
//!
//! Several deployments may install one revision (a redeploy, a rollback):
//! they collapse into one history entry, placed where its newest deployment
//! is. Its health is decided by its newest *decisive* deployment:
//!
//! - `Succeeded` makes it `Good`, unless that deployment was reverted since
//!   (CodeDeploy's `rollbackInfo` on either side, or a later rollback
//!   deployment whose description names it): then `Bad`;
//! - `Failed` makes it `Bad`;
//! - `Stopped` makes it `Bad` when it was rolled back, and decides nothing
//!   otherwise (someone stopped it; that says nothing of the revision);
//! - deployments still in flight decide nothing.
//!
//! With no decisive deployment the health is `Unknown`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use aws_sdk_codedeploy::types::{DeploymentInfo, DeploymentStatus};
use rollback_core::{HistoryEntry, Revision, RevisionHealth, RevisionId, Timestamp};

use crate::appspec::Platform;
use crate::revision::{CodeDeployRevision, attributes};

/// The description of a rollback deployment starts with this, followed by
/// the id of the deployment it reverts.
pub(crate) const ROLLBACK_DESCRIPTION_PREFIX: &str = "Rollback of deployment ";

/// Whether a deployment has reached a terminal status.
pub(crate) fn is_terminal(status: Option<&DeploymentStatus>) -> bool {
    matches!(
        status,
        Some(DeploymentStatus::Succeeded | DeploymentStatus::Failed | DeploymentStatus::Stopped)
    )
}

/// Whether a deployment is still going (or waiting to go).
pub(crate) fn is_in_flight(status: Option<&DeploymentStatus>) -> bool {
    !is_terminal(status)
}

/// The status as CodeDeploy spells it.
pub(crate) fn status_str(d: &DeploymentInfo) -> &str {
    d.status()
        .map(DeploymentStatus::as_str)
        .unwrap_or("Unknown")
}

/// The deployment id, or an empty string.
pub(crate) fn deployment_id(d: &DeploymentInfo) -> &str {
    d.deployment_id().unwrap_or_default()
}

/// The deployment id a rollback description names as reverted.
pub(crate) fn reverted_by_description(description: &str) -> Option<&str> {
    let rest = description.strip_prefix(ROLLBACK_DESCRIPTION_PREFIX)?;
    let id = rest
        .split(|c: char| c.is_whitespace() || c == ',' || c == ':')
        .next()?;
    (!id.is_empty()).then_some(id)
}

fn created_millis(d: &DeploymentInfo) -> Option<i64> {
    d.create_time().and_then(|t| t.to_millis().ok())
}

/// Sort deployments newest first by creation time. Deployments created in
/// the same millisecond keep the order CodeDeploy listed them in (newest
/// first); those without a creation time go last.
pub(crate) fn newest_first(
    deployments: Vec<DeploymentInfo>,
    listed: &[String],
) -> Vec<DeploymentInfo> {
    let position: BTreeMap<&str, usize> = listed
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let mut keyed: Vec<(Option<i64>, usize, DeploymentInfo)> = deployments
        .into_iter()
        .map(|d| {
            let pos = position
                .get(deployment_id(&d))
                .copied()
                .unwrap_or(usize::MAX);
            (created_millis(&d), pos, d)
        })
        .collect();
    keyed.sort_by(|a, b| match (a.0, b.0) {
        (Some(x), Some(y)) => y.cmp(&x).then(a.1.cmp(&b.1)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.1.cmp(&b.1),
    });
    keyed.into_iter().map(|(_, _, d)| d).collect()
}

/// The compute platform of a deployment's application; one this crate does
/// not know reads as `Server` here ([`check_platforms`] refuses it first).
pub(crate) fn platform_of(d: &DeploymentInfo) -> Platform {
    Platform::of(d.compute_platform()).unwrap_or(Platform::Server)
}

/// Refuse deployments of a compute platform this crate does not know,
/// naming the first one.
pub(crate) fn check_platforms(deployments: &[DeploymentInfo]) -> Result<(), String> {
    for d in deployments {
        Platform::of(d.compute_platform())
            .map_err(|e| format!("deployment {} is of {e}", deployment_id(d)))?;
    }
    Ok(())
}

/// The revision a deployment installed.
pub(crate) fn revision_of(d: &DeploymentInfo) -> CodeDeployRevision {
    d.revision()
        .and_then(|loc| CodeDeployRevision::on_platform(loc, platform_of(d)))
        .unwrap_or_else(|| CodeDeployRevision::unknown(deployment_id(d)))
}

/// The ids of deployments that were rolled back.
pub(crate) fn reverted_deployments(deployments: &[DeploymentInfo]) -> HashSet<String> {
    let mut out = HashSet::new();
    for d in deployments {
        if let Some(info) = d.rollback_info() {
            if info
                .rollback_deployment_id()
                .is_some_and(|id| !id.is_empty())
            {
                out.insert(deployment_id(d).to_owned());
            }
            if let Some(trigger) = info
                .rollback_triggering_deployment_id()
                .filter(|id| !id.is_empty())
            {
                out.insert(trigger.to_owned());
            }
        }
        if let Some(id) = d.description().and_then(reverted_by_description) {
            out.insert(id.to_owned());
        }
    }
    out
}

/// One revision of the history with the deployments that installed it.
#[derive(Debug, Clone)]
pub(crate) struct RevisionDeployments {
    pub(crate) revision: Arc<CodeDeployRevision>,
    pub(crate) health: RevisionHealth,
}

/// Fold deployments (newest first) into revisions (newest first).
pub(crate) fn fold(deployments: &[DeploymentInfo]) -> Vec<RevisionDeployments> {
    let reverted = reverted_deployments(deployments);
    let mut order: Vec<RevisionId> = Vec::new();
    let mut groups: BTreeMap<RevisionId, Vec<&DeploymentInfo>> = BTreeMap::new();
    for d in deployments {
        let id = revision_of(d).id;
        let group = groups.entry(id.clone()).or_default();
        if group.is_empty() {
            order.push(id);
        }
        group.push(d);
    }
    order
        .into_iter()
        .filter_map(|id| {
            let ds = groups.remove(&id)?;
            let newest = ds.first()?;
            let mut revision = revision_of(newest);
            let mut health = RevisionHealth::Unknown;
            let mut decided_by = None;
            for d in &ds {
                let was_reverted = reverted.contains(deployment_id(d));
                let verdict = match d.status() {
                    Some(DeploymentStatus::Succeeded) if was_reverted => Some(RevisionHealth::Bad),
                    Some(DeploymentStatus::Succeeded) => Some(RevisionHealth::Good),
                    Some(DeploymentStatus::Failed) => Some(RevisionHealth::Bad),
                    Some(DeploymentStatus::Stopped) if was_reverted => Some(RevisionHealth::Bad),
                    _ => None,
                };
                if let Some(v) = verdict {
                    health = v;
                    decided_by = Some(deployment_id(d));
                    break;
                }
            }
            // When it was last deployed: that keeps the history newest first by creation time.
            revision.created_at = ds
                .iter()
                .find_map(|d| created_millis(d))
                .map(Timestamp::from_millis);
            let attrs = &mut revision.attributes;
            attrs.insert(
                attributes::LATEST_DEPLOYMENT.to_owned(),
                deployment_id(newest).to_owned(),
            );
            attrs.insert(
                attributes::LATEST_STATUS.to_owned(),
                status_str(newest).to_owned(),
            );
            attrs.insert(
                attributes::DEPLOYMENT_COUNT.to_owned(),
                ds.len().to_string(),
            );
            if let Some(by) = decided_by {
                attrs.insert(attributes::HEALTH_FROM.to_owned(), by.to_owned());
            }
            Some(RevisionDeployments {
                revision: Arc::new(revision),
                health,
            })
        })
        .collect()
}

/// The engine's view of a fold.
pub(crate) fn entries(folded: &[RevisionDeployments]) -> Vec<HistoryEntry> {
    folded
        .iter()
        .map(|r| HistoryEntry::new(r.revision.clone() as Arc<dyn Revision>, r.health))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use aws_sdk_codedeploy::primitives::DateTime;
    use aws_sdk_codedeploy::types::{
        GitHubLocation, RevisionLocation, RevisionLocationType, RollbackInfo,
    };

    use super::*;

    /// A deployment of GitHub commit `commit` created at second `at`.
    pub(crate) fn deployment(
        id: &str,
        commit: &str,
        status: DeploymentStatus,
        at: i64,
    ) -> DeploymentInfo {
        DeploymentInfo::builder()
            .deployment_id(id)
            .status(status)
            .create_time(DateTime::from_secs(at))
            .revision(
                RevisionLocation::builder()
                    .revision_type(RevisionLocationType::GitHub)
                    .git_hub_location(
                        GitHubLocation::builder()
                            .repository("bank/payments")
                            .commit_id(commit)
                            .build(),
                    )
                    .build(),
            )
            .build()
    }

    fn summary(folded: &[RevisionDeployments]) -> Vec<(String, RevisionHealth, String)> {
        folded
            .iter()
            .map(|r| {
                (
                    r.revision.attributes[attributes::GITHUB_COMMIT].clone(),
                    r.health,
                    r.revision.attributes[attributes::LATEST_DEPLOYMENT].clone(),
                )
            })
            .collect()
    }

    #[test]
    fn deployments_of_one_revision_collapse_into_one_entry() {
        use DeploymentStatus::*;
        let ds = vec![
            deployment("d5", "a", InProgress, 50),
            deployment("d4", "b", Failed, 40),
            deployment("d3", "a", Succeeded, 30),
            deployment("d2", "c", Succeeded, 20),
            deployment("d1", "b", Succeeded, 10),
        ];
        let folded = fold(&ds);
        assert_eq!(
            summary(&folded),
            vec![
                ("a".into(), RevisionHealth::Good, "d5".into()),
                ("b".into(), RevisionHealth::Bad, "d4".into()),
                ("c".into(), RevisionHealth::Good, "d2".into()),
            ]
        );
        let a = &folded[0].revision;
        assert_eq!(a.attributes[attributes::DEPLOYMENT_COUNT], "2");
        assert_eq!(a.attributes[attributes::HEALTH_FROM], "d3");
        assert_eq!(a.created_at, Some(Timestamp::from_millis(50_000)));
    }

    #[test]
    fn reverted_deployments_make_their_revision_bad() {
        use DeploymentStatus::*;
        let mut stopped = deployment("d3", "bad", Stopped, 30);
        stopped.rollback_info = Some(RollbackInfo::builder().rollback_deployment_id("d4").build());
        let mut by_us = deployment("d6", "good", InProgress, 60);
        by_us.description = Some(format!(
            "{ROLLBACK_DESCRIPTION_PREFIX}d5 (bank/payments@worse) to good"
        ));
        let ds = vec![
            by_us,
            deployment("d5", "worse", Succeeded, 50),
            deployment("d4", "good", Succeeded, 40),
            stopped,
            deployment("d2", "manual-stop", Stopped, 20),
            deployment("d1", "good", Succeeded, 10),
        ];
        let healths: Vec<_> = summary(&fold(&ds))
            .into_iter()
            .map(|(c, h, _)| (c, h))
            .collect();
        assert_eq!(
            healths,
            vec![
                ("good".into(), RevisionHealth::Good),
                ("worse".into(), RevisionHealth::Bad),
                ("bad".into(), RevisionHealth::Bad),
                ("manual-stop".into(), RevisionHealth::Unknown),
            ]
        );
    }

    #[test]
    fn newest_first_sorts_by_creation_time_then_listing_order() {
        use DeploymentStatus::*;
        let ds = vec![
            deployment("old", "a", Succeeded, 10),
            deployment("tie-listed-second", "b", Succeeded, 20),
            deployment("tie-listed-first", "c", Succeeded, 20),
            deployment("new", "d", Created, 30),
        ];
        let listed: Vec<String> = ["new", "tie-listed-first", "tie-listed-second", "old"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let sorted: Vec<_> = newest_first(ds, &listed)
            .iter()
            .map(|d| deployment_id(d).to_owned())
            .collect();
        assert_eq!(sorted, listed);
    }

    #[test]
    fn rollback_descriptions_name_the_reverted_deployment() {
        assert_eq!(
            reverted_by_description("Rollback of deployment d-ABC (x) to y"),
            Some("d-ABC")
        );
        assert_eq!(
            reverted_by_description("Rollback of deployment d-ABC, by bob"),
            Some("d-ABC")
        );
        assert_eq!(reverted_by_description("Rollback of deployment "), None);
        assert_eq!(reverted_by_description("release 1.2"), None);
    }
}
