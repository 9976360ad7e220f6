//! Canary and baseline samples from one PromQL query grouped by a label,
//! against a real Prometheus (Debian's `prometheus` package) scraping
//! per-pod latencies of 8 canary and 8 baseline pods; judged by the
//! Mann-Whitney judge live and in replay of the query's history.

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rollback_core::canary::MannWhitney;
use rollback_core::condition::{NoData, Verdict};
use rollback_core::registry::{ProbeFor, ProbeKind, TargetUrl};
use rollback_core::replay::{self, ReplayOptions, Series};
use rollback_core::{Policy, ProbeContext, Timestamp};
use rollback_prometheus::{HistoryRange, PrometheusProbeKind};
use support::{PrometheusServer, PrometheusSetup};

const BASE: [f64; 8] = [0.100, 0.098, 0.103, 0.101, 0.099, 0.102, 0.097, 0.1005];

/// `latency_seconds{pod, track}`: the canary's pods `factor` times slower.
async fn pods(factor: f64) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let mut body = String::from("# TYPE latency_seconds gauge\n");
    for (i, v) in BASE.iter().enumerate() {
        body.push_str(&format!(
            "latency_seconds{{pod=\"base-{i}\",track=\"baseline\"}} {v}\n"
        ));
        body.push_str(&format!(
            "latency_seconds{{pod=\"canary-{i}\",track=\"canary\"}} {}\n",
            v * factor
        ));
    }
    body.push_str("latency_seconds{pod=\"other\",track=\"shadow\"} 9\n");
    let body = Arc::new(body);
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let body = body.clone();
            async move { (*body).clone() }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, server)
}

fn options(prom: &PrometheusServer, extra: serde_json::Value) -> rollback_core::registry::Options {
    let mut o = serde_json::json!({
        "url": prom.url(),
        "query": "latency_seconds",
        "samples": {"label": "track", "canary": "canary", "baseline": "baseline"},
    });
    o.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    o.as_object().unwrap().clone()
}

#[tokio::test]
async fn per_pod_samples_are_judged_live_and_in_replay() {
    let (addr, _app) = pods(1.3).await;
    let prom = PrometheusServer::start(PrometheusSetup {
        scrape: vec![addr.to_string()],
        ..PrometheusSetup::default()
    })
    .await;
    prom.wait_for_data("count(latency_seconds) == 17", Duration::from_secs(30))
        .await;
    let url = TargetUrl::parse("memory://shop/checkout").unwrap();
    let o = options(&prom, serde_json::json!({}));
    let probe = PrometheusProbeKind
        .build(ProbeFor {
            name: "latency",
            options: &o,
            url: &url,
            target_options: &Default::default(),
        })
        .await
        .unwrap();
    let ctx = ProbeContext::new(
        "shop/checkout".into(),
        "v2".into(),
        Timestamp::from(SystemTime::now()),
    );
    let m = probe.measure(&ctx).await.unwrap();
    let s = m.samples.clone().expect("samples");
    assert_eq!((s.canary.len(), s.baseline.len()), (8, 8), "{m:?}");
    let j = MannWhitney::default().judge(&s, NoData::Inconclusive);
    assert_eq!(j.verdict, Verdict::Fail, "{j}");
    assert!((j.mean_ratio.unwrap() - 1.3).abs() < 1e-9, "{j}");

    // The same query's history, replayed by a policy judging it.
    let client = rollback_prometheus::PrometheusClient::builder(prom.url())
        .build()
        .unwrap();
    let history_probe = rollback_prometheus::PrometheusProbe::builder("latency", client)
        .query("latency_seconds")
        .samples(rollback_prometheus::SampleSplit {
            label: "track".into(),
            canary: "canary".into(),
            baseline: "baseline".into(),
        })
        .build()
        .unwrap();
    let end = Timestamp::from(SystemTime::now());
    let range = HistoryRange {
        start: end.minus(Duration::from_secs(3)),
        end,
        step: Duration::from_secs(1),
    };
    let rows = history_probe
        .history(&"shop/checkout".into(), &"v2".into(), range)
        .await
        .unwrap();
    assert!(rows.len() >= 16 && rows.len() % 16 == 0, "{rows:?}");
    let mut series = Series::new();
    for r in rows {
        series.push("latency", r);
    }
    let policy = Policy::from_yaml(
        "interval: 1s\nbake_time: 3s\nprobes: [{ name: latency, mann_whitney: { direction: increase } }]",
    )
    .unwrap();
    let report = replay::run(&policy, &series, &ReplayOptions::default()).unwrap();
    assert!(report.rollback_at.is_some(), "{report:#?}");
}

#[tokio::test]
async fn samples_need_a_vector_and_no_baseline_query() {
    let (addr, _app) = pods(1.0).await;
    let prom = PrometheusServer::start(PrometheusSetup {
        scrape: vec![addr.to_string()],
        ..PrometheusSetup::default()
    })
    .await;
    let url = TargetUrl::parse("memory://shop/checkout").unwrap();
    let scalar = options(&prom, serde_json::json!({"query": "scalar(vector(1))"}));
    let probe = PrometheusProbeKind
        .build(ProbeFor {
            name: "latency",
            options: &scalar,
            url: &url,
            target_options: &Default::default(),
        })
        .await
        .unwrap();
    let ctx = ProbeContext::new(
        "shop/checkout".into(),
        "v2".into(),
        Timestamp::from(SystemTime::now()),
    );
    let e = probe.measure(&ctx).await.unwrap_err();
    assert!(e.to_string().contains("samples need a vector"), "{e}");
    let e = PrometheusProbeKind
        .check(&options(&prom, serde_json::json!({"baseline_query": "up"})))
        .unwrap_err();
    assert!(e.to_string().contains("`samples`"), "{e}");
    let e = PrometheusProbeKind
        .check(&options(
            &prom,
            serde_json::json!({"samples": {"label": "track", "canary": "a", "baseline": "a"}}),
        ))
        .unwrap_err();
    assert!(e.to_string().contains("`samples.baseline`"), "{e}");
    let e = PrometheusProbeKind
        .check(&options(
            &prom,
            serde_json::json!({"samples": {"label": "track", "canary": "a"}}),
        ))
        .unwrap_err();
    assert!(e.to_string().contains("baseline"), "{e}");
}
