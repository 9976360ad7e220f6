//! StatefulSets and DaemonSets as a [`Target`]: their revisions are the
//! ControllerRevisions they control, as `kubectl rollout history` and
//! `kubectl rollout undo` read them (kubectl's
//! `polymorphichelpers/history.go` and `rollback.go`).

mod client;
mod config;
mod revision;
mod status;
mod undo;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kube::api::DynamicObject;
use rollback_core::policy::RetryPolicy;
use rollback_core::steps::Steps;
use rollback_core::{
    Capabilities, DryRun, Error, HistoryEntry, Result, RevisionHealth, RevisionRef, Target,
    TargetId,
};
use serde_json::Value;

pub use config::K8sWorkloadConfig;
pub use revision::K8sControllerRevision;
pub use status::WorkloadStatus;

use crate::patch::templates_equal;
use crate::target::{DEFAULT_POLL_INTERVAL, check_dns_name};
use client::WorkloadApi;

/// A kind of workload whose history lives in ControllerRevisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum WorkloadKind {
    /// `apps/v1` StatefulSet (`statefulset`, `statefulsets`, `sts` to kubectl).
    StatefulSet,
    /// `apps/v1` DaemonSet (`daemonset`, `daemonsets`, `ds` to kubectl).
    DaemonSet,
}

impl WorkloadKind {
    /// The kind as kubectl's resource argument names it, case-insensitively:
    /// `statefulset`, `statefulsets`, `sts`, `statefulset.apps`,
    /// `daemonset`, `daemonsets`, `ds`, `daemonset.apps` (and the plurals
    /// with `.apps`). `None` for anything else.
    pub fn parse(text: &str) -> Option<WorkloadKind> {
        let lower = text.to_ascii_lowercase();
        let base = lower.strip_suffix(".apps").unwrap_or(&lower);
        match base {
            "statefulset" | "statefulsets" | "sts" => Some(WorkloadKind::StatefulSet),
            "daemonset" | "daemonsets" | "ds" => Some(WorkloadKind::DaemonSet),
            _ => None,
        }
    }

    /// `StatefulSet` or `DaemonSet`.
    pub fn kind(self) -> &'static str {
        match self {
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::DaemonSet => "DaemonSet",
        }
    }

    /// `statefulset` or `daemonset`: the URL's and kubectl's word.
    pub fn singular(self) -> &'static str {
        match self {
            WorkloadKind::StatefulSet => "statefulset",
            WorkloadKind::DaemonSet => "daemonset",
        }
    }

    /// `statefulsets` or `daemonsets`: the API's resource.
    pub fn plural(self) -> &'static str {
        match self {
            WorkloadKind::StatefulSet => "statefulsets",
            WorkloadKind::DaemonSet => "daemonsets",
        }
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())
    }
}

/// One StatefulSet or DaemonSet, as a [`Target`] and its own
/// [`rollback_core::Rollbacker`] ([`K8sWorkload::rollbacker`] is a clone).
///
/// Its revisions are the ControllerRevisions it controls (listed by its
/// selector, kept when their controller ownerReference has its uid),
/// numbered by their `revision`, newest first; the current one is the
/// newest whose template is the object's. [`K8sWorkload::undo`] restores
/// one as `kubectl rollout undo` does, [`K8sWorkload::wait_rollout`] waits
/// like `kubectl rollout status`.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use rollback_core::Target;
/// use rollback_k8s::{K8sWorkload, WorkloadKind};
/// let client = kube::Client::try_default().await?;
/// let db = K8sWorkload::builder(client, WorkloadKind::StatefulSet)
///     .namespace("shop")
///     .name("db")
///     .build()?;
/// for entry in db.history().await? {
///     println!("{} {}", entry.revision.label(), entry.revision.id());
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct K8sWorkload {
    pub(crate) api: WorkloadApi,
    pub(crate) id: TargetId,
    pub(crate) retry: RetryPolicy,
    pub(crate) dry_run: DryRun,
    pub(crate) poll_interval: Duration,
    pub(crate) rollout_timeout: Option<Duration>,
    pub(crate) steps: Steps,
}

