//! The example watch files with web probes: checked (unknown fields and bad
//! paths named by field), run by the engine against the loopback Datadog
//! and Cloud Monitoring APIs, and replayed over recorded series.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rollback_core::audit::MemoryAuditSink;
use rollback_core::policy::PolicyFormat;
use rollback_core::registry::Registry;
use rollback_core::replay::{self, ReplayOptions, Series};
use rollback_core::watchfile::{WatchFile, WatchFileError};
use rollback_core::{Engine, Phase};

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/watch")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The example with a memory target instead of a Kubernetes one, and
/// intervals short enough for a test on the real clock.
fn runnable(text: &str) -> String {
    let policy_start = text.find("policy:").unwrap();
    let probes_start = text.find("probes:").unwrap();
    let mut out = text[..policy_start].to_owned();
    out.push_str(
        "policy:\n  interval: 100ms\n  bake_time: 2s\n  failure_limit: 1\n  verify: 500ms\n",
    );
    let body = &text[probes_start..];
    let targets = body.find("targets:").unwrap();
    out.push_str(&body[..targets]);
    out.push_str("targets:\n  - url: memory://shop/checkout\n    revisions: [{ id: v1, health: good }, v2]\n");
    out
}

fn registry() -> Registry {
    rollback_web::register(Registry::with_memory())
}

fn parse(text: &str, vars: &[(&str, &str)]) -> Result<WatchFile, WatchFileError> {
    let env: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    WatchFile::parse(
        text,
        PolicyFormat::Yaml,
        "rollback.yaml",
        Path::new("."),
        &registry(),
        &|name| env.get(name).cloned(),
    )
}

async fn run(file: &WatchFile) -> (Phase, Vec<String>) {
    let mut specs = file.resolve(&registry()).await.unwrap();
    let audit = MemoryAuditSink::new();
    let engine = Engine::builder().audit(Arc::new(audit.clone())).build();
    let end = engine
        .watch(specs.remove(0))
        .await
        .unwrap()
        .finished()
        .await;
    (end, audit.records().iter().map(|r| r.describe()).collect())
}

#[tokio::test]
async fn the_datadog_example_rolls_a_bad_revision_back() {
    let apis = support::start().await;
    let text = runnable(&example("datadog.yaml"));
    let vars = [
        ("DATADOG_API_URL", apis.url.as_str()),
        ("DD_API_KEY", "dd-api-key"),
        ("DD_APP_KEY", "dd-app-key"),
    ];
    let file = parse(&text, &vars).unwrap();
    let (end, lines) = run(&file).await;
    assert!(
        matches!(end, Phase::RolledBack { .. }),
        "{end:?}\n{lines:#?}"
    );
    let decision = lines
        .iter()
        .find(|l| l.starts_with("decision rollback"))
        .unwrap();
    assert!(
        decision.contains("error_rate") || decision.contains("latency_p99"),
        "{decision}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("latency_vs_baseline on v2")
                && l.contains("no significant difference")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("error_rate on v1") && l.contains("pass")),
        "{lines:#?}"
    );
    // Every request carried the keys and asked about the revision judged.
    let seen = apis.seen();
    assert!(seen.iter().all(|s| s.headers["dd-api-key"] == "dd-api-key"));
    assert!(seen.iter().any(|s| {
        s.query
            .get("query")
            .is_some_and(|q| q.contains("version:v2"))
    }));
    assert!(seen.iter().any(|s| {
        s.query
            .get("query")
            .is_some_and(|q| q.contains("version:v1"))
    }));
    // The scalar query's window went as numbers of milliseconds.
    assert!(seen.iter().any(|s| {
        s.body
            .as_ref()
            .and_then(|b| b.pointer("/data/attributes/from"))
            .is_some_and(serde_json::Value::is_i64)
    }));
}

