//! The [`Server`]: a watch file's targets supervised on one [`Engine`], and
//! the HTTP server in front of them; reloads and the graceful shutdown.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rollback_core::audit::AuditSink;
use rollback_core::machine::PhaseKind;
use rollback_core::registry::Registry;
use rollback_core::store::{MemoryStateStore, StateStore};
use rollback_core::supervisor::{Noticed, Supervisor};
use rollback_core::time::{Clock, SystemClock};
use rollback_core::watchfile::WatchFile;
use rollback_core::{Engine, Error, Result, TargetId, WatchSpec};
use rollback_prometheus::{AlertmanagerReceiver, ReceiverConfig};
use serde_json::json;
use tokio::sync::oneshot;

use crate::auth::OperatorAccess;
use crate::config::ServeConfig;
use crate::leader::{LeaderNotices, LeaderRollbacker, LeaderStore, LeaderTarget, Leadership};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::observer::Observer;
use crate::tee::Tee;

pub(crate) const STARTING: u8 = 0;
pub(crate) const READY: u8 = 1;
pub(crate) const STOPPING: u8 = 2;

/// Where variables of the watch file (`${NAME}`) come from.
type Env = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// A supervised target of the file, under its URL: 40 bytes.
#[derive(Debug, Clone)]
struct Entry {
    id: TargetId,
    /// Its watch, ready for when this replica leads its shard: with leader
    /// election only (without it, the supervisor's is the only copy).
    spec: Option<Box<WatchSpec>>,
    /// Its shard (0 without leader election).
    shard: usize,
    /// A hash of everything of the file that shapes the target's watch:
    /// its options, the probes, the policy. A reload restarts the targets
    /// whose fingerprint changed, and no other.
    fingerprint: u64,
}

/// The settings in effect that only a restart changes.
#[derive(Debug, Clone)]
struct Running {
    listen: SocketAddr,
    poll_interval: Duration,
    reload_check: Duration,
    alertmanager: Option<ReceiverConfig>,
}

/// What the HTTP handlers and the reloads share.
pub(crate) struct Shared {
    path: PathBuf,
    registry: Registry,
    env: Env,
    pub(crate) engine: Engine,
    supervisor: Mutex<Option<Supervisor>>,
    pub(crate) observer: Arc<Observer>,
    pub(crate) metrics: Arc<Metrics>,
    notifier: Notifier,
    pub(crate) operators: Arc<OperatorAccess>,
    /// With `serve.leader_election`: the shards' leases of this replica.
    pub(crate) leadership: Option<Arc<Leadership>>,
    targets: Mutex<BTreeMap<String, Entry>>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    running: Running,
    grace: Mutex<Duration>,
    /// A reload deferred a target (it was rolling back): try again.
    retry_reload: AtomicBool,
    /// A hash of the file's bytes as last loaded.
    stamp: Mutex<Option<u64>>,
    pub(crate) state: AtomicU8,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("path", &self.path)
            .field("listen", &self.running.listen)
            .field("targets", &self.target_count())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReloadReport {
    /// Targets newly supervised.
    pub added: Vec<TargetId>,
    /// Targets no longer supervised (their saved state stays).
    pub removed: Vec<TargetId>,
    /// Targets whose options, probes or policy changed: their watch was
    /// restarted from its saved state with the new settings.
    pub changed: Vec<TargetId>,
    /// Targets left alone, their watches undisturbed.
    pub unchanged: usize,
    /// Targets to remove or change that were rolling back: left as they
    /// were until the rollback ends; the next check of the file applies them.
    pub deferred: Vec<TargetId>,
    /// Settings that changed but take effect only after a restart
    /// (`serve.listen`, `serve.poll_interval`, `serve.reload_check`,
    /// `serve.alertmanager`).
    pub restart_needed: Vec<&'static str>,
}

fn names(ids: &[TargetId]) -> String {
    ids.iter()
        .map(TargetId::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        for (what, ids) in [
            ("added", &self.added),
            ("removed", &self.removed),
            ("changed", &self.changed),
            ("deferred while rolling back", &self.deferred),
        ] {
            if !ids.is_empty() {
                parts.push(format!("{what} {}", names(ids)));
            }
        }
        parts.push(format!("{} unchanged", self.unchanged));
        if !self.restart_needed.is_empty() {
            parts.push(format!(
                "a restart is needed for {}",
                self.restart_needed.join(", ")
            ));
        }
        f.write_str(&parts.join("; "))
    }
}

/// What the graceful shutdown did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Targets whose rollback was still running at the bound (or when told
    /// to stop at once): their saved state resumes the rollback on the next
    /// start, and the rollbacker's idempotence makes that safe.
    pub interrupted: Vec<TargetId>,
    /// How long the shutdown waited for rollbacks in flight.
    pub waited: Duration,
    /// Channels whose queued notifications were not all delivered in time.
    pub undelivered_channels: usize,
}

