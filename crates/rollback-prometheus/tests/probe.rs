//! The probe and client against a local fake Prometheus API: result shapes,
//! error mapping, auth, timeouts, range queries.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use rollback_core::replay::Sample;
use rollback_core::{
    ErrorKind, HealthProbe, Measurement, ProbeContext, RevisionId, TargetId, Timestamp,
};
use rollback_prometheus::{
    Aggregate, HistoryRange, PrometheusClient, PrometheusProbe, QueryResult, history_series,
};
use serde_json::{Value, json};

/// A request the fake saw: endpoint, query parameters, Authorization header.
type Seen = (String, HashMap<String, String>, Option<String>);

type Handler = dyn Fn(&HashMap<String, String>) -> (StatusCode, String) + Send + Sync;

#[derive(Clone)]
struct Fake {
    handler: Arc<Handler>,
    seen: Arc<Mutex<Vec<Seen>>>,
    delay: Duration,
}

/// A fake Prometheus API answering every query with `handler`.
struct FakePrometheus {
    addr: SocketAddr,
    fake: Fake,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakePrometheus {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn parse_query(raw: Option<String>) -> HashMap<String, String> {
    let url = reqwest::Url::parse(&format!("http://x/?{}", raw.unwrap_or_default())).unwrap();
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn answer(
    path: &'static str,
    State(f): State<Fake>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> (StatusCode, String) {
    let q = parse_query(raw);
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    f.seen
        .lock()
        .unwrap()
        .push((path.to_owned(), q.clone(), auth));
    if !f.delay.is_zero() {
        tokio::time::sleep(f.delay).await;
    }
    (f.handler)(&q)
}

impl FakePrometheus {
    async fn start(
        delay: Duration,
        handler: impl Fn(&HashMap<String, String>) -> (StatusCode, String) + Send + Sync + 'static,
    ) -> Self {
        let fake = Fake {
            handler: Arc::new(handler),
            seen: Arc::default(),
            delay,
        };
        let router = axum::Router::new()
            .route(
                "/api/v1/query",
                axum::routing::get(|s: State<Fake>, h: HeaderMap, q: RawQuery| {
                    answer("query", s, h, q)
                }),
            )
            .route(
                "/api/v1/query_range",
                axum::routing::get(|s: State<Fake>, h: HeaderMap, q: RawQuery| {
                    answer("query_range", s, h, q)
                }),
            )
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        FakePrometheus { addr, fake, task }
    }

    /// Answer every query with this JSON.
    async fn fixed(body: Value) -> Self {
        let body = body.to_string();
        Self::start(Duration::ZERO, move |_| (StatusCode::OK, body.clone())).await
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn client(&self) -> PrometheusClient {
        PrometheusClient::builder(self.url())
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap()
    }

    fn probe(&self, query: &str) -> PrometheusProbe {
        PrometheusProbe::builder("p", self.client())
            .query(query)
            .build()
            .unwrap()
    }

    fn seen(&self) -> Vec<Seen> {
        self.fake.seen.lock().unwrap().clone()
    }
}

fn vector(series: &[(&str, &str)]) -> Value {
    let result: Vec<Value> = series
        .iter()
        .map(|(instance, v)| json!({"metric": {"instance": instance}, "value": [1795780800.5, v]}))
        .collect();
    json!({"status": "success", "data": {"resultType": "vector", "result": result}})
}

fn ctx() -> ProbeContext {
    ProbeContext::new(
        TargetId::new("k8s:shop/checkout"),
        RevisionId::new("rev-2"),
        Timestamp::from_millis(1_795_780_800_000),
    )
}

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

/// A fake range endpoint: every series has value `t` (seconds) at every
/// step, except where `t` is a multiple of 3 steps (a gap).
fn range_answer(q: &HashMap<String, String>, series: &[&str]) -> (StatusCode, String) {
    let start: f64 = q["start"].parse().unwrap();
    let end: f64 = q["end"].parse().unwrap();
    let step: f64 = q["step"].parse().unwrap();
    let mut result = Vec::new();
    for s in series {
        let mut values = Vec::new();
        let mut t = start;
        while t <= end + 1e-9 {
            let i = ((t - 1000.0) / step).round() as i64;
            if i % 3 != 0 {
                values.push(json!([t, format!("{t}")]));
            }
            t += step;
        }
        result.push(json!({"metric": {"instance": s}, "values": values}));
    }
    (
        StatusCode::OK,
        json!({"status": "success", "data": {"resultType": "matrix", "result": result}})
            .to_string(),
    )
}

#[tokio::test]
async fn history_is_one_sample_per_step_with_gaps_as_no_data() {
    let fake = FakePrometheus::start(Duration::ZERO, |q| range_answer(q, &["a"])).await;
    let probe = fake.probe("x");
    let range = HistoryRange {
        start: Timestamp::from_millis(1_000_000),
        end: Timestamp::from_millis(1_005_000),
        step: Duration::from_secs(1),
    };
    let values = probe
        .history(&TargetId::new("t"), &RevisionId::new("r"), range)
        .await
        .unwrap();
    let want: Vec<Sample> = (0..=5)
        .map(|i| {
            let t = 1_000_000 + i * 1000;
            Sample {
                at: Timestamp::from_millis(t),
                value: if i % 3 == 0 {
                    None
                } else {
                    Some(t as f64 / 1000.0)
                },
                baseline: None,
            }
        })
        .collect();
    assert_eq!(values, want);

    // As a replay series, with the baseline beside each value.
    let fake = FakePrometheus::start(Duration::ZERO, |q| {
        if q["query"] == "base" {
            range_answer(q, &["b", "c"])
        } else {
            range_answer(q, &["a"])
        }
    })
    .await;
    let p1 = PrometheusProbe::builder("latency", fake.client())
        .query("x")
        .baseline_query("base")
        .aggregate(Aggregate::Max)
        .build()
        .unwrap();
    let p2 = PrometheusProbe::builder("errors", fake.client())
        .query("y")
        .build()
        .unwrap();
    let series = history_series(
        &[&p1, &p2],
        &TargetId::new("t"),
        &RevisionId::new("r"),
        range,
    )
    .await
    .unwrap();
    assert_eq!(
        series.probes().collect::<Vec<_>>(),
        vec!["errors", "latency"]
    );
    let latency = series.samples("latency");
    assert_eq!(latency.len(), 6);
    assert_eq!(
        latency[1],
        Sample {
            at: Timestamp::from_millis(1_001_000),
            value: Some(1001.0),
            baseline: Some(1001.0)
        }
    );
    assert_eq!(latency[3].value, None);
}

#[tokio::test]
async fn long_histories_are_split_into_several_range_queries() {
    let fake = FakePrometheus::start(Duration::ZERO, |q| range_answer(q, &["a"])).await;
    let probe = fake.probe("x");
    // 25001 steps of 1s: three queries of at most 10000 points.
    let range = HistoryRange {
        start: Timestamp::from_millis(1_000_000),
        end: Timestamp::from_millis(26_000_000),
        step: Duration::from_secs(1),
    };
    let values = probe
        .history(&TargetId::new("t"), &RevisionId::new("r"), range)
        .await
        .unwrap();
    assert_eq!(values.len(), 25_001);
    assert_eq!(values.iter().filter(|s| s.value.is_none()).count(), 8_334);
    assert_eq!(
        (values[1].at, values[1].value),
        (Timestamp::from_millis(1_001_000), Some(1001.0))
    );
    assert_eq!(
        (values[25_000].at, values[25_000].value),
        (Timestamp::from_millis(26_000_000), Some(26_000.0))
    );
    let calls: Vec<(String, String)> = fake
        .seen()
        .into_iter()
        .map(|(_, q, _)| (q["start"].clone(), q["end"].clone()))
        .collect();
    assert_eq!(
        calls,
        vec![
            ("1000.000".to_owned(), "10999.000".to_owned()),
            ("11000.000".to_owned(), "20999.000".to_owned()),
            ("21000.000".to_owned(), "26000.000".to_owned()),
        ]
    );
}

#[tokio::test]
async fn history_of_several_series_needs_an_aggregate() {
    let fake = FakePrometheus::start(Duration::ZERO, |q| range_answer(q, &["a", "b"])).await;
    let range = HistoryRange {
        start: Timestamp::from_millis(1_000_000),
        end: Timestamp::from_millis(1_002_000),
        step: Duration::from_secs(1),
    };
    let e = fake
        .probe("x")
        .history(&TargetId::new("t"), &RevisionId::new("r"), range)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("returned 2 series"), "{e}");
    let probe = PrometheusProbe::builder("p", fake.client())
        .query("x")
        .aggregate(Aggregate::Sum)
        .build()
        .unwrap();
    let values = probe
        .history(&TargetId::new("t"), &RevisionId::new("r"), range)
        .await
        .unwrap();
    assert_eq!(
        values.iter().map(|s| s.value).collect::<Vec<_>>(),
        vec![None, Some(2002.0), Some(2004.0)]
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
