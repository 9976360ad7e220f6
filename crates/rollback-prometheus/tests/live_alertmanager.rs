//! The receiver behind a real Alertmanager (Debian's
//! `prometheus-alertmanager`), fed by a real Prometheus alerting rule.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rollback_core::{TargetId, TriggerSink};
use rollback_prometheus::{AlertOutcome, AlertStatus, AlertmanagerReceiver};
use support::{
    AlertmanagerServer, MetricsApp, PrometheusServer, PrometheusSetup, RecordingSink,
    error_ratio_query,
};

const TOKEN: &str = "live-token";

async fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firing_triggers_once_and_resolved_is_recorded_without_triggering() {
    let sink = RecordingSink::new();
    let receiver = AlertmanagerReceiver::builder(sink.clone() as Arc<dyn TriggerSink>)
        .bearer_token(TOKEN)
        .route(
            &["alertname=\"HighErrorRate\""],
            "k8s:{namespace}/{deployment}",
        )
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
         \x20       labels: {{severity: page, namespace: shop, deployment: checkout}}\n",
        error_ratio_query("3s").replace('\'', "''")
    );
    let prom = PrometheusServer::start(PrometheusSetup {
        scrape: vec![app.target()],
        rules: Some(rules),
        alertmanager: Some(am.addr.to_string()),
        ..Default::default()
    })
    .await;
    prom.wait_for_data(&error_ratio_query("3s"), Duration::from_secs(20))
        .await;

    app.set_error_rate(0.2);
    wait_until("a firing notification", Duration::from_secs(30), || {
        receiver.stats().firing >= 1
    })
    .await;
    let calls = sink.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].0, TargetId::new("k8s:shop/checkout"));
    let first = receiver.records()[0].clone();
    assert_eq!(first.status, AlertStatus::Firing);
    assert_eq!(first.alertname.as_deref(), Some("HighErrorRate"));
    assert!(!first.fingerprint.is_empty());
    assert_eq!(
        calls[0].1.key,
        format!("{}@{}", first.fingerprint, first.starts_at)
    );

    app.set_error_rate(0.0);
    wait_until("a resolved notification", Duration::from_secs(60), || {
        receiver.stats().resolved >= 1
    })
    .await;
    let resolved = receiver
        .records()
        .into_iter()
        .find(|r| r.status == AlertStatus::Resolved)
        .unwrap();
    assert_eq!(resolved.outcome, AlertOutcome::Resolved);
    assert_eq!(resolved.fingerprint, first.fingerprint);
    assert_eq!(resolved.target, Some(TargetId::new("k8s:shop/checkout")));
    assert_eq!(
        sink.calls().len(),
        1,
        "a resolved alert never triggers; log:\n{}",
        am.log()
    );
}
