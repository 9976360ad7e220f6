//! The e-commerce scenario against a real cluster: watch the `checkout`
//! Deployment after a release, judge it against its SLOs with Prometheus
//! (5xx ratio and p99 latency of the pods of the revision being judged) and
//! the Deployment's own signals, roll it back to the last known good revision
//! on a breach, and verify.
//!
//! ```text
//! KUBECONFIG=~/.kube/config cargo run -p rollback-k8s --example ecommerce_k8s -- \
//!     --namespace shop --deployment checkout --prometheus http://localhost:9090 [--policy policy.yaml] [--dry-run]
//! ```
//!
//! The Prometheus queries assume the usual `kubernetes_sd` relabeling, which
//! puts the pod's `pod-template-hash` label on its series as
//! `pod_template_hash`; `{{revision}}` is replaced by the revision judged
//! (the pod-template hash). Adapt the metric names to your service.

use std::sync::Arc;
use std::time::Duration;

use rollback_core::audit::TextAuditSink;
use rollback_core::{Engine, HealthProbe, Policy, Target, WatchSpec};
use rollback_k8s::{K8sConfig, K8sDeployment, KubernetesProbe};
use rollback_prometheus::{PrometheusClient, PrometheusProbe};

const POLICY: &str = r#"
interval: 30s
initial_delay: 1m
bake_time: 15m
consecutive_failure_limit: 2
verify: 3m
rollback_to: last_known_good
probes:
  - { name: http_5xx_ratio, success: "< 0.01", failure: ">= 0.01" }
  - { name: p99_latency_ms, success: "<= 300", failure: "> 300" }
  - { name: k8s_problems, success: "== 0", failure: "> 0" }
"#;

struct Args {
    namespace: String,
    deployment: String,
    prometheus: String,
    policy: Option<String>,
    dry_run: bool,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        namespace: "shop".into(),
        deployment: "checkout".into(),
        prometheus: "http://localhost:9090".into(),
        policy: None,
        dry_run: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--namespace" => a.namespace = value()?,
            "--deployment" => a.deployment = value()?,
            "--prometheus" => a.prometheus = value()?,
            "--policy" => a.policy = Some(value()?),
            "--dry-run" => a.dry_run = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = args()?;
    let text = match &args.policy {
        Some(path) => std::fs::read_to_string(path)?,
        None => POLICY.to_owned(),
    };
    let mut policy = Policy::from_yaml(&text)?;
    policy.dry_run |= args.dry_run;

    let config =
        K8sConfig::new(&args.namespace, &args.deployment).poll_interval(Duration::from_secs(5));
    let checkout = K8sDeployment::connect(&config, None).await?;
    let current = checkout.current().await?;
    println!(
        "watching {} at {} ({})",
        checkout.id(),
        current.label(),
        current.id()
    );

    let prometheus = PrometheusClient::builder(&args.prometheus).build()?;
    let ns = &args.namespace;
    let selector = format!(r#"namespace="{ns}",pod_template_hash="{{{{revision}}}}""#);
    let errors = PrometheusProbe::builder("http_5xx_ratio", prometheus.clone())
        .query(format!(
            r#"sum(rate(http_requests_total{{{selector},code=~"5.."}}[2m])) / sum(rate(http_requests_total{{{selector}}}[2m]))"#
        ))
        .build()?;
    let latency = PrometheusProbe::builder("p99_latency_ms", prometheus)
        .query(format!(
            r#"1000 * histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{{{selector}}}[2m])))"#
        ))
        .build()?;
    let problems = KubernetesProbe::new("k8s_problems", checkout.clone()).max_restarts(2);
    let probes: Vec<Arc<dyn HealthProbe>> =
        vec![Arc::new(errors), Arc::new(latency), Arc::new(problems)];

    let engine = Engine::builder()
        .audit(Arc::new(TextAuditSink::new(std::io::stdout())))
        .build();
    let rollbacker = Arc::new(checkout.rollbacker());
    let spec = WatchSpec::new(policy, Arc::new(checkout), rollbacker, probes);
    let mut handle = engine.watch(spec).await?;
    let end = handle.finished().await;
    println!("finished: {end:?}");
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
