//! A CodeDeploy deployment group as a [`Target`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_codedeploy::Client;
use aws_sdk_codedeploy::types::DeploymentInfo;
use rollback_core::time::{Clock, SystemClock};
use rollback_core::{
    Capabilities, Error, HistoryEntry, Result, RevisionRef, Target, TargetId, Timestamp,
};
use tracing::Instrument;

use crate::appspec::Platform;
use crate::client::GroupApi;
use crate::history;
use crate::progress::{DeploymentProgress, ProgressFn};
use crate::rollbacker::CodeDeployRollbacker;

/// How often a deployment's status is read while waiting, by default.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// How long to wait, by default, for a stopped deployment to stop and for
/// CodeDeploy to create its rollback deployment.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(120);

/// The longest application or deployment group name CodeDeploy accepts.
const MAX_NAME_LEN: usize = 100;

pub(crate) struct Settings {
    pub(crate) poll_interval: Duration,
    pub(crate) stop_timeout: Duration,
    /// Only deployments created within this long before a listing.
    pub(crate) history_window: Option<Duration>,
    /// Where "now" comes from for the history window.
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) on_progress: Option<ProgressFn>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("poll_interval", &self.poll_interval)
            .field("stop_timeout", &self.stop_timeout)
            .field("history_window", &self.history_window)
            .field("clock", &self.clock)
            .field(
                "on_progress",
                &self.on_progress.as_ref().map(|_| "<callback>"),
            )
            .finish()
    }
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) id: TargetId,
    pub(crate) api: GroupApi,
    pub(crate) settings: Settings,
}

/// A CodeDeploy deployment group (an application plus a deployment group).
///
/// Its history comes from `ListDeployments` (every page) and
/// `BatchGetDeployments`, newest first; each revision is a revision location
/// (see [`crate::CodeDeployRevision`]) with the health its deployments show
/// (see the crate docs). The current revision is the one the group's newest
/// deployment installs, whatever its status: a failed in-place deployment may
/// have left it on some instances, so it is what a rollback moves away from.
///
/// Cheap to clone; clones share the client.
#[derive(Debug, Clone)]
pub struct CodeDeployTarget {
    pub(crate) inner: Arc<Inner>,
}

impl CodeDeployTarget {
    /// A builder over an SDK client, which brings the endpoint, region,
    /// credentials and retry configuration. From a configuration file, use
    /// [`CodeDeployTarget::connect`].
    pub fn builder(client: Client) -> CodeDeployTargetBuilder {
        CodeDeployTargetBuilder {
            client,
            application: None,
            deployment_group: None,
            poll_interval: DEFAULT_POLL_INTERVAL,
            stop_timeout: DEFAULT_STOP_TIMEOUT,
            history_window: None,
            clock: Arc::new(SystemClock),
            on_progress: None,
        }
    }

    /// The application name.
    pub fn application(&self) -> &str {
        &self.inner.api.application
    }

    /// The deployment group name.
    pub fn deployment_group(&self) -> &str {
        &self.inner.api.group
    }

    /// The rollbacker of this deployment group.
    pub fn rollbacker(&self) -> CodeDeployRollbacker {
        CodeDeployRollbacker::new(self.clone())
    }

    pub(crate) fn api(&self) -> &GroupApi {
        &self.inner.api
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// "CodeDeploy deployment group bank/payments", for messages.
    pub(crate) fn describe(&self) -> String {
        format!(
            "CodeDeploy deployment group {}/{}",
            self.inner.api.application, self.inner.api.group
        )
    }

    pub(crate) fn report(&self, progress: &DeploymentProgress) {
        tracing::info!(target: "rollback_aws", deployment = %progress.deployment_id, status = %progress.status, "{progress}");
        if let Some(f) = &self.inner.settings.on_progress {
            f(progress);
        }
    }

    /// The start of the history window, by the target's clock.
    fn created_since(&self) -> Option<Timestamp> {
        let window = self.settings().history_window?;
        Some(self.settings().clock.now().minus(window))
    }

    /// Every deployment of the group, newest first. A group with no
    /// deployments is checked for existence, so that a missing group is
    /// `NotFound` rather than an empty history.
    pub(crate) async fn deployments(&self) -> Result<Vec<DeploymentInfo>> {
        let api = self.api();
        let doing = || format!("listing the deployments of {}", self.describe());
        let ids = api
            .list_deployment_ids(self.created_since())
            .await
            .map_err(|e| e.into_error(&doing()))?;
        let unknown_platform = |e: String| {
            Error::unsupported(format!(
                "{}: {e}; rollback-aws reads Server, Lambda and ECS deployment groups",
                self.describe()
            ))
        };
        if ids.is_empty() {
            let platform = api
                .check_group()
                .await
                .map_err(|e| e.into_error(&doing()))?;
            Platform::of(platform.as_ref())
                .map_err(|e| unknown_platform(format!("its application is of {e}")))?;
            return Ok(Vec::new());
        }
        let found = api
            .batch_get(&ids)
            .await
            .map_err(|e| e.into_error(&doing()))?;
        history::check_platforms(&found).map_err(unknown_platform)?;
        Ok(history::newest_first(found, &ids))
    }
}

#[async_trait]
impl Target for CodeDeployTarget {
    fn id(&self) -> &TargetId {
        &self.inner.id
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
    }

