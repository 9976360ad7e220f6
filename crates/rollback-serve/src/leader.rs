//! Two or more replicas, one actor per target: the targets are divided
//! into shards by rendezvous hashing, each shard has a Lease, and a
//! replica supervises the targets of the shards whose Lease it holds
//! (`serve.leader_election`). Every backend call that changes something
//! (a rollback, a mark), every save of state and every notification
//! first checks that the lease is still held: a replica that lost it does
//! nothing more, even before its watches are stopped.

use std::sync::Arc;

use async_trait::async_trait;
use rollback_core::audit::{AuditRecord, AuditSink};
use rollback_core::machine::MachineState;
use rollback_core::store::StateStore;
use rollback_core::{
    Capabilities, Convergence, Error, HistoryEntry, Mark, Result, RevisionId, RevisionRef,
    RollbackOutcome, RollbackRequest, Rollbacker, Target, TargetId,
};
use tokio::sync::watch;

/// One shard's lease as the server uses it.
#[async_trait]
pub(crate) trait ShardLease: Send + Sync + 'static {
    fn is_leader(&self) -> bool;
    fn holder(&self) -> Option<String>;
    fn leadership(&self) -> watch::Receiver<bool>;
    fn lease(&self) -> String;
    async fn release(&self) -> Result<()>;
}

#[cfg(feature = "k8s")]
#[async_trait]
impl ShardLease for rollback_k8s::LeaseElector {
    fn is_leader(&self) -> bool {
        rollback_k8s::LeaseElector::is_leader(self)
    }
    fn holder(&self) -> Option<String> {
        rollback_k8s::LeaseElector::holder(self)
    }
    fn leadership(&self) -> watch::Receiver<bool> {
        rollback_k8s::LeaseElector::leadership(self)
    }
    fn lease(&self) -> String {
        rollback_k8s::LeaseElector::lease(self)
    }
    async fn release(&self) -> Result<()> {
        rollback_k8s::LeaseElector::release(self).await
    }
}

/// The shards' leases of this replica.
pub(crate) struct Leadership {
    pub(crate) identity: String,
    shards: Vec<Box<dyn ShardLease>>,
    /// With shards: this replica's own Lease, which tells the others it is
    /// alive, and the task that reads who else is.
    member: Option<(Box<dyn ShardLease>, tokio::task::JoinHandle<()>)>,
}

impl Drop for Leadership {
    fn drop(&mut self) {
        if let Some((_, task)) = &self.member {
            task.abort();
        }
    }
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("identity", &self.identity)
            .field("shards", &self.shards.len())
            .finish()
    }
}

fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in *p {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        h = (h ^ 0xff).wrapping_mul(0x0100_0000_01b3);
    }
    // FNV's low bits mix poorly: finish with a 64-bit mixer (splitmix64).
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The shard of `target` among `shards` by rendezvous (highest random
/// weight) hashing: a change of the shard count moves only the targets of
/// the shards added or removed.
pub(crate) fn shard_of(target: &TargetId, shards: usize) -> usize {
    (0..shards.max(1))
        .max_by_key(|i| fnv1a(&[target.as_str().as_bytes(), &i.to_le_bytes()]))
        .unwrap_or(0)
}

/// The replica that should lead `shard` among the live `members`, by
/// rendezvous hashing: when one dies, only its shards move.
#[cfg_attr(not(feature = "k8s"), allow(dead_code))]
pub(crate) fn preferred(shard: usize, members: &[String]) -> Option<&str> {
    members
        .iter()
        .max_by_key(|m| fnv1a(&[m.as_bytes(), &shard.to_le_bytes()]))
        .map(String::as_str)
}

impl Leadership {
    #[cfg_attr(not(feature = "k8s"), allow(dead_code))]
    pub(crate) fn new(identity: String, shards: Vec<Box<dyn ShardLease>>) -> Self {
        Leadership {
            identity,
            shards,
            member: None,
        }
    }

    pub(crate) fn shard_count(&self) -> usize {
        self.shards.len()
    }

    pub(crate) fn shard_of(&self, target: &TargetId) -> usize {
        shard_of(target, self.shards.len())
    }

    /// Whether this replica leads `shard` now.
    pub(crate) fn leads(&self, shard: usize) -> bool {
        self.shards.get(shard).is_some_and(|s| s.is_leader())
    }

    /// Who leads `shard`, as last seen.
    pub(crate) fn leader_of(&self, shard: usize) -> Option<String> {
        self.shards.get(shard).and_then(|s| s.holder())
    }

    /// Resolves at the next change of leadership of any shard.
    pub(crate) fn changes(&self) -> Vec<watch::Receiver<bool>> {
        self.shards.iter().map(|s| s.leadership()).collect()
    }

    /// Refuse to act on `target` unless this replica leads its shard.
    pub(crate) fn check(&self, target: &TargetId, doing: &str) -> Result<()> {
        let shard = self.shard_of(target);
        if self.leads(shard) {
            return Ok(());
        }
        let lease = self
            .shards
            .get(shard)
            .map(|s| s.lease())
            .unwrap_or_default();
        Err(Error::transient(format!(
            "not {doing} target {target}: replica {} no longer holds Lease {lease} (shard {shard}); its new leader resumes it",
            self.identity
        )))
    }

    /// Give every lease up (a graceful stop).
    pub(crate) async fn release(&self) {
        let member = self.member.as_ref().map(|(m, _)| m);
        for s in self.shards.iter().chain(member) {
            if let Err(e) = s.release().await {
                tracing::warn!(lease = %s.lease(), "releasing the lease: {}", e.full_message());
            }
        }
    }
}

/// This replica's identity: the configured one, else `POD_NAME`, else
/// `HOSTNAME`, else the host name.
fn identity(
    config: &crate::config::LeaderElectionConfig,
    env: &(dyn Fn(&str) -> Option<String> + Send + Sync),
) -> Result<String> {
    if let Some(i) = &config.identity {
        return Ok(i.clone());
    }
    env("POD_NAME")
        .or_else(|| env("HOSTNAME"))
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|i| !i.trim().is_empty())
        .ok_or_else(|| {
            Error::invalid(
                "serve.leader_election.identity: no POD_NAME, HOSTNAME or host name to name this replica; set identity",
            )
        })
}

