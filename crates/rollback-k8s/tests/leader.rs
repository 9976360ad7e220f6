//! Leader election on a Lease and the ConfigMap state store, against the
//! test API server (kmock plus tests/support/kube_apiserver.py, which
//! answers a write with a stale resourceVersion 409 Conflict). Leases are
//! short (2s, renew 1s, retry 0.3s) so the tests stay fast.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use rollback_core::machine::{Candidate, Machine, Watch};
use rollback_core::store::StateStore;
use rollback_core::{ErrorKind, Policy, RevisionHealth, TargetId, Timestamp};
use rollback_k8s::{ConfigMapStateStore, LeaseElector, LeaseTimings};
use serde_json::json;
use support::KubeServer;

const NS: &str = "rollback";

fn short() -> LeaseTimings {
    LeaseTimings {
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_secs(1),
        retry_period: Duration::from_millis(300),
    }
}

async fn until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn elector(server: &KubeServer, identity: &str) -> LeaseElector {
    LeaseElector::builder(server.client(), NS, "rollback-serve", identity)
        .timings(short())
        .start()
        .unwrap()
}

async fn lease(server: &KubeServer) -> Lease {
    let api: Api<Lease> = Api::namespaced(server.client(), NS);
    api.get("rollback-serve").await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_leads_and_the_other_takes_over_only_after_the_lease_expires() {
    let server = KubeServer::start();
    support::create_namespace(&server.client(), NS).await;
    let a = elector(&server, "replica-a");
    until("a leads", Duration::from_secs(10), || a.is_leader()).await;
    let b = elector(&server, "replica-b");
    let first = lease(&server).await.spec.unwrap();
    assert_eq!(first.holder_identity.as_deref(), Some("replica-a"));
    assert_eq!(first.lease_duration_seconds, Some(2));
    assert_eq!(first.lease_transitions, Some(0));
    assert!(first.acquire_time.is_some() && first.renew_time.is_some());
    // a renews every retry period; b follows.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let renewed = lease(&server).await.spec.unwrap();
    assert!(renewed.renew_time > first.renew_time, "renewed");
    assert_eq!(renewed.acquire_time, first.acquire_time);
    assert!(a.is_leader() && !b.is_leader());
    assert_eq!(b.holder().as_deref(), Some("replica-a"));

    // a dies without a word (its task ends): b waits out the lease.
    let died = Instant::now();
    drop(a);
    let mut took = None;
    while took.is_none() {
        assert!(
            died.elapsed() < Duration::from_secs(15),
            "b never took over"
        );
        if b.is_leader() {
            took = Some(died.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = took.unwrap();
    // a renewed at most one retry period before it died, and b counts the
    // lease from when it saw that renewal: never sooner than that.
    assert!(
        took >= Duration::from_secs(2) - Duration::from_millis(300),
        "b took over {took:?} after a died, inside a's lease"
    );
    let now = lease(&server).await.spec.unwrap();
    assert_eq!(now.holder_identity.as_deref(), Some("replica-b"));
    assert_eq!(now.lease_transitions, Some(1));
    assert!(now.acquire_time > first.acquire_time);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_lease_is_taken_at_once_and_a_race_to_create_has_one_winner() {
    let server = KubeServer::start();
    support::create_namespace(&server.client(), NS).await;
    // Five candidates start at once: the Lease is created once.
    let all: Vec<LeaseElector> = (0..5)
        .map(|i| elector(&server, &format!("replica-{i}")))
        .collect();
    until("one leads", Duration::from_secs(10), || {
        all.iter().any(LeaseElector::is_leader)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let leaders: Vec<&LeaseElector> = all.iter().filter(|e| e.is_leader()).collect();
    assert_eq!(leaders.len(), 1, "{all:?}");
    let leader = leaders[0];
    let holder = lease(&server).await.spec.unwrap().holder_identity.unwrap();
    assert_eq!(holder, leader.identity());

    // A graceful stop releases: another takes it within about a retry
    // period, not a lease duration.
    leader.release().await.unwrap();
    assert!(!leader.is_leader());
    // Emptied (or already taken by another candidate).
    let released = lease(&server).await.spec.unwrap();
    assert_ne!(released.holder_identity.as_deref(), Some(holder.as_str()));
    until("another leads", Duration::from_secs(10), || {
        all.iter().filter(|e| e.is_leader()).count() == 1
    })
    .await;
    let next = lease(&server).await.spec.unwrap();
    assert_ne!(next.holder_identity.as_deref(), Some(holder.as_str()));
    assert_eq!(next.lease_transitions, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_renewals_fail_stops_leading_before_its_lease_expires() {
    let server = KubeServer::start();
    support::create_namespace(&server.client(), NS).await;
    let a = elector(&server, "replica-a");
    until("a leads", Duration::from_secs(10), || a.is_leader()).await;
    // Every write of the Lease fails from now on (a partition as the
    // leader sees it: its renewals get no good answer).
    server
        .fault(json!({"verb": "update", "resource": "leases", "status": 503}))
        .await;
    let cut = Instant::now();
    let last = lease(&server).await.spec.unwrap().renew_time.unwrap();
    let mut leadership = a.leadership();
    tokio::time::timeout(Duration::from_secs(10), leadership.wait_for(|l| !*l))
        .await
        .expect("a stops leading")
        .unwrap();
    let stopped = cut.elapsed();
    let expires = last.0.as_millisecond() + 2_000;
    let stopped_at = rollback_core::time::SystemClock;
    let now = rollback_core::time::Clock::now(&stopped_at).as_millis();
    assert!(
        now < expires,
        "a stopped leading {stopped:?} after the cut, {} ms after its lease expired",
        now - expires
    );
    assert!(!a.is_leader());
}

fn state(target: &str, revision: &str) -> rollback_core::machine::MachineState {
    let policy =
        Arc::new(Policy::from_yaml("interval: 30s\nprobes: [{name: e, success: '< 1'}]").unwrap());
    let history = vec![
        Candidate::new(revision, RevisionHealth::Unknown),
        Candidate::new("v1", RevisionHealth::Good),
    ];
    Machine::new(
        policy,
        Watch::new(target, revision, history),
        Timestamp::from_millis(1_000),
    )
    .state()
    .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configmap_store_passes_the_state_store_conformance_checks() {
    let server = KubeServer::start();
    support::create_namespace(&server.client(), NS).await;
    let store = ConfigMapStateStore::new(server.client(), NS, "rollback-state");
    let report = rollback_core::conformance::check_state_store(&store, "")
        .await
        .unwrap();
    assert_eq!(report.passed.len(), 4, "{report:?}");
    // A second store (another replica) reads what the first wrote.
    let other = ConfigMapStateStore::new(server.client(), NS, "rollback-state");
    rollback_core::conformance::check_state_store(&other, "")
        .await
        .unwrap();
    let id = TargetId::new("k8s:shop/web");
    let name = store.name_of(&id);
    assert!(name.starts_with("rollback-state-k8s-shop-web-"), "{name}");
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), NS);
    let cm = cms.get(&name).await.unwrap();
    assert_eq!(
        cm.metadata.annotations.unwrap()["rollback.dev/target"],
        "k8s:shop/web"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_replica_cannot_overwrite_the_new_leaders_state_and_corruption_is_named() {
    let server = KubeServer::start();
    support::create_namespace(&server.client(), NS).await;
    let old = ConfigMapStateStore::new(server.client(), NS, "rollback-state");
    let new = ConfigMapStateStore::new(server.client(), NS, "rollback-state");
    let id = TargetId::new("k8s:shop/web");
    old.save(&state("k8s:shop/web", "v2")).await.unwrap();
    // The new leader loads and saves; the old one, unaware, saves again.
    assert!(new.load(&id).await.unwrap().is_some());
    new.save(&state("k8s:shop/web", "v3")).await.unwrap();
    let e = old.save(&state("k8s:shop/web", "v4")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(e.to_string().contains("not overwritten"), "{e}");
    let kept = new.load(&id).await.unwrap().unwrap();
    assert_eq!(kept.watch.revision.as_str(), "v3");
    // Saving what is already there (a write whose answer was lost) is fine.
    old.save(&state("k8s:shop/web", "v3")).await.unwrap();

    // Corrupt JSON, and a ConfigMap that belongs to another target.
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), NS);
    let name = new.name_of(&id);
    cms.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"state.json": "{\"format\": 1, \"sta"}})),
    )
    .await
    .unwrap();
    let e = new.load(&id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt);
    assert!(
        e.to_string().contains(&format!("ConfigMap {NS}/{name}")),
        "{e}"
    );
    cms.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"annotations": {"rollback.dev/target": "k8s:shop/api"}}}),
        ),
    )
    .await
    .unwrap();
    let e = new.load(&id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt);
    assert!(
        e.to_string().contains("belongs to target k8s:shop/api"),
        "{e}"
    );
}
