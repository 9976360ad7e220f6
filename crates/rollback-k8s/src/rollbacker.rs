//! `kubectl rollout undo` for one Deployment, as a [`Rollbacker`].

use std::time::Duration;

use async_trait::async_trait;
use rollback_core::{
    Capabilities, Convergence, Error, ErrorKind, Result, Revision, RevisionId, RollbackOutcome,
    RollbackRequest, Rollbacker, Target,
};
use tracing::Instrument;

use crate::patch::{
    PatchGuards, pick_revision, rollback_annotations, rollback_patch, template_without_hash,
    templates_equal_ignoring_hash,
};
use crate::revision::K8sRevision;
use crate::target::{DryRun, K8sDeployment, Snapshot};

/// Which revision [`K8sDeployment::undo`] restores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UndoTo {
    /// The revision before the newest one: `kubectl rollout undo`.
    Previous,
    /// The ReplicaSet numbered so: `kubectl rollout undo --to-revision=N`
    /// (0 means [`UndoTo::Previous`], as for kubectl).
    Number(i64),
    /// The revision with this pod-template hash, whatever its number now
    /// (what the engine asks for: the last known good revision).
    Id(RevisionId),
}

/// Options of [`K8sDeployment::undo`].
#[derive(Debug, Clone, Default)]
pub struct UndoOptions {
    /// Validate only (server or client side, per the builder's [`DryRun`]).
    pub dry_run: bool,
    /// The revision the caller believes is current (the bad one). When the
    /// Deployment has meanwhile moved to another revision, the undo is
    /// refused instead of overwriting that change.
    pub expect_current: Option<RevisionId>,
}

impl K8sDeployment {
    /// Roll the Deployment back with `kubectl rollout undo` semantics:
    /// - the revisions are the ReplicaSets it controls, numbered by their
    ///   `deployment.kubernetes.io/revision` annotation;
    /// - a client dry run reads only and reports what it would restore;
    /// - a paused Deployment is refused with kubectl's reason, unless the
    ///   handle was built with `resume_paused(true)`, which also resumes it;
    /// - a Deployment whose template already matches the revision is left
    ///   alone ([`RollbackOutcome::AlreadyAt`]);
    /// - otherwise one JSON patch replaces `/spec/template` (the
    ///   ReplicaSet's, without the `pod-template-hash` label) and
    ///   `/metadata/annotations` (kubectl's skip list kept from the
    ///   Deployment, the rest copied from the ReplicaSet), with the
    ///   Deployment's resourceVersion as a precondition, so a concurrent
    ///   change fails with 409 instead of being overwritten.
    ///
    /// 409, 429 and 5xx answers are retried per the handle's
    /// [`rollback_core::RetryPolicy`], each try reading the Deployment again.
    pub async fn undo(&self, to: &UndoTo, options: &UndoOptions) -> Result<RollbackOutcome> {
        let span =
            tracing::info_span!("k8s_undo", target = %self.id, to = ?to, dry_run = options.dry_run);
        async {
            self.retry
                .run(
                    |_| self.undo_once(to, options),
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

    async fn undo_once(&self, to: &UndoTo, options: &UndoOptions) -> Result<RollbackOutcome> {
        let snapshot = self.snapshot().await?;
        let (ns, name) = (self.namespace(), self.name());
        let target = self.pick(&snapshot, to)?;
        let what = format!(
            "Deployment {ns}/{name} to {} (pod-template-hash {}, {})",
            target.label(),
            target.id(),
            target.images()
        );

        if let Some(expected) = &options.expect_current {
            let current = snapshot.current_revision()?;
            if current.id() != expected && current.id() != target.id() {
                return Err(Error::permanent(format!(
                    "not rolling back Deployment {ns}/{name}: it changed concurrently to {} (pod-template-hash {}), \
                     not the expected {expected}; re-evaluate it before rolling back",
                    current.label(),
                    current.id()
                )));
            }
        }

        if options.dry_run && self.dry_run == DryRun::Client {
            return Ok(RollbackOutcome::DryRun {
                detail: format!("client dry run: would roll back {what}"),
            });
        }
        let paused = snapshot.paused();
        if paused && !self.resume_paused {
            return Err(Error::permanent(format!(
                "you cannot rollback a paused deployment; resume it first with 'kubectl rollout resume deployment/{name}' \
                 and try again (namespace {ns}; or build the rollbacker with resume_paused(true))"
            )));
        }
        let deployment_template = snapshot
            .deployment
            .data
            .pointer("/spec/template")
            .cloned()
            .unwrap_or_default();
        if templates_equal_ignoring_hash(target.template(), &deployment_template) {
            return Ok(RollbackOutcome::AlreadyAt {
                detail: format!(
                    "skipped rollback (current template already matches revision {}): Deployment {ns}/{name} already runs {}",
                    target.number(),
                    target.id()
                ),
            });
        }

        let meta = &snapshot.deployment.metadata;
        let annotations = rollback_annotations(
            &meta.annotations.clone().unwrap_or_default(),
            target.annotations(),
        );
        let patch = rollback_patch(
            &template_without_hash(target.template()),
            &annotations,
            &PatchGuards {
                resource_version: meta.resource_version.as_deref(),
                resume: paused,
                has_annotations: meta.annotations.is_some(),
            },
        );
        let server_dry_run = options.dry_run;
        self.api.patch_deployment(patch, server_dry_run).await?;
        if server_dry_run {
            Ok(RollbackOutcome::DryRun {
                detail: format!("server dry run: the API server accepted rolling back {what}"),
            })
        } else {
            tracing::info!(revision = %target.id(), number = target.number(), "rolled back");
            let resumed = if paused { " and resumed it" } else { "" };
            Ok(RollbackOutcome::RolledBack {
                detail: format!("rolled back {what}{resumed}"),
            })
        }
    }
}

#[async_trait]
impl Rollbacker for K8sDeployment {
    fn capabilities(&self) -> Capabilities {
        Target::capabilities(self)
    }

    async fn rollback(&self, request: &RollbackRequest) -> Result<RollbackOutcome> {
        if request.target != self.id {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "this rollbacker serves target {}, not {}",
                    self.id, request.target
                ),
            ));
        }
        let options = UndoOptions {
            dry_run: request.dry_run,
            expect_current: request.from.clone(),
        };
        self.undo(&UndoTo::Id(request.to.id().clone()), &options)
            .await
    }

    async fn wait_converged(
        &self,
        revision: &RevisionId,
        timeout: Duration,
    ) -> Result<Convergence> {
        self.wait_rollout(Some(revision), timeout, |_| {}).await
    }
}
