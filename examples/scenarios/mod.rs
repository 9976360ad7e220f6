//! The scenarios of the SRE tutorial the project grew from, on in-memory
//! backends. Each example's `main` runs one; `tests/scenarios.rs` runs them
//! all and checks what they print and end in.
#![allow(dead_code)]

use std::io::Write;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rollback::core::audit::TextAuditSink;
use rollback::core::memory::{InMemoryRollbacker, InMemoryTarget, ScriptStep, ScriptedProbe};
use rollback::core::plan::{Plan, PlanOutcome, PlanTarget};
use rollback::core::time::TokioClock;
use rollback::core::*;

/// What a scenario ended in, per target.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// (target, final phase, current revision)
    pub targets: Vec<(String, Phase, String)>,
}

/// A writer that can be shared between the audit sink and the caller.
#[derive(Clone, Default)]
pub(crate) struct SharedOut(pub Arc<Mutex<Vec<u8>>>);

impl SharedOut {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for SharedOut {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        std::io::stdout().write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().flush()
    }
}

/// Run a scenario on tokio's paused clock (virtual time: minutes pass in
/// milliseconds) and exit 0 when it ended as it should.
pub(crate) fn run_main<F, Fut>(scenario: F, expect: fn(&Outcome) -> bool) -> ExitCode
where
    F: FnOnce(SharedOut) -> Fut,
    Fut: std::future::Future<Output = Result<Outcome>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("tokio runtime");
    match rt.block_on(scenario(SharedOut::default())) {
        Ok(outcome) if expect(&outcome) => ExitCode::SUCCESS,
        Ok(outcome) => {
            eprintln!("unexpected outcome: {outcome:?}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {}", e.full_message());
            ExitCode::FAILURE
        }
    }
}

fn engine(out: SharedOut) -> Engine {
    Engine::builder()
        .audit(Arc::new(TextAuditSink::new(out).relative_time(true)))
        .clock(Arc::new(TokioClock::starting_at(
            Timestamp::parse("2026-11-27T12:00:00Z").expect("a time"),
        )))
        .jitter_seed(1)
        .max_jitter(0.0)
        .build()
}

fn say(out: &SharedOut, text: &str) {
    let _ = writeln!(out.clone(), "{text}");
}

fn outcome_of(pairs: Vec<(Phase, &InMemoryTarget)>) -> Outcome {
    Outcome {
        targets: pairs
            .into_iter()
            .map(|(p, t)| (t.id().to_string(), p, t.current_id().to_string()))
            .collect(),
    }
}

fn two_revisions(id: &str, old: &str, new: &str) -> Result<InMemoryTarget> {
    let t = InMemoryTarget::new(id, [RevisionRecord::new(old), RevisionRecord::new(new)])?;
    t.set_health(&old.into(), RevisionHealth::Good)?;
    Ok(t)
}

async fn watch_one(
    engine: &Engine,
    policy: &str,
    target: &InMemoryTarget,
    probes: Vec<Arc<dyn HealthProbe>>,
) -> Result<Phase> {
    let policy = Policy::from_yaml(policy)?;
    let rollbacker = InMemoryRollbacker::new(target);
    let spec = WatchSpec::new(
        policy,
        Arc::new(target.clone()),
        Arc::new(rollbacker),
        probes,
    );
    Ok(engine.watch(spec).await?.finished().await)
}

/// E-commerce: a new checkout canary; HTTP 500s rise by 10%.
pub(crate) async fn ecommerce_checkout(out: SharedOut) -> Result<Outcome> {
    say(
        &out,
        "e-commerce: checkout v42 canary; SLOs: 5xx ratio < 1%, p99 latency <= 300 ms; two failures in a row breach\n",
    );
    let target = two_revisions("shop/checkout", "v41", "v42")?;
    let errors = ScriptedProbe::new("http_5xx_ratio")
        .script_for("v42", [0.004, 0.03, 0.08, 0.10, 0.11])
        .script_for("v41", [0.003]);
    let latency = ScriptedProbe::new("p99_latency_ms")
        .script_for("v42", [180.0, 190.0, 210.0])
        .script_for("v41", [170.0]);
    let policy = r#"
interval: 1m
bake_time: 15m
consecutive_failure_limit: 1
verify: 3m
probes:
  - { name: http_5xx_ratio, success: "< 0.01" }
  - { name: p99_latency_ms, success: "<= 300" }
"#;
    let end = watch_one(
        &engine(out.clone()),
        policy,
        &target,
        vec![Arc::new(errors), Arc::new(latency)],
    )
    .await?;
    Ok(outcome_of(vec![(end, &target)]))
}

