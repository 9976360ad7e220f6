//! One server supervising 10,000 in-memory targets with scripted probes at
//! a 10 s interval, under notification and scrape load:
//!
//! - CPU: the server's threads' CPU time over a steady window, as a share
//!   of one core (the load generators run on threads of their own, not
//!   counted);
//! - memory: the growth of the process's resident set from before the
//!   server started to the steady window, per target;
//! - delay: for every measurement, the time from its due time (the
//!   machine's schedule: the watch's start plus a whole number of
//!   intervals; jitter is off so the due time is known) to the audit record
//!   of its judgement; p50, p99, max.
//!
//! Load: 1 % of the targets run a bad revision that breaches (at their 2nd
//! to 5th measurement) and is rolled back and verified: three notices each,
//! to a Slack and a webhook channel on a loopback receiver that takes 20 ms
//! a delivery; `/metrics` is scraped every second and the target list read
//! every 5 s. Then criterion times one scrape and one list of the 10,000.
//!
//! `ROLLBACK_BENCH_TARGETS` (10000), `ROLLBACK_BENCH_SECS` (60, the steady
//! window), `ROLLBACK_BENCH_TIMELINE` (50, records kept per target) change
//! the run.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use criterion::Criterion;
use rollback_core::audit::{AuditEntry, AuditRecord, AuditSink};
use rollback_core::store::MemoryStateStore;
use rollback_core::{TargetId, Timestamp};
use rollback_serve::Server;

/// The allocator of the `rollback` binary, whose server this measures.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const INTERVAL_MS: i64 = 10_000;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Each measurement's delay from its due time to its judgement, in ms.
#[derive(Debug, Default)]
struct Delays {
    started: Mutex<HashMap<TargetId, Timestamp>>,
    delays: Mutex<Vec<u32>>,
    measuring: std::sync::atomic::AtomicBool,
    records: AtomicU64,
}

#[async_trait]
impl AuditSink for Delays {
    async fn record(&self, r: &AuditRecord) -> rollback_core::Result<()> {
        self.records.fetch_add(1, Ordering::Relaxed);
        match &r.entry {
            AuditEntry::WatchStarted { .. } => {
                self.started.lock().unwrap().insert(r.target.clone(), r.at);
            }
            AuditEntry::Measured { .. } if self.measuring.load(Ordering::Relaxed) => {
                let Some(start) = self.started.lock().unwrap().get(&r.target).copied() else {
                    return Ok(());
                };
                // The watch's start is known to the millisecond from its
                // record, which may be a millisecond after the machine's
                // own start: a measurement that seems due a whole interval
                // ago less a few ms is on time (counted as 0).
                let since = r.at.as_millis() - start.as_millis();
                let late = since.rem_euclid(INTERVAL_MS);
                let delay = if late > INTERVAL_MS - 1_000 { 0 } else { late };
                self.delays
                    .lock()
                    .unwrap()
                    .push(u32::try_from(delay).unwrap_or(u32::MAX));
            }
            _ => {}
        }
        Ok(())
    }
}

/// CPU time (user + system) of this process's threads whose name does not
/// start with `loadgen`, in seconds; /proc counts in USER_HZ (100 per
/// second on Linux).
fn server_cpu_seconds() -> f64 {
    let mut ticks = 0u64;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if stat[open + 1..close].starts_with("loadgen") {
            continue;
        }
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
        ticks += fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
    }
    ticks as f64 / 100.0
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

