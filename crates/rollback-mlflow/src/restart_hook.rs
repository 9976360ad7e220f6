//! Reloading serving with a Kubernetes rollout restart (feature `k8s`).

use std::time::Duration;

use async_trait::async_trait;
use rollback_core::{Convergence, Error, ErrorKind, Result, RevisionId, Timestamp};
use rollback_k8s::{K8sDeployment, RestartOptions, RolloutStatus};

use crate::AliasMove;
use crate::hook::PostRollbackHook;

/// Restarts the Deployment of the model server after the alias moved, as
/// `kubectl rollout restart` does ([`K8sDeployment::restart`]): the new pods
/// resolve `models:/<model>@<alias>` again when they load the model, and so
/// serve the restored version. The restart is stamped with the rollback's
/// decision time ([`AliasMove::at_ms`]), not the clock's.
///
/// - [`after_rollback`](PostRollbackHook::after_rollback) restarts the
///   Deployment; with [`RolloutRestartHook::wait_for_rollout`] it also waits
///   until the rollout converges ([`K8sDeployment::wait_rollout`]) and fails
///   when it does not within the timeout.
/// - [`wait_ready`](PostRollbackHook::wait_ready) (what
///   [`crate::MlflowRollbacker`]'s `wait_converged` calls) waits for the
///   rollout, so the engine's verification starts on the new pods.
///
/// Its errors say that the alias already moved, and keep the restart's
/// [`ErrorKind`]: a paused Deployment is refused with kubectl's message
/// (permanent), a 403 is unauthorized, 409/429/5xx are transient after the
/// handle's own retries. A rollout that fails (`ProgressDeadlineExceeded`) or
/// does not converge in time is permanent: restarting again would only start
/// the rollout over.
///
/// ```no_run
/// # async fn run(kube: rollback_k8s::K8sDeploymentBuilder) -> rollback_core::Result<()> {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use rollback_mlflow::{MlflowClient, MlflowTarget, RolloutRestartHook};
///
/// // kube: rollback_k8s::K8sDeployment::builder(kube::Client::try_default().await?)
/// let server = kube.namespace("ml").name("recommender-serving").build()?;
/// let target = MlflowTarget::builder(MlflowClient::from_env()?)
///     .model("recommender")
///     .alias("champion")
///     .build()?;
/// let rollbacker = target.rollbacker().hook(Arc::new(
///     RolloutRestartHook::new(server).wait_for_rollout(Duration::from_secs(600)),
/// ));
/// # let _ = rollbacker;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RolloutRestartHook {
    deployment: K8sDeployment,
    wait: Option<Duration>,
    name: String,
}

impl RolloutRestartHook {
    /// A hook restarting `deployment` (built with
    /// [`K8sDeployment::builder`], whose retry policy and poll interval
    /// apply). It does not wait for the rollout unless
    /// [`wait_for_rollout`](Self::wait_for_rollout) is set.
    pub fn new(deployment: K8sDeployment) -> Self {
        let name = format!(
            "rollout restart of Deployment {}/{}",
            deployment.namespace(),
            deployment.name()
        );
        RolloutRestartHook {
            deployment,
            wait: None,
            name,
        }
    }

    /// After the restart, wait until the rollout converges, at most
    /// `timeout`; the hook fails when it does not.
    pub fn wait_for_rollout(mut self, timeout: Duration) -> Self {
        self.wait = Some(timeout);
        self
    }

    /// The Deployment it restarts.
    pub fn deployment(&self) -> &K8sDeployment {
        &self.deployment
    }

    fn what(&self) -> String {
        format!(
            "Deployment {}/{}",
            self.deployment.namespace(),
            self.deployment.name()
        )
    }

    async fn wait(&self, timeout: Duration) -> Result<Convergence> {
        let what = self.what();
        self.deployment
            .wait_rollout(None, timeout, |s: &RolloutStatus| {
                tracing::info!(deployment = %what, status = %s.message, "model server rollout");
            })
            .await
    }
}

/// `alias champion of registered model "recommender" already points at version 3`.
fn moved(event: &AliasMove) -> String {
    let pointer = match (&event.alias, &event.stage) {
        (Some(a), _) => format!("alias {a}"),
        (None, Some(s)) => format!("stage {s}"),
        (None, None) => "the alias".to_owned(),
    };
    format!(
        "{pointer} of registered model {:?} already points at version {}",
        event.model, event.to
    )
}

#[async_trait]
impl PostRollbackHook for RolloutRestartHook {
    fn name(&self) -> &str {
        &self.name
    }

    async fn after_rollback(&self, event: &AliasMove) -> Result<()> {
        let what = self.what();
        // The move's decision time, so the restart's stamp is the engine's.
        let at = Timestamp::from_millis(event.at_ms);
        let restarted = self
            .deployment
            .restart(&RestartOptions::new(at).once(true))
            .await
            .map_err(|e| {
                Error::new(
                    e.kind(),
                    format!(
                        "{}, but restarting the model server {what} failed, so it may still serve the version it loaded before: {}",
                        moved(event),
                        e.message()
                    ),
                )
                .with_source(e)
            })?;
        tracing::info!(deployment = %what, restarted_at = %restarted.restarted_at, version = %event.to, "restarted the model server");
        let Some(timeout) = self.wait else {
            return Ok(());
        };
        let unfinished = |detail: String| {
            Error::new(
                ErrorKind::Permanent,
                format!(
                    "{}, and the model server {what} was restarted ({}), but its rollout {detail}; until it completes, \
                     old pods may still serve the version they loaded before (watch it with \
                     `kubectl rollout status deployment/{} -n {}`)",
                    moved(event),
                    restarted.restarted_at,
                    self.deployment.name(),
                    self.deployment.namespace()
                ),
            )
        };
        match self.wait(timeout).await {
            Ok(Convergence::Converged) => Ok(()),
            Ok(Convergence::TimedOut { detail }) => Err(unfinished(format!(
                "did not complete within {} (last: {detail})",
                rollback_core::time::format_duration(timeout)
            ))),
            Ok(Convergence::Failed { detail }) => Err(unfinished(format!("failed: {detail}"))),
            Err(e) => {
                Err(unfinished(format!("could not be followed: {}", e.message())).with_source(e))
            }
        }
    }

    async fn wait_ready(&self, version: &RevisionId, timeout: Duration) -> Result<Convergence> {
        self.wait(timeout).await.map_err(|e| {
            Error::new(
                e.kind(),
                format!(
                    "waiting for the model server {} to serve version {version} after its restart: {}",
                    self.what(),
                    e.message()
                ),
            )
            .with_source(e)
        })
    }
}
