//! Rolling a CodeDeploy deployment group back, the way CodeDeploy users do:
//! plan from the group's deployments ([`crate::plan`]), then carry the plan
//! out one named step at a time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_codedeploy::types::{AppSpecContent, RevisionLocation, RevisionLocationType};
use rollback_core::steps::Steps;
use rollback_core::{
    Capabilities, Convergence, DryRun, Error, ErrorKind, Result, Revision, RevisionId,
    RollbackOutcome, RollbackRequest, Rollbacker, Target, TargetId,
};
use tracing::Instrument;

use crate::history::{self, deployment_id, status_str};
use crate::plan::{Course, Deployed, Plan, description, plan, shift_from};
use crate::revision::{CodeDeployRevision, attributes, sha256_hex};
use crate::target::CodeDeployTarget;
use crate::wait::{self, AutoRollback};

/// Rolls a CodeDeploy deployment group back; see the crate docs.
///
/// A bad deployment still in flight is stopped with
/// `StopDeployment(autoRollbackEnabled = true)` and the rollback deployment
/// CodeDeploy creates is followed through `rollbackInfo`. A completed one is
/// rolled back with `CreateDeployment` of the requested revision, with a
/// description naming the deployment it reverts and when the rollback was
/// decided, so that a rollback asked again finds its deployment instead of
/// making a second one. [`Rollbacker::wait_converged`] then follows that
/// deployment to a terminal status.
#[derive(Debug)]
pub struct CodeDeployRollbacker {
    target: CodeDeployTarget,
    steps: Steps,
    /// The deployment the last rollback started or found, by the revision it installs.
    followed: Mutex<Option<(RevisionId, String)>>,
}

/// How carrying a plan out ended.
enum Carried {
    Done(RollbackOutcome),
    /// The group changed under the plan (a deployment completed before it
    /// could be stopped): plan again.
    Replan(Error),
}

/// How `StopDeployment` ended.
enum Stop {
    /// Stopping, with CodeDeploy's status message.
    Stopping(String),
    /// The deployment had completed meanwhile.
    AlreadyCompleted(Error),
}

/// The deployment `wait_converged` follows, or why there is none.
enum Follow {
    Deployment(String),
    /// The group runs another revision.
    Elsewhere(String),
}

/// The request and what planning found, for the steps that carry it out.
struct Rollback<'a> {
    request: &'a RollbackRequest,
    to: Arc<CodeDeployRevision>,
    /// What a new deployment deploys, or why there can be none.
    location: std::result::Result<RevisionLocation, String>,
}

/// An AppSpec revision of this content.
fn lambda_location(content: &str) -> RevisionLocation {
    RevisionLocation::builder()
        .revision_type(RevisionLocationType::AppSpecContent)
        .app_spec_content(
            AppSpecContent::builder()
                .content(content)
                .sha256(sha256_hex(content))
                .build(),
        )
        .build()
}

impl CodeDeployRollbacker {
    /// The rollbacker of a target; also [`CodeDeployTarget::rollbacker`].
    pub fn new(target: CodeDeployTarget) -> Self {
        CodeDeployRollbacker {
            target,
            steps: Steps::new(),
            followed: Mutex::new(None),
        }
    }

    /// Count the calls that change the group (`StopDeployment`,
    /// `CreateDeployment`) with `steps`, which may stop after some of them
    /// as a killed process would: for crash tests.
    #[must_use]
    pub fn steps(mut self, steps: Steps) -> Self {
        self.steps = steps;
        self
    }

    /// The deployment group this rollbacker moves.
    pub fn group(&self) -> &CodeDeployTarget {
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

    /// Read the group and decide what a rollback to `request.to` does.
    async fn plan<'r>(&self, request: &'r RollbackRequest) -> Result<(Rollback<'r>, Plan)> {
        let t = &self.target;
        let deployments = t.deployments().await?;
        let to_id = request.to.id();
        let Some(entry) = history::fold(&deployments)
            .into_iter()
            .find(|r| r.revision.id() == to_id)
        else {
            return Err(Error::not_found(format!(
                "revision {to_id} is not in the history of {}; list the history to see the revisions it can roll back to",
                t.describe()
            )));
        };
        let Some(stored) = entry.revision.location().cloned() else {
            return Err(Error::permanent(format!(
                "revision {to_id} of {} has no revision location that CodeDeploy reported, so it cannot be deployed again",
                t.describe()
            )));
        };
        if let Some(Err(e)) = &entry.revision.appspec {
            return Err(Error::invalid(format!(
                "revision {to_id} of {} cannot be deployed again: the AppSpec of its deployment {} does not read: {e}; roll back to another revision",
                t.describe(),
                entry
                    .revision
                    .attributes()
                    .get(attributes::LATEST_DEPLOYMENT)
                    .map_or("?", String::as_str),
            )));
        }
        // A Lambda rollback shifts the alias back: the good AppSpec, from
        // the version the alias is on now.
        let location = match entry.revision.lambda() {
            None => Ok(stored),
            Some(spec) => shift_from(&deployments, spec)
                .map(|from| lambda_location(&spec.shifting_from(&from)))
                .map_err(|why| {
                    format!(
                        "{} cannot shift alias {} of function {} back to version {}: {why}",
                        t.describe(),
                        spec.alias,
                        spec.name,
                        spec.target_version
                    )
                }),
        };
        let plan = plan(&deployments, &entry.revision, request.decided_at);
        tracing::info!(target: "rollback_aws", %plan, "rollback plan");
        let rollback = Rollback {
            request,
            to: entry.revision,
            location,
        };
        Ok((rollback, plan))
    }

