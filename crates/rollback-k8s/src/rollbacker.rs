//! `kubectl rollout undo` for one Deployment, as a [`Rollbacker`].

use std::time::Duration;

use async_trait::async_trait;
use rollback_core::{
    Capabilities, Convergence, DryRun, Error, Result, Revision, RevisionId, RollbackOutcome,
    RollbackRequest, Rollbacker, Target, TargetId,
};
use tracing::Instrument;

use crate::patch::pick_revision;
use crate::plan::{UndoChange, UndoPlan};
use crate::revision::K8sRevision;
use crate::target::{K8sDeployment, Snapshot};

/// Which revision [`K8sDeployment::undo`] restores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UndoTo {
    /// The revision before the newest one: `kubectl rollout undo`.
    Previous,
    /// The ReplicaSet numbered so: `kubectl rollout undo --to-revision=N`
    /// (0 means [`UndoTo::Previous`], as for kubectl).
    Number(i64),
    /// The revision with this id (a Deployment's pod-template hash, a
    /// StatefulSet's or DaemonSet's ControllerRevision hash), whatever its
    /// number now (what the engine asks for: the last known good revision).
    Id(RevisionId),
}

/// Options of [`K8sDeployment::undo`].
#[derive(Debug, Clone, Default)]
pub struct UndoOptions {
    /// Check instead of changing (`kubectl rollout undo
    /// --dry-run=client|server`). [`DryRun::None`] (default) takes the
    /// handle's [`crate::K8sDeploymentBuilder::dry_run`].
    pub dry_run: DryRun,
    /// The revision the caller believes is current (the bad one). When the
    /// Deployment has meanwhile moved to another revision, the undo is
    /// refused instead of overwriting that change.
    pub expect_current: Option<RevisionId>,
}

impl K8sDeployment {
    /// Roll the Deployment back with `kubectl rollout undo` semantics, in
    /// kubectl's order:
    /// - the revisions are the ReplicaSets it controls, numbered by their
    ///   `deployment.kubernetes.io/revision` annotation;
    /// - a client dry run stops here, having read and computed the patch
    ///   only, and reports what it would restore;
    /// - a paused Deployment is refused with kubectl's reason, unless the
    ///   handle was built with `resume_paused(true)`, which also resumes it;
    /// - a Deployment whose template already matches the revision is left
    ///   alone ([`RollbackOutcome::AlreadyAt`]);
    /// - a server dry run sends the patch with `dryRun=All`;
    /// - otherwise one JSON patch replaces `/spec/template` (the
    ///   ReplicaSet's, without the `pod-template-hash` label) and
    ///   `/metadata/annotations` (kubectl's skip list kept from the
    ///   Deployment, the rest copied from the ReplicaSet), with the
    ///   Deployment's resourceVersion as a precondition, so a concurrent
    ///   change fails with 409 instead of being overwritten. The patch is
    ///   the one step ([`rollback_core::steps::Steps`]) of a rollback, and
    ///   atomic: an undo cut short before or during it leaves the
    ///   Deployment as it was or fully restored, and asked again it patches
    ///   or finds the template matching.
    ///
    /// Dry runs answer [`RollbackOutcome::DryRun`], also where the template
    /// already matches. 409, 429 and 5xx answers are retried per the
    /// handle's [`rollback_core::policy::RetryPolicy`], each try reading the
    /// Deployment again.
    pub async fn undo(&self, to: &UndoTo, options: &UndoOptions) -> Result<RollbackOutcome> {
        let dry_run = self.dry_run_of(options.dry_run);
        let span = tracing::info_span!("k8s_undo", target = %self.id, to = ?to, dry_run = %dry_run);
        async {
            self.retry
                .run(
                    |_| self.undo_once(to, options.expect_current.as_ref(), dry_run),
                    fastrand::f64,
                    |attempt, err, wait| {
                        tracing::warn!(attempt, error = %err.message(), wait = ?wait, "undo failed; retrying");
                    },
                )
                .await
        }
        .instrument(span)
        .await
    }

