//! Rolling a CodeDeploy deployment group back, the way CodeDeploy users do.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_codedeploy::types::{DeploymentInfo, DeploymentStatus};
use rollback_core::{
    Capabilities, Convergence, Error, ErrorKind, Result, Revision, RevisionId, RollbackOutcome,
    RollbackRequest, Rollbacker, Target,
};
use tokio::time::Instant;
use tracing::Instrument;

use crate::history::{
    self, ROLLBACK_DESCRIPTION_PREFIX, deployment_id, is_in_flight, is_terminal, status_str,
};
use crate::progress::DeploymentProgress;
use crate::revision::CodeDeployRevision;
use crate::target::CodeDeployTarget;

/// CodeDeploy refuses longer deployment descriptions; stay well within.
const MAX_DESCRIPTION_CHARS: usize = 512;

/// `start + timeout`, or a century on when that overflows (`Duration::MAX`).
fn deadline_after(start: Instant, timeout: Duration) -> Instant {
    start
        .checked_add(timeout)
        .or_else(|| start.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(start)
}

/// What a rollback will do, decided from the group's deployments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    /// The newest deployment already installs the revision, and has not failed.
    AlreadyAt { deployment: String, status: String },
    /// The newest deployment is in flight, and CodeDeploy's own rollback
    /// (to the last succeeded deployment's revision) restores the revision:
    /// `StopDeployment(autoRollbackEnabled = true)`.
    StopWithAutoRollback { bad: String },
    /// The newest deployment is in flight, and the revision is not the one
    /// CodeDeploy's rollback would restore: stop it, then deploy the revision.
    StopThenCreate { bad: String },
    /// The newest deployment is complete: deploy the revision again.
    Create { reverts: Option<String> },
}

/// Decide what a rollback to `to` does, given the group's deployments newest first.
pub(crate) fn plan(deployments: &[DeploymentInfo], to: &RevisionId) -> Plan {
    let Some(newest) = deployments.first() else {
        return Plan::Create { reverts: None };
    };
    let newest_revision = history::revision_of(newest);
    let newest_id = deployment_id(newest).to_owned();
    if newest_revision.id() == to
        && (is_in_flight(newest.status()) || newest.status() == Some(&DeploymentStatus::Succeeded))
    {
        return Plan::AlreadyAt {
            deployment: newest_id,
            status: status_str(newest).to_owned(),
        };
    }
    if is_in_flight(newest.status()) {
        let last_good = deployments[1..]
            .iter()
            .find(|d| d.status() == Some(&DeploymentStatus::Succeeded));
        return match last_good {
            Some(good) if history::revision_of(good).id() == to => {
                Plan::StopWithAutoRollback { bad: newest_id }
            }
            _ => Plan::StopThenCreate { bad: newest_id },
        };
    }
    Plan::Create {
        reverts: Some(newest_id),
    }
}

/// The description of a rollback deployment: it names the deployment it
/// reverts (which marks that deployment's revision bad in the history), the
/// revisions, who asked and why.
pub(crate) fn description(
    reverts: Option<(&str, &str)>,
    to: &CodeDeployRevision,
    actor: &str,
    reason: &str,
) -> String {
    let mut text = match reverts {
        Some((id, label)) => format!(
            "{ROLLBACK_DESCRIPTION_PREFIX}{id} ({label}) to {}",
            to.label()
        ),
        None => format!("Rollback to {}", to.label()),
    };
    text.push_str(&format!(", by {actor}"));
    if !reason.trim().is_empty() {
        text.push_str(": ");
        text.push_str(reason.trim());
    }
    if text.chars().count() > MAX_DESCRIPTION_CHARS {
        text = text.chars().take(MAX_DESCRIPTION_CHARS - 1).collect();
        text.push('…');
    }
    text
}

/// Rolls a CodeDeploy deployment group back; see the crate docs.
///
/// A bad deployment still in flight is stopped with
/// `StopDeployment(autoRollbackEnabled = true)` and the rollback deployment
/// CodeDeploy creates is followed through `rollbackInfo`. A completed one is
/// rolled back with `CreateDeployment` of the requested revision, with a
/// description naming the deployment it reverts. [`Rollbacker::wait_converged`]
/// then follows that deployment to a terminal status.
#[derive(Debug)]
pub struct CodeDeployRollbacker {
    target: CodeDeployTarget,
    /// The deployment the last rollback started or found, by the revision it installs.
    followed: Mutex<Option<(RevisionId, String)>>,
}

