//! One server supervising 10,000 in-memory targets with scripted probes at
//! a 10 s interval, under notification and scrape load:
//!
//! - CPU: the server's threads' CPU time over a steady window, as a share
//!   of one core;
//! - memory: the growth of the process's resident set from before the
//!   server started to the end of the steady window, per target; and of
//!   its anonymous part (the heap, stacks), which leaves out the pages of
//!   the binary's code that the server's first minute pages in (about
//!   6 MiB, the same for one target as for 10,000); with the allocator's
//!   counts (live, in use, resident) beside them; and what a target more
//!   costs: the same run with 2,000 targets is made first, and the
//!   difference of the two at the end is divided by the 8,000 more;
//! - delay: for every measurement, the time from its due time (the
//!   schedule's, with the engine's jitter: the record's `due_at`) to the
//!   audit record of its judgement; p50, p99, max. The jitter is the
//!   production default (10 % of the interval); with it off
//!   (`ROLLBACK_BENCH_JITTER=0`) every interval's 10,000 measurements fall
//!   due within the ~0.1 s in which the watches started, a burst faster
//!   than two cores step.
//!
//! Load: 1 % of the targets run a bad revision that breaches (at their 2nd
//! to 5th measurement) and is rolled back and verified: three notices each,
//! to a Slack and a webhook channel on a loopback receiver that takes 20 ms
//! a delivery; `/metrics` is scraped every second and the target list read
//! every 5 s. Then criterion times one scrape and one list of the 10,000.
//!
//! The load generators (the receiver, the scrapes and the lists) run in a
//! child process, this bench run again with `ROLLBACK_BENCH_LOADGEN` set, so
//! that neither their CPU nor their buffers (a 600 KB body read each
//! second) count as the server's. This process keeps only the server and
//! the audit sink that measures the delays, a few bytes a target.
//!
//! `ROLLBACK_BENCH_TARGETS` (10000), `ROLLBACK_BENCH_SECS` (60, the steady
//! window), `ROLLBACK_BENCH_TIMELINE` (50, records kept per target),
//! `ROLLBACK_BENCH_JITTER` (10, the jitter in % of the interval) change
//! the run; `ROLLBACK_BENCH_BASELINE` (2000; 0: none) is the number of
//! targets of the run made first to tell a target's cost from the
//! process's own; `ROLLBACK_BENCH_EXIT=1` ends it after the report, the server
//! running, so that a heap profiler's "leaked" is what it held (built
//! without the global allocator: heaptrack sees only the system's malloc).

use std::fmt::Write as _;
use std::io::{BufRead as _, Write as _};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use criterion::Criterion;
use rollback_core::audit::{AuditEntry, AuditRecord, AuditSink};
use rollback_core::store::MemoryStateStore;
use rollback_serve::Server;

/// The allocator of the `rollback` binary, whose server this measures.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const INTERVAL_MS: i64 = 10_000;

/// Set in the child process that generates the load.
const LOADGEN: &str = "ROLLBACK_BENCH_LOADGEN";

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Each measurement's delay from its due time to its judgement, in ms.
#[derive(Debug)]
struct Delays {
    /// Each target's watch start (ms since the epoch; 0: not yet), by the
    /// number in its id (`t00042`): 8 bytes a target, where a map by id
    /// would add 40 to what the bench measures.
    started: Vec<AtomicI64>,
    /// How many targets have started.
    watching: AtomicU64,
    /// Room for the whole window's measurements is taken (and touched)
    /// before the server starts, so that it does not grow while the memory
    /// is measured.
    delays: Mutex<Vec<u32>>,
    measuring: std::sync::atomic::AtomicBool,
    records: AtomicU64,
}

impl Delays {
    fn new(targets: usize, window: Duration) -> Self {
        let measurements = targets * (window.as_secs() as usize * 1000 / INTERVAL_MS as usize + 2);
        // Written once, so that its pages are resident before the memory
        // is first measured.
        // (Not `vec![0; n]`: zeroed memory may come as untouched pages.)
        let mut delays = vec![u32::MAX; measurements];
        delays.clear();
        Delays {
            started: (0..targets).map(|_| AtomicI64::new(0)).collect(),
            watching: AtomicU64::new(0),
            delays: Mutex::new(delays),
            measuring: std::sync::atomic::AtomicBool::new(false),
            records: AtomicU64::new(0),
        }
    }

    fn start_of(&self, target: &str) -> Option<&AtomicI64> {
        let n: usize = target.strip_prefix('t')?.parse().ok()?;
        self.started.get(n)
    }
}

