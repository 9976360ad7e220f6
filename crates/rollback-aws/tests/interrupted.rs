//! `conformance::check_interrupted_rollback` against moto's CodeDeploy
//! server (extended, see `support/moto_codedeploy_ext.py`): a rollback cut
//! short after each of its steps, then asked again by a new rollbacker,
//! ends with the group on the revision and the rollbacker's records (the
//! deployments it created, the deployments it stopped) written once.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_sdk_codedeploy::types::{DeploymentCreator, DeploymentInfo, DeploymentStatus};
use rollback_core::conformance::{self, InterruptionFixture};
use rollback_core::steps::Steps;
use rollback_core::{Result, Rollbacker, Target, TargetId};
use support::{Group, github};

/// Fresh groups seeded with one history, by the target id of each.
struct Seeded {
    prefix: &'static str,
    /// (GitHub commit, status), oldest first.
    seed: &'static [(&'static str, &'static str)],
    groups: Mutex<HashMap<TargetId, Arc<Group>>>,
}

impl Seeded {
    fn new(prefix: &'static str, seed: &'static [(&'static str, &'static str)]) -> Self {
        Seeded {
            prefix,
            seed,
            groups: Mutex::default(),
        }
    }

    fn group(&self, target: &Arc<dyn Target>) -> Arc<Group> {
        self.groups.lock().unwrap()[target.id()].clone()
    }
}

/// One deployment as a record: its place in the group (oldest first), its
/// revision, status and creator, what `rollbackInfo` links it to, and its
/// description, with deployment ids written as places.
fn record(d: &DeploymentInfo, place: &HashMap<String, usize>) -> String {
    let anonymous = |text: &str| {
        place.iter().fold(text.to_owned(), |t, (id, n)| {
            t.replace(id.as_str(), &format!("#{n}"))
        })
    };
    let commit = d
        .revision()
        .and_then(|r| r.git_hub_location())
        .and_then(|g| g.commit_id())
        .unwrap_or("?");
    let info = d.rollback_info();
    let links = [
        info.and_then(|i| i.rollback_deployment_id())
            .map(|id| format!("rolled back by {id}")),
        info.and_then(|i| i.rollback_triggering_deployment_id())
            .map(|id| format!("rolls back {id}")),
    ];
    let links: Vec<String> = links.into_iter().flatten().collect();
    let text = format!(
        "#{} {commit} {} by {} [{}] {}",
        place[d.deployment_id().unwrap_or_default()],
        d.status().map(|s| s.as_str()).unwrap_or("?"),
        d.creator().map(|c| c.as_str()).unwrap_or("?"),
        links.join(", "),
        d.description().unwrap_or_default()
    );
    anonymous(text.trim_end())
}

#[async_trait]
impl InterruptionFixture for Seeded {
    async fn setup(&self) -> Result<Arc<dyn Target>> {
        let g = Group::new(self.prefix).await;
        let steps: Vec<_> = self.seed.iter().map(|(c, s)| (github(c), *s)).collect();
        g.seed(&steps).await;
        let target = g.target();
        self.groups
            .lock()
            .unwrap()
            .insert(target.id().clone(), Arc::new(g));
        Ok(Arc::new(target))
    }

    fn rollbacker(&self, target: &Arc<dyn Target>, steps: Steps) -> Arc<dyn Rollbacker> {
        Arc::new(self.group(target).target().rollbacker().steps(steps))
    }

    /// The deployments the rollbacker created (its description) or had
    /// CodeDeploy create (its rollback of a stop), and the stopped ones.
    async fn records(&self, target: &Arc<dyn Target>) -> Result<Vec<String>> {
        let deployments = self.group(target).deployments().await;
        let place: HashMap<String, usize> = deployments
            .iter()
            .enumerate()
            .map(|(i, d)| (d.deployment_id().unwrap_or_default().to_owned(), i + 1))
            .collect();
        Ok(deployments
            .iter()
            .filter(|d| {
                d.description().is_some_and(|t| t.starts_with("Rollback"))
                    || d.creator() == Some(&DeploymentCreator::CodeDeployRollback)
                    || d.status() == Some(&DeploymentStatus::Stopped)
            })
            .map(|d| record(d, &place))
            .collect())
    }
}

/// The end of the description of [`support::request`]'s rollback deployment.
const DESCRIBED: &str = ", decided at 2026-11-27T12:00:00.000Z, by rollback-engine: p99 latency 180ms breached the 100ms SLO";

/// Run the check, after making sure that an uninterrupted rollback of the
/// fixture takes `steps` and leaves `records`.
async fn check(fixture: Seeded, steps: &[&str], records: &[&str]) {
    let target = fixture.setup().await.unwrap();
    let to = target.history().await.unwrap()[1].revision.clone();
    let counted = Steps::new();
    fixture
        .rollbacker(&target, counted.clone())
        .rollback(&support::request(to))
        .await
        .unwrap_or_else(|e| panic!("{}", e.full_message()));
    assert_eq!(counted.taken(), steps);
    assert_eq!(fixture.records(&target).await.unwrap(), records);

    let report = conformance::check_interrupted_rollback(&fixture)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", support::moto().stderr_tail()));
    assert_eq!(report.passed, ["interrupted_rollback_completes"]);
}

/// A succeeded deployment of `bad` after `good`: one step, `CreateDeployment`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_deployment_is_reverted_once() {
    check(
        Seeded::new("cut-create", &[("good", "Succeeded"), ("bad", "Succeeded")]),
        &["create a deployment of the revision"],
        &[&format!("#3 good Created by user [] Rollback of deployment #2 (bank/payments@bad) to bank/payments@good{DESCRIBED}")],
    )
    .await;
}

/// `bad` in flight after `good`: one step, `StopDeployment(autoRollbackEnabled)`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_flight_deployment_is_stopped_once_and_codedeploys_rollback_followed() {
    check(
        Seeded::new(
            "cut-stop-auto",
            &[("good", "Succeeded"), ("bad", "InProgress")],
        ),
        &["stop the deployment in flight with autoRollbackEnabled"],
        &[
            "#2 bad Stopped by user [rolled back by #3]",
            "#3 good Created by codeDeployRollback [rolls back #2]",
        ],
    )
    .await;
}

/// `bad` in flight after `manual` (stopped by hand, so of unknown health,
/// and the revision the check rolls back to) after `good`: CodeDeploy's own
/// rollback would restore `good`, so two steps, `StopDeployment` and then
/// `CreateDeployment` of `manual`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_flight_deployment_is_stopped_then_the_revision_deployed_once() {
    check(
        Seeded::new(
            "cut-stop-create",
            &[("good", "Succeeded"), ("manual", "Stopped"), ("bad", "InProgress")],
        ),
        &[
            "stop the deployment in flight",
            "create a deployment of the revision",
        ],
        &[
            "#2 manual Stopped by user []",
            "#3 bad Stopped by user []",
            &format!("#4 manual Created by user [] Rollback of deployment #3 (bank/payments@bad) to bank/payments@manual{DESCRIBED}"),
        ],
    )
    .await;
}