/// Start electing on every shard's Lease; the state store on ConfigMaps.
#[cfg(feature = "k8s")]
pub(crate) async fn connect(
    config: &crate::config::LeaderElectionConfig,
    env: &(dyn Fn(&str) -> Option<String> + Send + Sync),
    clock: Arc<dyn rollback_core::time::Clock>,
) -> Result<(Arc<Leadership>, Arc<dyn StateStore>)> {
    let identity = identity(config, env)?;
    let client = rollback_k8s::kube_client(
        config.kubeconfig.as_deref(),
        config.context.as_deref(),
        "serve.leader_election",
    )
    .await?;
    let timings = rollback_k8s::LeaseTimings {
        lease_duration: config.lease,
        renew_deadline: config.renew,
        retry_period: config.retry,
    };
    // With shards, each replica contends only for the shards it should
    // lead among the live replicas (each holds a member Lease of its own),
    // and hands over the others, so N replicas share the shards; a shard
    // whose preferred replica is not seen alive is contended by all.
    let members: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let sharded = config.shards > 1;
    let mut shards: Vec<Box<dyn ShardLease>> = Vec::new();
    for (shard, name) in config.lease_names().into_iter().enumerate() {
        let mut elector = rollback_k8s::LeaseElector::builder(
            client.clone(),
            config.namespace.clone(),
            name,
            identity.clone(),
        )
        .timings(timings)
        .clock(clock.clone())
        .label("app.kubernetes.io/managed-by", "rollback-serve");
        if sharded {
            let (members, me) = (members.clone(), identity.clone());
            elector = elector.contend(move || {
                let live = members.lock().unwrap_or_else(|e| e.into_inner());
                !live.contains(&me) || preferred(shard, &live) == Some(me.as_str())
            });
        }
        shards.push(Box::new(elector.start()?));
    }
    let member = if sharded {
        let group = format!("{}-members", config.name);
        let mut lease_name: String = identity
            .chars()
            .map(|c| c.to_ascii_lowercase())
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(40)
            .collect();
        lease_name = format!(
            "{}-member-{}-{:08x}",
            config.name,
            lease_name.trim_matches('-'),
            fnv1a(&[identity.as_bytes()]) as u32
        );
        let elector = rollback_k8s::LeaseElector::builder(
            client.clone(),
            config.namespace.clone(),
            lease_name,
            identity.clone(),
        )
        .timings(timings)
        .clock(clock.clone())
        .label("app.kubernetes.io/managed-by", "rollback-serve")
        .label("rollback.dev/members", config.name.clone())
        .start()?;
        let (client, namespace, every) = (client.clone(), config.namespace.clone(), config.retry);
        let selector = format!("rollback.dev/members={}", config.name);
        let clock = clock.clone();
        let task = tokio::spawn(async move {
            loop {
                match rollback_k8s::lease::live_holders(
                    client.clone(),
                    &namespace,
                    &selector,
                    &*clock,
                )
                .await
                {
                    Ok(live) => {
                        let mut m = members.lock().unwrap_or_else(|e| e.into_inner());
                        if *m != live {
                            tracing::info!(members = %live.join(", "), group = %group, "replicas alive");
                            *m = live;
                        }
                    }
                    Err(e) => tracing::warn!("reading the replicas alive: {}", e.full_message()),
                }
                tokio::time::sleep(every).await;
            }
        });
        Some((Box::new(elector) as Box<dyn ShardLease>, task))
    } else {
        None
    };
    tracing::info!(identity = %identity, namespace = %config.namespace, leases = %config.lease_names().join(", "),
        "leader election: only the leader of a target's shard acts on it");
    let store = rollback_k8s::ConfigMapStateStore::new(
        client,
        &config.namespace,
        &format!("{}-state", config.name),
    );
    let mut leadership = Leadership::new(identity, shards);
    leadership.member = member;
    Ok((Arc::new(leadership), Arc::new(store)))
}

