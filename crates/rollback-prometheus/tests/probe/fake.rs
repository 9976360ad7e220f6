//! A fake Prometheus API on a free port: it answers every query with a
//! handler the test gives, and keeps what it was asked.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use rollback_core::{ProbeContext, RevisionId, TargetId, Timestamp};
use rollback_prometheus::{PrometheusClient, PrometheusProbe};
use serde_json::{Value, json};

/// A request the fake saw: endpoint, query parameters, Authorization header.
pub(crate) type Seen = (String, HashMap<String, String>, Option<String>);

type Handler = dyn Fn(&HashMap<String, String>) -> (StatusCode, String) + Send + Sync;

#[derive(Clone)]
struct Fake {
    handler: Arc<Handler>,
    seen: Arc<Mutex<Vec<Seen>>>,
    delay: Duration,
}

/// A fake Prometheus API answering every query with `handler`.
pub(crate) struct FakePrometheus {
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
    pub(crate) async fn start(
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
    pub(crate) async fn fixed(body: Value) -> Self {
        let body = body.to_string();
        Self::start(Duration::ZERO, move |_| (StatusCode::OK, body.clone())).await
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn client(&self) -> PrometheusClient {
        PrometheusClient::builder(self.url())
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap()
    }

    pub(crate) fn probe(&self, query: &str) -> PrometheusProbe {
        PrometheusProbe::builder("p", self.client())
            .query(query)
            .build()
            .unwrap()
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.fake.seen.lock().unwrap().clone()
    }
}

pub(crate) fn vector(series: &[(&str, &str)]) -> Value {
    let result: Vec<Value> = series
        .iter()
        .map(|(instance, v)| json!({"metric": {"instance": instance}, "value": [1795780800.5, v]}))
        .collect();
    json!({"status": "success", "data": {"resultType": "vector", "result": result}})
}

pub(crate) fn ctx() -> ProbeContext {
    ProbeContext::new(
        TargetId::new("k8s:shop/checkout"),
        RevisionId::new("rev-2"),
        Timestamp::from_millis(1_795_780_800_000),
    )
}
