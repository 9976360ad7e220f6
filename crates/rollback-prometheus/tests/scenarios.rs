//! The scenarios, end to end: the engine of rollback-core with the
//! in-memory target and rollbacker, judging PromQL probes against a real
//! Prometheus that scrapes the test's metrics app, and Alertmanager
//! notifying the receiver.

mod support;

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rollback_core::memory::{InMemoryRollbacker, InMemoryTarget};
use rollback_core::replay::ReplayOptions;
use rollback_core::time::{Clock, SystemClock};
use rollback_core::{
    Engine, Phase, Policy, RevisionHealth, RevisionId, RevisionRecord, RollbackOutcome,
    RollbackRequest, Rollbacker, TargetId, Timestamp, TriggerSink, WatchHandle, WatchSpec,
};
use rollback_prometheus::{
    AlertmanagerReceiver, HistoryRange, PrometheusClient, PrometheusProbe, history_series,
};
use support::{
    AlertmanagerServer, MetricsApp, PrometheusServer, PrometheusSetup, error_ratio_query, p99_query,
};

const TARGET: &str = "k8s:shop/checkout";
const SCRAPE: Duration = Duration::from_secs(1);
/// Time for what the bound does not count: an HTTP round trip to Prometheus,
/// ingesting the scrape, the engine's own work.
const SLACK: Duration = Duration::from_millis(1000);

/// One rollback call, when it came (wall clock and engine clock) and why.
#[derive(Debug, Clone)]
struct Call {
    at: Instant,
    engine_time: Timestamp,
    to: RevisionId,
    reason: String,
}

/// The in-memory rollbacker, timing each call.
#[derive(Debug, Clone)]
struct TimedRollbacker {
    inner: InMemoryRollbacker,
    clock: Arc<dyn Clock>,
    calls: Arc<Mutex<Vec<Call>>>,
}

#[async_trait]
impl Rollbacker for TimedRollbacker {
    fn target(&self) -> &TargetId {
        self.inner.target()
    }

    fn capabilities(&self) -> rollback_core::Capabilities {
        self.inner.capabilities()
    }

    async fn rollback(&self, request: &RollbackRequest) -> rollback_core::Result<RollbackOutcome> {
        self.calls.lock().unwrap().push(Call {
            at: Instant::now(),
            engine_time: self.clock.now(),
            to: request.to.id().clone(),
            reason: request.reason.clone(),
        });
        self.inner.rollback(request).await
    }
}

struct Canary {
    target: InMemoryTarget,
    rollbacker: TimedRollbacker,
    engine: Engine,
}

impl Canary {
    /// v1 is known good, v2 (the canary) is current.
    fn new(clock: Arc<dyn Clock>) -> Self {
        let target = InMemoryTarget::new(
            TARGET,
            [RevisionRecord::new("v1"), RevisionRecord::new("v2")],
        )
        .unwrap();
        target
            .set_health(&"v1".into(), RevisionHealth::Good)
            .unwrap();
        let rollbacker = TimedRollbacker {
            inner: InMemoryRollbacker::new(&target),
            clock: clock.clone(),
            calls: Arc::default(),
        };
        // No jitter: the bound of scenario a is exact.
        let engine = Engine::builder().clock(clock).max_jitter(0.0).build();
        Canary {
            target,
            rollbacker,
            engine,
        }
    }

    async fn watch(&self, policy: &str, probe: PrometheusProbe) -> WatchHandle {
        let policy = Policy::from_yaml(policy).unwrap();
        self.engine
            .watch(WatchSpec::new(
                policy,
                Arc::new(self.target.clone()),
                Arc::new(self.rollbacker.clone()),
                vec![Arc::new(probe)],
            ))
            .await
            .unwrap()
    }

    fn calls(&self) -> Vec<Call> {
        self.rollbacker.calls.lock().unwrap().clone()
    }

