//! `kubectl rollout undo` for one StatefulSet or DaemonSet, as a
//! [`Rollbacker`].

use std::time::Duration;

use async_trait::async_trait;
use rollback_core::{
    Capabilities, Convergence, DryRun, Error, Result, Revision, RevisionId, RollbackOutcome,
    RollbackRequest, Rollbacker, Target, TargetId,
};
use tracing::Instrument;

use super::{K8sControllerRevision, K8sWorkload, WorkloadSnapshot};
use crate::patch::{pick_revision, revision_patch, templates_equal};
use crate::{UndoOptions, UndoTo};

impl K8sWorkload {
    /// Roll the object back with `kubectl rollout undo` semantics, in
    /// kubectl's order:
    /// - a negative revision number is not in the history;
    /// - the revisions are the ControllerRevisions it controls, numbered by
    ///   their `revision`; the previous one ([`UndoTo::Previous`] or
    ///   revision 0) is the second highest, and there is none with fewer
    ///   than two revisions ("no last revision to roll back to");
    /// - a client dry run stops here, having read and computed only, and
    ///   reports what it would restore;
    /// - an object whose template already matches the revision's is left
    ///   alone ([`RollbackOutcome::AlreadyAt`], kubectl's "skipped
    ///   rollback");
    /// - a server dry run sends the patch with `dryRun=All`;
    /// - otherwise one strategic merge patch, the ControllerRevision's data
    ///   (`{"spec": {"template": {"$patch": "replace", ...}}}`) as kubectl
    ///   sends it, with the object's resourceVersion as a precondition so a
    ///   concurrent change fails with 409 instead of being overwritten. The
    ///   patch is the one step of a rollback, and atomic: asked again after
    ///   an interruption, the undo patches or finds the template matching.
    ///
    /// 409, 429 and 5xx answers are retried per the handle's retry policy,
    /// each try reading the object again.
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

    fn listing(&self) -> String {
        format!(
            "`kubectl rollout history {}/{} -n {}` lists its revisions",
            self.kind().singular(),
            self.name(),
            self.namespace()
        )
    }

    fn pick<'a>(
        &self,
        snapshot: &'a WorkloadSnapshot,
        to: &UndoTo,
    ) -> Result<&'a K8sControllerRevision> {
        let revisions = &snapshot.revisions;
        match to {
            UndoTo::Previous | UndoTo::Number(0) => pick_revision(revisions, 0).ok_or_else(|| {
                Error::not_found(format!(
                    "no last revision to roll back to: {} has {} in its history; {}",
                    self.what(),
                    match revisions.len() {
                        0 => "no ControllerRevision".to_owned(),
                        1 => format!("only revision {}", revisions[0].number()),
                        n => format!("{n} ControllerRevisions"),
                    },
                    self.listing()
                ))
            }),
            UndoTo::Number(n) => pick_revision(revisions, *n).ok_or_else(|| {
                Error::not_found(format!(
                    "unable to find specified revision {n} in history of {}; {}",
                    self.what(),
                    self.listing()
                ))
            }),
            UndoTo::Id(id) => revisions.iter().find(|r| r.id() == id).ok_or_else(|| {
                let known: Vec<String> = revisions
                    .iter()
                    .map(|r| format!("{} ({})", r.id(), r.label()))
                    .collect();
                Error::not_found(format!(
                    "revision {id} is not in the history of {} (it has: {}); it may have been pruned \
                     by revisionHistoryLimit; {}",
                    self.what(),
                    if known.is_empty() { "none".to_owned() } else { known.join(", ") },
                    self.listing()
                ))
            }),
        }
    }

    /// Refuse when the object runs neither `expected` nor `revision`.
    fn refuse_a_concurrent_change(
        &self,
        snapshot: &WorkloadSnapshot,
        revision: &K8sControllerRevision,
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
            "not rolling back {}: it changed concurrently to {} ({}), not the expected {expected}; \
             re-evaluate it before rolling back",
            self.what(),
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
        if let UndoTo::Number(n) = to
            && *n < 0
        {
            return Err(Error::not_found(format!(
                "unable to find specified revision {n} in history of {}; {}",
                self.what(),
                self.listing()
            )));
        }
        let snapshot = self.snapshot().await?;
        let revision = self.pick(&snapshot, to)?;
        self.refuse_a_concurrent_change(&snapshot, revision, expect_current)?;
        let what = format!(
            "{} to revision {} ({}, {})",
            self.what(),
            revision.number(),
            revision.id(),
            revision.images()
        );
        let template = snapshot
            .object
            .data
            .pointer("/spec/template")
            .cloned()
            .unwrap_or_default();
        let matches = templates_equal(revision.template(), &template);
        let skipped = || {
            format!(
                "skipped rollback (current template already matches revision {}): {} already runs {}",
                revision.number(),
                self.what(),
                revision.id()
            )
        };
        match (matches, dry_run) {
            (true, DryRun::None) => return Ok(RollbackOutcome::AlreadyAt { detail: skipped() }),
            (true, dry) => {
                return Ok(RollbackOutcome::DryRun {
                    detail: format!("{dry} dry run: {}", skipped()),
                });
            }
            (false, DryRun::Client) => {
                return Ok(RollbackOutcome::DryRun {
                    detail: format!("client dry run: would roll back {what}"),
                });
            }
            (false, _) => {}
        }
        let patch = revision_patch(
            revision.data(),
            snapshot.object.metadata.resource_version.as_deref(),
        );
        if dry_run == DryRun::Server {
            self.api.patch(patch, true).await?;
            return Ok(RollbackOutcome::DryRun {
                detail: format!("server dry run: the API server accepted rolling back {what}"),
            });
        }
        self.steps
            .step_paced(match self.kind() {
                super::WorkloadKind::StatefulSet => "patch the StatefulSet's template",
                super::WorkloadKind::DaemonSet => "patch the DaemonSet's template",
            })
            .await?;
        self.api.patch(patch, false).await?;
        tracing::info!(%what, "rolled back");
        Ok(RollbackOutcome::RolledBack {
            detail: format!("rolled back {what}"),
        })
    }
}

#[async_trait]
impl Rollbacker for K8sWorkload {
    fn target(&self) -> &TargetId {
        &self.id
    }

    fn capabilities(&self) -> Capabilities {
        Target::capabilities(self)
    }

    /// [`K8sWorkload::undo`] to the revision id asked for, refused when the
    /// object runs neither `request.from` nor `request.to`. It writes no
    /// record of its own: the ControllerRevisions are the history.
    async fn rollback(&self, request: &RollbackRequest) -> Result<RollbackOutcome> {
        let options = UndoOptions {
            dry_run: request.dry_run,
            expect_current: request.from.clone(),
        };
        self.undo(&UndoTo::Id(request.to.id().clone()), &options)
            .await
    }

    /// [`K8sWorkload::wait_rollout`] on `revision`, for `timeout` or the
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