/// Builds a [`Server`]; see [`Server::builder`].
#[must_use]
pub struct ServerBuilder {
    path: PathBuf,
    registry: Option<Registry>,
    env: Env,
    listen: Option<SocketAddr>,
    clock: Option<Arc<dyn Clock>>,
    audit: Vec<Arc<dyn AuditSink>>,
    store: Option<Arc<dyn StateStore>>,
    max_jitter: Option<f64>,
}

impl fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("path", &self.path)
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

impl ServerBuilder {
    /// Resolve target URLs and probe kinds with `registry`. Default
    /// `rollback::registry()`: every backend this build has.
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Read the watch file's `${NAME}` variables (tokens, webhook URLs)
    /// from `env` instead of the process environment.
    pub fn env(mut self, env: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        self.env = Arc::new(env);
        self
    }

    /// Listen here instead of `serve.listen` (port 0 picks a free port;
    /// [`Server::local_addr`] tells which).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }

    /// The engine's clock. Default: the system clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Send every audit record to `sink` as well (after the file's audit
    /// log and the server's own sinks).
    pub fn audit(mut self, sink: Arc<dyn AuditSink>) -> Self {
        self.audit.push(sink);
        self
    }

    /// Keep state in `store` instead of the file's `state:` directory.
    pub fn store(mut self, store: Arc<dyn StateStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// The engine's jitter (a fraction of the interval; default 0.1).
    pub fn max_jitter(mut self, fraction: f64) -> Self {
        self.max_jitter = Some(fraction);
        self
    }

    /// Load the watch file, listen, and supervise every target. Errors:
    /// the file's problems (each field named), an address already in use,
    /// a target whose backend cannot be built. Nothing is supervised then.
    ///
    /// The work runs as a task of the runtime, not in the caller's thread:
    /// with `#[tokio::main]` that thread is the process's main thread, whose
    /// malloc arena would keep the start-up's free memory (parsing and
    /// building every target) for good, as nothing allocates there after
    /// it; on a worker the supervision reuses it (10,000 targets: 10.7 →
    /// 8.6 KiB a target).
    pub async fn start(self) -> Result<Server> {
        match tokio::spawn(self.start_here()).await {
            Ok(started) => started,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(Error::permanent("the server's start was cancelled").with_source(e)),
        }
    }

    async fn start_here(self) -> Result<Server> {
        let registry = self.registry.unwrap_or_else(rollback::registry);
        let env = self.env.clone();
        let (file, stamp) = load(&self.path, &registry, &*env).await?;
        let config = ServeConfig::from_options(file.serve.as_ref(), &file.source_name)
            .map_err(Error::from)?;
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let metrics = Arc::new(Metrics::new());
        let observer = Arc::new(Observer::new(metrics.clone(), config.timeline_capacity()));
        let mut sinks: Vec<Arc<dyn AuditSink>> = Vec::new();
        if let Some(file_sink) = file.audit_sink().await? {
            sinks.push(file_sink);
        }
        sinks.push(observer.clone());
        sinks.extend(self.audit);
        let rest: Arc<dyn AuditSink> = Arc::new(Tee::new(sinks));
        let notifier = Notifier::new(metrics.clone(), rest.clone(), clock.clone());
        notifier.configure(&config, file.policy.verify);
        let operators = Arc::new(OperatorAccess::new(&config));
        let elected = match &config.leader_election {
            Some(l) => Some(crate::leader::connect(l, &*env, clock.clone()).await?),
            None => None,
        };
        let leadership = elected.as_ref().map(|(l, _)| l.clone());
        let store = match (self.store, elected.map(|(_, s)| s), file.state_store()?) {
            (Some(s), _, _) | (None, Some(s), _) | (None, None, Some(s)) => s,
            (None, None, None) => {
                tracing::warn!(
                    "the watch file names no `state:` directory: state is kept in memory, so a restart forgets every watch"
                );
                Arc::new(MemoryStateStore::new())
            }
        };
        let (store, notices): (Arc<dyn StateStore>, Arc<dyn AuditSink>) = match &leadership {
            Some(l) => (
                Arc::new(LeaderStore {
                    inner: store,
                    leadership: l.clone(),
                }),
                Arc::new(LeaderNotices {
                    inner: Arc::new(notifier.clone()),
                    leadership: l.clone(),
                }),
            ),
            None => (store, Arc::new(notifier.clone())),
        };
        let mut engine = Engine::builder()
            .audit(Arc::new(Tee::new(vec![rest, notices])))
            .store(store)
            .authorizer(operators.clone())
            .clock(clock.clone());
        if let Some(j) = self.max_jitter {
            engine = engine.max_jitter(j);
        }
        let engine = engine.build();
        let poll_interval = config.poll_interval.unwrap_or(file.policy.interval);
        let receiver = match &config.alertmanager {
            Some(c) => Some(receiver(engine.clone(), c, clock.clone())?),
            None => None,
        };
        let listen = self.listen.unwrap_or(config.listen);
        let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
            Error::permanent(format!(
                "cannot listen on {listen}: {e}; set serve.listen (or --listen) to a free address"
            ))
        })?;
        let addr = listener.local_addr().map_err(|e| {
            Error::permanent(format!("no local address for {listen}")).with_source(e)
        })?;
        let shared = Arc::new(Shared {
            path: self.path,
            registry,
            env,
            supervisor: Mutex::new(Some(Supervisor::new(engine.clone(), poll_interval))),
            engine,
            observer,
            metrics,
            notifier,
            operators,
            leadership,
            targets: Mutex::new(BTreeMap::new()),
            reloading: tokio::sync::Mutex::new(()),
            running: Running {
                listen: addr,
                poll_interval,
                reload_check: config.reload_check,
                alertmanager: config.alertmanager.clone(),
            },
            grace: Mutex::new(config.shutdown_grace),
            retry_reload: AtomicBool::new(false),
            stamp: Mutex::new(Some(stamp)),
            state: AtomicU8::new(STARTING),
        });
        let report = match shared.apply(&file).await {
            Ok(r) => r,
            Err(e) => {
                shared.stop_all();
                return Err(e);
            }
        };
        let app = crate::api::router(shared.clone(), receiver.as_ref());
        let (stop_http, stopped) = oneshot::channel::<()>();
        let http = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "the HTTP server stopped");
            }
        });
        let watcher = (!config.reload_check.is_zero()).then(|| {
            let shared = shared.clone();
            tokio::spawn(watch_file(shared, config.reload_check))
        });
        let follower = shared
            .leadership
            .as_ref()
            .map(|l| tokio::spawn(follow_leadership(shared.clone(), l.changes())));
        shared.state.store(READY, Ordering::SeqCst);
        tracing::info!(addr = %addr, targets = report.added.len(), file = %shared.path.display(),
            receiver = receiver.is_some(), "rollback serve is ready");
        Ok(Server {
            shared,
            http: Some(http),
            stop_http: Some(stop_http),
            watcher,
            follower,
        })
    }
}

