//! The kill test: an engine in a child process (this test binary run again)
//! watches a model alias on the real MLflow server with a `FileStateStore`
//! and a `JsonLinesAuditSink`, and is SIGKILLed at points spread over a
//! rollback: before the breach, during the rollback call, during
//! convergence, during verification, after the end. Restarted on the same
//! state directory and audit log, it must finish: one rollback, the
//! backend's records complete and written once, the audit log readable with
//! an intact chain, the decision present.
//!
//! `ROLLBACK_KILL_TRIALS` sets the number of kills (default 20).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rollback_core::audit::{ActionKind, AuditEntry, JsonLinesAuditSink, verify};
use rollback_core::machine::DecisionKind;
use rollback_core::memory::ScriptedProbe;
use rollback_core::steps::Steps;
use rollback_core::store::FileStateStore;
use rollback_core::{Convergence, Engine, Phase, Policy, RevisionId, WatchSpec};
use rollback_mlflow::{
    AliasMove, MlflowClient, MlflowConfig, MlflowTarget, PostRollbackHook, Tag, tags,
};

use crate::support::{client, seed, server_url, unique};

/// The child's configuration, one variable each.
const CHILD: &str = "ROLLBACK_KILL_CHILD";
const ALIAS: &str = "champion";

const POLICY: &str = r#"
interval: 250ms
bake_time: 30s
failure_limit: 1
verify: 1s
rollback_timeout: 30s
retry: { max_attempts: 3, initial_backoff: 100ms, max_backoff: 200ms }
probes:
  - name: error_rate
    success: "< 0.01"
"#;

/// What the child needs: `TRACKING_URI MODEL STATE_DIR AUDIT_FILE`,
/// separated by newlines.
#[derive(Debug)]
struct ChildConfig {
    tracking_uri: String,
    model: String,
    state: PathBuf,
    audit: PathBuf,
}

fn child_config(value: Option<String>) -> Result<ChildConfig, String> {
    let value = value.ok_or_else(|| format!("{CHILD} is not set: this test runs only as the child of kill_the_engine_anywhere_in_a_rollback"))?;
    let parts: Vec<&str> = value.split('\n').collect();
    let [uri, model, state, audit] = parts[..] else {
        return Err(format!(
            "{CHILD} holds {} lines, not 4 (tracking URI, model, state directory, audit file)",
            parts.len()
        ));
    };
    Ok(ChildConfig {
        tracking_uri: uri.to_owned(),
        model: model.to_owned(),
        state: state.into(),
        audit: audit.into(),
    })
}

