//! Commits the last good tree: the [`Rollbacker`] of a path on a branch.

use std::sync::Arc;

use async_trait::async_trait;
use rollback_core::steps::Steps;
use rollback_core::{
    Capabilities, DryRun, Error, Result, RollbackOutcome, RollbackRequest, Rollbacker, TargetId,
};
use tracing::Instrument as _;

use crate::plan::RollbackPlan;
use crate::target::BranchPath;
use crate::working_clone::{Pushed, RefUpdate};
use crate::{GitError, GitTarget};

/// Rolls a [`GitTarget`] back the GitOps way: by committing the last good
/// state on top of the branch, never by rewriting it.
///
/// A rollback of path P to revision T (a tree or blob id from the history):
/// 1. fetches the branch and the notes ref, and reads P's history
///    ([`RollbackPlan`]): T must be in it (else `NotFound`, nothing
///    written); P must still hold the revision the engine judged
///    (`request.from`), else a `Conflict` not worth retrying;
/// 2. writes, in the working clone only, one commit whose tree is the
///    tip's with P replaced by T, with the trailers `Rollback-To`,
///    `Rollback-From`, `Rollback-Path`, `Reason`, `Rollback-Decided-At`
///    (the request's decision time: the rollback's identity) and
///    `Rollback-Actor`, dated at the decision time; and the bad verdict of
///    the revision left in its note under the notes ref;
/// 3. pushes both in one atomic push, each ref leased to the tip it was
///    built on: the commit is a child of the tip, so the update is a
///    fast-forward or nothing. A push rejected because someone pushed
///    meanwhile goes back to 1 (re-fetch, rebuild on the new tip) up to
///    `push_attempts` times, then escalates with a `Conflict` not worth
///    retrying. A remote that cannot push atomically gets the mark, then
///    the commit, in two pushes.
///
/// The push is the one step that changes the remote (a step of its
/// [`Steps`]); cut short anywhere, the same request finds what the remote
/// holds: a commit of P with the same `Rollback-Decided-At` is this
/// rollback, done (`AlreadyAt`, with a missing mark completed), so nothing
/// is written twice; P already at T needs nothing.
///
/// Git has no server-side dry run: [`DryRun::Client`] fetches, builds the
/// commit in the working clone and asks `git push --dry-run`, which checks
/// the credentials and the fast-forward without changing the remote;
/// [`DryRun::Server`] is `Unsupported`. A rollback is converged when its
/// push lands: syncing the cluster is Argo CD's or Flux's part.
#[derive(Debug, Clone)]
pub struct GitRollbacker {
    inner: Arc<BranchPath>,
    steps: Steps,
}

impl GitRollbacker {
    /// The rollbacker of `target`.
    pub fn new(target: &GitTarget) -> Self {
        GitRollbacker {
            inner: target.inner.clone(),
            steps: Steps::new(),
        }
    }

    /// Count the pushes of each rollback with `steps`, which may stop them
    /// (see [`Steps::stop_after`]) to test what an interruption leaves.
    #[must_use]
    pub fn steps(mut self, steps: Steps) -> Self {
        self.steps = steps;
        self
    }

    /// What `request` would write, read from the remote; changes nothing
    /// there.
    pub async fn plan(&self, request: &RollbackRequest) -> Result<RollbackPlan> {
        let t = &self.inner;
        async {
            let _lock = t.clone.lock().await?;
            read_plan(t, request).await
        }
        .await
        .map_err(|e| t.context(e))
    }

    async fn run(&self, request: &RollbackRequest) -> Result<RollbackOutcome, Failure> {
        let t = &self.inner;
        let _lock = t.clone.lock().await?;
        let mut atomic = true;
        let mut attempts = 0;
        let mut raced = String::new();
        loop {
            let plan = read_plan(t, request).await?;
            if request.dry_run == DryRun::Client {
                return Ok(self.dry_run(&plan).await?);
            }
            if plan.is_complete() {
                return Ok(RollbackOutcome::AlreadyAt {
                    detail: plan.to_string(),
                });
            }
            if attempts == t.push_attempts {
                return Err(GitError::Conflict {
                    message: format!(
                        "pushing the rollback of {} was rejected {attempts} times because others pushed meanwhile (last: {raced}); the rollback commit is not on the branch: ask again, or commit the rollback by hand",
                        t.describe()
                    ),
                    retryable: false,
                }
                .into());
            }
            attempts += 1;
            tracing::debug!(attempt = attempts, %plan, "rollback plan");
            let prepared = plan.prepare(t).await?;
            let (branch, notes) = plan.updates(t, &prepared);
            let outcome = if atomic {
                let step = [plan.commit_step(), plan.mark_step()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" and ");
                let updates: Vec<RefUpdate> = [branch.clone(), notes.clone()]
                    .into_iter()
                    .flatten()
                    .collect();
                self.steps.step_paced(&step).await.map_err(Failure::Step)?;
                match t
                    .clone
                    .push(&updates, true, false, &push_operation(t))
                    .await?
                {
                    Pushed::AtomicUnsupported => {
                        tracing::info!(repository = %t.clone.shown(), "the remote cannot push atomically: pushing the mark, then the commit");
                        atomic = false;
                        self.push_apart(&plan, branch, notes).await?
                    }
                    other => other,
                }
            } else {
                self.push_apart(&plan, branch, notes).await?
            };
            match outcome {
                Pushed::Done => {
                    let from = plan.from().map_or(String::new(), |f| {
                        format!(" (rolled back from {f}, marked bad in {})", t.notes_ref)
                    });
                    return Ok(match prepared.commit {
                        Some(c) => RollbackOutcome::RolledBack {
                            detail: format!(
                                "pushed commit {c} to branch {} of {}: {} holds {} again{from}",
                                t.branch,
                                t.clone.shown(),
                                t.path,
                                plan.to()
                            ),
                        },
                        None => RollbackOutcome::AlreadyAt {
                            detail: format!("{plan} (completed now)"),
                        },
                    });
                }
                Pushed::Raced(why) => {
                    tracing::info!(attempt = attempts, %why, "someone pushed first: fetching and rebuilding");
                    raced = why;
                }
                Pushed::AtomicUnsupported => {
                    return Err(GitError::Corrupt(
                        "a push that was not atomic answered that atomic pushes are unsupported"
                            .into(),
                    )
                    .into());
                }
            }
        }
    }

