//! The Mann-Whitney judge end to end: in a policy and a watch file, in the
//! engine on virtual time, and in replay over recorded samples.

use std::path::Path;
use std::sync::Arc;

use rollback_core::audit::MemoryAuditSink;
use rollback_core::canary::Samples;
use rollback_core::memory::{InMemoryRollbacker, InMemoryTarget, ScriptStep, ScriptedProbe};
use rollback_core::policy::PolicyFormat;
use rollback_core::registry::Registry;
use rollback_core::replay::{self, ReplayOptions, Series};
use rollback_core::time::TokioClock;
use rollback_core::watchfile::WatchFile;
use rollback_core::*;

const POLICY: &str = r#"
interval: 30s
bake_time: 5m
failure_limit: 1
inconclusive_limit: 1
verify: 1m
probes:
  - name: latency
    mann_whitney:
      direction: increase
      effect_size: { allowed_increase: 1.1, critical_increase: 1.5 }
      critical: true
      min_samples: 5
"#;

const BASE: [f64; 8] = [100.0, 98.0, 103.0, 101.0, 99.0, 102.0, 97.0, 100.5];

fn samples(factor: f64) -> ScriptStep {
    ScriptStep::Samples(Samples::new(
        BASE.iter().map(|v| v * factor).collect(),
        BASE.to_vec(),
    ))
}

async fn watch(script_v2: Vec<ScriptStep>) -> (Phase, Vec<String>) {
    let policy = Policy::from_yaml(POLICY).unwrap();
    let target = InMemoryTarget::new(
        "shop/checkout",
        [RevisionRecord::new("v1"), RevisionRecord::new("v2")],
    )
    .unwrap();
    target
        .set_health(&"v1".into(), RevisionHealth::Good)
        .unwrap();
    let probe = ScriptedProbe::new("latency")
        .script_for("v2", script_v2)
        .script_for("v1", [samples(1.0)]);
    let audit = MemoryAuditSink::new();
    let engine = Engine::builder()
        .audit(Arc::new(audit.clone()))
        .clock(Arc::new(TokioClock::starting_at(Timestamp::EPOCH)))
        .build();
    let spec = WatchSpec::new(
        policy,
        Arc::new(target.clone()),
        Arc::new(InMemoryRollbacker::new(&target)),
        vec![Arc::new(probe)],
    );
    let end = engine.watch(spec).await.unwrap().finished().await;
    let lines = audit.records().iter().map(|r| r.describe()).collect();
    (end, lines)
}

#[tokio::test(start_paused = true)]
async fn a_slower_canary_is_rolled_back_with_the_numbers_in_the_audit_log() {
    let (end, lines) = watch(vec![samples(1.0), samples(1.2), samples(1.25)]).await;
    assert!(
        matches!(end, Phase::RolledBack { .. }),
        "{end:?}\n{lines:#?}"
    );
    let judged: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("latency on v2"))
        .collect();
    assert!(
        judged[0].contains("pass") && judged[0].contains("no significant difference"),
        "{judged:#?}"
    );
    assert!(
        judged[1].contains("canary higher than baseline: shift")
            && judged[1].contains("98 % interval")
            && judged[1].contains("mean ratio 1.2000"),
        "{judged:#?}"
    );
    let decision = lines
        .iter()
        .find(|l| l.starts_with("decision rollback"))
        .unwrap();
    assert!(
        decision.contains("probe latency failed 2 times"),
        "{decision}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_critical_change_breaches_at_once() {
    let (end, lines) = watch(vec![samples(1.0), samples(1.6)]).await;
    assert!(matches!(end, Phase::RolledBack { .. }), "{end:?}");
    let decision = lines
        .iter()
        .find(|l| l.starts_with("decision rollback"))
        .unwrap();
    assert!(
        decision.contains("changed past its critical effect size"),
        "{decision}"
    );
    assert!(
        lines.iter().any(|l| l.contains("canary critically higher")),
        "{lines:#?}"
    );
}

#[tokio::test(start_paused = true)]
async fn too_few_samples_or_one_value_is_inconclusive_never_a_pass() {
    let few = ScriptStep::Samples(Samples::new(vec![1.0, 2.0], BASE.to_vec()));
    let (end, lines) = watch(vec![few.clone(), few]).await;
    assert!(matches!(end, Phase::Escalated { .. }), "{end:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("too few values to compare")),
        "{lines:#?}"
    );
    let (end, lines) = watch(vec![ScriptStep::Value(0.5)]).await;
    assert!(matches!(end, Phase::Escalated { .. }), "{end:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("the probe needs `samples`")),
        "{lines:#?}"
    );
    let nan = ScriptStep::Samples(Samples::new(vec![f64::NAN; 6], BASE.to_vec()));
    let (end, lines) = watch(vec![nan]).await;
    assert!(matches!(end, Phase::Escalated { .. }), "{end:?}");
    assert!(lines.iter().any(|l| l.contains("no data")), "{lines:#?}");
}

