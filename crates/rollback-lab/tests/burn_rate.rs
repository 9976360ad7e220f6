//! A `burn_rate` probe in the lab: its history read from a real Prometheus
//! (backfilled), backtested from a watch file; the would-be rollback comes
//! at the first step where the live probe's instant measurement fires.
#![cfg(feature = "prometheus")]

#[path = "../../rollback-prometheus/tests/support/mod.rs"]
#[allow(unreachable_pub)]
mod support;

use std::fmt::Write as _;
use std::time::Duration;

use rollback_core::registry::Registry;
use rollback_core::time::{Clock, SystemClock};
use rollback_core::watchfile::WatchFile;
use rollback_core::{HealthProbe, ProbeContext, RevisionId, TargetId, Timestamp};
use rollback_lab::{
    BacktestOptions, ChangeOutcome, ChangePoints, HistoryQuery, backtest, fetch_history,
};
use rollback_prometheus::{BurnRateConfig, BurnRateProbe, BurnRateProbeKind};
use support::{PrometheusServer, PrometheusSetup, require_binary};

const MINUTES: i64 = 8 * 60;

/// 1000 requests a minute, 0.05 % bad, 3 % for 40 minutes from 3h.
fn openmetrics(t0: i64) -> String {
    let mut out = String::from("# HELP http_requests Requests.\n# TYPE http_requests counter\n");
    let (mut ok, mut bad) = (0.0, 0.0);
    for m in 0..=MINUTES {
        if m > 0 {
            let errors = if (180..220).contains(&m) { 30.0 } else { 0.5 };
            ok += 1000.0 - errors;
            bad += errors;
        }
        let at = t0 + m * 60;
        let _ = writeln!(
            out,
            "http_requests_total{{code=\"200\",job=\"app\"}} {ok} {at}"
        );
        let _ = writeln!(
            out,
            "http_requests_total{{code=\"500\",job=\"app\"}} {bad} {at}"
        );
    }
    out.push_str("# EOF\n");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burn_rate_probe_is_backtested_from_prometheus() {
    let promtool = require_binary("promtool");
    let dir = tempfile::tempdir().unwrap();
    let t0 = (SystemClock.now().as_millis() / 1000 - 10 * 3600) / 60 * 60;
    let input = dir.path().join("history.om");
    std::fs::write(&input, openmetrics(t0)).unwrap();
    let tsdb = dir.path().join("tsdb");
    let out = std::process::Command::new(&promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(&tsdb)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let prom = PrometheusServer::start(PrometheusSetup {
        tsdb: Some(tsdb),
        ..Default::default()
    })
    .await;

    let options = format!(
        "url: {}\n      objective: 99.9\n      bad: 'sum(increase(http_requests_total{{job=\"app\",code=~\"5..\"}}[{{{{window}}}}]))'\n      total: 'sum(increase(http_requests_total{{job=\"app\"}}[{{{{window}}}}]))'\n      windows: [{{long: 1h, short: 5m, factor: 14.4}}]\n      at_context_time: true",
        prom.url()
    );
    let watch = dir.path().join("watch.yaml");
    std::fs::write(
        &watch,
        format!(
            "policy:\n  interval: 5m\n  bake_time: 2h\nprobes:\n  - name: error_budget\n    success: '<= 1'\n    burn_rate:\n      {options}\ntargets:\n  - url: memory://app\n    revisions: [v1, v2]\n"
        ),
    )
    .unwrap();
    let registry = Registry::with_memory().probe(BurnRateProbeKind);
    let file = WatchFile::load(&watch, &registry).unwrap();
    let at = |minute: i64| Timestamp::from_millis((t0 + minute * 60) * 1000);
    let series = fetch_history(
        &file,
        &HistoryQuery {
            start: at(60),
            end: at(MINUTES),
            step: None,
            target: "app".into(),
            revision: "v2".into(),
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}; prometheus log:\n{}", prom.log()));
    assert_eq!(series.samples("error_budget").len(), 85);

    let report = backtest(
        &file.policy,
        &series,
        &BacktestOptions::new(ChangePoints::Every(Duration::from_secs(2 * 3600))),
    )
    .unwrap();
    let rollbacks: Vec<_> = report.rollbacks().collect();
    assert_eq!(rollbacks.len(), 1, "{report}");
    let rolled_back_at = rollbacks[0].rollback_at.unwrap();
    assert_eq!(rollbacks[0].at, at(180), "the change judged over the burn");
    assert!(
        report
            .changes
            .iter()
            .all(|c| c.outcome != ChangeOutcome::Escalation)
    );

    // The live probe fires first at that step.
    let options = &file.probes[0].options;
    let config: BurnRateConfig = rollback_core::registry::options(options).unwrap();
    let probe = BurnRateProbe::from_config("error_budget", &config).unwrap();
    let fires = |t: Timestamp| {
        let probe = probe.clone();
        async move {
            let m = probe
                .measure(&ProbeContext::new(
                    TargetId::new("app"),
                    RevisionId::new("v2"),
                    t,
                ))
                .await
                .unwrap();
            m.value.unwrap() > 1.0
        }
    };
    assert!(fires(rolled_back_at).await);
    assert!(!fires(rolled_back_at.minus(Duration::from_secs(300))).await);
}