#[async_trait]
impl AuditSink for Delays {
    async fn record(&self, r: &AuditRecord) -> rollback_core::Result<()> {
        self.records.fetch_add(1, Ordering::Relaxed);
        match &r.entry {
            AuditEntry::WatchStarted { .. } => {
                if let Some(start) = self.start_of(r.target.as_str())
                    && start.swap(r.at.as_millis(), Ordering::Relaxed) == 0
                {
                    self.watching.fetch_add(1, Ordering::Relaxed);
                }
            }
            AuditEntry::Measured {
                due_at: Some(due), ..
            } if self.measuring.load(Ordering::Relaxed) => {
                // (Judged in the millisecond before: the timer rounds up,
                // the due time down.)
                let delay = (r.at.as_millis() - due.as_millis()).max(0);
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

/// CPU time (user + system) of this process's threads, in seconds; /proc
/// counts in USER_HZ (100 per second on Linux).
fn server_cpu_seconds() -> f64 {
    let mut ticks = 0u64;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
        ticks += fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
    }
    ticks as f64 / 100.0
}

/// The allocator's counts now, in MiB: live (allocated), in pages it uses
/// (active), resident, and its metadata.
fn allocator_counts() -> String {
    use tikv_jemalloc_ctl::{epoch, stats};
    let _ = epoch::advance();
    let mib = |r: tikv_jemalloc_ctl::Result<usize>| r.unwrap_or(0) as f64 / 1048576.0;
    format!(
        "allocated {:.1} MiB, active {:.1}, resident {:.1}, metadata {:.1}",
        mib(stats::allocated::read()),
        mib(stats::active::read()),
        mib(stats::resident::read()),
        mib(stats::metadata::read())
    )
}

fn rss_bytes() -> u64 {
    status_bytes("VmRSS:")
}

/// A size from /proc/self/status (`VmRSS:`, `RssAnon:`, `RssFile:`), in bytes.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
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

/// The resident set and its anonymous part at the end of the same run
/// with `targets` targets, run as a child process.
fn baseline_memory(targets: usize, window: Duration) -> (u64, u64) {
    let out = Command::new(std::env::current_exe().unwrap())
        .env("ROLLBACK_BENCH_TARGETS", targets.to_string())
        .env("ROLLBACK_BENCH_SECS", window.as_secs().to_string())
        .env("ROLLBACK_BENCH_BASELINE", "0")
        .env("ROLLBACK_BENCH_EXIT", "1")
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run the bench with {targets} targets: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("memory at the end: "))
        .unwrap_or_else(|| panic!("the run with {targets} targets gave no memory: {text}"));
    let mut n = line
        .split_whitespace()
        .map(|n| n.parse::<u64>().unwrap_or(0));
    (n.next().unwrap_or(0), n.next().unwrap_or(0))
}

/// The child process that generates the load: it starts the notices'
/// receiver and prints its URL, reads the server's URL, then scrapes
/// `/metrics` every second and lists the targets every 5 s until its input
/// closes; then it prints how many scrapes and deliveries it counted.
fn loadgen() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let delivered = Arc::new(AtomicU64::new(0));
    let scrapes = Arc::new(AtomicU64::new(0));
    let hook = rt.block_on(receiver(delivered.clone()));
    println!("{hook}");
    let mut lines = std::io::stdin().lock().lines();
    let base = lines.next().and_then(|l| l.ok()).unwrap_or_default();
    {
        let scrapes = scrapes.clone();
        rt.spawn(async move {
            let http = reqwest::Client::new();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if let Ok(r) = http.get(format!("{base}/metrics")).send().await {
                    let _ = r.bytes().await;
                    scrapes.fetch_add(1, Ordering::Relaxed);
                }
                if scrapes.load(Ordering::Relaxed).is_multiple_of(5) {
                    let _ = http
                        .get(format!("{base}/api/v1/targets"))
                        .bearer_auth("bench-token-0123456789")
                        .send()
                        .await;
                }
            }
        });
    }
    // Until the bench closes this process's input.
    for _ in lines {}
    println!(
        "{} {}",
        scrapes.load(Ordering::Relaxed),
        delivered.load(Ordering::Relaxed)
    );
}

