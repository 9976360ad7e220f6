//! Leader election on a `coordination.k8s.io/v1` Lease, with client-go's
//! semantics (`k8s.io/client-go/tools/leaderelection`).
//!
//! The Lease's `holderIdentity` names the leader, `renewTime` says when it
//! last renewed, `leaseDurationSeconds` how long the others wait after they
//! last saw the record change before they may take it, `acquireTime` when
//! the holder took it and `leaseTransitions` how often it changed hands.
//! Every write carries the `resourceVersion` it read, so of two candidates
//! writing at once one gets 409 Conflict and stays a follower.
//!
//! Time follows client-go: a follower measures the lease's age on its own
//! monotonic clock from the moment it saw the record change (never from
//! the `renewTime` written by another machine's clock); the leader renews
//! every retry period and counts itself leader only until
//! `renew_deadline` after the start of its last successful renewal. As the
//! renew deadline is shorter than the lease duration, a leader cut off
//! from the API server stops acting before any follower can take over.
//!
//! A library cannot end its host process on a lost lease (client-go's
//! `OnStoppedLeading` usually exits): check [`LeaseElector::is_leader`]
//! right before each call that changes something.
//!
//! Found no crate to use: kube-leader-election 0.44 is on kube 4 and writes
//! by merge patch without a resourceVersion precondition; kube-lease-manager
//! 0.13 and kube-coordinate 2.0 write by server-side apply.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, ListParams, PostParams};
use rollback_core::time::{Clock, SystemClock};
use rollback_core::{Error, Result};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::ApiFailure;

/// How long a lease lasts and how often it is renewed and retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTimings {
    /// How long followers wait, after they last saw the lease change,
    /// before they may take it (`leaseDurationSeconds`, whole seconds).
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it stops leading.
    pub renew_deadline: Duration,
    /// How often the leader renews and followers try to acquire.
    pub retry_period: Duration,
}