    async fn wait_for_rollback(&self, timeout: Duration) -> Call {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(c) = self.calls().first() {
                return c.clone();
            }
            assert!(Instant::now() < deadline, "no rollback within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The probes' client timeout.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

fn probe(prom: &PrometheusServer, name: &str, query: &str) -> PrometheusProbe {
    prom.probe(name, query, PROBE_TIMEOUT)
}

async fn finished(handle: &mut WatchHandle, timeout: Duration) -> Phase {
    tokio::time::timeout(timeout, handle.finished())
        .await
        .unwrap_or_else(|_| panic!("not finished: {:?}", handle.phase()))
}

/// Scenarios a and b: a healthy canary turns bad; the rollback must come
/// within interval × (failure_limit + 1) plus one scrape of the change.
async fn breach_is_rolled_back_within_the_bound(
    probe_name: &str,
    query: &str,
    success: &str,
    make_bad: impl FnOnce(&MetricsApp),
) {
    let app = MetricsApp::start(200.0, 0.0, Duration::from_millis(20)).await;
    let prom = PrometheusServer::start(PrometheusSetup {
        scrape: vec![app.target()],
        ..Default::default()
    })
    .await;
    prom.wait_for_data(query, Duration::from_secs(20)).await;
    // Let the rate windows fill with healthy traffic.
    tokio::time::sleep(Duration::from_secs(5)).await;

    let canary = Canary::new(Arc::new(SystemClock));
    let interval = Duration::from_secs(1);
    let failure_limit = 1u32;
    let policy = format!(
        "interval: 1s\nbake_time: 2m\nfailure_limit: {failure_limit}\ninconclusive_limit: 3\nverify: 0s\n\
         probes:\n  - name: {probe_name}\n    success: '{success}'\n"
    );
    let mut handle = canary.watch(&policy, probe(&prom, probe_name, query)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        canary.calls().is_empty(),
        "healthy so far: {:?}",
        canary.calls()
    );
    assert!(
        matches!(handle.phase(), Phase::Observing { .. }),
        "{:?}",
        handle.phase()
    );

    let changed = Instant::now();
    make_bad(&app);
    let call = canary.wait_for_rollback(Duration::from_secs(20)).await;
    let took = call.at - changed;
    let bound = interval * (failure_limit + 1) + SCRAPE;
    eprintln!(
        "{probe_name}: rolled back {took:?} after the change (bound {bound:?} + slack {SLACK:?}): {}",
        call.reason
    );
    assert!(
        took <= bound + SLACK,
        "rolled back {took:?} after the change; the bound is {bound:?} (+{SLACK:?})"
    );
    assert_eq!(call.to, RevisionId::new("v1"));
    assert!(call.reason.contains(probe_name), "{}", call.reason);

    let end = finished(&mut handle, Duration::from_secs(10)).await;
    assert!(
        matches!(&end, Phase::RolledBack { to, .. } if to.as_str() == "v1"),
        "{end:?}"
    );
    assert_eq!(canary.target.current_id(), RevisionId::new("v1"));
    assert_eq!(
        canary.target.health_of(&"v2".into()),
        Some(RevisionHealth::Bad)
    );
    assert_eq!(canary.calls().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_ratio_past_1_percent_is_rolled_back_within_the_bound() {
    breach_is_rolled_back_within_the_bound(
        "error-rate",
        &error_ratio_query("5s"),
        "< 0.01",
        |app| app.set_error_rate(0.2),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_p99_latency_past_100ms_is_rolled_back() {
    breach_is_rolled_back_within_the_bound("p99-latency", &p99_query("5s"), "< 0.1", |app| {
        app.set_latency(Duration::from_millis(200))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_a_healthy_canary_is_promoted_and_nothing_is_rolled_back() {
    let app = MetricsApp::start(200.0, 0.002, Duration::from_millis(20)).await;
    let prom = PrometheusServer::start(PrometheusSetup {
        scrape: vec![app.target()],
        ..Default::default()
    })
    .await;
    let query = error_ratio_query("5s");
    prom.wait_for_data(&query, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let canary = Canary::new(Arc::new(SystemClock));
    let policy = "interval: 1s\nbake_time: 5s\nverify: 0s\nprobes:\n  - name: error-rate\n    success: '< 0.01'\n  - name: p99\n    success: '< 0.1'\n";
    let policy = Policy::from_yaml(policy).unwrap();
    let mut handle = canary
        .engine
        .watch(WatchSpec::new(
            policy,
            Arc::new(canary.target.clone()),
            Arc::new(canary.rollbacker.clone()),
            vec![
                Arc::new(probe(&prom, "error-rate", &query)),
                Arc::new(probe(&prom, "p99", &p99_query("5s"))),
            ],
        ))
        .await
        .unwrap();
    let end = finished(&mut handle, Duration::from_secs(20)).await;
    assert!(matches!(end, Phase::Promoted { .. }), "{end:?}");
    assert!(canary.calls().is_empty());
    assert_eq!(canary.target.current_id(), RevisionId::new("v2"));
    assert_eq!(
        canary.target.health_of(&"v2".into()),
        Some(RevisionHealth::Good)
    );
}

async fn idle_canary(no_data: &str) -> (Canary, Phase) {
    let idle = MetricsApp::start(0.0, 0.0, Duration::from_millis(20)).await;
    let prom = PrometheusServer::start(PrometheusSetup {
        scrape: vec![idle.target()],
        ..Default::default()
    })
    .await;
    prom.wait_for_data("up{job=\"app\"} == 1", Duration::from_secs(20))
        .await;
    let canary = Canary::new(Arc::new(SystemClock));
    let policy = format!(
        "interval: 1s\nbake_time: 10s\nfailure_limit: 1\ninconclusive_limit: 2\nno_data: {no_data}\nverify: 0s\n\
         probes:\n  - name: error-rate\n    success: '< 0.01'\n"
    );
    let mut handle = canary
        .watch(
            &policy,
            probe(&prom, "error-rate", &error_ratio_query("5s")),
        )
        .await;
    let end = finished(&mut handle, Duration::from_secs(20)).await;
    (canary, end)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_no_traffic_counts_as_the_policy_says_never_as_a_pass() {
    // no_data: fail -> two failed measurements, rolled back.
    let (canary, end) = idle_canary("fail").await;
    assert!(
        matches!(&end, Phase::RolledBack { to, .. } if to.as_str() == "v1"),
        "{end:?}"
    );
    let calls = canary.calls();
    assert_eq!(calls.len(), 1);
    assert!(calls[0].reason.contains("no data"), "{}", calls[0].reason);

    // no_data: inconclusive -> escalated to humans after the third, long
    // before the bake time could promote anything.
    let (canary, end) = idle_canary("inconclusive").await;
    match &end {
        Phase::Escalated { reason, .. } => assert!(reason.contains("inconclusive"), "{reason}"),
        other => panic!("expected an escalation, got {other:?}"),
    }
    assert!(canary.calls().is_empty());
    assert_eq!(
        canary.target.health_of(&"v2".into()),
        Some(RevisionHealth::Unknown)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_an_alert_rolls_back_exactly_once_although_alertmanager_repeats_it() {
    const TOKEN: &str = "am-token";
    let canary = Canary::new(Arc::new(SystemClock));
    let receiver =
        AlertmanagerReceiver::builder(Arc::new(canary.engine.clone()) as Arc<dyn TriggerSink>)
            .bearer_token(TOKEN)
            .route(&["severity=\"page\""], "k8s:{namespace}/{deployment}")
            .build()
            .unwrap();
    let server = receiver
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let am = AlertmanagerServer::start(&server.url(), TOKEN, Duration::from_secs(2)).await;

    let app = MetricsApp::start(200.0, 0.0, Duration::from_millis(20)).await;
    let rules = format!(
        "groups:\n  - name: canary\n    interval: 1s\n    rules:\n      - alert: HighErrorRate\n        expr: '{} > 0.01'\n\
         \x20       labels: {{severity: page, namespace: shop, deployment: checkout}}\n\
         \x20       annotations: {{summary: '5xx ratio of the canary above 1%'}}\n",
        error_ratio_query("5s").replace('\'', "''")
    );
    let prom = PrometheusServer::start(PrometheusSetup {
        scrape: vec![app.target()],
        rules: Some(rules),
        alertmanager: Some(am.addr.to_string()),
        ..Default::default()
    })
    .await;
    prom.wait_for_data(&error_ratio_query("5s"), Duration::from_secs(20))
        .await;

    // The engine's own probe is lenient here: only the alert can breach.
    let policy = "interval: 1s\nbake_time: 2m\nverify: 0s\nprobes:\n  - name: error-rate\n    failure: '> 0.9'\n";
    let mut handle = canary
        .watch(policy, probe(&prom, "error-rate", &error_ratio_query("5s")))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(canary.calls().is_empty());

    app.set_error_rate(0.2);
    let call = canary.wait_for_rollback(Duration::from_secs(30)).await;
    assert!(call.reason.contains("HighErrorRate"), "{}", call.reason);
    let end = finished(&mut handle, Duration::from_secs(10)).await;
    assert!(
        matches!(&end, Phase::RolledBack { to, .. } if to.as_str() == "v1"),
        "{end:?}"
    );

    // The alert keeps firing; Alertmanager repeats it every 2s.
    let deadline = Instant::now() + Duration::from_secs(30);
    while receiver.stats().firing < 3 {
        assert!(
            Instant::now() < deadline,
            "Alertmanager did not repeat: {:?}\n{}",
            receiver.stats(),
            am.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stats = receiver.stats();
    assert_eq!(stats.triggered, 1, "{stats:?}");
    assert!(stats.duplicates >= 2, "{stats:?}");
    assert_eq!(canary.calls().len(), 1, "exactly one rollback");
    assert_eq!(canary.target.current_id(), RevisionId::new("v1"));
}

/// A clock running at real speed, shifted into the past.
#[derive(Debug)]
struct ShiftedClock {
    shift_ms: i64,
}

impl Clock for ShiftedClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(SystemClock.now().as_millis() - self.shift_ms)
    }
}

/// OpenMetrics for `seconds` of history from `t0`: 100 requests a second,
/// 5% of them 500s from `errors_from` seconds on.
fn openmetrics_history(t0: i64, seconds: i64, errors_from: i64) -> String {
    let (mut ok, mut errors) = (0u64, 0u64);
    let mut out =
        String::from("# HELP http_requests Requests served.\n# TYPE http_requests counter\n");
    for s in 0..=seconds {
        if s > 0 {
            if s > errors_from {
                ok += 95;
                errors += 5;
            } else {
                ok += 100;
            }
        }
        let _ = writeln!(
            out,
            "http_requests_total{{code=\"200\",job=\"app\"}} {ok} {}",
            t0 + s
        );
        let _ = writeln!(
            out,
            "http_requests_total{{code=\"500\",job=\"app\"}} {errors} {}",
            t0 + s
        );
    }
    out.push_str("# EOF\n");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f_replay_of_backfilled_history_decides_as_the_live_run() {
    let promtool = support::require_binary("promtool");
    let dir = tempfile::tempdir().unwrap();
    let now_s = SystemClock.now().as_millis() / 1000;
    let t0 = (now_s - 3 * 3600) / 60 * 60;
    let (seconds, errors_from) = (40, 20);
    let input = dir.path().join("history.om");
    std::fs::write(&input, openmetrics_history(t0, seconds, errors_from)).unwrap();
    let tsdb = dir.path().join("tsdb");
    let started = Instant::now();
    let out = std::process::Command::new(&promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(&tsdb)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "backfilled {seconds}s of history in {:?}",
        started.elapsed()
    );
    let prom = PrometheusServer::start(PrometheusSetup {
        tsdb: Some(tsdb),
        ..Default::default()
    })
    .await;

    let policy_text = "interval: 2s\nbake_time: 1m\nfailure_limit: 1\ninconclusive_limit: 3\nverify: 0s\n\
                       probes:\n  - name: error-rate\n    success: '< 0.01'\n";
    let policy = Policy::from_yaml(policy_text).unwrap();
    let query = error_ratio_query("5s");
    let client = PrometheusClient::builder(prom.url())
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let probe = PrometheusProbe::builder("error-rate", client)
        .query(query.as_str())
        .at_context_time(true)
        .build()
        .unwrap();
    let start = Timestamp::from_millis((t0 + 10) * 1000);
    let end = Timestamp::from_millis((t0 + seconds) * 1000);

    // Replay: read the history back with a range query, one sample per interval.
    let range = HistoryRange {
        start,
        end,
        step: policy.interval,
    };
    let series = history_series(
        &[&probe],
        &TargetId::new(TARGET),
        &RevisionId::new("v2"),
        range,
    )
    .await
    .unwrap();
    let samples = series.samples("error-rate");
    assert_eq!(samples.len(), 16);
    assert_eq!(samples[0].value, Some(0.0));
    assert!(
        samples[15].value.is_some_and(|v| (v - 0.05).abs() < 1e-9),
        "{:?}",
        samples[15]
    );
    let report = rollback_core::replay::run(
        &policy,
        &series,
        &ReplayOptions {
            start: Some(start),
            end: Some(end),
        },
    )
    .unwrap();
    let replay_at = report.rollback_at.expect("the replay rolls back");
    eprintln!("replay: rollback at {replay_at}: {:?}", report.reason);

    // Live: the engine on a clock shifted to the same history, measuring with
    // the same probe at its clock's time.
    let shift_ms = SystemClock.now().as_millis() - start.as_millis();
    let canary = Canary::new(Arc::new(ShiftedClock { shift_ms }));
    let mut handle = canary.watch(policy_text, probe).await;
    let live_end = finished(&mut handle, Duration::from_secs(60)).await;
    assert!(
        matches!(&live_end, Phase::RolledBack { to, .. } if to.as_str() == "v1"),
        "{live_end:?}"
    );
    let calls = canary.calls();
    assert_eq!(calls.len(), 1);
    let live_at = calls[0].engine_time;
    eprintln!("live: rollback at {live_at}: {}", calls[0].reason);

    // Same decision, at the same measurement: the live run lags only by the
    // milliseconds its queries take.
    assert!(
        matches!(
            report.phase,
            Phase::RollingBack { .. } | Phase::RolledBack { .. }
        ),
        "{:?}",
        report.phase
    );
    assert!(
        live_at >= replay_at && live_at.since(replay_at) < Duration::from_secs(1),
        "live {live_at} vs replay {replay_at}"
    );
    assert!(
        report
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("error-rate")),
        "{:?}",
        report.reason
    );
    let errors_start = Timestamp::from_millis((t0 + errors_from) * 1000);
    assert!(
        replay_at > errors_start && replay_at <= errors_start.plus(Duration::from_secs(4)),
        "{replay_at}"
    );
}
