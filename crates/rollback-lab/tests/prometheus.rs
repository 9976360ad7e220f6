//! History straight from a real Prometheus (Debian's package): two days of
//! backfilled 10-second samples, 17,281 steps per series, more than
//! Prometheus' 11,000 points per series, read in chunks; the backtest on it
//! equals the backtest on the same samples from a file.
#![cfg(feature = "prometheus")]

#[path = "../../rollback-prometheus/tests/support/mod.rs"]
#[allow(unreachable_pub)]
mod support;

use std::fmt::Write as _;
use std::time::Duration;

use rollback_core::Timestamp;
use rollback_core::registry::Registry;
use rollback_core::time::{Clock, SystemClock};
use rollback_core::watchfile::WatchFile;
use rollback_lab::{
    BacktestOptions, ChangePoints, HistoryQuery, SeriesFile, backtest, fetch_change_points,
    fetch_history, read_series,
};
use rollback_prometheus::{PrometheusClient, PrometheusProbeKind};
use support::{PrometheusServer, PrometheusSetup, require_binary};

const STEP: i64 = 10;
const SPAN: i64 = 2 * 24 * 3600;

fn error_ratio(s: i64) -> f64 {
    if (22_200..22_500).contains(&s) || (87_400..87_440).contains(&s) {
        0.2
    } else {
        0.001 * (1 + (s / STEP) % 5) as f64
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_in_chunks_from_a_real_prometheus() {
    let promtool = require_binary("promtool");
    let dir = tempfile::tempdir().unwrap();
    // Two days ending an hour ago, on 10-second steps.
    let now = SystemClock.now().as_millis() / 1000;
    let t0 = (now - SPAN - 3600) / 3600 * 3600;
    let mut ratio = String::from("# TYPE lab_error_ratio gauge\n");
    let mut generations = String::from("# TYPE kube_deployment_status_observed_generation gauge\n");
    let mut csv = String::from("timestamp,error_ratio,generation\n");
    for s in (0..=SPAN).step_by(STEP as usize) {
        let generation = 1 + s / (6 * 3600);
        let _ = writeln!(
            ratio,
            "lab_error_ratio{{job=\"app\"}} {} {}",
            error_ratio(s),
            t0 + s
        );
        let _ = writeln!(
            generations,
            "kube_deployment_status_observed_generation{{deployment=\"checkout\"}} {generation} {}",
            t0 + s
        );
        let _ = writeln!(csv, "{},{},{generation}", t0 + s, error_ratio(s));
    }
    // OpenMetrics: each family's samples together under its TYPE line.
    let text = format!("{ratio}{generations}# EOF\n");
    let input = dir.path().join("history.om");
    std::fs::write(&input, text).unwrap();
    let tsdb = dir.path().join("tsdb");
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
    let prom = PrometheusServer::start(PrometheusSetup {
        tsdb: Some(tsdb),
        ..Default::default()
    })
    .await;

    let watch = dir.path().join("watch.yaml");
    std::fs::write(
        &watch,
        format!(
            "policy:\n  interval: 10s\n  bake_time: 1h\n  consecutive_failure_limit: 2\nprobes:\n  - name: error_ratio\n    success: '< 0.05'\n    prometheus:\n      url: {}\n      query: 'max(lab_error_ratio)'\n      timeout: 20s\ntargets:\n  - url: memory://checkout\n    revisions: [v1, v2]\n",
            prom.url()
        ),
    )
    .unwrap();
    let registry = Registry::with_memory().probe(PrometheusProbeKind);
    let file = WatchFile::load(&watch, &registry).unwrap();
    let (start, end) = (
        Timestamp::from_millis(t0 * 1000),
        Timestamp::from_millis((t0 + SPAN) * 1000),
    );
    let fetched = fetch_history(
        &file,
        &HistoryQuery {
            start,
            end,
            step: None,
            target: "memory://checkout".into(),
            revision: "v1".into(),
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}; prometheus log:\n{}", prom.log()));
    let samples = fetched.samples("error_ratio");
    assert_eq!(
        samples.len() as i64,
        SPAN / STEP + 1,
        "every step, over 11,000 points"
    );
    assert!(samples.len() > 11_000);
    for (i, s) in samples.iter().enumerate() {
        let want = error_ratio(i as i64 * STEP);
        assert!(
            s.value.is_some_and(|v| (v - want).abs() < 1e-12),
            "step {i}: {:?} != {want}",
            s.value
        );
    }

    let client = PrometheusClient::builder(prom.url())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let changes = fetch_change_points(
        &client,
        "kube_deployment_status_observed_generation",
        start,
        end,
        Duration::from_secs(STEP as u64),
    )
    .await
    .unwrap();
    let want: Vec<Timestamp> = (1..=8)
        .map(|k| Timestamp::from_millis((t0 + k * 6 * 3600) * 1000))
        .collect();
    assert_eq!(changes, want);

    // The same history from a wide CSV, with the generation beside it.
    let csv_path = dir.path().join("history.csv");
    std::fs::write(&csv_path, csv).unwrap();
    let from_file = read_series(&[SeriesFile::parse(&csv_path.display().to_string())]).unwrap();
    let options = BacktestOptions::new(ChangePoints::At(changes));
    let live = backtest(&file.policy, &fetched, &options).unwrap();
    let filed = backtest(
        &file.policy,
        &from_file,
        &BacktestOptions::new(ChangePoints::OnChangeOf("generation".into())),
    )
    .unwrap();
    assert_eq!(live, filed);
    assert_eq!(live.summary.changes, 8);
    assert_eq!(live.summary.rollbacks, 2, "{live}");
    eprintln!("{live}");
}