/// The engine the parent kills. Run on its own (no variable), it checks
/// only that it refuses to run without its configuration.
#[test]
fn engine_child() {
    let config = match child_config(std::env::var(CHILD).ok()) {
        Ok(c) => c,
        Err(e) => {
            assert!(e.contains(CHILD), "{e}");
            let e = child_config(Some("one line".into())).unwrap_err();
            assert!(e.contains("holds 1 lines"), "{e}");
            return;
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let end = rt.block_on(run_engine(config));
    println!("END {end:?}");
}

/// Serving that takes a while to load the restored version, so kills land
/// during convergence too.
#[derive(Debug)]
struct SlowServing;

#[rollback_mlflow::async_trait]
impl PostRollbackHook for SlowServing {
    fn name(&self) -> &str {
        "slow serving"
    }
    async fn after_rollback(&self, _: &AliasMove) -> rollback_core::Result<()> {
        Ok(())
    }
    async fn wait_ready(&self, _: &RevisionId, _: Duration) -> rollback_core::Result<Convergence> {
        tokio::time::sleep(Duration::from_millis(400)).await;
        Ok(Convergence::Converged)
    }
}

async fn run_engine(c: ChildConfig) -> Phase {
    let mut config = MlflowConfig::alias(&c.model, ALIAS);
    config.tracking_uri = Some(c.tracking_uri);
    let target = MlflowTarget::connect(&config, None).await.expect("connect");
    // Paced steps, so that kills land inside the rollback call too.
    let rollbacker = target
        .rollbacker()
        .hook(Arc::new(SlowServing))
        .steps(Steps::new().pace(Duration::from_millis(100)));
    let probe = ScriptedProbe::new("error_rate")
        .script_for("2", [0.05])
        .script_for("1", [0.001]);
    let engine = Engine::builder()
        .audit(Arc::new(
            JsonLinesAuditSink::open(&c.audit).await.expect("audit log"),
        ))
        .store(Arc::new(
            FileStateStore::new(&c.state).expect("state directory"),
        ))
        .max_jitter(0.0)
        .build();
    let spec = WatchSpec::new(
        Policy::from_yaml(POLICY).expect("policy"),
        Arc::new(target),
        Arc::new(rollbacker),
        vec![Arc::new(probe)],
    );
    engine.watch(spec).await.expect("watch").finished().await
}

fn spawn_child(url: &str, model: &str, dir: &Path) -> Child {
    let value = format!(
        "{url}\n{model}\n{}\n{}",
        dir.join("state").display(),
        dir.join("audit.jsonl").display()
    );
    Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            "kill::engine_child",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD, value)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the engine")
}

/// Run the child to its end; its final phase, from its output.
fn run_to_end(url: &str, model: &str, dir: &Path) -> String {
    let child = spawn_child(url, model, dir);
    let out = child.wait_with_output().expect("the engine's output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the engine failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| l.find("END ").map(|i| &l[i + 4..]))
        .unwrap_or_else(|| panic!("the engine printed no end:\n{stdout}"))
        .to_owned()
}

async fn seed_model(c: &MlflowClient) -> String {
    let model = unique("kill");
    seed(c, &model, 2, Some((ALIAS, 2))).await;
    c.set_model_version_tag(&model, "1", tags::HEALTH, "good")
        .await
        .expect("mark version 1 good");
    model
}

/// Where in the rollback the last record before the kill was.
fn phase_at_kill(dir: &Path) -> &'static str {
    let Ok(log) = JsonLinesAuditSink::read(dir.join("audit.jsonl")) else {
        return "before the first record";
    };
    let mut at = "before the breach";
    for r in &log.records {
        at = match &r.entry {
            AuditEntry::Decided {
                decision: DecisionKind::Rollback,
                ..
            } => "after the decision",
            AuditEntry::ActionStarted {
                action: ActionKind::Rollback,
                ..
            } => "during the rollback call",
            AuditEntry::ActionSucceeded {
                action: ActionKind::Rollback,
                ..
            } => "between the rollback call and convergence",
            AuditEntry::ActionStarted {
                action: ActionKind::WaitConverged,
                ..
            } => "during convergence",
            AuditEntry::Transition { to, .. } if to.as_str() == "verifying" => {
                "during verification"
            }
            AuditEntry::Decided {
                decision: DecisionKind::Complete,
                ..
            } => "after the end",
            _ => at,
        };
    }
    at
}

fn tag_values(tags: &[Tag], prefix: &str) -> Vec<String> {
    tags.iter()
        .filter(|t| t.key.starts_with(prefix))
        .map(|t| format!("{}={}", t.key, t.value))
        .collect()
}

/// The end state every trial must reach.
async fn assert_complete(c: &MlflowClient, model: &str, dir: &Path, trial: &str) {
    let at = c
        .get_model_version_by_alias(model, ALIAS)
        .await
        .expect("read the alias");
    assert_eq!(
        at.version, "1",
        "{trial}: the alias points at version {}",
        at.version
    );
    let v1 = c.get_model_version(model, "1").await.expect("version 1");
    let v2 = c.get_model_version(model, "2").await.expect("version 2");
    let moves_on = |v: &rollback_mlflow::ModelVersion| tag_values(&v.tags, tags::MOVE_PREFIX);
    assert_eq!(
        moves_on(&v1).len(),
        1,
        "{trial}: move records on version 1: {:?}",
        moves_on(&v1)
    );
    assert_eq!(
        moves_on(&v2),
        moves_on(&v1),
        "{trial}: the same record on both versions"
    );
    assert!(
        v2.tags
            .iter()
            .any(|t| t.key == tags::HEALTH && t.value == "bad"),
        "{trial}: version 2 is not tagged bad: {:?}",
        v2.tags
    );
    let log = JsonLinesAuditSink::read(dir.join("audit.jsonl"))
        .unwrap_or_else(|e| panic!("{trial}: the audit log does not read: {e}"));
    let report = verify(dir.join("audit.jsonl")).expect("verify");
    assert!(
        report.is_intact(),
        "{trial}: the chain breaks at {:?}",
        report.broken
    );
    let decisions = log
        .records
        .iter()
        .filter(|r| {
            matches!(
                &r.entry,
                AuditEntry::Decided {
                    decision: DecisionKind::Rollback,
                    ..
                }
            )
        })
        .count();
    assert_eq!(decisions, 1, "{trial}: {decisions} rollback decisions");
    let moved = log
        .records
        .iter()
        .filter(|r| {
            matches!(&r.entry, AuditEntry::ActionSucceeded { action: ActionKind::Rollback, detail } if detail.starts_with("moved"))
        })
        .count();
    assert!(moved <= 1, "{trial}: {moved} rollbacks moved the alias");
    let hooks = |v: &rollback_mlflow::ModelVersion| {
        moves_on(v).iter().all(|m| m.contains("\"hooks\":\"done\""))
    };
    assert!(
        hooks(&v1) && hooks(&v2),
        "{trial}: serving reload not recorded done: {:?}",
        moves_on(&v1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_the_engine_anywhere_in_a_rollback() {
    let url = server_url().await.to_owned();
    let c = client().await;
    let trials: usize = std::env::var("ROLLBACK_KILL_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);

    // The reference: one run without a kill, timed.
    let dir = tempfile::tempdir().unwrap();
    let model = seed_model(&c).await;
    let start = Instant::now();
    let end = run_to_end(&url, &model, dir.path());
    let span = start.elapsed();
    assert!(
        end.starts_with("RolledBack"),
        "the reference run ended {end}"
    );
    assert_complete(&c, &model, dir.path(), "reference").await;

    let mut rows = Vec::new();
    for i in 0..trials {
        // Spread over the run and a little past its end.
        let after = span.mul_f64(1.1 * (i as f64 + 0.5) / trials as f64);
        let dir = tempfile::tempdir().unwrap();
        let model = seed_model(&c).await;
        let mut child = spawn_child(&url, &model, dir.path());
        tokio::time::sleep(after).await;
        let exited = child.try_wait().expect("poll the engine").is_some();
        child.kill().expect("SIGKILL the engine");
        child.wait().expect("reap the engine");
        let phase = if exited {
            "after the end (it had exited)"
        } else {
            phase_at_kill(dir.path())
        };
        let torn = JsonLinesAuditSink::read(dir.path().join("audit.jsonl"))
            .map(|l| l.torn_lines.len())
            .unwrap_or(0);
        let end = run_to_end(&url, &model, dir.path());
        let trial = format!("trial {i} (killed at {after:.2?}, {phase})");
        assert!(
            end.starts_with("RolledBack"),
            "{trial}: the restarted engine ended {end}"
        );
        assert_complete(&c, &model, dir.path(), &trial).await;
        rows.push(format!(
            "{i:>3}  {:>5} ms  {phase:<42} torn lines {torn}  -> {}",
            after.as_millis(),
            end.split_whitespace().next().unwrap_or_default()
        ));
    }
    eprintln!(
        "kill test: reference run {span:.2?}; {trials} kills, each restarted and checked:\n{}",
        rows.join("\n")
    );
}