/// Without the `k8s` feature there are no Leases to elect on.
#[cfg(not(feature = "k8s"))]
pub(crate) async fn connect(
    config: &crate::config::LeaderElectionConfig,
    env: &(dyn Fn(&str) -> Option<String> + Send + Sync),
    clock: Arc<dyn rollback_core::time::Clock>,
) -> Result<(Arc<Leadership>, Arc<dyn StateStore>)> {
    let _ = (identity(config, env), clock);
    Err(Error::unsupported(
        "serve.leader_election: this build of rollback serve has no Kubernetes support; build it with the k8s feature",
    ))
}

/// A target whose marks are written only by the leader of its shard.
#[derive(Debug)]
pub(crate) struct LeaderTarget {
    pub(crate) inner: Arc<dyn Target>,
    pub(crate) leadership: Arc<Leadership>,
}

#[async_trait]
impl Target for LeaderTarget {
    fn id(&self) -> &TargetId {
        self.inner.id()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn current(&self) -> Result<RevisionRef> {
        self.inner.current().await
    }
    async fn history(&self) -> Result<Vec<HistoryEntry>> {
        self.inner.history().await
    }
    /// The target's own word (a Deployment's watch): without it, a
    /// leader polled every target only.
    fn changes(&self) -> Option<rollback_core::changes::Changes> {
        self.inner.changes()
    }
    async fn mark(&self, mark: &Mark) -> Result<()> {
        self.leadership.check(self.inner.id(), "marking")?;
        self.inner.mark(mark).await
    }
}

/// A rollbacker that acts only while this replica leads its target's shard.
#[derive(Debug)]
pub(crate) struct LeaderRollbacker {
    pub(crate) inner: Arc<dyn Rollbacker>,
    pub(crate) leadership: Arc<Leadership>,
}

#[async_trait]
impl Rollbacker for LeaderRollbacker {
    fn target(&self) -> &TargetId {
        self.inner.target()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn rollback(&self, request: &RollbackRequest) -> Result<RollbackOutcome> {
        self.leadership.check(self.inner.target(), "rolling back")?;
        self.inner.rollback(request).await
    }
    async fn wait_converged(
        &self,
        revision: &RevisionId,
        timeout: std::time::Duration,
    ) -> Result<Convergence> {
        self.inner.wait_converged(revision, timeout).await
    }
}

/// A store whose saves are made only by the leader of the target's shard.
#[derive(Debug)]
pub(crate) struct LeaderStore {
    pub(crate) inner: Arc<dyn StateStore>,
    pub(crate) leadership: Arc<Leadership>,
}

#[async_trait]
impl StateStore for LeaderStore {
    async fn load(&self, target: &TargetId) -> Result<Option<MachineState>> {
        self.inner.load(target).await
    }
    async fn save(&self, state: &MachineState) -> Result<()> {
        self.leadership
            .check(&state.watch.target, "saving the state of")?;
        self.inner.save(state).await
    }
}

/// Audit records reach the notifications only from the leader of the
/// record's target.
#[derive(Debug)]
pub(crate) struct LeaderNotices {
    pub(crate) inner: Arc<dyn AuditSink>,
    pub(crate) leadership: Arc<Leadership>,
}

#[async_trait]
impl AuditSink for LeaderNotices {
    async fn record(&self, record: &AuditRecord) -> Result<()> {
        if self
            .leadership
            .leads(self.leadership.shard_of(&record.target))
        {
            self.inner.record(record).await
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_target_passes_on_its_target_s_word_of_changes() {
        let inner = rollback_core::memory::InMemoryTarget::new(
            "web",
            [rollback_core::RevisionRecord::new("v1")],
        )
        .unwrap();
        let target = LeaderTarget {
            inner: Arc::new(inner.clone()),
            leadership: Arc::new(Leadership::new("me".into(), Vec::new())),
        };
        let word = target.changes().expect("the in-memory target gives word");
        assert_eq!(word.has_changed(), Ok(false));
        inner.deploy(rollback_core::RevisionRecord::new("v2"));
        assert_eq!(word.has_changed(), Ok(true));
    }

    #[test]
    fn rendezvous_spreads_targets_and_moves_few_when_a_shard_is_added() {
        let ids: Vec<TargetId> = (0..3000)
            .map(|i| TargetId::new(format!("k8s:ns/app-{i}")))
            .collect();
        let mut counts = [0usize; 3];
        for id in &ids {
            counts[shard_of(id, 3)] += 1;
        }
        for c in counts {
            assert!((800..1200).contains(&c), "{counts:?}");
        }
        let moved = ids
            .iter()
            .filter(|id| shard_of(id, 3) != shard_of(id, 4))
            .count();
        // Only the targets that go to the new shard move (about a quarter).
        assert!(moved < 900, "{moved}");
        assert!(ids.iter().all(|id| {
            let (a, b) = (shard_of(id, 3), shard_of(id, 4));
            a == b || b == 3
        }));
        assert_eq!(shard_of(&ids[0], 1), 0);
    }
}