fn main() {
    if std::env::var_os(LOADGEN).is_some() {
        return loadgen();
    }
    let targets = env("ROLLBACK_BENCH_TARGETS", 10_000) as usize;
    let window = Duration::from_secs(env("ROLLBACK_BENCH_SECS", 60));
    // The same run with fewer targets first, in a process of its own: the
    // difference of the two is what a target more costs, without what the
    // process holds whatever its number of targets (the binary's pages,
    // the runtime, the registry).
    let fewer = env("ROLLBACK_BENCH_BASELINE", 2_000) as usize;
    let baseline = (fewer > 0 && fewer < targets).then(|| baseline_memory(fewer, window));
    let timeline = env("ROLLBACK_BENCH_TIMELINE", 50);
    let dir = tempfile::tempdir().unwrap();

    let mut load = Command::new(std::env::current_exe().unwrap())
        .env(LOADGEN, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the load generator: {e}"));
    let mut load_out = std::io::BufReader::new(load.stdout.take().unwrap());
    let mut hook = String::new();
    load_out.read_line(&mut hook).unwrap();
    let hook = hook.trim().to_owned();
    assert!(
        hook.starts_with("http://"),
        "the load generator gave no receiver URL (it printed {hook:?})"
    );
    let file = watch_file(dir.path(), targets, &hook, timeline);

    let serve = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("serve")
        .enable_all()
        .build()
        .unwrap();
    let delays = Arc::new(Delays::new(targets, window));
    let rss_before = rss_bytes();
    let heap_before = allocator_counts();
    let (anon_before, file_before) = (status_bytes("RssAnon:"), status_bytes("RssFile:"));
    let started = Instant::now();
    let server = serve.block_on(async {
        Server::builder(&file)
            .listen("127.0.0.1:0".parse().unwrap())
            .store(Arc::new(MemoryStateStore::new()))
            .audit(delays.clone())
            .max_jitter(env("ROLLBACK_BENCH_JITTER", 10) as f64 / 100.0)
            .start()
            .await
            .unwrap_or_else(|e| panic!("the server did not start: {}", e.full_message()))
    });
    let base = server.url();
    // Every target's first look and first measurement.
    serve.block_on(async {
        while delays.watching.load(Ordering::Relaxed) < targets as u64 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let ready = started.elapsed();
    eprintln!("{targets} targets watching after {ready:.1?}");

    // Scrapes every second and a list every 5 s, from the load generator.
    let mut load_in = load.stdin.take().unwrap();
    writeln!(load_in, "{base}").unwrap();

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
    let heap_end = allocator_counts();
    let (anon_end, file_end) = (status_bytes("RssAnon:"), status_bytes("RssFile:"));
    drop(load_in);
    let mut counts = String::new();
    load_out.read_line(&mut counts).unwrap();
    let _ = load.wait();
    let mut counts = counts
        .split_whitespace()
        .map(|n| n.parse::<u64>().unwrap_or(0));
    let (scrapes, delivered) = (counts.next().unwrap_or(0), counts.next().unwrap_or(0));

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
    let mib = |b: u64| b as f64 / 1048576.0;
    // Read by a run with more targets (see `baseline_memory`).
    println!("  memory at the end: {rss_end} {anon_end} bytes");
    if let Some((rss, anon)) = baseline {
        let more = (targets - fewer) as f64 * 1024.0;
        println!(
            "  a target more: {:.2} KiB of RSS, {:.2} KiB anonymous (against {fewer} targets: RSS {:.1} MiB, anonymous {:.1} MiB at the end)",
            rss_end.saturating_sub(rss) as f64 / more,
            anon_end.saturating_sub(anon) as f64 / more,
            mib(rss),
            mib(anon)
        );
    }
    println!(
        "  of which anonymous {:.1} → {:.1} MiB, file-backed (the binary's pages) {:.1} → {:.1} MiB",
        mib(anon_before),
        mib(anon_end),
        mib(file_before),
        mib(file_end)
    );
    println!("  allocator at the end: {heap_end} (before: {heap_before})");
    println!(
        "  delay from due time to judgement (jitter {} %): {} measurements, p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms",
        env("ROLLBACK_BENCH_JITTER", 10),
        d.len(),
        percentile(&d, 0.5),
        percentile(&d, 0.99),
        percentile(&d, 0.999),
        d.last().copied().unwrap_or(0)
    );
    println!(
        "  load: {} scrapes of /metrics ({} bytes each), {rollbacks} rollbacks, {} notifications delivered; {}",
        scrapes,
        metrics.len(),
        delivered,
        notifications.join("; ")
    );

    if env("ROLLBACK_BENCH_EXIT", 0) == 1 {
        // What is allocated now is what a heap profiler reports as leaked.
        std::process::exit(0);
    }

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