/// Why one rollback attempt stopped short.
enum Attempt {
    Done(RollbackOutcome),
    /// The group changed under us (a deployment completed before it could be
    /// stopped); plan again.
    Replan(Error),
}

impl CodeDeployRollbacker {
    /// The rollbacker of a target; also [`CodeDeployTarget::rollbacker`].
    pub fn new(target: CodeDeployTarget) -> Self {
        CodeDeployRollbacker {
            target,
            followed: Mutex::new(None),
        }
    }

    /// The target this rollbacker moves.
    pub fn target(&self) -> &CodeDeployTarget {
        &self.target
    }

    fn remember(&self, revision: &RevisionId, deployment: &str) {
        if let Ok(mut f) = self.followed.lock() {
            *f = Some((revision.clone(), deployment.to_owned()));
        }
    }

    fn followed_for(&self, revision: &RevisionId) -> Option<String> {
        let f = self.followed.lock().ok()?;
        f.as_ref()
            .filter(|(r, _)| r == revision)
            .map(|(_, d)| d.clone())
    }

    async fn attempt(&self, request: &RollbackRequest) -> Result<Attempt> {
        let t = &self.target;
        let deployments = t.deployments().await?;
        let folded = history::fold(&deployments);
        let to_id = request.to.id();
        let Some(entry) = folded.iter().find(|r| r.revision.id() == to_id) else {
            return Err(Error::not_found(format!(
                "revision {to_id} is not in the history of {}; list the history to see the revisions it can roll back to",
                t.describe()
            )));
        };
        let to = entry.revision.clone();
        let Some(location) = to.location().cloned() else {
            return Err(Error::permanent(format!(
                "revision {to_id} of {} has no revision location that CodeDeploy reported, so it cannot be deployed again",
                t.describe()
            )));
        };
        let label_of = |id: &str| {
            deployments
                .iter()
                .find(|d| deployment_id(d) == id)
                .map(|d| history::revision_of(d).label().to_owned())
                .unwrap_or_default()
        };
        let plan = plan(&deployments, to_id);
        tracing::info!(target: "rollback_aws", ?plan, to = %to.label(), "rollback plan");

        if request.dry_run {
            let detail = match &plan {
                Plan::StopWithAutoRollback { bad } => format!(
                    "would stop deployment {bad} of {} with autoRollbackEnabled, so that CodeDeploy redeploys {}",
                    label_of(bad),
                    to.label()
                ),
                Plan::StopThenCreate { bad } => format!(
                    "would stop deployment {bad} of {}, then create a deployment of {}",
                    label_of(bad),
                    to.label()
                ),
                Plan::Create { reverts: Some(bad) } => format!(
                    "would create a deployment of {} reverting deployment {bad} of {}",
                    to.label(),
                    label_of(bad)
                ),
                Plan::Create { reverts: None } => {
                    format!("would create a deployment of {}", to.label())
                }
                Plan::AlreadyAt { deployment, status } => format!(
                    "would change nothing: its newest deployment {deployment} installs {} and is {status}",
                    to.label()
                ),
            };
            return Ok(Attempt::Done(RollbackOutcome::DryRun {
                detail: format!("{}: {detail}", t.describe()),
            }));
        }
        if let Plan::AlreadyAt { deployment, status } = &plan {
            self.remember(to_id, deployment);
            return Ok(Attempt::Done(RollbackOutcome::AlreadyAt {
                detail: format!(
                    "{} already runs {}: its newest deployment {deployment} installs it and is {status}",
                    t.describe(),
                    to.label()
                ),
            }));
        }

        let reverts = match &plan {
            Plan::StopWithAutoRollback { bad } => {
                match self.stop(bad, true).await? {
                    Err(replan) => return Ok(Attempt::Replan(replan)),
                    Ok(stop_status) => {
                        if let Some(rollback_id) = self.follow_auto_rollback(bad).await? {
                            let followed = t.api().get(&rollback_id).await.ok();
                            let restores = followed
                                .as_ref()
                                .map(history::revision_of)
                                .map(|r| r.id().clone())
                                .unwrap_or_else(|| to_id.clone());
                            if &restores == to_id {
                                self.remember(to_id, &rollback_id);
                                return Ok(Attempt::Done(RollbackOutcome::RolledBack {
                                    detail: format!(
                                        "stopped deployment {bad} of {} ({stop_status}); CodeDeploy's rollback deployment {rollback_id} redeploys {}",
                                        label_of(bad),
                                        to.label()
                                    ),
                                }));
                            }
                            // CodeDeploy restored another revision than asked:
                            // the group now has an active deployment, so the
                            // requested one cannot start until it completes.
                            return Err(Error::new(
                                ErrorKind::Conflict,
                                format!(
                                    "stopped deployment {bad} of {}, but CodeDeploy's rollback deployment {rollback_id} restores {restores}, not {to_id}; retry once it has completed",
                                    t.describe()
                                ),
                            ));
                        }
                        // CodeDeploy stopped it without rolling back: deploy ourselves.
                        Some(bad.clone())
                    }
                }
            }
            Plan::StopThenCreate { bad } => match self.stop(bad, false).await? {
                Err(replan) => return Ok(Attempt::Replan(replan)),
                Ok(_) => {
                    self.wait_stopped(bad).await?;
                    Some(bad.clone())
                }
            },
            Plan::Create { reverts } => reverts.clone(),
            Plan::AlreadyAt { .. } => None,
        };

        let reverted_label = reverts.as_deref().map(label_of).unwrap_or_default();
        let text = description(
            reverts.as_deref().map(|id| (id, reverted_label.as_str())),
            &to,
            request.actor.as_str(),
            &request.reason,
        );
        let created = t.api().create(location, text).await.map_err(|e| {
            e.into_error(&format!(
                "creating a rollback deployment of {} in {}",
                to.label(),
                t.describe()
            ))
        })?;
        self.remember(to_id, &created);
        let detail = match &reverts {
            Some(bad) => format!(
                "created deployment {created} of {}, reverting deployment {bad} of {reverted_label}",
                to.label()
            ),
            None => format!("created deployment {created} of {}", to.label()),
        };
        Ok(Attempt::Done(RollbackOutcome::RolledBack { detail }))
    }