#[tokio::test]
async fn the_cloud_monitoring_example_rolls_a_bad_revision_back() {
    let apis = support::start().await;
    let text = runnable(&example("cloud-monitoring.yaml"));
    let vars = [
        ("MONITORING_API_URL", apis.url.as_str()),
        ("GCP_PROJECT", "shop-prod"),
        ("GCP_TOKEN", "gcp-token"),
    ];
    let file = parse(&text, &vars).unwrap();
    let (end, lines) = run(&file).await;
    assert!(
        matches!(end, Phase::RolledBack { .. }),
        "{end:?}\n{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("server_errors_per_second on v2 = 0.5")),
        "{lines:#?}"
    );
    assert_eq!(apis.last().path, "/v3/projects/shop-prod/timeSeries");
}

#[test]
fn the_examples_check_and_bad_options_are_named_by_field() {
    let vars = [
        ("DATADOG_API_URL", "https://api.datadoghq.com"),
        ("DD_API_KEY", "dd-api-key-1234"),
        ("DD_APP_KEY", "dd-app-key-5678"),
        ("MONITORING_API_URL", "https://monitoring.googleapis.com"),
        ("GCP_PROJECT", "shop-prod"),
        ("GCP_TOKEN", "ya29.token-9012"),
    ];
    for name in ["datadog.yaml", "cloud-monitoring.yaml"] {
        parse(&runnable(&example(name)), &vars).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let text = runnable(&example("datadog.yaml"));
    let problems = |text: &str| {
        parse(text, &vars)
            .unwrap_err()
            .problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let p = problems(&text.replace(
        "json_path: \"$.series[0].pointlist[-1][1]\"",
        "jsonpath: \"$\"",
    ));
    assert!(
        p.contains("probes[0].web") && p.contains("unknown field `jsonpath`"),
        "{p}"
    );
    let p = problems(&text.replace("$.series[0].pointlist[-1][1]", "$.series[0"));
    assert!(
        p.contains("probes[0].web") && p.contains("`json_path`") && p.contains("RFC 9535"),
        "{p}"
    );
    let p = problems(&text.replace("timeout: 10s", "timeout: soon"));
    assert!(p.contains("`timeout`"), "{p}");
    let p = problems(&text.replace("      method: POST\n", ""));
    assert!(
        p.contains("probes[1].web") && p.contains("GET request has no body"),
        "{p}"
    );
    let e = parse(&text, &vars[..2]).unwrap_err().to_string();
    assert!(e.contains("DD_APP_KEY is not set"), "{e}");
    assert!(!e.contains("dd-api-key-1234"));
}

#[test]
fn the_datadog_example_replays_over_recorded_series() {
    let vars = [
        ("DATADOG_API_URL", "https://api.datadoghq.com"),
        ("DD_API_KEY", "k"),
        ("DD_APP_KEY", "a"),
    ];
    let file = parse(
        &example("datadog.yaml").replace(
            "k8s://shop/checkout",
            "memory://shop/checkout\n    revisions: [v1, v2]",
        ),
        &vars,
    )
    .unwrap();
    // Every 30 s: the error rate climbs past 1 % from the 6th minute; the
    // p99 stays low; the canary's latencies stay near the baseline's.
    let mut csv = String::from("timestamp,probe,value,baseline\n");
    let base = [101.0, 99.0, 104.0, 98.0, 102.0, 100.0, 103.0, 97.0];
    for i in 0..30i64 {
        let t = i * 30;
        let rate = if i < 12 { 0.002 } else { 0.03 };
        csv.push_str(&format!("{t},error_rate,{rate},\n{t},latency_p99,0.12,\n"));
        for b in base {
            csv.push_str(&format!("{t},latency_vs_baseline,{},{b}\n", b + 0.3));
        }
    }
    let series = Series::from_csv(csv.as_bytes()).unwrap();
    let report = replay::run(&file.policy, &series, &ReplayOptions::default()).unwrap();
    assert_eq!(
        report.rollback_at,
        Some(rollback_core::Timestamp::from_millis(13 * 30_000)),
        "{report:#?}"
    );
    // The round of the breach stops at error_rate, the first probe.
    assert_eq!(report.verdicts["latency_vs_baseline"], [13, 0, 0]);
    assert!(report.reason.unwrap().contains("error_rate"));
}