impl Default for LeaseTimings {
    /// Argo Rollouts' defaults: lease 15s, renew 10s, retry 2s.
    fn default() -> Self {
        LeaseTimings {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl LeaseTimings {
    /// client-go's rules: the lease is whole seconds, at least 1; lease
    /// duration > renew deadline > retry period × 1.2 (its jitter).
    /// The error names the field (`lease`, `renew`, `retry`) and why.
    pub fn validate(&self) -> std::result::Result<(), (&'static str, String)> {
        let d = self.lease_duration;
        if d < Duration::from_secs(1) || d.subsec_nanos() != 0 {
            return Err((
                "lease",
                "must be whole seconds, at least 1s (leaseDurationSeconds)".into(),
            ));
        }
        if self.renew_deadline >= d {
            return Err(("renew", "must be shorter than the lease".into()));
        }
        if self.retry_period.is_zero() || self.retry_period.mul_f64(1.2) >= self.renew_deadline {
            return Err((
                "retry",
                "must be more than zero and, times 1.2 (the jitter), shorter than renew".into(),
            ));
        }
        Ok(())
    }
}

/// What the elector last saw, and until when it leads.
#[derive(Debug, Default)]
struct Seen {
    /// The resourceVersion last seen, and when it was first seen.
    version: Option<(String, Instant)>,
    /// The holder last seen (`None`: free).
    holder: Option<String>,
    /// Leading until then (the start of the last successful renewal plus
    /// the renew deadline).
    until: Option<Instant>,
}

struct State {
    api: Api<Lease>,
    namespace: String,
    name: String,
    identity: String,
    timings: LeaseTimings,
    labels: BTreeMap<String, String>,
    clock: Arc<dyn Clock>,
    contend: Arc<dyn Fn() -> bool + Send + Sync>,
    seen: Mutex<Seen>,
    leading: watch::Sender<bool>,
}

/// Builds a [`LeaseElector`]; see [`LeaseElector::builder`].
#[must_use]
pub struct LeaseElectorBuilder {
    client: kube::Client,
    namespace: String,
    name: String,
    identity: String,
    timings: LeaseTimings,
    labels: BTreeMap<String, String>,
    clock: Arc<dyn Clock>,
    contend: Arc<dyn Fn() -> bool + Send + Sync>,
}

impl std::fmt::Debug for LeaseElectorBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseElectorBuilder")
            .field("lease", &format!("{}/{}", self.namespace, self.name))
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl LeaseElectorBuilder {
    /// The timings. Default [`LeaseTimings::default`] (15s, 10s, 2s).
    pub fn timings(mut self, timings: LeaseTimings) -> Self {
        self.timings = timings;
        self
    }

    /// Labels for the Lease when this elector creates it.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// The wall clock for `acquireTime` and `renewTime`. Default: the system's.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Asked before each try: whether to contend for the lease. While it
    /// says no, a follower only watches, and a leader hands the lease over
    /// (releases it, so the one that should hold it takes it at once).
    /// Default: always. Sharding uses it to spread leases over replicas.
    pub fn contend(mut self, contend: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        self.contend = Arc::new(contend);
        self
    }

    /// Start electing: a task tries to acquire or renew every retry period.
    /// Errors: timings that break client-go's rules, an empty identity.
    pub fn start(self) -> Result<LeaseElector> {
        if let Err((field, why)) = self.timings.validate() {
            return Err(Error::invalid(format!("lease timings: {field} {why}")));
        }
        if self.identity.trim().is_empty() {
            return Err(Error::invalid(
                "the leader election identity is empty; give each replica its own (the pod name)",
            ));
        }
        let (leading, _) = watch::channel(false);
        let state = Arc::new(State {
            api: Api::namespaced(self.client, &self.namespace),
            namespace: self.namespace,
            name: self.name,
            identity: self.identity,
            timings: self.timings,
            labels: self.labels,
            clock: self.clock,
            contend: self.contend,
            seen: Mutex::new(Seen::default()),
            leading,
        });
        let task = tokio::spawn(run(state.clone()));
        Ok(LeaseElector {
            state,
            task: Mutex::new(Some(task)),
        })
    }
}

/// Takes part in the election of one Lease until dropped or released.
pub struct LeaseElector {
    state: Arc<State>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for LeaseElector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseElector")
            .field("lease", &self.lease())
            .field("identity", &self.state.identity)
            .field("leader", &self.is_leader())
            .finish_non_exhaustive()
    }
}

impl Drop for LeaseElector {
    fn drop(&mut self) {
        if let Some(t) = lock(&self.task).take() {
            t.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl LeaseElector {
    /// An elector of the Lease `namespace/name` for the candidate `identity`.
    pub fn builder(
        client: kube::Client,
        namespace: impl Into<String>,
        name: impl Into<String>,
        identity: impl Into<String>,
    ) -> LeaseElectorBuilder {
        LeaseElectorBuilder {
            client,
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            timings: LeaseTimings::default(),
            labels: BTreeMap::new(),
            clock: Arc::new(SystemClock),
            contend: Arc::new(|| true),
        }
    }

    /// Whether this candidate leads now: it renewed the lease less than
    /// the renew deadline ago. Check it right before acting.
    pub fn is_leader(&self) -> bool {
        self.state.is_leader()
    }

    /// Changes of leadership, as [`LeaseElector::is_leader`] sees them
    /// (also when the renew deadline passes without a renewal).
    pub fn leadership(&self) -> watch::Receiver<bool> {
        self.state.leading.subscribe()
    }

    /// The holder last seen (`None` while the lease is free or not read yet).
    pub fn holder(&self) -> Option<String> {
        lock(&self.state.seen).holder.clone()
    }

    /// This candidate's identity.
    pub fn identity(&self) -> &str {
        &self.state.identity
    }

    /// `NAMESPACE/NAME` of the Lease.
    pub fn lease(&self) -> String {
        format!("{}/{}", self.state.namespace, self.state.name)
    }

    /// Stop taking part: stop leading at once, and if this candidate holds
    /// the lease, release it as client-go's `ReleaseOnCancel` does (holder
    /// emptied, duration 1s), so a follower takes it on its next try
    /// instead of waiting for the lease to expire.
    pub async fn release(&self) -> Result<()> {
        if let Some(t) = lock(&self.task).take() {
            t.abort();
        }
        let held = {
            let mut seen = lock(&self.state.seen);
            seen.until = None;
            seen.holder.as_deref() == Some(self.state.identity.as_str())
        };
        self.state.publish();
        if held {
            self.state.release().await?;
        }
        Ok(())
    }
}

/// Try every retry period (followers with client-go's jitter, up to 1.2
/// times), and stop leading the moment the renew deadline passes.
async fn run(state: Arc<State>) {
    loop {
        let started = Instant::now();
        let attempt =
            tokio::time::timeout(state.timings.renew_deadline, state.try_acquire_or_renew()).await;
        match attempt {
            Ok(Ok(true)) => {
                lock(&state.seen).until = Some(started + state.timings.renew_deadline);
            }
            Ok(Ok(false)) => {
                // Someone else holds it (or we handed it over).
                lock(&state.seen).until = None;
            }
            Ok(Err(e)) => {
                tracing::warn!(lease = %state.lease(), identity = %state.identity,
                    "leader election: {}", e.full_message());
            }
            Err(_) => tracing::warn!(lease = %state.lease(), identity = %state.identity,
                "leader election: no answer from the API server within the renew deadline"),
        }
        state.publish();
        let period = if state.is_leader() {
            state.timings.retry_period
        } else {
            state
                .timings
                .retry_period
                .mul_f64(1.0 + 0.2 * fastrand::f64())
        };
        let wake = started + period;
        let until = lock(&state.seen).until;
        match until {
            Some(u) if u < wake => {
                tokio::time::sleep_until(u).await;
                state.publish();
                tokio::time::sleep_until(wake).await;
            }
            _ => tokio::time::sleep_until(wake).await,
        }
    }
}

impl State {
    fn lease(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    fn is_leader(&self) -> bool {
        lock(&self.seen).until.is_some_and(|u| Instant::now() < u)
    }

    fn publish(&self) {
        let now = self.is_leader();
        let was = *self.leading.borrow();
        if now != was {
            if now {
                tracing::info!(lease = %self.lease(), identity = %self.identity, "leading");
            } else {
                tracing::warn!(lease = %self.lease(), identity = %self.identity, "stopped leading");
            }
            self.leading.send_replace(now);
        }
    }

    fn now(&self) -> MicroTime {
        let ms = self.clock.now().as_millis();
        MicroTime(k8s_openapi::jiff::Timestamp::from_millisecond(ms).unwrap_or_default())
    }

    fn failure(&self, e: kube::Error, verb: &str) -> Error {
        ApiFailure::from(e).into_error(
            &format!("{verb} Lease {}", self.lease()),
            match verb {
                "reading" => "get",
                "creating" => "create",
                _ => "update",
            },
            "leases.coordination.k8s.io",
            &self.namespace,
        )
    }

    /// client-go's `tryAcquireOrRenew`: whether this candidate holds the
    /// lease afterwards.
    async fn try_acquire_or_renew(&self) -> Result<bool> {
        let contend = (self.contend)();
        let now = self.now();
        let seconds = i32::try_from(self.timings.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let current = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.failure(e, "reading"))?;
        let Some(mut lease) = current else {
            if !contend {
                return Ok(false);
            }
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    namespace: Some(self.namespace.clone()),
                    labels: (!self.labels.is_empty()).then(|| self.labels.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.saw(&created);
                    Ok(true)
                }
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(self.failure(e, "creating")),
            };
        };
        self.saw(&lease);
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let mine = holder.as_deref() == Some(self.identity.as_str());
        if !mine {
            let seen_at = lock(&self.seen).version.as_ref().map(|(_, at)| *at);
            let duration = Duration::from_secs(
                u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0),
            );
            let expired = seen_at.is_none_or(|at| Instant::now() >= at + duration);
            if !contend || (holder.is_some() && !expired) {
                return Ok(false);
            }
        } else if !contend {
            self.release().await?;
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0);
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(seconds),
            acquire_time: if mine {
                spec.acquire_time
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(if mine { transitions } else { transitions + 1 }),
            ..spec
        });
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                self.saw(&written);
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(self.failure(e, "updating")),
        }
    }

    /// Note the record read or written: a new resourceVersion restarts the
    /// follower's count of the lease duration.
    fn saw(&self, lease: &Lease) {
        let mut seen = lock(&self.seen);
        let version = lease.metadata.resource_version.clone().unwrap_or_default();
        if seen.version.as_ref().is_none_or(|(v, _)| *v != version) {
            seen.version = Some((version, Instant::now()));
        }
        seen.holder = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.clone())
            .filter(|h| !h.is_empty());
    }

    /// Give the lease up if this candidate holds it: holder emptied,
    /// duration 1s, times now (client-go's release).
    async fn release(&self) -> Result<()> {
        lock(&self.seen).until = None;
        self.publish();
        let Some(mut lease) = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.failure(e, "reading"))?
        else {
            return Ok(());
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        let now = self.now();
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(String::new()),
            lease_duration_seconds: Some(1),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            ..spec
        });
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                self.saw(&written);
                tracing::info!(lease = %self.lease(), identity = %self.identity, "released");
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(self.failure(e, "updating")),
        }
    }
}