    /// Carry a plan out.
    async fn carry_out(&self, r: &Rollback<'_>, plan: &Plan) -> Result<Carried> {
        let t = &self.target;
        match &plan.course {
            Course::AlreadyAt { newest } => {
                self.remember(r.to.id(), &newest.id);
                Ok(Carried::Done(RollbackOutcome::AlreadyAt {
                    detail: format!(
                        "{} already runs {}: its newest deployment {} installs it and is {}",
                        t.describe(),
                        plan.to,
                        newest.id,
                        newest.status
                    ),
                }))
            }
            Course::AlreadyDeployed { ours } => {
                self.remember(r.to.id(), &ours.id);
                Ok(Carried::Done(RollbackOutcome::AlreadyAt {
                    detail: format!(
                        "{}: deployment {} of {} was created for this rollback (decided at {}) and is {}; a new rollback decision deploys again",
                        t.describe(),
                        ours.id,
                        plan.to,
                        r.request.decided_at,
                        ours.status
                    ),
                }))
            }
            Course::StopWithAutoRollback { bad } => self.stop_with_auto_rollback(r, bad).await,
            Course::StopThenCreate { bad } => self.stop_then_create(r, bad).await,
            Course::Create { reverts } => self.create(r, reverts.as_ref()).await.map(Carried::Done),
        }
    }

