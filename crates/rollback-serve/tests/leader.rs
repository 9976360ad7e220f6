//! Replicas of `rollback serve` in separate processes (this test binary run
//! again as a replica, so SIGKILL is real) against the test API server
//! (kmock plus rollback-k8s's kube_apiserver.py, which knows Leases and
//! ConfigMaps with resourceVersion preconditions). Leases are short: 2s,
//! renew 1s, retry 0.3s.

#[allow(clippy::all, unreachable_pub)]
#[path = "../../rollback-k8s/tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, Patch, PatchParams};
use rollback_core::audit::{ActionKind, AuditEntry, JsonLinesAuditSink};
use serde_json::json;
use support::{KubeServer, Rev, Seed};

const CHILD: &str = "ROLLBACK_SERVE_REPLICA";
const WAIT: Duration = Duration::from_secs(60);

/// Not a check: the entry point of a replica process. The tests run this
/// binary again with `ROLLBACK_SERVE_REPLICA=FILE`; without it, it returns.
#[test]
fn replica_process() {
    let Some(file) = std::env::var_os(CHILD) else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .try_init();
    // Exit when the test that started this replica goes away.
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let server = rollback_serve::Server::builder(PathBuf::from(file))
            .listen("127.0.0.1:0".parse().unwrap())
            .start()
            .await
            .unwrap_or_else(|e| panic!("the replica did not start: {}", e.full_message()));
        // The address, for the test (libtest may capture stdout).
        let at = PathBuf::from(std::env::var_os(CHILD).unwrap()).with_extension("addr");
        std::fs::write(&at, server.local_addr().to_string()).unwrap();
        std::future::pending::<()>().await;
    });
}

/// A replica process; killed (SIGKILL) when dropped.
struct Replica {
    child: Child,
    addr: String,
    stderr: PathBuf,
}

impl Replica {
    fn start(file: &Path) -> Replica {
        let stderr = file.with_extension("stderr");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "replica_process",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD, file)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("starting a replica");
        let at = file.with_extension("addr");
        let _ = std::fs::remove_file(&at);
        let started = Instant::now();
        let addr = loop {
            if let Ok(a) = std::fs::read_to_string(&at)
                && !a.is_empty()
            {
                break Ok(a);
            }
            if started.elapsed() > WAIT || matches!(child.try_wait(), Ok(Some(_))) {
                break Err(());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let Ok(addr) = addr else {
            let _ = child.kill();
            panic!(
                "replica {} did not start:\n{}",
                file.display(),
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        };
        Replica {
            child,
            addr,
            stderr,
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    /// `rollback_leader{shard="N"}` of this replica's /metrics.
    fn leads(&self, shard: usize) -> bool {
        let body = http_get(&self.addr, "/metrics").unwrap_or_default();
        body.lines()
            .any(|l| l == format!("rollback_leader{{shard=\"{shard}\"}} 1"))
    }

    /// The API's view of one target (the bot token of the files below).
    fn view(&self, target: &str) -> serde_json::Value {
        let path = format!(
            "/api/v1/targets/{}",
            target.replace(':', "%3A").replace('/', "%2F")
        );
        let body = http_get(&self.addr, &path).unwrap_or_default();
        serde_json::from_str(&body).unwrap_or_default()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- replica {} stderr ---\n{}",
                self.addr,
                std::fs::read_to_string(&self.stderr).unwrap_or_default()
            );
        }
    }
}

fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer bot-token\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())
}

async fn until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A watch file for one replica: its own audit log and identity.
fn watch_file(
    dir: &Path,
    identity: &str,
    kubeconfig: &Path,
    targets: &str,
    shards: usize,
) -> PathBuf {
    watch_file_baking(dir, identity, kubeconfig, targets, shards, "1h")
}