    /// Stop a deployment. A deployment that completed meanwhile is `Ok(Err(_))`: plan again.
    async fn stop(
        &self,
        id: &str,
        auto_rollback: bool,
    ) -> Result<std::result::Result<String, Error>> {
        let t = &self.target;
        match t.api().stop(id, auto_rollback).await {
            Ok(status) => Ok(Ok(status)),
            Err(e) => {
                let completed = e.code() == Some("DeploymentAlreadyCompletedException");
                let err = e.into_error(&format!("stopping deployment {id} of {}", t.describe()));
                if completed { Ok(Err(err)) } else { Err(err) }
            }
        }
    }

    /// After `StopDeployment(autoRollbackEnabled)`, wait for CodeDeploy to
    /// name its rollback deployment in `rollbackInfo`. `None` when the
    /// deployment stopped and CodeDeploy said it would not roll back.
    async fn follow_auto_rollback(&self, stopped: &str) -> Result<Option<String>> {
        let t = &self.target;
        let deadline = deadline_after(Instant::now(), t.settings().stop_timeout);
        loop {
            let d = t.api().get(stopped).await.map_err(|e| {
                e.into_error(&format!(
                    "following the rollback of deployment {stopped} in {}",
                    t.describe()
                ))
            })?;
            let info = d.rollback_info();
            if let Some(id) = info
                .and_then(|i| i.rollback_deployment_id())
                .filter(|id| !id.is_empty())
            {
                return Ok(Some(id.to_owned()));
            }
            let said_no = info
                .and_then(|i| i.rollback_message())
                .is_some_and(|m| !m.is_empty());
            if is_terminal(d.status()) && said_no {
                tracing::warn!(
                    target: "rollback_aws",
                    deployment = stopped,
                    message = info.and_then(|i| i.rollback_message()).unwrap_or_default(),
                    "CodeDeploy stopped the deployment without rolling back"
                );
                return Ok(None);
            }
            if Instant::now() >= deadline {
                return Err(Error::transient(format!(
                    "stopped deployment {stopped} of {} with autoRollbackEnabled, but CodeDeploy named no rollback deployment within {:?} (status {}); retrying the rollback deploys the revision",
                    t.describe(),
                    t.settings().stop_timeout,
                    status_str(&d)
                )));
            }
            tokio::time::sleep(t.settings().poll_interval.min(deadline - Instant::now())).await;
        }
    }