/// Financial services: a new transaction module pushes p99 latency past the
/// 100 ms SLO; an Alertmanager alert fires as well, repeatedly.
pub(crate) async fn banking_latency(out: SharedOut) -> Result<Outcome> {
    say(
        &out,
        "banking: payments v8; SLO: p99 latency <= 100 ms; the PaymentsLatencyHigh alert also triggers a rollback\n",
    );
    let target = two_revisions("bank/payments", "v7", "v8")?;
    let latency = ScriptedProbe::new("p99_latency_ms")
        .script_for("v8", [82.0, 97.0, 131.0])
        .script_for("v7", [80.0]);
    let policy = Policy::from_yaml(
        r#"
interval: 30s
bake_time: 30m
verify: 2m
approval: auto
probes:
  - { name: p99_latency_ms, success: "<= 100", failure: "> 100" }
"#,
    )?;
    let engine = engine(out.clone());
    let rollbacker = InMemoryRollbacker::new(&target);
    let spec = WatchSpec::new(
        policy,
        Arc::new(target.clone()),
        Arc::new(rollbacker.clone()),
        vec![Arc::new(latency)],
    );
    let mut handle = engine.watch(spec).await?;
    // Alertmanager repeats a firing alert every repeat_interval; it must not roll back twice.
    tokio::time::sleep(Duration::from_secs(45)).await;
    let alert = Trigger {
        key: "a1b2c3@2026-11-27T12:01:10Z".into(),
        summary: "PaymentsLatencyHigh".into(),
    };
    for _ in 0..3 {
        engine.trigger(target.id(), alert.clone()).await?;
        tokio::time::sleep(Duration::from_secs(20)).await;
    }
    let end = handle.finished().await;
    say(
        &out,
        &format!("\nrollbacks performed: {}", rollbacker.performed().len()),
    );
    Ok(outcome_of(vec![(end, &target)]))
}

/// Streaming: a new codec reaches two of three regions; one region sees the
/// breach first, and every region that got the bad codec is rolled back, as
/// one plan ([`rollback::core::plan::Plan`]): the regions do not depend on
/// each other, and the region the codec never reached is left alone.
pub(crate) async fn streaming_regions(out: SharedOut) -> Result<Outcome> {
    say(
        &out,
        "streaming: codec-2 rolled out to eu-west and us-east, ap-south still on codec-1; SLO: playback error ratio < 2%\n",
    );
    let engine = engine(out.clone());
    let policy = Arc::new(Policy::from_yaml(
        "interval: 1m\nbake_time: 20m\nverify: 2m\nprobes: [{name: playback_errors, success: '< 0.02'}]",
    )?);
    let regions = [
        ("stream/eu-west", true, 0.09),
        ("stream/us-east", true, 0.012),
        ("stream/ap-south", false, 0.0),
    ];
    let mut targets = Vec::new();
    let mut plan = Vec::new();
    for (id, got_it, err) in regions {
        let t = InMemoryTarget::new(id, [RevisionRecord::new("codec-1")])?;
        t.set_health(&"codec-1".into(), RevisionHealth::Good)?;
        if got_it {
            t.deploy(RevisionRecord::new("codec-2"));
        }
        // eu-west's devices fail at once; us-east's failures are still under the SLO.
        let probe = ScriptedProbe::new("playback_errors")
            .script_for("codec-2", [err])
            .script([0.004]);
        let spec = WatchSpec::new(
            policy.clone(),
            Arc::new(t.clone()),
            Arc::new(InMemoryRollbacker::new(&t)),
            vec![Arc::new(probe)],
        );
        plan.push(PlanTarget::new(spec, []));
        targets.push(t);
    }
    let report = Plan::new(plan)?.run(&engine).await?;
    let phases = targets
        .iter()
        .map(|t| {
            let phase = report
                .targets
                .iter()
                .find(|(id, _)| id == t.id())
                .map(|(_, o)| match o {
                    PlanOutcome::Judged(p)
                    | PlanOutcome::RolledBack(p)
                    | PlanOutcome::Failed(p) => p.clone(),
                    other => Phase::Escalated {
                        reason: other.to_string(),
                        at: Timestamp::EPOCH,
                    },
                })
                .expect("every region is in the plan");
            (phase, t)
        })
        .collect();
    Ok(outcome_of(phases))
}

/// ML: a new recommender model lowers click-through rate against the champion.
pub(crate) async fn recommender_ctr(out: SharedOut) -> Result<Outcome> {
    say(
        &out,
        "recommender: model version 7 replaces 6 behind models:/recommender@champion; SLO: CTR no more than 5% below the previous model's\n",
    );
    let target = two_revisions("mlflow:recommender@champion", "6", "7")?;
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
    let policy = "interval: 5m\nbake_time: 2h\nfailure_limit: 1\nverify: 15m\nprobes: [{name: click_through_rate, success: '>= -5%'}]";
    let end = watch_one(&engine(out.clone()), policy, &target, vec![Arc::new(ctr)]).await?;
    Ok(outcome_of(vec![(end, &target)]))
}

/// The expected ends.
pub(crate) fn rolled_back_to(o: &Outcome, revisions: &[&str]) -> bool {
    o.targets.len() == revisions.len()
        && o.targets
            .iter()
            .zip(revisions)
            .all(|((_, phase, current), want)| {
                current == want
                    && matches!(phase, Phase::RolledBack { .. } | Phase::Promoted { .. })
            })
}