/// Builds a [`K8sWorkload`]; see [`K8sWorkload::builder`].
#[must_use]
pub struct K8sWorkloadBuilder {
    client: kube::Client,
    kind: WorkloadKind,
    namespace: Option<String>,
    name: Option<String>,
    retry: RetryPolicy,
    dry_run: DryRun,
    poll_interval: Duration,
    rollout_timeout: Option<Duration>,
    steps: Steps,
}

impl K8sWorkload {
    /// Start building a handle of a `kind` through `client`.
    pub fn builder(client: kube::Client, kind: WorkloadKind) -> K8sWorkloadBuilder {
        K8sWorkloadBuilder {
            client,
            kind,
            namespace: None,
            name: None,
            retry: RetryPolicy::default(),
            dry_run: DryRun::None,
            poll_interval: DEFAULT_POLL_INTERVAL,
            rollout_timeout: None,
            steps: Steps::new(),
        }
    }

    /// The rollbacker: itself (a clone sharing its client and [`Steps`]).
    pub fn rollbacker(&self) -> K8sWorkload {
        self.clone()
    }

    /// StatefulSet or DaemonSet.
    pub fn kind(&self) -> WorkloadKind {
        self.api.kind
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.api.namespace
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        &self.api.name
    }

    /// `StatefulSet shop/db`.
    pub(crate) fn what(&self) -> String {
        self.api.what()
    }

    /// The dry run of a change asked for with `asked`.
    pub(crate) fn dry_run_of(&self, asked: DryRun) -> DryRun {
        if asked.is_dry() { asked } else { self.dry_run }
    }

    /// Read the object and the ControllerRevisions it controls.
    pub async fn snapshot(&self) -> Result<WorkloadSnapshot> {
        let object = self.api.object().await?;
        let revisions = self.api.owned_revisions(&object).await?;
        WorkloadSnapshot::new(self.kind(), object, &revisions)
    }
}

impl K8sWorkloadBuilder {
    /// The namespace (required; a DNS-1123 name).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }
    /// The object's name (required; a DNS-1123 subdomain).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// How 409 Conflict, 429 and 5xx answers are retried; each try reads
    /// the object again. Default [`RetryPolicy::default`].
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }
    /// The dry run of every change asked for without one (see
    /// [`crate::K8sDeploymentBuilder::dry_run`]). Default [`DryRun::None`].
    pub fn dry_run(mut self, dry_run: DryRun) -> Self {
        self.dry_run = dry_run;
        self
    }
    /// How often rollout status is read while waiting. Default 2s.
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every;
        self
    }
    /// The longest [`rollback_core::Rollbacker::wait_converged`] waits.
    /// Default: the engine's time.
    pub fn rollout_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.rollout_timeout = timeout.into();
        self
    }
    /// Count (and, in tests, stop) the changes a rollback makes: the patch
    /// is its one step.
    pub fn steps(mut self, steps: Steps) -> Self {
        self.steps = steps;
        self
    }

    /// The handle. Fails on a missing or invalid namespace or name
    /// (DNS-1123), without contacting the server.
    pub fn build(self) -> Result<K8sWorkload> {
        let kind = self.kind;
        let namespace = self
            .namespace
            .ok_or_else(|| Error::invalid("K8sWorkload: the namespace is required"))?;
        let name = self
            .name
            .ok_or_else(|| Error::invalid(format!("K8sWorkload: the {kind} name is required")))?;
        check_dns_name("K8sWorkload", "namespace", &namespace, 63)?;
        check_dns_name("K8sWorkload", &format!("{kind} name"), &name, 253)?;
        if self.poll_interval.is_zero() {
            return Err(Error::invalid(
                "K8sWorkload: poll_interval must be more than zero",
            ));
        }
        Ok(K8sWorkload {
            id: TargetId::new(format!("k8s:{namespace}/{}/{name}", kind.singular())),
            api: WorkloadApi::new(self.client, kind, &namespace, &name),
            retry: self.retry,
            dry_run: self.dry_run,
            poll_interval: self.poll_interval,
            rollout_timeout: self.rollout_timeout,
            steps: self.steps,
        })
    }
}

impl fmt::Debug for K8sWorkloadBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("K8sWorkloadBuilder")
            .field("kind", &self.kind)
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("retry", &self.retry)
            .field("dry_run", &self.dry_run)
            .field("poll_interval", &self.poll_interval)
            .field("rollout_timeout", &self.rollout_timeout)
            .finish_non_exhaustive()
    }
}