    /// Wait for a stopped deployment to reach a terminal status.
    async fn wait_stopped(&self, id: &str) -> Result<()> {
        let t = &self.target;
        let deadline = deadline_after(Instant::now(), t.settings().stop_timeout);
        loop {
            let d = t.api().get(id).await.map_err(|e| {
                e.into_error(&format!(
                    "waiting for deployment {id} of {} to stop",
                    t.describe()
                ))
            })?;
            if is_terminal(d.status()) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::transient(format!(
                    "deployment {id} of {} is still {} {:?} after it was asked to stop; retry the rollback once it has stopped",
                    t.describe(),
                    status_str(&d),
                    t.settings().stop_timeout
                )));
            }
            tokio::time::sleep(t.settings().poll_interval.min(deadline - Instant::now())).await;
        }
    }

    /// The deployment to follow for `revision`: the one the last rollback
    /// started, or else the group's newest deployment when it installs `revision`.
    async fn deployment_to_follow(
        &self,
        revision: &RevisionId,
    ) -> Result<std::result::Result<String, String>> {
        if let Some(id) = self.followed_for(revision) {
            return Ok(Ok(id));
        }
        let t = &self.target;
        let deployments = t.deployments().await?;
        let Some(newest) = deployments.first() else {
            return Err(Error::not_found(format!(
                "{} has no deployments; nothing converges",
                t.describe()
            )));
        };
        let newest_revision = history::revision_of(newest);
        if newest_revision.id() == revision {
            Ok(Ok(deployment_id(newest).to_owned()))
        } else {
            Ok(Err(format!(
                "{} runs {} (deployment {} is {}), not {revision}",
                t.describe(),
                newest_revision.label(),
                deployment_id(newest),
                status_str(newest)
            )))
        }
    }
}

