//! Against the real Prometheus and Alertmanager (Debian's packages, from
//! rollback-prometheus's test support): Prometheus scrapes `/metrics` and a
//! PromQL query reads the result; `promtool check metrics` passes on a
//! scrape; Alertmanager posts to the receiver mounted on the same server,
//! and the alert rolls the target back.

mod common;
#[allow(clippy::all, unreachable_pub)]
#[path = "../../rollback-prometheus/tests/support/mod.rs"]
mod support;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{SERVE, Shelf, seen, start, until, write};
use rollback_core::TriggerOutcome;
use rollback_core::audit::{AuditEntry, MemoryAuditSink};
use rollback_core::machine::{Breach, DecisionKind, PhaseKind};
use serde_json::{Value, json};
use support::{AlertmanagerServer, PrometheusServer, PrometheusSetup, require_binary};

const WAIT: Duration = Duration::from_secs(30);

fn policy() -> &'static str {
    "policy:\n  interval: 100ms\n  bake_time: 1h\n  verify: 300ms\n\
     probes:\n  - name: error_rate\n    success: \"< 0.01\"\n    scripted:\n      per_revision: {bad: [0.05], v1: [0.001], v2: [0.001], v3: [null]}\n"
}

fn phase(server: &rollback_serve::Server, id: &str) -> Option<PhaseKind> {
    server
        .engine()
        .phases()
        .into_iter()
        .find(|(t, _)| t.as_str() == id)
        .map(|(_, p)| p.kind())
}