/// The same, with its bake time.
fn watch_file_baking(
    dir: &Path,
    identity: &str,
    kubeconfig: &Path,
    targets: &str,
    shards: usize,
    bake: &str,
) -> PathBuf {
    let file = dir.join(format!("{identity}.yaml"));
    std::fs::write(
        &file,
        format!(
            "policy:\n  interval: 100ms\n  bake_time: {bake}\n  verify: 300ms\n\
             probes:\n  - name: error_rate\n    success: \"< 0.01\"\n    scripted:\n      values: [0.05]\n      per_revision: {{aaa: [0.001], bbb: [0.001], v2: [0.001]}}\n\
             audit: {identity}.audit.jsonl\n\
             targets:\n{targets}\
             serve:\n  reload_check: 0s\n  poll_interval: 100ms\n  shutdown_grace: 1s\n\
             \x20 operators: [{{actor: bot, token: bot-token}}]\n\
             \x20 leader_election: {{namespace: rollback, lease: 2s, renew: 1s, retry: 300ms, shards: {shards}, identity: {identity}, kubeconfig: {}}}\n",
            kubeconfig.display()
        ),
    )
    .unwrap();
    file
}

async fn setup() -> KubeServer {
    let kube = KubeServer::start();
    let client = kube.client();
    support::create_namespace(&client, "shop").await;
    support::create_namespace(&client, "rollback").await;
    kube
}