#[test]
fn the_policy_and_the_watch_file_name_the_field() {
    let bad = POLICY.replace("min_samples: 5", "min_samples: 5\n      confidence: 98");
    let e = Policy::from_yaml(&bad).unwrap_err();
    assert_eq!(e.field, "probes[0].mann_whitney.confidence", "{e}");
    let bad = POLICY.replace("min_samples: 5", "min_samples: 5\n    success: \"< 1\"");
    let e = Policy::from_yaml(&bad).unwrap_err();
    assert_eq!(e.field, "probes[0].success", "{e}");

    let file = |judge: &str| {
        format!(
            "probes:\n  - name: latency\n    mann_whitney: {judge}\n    scripted: {{ values: [{{canary: [1, 2, 3], baseline: [1, 2, 3]}}] }}\ntargets: [{{ url: memory://shop/checkout, revisions: [v1, v2] }}]\n"
        )
    };
    let parse = |text: &str| {
        WatchFile::parse(
            text,
            PolicyFormat::Yaml,
            "rollback.yaml",
            Path::new("."),
            &Registry::with_memory(),
            &|_| None,
        )
    };
    let w = parse(&file("{ direction: increase }")).unwrap();
    assert!(w.policy.probes[0].mann_whitney.is_some());
    let e = parse(&file("{ confidense: 0.9 }")).unwrap_err();
    let p = &e.problems[0];
    assert!(
        p.field.starts_with("probes[0].mann_whitney")
            && p.message.contains("unknown field `confidense`"),
        "{e}"
    );
    let e = parse(&file("{ tolerance: -1 }")).unwrap_err();
    assert_eq!(
        e.problems[0].field, "probes[0].mann_whitney.tolerance",
        "{e}"
    );
}

/// Rows of one time are one measurement's samples: values the canary's,
/// baselines the baseline's.
fn csv(rounds: &[(i64, f64)]) -> String {
    let mut out = String::from("timestamp,probe,value,baseline\n");
    for &(t, factor) in rounds {
        for v in BASE {
            out.push_str(&format!("{t},latency,{},{v}\n", v * factor));
        }
    }
    out
}

#[test]
fn replay_judges_the_rows_of_one_time_as_samples() {
    let policy = Policy::from_yaml(POLICY).unwrap();
    let rounds: Vec<(i64, f64)> = (0..10)
        .map(|i| (i * 30, if i < 4 { 1.0 } else { 1.2 }))
        .collect();
    let series = Series::from_csv(csv(&rounds).as_bytes()).unwrap();
    let report = replay::run(&policy, &series, &ReplayOptions::default()).unwrap();
    // Fails at 120 s and 150 s: the second failure (failure_limit 1) rolls back.
    assert_eq!(
        report.rollback_at,
        Some(Timestamp::from_millis(150_000)),
        "{report:#?}"
    );
    assert_eq!(report.verdicts["latency"], [4, 2, 0]);

    // A critical change at 60 s rolls back at once.
    let critical: Vec<(i64, f64)> = (0..10)
        .map(|i| (i * 30, if i < 2 { 1.0 } else { 1.6 }))
        .collect();
    let series = Series::from_csv(csv(&critical).as_bytes()).unwrap();
    let report = replay::run(&policy, &series, &ReplayOptions::default()).unwrap();
    assert_eq!(report.rollback_at, Some(Timestamp::from_millis(60_000)));
    assert!(
        report
            .reason
            .as_deref()
            .unwrap()
            .contains("critical effect size"),
        "{report:#?}"
    );

    // Baselines missing from the rows: no data, inconclusive, escalated.
    let only_canary = csv(&rounds)
        .lines()
        .map(|l| match l.rsplit_once(',') {
            Some((head, _)) if !l.starts_with("timestamp") => format!("{head},\n"),
            _ => format!("{l}\n"),
        })
        .collect::<String>();
    let series = Series::from_csv(only_canary.as_bytes()).unwrap();
    let report = replay::run(&policy, &series, &ReplayOptions::default()).unwrap();
    assert_eq!(report.rollback_at, None);
    assert!(
        matches!(report.phase, Phase::Escalated { .. }),
        "{report:#?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_canary_example_rolls_back() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/watch/canary.yaml");
    let registry = Registry::with_memory();
    let file = WatchFile::load(&path, &registry).unwrap();
    let mut specs = file.resolve(&registry).await.unwrap();
    let audit = MemoryAuditSink::new();
    let engine = Engine::builder()
        .audit(Arc::new(audit.clone()))
        .clock(Arc::new(TokioClock::starting_at(Timestamp::EPOCH)))
        .build();
    let end = engine
        .watch(specs.remove(0))
        .await
        .unwrap()
        .finished()
        .await;
    let lines: Vec<String> = audit.records().iter().map(|r| r.describe()).collect();
    assert!(
        matches!(end, Phase::RolledBack { .. }),
        "{end:?}\n{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("canary higher than baseline")),
        "{lines:#?}"
    );
}
