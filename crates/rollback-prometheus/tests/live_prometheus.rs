//! The probe against a real Prometheus (Debian's `prometheus` package)
//! scraping the test's metrics app every second.

mod support;

use std::time::Duration;

use rollback_core::{
    ErrorKind, HealthProbe, Measurement, ProbeContext, RevisionId, TargetId, Timestamp,
};
use rollback_prometheus::{HistoryRange, PrometheusProbe};
use support::{MetricsApp, PrometheusServer, PrometheusSetup, error_ratio_query, p99_query};

fn ctx() -> ProbeContext {
    ProbeContext::new(
        TargetId::new("k8s:shop/checkout"),
        RevisionId::new("v2"),
        Timestamp::from(std::time::SystemTime::now()),
    )
}

/// The probes' client timeout.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

fn probe(prom: &PrometheusServer, name: &str, query: &str) -> PrometheusProbe {
    prom.probe(name, query, PROBE_TIMEOUT)
}

async fn value(p: &PrometheusProbe) -> f64 {
    p.measure(&ctx()).await.unwrap().value.expect("a value")
}

#[test]
#[should_panic(expected = "apt-get install prometheus prometheus-alertmanager")]
fn a_missing_server_binary_fails_saying_what_to_install() {
    support::require_binary("prometheus-that-is-not-installed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_ratio_and_p99_come_from_the_real_server() {
    let app = MetricsApp::start(200.0, 0.05, Duration::from_millis(20)).await;
    let prom = PrometheusServer::start(PrometheusSetup {
        scrape: vec![app.target()],
        ..Default::default()
    })
    .await;
    prom.wait_for_data(
        "sum(rate(http_requests_total[5s])) > 0",
        Duration::from_secs(20),
    )
    .await;
    let errors = probe(&prom, "error-rate", &error_ratio_query("5s"));
    let p99 = probe(&prom, "p99", &p99_query("5s"));
    let e = value(&errors).await;
    assert!((0.03..=0.07).contains(&e), "error ratio {e}");
    let l = value(&p99).await;
    assert!(
        l > 0.01 && l <= 0.025,
        "p99 {l}: 20ms falls in the (0.01, 0.025] bucket"
    );

    app.set_latency(Duration::from_millis(200));
    app.set_error_rate(0.0);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let l = value(&p99).await;
    assert!(
        l > 0.1 && l <= 0.25,
        "p99 {l}: 200ms falls in the (0.1, 0.25] bucket"
    );
    let e = value(&errors).await;
    assert_eq!(e, 0.0, "no 5xx in the last 5s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_traffic_is_no_data_and_promql_errors_carry_prometheus_message() {
    let idle = MetricsApp::start(0.0, 0.0, Duration::from_millis(20)).await;
    let prom = PrometheusServer::start(PrometheusSetup {
        scrape: vec![idle.target()],
        ..Default::default()
    })
    .await;
    prom.wait_for_data("up{job=\"app\"} == 1", Duration::from_secs(20))
        .await;

    // An app that has served nothing exposes no request series: no data.
    let errors = probe(&prom, "error-rate", &error_ratio_query("5s"));
    assert_eq!(errors.measure(&ctx()).await.unwrap(), Measurement::NO_DATA);
    rollback_core::conformance::check_probe(&errors, &ctx())
        .await
        .unwrap();
    // histogram_quantile over nothing is no data too, never a silent 0.
    assert_eq!(
        probe(&prom, "p99", &p99_query("5s"))
            .measure(&ctx())
            .await
            .unwrap(),
        Measurement::NO_DATA
    );

    let e = probe(&prom, "broken", "sum(rate(http_requests_total[5s])")
        .measure(&ctx())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(
        e.message().contains("HTTP 400") && e.message().contains("parse error"),
        "{}",
        e.message()
    );

    let e = probe(&prom, "range", "up[1m]")
        .measure(&ctx())
        .await
        .unwrap_err();
    assert!(e.message().contains("range vector"), "{}", e.message());

    // Two series (up of the app and of Prometheus itself, if scraped; here
    // two label sets made with label_replace) are an error naming the query.
    let q = r#"up or label_replace(up, "copy", "1", "", "")"#;
    let e = probe(&prom, "two", q).measure(&ctx()).await.unwrap_err();
    assert!(
        e.message().contains("returned 2 series") && e.message().contains(&format!("{q:?}")),
        "{}",
        e.message()
    );

    // NaN from a real division by zero goes to the engine as NaN.
    let v = value(&probe(&prom, "nan", "scalar(up{job=\"app\"}) * 0 / 0")).await;
    assert!(v.is_nan(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_reads_back_what_was_scraped() {
    let app = MetricsApp::start(100.0, 0.0, Duration::from_millis(20)).await;
    let prom = PrometheusServer::start(PrometheusSetup {
        scrape: vec![app.target()],
        ..Default::default()
    })
    .await;
    prom.wait_for_data(
        "sum(rate(http_requests_total[5s])) > 0",
        Duration::from_secs(20),
    )
    .await;
    // The range below starts 4s ago; its rate windows reach 5s further back.
    tokio::time::sleep(Duration::from_secs(9)).await;
    let now = Timestamp::from(std::time::SystemTime::now());
    let start = Timestamp::from_millis(now.as_millis() / 1000 * 1000 - 4000);
    let range = HistoryRange {
        start,
        end: start.plus(Duration::from_secs(3)),
        step: Duration::from_secs(1),
    };
    let p = probe(&prom, "rps", "sum(rate(http_requests_total[5s]))");
    let samples = p
        .history(&TargetId::new("t"), &RevisionId::new("r"), range)
        .await
        .unwrap();
    assert_eq!(samples.len(), 4);
    for (i, s) in samples.iter().enumerate() {
        assert_eq!(s.at, start.plus(Duration::from_secs(i as u64)));
        let v = s
            .value
            .unwrap_or_else(|| panic!("no data at step {i}: {samples:?}"));
        assert!(
            (60.0..=140.0).contains(&v),
            "about 100 requests per second, got {v}"
        );
    }
}
