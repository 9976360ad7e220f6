//! A probe's overhead over the raw HTTP query: the same instant query against
//! a local server answering like Prometheus, once with plain reqwest (send,
//! read the body) and once through `PrometheusProbe::measure` (which also
//! parses and reduces the result).
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use rollback_core::{HealthProbe, ProbeContext, RevisionId, TargetId, Timestamp};
use rollback_prometheus::{PrometheusClient, PrometheusProbe};

const QUERY: &str =
    r#"sum(rate(http_requests_total{code=~"5.."}[1m])) / sum(rate(http_requests_total[1m]))"#;
const BODY: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1795780800.123,"0.0123"]}]}}"#;

fn probe_overhead(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let addr = rt.block_on(async {
        let router = axum::Router::new().route(
            "/api/v1/query",
            axum::routing::get(|| async {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    BODY,
                )
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        addr
    });
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    let client = PrometheusClient::builder(base.clone())
        .http_client(http.clone())
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let probe = PrometheusProbe::builder("error-rate", client)
        .query(QUERY)
        .build()
        .expect("probe");
    let ctx = ProbeContext::new(
        TargetId::new("k8s:shop/checkout"),
        RevisionId::new("v2"),
        Timestamp::EPOCH,
    );
    let url = format!("{base}/api/v1/query");

    let mut g = c.benchmark_group("probe");
    g.bench_function("raw_http_query", |b| {
        b.iter(|| {
            rt.block_on(async {
                let r = http
                    .get(&url)
                    .query(&[("query", QUERY)])
                    .send()
                    .await
                    .expect("send");
                black_box(r.bytes().await.expect("body"))
            })
        })
    });
    g.bench_function("prometheus_probe_measure", |b| {
        b.iter(|| rt.block_on(async { black_box(probe.measure(&ctx).await.expect("measure")) }))
    });
    g.finish();
}

criterion_group!(benches, probe_overhead);
criterion_main!(benches);
