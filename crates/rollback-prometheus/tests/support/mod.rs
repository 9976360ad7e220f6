//! Test harness: real Prometheus and Alertmanager servers on free loopback
//! ports, and a small metrics app whose error rate and latency tests change.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(crate) const INSTALL_HINT: &str = "install the Debian packages with `apt-get install prometheus prometheus-alertmanager`, or run ./scripts/test";

/// The path of a server binary, or a panic (a test failure) saying what to install.
pub(crate) fn require_binary(name: &str) -> PathBuf {
    let candidates = [
        PathBuf::from("/usr/bin").join(name),
        PathBuf::from("/usr/local/bin").join(name),
    ];
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return found.clone();
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!("`{name}` was not found on this machine: {INSTALL_HINT}");
}

/// A free loopback port (bound, then released).
pub(crate) fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// Wait until `GET url` answers 200, or panic with the server's log.
pub(crate) async fn wait_ready(
    url: &str,
    timeout: Duration,
    what: &str,
    child: &mut Child,
    log: &Path,
) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("{what} exited with {status} before it was ready; its log:\n{log}");
        }
        if let Ok(r) = http.get(url).timeout(Duration::from_secs(1)).send().await
            && r.status().is_success()
        {
            return;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("{what} was not ready at {url} within {timeout:?}; its log:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn spawn(binary: &Path, args: &[String], log: &Path) -> Child {
    let out = std::fs::File::create(log).expect("create log file");
    let err = out.try_clone().expect("clone log file");
    Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}; {INSTALL_HINT}", binary.display()))
}

/// What a test Prometheus scrapes and evaluates.
#[derive(Debug, Clone, Default)]
pub(crate) struct PrometheusSetup {
    /// `host:port` of apps to scrape every `scrape_interval` (job `app`).
    pub scrape: Vec<String>,
    /// Labels to add to every scraped series.
    pub scrape_labels: Vec<(String, String)>,
    /// Alerting/recording rules, as the YAML of one rule file.
    pub rules: Option<String>,
    /// Alertmanager to send alerts to, `host:port`.
    pub alertmanager: Option<String>,
    /// Scrape and rule evaluation interval; default 1s.
    pub interval: Option<Duration>,
    /// Use this TSDB directory (with backfilled blocks) instead of a new one.
    pub tsdb: Option<PathBuf>,
    /// Extra command-line flags.
    pub extra_args: Vec<String>,
}