async fn image(kube: &KubeServer, name: &str) -> (String, String) {
    let d = support::deployment_json(&kube.client(), "shop", name).await;
    (
        d["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

async fn holder(kube: &KubeServer, lease: &str) -> Option<String> {
    let api: Api<Lease> = Api::namespaced(kube.client(), "rollback");
    api.get_opt(lease)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec?.holder_identity)
        .filter(|h| !h.is_empty())
}

fn rollback_records(file: &Path) -> (usize, usize) {
    let log = JsonLinesAuditSink::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let mut started = 0;
    let mut resumed = 0;
    for r in &log.records {
        match &r.entry {
            AuditEntry::ActionStarted {
                action: ActionKind::Rollback,
                ..
            } => started += 1,
            AuditEntry::ActionResumed {
                action: ActionKind::Rollback,
                ..
            } => resumed += 1,
            _ => {}
        }
    }
    (started, resumed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_killed_during_a_rollback_is_replaced_and_the_rollback_happens_once() {
    let kube = setup().await;
    let client = kube.client();
    support::seed(
        &client,
        "shop",
        &Seed::new(
            "web",
            vec![Rev::new(1, "aaa", "web:1"), Rev::new(2, "bbb", "web:2")],
        ),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let targets = format!(
        "  - url: k8s://shop/web\n    kubeconfig: {}\n    poll_interval: 100ms\n    rollout_timeout: 10m\n",
        kube.kubeconfig().display()
    );
    // bbb is promoted soon, so the supervisor judges the next revision.
    let fa = watch_file_baking(
        dir.path(),
        "replica-a",
        &kube.kubeconfig(),
        &targets,
        1,
        "500ms",
    );
    let fb = watch_file_baking(
        dir.path(),
        "replica-b",
        &kube.kubeconfig(),
        &targets,
        1,
        "500ms",
    );
    let mut a = Replica::start(&fa);
    until("a leads", WAIT, || a.leads(0)).await;
    let b = Replica::start(&fb);
    assert_eq!(
        holder(&kube, "rollback-serve").await.as_deref(),
        Some("replica-a")
    );
    until("a promotes bbb", WAIT, || {
        a.view("k8s:shop/web")["phase"]["phase"] == "promoted"
    })
    .await;
    let followed = b.view("k8s:shop/web");
    assert!(followed["phase"].is_null(), "b only follows: {followed}");
    assert_eq!(
        followed["supervision"],
        json!({"state": "following", "shard": 0, "leader": "replica-a"}),
        "b's view says who leads"
    );
    assert_eq!(a.view("k8s:shop/web")["supervision"]["state"], "watching");

    // A bad revision ships; the stand-in deployment controller makes its
    // ReplicaSet, then stops, so the rollback cannot converge while a leads.
    // Its steps are taken here, not in a task of their own, so that none
    // comes after revision 3 (a controller running on could make a fast
    // rollback's revision 4 before this test saw revision 3).
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), "shop");
    let template = support::template("web", &Rev::new(3, "ccc", "web:3"), false);
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": template}})),
        )
        .await
        .unwrap();
    let start = Instant::now();
    loop {
        assert!(
            start.elapsed() < WAIT,
            "the controller never made revision 3"
        );
        support::controller_step(&client, "shop", "web").await;
        if image(&kube, "web").await.1 == "3" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // a decides and rolls back to web:2, then waits for convergence.
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < WAIT, "a never rolled back");
        if image(&kube, "web").await.0 == "web:2" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(a.view("k8s:shop/web")["phase"]["phase"], "rolling_back");
    a.kill();
    let killed = Instant::now();

    // b takes over and resumes; the controller converges the rollback.
    let controller = support::spawn_controller(client.clone(), "shop", "web");
    until("b leads", WAIT, || b.leads(0)).await;
    let took = killed.elapsed();
    eprintln!("failover: b leads {took:?} after a was killed");
    until("b ends the rollback", WAIT, || {
        b.view("k8s:shop/web")["phase"]["phase"] == "rolled_back"
    })
    .await;
    controller.abort();
    assert_eq!(
        holder(&kube, "rollback-serve").await.as_deref(),
        Some("replica-b")
    );
    let (image_now, revision) = image(&kube, "web").await;
    assert_eq!(image_now, "web:2");
    assert_eq!(
        revision, "4",
        "one rollback: web:2 became revision 4, and nothing after it"
    );
    let (a_started, a_resumed) = rollback_records(&dir.path().join("replica-a.audit.jsonl"));
    let (b_started, b_resumed) = rollback_records(&dir.path().join("replica-b.audit.jsonl"));
    assert_eq!((a_started, a_resumed), (1, 0), "a rolled back once");
    assert_eq!(b_resumed, 1, "b resumed a's rollback");
    assert!(
        b_started <= 1,
        "b asked at most once more (answered: already at web:2)"
    );
}

/// A TCP proxy from a free port to `to`; `cut` drops every connection and
/// refuses new ones, as a network partition would.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
}

impl Proxy {
    fn start(to: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let flag = cut.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                if flag.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&to) else {
                    continue;
                };
                for (mut from, mut into) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let flag = flag.clone();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        from.set_read_timeout(Some(Duration::from_millis(100))).ok();
                        loop {
                            if flag.load(Ordering::SeqCst) {
                                let _ = from.shutdown(std::net::Shutdown::Both);
                                let _ = into.shutdown(std::net::Shutdown::Both);
                                return;
                            }
                            match from.read(&mut buf) {
                                Ok(0) => {
                                    let _ = into.shutdown(std::net::Shutdown::Write);
                                    return;
                                }
                                Ok(n) => {
                                    if into.write_all(&buf[..n]).is_err() {
                                        return;
                                    }
                                }
                                Err(e)
                                    if matches!(
                                        e.kind(),
                                        std::io::ErrorKind::WouldBlock
                                            | std::io::ErrorKind::TimedOut
                                    ) => {}
                                Err(_) => return,
                            }
                        }
                    });
                }
            }
        });
        Proxy { port, cut }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_stops_acting_before_its_lease_can_expire() {
    let kube = setup().await;
    let dir = tempfile::tempdir().unwrap();
    // a reaches the API server through a proxy the test cuts.
    let proxy = Proxy::start(kube.url.trim_start_matches("http://").to_owned());
    let via = dir.path().join("kubeconfig-a");
    std::fs::write(
        &via,
        std::fs::read_to_string(kube.kubeconfig())
            .unwrap()
            .replace(&kube.url, &format!("http://127.0.0.1:{}", proxy.port)),
    )
    .unwrap();
    let targets = "  - url: memory://shop/checkout\n    revisions: [v1, v2]\n";
    let a = Replica::start(&watch_file(dir.path(), "replica-a", &via, targets, 1));
    until("a leads", WAIT, || a.leads(0)).await;
    let b = Replica::start(&watch_file(
        dir.path(),
        "replica-b",
        &kube.kubeconfig(),
        targets,
        1,
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(a.leads(0) && !b.leads(0));

    proxy.cut.store(true, Ordering::SeqCst);
    let api: Api<Lease> = Api::namespaced(kube.client(), "rollback");
    // The lease as the API server last had it from a.
    let mut last_renew = None;
    let start = Instant::now();
    while a.leads(0) {
        assert!(start.elapsed() < WAIT, "a never stopped leading");
        last_renew = api
            .get("rollback-serve")
            .await
            .unwrap()
            .spec
            .unwrap()
            .renew_time;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stopped_ms = rollback_core::time::Clock::now(&rollback_core::time::SystemClock).as_millis();
    let lease = api.get("rollback-serve").await.unwrap().spec.unwrap();
    let renewed = lease.renew_time.or(last_renew).unwrap().0.as_millisecond();
    assert_eq!(
        lease.holder_identity.as_deref(),
        Some("replica-a"),
        "nobody took it yet"
    );
    assert!(
        stopped_ms < renewed + 2_000,
        "a stopped acting {} ms after its lease expired",
        stopped_ms - (renewed + 2_000)
    );
    // b takes over once the lease expires; a, cut off, stays a follower.
    until("b leads", WAIT, || b.leads(0)).await;
    assert!(!a.leads(0));
    assert_eq!(
        holder(&kube, "rollback-serve").await.as_deref(),
        Some("replica-b")
    );
    until("b judges the target", WAIT, || {
        b.view("shop/checkout")["phase"]["phase"] == "observing"
    })
    .await;
}

/// The replicas (by index) whose API shows a phase for `fleet/app-{i}`.
fn judged_by(replicas: &[Replica], i: usize) -> Vec<usize> {
    replicas
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.view(&format!("fleet/app-{i}"))["phase"].is_null())
        .map(|(n, _)| n)
        .collect()
}

/// Whether every target is judged by exactly one replica, one of `alive`.
fn judged_once(replicas: &[Replica], alive: &[usize]) -> bool {
    (0..12).all(|i| {
        let by = judged_by(replicas, i);
        by.len() == 1 && alive.contains(&by[0])
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_with_shards_judge_each_target_exactly_once() {
    let kube = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let targets: String = (0..12)
        .map(|i| format!("  - url: memory://fleet/app-{i}\n    revisions: [v1, v2]\n"))
        .collect();
    let mut replicas: Vec<Replica> = ["replica-a", "replica-b", "replica-c"]
        .iter()
        .map(|id| Replica::start(&watch_file(dir.path(), id, &kube.kubeconfig(), &targets, 3)))
        .collect();
    let leaders = |replicas: &[Replica]| -> std::collections::BTreeSet<usize> {
        (0..3)
            .filter_map(|s| replicas.iter().position(|r| r.leads(s)))
            .collect()
    };
    // The replicas hand over the shards others should lead (rendezvous
    // hashing over the replicas alive) until they settle.
    until(
        "every target judged by exactly one replica, the shards spread",
        WAIT,
        || judged_once(&replicas, &[0, 1, 2]) && leaders(&replicas).len() >= 2,
    )
    .await;
    for _ in 0..10 {
        for i in 0..12 {
            let by = judged_by(&replicas, i);
            assert!(by.len() <= 1, "app-{i} judged by {by:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for s in 0..3 {
        let h = holder(&kube, &format!("rollback-serve-{s}")).await.unwrap();
        assert!(h.starts_with("replica-"), "{h}");
    }
    // The leader of shard 0 dies: its shards are taken over by the others.
    let victim = replicas.iter().position(|r| r.leads(0)).unwrap();
    replicas[victim].kill();
    let alive: Vec<usize> = (0..3).filter(|n| *n != victim).collect();
    until("the dead replica's shards taken over", WAIT, || {
        (0..3).all(|s| alive.iter().filter(|n| replicas[**n].leads(s)).count() == 1)
            && judged_once(&replicas, &alive)
    })
    .await;
}
