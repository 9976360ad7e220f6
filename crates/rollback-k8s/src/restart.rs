//! `kubectl rollout restart` for one Deployment: a new pod-template
//! annotation makes the controller replace every pod, so the containers start
//! afresh (and, for instance, load the model an alias now points at).

use rollback_core::{DryRun, Error, Result, Timestamp};
use serde_json::Value;
use tracing::Instrument;

use crate::patch::{RESTARTED_AT_ANNOTATION, restart_patch, restarted_at};
use crate::target::K8sDeployment;

/// Options of [`K8sDeployment::restart`]: `RestartOptions::new(at)`, then
/// the setters.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RestartOptions {
    /// The time written into `kubectl.kubernetes.io/restartedAt`, by the
    /// caller's clock (the engine's time of the rollback a restart follows),
    /// never read from the system here.
    pub at: Timestamp,
    /// Check instead of restarting. `kubectl rollout restart` has no dry
    /// run; this one works as `rollout undo --dry-run=client|server` does.
    /// [`DryRun::None`] (default) takes the handle's
    /// [`crate::K8sDeploymentBuilder::dry_run`].
    pub dry_run: DryRun,
    /// A template already stamped with `at` (to the second) was restarted by
    /// this same request: patch nothing. For callers that repeat a restart
    /// after an interruption (a post-rollback hook run again), so it
    /// happens once. Off by default, as in kubectl, where every call
    /// restarts.
    pub once: bool,
}

impl RestartOptions {
    /// A restart stamped `at`, not a dry run.
    pub fn new(at: Timestamp) -> Self {
        RestartOptions {
            at,
            dry_run: DryRun::None,
            once: false,
        }
    }

    /// Restart once per `at`: see [`RestartOptions::once`].
    #[must_use]
    pub fn once(mut self, yes: bool) -> Self {
        self.once = yes;
        self
    }

    /// Check instead of restarting.
    #[must_use]
    pub fn dry_run(mut self, dry_run: DryRun) -> Self {
        self.dry_run = dry_run;
        self
    }
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
    /// With [`RestartOptions::once`]: the template already held this stamp,
    /// nothing was patched.
    pub already: bool,
}

impl K8sDeployment {
    /// Restart the Deployment's pods with `kubectl rollout restart`
    /// semantics:
    /// - a paused Deployment is refused with kubectl's message (a restart
    ///   would not roll out until it is resumed); `resume_paused` of the
    ///   builder applies to [`K8sDeployment::undo`] only;
    /// - otherwise one strategic merge patch sets the pod template's
    ///   `kubectl.kubernetes.io/restartedAt` annotation to
    ///   [`RestartOptions::at`] (RFC 3339, UTC, to the second) and touches
    ///   nothing else, so the controller rolls out a new ReplicaSet with the
    ///   same containers; that patch is one step of the handle's
    ///   [`rollback_core::steps::Steps`];
    /// - like kubectl, it sends no resourceVersion precondition: the patch
    ///   sets one key and cannot overwrite a concurrent change;
    /// - where kubectl fails because a restart already happened within the
    ///   same second (the template would not change), this waits until the
    ///   second after `at` and stamps that one, so every call restarts
    ///   (a restart asked again with the same `at` restarts again);
    /// - beyond kubectl, a dry run ([`DryRun::Server`]: the API server
    ///   validates the patch; [`DryRun::Client`]: read only) reports what
    ///   would be patched.
    ///
    /// 409, 429 and 5xx answers are retried per the handle's
    /// [`rollback_core::policy::RetryPolicy`]. Follow it with
    /// [`K8sDeployment::wait_rollout`] to wait until the new pods serve.
    pub async fn restart(&self, options: &RestartOptions) -> Result<RestartOutcome> {
        let span = tracing::info_span!("k8s_restart", target = %self.id, at = %options.at, dry_run = %options.dry_run);
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
        let stamp = humantime::format_rfc3339_seconds(options.at.to_system_time()).to_string();
        if options.once && previous == Some(stamp.as_str()) {
            return Ok(RestartOutcome {
                detail: format!(
                    "Deployment {ns}/{name} was already restarted at {stamp} ({RESTARTED_AT_ANNOTATION}): nothing patched"
                ),
                restarted_at: stamp,
                dry_run: options.dry_run.is_dry(),
                generation: deployment.metadata.generation,
                already: true,
            });
        }
        let mut time = options.at;
        let at = loop {
            match restarted_at(previous, time) {
                Ok(at) => break at,
                Err(wait) => {
                    tokio::time::sleep(wait).await;
                    time = time.plus(wait);
                }
            }
        };
        let what = format!("Deployment {ns}/{name} ({RESTARTED_AT_ANNOTATION}={at})");
        let dry_run = self.dry_run_of(options.dry_run);
        if dry_run == DryRun::Client {
            return Ok(RestartOutcome {
                restarted_at: at,
                dry_run: true,
                generation: deployment.metadata.generation,
                detail: format!("client dry run: would restart {what}"),
                already: false,
            });
        }
        if dry_run == DryRun::None {
            self.steps
                .step_paced("patch the Deployment's restartedAt")
                .await?;
        }
        let patched = self
            .api
            .strategic_patch_deployment(restart_patch(&at), dry_run.is_dry())
            .await?;
        let detail = if dry_run.is_dry() {
            format!("server dry run: the API server accepted restarting {what}")
        } else {
            tracing::info!(restarted_at = %at, "restarted");
            format!("restarted {what}: the controller replaces its pods with a new ReplicaSet")
        };
        Ok(RestartOutcome {
            restarted_at: at,
            dry_run: dry_run.is_dry(),
            generation: patched.metadata.generation,
            detail,
            already: false,
        })
    }
}
