//! The banking scenario against AWS CodeDeploy and Prometheus.
//!
//! The payments service runs in CodeDeploy deployment group `bank/payments`.
//! Release v8 (a GitHub commit) has just replaced v7. Its p99 latency,
//! measured by Prometheus, breaches the 100 ms SLO; the engine rolls the group
//! back to v7, the last revision whose deployment succeeded, with a CodeDeploy
//! deployment whose description names the deployment it reverts, waits for
//! it to succeed, and verifies that latency is back within the SLO.
//!
//! ```text
//! cargo run --example banking_codedeploy --features aws,prometheus
//! ```
//!
//! Everything runs locally: CodeDeploy is moto's server extended by
//! `rollback_aws::local` (from the Python venv of `./scripts/test
//! --setup-only`, or `ROLLBACK_VENV`), whose agent takes new deployments to
//! `Succeeded`; Prometheus is the `prometheus` binary (Debian package
//! `prometheus`) scraping a simulated payments service that exports the p99
//! latency of the revision it runs. Against real AWS, connect without a
//! client (`CodeDeployTarget::connect(&config, None)` takes credentials and
//! region from the AWS default chain) and point the probe at your
//! Prometheus; the rest is the same. `RUST_LOG=rollback_aws=info` shows the
//! rollback's plan and the deployment's progress as they happen.

use std::process::{Child, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rollback_aws::aws_sdk_codedeploy::types::{
    GitHubLocation, RevisionLocation, RevisionLocationType,
};
use rollback_aws::local::{LocalCodeDeploy, venv_or};
use rollback_aws::{CodeDeployConfig, CodeDeployTarget, attributes};
use rollback_core::audit::MemoryAuditSink;
use rollback_core::{Engine, Error, Phase, Policy, Result, Revision, Target, WatchSpec};
use rollback_prometheus::{PrometheusClient, PrometheusProbe, QueryResult};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const V7: &str = "7a1c9e2d4b6f8a0c1e3d5f7a9b1c3d5e7f9a1b3c";
const V8: &str = "8b2d0f3e5c7a9b1d3f5e7c9a1b3d5f7e9c1a3b5d";

const POLICY: &str = r#"
interval: 1s
bake_time: 2m
verify: 5s
rollback_timeout: 1m
inconclusive_limit: 3
probes:
  - { name: p99_latency_ms, success: "<= 100", failure: "> 100" }
"#;

const LATENCY_QUERY: &str = r#"max(payments_request_latency_p99_seconds{service="payments",revision="{{revision}}"}) * 1000"#;

fn github(commit: &str) -> RevisionLocation {
    RevisionLocation::builder()
        .revision_type(RevisionLocationType::GitHub)
        .git_hub_location(
            GitHubLocation::builder()
                .repository("bank/payments")
                .commit_id(commit)
                .build(),
        )
        .build()
}

/// The simulated payments service: it runs the revision of the group's newest
/// succeeded deployment and exports that revision's p99 latency.
#[derive(Debug, Default)]
struct Payments {
    running: Mutex<Option<(String, String)>>, // (revision id, commit)
}

impl Payments {
    fn metrics(&self) -> String {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut out = String::from(
            "# HELP payments_request_latency_p99_seconds p99 request latency of the running revision\n\
             # TYPE payments_request_latency_p99_seconds gauge\n",
        );
        if let Some((revision, commit)) = running {
            let p99 = if commit == V8 { 0.183 } else { 0.041 };
            out.push_str(&format!(
                "payments_request_latency_p99_seconds{{service=\"payments\",revision=\"{revision}\"}} {p99}\n"
            ));
        }
        out
    }

    /// Follow the deployment group: switch when a deployment has succeeded.
    async fn follow(self: Arc<Self>, target: CodeDeployTarget) {
        loop {
            if let Ok(history) = target.history().await
                && let Some(newest) = history.first()
            {
                let attrs = newest.revision.attributes();
                if attrs.get(attributes::LATEST_STATUS).map(String::as_str) == Some("Succeeded") {
                    let commit = attrs
                        .get(attributes::GITHUB_COMMIT)
                        .cloned()
                        .unwrap_or_default();
                    *self.running.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some((newest.revision.id().to_string(), commit));
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Serve `/metrics` on a free loopback port; returns the address.
    async fn serve(self: Arc<Self>) -> Result<String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| Error::permanent("binding the metrics port").with_source(e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::permanent("metrics address").with_source(e))?;
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let body = self.metrics();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = conn.read(&mut buf).await;
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(response.as_bytes()).await;
                });
            }
        });
        Ok(addr.to_string())
    }
}

