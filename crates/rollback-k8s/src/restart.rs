//! `kubectl rollout restart` for one Deployment: a new pod-template
//! annotation makes the controller replace every pod, so the containers start
//! afresh (and, for instance, load the model an alias now points at).

use std::time::SystemTime;

use rollback_core::{Error, Result};
use serde_json::Value;
use tracing::Instrument;

use crate::patch::{RESTARTED_AT_ANNOTATION, restart_patch, restarted_at};
use crate::target::{DryRun, K8sDeployment};

/// Options of [`K8sDeployment::restart`].
#[derive(Debug, Clone, Default)]
pub struct RestartOptions {
    /// Validate only (server or client side, per the builder's [`DryRun`]).
    /// `kubectl rollout restart` has no dry run; this one works as
    /// `rollout undo --dry-run` does.
    pub dry_run: bool,
}

/// What [`K8sDeployment::restart`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartOutcome {
    /// The value of `kubectl.kubernetes.io/restartedAt` in the pod template
    /// (RFC 3339, UTC, to the second).
    pub restarted_at: String,
    /// Nothing was stored: a dry run.
    pub dry_run: bool,
    /// The Deployment's `metadata.generation` after the patch (before it, in
    /// a client dry run): the rollout is under way until the controller has
    /// observed it.
    pub generation: Option<i64>,
    /// A sentence for logs and audit records.
    pub detail: String,
}

impl K8sDeployment {
    /// Restart the Deployment's pods with `kubectl rollout restart`
    /// semantics:
    /// - a paused Deployment is refused with kubectl's message (a restart
    ///   would not roll out until it is resumed); `resume_paused` of the
    ///   builder applies to [`K8sDeployment::undo`] only;
    /// - otherwise one strategic merge patch sets the pod template's
    ///   `kubectl.kubernetes.io/restartedAt` annotation to the current time
    ///   (RFC 3339, UTC, to the second) and touches nothing else, so the
    ///   controller rolls out a new ReplicaSet with the same containers;
    /// - like kubectl, it sends no resourceVersion precondition: the patch
    ///   sets one key and cannot overwrite a concurrent change;
    /// - where kubectl fails because a restart already happened within the
    ///   same second (the template would not change), this waits for the
    ///   next second, so every call restarts;
    /// - beyond kubectl, a dry run (server or client side, per the
    ///   builder's [`DryRun`]) reports what would be patched.
    ///
    /// 409, 429 and 5xx answers are retried per the handle's
    /// [`rollback_core::RetryPolicy`]. Follow it with
    /// [`K8sDeployment::wait_rollout`] to wait until the new pods serve.
    pub async fn restart(&self, options: &RestartOptions) -> Result<RestartOutcome> {
        let span = tracing::info_span!("k8s_restart", target = %self.id, dry_run = options.dry_run);
        async {
            self.retry
                .run(
                    |_| self.restart_once(options),
                    fastrand::f64,
                    |attempt, err, wait| {
                        tracing::warn!(attempt, error = %err.message(), wait = ?wait, "restart failed; retrying");
                    },
                )
                .await
        }
        .instrument(span)
        .await
    }

    async fn restart_once(&self, options: &RestartOptions) -> Result<RestartOutcome> {
        let deployment = self.api.deployment().await?;
        let (ns, name) = (self.namespace(), self.name());
        let paused = deployment
            .data
            .pointer("/spec/paused")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if paused {
            return Err(Error::permanent(format!(
                "deployments.apps {name:?} can't restart paused deployment (run rollout resume first): \
                 resume it with 'kubectl rollout resume deployment/{name} -n {ns}' and try again"
            )));
        }
        let previous = deployment
            .data
            .pointer("/spec/template/metadata/annotations")
            .and_then(|a| a.get(RESTARTED_AT_ANNOTATION))
            .and_then(Value::as_str);
        let at = loop {
            match restarted_at(previous, SystemTime::now()) {
                Ok(at) => break at,
                Err(wait) => tokio::time::sleep(wait).await,
            }
        };
        let what = format!("Deployment {ns}/{name} ({RESTARTED_AT_ANNOTATION}={at})");
        if options.dry_run && self.dry_run == DryRun::Client {
            return Ok(RestartOutcome {
                restarted_at: at,
                dry_run: true,
                generation: deployment.metadata.generation,
                detail: format!("client dry run: would restart {what}"),
            });
        }
        let patched = self
            .api
            .strategic_patch_deployment(restart_patch(&at), options.dry_run)
            .await?;
        let detail = if options.dry_run {
            format!("server dry run: the API server accepted restarting {what}")
        } else {
            tracing::info!(restarted_at = %at, "restarted");
            format!("restarted {what}: the controller replaces its pods with a new ReplicaSet")
        };
        Ok(RestartOutcome {
            restarted_at: at,
            dry_run: options.dry_run,
            generation: patched.metadata.generation,
            detail,
        })
    }
}
