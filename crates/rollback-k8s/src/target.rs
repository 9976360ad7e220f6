//! The Deployment as a [`Target`]: its current revision and history, read
//! from the ReplicaSets it owns.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kube::api::DynamicObject;
use rollback_core::policy::RetryPolicy;
use rollback_core::steps::Steps;
use rollback_core::{
    Capabilities, DryRun, Error, HistoryEntry, Result, Revision, RevisionHealth, RevisionRef,
    Target, TargetId,
};
use serde_json::Value;

use crate::client::DeploymentApi;
use crate::patch::templates_equal_ignoring_hash;
use crate::revision::K8sRevision;

/// One Kubernetes Deployment, as a [`Target`] and its own
/// [`rollback_core::Rollbacker`] ([`K8sDeployment::rollbacker`] is a clone).
///
/// Connect it from a [`crate::K8sConfig`] ([`K8sDeployment::connect`]), or
/// build it around a client you have ([`K8sDeployment::builder`]):
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use rollback_core::Target;
/// use rollback_k8s::K8sDeployment;
/// let client = kube::Client::try_default().await?;
/// let checkout = K8sDeployment::builder(client).namespace("shop").name("checkout").build()?;
/// for entry in checkout.history().await? {
///     println!("{} {}", entry.revision.label(), entry.revision.id());
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct K8sDeployment {
    pub(crate) api: DeploymentApi,
    pub(crate) id: TargetId,
    pub(crate) retry: RetryPolicy,
    pub(crate) dry_run: DryRun,
    pub(crate) resume_paused: bool,
    pub(crate) poll_interval: Duration,
    pub(crate) rollout_timeout: Option<Duration>,
    pub(crate) steps: Steps,
}

/// Builds a [`K8sDeployment`]; see [`K8sDeployment::builder`].
#[must_use]
pub struct K8sDeploymentBuilder {
    client: kube::Client,
    namespace: Option<String>,
    name: Option<String>,
    retry: RetryPolicy,
    dry_run: DryRun,
    resume_paused: bool,
    poll_interval: Duration,
    rollout_timeout: Option<Duration>,
    steps: Steps,
}

/// How often rollout status is read while waiting, unless set.
pub(crate) const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(2);

impl K8sDeployment {
    /// Start building; the client is any `kube::Client` (from a kubeconfig,
    /// in-cluster config, or a test server).
    pub fn builder(client: kube::Client) -> K8sDeploymentBuilder {
        K8sDeploymentBuilder {
            client,
            namespace: None,
            name: None,
            retry: RetryPolicy::default(),
            dry_run: DryRun::None,
            resume_paused: false,
            poll_interval: DEFAULT_POLL_INTERVAL,
            rollout_timeout: None,
            steps: Steps::new(),
        }
    }

    /// The rollbacker of this Deployment: itself (a clone sharing its
    /// client and [`Steps`]).
    pub fn rollbacker(&self) -> K8sDeployment {
        self.clone()
    }

    /// The Deployment's namespace.
    pub fn namespace(&self) -> &str {
        &self.api.namespace
    }

    /// The Deployment's name.
    pub fn name(&self) -> &str {
        &self.api.name
    }

    /// The dry run of a change asked for with `asked`: its own, or this
    /// handle's default when it asked for none.
    pub(crate) fn dry_run_of(&self, asked: DryRun) -> DryRun {
        if asked.is_dry() { asked } else { self.dry_run }
    }

    /// Read the Deployment and the revisions it owns.
    pub async fn snapshot(&self) -> Result<Snapshot> {
        let deployment = self.api.deployment().await?;
        let replica_sets = self.api.owned_replica_sets(&deployment).await?;
        Snapshot::new(deployment, &replica_sets)
    }
}

impl K8sDeploymentBuilder {
    /// The Deployment's namespace (required; a DNS-1123 name).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }
    /// The Deployment's name (required; a DNS-1123 subdomain).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// How 409 Conflict, 429 and 5xx answers are retried; each try reads the
    /// Deployment again. Default [`RetryPolicy::default`]; use
    /// [`RetryPolicy::NEVER`] when the caller retries itself.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }
    /// The dry run of every change asked for without one: with
    /// [`DryRun::Client`] or [`DryRun::Server`] this handle never changes
    /// the Deployment, whatever its callers ask (a rollback, an undo, a
    /// restart that names its own dry run keeps it). Default
    /// [`DryRun::None`].
    pub fn dry_run(mut self, dry_run: DryRun) -> Self {
        self.dry_run = dry_run;
        self
    }
    /// Resume a paused Deployment in the rollback patch instead of refusing
    /// it as kubectl does. Default false.
    pub fn resume_paused(mut self, yes: bool) -> Self {
        self.resume_paused = yes;
        self
    }
    /// How often rollout status is read while waiting. Default 2s.
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every;
        self
    }
    /// The longest [`rollback_core::Rollbacker::wait_converged`] waits for a
    /// rollout, however long the engine allows (`kubectl rollout status
    /// --timeout`). Default: the engine's time.
    pub fn rollout_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.rollout_timeout = timeout.into();
        self
    }
    /// Count (and, in tests, stop) the changes a rollback makes: each
    /// patch of the Deployment is one step. Default: counts, never stops.
    pub fn steps(mut self, steps: Steps) -> Self {
        self.steps = steps;
        self
    }

    /// The Deployment handle. Fails on a missing or invalid namespace or name
    /// (DNS-1123), without contacting the server.
    pub fn build(self) -> Result<K8sDeployment> {
        let namespace = self
            .namespace
            .ok_or_else(|| Error::invalid("K8sDeployment: the namespace is required"))?;
        let name = self
            .name
            .ok_or_else(|| Error::invalid("K8sDeployment: the Deployment name is required"))?;
        check_dns_name("K8sDeployment", "namespace", &namespace, 63)?;
        check_dns_name("K8sDeployment", "Deployment name", &name, 253)?;
        if self.poll_interval.is_zero() {
            return Err(Error::invalid(
                "K8sDeployment: poll_interval must be more than zero",
            ));
        }
        Ok(K8sDeployment {
            id: TargetId::new(format!("k8s:{namespace}/{name}")),
            api: DeploymentApi::new(self.client, &namespace, &name),
            retry: self.retry,
            dry_run: self.dry_run,
            resume_paused: self.resume_paused,
            poll_interval: self.poll_interval,
            rollout_timeout: self.rollout_timeout,
            steps: self.steps,
        })
    }
}