#[async_trait]
impl Rollbacker for CodeDeployRollbacker {
    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE.with_convergence(true)
    }

    async fn rollback(&self, request: &RollbackRequest) -> Result<RollbackOutcome> {
        let t = &self.target;
        if &request.target != t.id() {
            return Err(Error::invalid(format!(
                "the rollbacker of {} got a request for target {}",
                t.id(),
                request.target
            )));
        }
        let span = tracing::info_span!(
            "codedeploy.rollback",
            target = %t.id(),
            to = %request.to.id(),
            from = request.from.as_ref().map(|f| f.to_string()).unwrap_or_default(),
            actor = %request.actor,
            dry_run = request.dry_run
        );
        async {
            // One replan covers a deployment that completed between listing
            // and stopping it; a second race is reported as it is.
            let mut last = None;
            for _ in 0..2 {
                match self.attempt(request).await? {
                    Attempt::Done(outcome) => {
                        tracing::info!(target: "rollback_aws", detail = outcome.detail(), "rollback done");
                        return Ok(outcome);
                    }
                    Attempt::Replan(e) => {
                        tracing::info!(target: "rollback_aws", error = %e, "deployment completed before it was stopped; planning again");
                        last = Some(e);
                    }
                }
            }
            Err(last.unwrap_or_else(|| Error::permanent("rollback did not settle")))
        }
        .instrument(span)
        .await
    }

    async fn wait_converged(
        &self,
        revision: &RevisionId,
        timeout: Duration,
    ) -> Result<Convergence> {
        let t = &self.target;
        let span = tracing::info_span!("codedeploy.wait", target = %t.id(), revision = %revision);
        async {
            let start = Instant::now();
            let deadline = deadline_after(start, timeout);
            let id = match self.deployment_to_follow(revision).await? {
                Ok(id) => id,
                Err(detail) => return Ok(Convergence::Failed { detail }),
            };
            let mut last: Option<DeploymentProgress> = None;
            loop {
                let polled = t.api().get(&id).await;
                let d = match polled {
                    Ok(d) => d,
                    Err(e) => {
                        let e = e.into_error(&format!("reading deployment {id} of {}", t.describe()));
                        if !e.is_retryable() {
                            return Err(e);
                        }
                        tracing::warn!(target: "rollback_aws", error = %e.full_message(), "reading the deployment failed; polling on");
                        if Instant::now() >= deadline {
                            return Ok(Convergence::TimedOut {
                                detail: format!("{} (last read failed: {})", last.map(|p| p.to_string()).unwrap_or_else(|| format!("deployment {id}")), e.message()),
                            });
                        }
                        tokio::time::sleep(t.settings().poll_interval.min(deadline - Instant::now())).await;
                        continue;
                    }
                };
                let progress = DeploymentProgress::of(&d, start.elapsed());
                if last.as_ref().is_none_or(|l| !l.same_state(&progress)) {
                    t.report(&progress);
                }
                match d.status() {
                    Some(DeploymentStatus::Succeeded) => {
                        let installed = history::revision_of(&d);
                        if installed.id() == revision {
                            return Ok(Convergence::Converged);
                        }
                        return Ok(Convergence::Failed {
                            detail: format!("deployment {id} succeeded but installed {}, not {revision}", installed.id()),
                        });
                    }
                    Some(DeploymentStatus::Failed | DeploymentStatus::Stopped) => {
                        let why = d
                            .error_information()
                            .map(|e| {
                                format!(
                                    "{}: {}",
                                    e.code().map(|c| c.as_str()).unwrap_or("no error code"),
                                    e.message().unwrap_or_default()
                                )
                            })
                            .filter(|s| s != "no error code: ")
                            .unwrap_or_else(|| "CodeDeploy gave no reason".into());
                        return Ok(Convergence::Failed { detail: format!("{progress}; {why}") });
                    }
                    _ => {}
                }
                if Instant::now() >= deadline {
                    return Ok(Convergence::TimedOut { detail: progress.to_string() });
                }
                last = Some(progress);
                tokio::time::sleep(t.settings().poll_interval.min(deadline - Instant::now())).await;
            }
        }
        .instrument(span)
        .await
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_codedeploy::types::DeploymentStatus::*;

    use super::*;
    use crate::history::tests::deployment;

    fn github(commit: &str) -> RevisionId {
        RevisionId::new(format!("github:bank/payments@{commit}"))
    }

    #[test]
    fn endless_timeouts_do_not_overflow() {
        let now = Instant::now();
        assert!(deadline_after(now, Duration::MAX) > now + Duration::from_secs(86_400 * 365));
        assert_eq!(
            deadline_after(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
    }

    #[test]
    fn plans_follow_what_codedeploy_users_do() {
        let complete = vec![
            deployment("d3", "bad", Succeeded, 30),
            deployment("d2", "good", Succeeded, 20),
        ];
        assert_eq!(
            plan(&complete, &github("good")),
            Plan::Create {
                reverts: Some("d3".into())
            }
        );
        assert_eq!(
            plan(&complete, &github("bad")),
            Plan::AlreadyAt {
                deployment: "d3".into(),
                status: "Succeeded".into()
            }
        );

        let in_flight = vec![
            deployment("d4", "bad", InProgress, 40),
            deployment("d3", "older", Failed, 30),
            deployment("d2", "good", Succeeded, 20),
            deployment("d1", "oldest", Succeeded, 10),
        ];
        assert_eq!(
            plan(&in_flight, &github("good")),
            Plan::StopWithAutoRollback { bad: "d4".into() }
        );
        assert_eq!(
            plan(&in_flight, &github("oldest")),
            Plan::StopThenCreate { bad: "d4".into() }
        );

        let rolling_back = vec![
            deployment("d5", "good", Created, 50),
            deployment("d4", "bad", Stopped, 40),
        ];
        assert_eq!(
            plan(&rolling_back, &github("good")),
            Plan::AlreadyAt {
                deployment: "d5".into(),
                status: "Created".into()
            }
        );

        let failed_rollback = vec![
            deployment("d5", "good", Failed, 50),
            deployment("d4", "bad", Stopped, 40),
        ];
        assert_eq!(
            plan(&failed_rollback, &github("good")),
            Plan::Create {
                reverts: Some("d5".into())
            }
        );
    }

    #[test]
    fn descriptions_name_the_reverted_deployment_and_stay_short() {
        let to = history::revision_of(&deployment("d1", "good", Succeeded, 10));
        let text = description(
            Some(("d3", "bank/payments@bad")),
            &to,
            "alice",
            "p99 latency 180ms > 100ms",
        );
        assert_eq!(
            text,
            "Rollback of deployment d3 (bank/payments@bad) to bank/payments@good, by alice: p99 latency 180ms > 100ms"
        );
        assert_eq!(history::reverted_by_description(&text), Some("d3"));
        let long = description(None, &to, "engine", &"x".repeat(2000));
        assert_eq!(long.chars().count(), MAX_DESCRIPTION_CHARS);
        assert!(long.ends_with('…'));
    }
}