/// A StatefulSet or DaemonSet and its revisions at one moment.
#[derive(Debug, Clone)]
pub struct WorkloadSnapshot {
    /// StatefulSet or DaemonSet.
    pub kind: WorkloadKind,
    /// The object, raw.
    pub object: DynamicObject,
    /// Its revisions, newest (highest number) first.
    pub revisions: Vec<K8sControllerRevision>,
    /// The index in `revisions` of the newest revision whose template is
    /// the object's; `None` before the controller has recorded it.
    pub current: Option<usize>,
}

impl WorkloadSnapshot {
    pub(crate) fn new(
        kind: WorkloadKind,
        object: DynamicObject,
        revisions: &[DynamicObject],
    ) -> Result<Self> {
        let owner = format!(
            "{kind} {}/{}",
            object.metadata.namespace.as_deref().unwrap_or_default(),
            object.metadata.name.as_deref().unwrap_or_default()
        );
        let mut revisions = revisions
            .iter()
            .map(|cr| K8sControllerRevision::from_controller_revision(cr, &owner))
            .collect::<Result<Vec<_>>>()?;
        revisions.sort_by_key(|r| (std::cmp::Reverse(r.number()), r.name().to_owned()));
        let template = object
            .data
            .pointer("/spec/template")
            .cloned()
            .unwrap_or(Value::Null);
        let current = revisions
            .iter()
            .position(|r| templates_equal(r.template(), &template));
        Ok(WorkloadSnapshot {
            kind,
            object,
            revisions,
            current,
        })
    }

    /// `StatefulSet shop/db`.
    fn what(&self) -> String {
        format!(
            "{} {}/{}",
            self.kind,
            self.object
                .metadata
                .namespace
                .as_deref()
                .unwrap_or_default(),
            self.object.metadata.name.as_deref().unwrap_or_default()
        )
    }

    /// The current revision, or an error saying the controller has not caught up.
    pub fn current_revision(&self) -> Result<&K8sControllerRevision> {
        self.current.map(|i| &self.revisions[i]).ok_or_else(|| {
            let observed = self
                .object
                .data
                .pointer("/status/observedGeneration")
                .and_then(Value::as_i64);
            Error::transient(format!(
                "{} has no ControllerRevision with its current pod template yet (generation {}, observed {}; \
                 {} revisions): the {} controller has not recorded it; retry shortly, or check the controller if it persists",
                self.what(),
                self.object.metadata.generation.unwrap_or_default(),
                observed.map_or_else(|| "none".to_owned(), |g| g.to_string()),
                self.revisions.len(),
                self.kind.singular(),
            ))
        })
    }
}

#[async_trait]
impl Target for K8sWorkload {
    fn id(&self) -> &TargetId {
        &self.id
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
            .with_server_dry_run(true)
            .with_convergence(true)
    }

    async fn current(&self) -> Result<RevisionRef> {
        let snapshot = self.snapshot().await?;
        Ok(Arc::new(snapshot.current_revision()?.clone()))
    }

    async fn history(&self) -> Result<Vec<HistoryEntry>> {
        let snapshot = self.snapshot().await?;
        Ok(snapshot
            .revisions
            .into_iter()
            .map(|r| HistoryEntry::new(Arc::new(r) as RevisionRef, RevisionHealth::Unknown))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_read_as_kubectl_names_them() {
        for (text, kind) in [
            ("statefulset", Some(WorkloadKind::StatefulSet)),
            ("StatefulSets", Some(WorkloadKind::StatefulSet)),
            ("sts", Some(WorkloadKind::StatefulSet)),
            ("statefulset.apps", Some(WorkloadKind::StatefulSet)),
            ("ds", Some(WorkloadKind::DaemonSet)),
            ("daemonsets.apps", Some(WorkloadKind::DaemonSet)),
            ("DaemonSet", Some(WorkloadKind::DaemonSet)),
            ("deployment", None),
            ("replicaset", None),
            ("", None),
        ] {
            assert_eq!(WorkloadKind::parse(text), kind, "{text}");
        }
        assert_eq!(WorkloadKind::StatefulSet.to_string(), "StatefulSet");
        assert_eq!(WorkloadKind::DaemonSet.plural(), "daemonsets");
    }
}