/// A real Prometheus on a free loopback port, killed on drop.
pub(crate) struct PrometheusServer {
    child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl PrometheusServer {
    /// A probe of `query` against this server, with a client timeout.
    pub(crate) fn probe(
        &self,
        name: &str,
        query: &str,
        timeout: Duration,
    ) -> rollback_prometheus::PrometheusProbe {
        let client = rollback_prometheus::PrometheusClient::builder(self.url())
            .timeout(timeout)
            .build()
            .expect("a Prometheus client");
        rollback_prometheus::PrometheusProbe::builder(name, client)
            .query(query)
            .build()
            .expect("a probe")
    }

    pub(crate) async fn start(setup: PrometheusSetup) -> Self {
        let binary = require_binary("prometheus");
        let dir = tempfile::tempdir().expect("tempdir");
        let interval = setup.interval.unwrap_or(Duration::from_secs(1));
        let secs = format!("{}ms", interval.as_millis());
        let mut yaml =
            format!("global:\n  scrape_interval: {secs}\n  evaluation_interval: {secs}\n");
        if let Some(rules) = &setup.rules {
            let path = dir.path().join("rules.yml");
            std::fs::write(&path, rules).expect("write rules");
            let _ = write!(yaml, "rule_files:\n  - {}\n", path.display());
        }
        if let Some(am) = &setup.alertmanager {
            let _ = write!(
                yaml,
                "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{am}']\n"
            );
        }
        if !setup.scrape.is_empty() {
            let targets: Vec<String> = setup.scrape.iter().map(|t| format!("'{t}'")).collect();
            let _ = write!(
                yaml,
                "scrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: [{}]\n",
                targets.join(", ")
            );
            if !setup.scrape_labels.is_empty() {
                yaml.push_str("        labels:\n");
                for (k, v) in &setup.scrape_labels {
                    let _ = writeln!(yaml, "          {k}: '{v}'");
                }
            }
        }
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, &yaml).expect("write prometheus.yml");
        let tsdb = setup
            .tsdb
            .clone()
            .unwrap_or_else(|| dir.path().join("data"));
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let log = dir.path().join("prometheus.log");
        let mut args = vec![
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", tsdb.display()),
            format!("--web.listen-address={addr}"),
            "--log.level=warn".to_owned(),
        ];
        args.extend(setup.extra_args.iter().cloned());
        let mut child = spawn(&binary, &args, &log);
        wait_ready(
            &format!("http://{addr}/-/ready"),
            Duration::from_secs(30),
            "prometheus",
            &mut child,
            &log,
        )
        .await;
        PrometheusServer { child, addr, dir }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// Wait until an instant query returns a non-empty result.
    pub(crate) async fn wait_for_data(&self, query: &str, timeout: Duration) {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + timeout;
        loop {
            let body: Option<serde_json::Value> = async {
                http.get(format!("{}/api/v1/query", self.url()))
                    .query(&[("query", query)])
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()
            }
            .await;
            if let Some(b) = body
                && b["data"]["result"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty())
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no data for {query:?} within {timeout:?}; prometheus log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real Alertmanager on a free loopback port, posting to one webhook; killed on drop.
pub(crate) struct AlertmanagerServer {
    child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl AlertmanagerServer {
    /// Start it with one route to `webhook_url`, sending `token` as bearer
    /// token, grouping by alertname with the given repeat interval.
    pub(crate) async fn start(webhook_url: &str, token: &str, repeat_interval: Duration) -> Self {
        let binary = require_binary("prometheus-alertmanager");
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = format!(
            "route:\n  receiver: rollback\n  group_by: ['alertname']\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: {}ms\n\
             receivers:\n  - name: rollback\n    webhook_configs:\n      - url: '{webhook_url}'\n        send_resolved: true\n\
             \x20       http_config:\n          authorization:\n            type: Bearer\n            credentials: '{token}'\n",
            repeat_interval.as_millis()
        );
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(&config, &yaml).expect("write alertmanager.yml");
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let log = dir.path().join("alertmanager.log");
        let args = vec![
            format!("--config.file={}", config.display()),
            format!("--storage.path={}", dir.path().join("data").display()),
            format!("--web.listen-address={addr}"),
            // no HA cluster: it would bind 9094 and wait for peers
            "--cluster.listen-address=".to_owned(),
            "--log.level=warn".to_owned(),
        ];
        let mut child = spawn(&binary, &args, &log);
        wait_ready(
            &format!("http://{addr}/-/ready"),
            Duration::from_secs(30),
            "alertmanager",
            &mut child,
            &log,
        )
        .await;
        AlertmanagerServer { child, addr, dir }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("alertmanager.log")).unwrap_or_default()
    }
}

impl Drop for AlertmanagerServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// The metrics app

const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

#[derive(Debug, Default)]
struct AppState {
    /// requests per second it serves
    rps: f64,
    /// fraction answered 500
    error_rate: f64,
    /// latency of every request, seconds
    latency: f64,
    ok: u64,
    errors: u64,
    /// fractional requests carried to the next tick
    carry: f64,
    error_carry: f64,
    bucket_counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl AppState {
    fn tick(&mut self, secs: f64) {
        let want = self.rps * secs + self.carry;
        let n = want.floor();
        self.carry = want - n;
        let n = n as u64;
        if n == 0 {
            return;
        }
        let errors_f = n as f64 * self.error_rate + self.error_carry;
        let errors = errors_f.floor();
        self.error_carry = errors_f - errors;
        let errors = (errors as u64).min(n);
        self.errors += errors;
        self.ok += n - errors;
        for (i, le) in BUCKETS.iter().enumerate() {
            if self.latency <= *le {
                self.bucket_counts[i] += n;
            }
        }
        self.count += n;
        self.sum += self.latency * n as f64;
    }

    fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP http_requests_total Requests served.\n# TYPE http_requests_total counter\n",
        );
        // Both codes from the first request on, the way instrumentation
        // guides recommend (initialize known label values): a 5xx series
        // created by the first error would need a second scrape before
        // rate() sees it, delaying detection by one scrape interval.
        if self.count > 0 {
            let _ = writeln!(out, "http_requests_total{{code=\"200\"}} {}", self.ok);
            let _ = writeln!(out, "http_requests_total{{code=\"500\"}} {}", self.errors);
        }
        if self.count > 0 {
            out.push_str("# HELP http_request_duration_seconds Request latency.\n# TYPE http_request_duration_seconds histogram\n");
            for (i, le) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "http_request_duration_seconds_bucket{{le=\"{le}\"}} {}",
                    self.bucket_counts[i]
                );
            }
            let _ = writeln!(
                out,
                "http_request_duration_seconds_bucket{{le=\"+Inf\"}} {}",
                self.count
            );
            let _ = writeln!(out, "http_request_duration_seconds_sum {}", self.sum);
            let _ = writeln!(out, "http_request_duration_seconds_count {}", self.count);
        }
        out
    }
}

/// A small service exposing `http_requests_total{code}` and the latency
/// histogram `http_request_duration_seconds`; it simulates `rps` requests per
/// second with the error rate and latency the test sets. An app that has
/// served nothing exposes no request series at all.
pub(crate) struct MetricsApp {
    state: Arc<Mutex<AppState>>,
    pub addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
    ticker: tokio::task::JoinHandle<()>,
}

impl MetricsApp {
    pub(crate) async fn start(rps: f64, error_rate: f64, latency: Duration) -> Self {
        let state = Arc::new(Mutex::new(AppState {
            rps,
            error_rate,
            latency: latency.as_secs_f64(),
            ..AppState::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind metrics app");
        let addr = listener.local_addr().expect("addr");
        let s = state.clone();
        let router = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let s = s.clone();
                async move {
                    let body = s.lock().expect("app state").render();
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        body,
                    )
                }
            }),
        );
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let s = state.clone();
        let ticker = tokio::spawn(async move {
            let mut last = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let now = Instant::now();
                s.lock()
                    .expect("app state")
                    .tick((now - last).as_secs_f64());
                last = now;
            }
        });
        MetricsApp {
            state,
            addr,
            server,
            ticker,
        }
    }

    pub(crate) fn set_error_rate(&self, rate: f64) {
        self.state.lock().expect("app state").error_rate = rate;
    }

    pub(crate) fn set_latency(&self, latency: Duration) {
        self.state.lock().expect("app state").latency = latency.as_secs_f64();
    }

    pub(crate) fn set_rps(&self, rps: f64) {
        self.state.lock().expect("app state").rps = rps;
    }

    pub(crate) fn target(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for MetricsApp {
    fn drop(&mut self) {
        self.server.abort();
        self.ticker.abort();
    }
}

/// The 5xx ratio over the last `window`; empty (no data) without traffic.
pub(crate) fn error_ratio_query(window: &str) -> String {
    format!(
        "sum(rate(http_requests_total{{code=~\"5..\"}}[{window}]) or vector(0)) / (sum(rate(http_requests_total[{window}])) > 0)"
    )
}

/// p99 latency over the last `window`.
pub(crate) fn p99_query(window: &str) -> String {
    format!(
        "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[{window}])))"
    )
}

// ---------------------------------------------------------------------------
// A trigger sink that records what it is given

/// Records every trigger with the instant it arrived; answers `outcome`,
/// fails the next `fail_next` calls, and takes `delay` per call.
#[derive(Debug)]
pub(crate) struct RecordingSink {
    pub calls: Mutex<Vec<(rollback_core::TargetId, rollback_core::Trigger, Instant)>>,
    pub outcome: Mutex<rollback_core::TriggerOutcome>,
    pub fail_next: std::sync::atomic::AtomicUsize,
    pub delay: Duration,
    pub notify: tokio::sync::Notify,
}

impl RecordingSink {
    pub(crate) fn new() -> Arc<Self> {
        Self::with_delay(Duration::ZERO)
    }

    pub(crate) fn with_delay(delay: Duration) -> Arc<Self> {
        Arc::new(RecordingSink {
            calls: Mutex::default(),
            outcome: Mutex::new(rollback_core::TriggerOutcome::Accepted),
            fail_next: Default::default(),
            delay,
            notify: tokio::sync::Notify::new(),
        })
    }

    pub(crate) fn calls(&self) -> Vec<(rollback_core::TargetId, rollback_core::Trigger)> {
        self.calls
            .lock()
            .expect("calls")
            .iter()
            .map(|(t, g, _)| (t.clone(), g.clone()))
            .collect()
    }
}

#[async_trait::async_trait]
impl rollback_core::TriggerSink for RecordingSink {
    async fn trigger(
        &self,
        target: &rollback_core::TargetId,
        trigger: rollback_core::Trigger,
    ) -> rollback_core::Result<rollback_core::TriggerOutcome> {
        let arrived = Instant::now();
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        use std::sync::atomic::Ordering;
        if self.fail_next.load(Ordering::SeqCst) > 0 {
            self.fail_next.fetch_sub(1, Ordering::SeqCst);
            return Err(rollback_core::Error::transient("the engine is restarting"));
        }
        self.calls
            .lock()
            .expect("calls")
            .push((target.clone(), trigger, arrived));
        self.notify.notify_waiters();
        Ok(self.outcome.lock().expect("outcome").clone())
    }
}

/// One alert of a webhook payload.
pub(crate) struct TestAlert<'a> {
    pub status: &'a str,
    pub fingerprint: &'a str,
    pub starts_at: &'a str,
    pub labels: &'a [(&'a str, &'a str)],
}

/// A version-4 webhook payload, as Alertmanager 0.25 writes it.
pub(crate) fn webhook_payload(alerts: &[TestAlert<'_>]) -> serde_json::Value {
    let alerts: Vec<serde_json::Value> = alerts
        .iter()
        .map(|a| {
            let labels: serde_json::Map<String, serde_json::Value> =
                a.labels.iter().map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v))).collect();
            serde_json::json!({
                "status": a.status,
                "labels": labels,
                "annotations": {"summary": "5xx ratio above 1%"},
                "startsAt": a.starts_at,
                "endsAt": if a.status == "resolved" { "2026-11-27T12:05:00Z" } else { "0001-01-01T00:00:00Z" },
                "generatorURL": "http://prometheus/graph",
                "fingerprint": a.fingerprint,
            })
        })
        .collect();
    let status = if alerts.iter().any(|a| a["status"] == "firing") {
        "firing"
    } else {
        "resolved"
    };
    serde_json::json!({
        "receiver": "rollback",
        "status": status,
        "alerts": alerts,
        "groupLabels": {"alertname": "HighErrorRate"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": "{}:{alertname=\"HighErrorRate\"}",
        "truncatedAlerts": 0,
    })
}