impl std::fmt::Debug for K8sDeploymentBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("K8sDeploymentBuilder")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("retry", &self.retry)
            .field("dry_run", &self.dry_run)
            .field("resume_paused", &self.resume_paused)
            .field("poll_interval", &self.poll_interval)
            .field("rollout_timeout", &self.rollout_timeout)
            .finish_non_exhaustive()
    }
}

/// Check a namespace or object name (DNS-1123), `owner` (the handle's type)
/// starting the error.
pub(crate) fn check_dns_name(owner: &str, what: &str, value: &str, max: usize) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{owner}: {what} {value:?} is not a valid Kubernetes name (lowercase letters, digits, '-', '.', at most {max} characters)"
        )))
    }
}

/// The Deployment and its revisions at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The Deployment, raw.
    pub deployment: DynamicObject,
    /// Its revisions, newest (highest number) first, one per id.
    pub revisions: Vec<K8sRevision>,
    /// The index in `revisions` of the ReplicaSet whose template matches the
    /// Deployment's (kubectl's "new ReplicaSet"); `None` before the
    /// controller has created it.
    pub current: Option<usize>,
}

impl Snapshot {
    pub(crate) fn new(deployment: DynamicObject, replica_sets: &[DynamicObject]) -> Result<Self> {
        let name = deployment.metadata.name.clone().unwrap_or_default();
        let template = deployment
            .data
            .pointer("/spec/template")
            .cloned()
            .unwrap_or(Value::Null);
        // kubectl's findNewReplicaSet: the oldest ReplicaSet with the Deployment's template.
        let mut by_age: Vec<&DynamicObject> = replica_sets.iter().collect();
        by_age.sort_by(|a, b| {
            let key = |o: &DynamicObject| {
                (
                    o.metadata.creation_timestamp.clone().map(|t| t.0),
                    o.metadata.name.clone(),
                )
            };
            key(a).cmp(&key(b))
        });
        let new_rs = by_age
            .iter()
            .find(|rs| {
                templates_equal_ignoring_hash(
                    rs.data.pointer("/spec/template").unwrap_or(&Value::Null),
                    &template,
                )
            })
            .and_then(|rs| rs.metadata.name.clone());

        let mut revisions = replica_sets
            .iter()
            .map(|rs| K8sRevision::from_replica_set(rs, &name))
            .collect::<Result<Vec<_>>>()?;
        // Newest first; among equal numbers the new ReplicaSet first (so that
        // the dedup below keeps it), then the younger.
        revisions.sort_by_key(|r| {
            (
                std::cmp::Reverse(r.number()),
                new_rs.as_deref() != Some(r.replica_set()),
                std::cmp::Reverse(r.replica_set_created()),
            )
        });
        let mut seen = BTreeSet::new();
        revisions.retain(|r| seen.insert(r.id().clone()));
        let current = new_rs.and_then(|n| revisions.iter().position(|r| r.replica_set() == n));
        Ok(Snapshot {
            deployment,
            revisions,
            current,
        })
    }

    /// The current revision, or an error saying the controller has not caught up.
    pub fn current_revision(&self) -> Result<&K8sRevision> {
        self.current.map(|i| &self.revisions[i]).ok_or_else(|| {
            let meta = &self.deployment.metadata;
            let observed = self.deployment.data.pointer("/status/observedGeneration").and_then(Value::as_i64);
            Error::transient(format!(
                "Deployment {}/{} has no ReplicaSet with its current pod template yet (generation {}, observed {}): \
                 the deployment controller has not rolled it out; retry shortly, or check the controller if it persists",
                meta.namespace.as_deref().unwrap_or_default(),
                meta.name.as_deref().unwrap_or_default(),
                meta.generation.unwrap_or_default(),
                observed.map_or_else(|| "none".to_owned(), |g| g.to_string()),
            ))
        })
    }

    /// Whether `spec.paused` is set.
    pub fn paused(&self) -> bool {
        self.deployment
            .data
            .pointer("/spec/paused")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
}

#[async_trait]
impl Target for K8sDeployment {
    fn id(&self) -> &TargetId {
        &self.id
    }

    fn capabilities(&self) -> Capabilities {
        // Every API server since 1.18 takes `dryRun=All`.
        Capabilities::NONE
            .with_server_dry_run(true)
            .with_convergence(true)
    }

    async fn current(&self) -> Result<RevisionRef> {
        let snapshot = self.snapshot().await?;
        Ok(Arc::new(snapshot.current_revision()?.clone()))
    }

    /// A watch of the Deployment: a new template (a deploy, a rollback) or
    /// its ReplicaSet made by the controller is noticed at once.
    fn changes(&self) -> Option<rollback_core::changes::Changes> {
        Some(self.api.changes())
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
