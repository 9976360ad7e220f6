//! From an Alertmanager webhook arriving to `Rollbacker::rollback` being
//! called, through the receiver and rollback-core's engine, over loopback HTTP.
//!
//! Prints p50/p99/max over 1000 deliveries, then runs the same path under
//! criterion. Each delivery is a new alert for a new watch (a watch ends with
//! its rollback), so every sample is a first, non-duplicate trigger.
#![allow(missing_docs)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use criterion::{Criterion, criterion_group, criterion_main};
use rollback_core::memory::{InMemoryRollbacker, InMemoryTarget};
use rollback_core::{
    Engine, HealthProbe, Measurement, Policy, ProbeContext, RevisionHealth, RevisionRecord,
    RollbackOutcome, RollbackRequest, Rollbacker, TargetId, TriggerSink, WatchSpec,
};
use rollback_prometheus::{AlertmanagerReceiver, ReceiverServer};
use support::{TestAlert, webhook_payload};
use tokio::sync::mpsc;

const TOKEN: &str = "bench-token";
const POLICY: &str = "interval: 1h\ninitial_delay: 1h\nbake_time: 2h\nverify: 0s\nprobes:\n  - name: ok\n    success: '< 1'\n";

#[derive(Debug)]
struct Quiet;

#[async_trait]
impl HealthProbe for Quiet {
    fn name(&self) -> &str {
        "ok"
    }
    async fn measure(&self, _: &ProbeContext) -> rollback_core::Result<Measurement> {
        Ok(Measurement::value(0.0))
    }
}

/// Tells the bench the instant `rollback` was called.
#[derive(Debug)]
struct Signalling {
    inner: InMemoryRollbacker,
    called: mpsc::UnboundedSender<Instant>,
}

#[async_trait]
impl Rollbacker for Signalling {
    fn target(&self) -> &TargetId {
        self.inner.target()
    }

    async fn rollback(&self, request: &RollbackRequest) -> rollback_core::Result<RollbackOutcome> {
        let _ = self.called.send(Instant::now());
        self.inner.rollback(request).await
    }
}

struct Bench {
    engine: Engine,
    _server: ReceiverServer,
    url: String,
    http: reqwest::Client,
    policy: Arc<Policy>,
    next: u64,
}

impl Bench {
    async fn new() -> Self {
        let engine = Engine::builder().max_jitter(0.0).build();
        let receiver =
            AlertmanagerReceiver::builder(Arc::new(engine.clone()) as Arc<dyn TriggerSink>)
                .bearer_token(TOKEN)
                .route(&["severity=\"page\""], "k8s:{namespace}/{deployment}")
                .dedup_capacity(100_000)
                .build()
                .expect("receiver");
        let server = receiver
            .serve("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("serve");
        let url = server.url();
        Bench {
            engine,
            _server: server,
            url,
            http: reqwest::Client::new(),
            policy: Arc::new(Policy::from_yaml(POLICY).expect("policy")),
            next: 0,
        }
    }

    /// One delivery: returns the time from sending the webhook to `rollback` being called.
    async fn once(&mut self) -> Duration {
        self.next += 1;
        let deployment = format!("checkout-{}", self.next);
        let target = InMemoryTarget::new(
            format!("k8s:shop/{deployment}"),
            [RevisionRecord::new("v1"), RevisionRecord::new("v2")],
        )
        .expect("target");
        target
            .set_health(&"v1".into(), RevisionHealth::Good)
            .expect("health");
        let (tx, mut rx) = mpsc::unbounded_channel();
        let rollbacker = Signalling {
            inner: InMemoryRollbacker::new(&target),
            called: tx,
        };
        let probes: Vec<Arc<dyn HealthProbe>> = vec![Arc::new(Quiet)];
        self.engine
            .watch(WatchSpec::new(
                self.policy.clone(),
                Arc::new(target),
                Arc::new(rollbacker),
                probes,
            ))
            .await
            .expect("watch");
        let fingerprint = format!("{:016x}", self.next);
        let labels = [
            ("alertname", "HighErrorRate"),
            ("severity", "page"),
            ("namespace", "shop"),
            ("deployment", deployment.as_str()),
        ];
        let body = webhook_payload(&[TestAlert {
            status: "firing",
            fingerprint: &fingerprint,
            starts_at: "2026-11-27T12:00:00Z",
            labels: &labels,
        }])
        .to_string();
        let sent = Instant::now();
        let resp = self
            .http
            .post(&self.url)
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("post");
        assert!(resp.status().is_success(), "{}", resp.status());
        let called = rx.recv().await.expect("rollback called");
        called - sent
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn webhook_to_rollback(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut bench = rt.block_on(Bench::new());
    rt.block_on(async {
        for _ in 0..100 {
            bench.once().await;
        }
        let mut samples = Vec::new();
        for _ in 0..1000 {
            samples.push(bench.once().await);
        }
        samples.sort();
        eprintln!(
            "webhook -> Rollbacker::rollback over {} deliveries: p50 {:?}, p99 {:?}, max {:?}",
            samples.len(),
            percentile(&samples, 0.50),
            percentile(&samples, 0.99),
            samples[samples.len() - 1]
        );
    });
    let mut g = c.benchmark_group("alertmanager");
    g.sample_size(50);
    g.bench_function("webhook_to_rollback_call", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += bench.once().await;
                }
                total
            })
        })
    });
    g.finish();
}

criterion_group!(benches, webhook_to_rollback);
criterion_main!(benches);
