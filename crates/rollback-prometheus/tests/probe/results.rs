//! What an answer becomes: values, no data, NaN, the errors of several
//! series and other result types, PromQL and HTTP errors, timeouts.

use std::time::Duration;

use axum::http::StatusCode;
use rollback_core::{ErrorKind, HealthProbe, Measurement};
use rollback_prometheus::{Aggregate, PrometheusClient, PrometheusProbe};
use serde_json::json;

use crate::fake::{FakePrometheus, ctx, vector};

#[tokio::test]
async fn one_series_and_scalars_are_values() {
    let fake = FakePrometheus::fixed(vector(&[("a", "0.25")])).await;
    assert_eq!(
        fake.probe("x").measure(&ctx()).await.unwrap(),
        Measurement::value(0.25)
    );

    let fake =
        FakePrometheus::fixed(json!({"status": "success", "data": {"resultType": "scalar", "result": [1795780800, "42"]}})).await;
    assert_eq!(
        fake.probe("scalar(x)").measure(&ctx()).await.unwrap(),
        Measurement::value(42.0)
    );
}

#[tokio::test]
async fn an_empty_result_is_no_data() {
    let fake = FakePrometheus::fixed(vector(&[])).await;
    assert_eq!(
        fake.probe("x").measure(&ctx()).await.unwrap(),
        Measurement::NO_DATA
    );
}

#[tokio::test]
async fn nan_and_infinities_are_returned_as_they_are() {
    for (text, check) in [
        ("NaN", f64::is_nan as fn(f64) -> bool),
        ("+Inf", |v: f64| v == f64::INFINITY),
        ("-Inf", |v: f64| v == f64::NEG_INFINITY),
    ] {
        let fake = FakePrometheus::fixed(vector(&[("a", text)])).await;
        let m = fake.probe("x").measure(&ctx()).await.unwrap();
        assert!(m.value.is_some_and(check), "{text}: {m:?}");
    }
}

#[tokio::test]
async fn several_series_are_an_error_naming_the_query_unless_aggregated() {
    let fake =
        FakePrometheus::fixed(vector(&[("a", "1"), ("b", "3"), ("c", "2"), ("d", "2")])).await;
    let e = fake
        .probe("rate(errors[1m])")
        .measure(&ctx())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let msg = e.message();
    assert!(
        msg.contains("\"rate(errors[1m])\"") && msg.contains("returned 4 series"),
        "{msg}"
    );
    assert!(
        msg.contains(r#"{instance="a"}"#) && msg.contains("and 1 more"),
        "{msg}"
    );
    assert!(msg.contains("aggregate"), "{msg}");
    assert!(
        msg.contains("probe \"p\" on target k8s:shop/checkout"),
        "{msg}"
    );

    for (agg, want) in [
        (Aggregate::Sum, 8.0),
        (Aggregate::Max, 3.0),
        (Aggregate::Min, 1.0),
        (Aggregate::Avg, 2.0),
    ] {
        let p = PrometheusProbe::builder("p", fake.client())
            .query("x")
            .aggregate(agg)
            .build()
            .unwrap();
        assert_eq!(
            p.measure(&ctx()).await.unwrap(),
            Measurement::value(want),
            "{agg}"
        );
    }
}

#[tokio::test]
async fn range_vectors_and_strings_are_refused_with_advice() {
    let fake = FakePrometheus::fixed(
        json!({"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {}, "values": [[1, "1"], [2, "2"]]}
        ]}}),
    )
    .await;
    let e = fake.probe("x[5m]").measure(&ctx()).await.unwrap_err();
    assert!(
        e.message().contains("range vector") && e.message().contains("rate("),
        "{}",
        e.message()
    );

    let fake = FakePrometheus::fixed(
        json!({"status": "success", "data": {"resultType": "string", "result": [1, "hello"]}}),
    )
    .await;
    let e = fake.probe("\"hello\"").measure(&ctx()).await.unwrap_err();
    assert!(e.message().contains("string"), "{}", e.message());
}

#[tokio::test]
async fn promql_errors_carry_prometheus_own_message() {
    let body = json!({"status": "error", "errorType": "bad_data", "error": "1:6: parse error: unexpected end of input"}).to_string();
    let fake = FakePrometheus::start(Duration::ZERO, move |_| {
        (StatusCode::BAD_REQUEST, body.clone())
    })
    .await;
    let e = fake.probe("rate(").measure(&ctx()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(
        e.message()
            .contains("HTTP 400: 1:6: parse error: unexpected end of input"),
        "{}",
        e.message()
    );
    assert!(e.message().contains("\"rate(\""), "{}", e.message());

    let body = json!({"status": "error", "errorType": "timeout", "error": "query timed out in expression evaluation"}).to_string();
    let fake = FakePrometheus::start(Duration::ZERO, move |_| {
        (StatusCode::SERVICE_UNAVAILABLE, body.clone())
    })
    .await;
    let e = fake.probe("x").measure(&ctx()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient);
    assert!(
        e.message()
            .contains("query timed out in expression evaluation"),
        "{}",
        e.message()
    );
}

#[tokio::test]
async fn http_errors_and_garbage_are_probe_errors() {
    let fake = FakePrometheus::start(Duration::ZERO, |_| {
        (StatusCode::BAD_GATEWAY, "<html>bad gateway</html>".into())
    })
    .await;
    let e = fake.probe("x").measure(&ctx()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient);
    assert!(
        e.message().contains("HTTP 502: <html>bad gateway</html>"),
        "{}",
        e.message()
    );

    let fake = FakePrometheus::start(Duration::ZERO, |_| (StatusCode::OK, "not json".into())).await;
    let e = fake.probe("x").measure(&ctx()).await.unwrap_err();
    assert!(
        e.message().contains("not a Prometheus API response"),
        "{}",
        e.message()
    );

    let fake = FakePrometheus::fixed(
        json!({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {}, "value": [1, "twelve"]}
        ]}}),
    )
    .await;
    let e = fake.probe("x").measure(&ctx()).await.unwrap_err();
    assert!(
        e.message().contains("\"twelve\" is not a number"),
        "{}",
        e.message()
    );
}

#[tokio::test]
async fn timeouts_and_refused_connections_are_transient() {
    let fake = FakePrometheus::start(Duration::from_secs(5), |_| {
        (StatusCode::OK, vector(&[("a", "1")]).to_string())
    })
    .await;
    let client = PrometheusClient::builder(fake.url())
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let probe = PrometheusProbe::builder("p", client)
        .query("x")
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let e = probe.measure(&ctx()).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(e.kind(), ErrorKind::Transient);
    assert!(
        e.message().contains("timed out after 200ms"),
        "{}",
        e.message()
    );

    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let client = PrometheusClient::builder(format!("http://127.0.0.1:{port}"))
        .build()
        .unwrap();
    let e = PrometheusProbe::builder("p", client)
        .query("x")
        .build()
        .unwrap()
        .measure(&ctx())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient);
    assert!(
        e.message().contains("could not reach Prometheus"),
        "{}",
        e.message()
    );
}