    async fn current(&self) -> Result<RevisionRef> {
        let span = tracing::debug_span!("codedeploy.current", target = %self.inner.id);
        async {
            let deployments = self.deployments().await?;
            let folded = history::fold(&deployments);
            match folded.into_iter().next() {
                Some(first) => Ok(first.revision as RevisionRef),
                None => Err(Error::not_found(match self.settings().history_window {
                    Some(w) => format!(
                        "{} has no deployments within its history window of {}, so no current revision is known; widen the window",
                        self.describe(),
                        rollback_core::time::format_duration(w)
                    ),
                    None => format!("{} has no deployments yet, so it runs no revision; deploy one first", self.describe()),
                })),
            }
        }
        .instrument(span)
        .await
    }

    async fn history(&self) -> Result<Vec<HistoryEntry>> {
        let span = tracing::debug_span!("codedeploy.history", target = %self.inner.id);
        async {
            let deployments = self.deployments().await?;
            Ok(history::entries(&history::fold(&deployments)))
        }
        .instrument(span)
        .await
    }
}

/// Builds a [`CodeDeployTarget`]; see [`CodeDeployTarget::builder`].
pub struct CodeDeployTargetBuilder {
    client: Client,
    application: Option<String>,
    deployment_group: Option<String>,
    poll_interval: Duration,
    stop_timeout: Duration,
    history_window: Option<Duration>,
    clock: Arc<dyn Clock>,
    on_progress: Option<ProgressFn>,
}

impl fmt::Debug for CodeDeployTargetBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CodeDeployTargetBuilder")
            .field("application", &self.application)
            .field("deployment_group", &self.deployment_group)
            .field("poll_interval", &self.poll_interval)
            .field("stop_timeout", &self.stop_timeout)
            .field("history_window", &self.history_window)
            .finish_non_exhaustive()
    }
}

impl CodeDeployTargetBuilder {
    /// The CodeDeploy application (required).
    pub fn application(mut self, name: impl Into<String>) -> Self {
        self.application = Some(name.into());
        self
    }

    /// The deployment group of the application (required).
    pub fn deployment_group(mut self, name: impl Into<String>) -> Self {
        self.deployment_group = Some(name.into());
        self
    }

    /// How often a deployment's status is read while waiting (default 5s).
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every;
        self
    }

    /// How long a rollback waits for a stopped deployment to stop and for
    /// CodeDeploy's rollback deployment to appear (default 2 minutes).
    pub fn stop_timeout(mut self, timeout: Duration) -> Self {
        self.stop_timeout = timeout;
        self
    }

    /// Read only the deployments created within this long (CodeDeploy's
    /// `createTimeRange`), for groups with a long deployment history. Revisions
    /// deployed only before the window cannot be rolled back to. Default: all.
    pub fn history_window(mut self, window: Duration) -> Self {
        self.history_window = Some(window);
        self
    }

    /// Where the current time comes from for [`Self::history_window`]
    /// (default: the system clock); a test clock makes the window exact.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Called with the progress of the deployment being waited on, each time
    /// it changes. Progress is also traced at `info`.
    pub fn on_progress(mut self, f: impl Fn(&DeploymentProgress) + Send + Sync + 'static) -> Self {
        self.on_progress = Some(Arc::new(f));
        self
    }

    /// The target, or an `InvalidInput` error naming the missing or bad setting.
    pub fn build(self) -> Result<CodeDeployTarget> {
        let application = check_name("application", self.application)?;
        let group = check_name("deployment_group", self.deployment_group)?;
        if self.poll_interval.is_zero() {
            return Err(Error::invalid("poll_interval: must be longer than zero"));
        }
        if self.history_window.is_some_and(|w| w.is_zero()) {
            return Err(Error::invalid(
                "history_window: must be longer than zero, or left out to read every deployment",
            ));
        }
        Ok(CodeDeployTarget {
            inner: Arc::new(Inner {
                id: TargetId::new(format!("codedeploy:{application}/{group}")),
                api: GroupApi {
                    client: self.client,
                    application,
                    group,
                },
                settings: Settings {
                    poll_interval: self.poll_interval,
                    stop_timeout: self.stop_timeout,
                    history_window: self.history_window,
                    clock: self.clock,
                    on_progress: self.on_progress,
                },
            }),
        })
    }
}

fn check_name(field: &str, value: Option<String>) -> Result<String> {
    let value = value
        .ok_or_else(|| Error::invalid(format!("{field}: required, name the CodeDeploy {field}")))?;
    if value.trim().is_empty() {
        return Err(Error::invalid(format!("{field}: must not be empty")));
    }
    if value.chars().count() > MAX_NAME_LEN {
        return Err(Error::invalid(format!(
            "{field}: CodeDeploy names are at most {MAX_NAME_LEN} characters"
        )));
    }
    Ok(value)
}