async fn query(prom: &PrometheusServer, q: &str) -> Vec<Value> {
    let body: Value = reqwest::Client::new()
        .get(format!("{}/api/v1/query", prom.url()))
        .query(&[("query", q)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "success", "{q}: {body}");
    body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_metrics_and_promtool_passes_them() {
    let dir = tempfile::tempdir().unwrap();
    let shelf = Shelf::default();
    shelf.put("shop/web", &["v1", "bad"]);
    shelf.put("shop/api", &["v1", "v2"]);
    shelf.put("shop/db", &["v2", "v3"]);
    let file = write(
        dir.path(),
        "rollback.yaml",
        &format!(
            "{}targets:\n  - url: shelf://shop/web\n  - url: shelf://shop/api\n  - url: shelf://shop/db\n{SERVE}",
            policy().replace("verify: 300ms", "verify: 300ms\n  inconclusive_limit: 1")
        ),
    );
    let audit = MemoryAuditSink::new();
    let server = start(&file, shelf.registry(), &audit).await;
    until("shop/web rolled back", WAIT, || {
        phase(&server, "shop/web") == Some(PhaseKind::RolledBack)
    })
    .await;
    until("shop/db escalated (no data twice)", WAIT, || {
        phase(&server, "shop/db") == Some(PhaseKind::Escalated)
    })
    .await;

    // promtool lints a scrape in the text format.
    let text = reqwest::get(format!("{}/metrics", server.url()))
        .await
        .unwrap();
    assert_eq!(
        text.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = text.text().await.unwrap();
    let mut promtool = Command::new(require_binary("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}\n{}{}\non:\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // (A family without samples yet, such as probe errors, is not written.)
    for family in [
        "# TYPE rollback_rollbacks_total counter",
        "# TYPE rollback_decisions_total counter",
        "# TYPE rollback_measurements_total counter",
        "# TYPE rollback_target_phase gauge",
        "# TYPE rollback_duration_seconds histogram",
        "# TYPE rollback_breach_to_call_seconds histogram",
        "# TYPE rollback_measurement_delay_seconds histogram",
        "# TYPE rollback_targets gauge",
    ] {
        assert!(text.contains(family), "{family} in\n{text}");
    }

    // Prometheus scrapes it (it asks for OpenMetrics) and PromQL reads it.
    let prom = PrometheusServer::start(PrometheusSetup {
        scrape: vec![server.local_addr().to_string()],
        interval: Some(Duration::from_millis(500)),
        ..Default::default()
    })
    .await;
    prom.wait_for_data("rollback_rollbacks_total", WAIT).await;
    let rolled = query(&prom, "sum by (target, outcome) (rollback_rollbacks_total)").await;
    assert_eq!(rolled.len(), 1, "{rolled:?}");
    assert_eq!(
        rolled[0]["metric"],
        json!({"target": "shop/web", "outcome": "succeeded"})
    );
    assert_eq!(rolled[0]["value"][1], "1");
    let phases = query(&prom, "rollback_target_phase == 1").await;
    let mut by_target: Vec<(String, String)> = phases
        .iter()
        .map(|r| {
            (
                r["metric"]["target"].as_str().unwrap().to_owned(),
                r["metric"]["phase"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    by_target.sort();
    assert_eq!(
        by_target,
        [
            ("shop/api".to_owned(), "observing".to_owned()),
            ("shop/db".to_owned(), "escalated".to_owned()),
            ("shop/web".to_owned(), "rolled_back".to_owned()),
        ]
    );
    let failed = query(
        &prom,
        r#"sum(rollback_measurements_total{probe="error_rate",verdict="fail"})"#,
    )
    .await;
    assert_eq!(failed[0]["value"][1], "1");
    let inconclusive = query(
        &prom,
        r#"rollback_measurements_total{verdict="inconclusive"}"#,
    )
    .await;
    assert_eq!(inconclusive[0]["value"][1], "2");
    let call = query(&prom, "rollback_breach_to_call_seconds_count").await;
    assert_eq!(call[0]["value"][1], "1");
    // Every measurement the engine took on its schedule has its delay.
    let measured = query(&prom, "sum(rollback_measurements_total)").await;
    let delayed = query(&prom, "rollback_measurement_delay_seconds_count").await;
    assert_eq!(delayed[0]["value"][1], measured[0]["value"][1]);
    let late = query(
        &prom,
        "rollback_measurement_delay_seconds_sum / rollback_measurement_delay_seconds_count < 1",
    )
    .await;
    assert_eq!(
        late.len(),
        1,
        "judged within a second of their due time on average"
    );
    let decisions = query(&prom, r#"rollback_decisions_total{decision="escalate"}"#).await;
    assert_eq!(decisions[0]["value"][1], "1");
    let took = query(&prom, "rollback_duration_seconds_sum < 60").await;
    assert_eq!(took.len(), 1, "one rollback, well under a minute");
    assert_eq!(query(&prom, "rollback_targets").await[0]["value"][1], "3");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_posts_to_the_mounted_receiver_and_the_alert_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let shelf = Shelf::default();
    let (web, rollbacker) = shelf.put("shop/web", &["v1", "v2"]);
    let file = write(
        dir.path(),
        "rollback.yaml",
        &format!(
            "{}targets:\n  - url: shelf://shop/web\n{SERVE}  alertmanager:\n    bearer_token: \"${{AM_TOKEN}}\"\n    routes:\n      - matchers: ['alertname=\"HighErrorRate\"']\n        target: \"{{namespace}}/{{service}}\"\n",
            policy()
        ),
    );
    let audit = MemoryAuditSink::new();
    let server = start(&file, shelf.registry(), &audit).await;
    until("shop/web observed", WAIT, || {
        phase(&server, "shop/web") == Some(PhaseKind::Observing)
    })
    .await;
    let am = AlertmanagerServer::start(
        &format!("{}/webhook/alertmanager", server.url()),
        common::env("AM_TOKEN").unwrap().as_str(),
        Duration::from_secs(1),
    )
    .await;
    let posted = reqwest::Client::new()
        .post(format!("http://{}/api/v2/alerts", am.addr))
        .json(&json!([{
            "labels": {"alertname": "HighErrorRate", "namespace": "shop", "service": "web", "severity": "page"},
            "annotations": {"summary": "5xx above 1% on shop/web"}
        }]))
        .send()
        .await
        .unwrap();
    assert!(posted.status().is_success(), "{}", posted.status());
    until("shop/web rolled back by the alert", WAIT, || {
        phase(&server, "shop/web") == Some(PhaseKind::RolledBack)
    })
    .await;
    assert_eq!(web.current_id().as_str(), "v1");
    assert!(seen(&audit, "shop/web", |e| matches!(
        e,
        AuditEntry::TriggerReceived { outcome: TriggerOutcome::Accepted, summary, .. }
            if summary.contains("HighErrorRate") && summary.contains("5xx above 1% on shop/web")
    )));
    assert!(seen(&audit, "shop/web", |e| matches!(
        e,
        AuditEntry::Decided {
            decision: DecisionKind::Rollback,
            breach: Some(Breach::Alert { .. }),
            ..
        }
    )));
    // Alertmanager repeats the notification every second; the rollback
    // stays one.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(rollbacker.performed().len(), 1, "{}", am.log());
    let metrics = reqwest::get(format!("{}/metrics", server.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"rollback_alerts_total{outcome="accepted"} 1"#),
        "{metrics}"
    );
    server.shutdown().await;
}