    /// The mark, then the commit, each its own push and step (for a remote
    /// that cannot push atomically). Stops at the first race.
    async fn push_apart(
        &self,
        plan: &RollbackPlan,
        branch: Option<RefUpdate>,
        notes: Option<RefUpdate>,
    ) -> Result<Pushed, Failure> {
        let t = &self.inner;
        for (step, update) in [(plan.mark_step(), notes), (plan.commit_step(), branch)] {
            let (Some(step), Some(update)) = (step, update) else {
                continue;
            };
            self.steps.step_paced(&step).await.map_err(Failure::Step)?;
            match t
                .clone
                .push(&[update], false, false, &push_operation(t))
                .await?
            {
                Pushed::Done => {}
                other => return Ok(other),
            }
        }
        Ok(Pushed::Done)
    }

    async fn dry_run(&self, plan: &RollbackPlan) -> Result<RollbackOutcome, GitError> {
        let t = &self.inner;
        if plan.is_complete() {
            return Ok(RollbackOutcome::DryRun {
                detail: format!("would write {plan}"),
            });
        }
        let prepared = plan.prepare(t).await?;
        let (branch, notes) = plan.updates(t, &prepared);
        let updates: Vec<RefUpdate> = [branch, notes].into_iter().flatten().collect();
        let op = format!(
            "checking the push of the rollback of {} (dry run)",
            t.describe()
        );
        let mut checked = t.clone.push(&updates, true, true, &op).await?;
        if checked == Pushed::AtomicUnsupported {
            checked = t.clone.push(&updates, false, true, &op).await?;
        }
        match checked {
            Pushed::Done => Ok(RollbackOutcome::DryRun {
                detail: format!(
                    "would push {plan} (git has no server-side dry run: checked by reading and by git push --dry-run)"
                ),
            }),
            Pushed::Raced(why) => Err(GitError::Conflict {
                message: format!("{op}: someone pushed meanwhile ({why}); ask again"),
                retryable: true,
            }),
            Pushed::AtomicUnsupported => Err(GitError::Corrupt(format!(
                "{op}: a push that was not atomic answered that atomic pushes are unsupported"
            ))),
        }
    }
}

/// Why a rollback stopped: git, or a step refused by [`Steps`] (a test's
/// interruption, kept as it is).
#[derive(Debug)]
enum Failure {
    Git(GitError),
    Step(Error),
}

impl From<GitError> for Failure {
    fn from(e: GitError) -> Self {
        Failure::Git(e)
    }
}

fn push_operation(t: &BranchPath) -> String {
    format!("pushing the rollback of {}", t.describe())
}

/// Read the branch and decide what `request` leaves to write (the clone's
/// lock held).
async fn read_plan(t: &BranchPath, request: &RollbackRequest) -> Result<RollbackPlan, GitError> {
    let (tips, log) = t.read(t.history_limit).await?;
    let notes = match &tips.notes {
        Some(_) => {
            let mut ids: Vec<&str> = log.iter().filter_map(|c| c.object_id()).collect();
            ids.extend(
                log.iter()
                    .filter_map(|c| c.trailer(crate::trailers::ROLLBACK_FROM)),
            );
            t.clone.notes(&t.notes_ref, &ids).await?
        }
        None => Default::default(),
    };
    RollbackPlan::decide(t, request, &tips, &log, &notes)
}

#[async_trait]
impl Rollbacker for GitRollbacker {
    fn target(&self) -> &TargetId {
        &self.inner.id
    }

    fn capabilities(&self) -> Capabilities {
        // No server-side dry run; converged when the push lands.
        Capabilities::NONE
    }

    async fn rollback(&self, request: &RollbackRequest) -> Result<RollbackOutcome> {
        let t = &self.inner;
        let span = tracing::info_span!(
            "git_rollback",
            target = %t.id,
            to = %request.to.id(),
            dry_run = %request.dry_run
        );
        async {
            if request.dry_run == DryRun::Server {
                return Err(Error::unsupported(format!(
                    "target {}: git has no server-side dry run; use a client dry run, which builds the commit locally and checks the push with git push --dry-run",
                    t.id
                )));
            }
            self.run(request).await.map_err(|e| match e {
                Failure::Step(e) => e,
                Failure::Git(e) => t.context(e),
            })
        }
        .instrument(span)
        .await
    }
}

fn _dyn_ok(_: Arc<dyn Rollbacker>) {}
