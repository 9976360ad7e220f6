//! The recommender scenario against a real MLflow model registry.
//!
//! Model version 7 replaces version 6 behind `models:/recommender@champion`
//! and lowers click-through rate; the engine moves the alias back to version
//! 6, tags version 7 bad, records the move in version tags, and serving
//! reloads the model the alias now names.
//!
//! ```text
//! cargo run --example recommender_mlflow --features mlflow
//! ```
//!
//! With `MLFLOW_TRACKING_URI` set it uses that server (and MLflow's
//! credential variables) and a fresh model name; otherwise it starts a
//! throwaway server from the workspace's Python venv (`./scripts/test
//! --setup-only` installs it, or set `ROLLBACK_VENV`).

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rollback_core::audit::MemoryAuditSink;
use rollback_core::memory::{ScriptStep, ScriptedProbe};
use rollback_core::{
    Engine, Mark, Phase, Policy, Result, RevisionHealth, Target, Timestamp, WatchSpec,
};
use rollback_mlflow::local_server::LocalMlflowServer;
use rollback_mlflow::{AliasMove, MlflowClient, MlflowConfig, MlflowTarget, PostRollbackHook, Tag};

/// Stands in for a model server: on reload it resolves the alias, as serving
/// does at load time. In production, use `rollback_mlflow::HttpHook` to call
/// the serving system's reload endpoint.
#[derive(Debug)]
struct Serving {
    client: MlflowClient,
    model_uri: String,
    loaded: Mutex<String>,
}

#[rollback_mlflow::async_trait]
impl PostRollbackHook for Serving {
    fn name(&self) -> &str {
        "recommender serving"
    }

    async fn after_rollback(&self, event: &AliasMove) -> Result<()> {
        let alias = event.alias.as_deref().unwrap_or("champion");
        let v = self
            .client
            .get_model_version_by_alias(&event.model, alias)
            .await?;
        let source = v.source.unwrap_or_default();
        println!(
            "serving: reloaded {} -> version {} ({source})",
            self.model_uri, v.version
        );
        *self.loaded.lock().unwrap_or_else(|e| e.into_inner()) = v.version;
        Ok(())
    }
}

async fn run() -> Result<bool> {
    // A server: the one MLFLOW_TRACKING_URI names, or a local throwaway one.
    let (client, name, _server) = match std::env::var(rollback_mlflow::ENV_TRACKING_URI) {
        Ok(_) => {
            let millis = Timestamp::from(std::time::SystemTime::now()).as_millis();
            (
                MlflowClient::from_env()?,
                format!("recommender-demo-{millis}"),
                None,
            )
        }
        Err(_) => {
            println!("starting a local MLflow tracking server…");
            let server = LocalMlflowServer::start()
                .await
                .map_err(|e| rollback_core::Error::permanent(e.to_string()))?;
            println!(
                "MLflow at {} (ready after {:.1?})",
                server.url(),
                server.startup_time()
            );
            (
                MlflowClient::new(server.url())?,
                "recommender".to_owned(),
                Some(server),
            )
        }
    };

    // The registry: versions 1 to 7; 6 served for a day and is known good;
    // 7 has just been made champion.
    client.create_registered_model(&name).await?;
    for n in 1..=7 {
        let tags = [Tag {
            key: "features".into(),
            value: format!("v{n}"),
        }];
        client
            .create_model_version(
                &name,
                &format!("s3://models/recommender/{n}"),
                Some(&format!("run-{n}")),
                &tags,
            )
            .await?;
    }
    let config = MlflowConfig::alias(&name, "champion");
    let target = MlflowTarget::connect(&config, Some(client.clone())).await?;
    client.set_alias(&name, "champion", "6").await?;
    let yesterday =
        Timestamp::from(std::time::SystemTime::now()).minus(Duration::from_secs(86_400));
    target
        .mark(&Mark::new(
            "6".into(),
            RevisionHealth::Good,
            "served 24h within its CTR SLO",
            yesterday,
        ))
        .await?;
    client.set_alias(&name, "champion", "7").await?;
    println!(
        "{}: champion is version 7, replacing version 6",
        target.id()
    );

    // Click-through rate, measured against the previous model's (baseline).
    let ctr = ScriptedProbe::new("click_through_rate")
        .script_for(
            "7",
            [
                ScriptStep::WithBaseline(0.041, 0.042),
                ScriptStep::WithBaseline(0.037, 0.042),
                ScriptStep::WithBaseline(0.035, 0.042),
            ],
        )
        .script_for("6", [ScriptStep::WithBaseline(0.042, 0.042)]);
    let policy = Policy::from_yaml(
        "interval: 200ms\nbake_time: 1h\nfailure_limit: 1\nverify: 600ms\nprobes: [{name: click_through_rate, success: '>= -5%'}]",
    )
    .map_err(|e| rollback_core::Error::invalid(e.to_string()))?;

    let serving = Arc::new(Serving {
        client: client.clone(),
        model_uri: format!("models:/{name}@champion"),
        loaded: Mutex::new("7".into()),
    });
    let rollbacker = target.rollbacker().hook(serving.clone());
    let audit = MemoryAuditSink::new();
    let engine = Engine::builder().audit(Arc::new(audit.clone())).build();
    let mut handle = engine
        .watch(WatchSpec::new(
            policy,
            Arc::new(target.clone()),
            Arc::new(rollbacker),
            vec![Arc::new(ctr)],
        ))
        .await?;
    let end = handle.finished().await;

    println!("\naudit log:");
    for record in audit.records() {
        println!("  {}", serde_json::to_string(&record).unwrap_or_default());
    }
    println!("\nalias history kept in version tags:");
    for m in target.alias_moves().await? {
        println!(
            "  {} {}: version {} -> {} by {} ({})",
            m.at,
            m.alias.as_deref().unwrap_or("?"),
            m.from.as_deref().unwrap_or("none"),
            m.to,
            m.actor,
            m.reason
        );
    }
    let now = client.get_model_version_by_alias(&name, "champion").await?;
    let loaded = serving
        .loaded
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    println!(
        "\nend: {end:?}\nchampion -> version {}, serving loaded version {loaded}",
        now.version
    );
    Ok(matches!(end, Phase::RolledBack { .. }) && now.version == "6" && loaded == "6")
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
            eprintln!("the alias did not move back to version 6");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {}", e.full_message());
            ExitCode::FAILURE
        }
    }
}