fn watch_file(
    dir: &std::path::Path,
    targets: usize,
    hook: &str,
    timeline: u64,
) -> std::path::PathBuf {
    let mut text = format!(
        "policy:\n  interval: 10s\n  bake_time: 24h\n  verify: 20s\n\
         probes:\n  - name: error_rate\n    success: \"< 0.01\"\n    scripted:\n      values: [0.001]\n      per_revision:\n\
         \x20       bad2: [0.001, 0.05]\n        bad3: [0.001, 0.001, 0.05]\n        bad4: [0.001, 0.001, 0.001, 0.05]\n        bad5: [0.001, 0.001, 0.001, 0.001, 0.05]\n\
         serve:\n  reload_check: 0s\n  timeline: {timeline}\n  operators: [{{actor: bench, token: bench-token-0123456789}}]\n\
         \x20 notifications:\n    queue: 256\n    channels:\n      - slack: {hook}\n      - webhook: {hook}\n\
         targets:\n"
    );
    for i in 0..targets {
        let last = if i % 100 == 7 {
            format!("bad{}", 2 + (i / 100) % 4)
        } else {
            "v2".to_owned()
        };
        let _ = writeln!(
            text,
            "  - {{url: \"memory://t{i:05}\", revisions: [v1, {last}]}}"
        );
    }
    let path = dir.join("rollback.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A loopback receiver that takes 20 ms a delivery, and counts them.
async fn receiver(count: Arc<AtomicU64>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let count = count.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                count.fetch_add(1, Ordering::Relaxed);
                "ok"
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let targets = env("ROLLBACK_BENCH_TARGETS", 10_000) as usize;
    let window = Duration::from_secs(env("ROLLBACK_BENCH_SECS", 60));
    let timeline = env("ROLLBACK_BENCH_TIMELINE", 50);
    let dir = tempfile::tempdir().unwrap();

    // The load generators: their own runtime, on threads named loadgen.
    let loadgen = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("loadgen")
        .enable_all()
        .build()
        .unwrap();
    let delivered = Arc::new(AtomicU64::new(0));
    let hook = loadgen.block_on(receiver(delivered.clone()));
    let file = watch_file(dir.path(), targets, &hook, timeline);

    let serve = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("serve")
        .enable_all()
        .build()
        .unwrap();
    let rss_before = rss_bytes();
    let delays = Arc::new(Delays::default());
    let started = Instant::now();
    let server = serve.block_on(async {
        Server::builder(&file)
            .listen("127.0.0.1:0".parse().unwrap())
            .store(Arc::new(MemoryStateStore::new()))
            .audit(delays.clone())
            .max_jitter(0.0)
            .start()
            .await
            .unwrap_or_else(|e| panic!("the server did not start: {}", e.full_message()))
    });
    let base = server.url();
    // Every target's first look and first measurement.
    serve.block_on(async {
        while delays.started.lock().unwrap().len() < targets {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let ready = started.elapsed();
    eprintln!("{targets} targets watching after {ready:.1?}");

    // Scrapes every second and a list every 5 s, from the load generators.
    let scrapes = Arc::new(AtomicU64::new(0));
    {
        let (base, scrapes) = (base.clone(), scrapes.clone());
        loadgen.spawn(async move {
            let http = reqwest::Client::new();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if let Ok(r) = http.get(format!("{base}/metrics")).send().await {
                    let _ = r.bytes().await;
                    scrapes.fetch_add(1, Ordering::Relaxed);
                }
                if scrapes.load(Ordering::Relaxed) % 5 == 0 {
                    let _ = http
                        .get(format!("{base}/api/v1/targets"))
                        .bearer_auth("bench-token-0123456789")
                        .send()
                        .await;
                }
            }
        });
    }

    // Settle one interval, then measure a steady window.
    std::thread::sleep(Duration::from_secs(10));
    delays.measuring.store(true, Ordering::Relaxed);
    let rss_steady = rss_bytes();
    let cpu0 = server_cpu_seconds();
    let t0 = Instant::now();
    std::thread::sleep(window);
    let cpu = server_cpu_seconds() - cpu0;
    let wall = t0.elapsed().as_secs_f64();
    delays.measuring.store(false, Ordering::Relaxed);
    let rss_end = rss_bytes();

    let mut d = delays.delays.lock().unwrap().clone();
    d.sort_unstable();
    let metrics = serve.block_on(async {
        reqwest::get(format!("{base}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    let notifications: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("rollback_notifications_total"))
        .collect();
    let rollbacks: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("rollback_rollbacks_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    println!(
        "supervise: {targets} targets, interval 10s, timeline {timeline} records, steady window {wall:.0}s"
    );
    println!("  start-up: every target watching after {ready:.1?}");
    println!(
        "  cpu: {:.1}% of one core ({cpu:.2}s of CPU in {wall:.1}s)",
        100.0 * cpu / wall
    );
    println!(
        "  memory: RSS {:.1} MiB before, {:.1} MiB steady, {:.1} MiB at the end: {:.2} KiB per target",
        rss_before as f64 / 1048576.0,
        rss_steady as f64 / 1048576.0,
        rss_end as f64 / 1048576.0,
        (rss_end.saturating_sub(rss_before)) as f64 / 1024.0 / targets as f64
    );
    println!(
        "  delay from due time to judgement: {} measurements, p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms",
        d.len(),
        percentile(&d, 0.5),
        percentile(&d, 0.99),
        percentile(&d, 0.999),
        d.last().copied().unwrap_or(0)
    );
    println!(
        "  load: {} scrapes of /metrics ({} bytes each), {rollbacks} rollbacks, {} notifications delivered; {}",
        scrapes.load(Ordering::Relaxed),
        metrics.len(),
        delivered.load(Ordering::Relaxed),
        notifications.join("; ")
    );

    // Criterion: one scrape and one list of every target, while they run.
    let http = reqwest::Client::new();
    let mut c = Criterion::default()
        .sample_size(20)
        .measurement_time(Duration::from_secs(10))
        .configure_from_args();
    c.bench_function(&format!("scrape /metrics of {targets} targets"), |b| {
        b.iter(|| {
            serve.block_on(async {
                http.get(format!("{base}/metrics"))
                    .send()
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap()
            })
        })
    });
    c.bench_function(&format!("GET /api/v1/targets of {targets} targets"), |b| {
        b.iter(|| {
            serve.block_on(async {
                http.get(format!("{base}/api/v1/targets"))
                    .bearer_auth("bench-token-0123456789")
                    .send()
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap()
            })
        })
    });
    c.final_summary();
    serve.block_on(server.shutdown());
}