    /// Stop the bad deployment and follow CodeDeploy's own rollback; deploy
    /// the revision ourselves when CodeDeploy declines to roll back.
    async fn stop_with_auto_rollback(&self, r: &Rollback<'_>, bad: &Deployed) -> Result<Carried> {
        let t = &self.target;
        let status = match self.stop(bad, true).await? {
            Stop::Stopping(status) => status,
            Stop::AlreadyCompleted(e) => return Ok(Carried::Replan(e)),
        };
        let rollback_id = match wait::auto_rollback(t, &bad.id).await? {
            AutoRollback::Started(id) => id,
            AutoRollback::Declined => return self.create(r, Some(bad)).await.map(Carried::Done),
        };
        let restores = match t.api().get(&rollback_id).await {
            Ok(d) => history::revision_of(&d).id().clone(),
            Err(_) => r.to.id().clone(),
        };
        if &restores != r.to.id() {
            // The group now has an active deployment, so the requested
            // revision cannot start until it completes.
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "stopped deployment {} of {}, but CodeDeploy's rollback deployment {rollback_id} restores {restores}, not {}; retry once it has completed",
                    bad.id,
                    t.describe(),
                    r.to.id()
                ),
            ));
        }
        self.remember(r.to.id(), &rollback_id);
        Ok(Carried::Done(RollbackOutcome::RolledBack {
            detail: format!(
                "stopped deployment {} of {} ({status}); CodeDeploy's rollback deployment {rollback_id} redeploys {}",
                bad.id,
                bad.revision,
                r.to.label()
            ),
        }))
    }

    /// Stop the bad deployment without CodeDeploy's rollback, wait until it
    /// has stopped, then deploy the revision.
    async fn stop_then_create(&self, r: &Rollback<'_>, bad: &Deployed) -> Result<Carried> {
        if let Stop::AlreadyCompleted(e) = self.stop(bad, false).await? {
            return Ok(Carried::Replan(e));
        }
        wait::stopped(&self.target, &bad.id).await?;
        let created = self.create(r, Some(bad)).await?;
        Ok(Carried::Done(RollbackOutcome::RolledBack {
            detail: format!(
                "stopped deployment {} of {}; {}",
                bad.id,
                bad.revision,
                created.detail()
            ),
        }))
    }

    /// Step: `StopDeployment`.
    async fn stop(&self, bad: &Deployed, auto_rollback: bool) -> Result<Stop> {
        let t = &self.target;
        self.steps
            .step_paced(if auto_rollback {
                "stop the deployment in flight with autoRollbackEnabled"
            } else {
                "stop the deployment in flight"
            })
            .await?;
        match t.api().stop(&bad.id, auto_rollback).await {
            Ok(status) => Ok(Stop::Stopping(status)),
            Err(e) => {
                let completed = e.code() == Some("DeploymentAlreadyCompletedException");
                let e = e.into_error(&format!(
                    "stopping deployment {} of {}",
                    bad.id,
                    t.describe()
                ));
                if completed {
                    Ok(Stop::AlreadyCompleted(e))
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Step: `CreateDeployment` of the revision, described for this request.
    async fn create(
        &self,
        r: &Rollback<'_>,
        reverts: Option<&Deployed>,
    ) -> Result<RollbackOutcome> {
        let t = &self.target;
        let text = description(
            reverts,
            r.to.label(),
            r.request.decided_at,
            r.request.actor.as_str(),
            &r.request.reason,
        );
        let location = r.location.clone().map_err(Error::permanent)?;
        self.steps
            .step_paced("create a deployment of the revision")
            .await?;
        let created = t.api().create(location, text).await.map_err(|e| {
            e.into_error(&format!(
                "creating a rollback deployment of {} in {}",
                r.to.label(),
                t.describe()
            ))
        })?;
        self.remember(r.to.id(), &created);
        let detail = match reverts {
            Some(bad) => format!(
                "created deployment {created} of {}, reverting deployment {} of {}",
                r.to.label(),
                bad.id,
                bad.revision
            ),
            None => format!("created deployment {created} of {}", r.to.label()),
        };
        Ok(RollbackOutcome::RolledBack { detail })
    }

    /// Plan and carry out; one replan covers a deployment that completed
    /// between listing and stopping it, a second race is reported as it is.
    async fn roll(&self, request: &RollbackRequest) -> Result<RollbackOutcome> {
        let mut last = None;
        for _ in 0..2 {
            let (rollback, plan) = self.plan(request).await?;
            // A plan that ends in a deployment that cannot be made changes
            // nothing, not even the stop before it.
            if let (Course::Create { .. } | Course::StopThenCreate { .. }, Err(why)) =
                (&plan.course, &rollback.location)
            {
                return Err(Error::permanent(why.clone()));
            }
            if request.dry_run == DryRun::Client {
                return Ok(RollbackOutcome::DryRun {
                    detail: format!("{}: would {plan}", self.target.describe()),
                });
            }
            match self.carry_out(&rollback, &plan).await? {
                Carried::Done(outcome) => {
                    tracing::info!(target: "rollback_aws", detail = outcome.detail(), "rollback done");
                    return Ok(outcome);
                }
                Carried::Replan(e) => {
                    tracing::info!(target: "rollback_aws", error = %e, "deployment completed before it was stopped; planning again");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::permanent("rollback did not settle")))
    }

    /// The deployment to follow for `revision`: the one the last rollback
    /// started or found, or else the group's newest deployment when it
    /// installs `revision`.
    async fn deployment_to_follow(&self, revision: &RevisionId) -> Result<Follow> {
        if let Some(id) = self.followed_for(revision) {
            return Ok(Follow::Deployment(id));
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
        Ok(if newest_revision.id() == revision {
            Follow::Deployment(deployment_id(newest).to_owned())
        } else {
            Follow::Elsewhere(format!(
                "{} runs {} (deployment {} is {}), not {revision}",
                t.describe(),
                newest_revision.label(),
                deployment_id(newest),
                status_str(newest)
            ))
        })
    }
}

#[async_trait]
impl Rollbacker for CodeDeployRollbacker {
    fn target(&self) -> &TargetId {
        self.target.id()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE.with_convergence(true)
    }

    async fn rollback(&self, request: &RollbackRequest) -> Result<RollbackOutcome> {
        let t = &self.target;
        if request.dry_run == DryRun::Server {
            return Err(Error::unsupported(format!(
                "{} cannot check a rollback on the server: CodeDeploy has no dry run of StopDeployment or CreateDeployment; use a client dry run",
                t.describe()
            )));
        }
        let span = tracing::info_span!(
            "codedeploy.rollback",
            target = %t.id(),
            to = %request.to.id(),
            from = request.from.as_ref().map(|f| f.to_string()).unwrap_or_default(),
            actor = %request.actor,
            decided_at = %request.decided_at,
            dry_run = %request.dry_run
        );
        self.roll(request).instrument(span).await
    }

    async fn wait_converged(
        &self,
        revision: &RevisionId,
        timeout: Duration,
    ) -> Result<Convergence> {
        let t = &self.target;
        let span = tracing::info_span!("codedeploy.wait", target = %t.id(), revision = %revision);
        async {
            match self.deployment_to_follow(revision).await? {
                Follow::Deployment(id) => wait::converged(t, &id, revision, timeout).await,
                Follow::Elsewhere(detail) => Ok(Convergence::Failed { detail }),
            }
        }
        .instrument(span)
        .await
    }
}