fn receiver(
    engine: Engine,
    c: &ReceiverConfig,
    clock: Arc<dyn Clock>,
) -> Result<AlertmanagerReceiver> {
    let mut b = AlertmanagerReceiver::builder(Arc::new(engine))
        .clock(clock)
        .bearer_token(c.bearer_token.clone())
        .max_body_bytes(c.max_body_bytes)
        .header_read_timeout(c.header_read_timeout)
        .body_read_timeout(c.body_read_timeout)
        .idle_timeout(c.idle_timeout)
        .max_connections(c.max_connections)
        .dedup_capacity(c.dedup_capacity)
        .log_capacity(c.log_capacity);
    for r in &c.routes {
        b = b.route(&r.matchers, &r.target);
    }
    b.build()
        .map_err(|e| Error::invalid(format!("serve.alertmanager: {e}")))
}

/// Read and check the watch file; also a hash of its bytes, to notice a
/// change on disk.
async fn load(
    path: &Path,
    registry: &Registry,
    env: &(dyn Fn(&str) -> Option<String> + Send + Sync),
) -> Result<(WatchFile, u64)> {
    let stamp = stamp(path).await.unwrap_or_default();
    let file = WatchFile::load_with_env(path, registry, &|name| env(name)).map_err(Error::from)?;
    Ok((file, stamp))
}

