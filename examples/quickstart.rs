//! The main job on in-memory backends, no server: `cargo run --example quickstart`.
//!
//! A canary, v2 of shop/checkout, is judged against its SLO (an error rate
//! under 1 %) every 30 s. Its error rate climbs past it; the engine rolls it
//! back to v1, the last known good revision, checks that v1 stays healthy
//! for 2 minutes, and records every step. On virtual time: it takes
//! milliseconds.

use std::sync::Arc;

use rollback::core::audit::TextAuditSink;
use rollback::core::memory::{InMemoryRollbacker, InMemoryTarget, ScriptedProbe};
use rollback::core::time::TokioClock;
use rollback::core::*;

const POLICY: &str = r#"
interval: 30s           # measure every 30 s
bake_time: 10m          # healthy this long: promoted to known good
failure_limit: 1        # one failed measurement is tolerated
verify: 2m              # after a rollback, v1 must pass this long
probes:
  - name: error_rate
    success: "< 0.01"
"#;

/// Watch the canary, writing the timeline to `out`; the end, and what the
/// target runs then.
pub(crate) async fn quickstart(
    out: impl std::io::Write + Send + 'static,
) -> Result<(Phase, RevisionId)> {
    // The target: v1, known good, then v2, the canary, running now.
    let target = InMemoryTarget::new(
        "shop/checkout",
        [RevisionRecord::new("v1"), RevisionRecord::new("v2")],
    )?;
    target.set_health(&"v1".into(), RevisionHealth::Good)?;
    let rollbacker = InMemoryRollbacker::new(&target);

    // The probe: what a PromQL query would measure, played back per revision.
    let probe = ScriptedProbe::new("error_rate")
        .script_for("v2", [0.002, 0.004, 0.007, 0.013, 0.021])
        .script_for("v1", [0.002, 0.001]);

    // The engine: a timeline of every step, on tokio's virtual time.
    let engine = Engine::builder()
        .audit(Arc::new(TextAuditSink::new(out).relative_time(true)))
        .clock(Arc::new(TokioClock::starting_at(Timestamp::from_millis(
            1_795_780_800_000,
        ))))
        .max_jitter(0.0)
        .build();

    // The watch: judge v2 until it is promoted, or rolled back and verified.
    let spec = WatchSpec::new(
        Policy::from_yaml(POLICY)?,
        Arc::new(target.clone()),
        Arc::new(rollbacker),
        vec![Arc::new(probe)],
    );
    let end = engine.watch(spec).await?.finished().await;
    Ok((end, target.current_id()))
}

#[allow(dead_code)] // tests/scenarios.rs includes this file and calls `quickstart`.
#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> std::process::ExitCode {
    println!("canary v2 of shop/checkout; SLO: error_rate < 0.01, measured every 30s\n");
    match quickstart(std::io::stdout()).await {
        Ok((Phase::RolledBack { .. }, now)) => {
            println!("\nresult: shop/checkout rolled back and now runs {now}");
            std::process::ExitCode::SUCCESS
        }
        Ok((end, now)) => {
            eprintln!("unexpected end: {end:?}, running {now}");
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {}", e.full_message());
            std::process::ExitCode::FAILURE
        }
    }
}