/// The holders of the Leases labelled `selector` in `namespace` whose
/// `renewTime` plus `leaseDurationSeconds` is still ahead of `clock`: the
/// live members of a group whose members each hold a Lease of their own
/// (the wall clocks of two machines are compared here, so use it to spread
/// work, never to decide who may act).
pub async fn live_holders(
    client: kube::Client,
    namespace: &str,
    selector: &str,
    clock: &dyn Clock,
) -> Result<Vec<String>> {
    let api: Api<Lease> = Api::namespaced(client, namespace);
    let list = api
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| {
            ApiFailure::from(e).into_error(
                &format!("listing Leases {selector} in namespace {namespace}"),
                "list",
                "leases.coordination.k8s.io",
                namespace,
            )
        })?;
    let now = clock.now().as_millis();
    let mut live: Vec<String> = list
        .items
        .into_iter()
        .filter_map(|l| {
            let s = l.spec?;
            let holder = s.holder_identity.filter(|h| !h.is_empty())?;
            let renewed = s.renew_time?.0.as_millisecond();
            let lasts = i64::from(s.lease_duration_seconds.unwrap_or(0)) * 1000;
            (renewed + lasts > now).then_some(holder)
        })
        .collect();
    live.sort();
    live.dedup();
    Ok(live)
}