async fn stamp(path: &Path) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let bytes = tokio::fs::read(path).await.ok()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    Some(h.finish())
}

/// Reload when the file's bytes change (or a reload deferred a target).
async fn watch_file(shared: Arc<Shared>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = stamp(&shared.path).await;
        let changed = now.is_some() && now != *lock(&shared.stamp);
        if changed || shared.retry_reload.load(Ordering::SeqCst) {
            if changed {
                tracing::info!(file = %shared.path.display(), "the watch file changed on disk: reloading");
            }
            match shared.reload().await {
                Ok(r) => tracing::info!("reloaded: {r}"),
                Err(e) => tracing::error!("reload refused, nothing changed: {}", e.full_message()),
            }
        }
    }
}

/// Supervise the targets of the shards this replica leads, and only
/// those, as leadership changes.
async fn follow_leadership(shared: Arc<Shared>, changes: Vec<tokio::sync::watch::Receiver<bool>>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    for mut c in changes {
        let tx = tx.clone();
        tokio::spawn(async move {
            while c.changed().await.is_ok() {
                if tx.send(()).await.is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    // What changed before these receivers were made, too.
    shared.rebalance();
    while rx.recv().await.is_some() {
        shared.rebalance();
    }
}

/// A hash of what shapes every target's watch: the probes and the policy.
fn shared_fingerprint(file: &WatchFile) -> u64 {
    let probes: Vec<serde_json::Value> = file
        .probes
        .iter()
        .map(|p| json!({"name": p.name, "kind": p.kind, "options": p.options}))
        .collect();
    let policy = serde_json::to_value(&*file.policy).unwrap_or_default();
    hash(&json!({"probes": probes, "policy": policy}).to_string())
}

/// A hash of what shapes one target's watch: its options and what every
/// target shares, for telling a changed target from an unchanged one (a
/// hash, not the settings: 10,000 copies of the policy would cost more
/// memory than the watches).
fn fingerprint(shared: u64, options: &rollback_core::registry::Options) -> u64 {
    hash(&format!(
        "{shared}:{}",
        serde_json::Value::Object(options.clone())
    ))
}

fn hash(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

impl Shared {
    pub(crate) fn target_count(&self) -> usize {
        lock(&self.targets).len()
    }

    /// The supervised targets and their URLs, by id.
    pub(crate) fn supervised(&self) -> Vec<(TargetId, String)> {
        let mut v: Vec<(TargetId, String)> = lock(&self.targets)
            .iter()
            .map(|(url, e)| (e.id.clone(), url.clone()))
            .collect();
        v.sort();
        v
    }

    /// The URL of a supervised target.
    pub(crate) fn url_of(&self, id: &TargetId) -> Option<String> {
        lock(&self.targets)
            .iter()
            .find(|(_, e)| e.id == *id)
            .map(|(url, _)| url.clone())
    }

    /// What the supervisor's last look at the target found.
    pub(crate) fn noticed_of(&self, id: &TargetId) -> Option<Noticed> {
        lock(&self.supervisor).as_ref()?.noticed_of(id)
    }

    fn rolling_back(&self) -> Vec<TargetId> {
        self.engine
            .phases()
            .into_iter()
            .filter(|(_, p)| p.kind() == PhaseKind::RollingBack)
            .map(|(t, _)| t)
            .collect()
    }

    /// The target's shard, and its watch with the leader's checks before
    /// each change (with leader election).
    fn guard(&self, spec: WatchSpec) -> (usize, WatchSpec) {
        let Some(l) = &self.leadership else {
            return (0, spec);
        };
        let shard = l.shard_of(spec.target.id());
        let spec = WatchSpec {
            target: Arc::new(LeaderTarget {
                inner: spec.target,
                leadership: l.clone(),
            }),
            rollbacker: Arc::new(LeaderRollbacker {
                inner: spec.rollbacker,
                leadership: l.clone(),
            }),
            ..spec
        };
        (shard, spec)
    }

    /// Whether this replica acts on the targets of `shard`.
    fn acts_on(&self, shard: usize) -> bool {
        self.leadership.as_ref().is_none_or(|l| l.leads(shard))
    }

    /// Supervise the targets of the shards this replica leads, stop
    /// supervising the others (their watches stop; state stays).
    fn rebalance(&self) {
        let Some(l) = &self.leadership else {
            return;
        };
        let entries: Vec<(TargetId, usize, WatchSpec)> = lock(&self.targets)
            .values()
            .filter_map(|e| Some((e.id.clone(), e.shard, (**e.spec.as_ref()?).clone())))
            .collect();
        for shard in 0..l.shard_count() {
            self.metrics.leading(shard, l.leads(shard));
        }
        let guard = lock(&self.supervisor);
        let Some(s) = guard.as_ref() else {
            return;
        };
        let active: std::collections::BTreeSet<TargetId> = s.targets().into_iter().collect();
        // The targets of shards newly led are supervised together, as a
        // load's are (one table built anew, not one insert a target).
        let mut gained = Vec::new();
        for (id, shard, spec) in entries {
            let leads = l.leads(shard);
            if leads && !active.contains(&id) {
                tracing::info!(target = %id, shard, identity = %l.identity, "leading: supervising");
                gained.push(spec);
            } else if !leads && active.contains(&id) {
                tracing::warn!(target = %id, shard, identity = %l.identity, "no longer leading: watch stopped");
                s.remove(&id);
            }
        }
        let ids: Vec<TargetId> = gained.iter().map(|spec| spec.target.id().clone()).collect();
        for (id, result) in ids.iter().zip(s.add_all(gained)) {
            if let Err(e) = result {
                tracing::error!(target = %id, "cannot supervise: {}", e.full_message());
            }
        }
    }

    /// Supervise new targets, each with its shard: those of the shards
    /// this replica leads at once, the others when it comes to lead them.
    /// What became of each, in order.
    fn add_all(&self, specs: &[(WatchSpec, usize)]) -> Vec<Result<()>> {
        self.observer
            .track_all(specs.iter().map(|(spec, _)| spec.target.id()));
        let mut results: Vec<Result<()>> = Vec::with_capacity(specs.len());
        match lock(&self.supervisor).as_ref() {
            Some(s) => {
                // Read once a target: leadership may change meanwhile, and
                // each result must go to the spec it is of.
                let acts: Vec<bool> = specs
                    .iter()
                    .map(|(_, shard)| self.acts_on(*shard))
                    .collect();
                let acting: Vec<WatchSpec> = specs
                    .iter()
                    .zip(&acts)
                    .filter(|(_, acts)| **acts)
                    .map(|((spec, _), _)| spec.clone())
                    .collect();
                let mut added = s.add_all(acting).into_iter();
                for acts in acts {
                    results.push(match acts {
                        true => added.next().unwrap_or(Ok(())),
                        false => Ok(()),
                    });
                }
            }
            None => results.extend(
                specs
                    .iter()
                    .map(|_| Err(Error::permanent("the server is shutting down"))),
            ),
        }
        for ((spec, _), result) in specs.iter().zip(&results) {
            if result.is_err() {
                self.observer.forget(spec.target.id());
            }
        }
        results
    }

    fn remove(&self, id: &TargetId) {
        if let Some(s) = lock(&self.supervisor).as_ref() {
            s.remove(id);
        }
        self.observer.forget(id);
        self.notifier.forget(id);
    }

    fn stop_all(&self) {
        let ids: Vec<TargetId> = lock(&self.targets).values().map(|e| e.id.clone()).collect();
        for id in ids {
            self.remove(&id);
        }
        lock(&self.targets).clear();
    }

    /// Supervise exactly the file's targets: add the new ones, remove the
    /// gone ones, restart the changed ones, leave the rest alone. Every new
    /// or changed target is resolved first; if one cannot be, nothing
    /// changes.
    async fn apply(&self, file: &WatchFile) -> Result<ReloadReport> {
        let current = lock(&self.targets).clone();
        let common = shared_fingerprint(file);
        let wanted: BTreeMap<String, (&rollback_core::watchfile::TargetEntry, u64)> = file
            .targets
            .iter()
            .map(|t| (t.url.to_string(), (t, fingerprint(common, &t.options))))
            .collect();
        let rolling = self.rolling_back();
        let mut report = ReloadReport::default();
        let mut to_resolve = Vec::new();
        let mut to_remove = Vec::new();
        for (url, entry) in &current {
            match wanted.get(url) {
                None => {
                    if rolling.contains(&entry.id) {
                        report.deferred.push(entry.id.clone());
                    } else {
                        to_remove.push(url.clone());
                    }
                }
                Some((_, fp)) if *fp != entry.fingerprint => {
                    if rolling.contains(&entry.id) {
                        report.deferred.push(entry.id.clone());
                    } else {
                        to_resolve.push(url.clone());
                    }
                }
                Some(_) => report.unchanged += 1,
            }
        }
        for url in wanted.keys() {
            if !current.contains_key(url) {
                to_resolve.push(url.clone());
            }
        }
        // Resolve each new or changed target on its own, so that a failure
        // names its target; nothing is applied unless all resolve.
        let mut resolved = Vec::new();
        let mut errors = Vec::new();
        // The file without its targets, to resolve one target at a time
        // (a clone of the whole file per target would be quadratic).
        let mut template = file.clone();
        template.targets.clear();
        template.serve = None;
        for url in &to_resolve {
            let (entry, fp) = &wanted[url];
            let mut one = template.clone();
            one.targets.push((*entry).clone());
            match one.resolve(&self.registry).await {
                Ok(mut specs) if specs.len() == 1 => {
                    resolved.push((url.clone(), *fp, specs.remove(0)))
                }
                Ok(_) => errors.push(format!("target {url}: not one watch")),
                Err(e) => errors.push(e.full_message()),
            }
        }
        // Two URLs may not name one target id.
        let mut ids: BTreeMap<TargetId, String> = current
            .iter()
            .filter(|(url, _)| !to_remove.contains(url) && !to_resolve.contains(url))
            .map(|(url, e)| (e.id.clone(), url.clone()))
            .collect();
        for (url, _, spec) in &resolved {
            let id = spec.target.id().clone();
            if let Some(other) = ids.insert(id.clone(), url.clone()) {
                errors.push(format!(
                    "targets {other} and {url} are both target {id}; remove one"
                ));
            }
        }
        if !errors.is_empty() {
            return Err(Error::invalid(format!(
                "watch file {}: {}",
                file.source_name,
                errors.join("; ")
            )));
        }
        for url in &to_remove {
            let gone = lock(&self.targets).remove(url);
            if let Some(e) = gone {
                self.remove(&e.id);
                report.removed.push(e.id);
            }
        }
        // The old watch of each changed target stops, then every new or
        // changed one is supervised at once.
        let mut adding = Vec::with_capacity(resolved.len());
        let mut specs = Vec::with_capacity(resolved.len());
        for (url, fp, spec) in resolved {
            let (shard, spec) = self.guard(spec);
            let old = lock(&self.targets).remove(&url);
            if let Some(old) = &old {
                self.remove(&old.id);
            }
            adding.push((url, fp, old.is_some()));
            specs.push((spec, shard));
        }
        let results = self.add_all(&specs);
        let mut failed = Vec::new();
        // The new entries are put in the table in one go, which builds it
        // anew with full nodes: one at a time, a B-tree fed in order keeps
        // its nodes half empty.
        let mut fresh = Vec::new();
        for (((url, fp, changed), (spec, shard)), result) in
            adding.into_iter().zip(specs).zip(results)
        {
            let id = spec.target.id().clone();
            match result {
                Ok(()) => {
                    if changed {
                        report.changed.push(id.clone());
                    } else {
                        report.added.push(id.clone());
                    }
                    let spec = self.leadership.is_some().then(|| Box::new(spec));
                    fresh.push((
                        url,
                        Entry {
                            id,
                            spec,
                            shard,
                            fingerprint: fp,
                        },
                    ));
                }
                Err(e) => failed.push(format!("target {url}: {}", e.full_message())),
            }
        }
        let mut fresh: BTreeMap<String, Entry> = fresh.into_iter().collect();
        lock(&self.targets).append(&mut fresh);
        self.metrics.targets(self.target_count());
        self.retry_reload
            .store(!report.deferred.is_empty(), Ordering::SeqCst);
        if !failed.is_empty() {
            return Err(Error::invalid(failed.join("; ")));
        }
        Ok(report)
    }

    /// Load the file again and apply it; see [`Server::reload`].
    pub(crate) async fn reload(&self) -> Result<ReloadReport> {
        let _one = self.reloading.lock().await;
        if self.state.load(Ordering::SeqCst) == STOPPING {
            return Err(Error::permanent("the server is shutting down"));
        }
        let result = self.reload_once().await;
        self.metrics.reload(result.is_ok());
        result
    }

    async fn reload_once(&self) -> Result<ReloadReport> {
        let loaded = load(&self.path, &self.registry, &*self.env).await;
        // A file that fails is not reloaded again until it changes.
        if let Some(s) = stamp(&self.path).await {
            *lock(&self.stamp) = Some(s);
        }
        let (file, _) = loaded?;
        let config = ServeConfig::from_options(file.serve.as_ref(), &file.source_name)
            .map_err(Error::from)?;
        let mut report = self.apply(&file).await?;
        self.operators.replace(&config);
        self.notifier.configure(&config, file.policy.verify);
        self.observer.set_capacity(config.timeline_capacity());
        *lock(&self.grace) = config.shutdown_grace;
        let r = &self.running;
        if config.listen != r.listen && config.listen.port() != 0 {
            // A --listen override differs from the file on purpose.
            tracing::debug!(
                "serve.listen differs from the address in use ({})",
                r.listen
            );
        }
        if config.poll_interval.unwrap_or(file.policy.interval) != r.poll_interval {
            report.restart_needed.push("serve.poll_interval");
        }
        if config.reload_check != r.reload_check {
            report.restart_needed.push("serve.reload_check");
        }
        if config.alertmanager != r.alertmanager {
            report.restart_needed.push("serve.alertmanager");
        }
        Ok(report)
    }
}

/// `rollback serve` as a library type: the targets of one watch file
/// supervised continuously, and one HTTP server for the operator API,
/// `/metrics`, `/healthz`, `/readyz`, `/openapi.yaml` and the Alertmanager
/// receiver. See the [crate docs](crate).
///
/// Dropping a server stops everything at once (watches included; their
/// saved state stays); [`Server::shutdown`] stops it gracefully.
pub struct Server {
    shared: Arc<Shared>,
    http: Option<tokio::task::JoinHandle<()>>,
    stop_http: Option<oneshot::Sender<()>>,
    watcher: Option<tokio::task::JoinHandle<()>>,
    follower: Option<tokio::task::JoinHandle<()>>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.fmt(f)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
        if let Some(f) = self.follower.take() {
            f.abort();
        }
        if let Some(h) = self.http.take() {
            h.abort();
        }
        self.shared.stop_all();
        lock(&self.shared.supervisor).take();
    }
}

impl Server {
    /// A builder for the watch file at `path`.
    pub fn builder(path: impl Into<PathBuf>) -> ServerBuilder {
        ServerBuilder {
            path: path.into(),
            registry: None,
            env: Arc::new(|name| std::env::var(name).ok()),
            listen: None,
            clock: None,
            audit: Vec::new(),
            store: None,
            max_jitter: None,
        }
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.running.listen
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.running.listen)
    }

    /// The engine every target is watched on.
    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// The supervised targets and their URLs, by id.
    pub fn targets(&self) -> Vec<(TargetId, String)> {
        self.shared.supervised()
    }

    /// Load the watch file again and apply it: targets added and removed,
    /// changed targets restarted from their saved state, the others left
    /// undisturbed; the operators, grants and notification channels
    /// replaced. A file with a problem, or a target that cannot be built,
    /// refuses the whole reload: nothing changes.
    pub async fn reload(&self) -> Result<ReloadReport> {
        self.shared.reload().await
    }

    /// Stop gracefully; see [`Server::shutdown_with`].
    pub async fn shutdown(self) -> ShutdownReport {
        self.shutdown_with(std::future::pending()).await
    }

    /// Stop gracefully: `/readyz` answers 503, the HTTP server stops
    /// taking requests (those in flight finish), no target is looked at
    /// again and every watch that is not rolling back stops; a rollback in
    /// flight may finish within `serve.shutdown_grace` (or until `stop_now`
    /// completes, such as a second signal). State is saved by the engine
    /// after every step, so the next start resumes every watch, an
    /// interrupted rollback included. Queued notifications get what is left
    /// of the grace (at least a second, at most ten) to go out.
    pub async fn shutdown_with(mut self, stop_now: impl Future<Output = ()>) -> ShutdownReport {
        let shared = self.shared.clone();
        shared.state.store(STOPPING, Ordering::SeqCst);
        let _no_reload = shared.reloading.lock().await;
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
        if let Some(f) = self.follower.take() {
            f.abort();
        }
        if let Some(tx) = self.stop_http.take() {
            let _ = tx.send(());
        }
        // No new looks: the supervisor goes, the engine's watches stay.
        lock(&shared.supervisor).take();
        let started = tokio::time::Instant::now();
        let grace = *lock(&shared.grace);
        let deadline = started + grace;
        tokio::pin!(stop_now);
        let mut report = ShutdownReport::default();
        loop {
            for (t, p) in shared.engine.phases() {
                if p.kind() != PhaseKind::RollingBack {
                    shared.engine.unwatch(&t);
                }
            }
            let rolling = shared.rolling_back();
            if rolling.is_empty() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = tokio::time::sleep_until(deadline) => { report.interrupted = rolling; break; }
                _ = &mut stop_now => { report.interrupted = rolling; break; }
            }
        }
        for (t, _) in shared.engine.phases() {
            shared.engine.unwatch(&t);
        }
        report.waited = started.elapsed();
        // Watches stopped: hand the leases over at once.
        if let Some(l) = &shared.leadership {
            l.release().await;
        }
        if !report.interrupted.is_empty() {
            tracing::warn!(targets = %names(&report.interrupted),
                "stopping with rollbacks in flight; the next start resumes them");
        }
        let left = grace.saturating_sub(report.waited);
        report.undelivered_channels = shared
            .notifier
            .close(left.clamp(Duration::from_secs(1), Duration::from_secs(10)))
            .await;
        if let Some(http) = self.http.take()
            && tokio::time::timeout(Duration::from_secs(5), http)
                .await
                .is_err()
        {
            tracing::warn!("HTTP requests still in flight after 5s were cut");
        }
        report
    }
}
