//! What the client sends (auth, placeholders, the evaluation time) and
//! exposes, and the client and probe from their configuration.

use std::time::Duration;

use axum::http::StatusCode;
use rollback_core::{ErrorKind, HealthProbe, Measurement, Timestamp};
use rollback_prometheus::{PrometheusClient, PrometheusProbe, QueryResult};
use serde_json::json;

use crate::fake::{FakePrometheus, ctx, vector};

#[tokio::test]
async fn bearer_and_basic_auth_are_sent() {
    let fake = FakePrometheus::fixed(vector(&[("a", "1")])).await;
    let bearer = PrometheusClient::builder(fake.url())
        .bearer_token("tok-1")
        .build()
        .unwrap();
    bearer.query("up", None).await.unwrap();
    let basic = PrometheusClient::builder(fake.url())
        .basic_auth("alice", "pw")
        .build()
        .unwrap();
    basic.query("up", None).await.unwrap();
    fake.client().query("up", None).await.unwrap();
    let auths: Vec<Option<String>> = fake.seen().into_iter().map(|(_, _, a)| a).collect();
    assert_eq!(
        auths,
        vec![
            Some("Bearer tok-1".to_owned()),
            Some("Basic YWxpY2U6cHc=".to_owned()),
            None
        ]
    );

    let fake = FakePrometheus::start(Duration::ZERO, |_| {
        (StatusCode::UNAUTHORIZED, "Unauthorized".into())
    })
    .await;
    let e = fake.probe("x").measure(&ctx()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized);
}

#[tokio::test]
async fn placeholders_baseline_and_evaluation_time() {
    let fake = FakePrometheus::start(Duration::ZERO, |q| {
        let v = if q["query"].contains("stable") {
            "0.5"
        } else {
            "0.75"
        };
        (StatusCode::OK, vector(&[("a", v)]).to_string())
    })
    .await;
    let probe = PrometheusProbe::builder("latency", fake.client())
        .query(r#"x{revision="{{revision}}",target="{{target}}"}"#)
        .baseline_query(r#"x{revision="stable"}"#)
        .at_context_time(true)
        .build()
        .unwrap();
    assert_eq!(
        probe.measure(&ctx()).await.unwrap(),
        Measurement::with_baseline(0.75, 0.5)
    );
    let mut queries: Vec<(String, Option<String>)> = fake
        .seen()
        .into_iter()
        .map(|(_, q, _)| (q["query"].clone(), q.get("time").cloned()))
        .collect();
    queries.sort();
    assert_eq!(
        queries,
        vec![
            (
                r#"x{revision="rev-2",target="k8s:shop/checkout"}"#.to_owned(),
                Some("1795780800.000".to_owned())
            ),
            (
                r#"x{revision="stable"}"#.to_owned(),
                Some("1795780800.000".to_owned())
            ),
        ]
    );

    // No data in the baseline is a missing baseline, not an error.
    let fake = FakePrometheus::start(Duration::ZERO, |q| {
        let body = if q["query"] == "base" {
            vector(&[])
        } else {
            vector(&[("a", "2")])
        };
        (StatusCode::OK, body.to_string())
    })
    .await;
    let probe = PrometheusProbe::builder("p", fake.client())
        .query("x")
        .baseline_query("base")
        .build()
        .unwrap();
    assert_eq!(
        probe.measure(&ctx()).await.unwrap(),
        Measurement::value(2.0)
    );
    assert!(
        fake.seen().iter().all(|(_, q, _)| !q.contains_key("time")),
        "the server's now by default"
    );
}

#[tokio::test]
async fn the_client_exposes_raw_results() {
    let fake = FakePrometheus::fixed(vector(&[("a", "1"), ("b", "2")])).await;
    match fake.client().query("x", None).await.unwrap() {
        QueryResult::Vector(v) => {
            assert_eq!(v.len(), 2);
            assert_eq!(v[1].labels["instance"], "b");
            assert_eq!(v[1].sample.at, Timestamp::from_millis(1_795_780_800_500));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn client_and_probe_build_from_config() {
    let fake = FakePrometheus::fixed(vector(&[("a", "1"), ("b", "2")])).await;
    let config: rollback_prometheus::PrometheusConfig = serde_json::from_value(json!({
        "url": fake.url(),
        "timeout": "3s",
        "auth": {"basic": {"username": "alice", "password": "pw"}}
    }))
    .unwrap();
    let client = PrometheusClient::from_config(&config).unwrap();
    assert_eq!(client.timeout(), Duration::from_secs(3));
    let probe_config: rollback_prometheus::ProbeConfig = serde_json::from_value(
        json!({"name": "errors", "query": "x", "aggregate": "max", "at_context_time": true}),
    )
    .unwrap();
    let probe = PrometheusProbe::from_config(client, &probe_config).unwrap();
    assert_eq!(probe.name(), "errors");
    assert_eq!(
        probe.measure(&ctx()).await.unwrap(),
        Measurement::value(2.0)
    );
    assert_eq!(fake.seen()[0].2.as_deref(), Some("Basic YWxpY2U6cHc="));
    assert_eq!(
        fake.seen()[0].1.get("time").map(String::as_str),
        Some("1795780800.000")
    );

    let bad: rollback_prometheus::PrometheusConfig =
        serde_json::from_value(json!({"url": "localhost:9090"})).unwrap();
    let e = PrometheusClient::from_config(&bad).unwrap_err().to_string();
    assert!(e.contains("`url`") && e.contains("localhost:9090"), "{e}");
}
