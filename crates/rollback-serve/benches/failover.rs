//! Failover time of two `rollback serve` replicas on the test API server
//! (kmock plus rollback-k8s's kube_apiserver.py): the leader is stopped,
//! and the time until the other one leads (its `rollback_leader` metric
//! reads 1) is measured. Each replica is this binary run again as a
//! process, so SIGKILL is real.
//!
//! ```sh
//! cargo bench -p rollback-serve --features k8s --bench failover
//! ```
//!
//! Two ways to stop the leader, each `FAILOVER_TRIALS` times (default 10),
//! with the leases the tests use (2s, renew 1s, retry 0.3s; set
//! `FAILOVER_ARGO=1` for Argo Rollouts' 15s, 10s, 2s):
//! - SIGKILL: the other waits out the lease; expected lease duration plus
//!   up to one retry period, less the time since the last renewal;
//! - SIGTERM: a graceful stop releases the lease, and the other takes it
//!   on its next try (within one retry period).

#[allow(clippy::all, unreachable_pub, dead_code)]
#[path = "../../rollback-k8s/tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHILD: &str = "ROLLBACK_FAILOVER_REPLICA";

fn main() {
    if let Some(file) = std::env::var_os(CHILD) {
        replica(PathBuf::from(file));
        return;
    }
    // cargo bench passes --bench; nothing else is taken.
    let trials: usize = std::env::var("FAILOVER_TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(10);
    let argo = std::env::var_os("FAILOVER_ARGO").is_some();
    let (lease, renew, retry) = if argo {
        ("15s", "10s", "2s")
    } else {
        ("2s", "1s", "300ms")
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let kube = support::KubeServer::start();
        support::create_namespace(&kube.client(), "rollback").await;
        let dir = tempfile::tempdir().unwrap();
        println!("failover of two replicas, lease {lease}, renew {renew}, retry {retry}, {trials} trials each");
        for (how, signal) in [("SIGKILL", "KILL"), ("SIGTERM", "TERM")] {
            let mut times = Vec::new();
            for trial in 0..trials {
                let name = format!("bench-{}-{trial}", how.to_lowercase());
                let file = |id: &str| {
                    watch_file(dir.path(), &name, id, &kube.kubeconfig(), lease, renew, retry)
                };
                let mut a = Replica::start(file("a"));
                wait_until(|| a.leads(), Duration::from_secs(60), "a leads");
                let mut b = Replica::start(file("b"));
                // b has seen a's lease renewed for a while.
                std::thread::sleep(Duration::from_secs(1));
                assert!(!b.leads(), "b must follow");
                let stopped = Instant::now();
                a.signal(signal);
                wait_until(|| b.leads(), Duration::from_secs(120), "b leads");
                times.push(stopped.elapsed());
                a.stop();
                b.stop();
            }
            times.sort();
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            let mean = times.iter().map(|d| ms(*d)).sum::<f64>() / times.len() as f64;
            println!(
                "{how}: min {:.0} ms, median {:.0} ms, mean {mean:.0} ms, max {:.0} ms",
                ms(times[0]),
                ms(times[times.len() / 2]),
                ms(times[times.len() - 1])
            );
        }
    });
}

fn replica(file: PathBuf) {
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let code = rt.block_on(rollback_serve::run(
        &file,
        rollback_serve::ServeOptions::new(),
    ));
    if let Err(e) = code {
        eprintln!("replica failed: {}", e.full_message());
        std::process::exit(1);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn watch_file(
    dir: &Path,
    lease_name: &str,
    id: &str,
    kubeconfig: &Path,
    lease: &str,
    renew: &str,
    retry: &str,
) -> (PathBuf, u16) {
    let port = free_port();
    let file = dir.join(format!("{lease_name}-{id}.yaml"));
    std::fs::write(
        &file,
        format!(
            "policy: {{ interval: 1s, bake_time: 1h }}\n\
             probes: [{{ name: error_rate, success: \"< 0.01\", scripted: {{ values: [0.001] }} }}]\n\
             targets: [{{ url: \"memory://shop/checkout\", revisions: [v1, v2] }}]\n\
             serve:\n  listen: 127.0.0.1:{port}\n  reload_check: 0s\n  shutdown_grace: 1s\n\
             \x20 leader_election: {{ namespace: rollback, name: {lease_name}, lease: {lease}, renew: {renew}, retry: {retry}, identity: {id}, kubeconfig: {} }}\n",
            kubeconfig.display()
        ),
    )
    .unwrap();
    (file, port)
}

struct Replica {
    child: Child,
    port: u16,
}

impl Replica {
    fn start((file, port): (PathBuf, u16)) -> Replica {
        let child = Command::new(std::env::current_exe().unwrap())
            .env(CHILD, &file)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Replica { child, port }
    }

    fn leads(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        );
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.lines().any(|l| l == "rollback_leader{shard=\"0\"} 1")
    }

    fn signal(&mut self, signal: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status();
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait_until(mut f: impl FnMut() -> bool, within: Duration, what: &str) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < within, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