    fn pick<'a>(&self, snapshot: &'a Snapshot, to: &UndoTo) -> Result<&'a K8sRevision> {
        let (ns, name) = (self.namespace(), self.name());
        let listing =
            format!("`kubectl rollout history deployment/{name} -n {ns}` lists its revisions");
        match to {
            UndoTo::Previous | UndoTo::Number(0) => pick_revision(&snapshot.revisions, 0).ok_or_else(|| {
                Error::not_found(format!(
                    "no rollout history found for deployment {name:?} (namespace {ns}): it has no earlier revision to roll back to"
                ))
            }),
            UndoTo::Number(n) => pick_revision(&snapshot.revisions, *n).ok_or_else(|| {
                Error::not_found(format!("unable to find specified revision {n} in history of Deployment {ns}/{name}; {listing}"))
            }),
            UndoTo::Id(id) => snapshot.revisions.iter().find(|r| r.id() == id).ok_or_else(|| {
                let known: Vec<String> =
                    snapshot.revisions.iter().map(|r| format!("{} ({})", r.id(), r.label())).collect();
                Error::not_found(format!(
                    "revision {id} is not in the history of Deployment {ns}/{name} (it has: {}); it may have been pruned \
                     by revisionHistoryLimit; {listing}",
                    if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                ))
            }),
        }
    }

    /// Refuse when the Deployment runs neither `expected` (what the caller
    /// rolls away from) nor `revision` (where it is going).
    fn refuse_a_concurrent_change(
        &self,
        snapshot: &Snapshot,
        revision: &K8sRevision,
        expected: Option<&RevisionId>,
    ) -> Result<()> {
        let Some(expected) = expected else {
            return Ok(());
        };
        let current = snapshot.current_revision()?;
        if current.id() == expected || current.id() == revision.id() {
            return Ok(());
        }
        Err(Error::permanent(format!(
            "not rolling back Deployment {}/{}: it changed concurrently to {} (pod-template-hash {}), \
             not the expected {expected}; re-evaluate it before rolling back",
            self.namespace(),
            self.name(),
            current.label(),
            current.id()
        )))
    }

    async fn undo_once(
        &self,
        to: &UndoTo,
        expect_current: Option<&RevisionId>,
        dry_run: DryRun,
    ) -> Result<RollbackOutcome> {
        let snapshot = self.snapshot().await?;
        let revision = self.pick(&snapshot, to)?;
        self.refuse_a_concurrent_change(&snapshot, revision, expect_current)?;
        let plan = UndoPlan::new(&snapshot, revision, self.resume_paused);
        tracing::debug!(%plan, "undo planned");
        self.carry_out(&plan, dry_run).await
    }

    /// Do what `plan` says, or check it (`dry_run`).
    async fn carry_out(&self, plan: &UndoPlan, dry_run: DryRun) -> Result<RollbackOutcome> {
        let patch = match (&plan.change, dry_run) {
            // kubectl answers a client dry run before it looks at `paused`.
            (UndoChange::Paused, DryRun::Client) => {
                return Ok(RollbackOutcome::DryRun {
                    detail: format!(
                        "client dry run: would roll back {}, but it is paused: a rollback is refused until it is resumed",
                        plan.what()
                    ),
                });
            }
            (UndoChange::Paused, _) => return Err(plan.paused()),
            (UndoChange::Nothing, DryRun::None) => {
                return Ok(RollbackOutcome::AlreadyAt {
                    detail: plan.skipped(),
                });
            }
            (UndoChange::Nothing, dry) => {
                return Ok(RollbackOutcome::DryRun {
                    detail: format!("{dry} dry run: {}", plan.skipped()),
                });
            }
            (UndoChange::Patch { .. }, DryRun::Client) => {
                return Ok(RollbackOutcome::DryRun {
                    detail: format!("client dry run: would {plan}"),
                });
            }
            (UndoChange::Patch { patch, .. }, _) => patch.clone(),
        };
        if dry_run == DryRun::Server {
            self.api.patch_deployment(patch, true).await?;
            return Ok(RollbackOutcome::DryRun {
                detail: format!(
                    "server dry run: the API server accepted rolling back {}",
                    plan.what()
                ),
            });
        }
        self.steps
            .step_paced("patch the Deployment's template")
            .await?;
        self.api.patch_deployment(patch, false).await?;
        tracing::info!(%plan, "rolled back");
        Ok(RollbackOutcome::RolledBack {
            detail: format!("rolled back {}{}", plan.what(), plan.resumed()),
        })
    }
}

#[async_trait]
impl Rollbacker for K8sDeployment {
    fn target(&self) -> &TargetId {
        &self.id
    }

    fn capabilities(&self) -> Capabilities {
        Target::capabilities(self)
    }

    /// [`K8sDeployment::undo`] to the revision id asked for, refused when
    /// the Deployment runs neither `request.from` nor `request.to`. It
    /// writes no time: the annotations it sets are kubectl's, copied from
    /// the ReplicaSet.
    async fn rollback(&self, request: &RollbackRequest) -> Result<RollbackOutcome> {
        let options = UndoOptions {
            dry_run: request.dry_run,
            expect_current: request.from.clone(),
        };
        self.undo(&UndoTo::Id(request.to.id().clone()), &options)
            .await
    }

    /// [`K8sDeployment::wait_rollout`] on `revision`, for `timeout` or the
    /// handle's `rollout_timeout`, whichever is shorter.
    async fn wait_converged(
        &self,
        revision: &RevisionId,
        timeout: Duration,
    ) -> Result<Convergence> {
        let timeout = self.rollout_timeout.map_or(timeout, |t| t.min(timeout));
        self.wait_rollout(Some(revision), timeout, |_| {}).await
    }
}