/// A Prometheus scraping `scrape` every second; killed on drop.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(scrape: &str) -> Result<Self> {
        let dir = tempfile::tempdir()
            .map_err(|e| Error::permanent("temporary directory").with_source(e))?;
        let config = dir.path().join("prometheus.yml");
        let yaml = format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: payments\n    static_configs:\n      - targets: ['{scrape}']\n"
        );
        std::fs::write(&config, yaml)
            .map_err(|e| Error::permanent("writing prometheus.yml").with_source(e))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| Error::permanent("finding a free port").with_source(e))?
            .port();
        let child = std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                Error::not_found("starting `prometheus`: install the Debian package prometheus (./scripts/test does)")
                    .with_source(e)
            })?;
        Ok(Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        })
    }

    /// Wait until `promql` returns a series.
    async fn wait_for(&self, client: &PrometheusClient, promql: &str) -> Result<()> {
        for _ in 0..150 {
            if let Ok(QueryResult::Vector(v)) = client.query(promql, None).await
                && !v.is_empty()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(Error::transient(format!(
            "Prometheus at {} has no data for {promql} after 30s",
            self.url
        )))
    }
}

async fn run() -> Result<bool> {
    // CodeDeploy: bank/payments ran v7; v8 has just been deployed successfully.
    let venv = venv_or(concat!(env!("CARGO_MANIFEST_DIR"), "/.venv"));
    let codedeploy = Arc::new(LocalCodeDeploy::start(&venv, None)?);
    println!("CodeDeploy (moto) at {}", codedeploy.url());
    let client = codedeploy.client();
    let sdk = |e: &dyn std::fmt::Debug| Error::permanent(format!("seeding CodeDeploy: {e:?}"));
    client
        .create_application()
        .application_name("bank")
        .send()
        .await
        .map_err(|e| sdk(&e))?;
    client
        .create_deployment_group()
        .application_name("bank")
        .deployment_group_name("payments")
        .service_role_arn("arn:aws:iam::123456789012:role/CodeDeployServiceRole")
        .send()
        .await
        .map_err(|e| sdk(&e))?;
    for commit in [V7, V8] {
        let id = client
            .create_deployment()
            .application_name("bank")
            .deployment_group_name("payments")
            .revision(github(commit))
            .description(format!("release {}", &commit[..1]))
            .send()
            .await
            .map_err(|e| sdk(&e))?
            .deployment_id
            .unwrap_or_default();
        codedeploy.set_status(&id, "InProgress").await?;
        codedeploy.set_status(&id, "Succeeded").await?;
    }
    let _agent = codedeploy
        .agent("bank", "payments", &[], Duration::from_millis(300))
        .await?;
    let mut config = CodeDeployConfig::new("bank", "payments");
    config.poll_interval = Duration::from_millis(250);
    let target = CodeDeployTarget::connect(&config, Some(client)).await?;
    let current = target.current().await?;
    println!(
        "{}: running {} ({})",
        target.id(),
        current.label(),
        current.id()
    );

    // The payments service and Prometheus.
    let payments = Arc::new(Payments::default());
    tokio::spawn(payments.clone().follow(target.clone()));
    let scrape = payments.clone().serve().await?;
    let prometheus = Prometheus::start(&scrape)?;
    let prom = PrometheusClient::builder(&prometheus.url)
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| Error::permanent(e.to_string()))?;
    prometheus
        .wait_for(&prom, "payments_request_latency_p99_seconds")
        .await?;
    println!(
        "Prometheus at {} scraping the payments service at {scrape}",
        prometheus.url
    );

    // The SLO: p99 latency <= 100 ms.
    let probe = PrometheusProbe::builder("p99_latency_ms", prom)
        .query(LATENCY_QUERY)
        .build()
        .map_err(|e| Error::permanent(e.to_string()))?;
    let policy = Policy::from_yaml(POLICY).map_err(|e| Error::invalid(e.to_string()))?;
    let audit = MemoryAuditSink::new();
    let engine = Engine::builder().audit(Arc::new(audit.clone())).build();
    let rollbacker = target.rollbacker();
    let mut handle = engine
        .watch(WatchSpec::new(
            policy,
            Arc::new(target.clone()),
            Arc::new(rollbacker),
            vec![Arc::new(probe)],
        ))
        .await?;
    let end = handle.finished().await;

    println!("\naudit log:");
    for record in audit.records() {
        println!("  {record}");
    }
    println!("\nCodeDeploy history of {}:", target.id());
    for entry in target.history().await? {
        let a = entry.revision.attributes();
        println!(
            "  {:<24} {:?}: newest deployment {} is {}",
            entry.revision.label(),
            entry.health,
            a.get(attributes::LATEST_DEPLOYMENT)
                .map(String::as_str)
                .unwrap_or("?"),
            a.get(attributes::LATEST_STATUS)
                .map(String::as_str)
                .unwrap_or("?")
        );
    }
    let now = target.current().await?;
    println!("\nend: {end:?}\nrunning {}", now.label());
    let v7 = github(V7);
    let v7_id = rollback_aws::CodeDeployRevision::from_location(&v7).map(|r| r.id().to_string());
    Ok(matches!(end, Phase::RolledBack { .. }) && Some(now.id().to_string()) == v7_id)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("the deployment group was not rolled back to v7");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {}", e.full_message());
            ExitCode::FAILURE
        }
    }
}
