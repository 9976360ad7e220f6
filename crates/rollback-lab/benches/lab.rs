//! The lab's performance targets, each measured here:
//! - replay of 30 days × 3 probes at 10 s beside a bare loop doing the
//!   least judging work over the same samples (the latest sample of each
//!   probe, its staleness, its conditions, the counts);
//! - a backtest of 90 days × 3 probes at 10 s with a deploy every hour
//!   (2,160 change points, 1 h bake each);
//! - tuning 100 policies over 30 days (720 hourly deploys each), on all cores.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rollback_core::condition::Condition;
use rollback_core::replay::{self, ReplayOptions, Sample, Series};
use rollback_core::{Policy, Timestamp};
use rollback_lab::{BacktestOptions, ChangePoints, TuneOptions, TuneSpace, backtest, tune};

const DAY: i64 = 24 * 3600 / 10;

/// The replay bench's policy (rollback-core's benches/replay.rs).
const REPLAY_POLICY: &str = r#"
interval: 10s
bake_time: 31d
failure_limit: 100000
inconclusive_limit: 100000
probes:
  - { name: error_rate, success: "< 0.01", failure: ">= 0.05" }
  - { name: p99_latency, success: "<= 0.1" }
  - { name: ctr, success: ">= -5%" }
"#;

/// The same series as rollback-core's replay bench, `days` long.
fn series(days: i64) -> Series {
    let mut s = Series::new();
    let start = 1_795_780_800_000;
    for i in 0..days * DAY {
        let at = Timestamp::from_millis(start + i * 10_000);
        let wobble = (i % 97) as f64 / 97.0;
        let sample = |value, baseline| Sample {
            at,
            value: Some(value),
            baseline,
        };
        s.push("error_rate", sample(0.001 + 0.012 * wobble, None));
        s.push("p99_latency", sample(0.05 + 0.03 * wobble, None));
        s.push("ctr", sample(0.04, Some(0.041)));
    }
    s
}

/// The least judging work over the same samples: for each round and probe,
/// the latest sample at or before it, whether it is stale, the conditions
/// (failure first, then success, as the machine judges), and the counts.
fn bare_loop(series: &Series, conditions: &[(Option<Condition>, Option<Condition>)]) -> [u64; 3] {
    let probes: Vec<&[Sample]> = ["error_rate", "p99_latency", "ctr"]
        .iter()
        .map(|p| series.samples(p))
        .collect();
    let (first, last) = series.span().unwrap();
    let mut cursors = [0usize; 3];
    let mut counts = [0u64; 3];
    let mut now = first;
    while now <= last {
        for (i, samples) in probes.iter().enumerate() {
            let c = &mut cursors[i];
            while *c < samples.len() && samples[*c].at <= now {
                *c += 1;
            }
            let s = samples[*c - 1];
            let fresh = now.since(s.at) < Duration::from_secs(10);
            let (success, failure) = &conditions[i];
            let verdict = match (fresh, s.value) {
                (true, Some(v)) if v.is_finite() => {
                    if failure.is_some_and(|f| f.holds(v, s.baseline) == Ok(true)) {
                        1
                    } else {
                        match success.map(|c| c.holds(v, s.baseline)) {
                            None | Some(Ok(true)) => 0,
                            Some(Ok(false)) if failure.is_none() => 1,
                            Some(_) => 2,
                        }
                    }
                }
                _ => 2,
            };
            counts[verdict] += 1;
        }
        now = now.plus(Duration::from_secs(10));
    }
    counts
}

fn replay_beside_bare_loop(c: &mut Criterion) {
    let policy = Policy::from_yaml(REPLAY_POLICY).unwrap();
    let series = series(30);
    let conditions: Vec<_> = policy
        .probes
        .iter()
        .map(|p| (p.success, p.failure))
        .collect();
    let report = replay::run(&policy, &series, &ReplayOptions::default()).unwrap();
    assert_eq!(report.rounds, 30 * DAY as u64, "every sample was replayed");
    let bare = bare_loop(&series, &conditions);
    let replayed: [u64; 3] = report.verdicts.values().fold([0; 3], |mut a, v| {
        (0..3).for_each(|i| a[i] += v[i]);
        a
    });
    assert_eq!(bare, replayed, "the bare loop judges as the replay does");
    let mut g = c.benchmark_group("replay_30_days_10s_3_probes");
    g.throughput(Throughput::Elements(30 * DAY as u64 * 3));
    g.sample_size(20);
    g.bench_function("replay", |b| {
        b.iter(|| black_box(replay::run(&policy, &series, &ReplayOptions::default())))
    });
    g.bench_function("bare_loop", |b| {
        b.iter(|| black_box(bare_loop(&series, &conditions)))
    });
    g.finish();
}

const BACKTEST_POLICY: &str = r#"
interval: 10s
bake_time: 1h
failure_limit: 3
consecutive_failure_limit: 2
inconclusive_limit: 1000
probes:
  - { name: error_rate, success: "< 0.01", failure: ">= 0.05" }
  - { name: p99_latency, success: "<= 0.1" }
  - { name: ctr, success: ">= -5%" }
"#;

fn backtest_90_days(c: &mut Criterion) {
    let policy = Policy::from_yaml(BACKTEST_POLICY).unwrap();
    let series = series(90);
    let options = BacktestOptions::new(ChangePoints::Every(Duration::from_secs(3600)));
    let report = backtest(&policy, &series, &options).unwrap();
    assert_eq!(report.summary.changes, 2160);
    // the last deploy's hour runs past the data's last sample
    assert_eq!(report.summary.promotions, 2159, "{}", report.summary);
    assert_eq!(report.summary.unfinished, 1, "{}", report.summary);
    let mut g = c.benchmark_group("backtest");
    g.sample_size(10);
    g.bench_function("90_days_10s_3_probes_hourly_deploys", |b| {
        b.iter(|| black_box(backtest(&policy, &series, &options).unwrap()))
    });
    g.finish();
}

fn tune_100_policies(c: &mut Criterion) {
    let policy = Policy::from_yaml(BACKTEST_POLICY).unwrap();
    let series = series(30);
    let space = TuneSpace::from_yaml(
        r#"
grid:
  failure_limit: [0, 1, 2, 3, 5]
  consecutive_failure_limit: [null, 1, 2, 4, 8]
  probes.error_rate.success: ["< 0.008", "< 0.01", "< 0.012", "< 0.015"]
"#,
    )
    .unwrap();
    assert_eq!(space.variations().len(), 100);
    let options = TuneOptions {
        backtest: BacktestOptions::new(ChangePoints::Every(Duration::from_secs(3600))),
        space,
        false_rollback_budget: 0,
    };
    let report = tune(&policy, &series, &options).unwrap();
    assert_eq!(report.candidates.len(), 100);
    let mut g = c.benchmark_group("tune");
    g.sample_size(10);
    g.bench_function("100_policies_30_days_hourly_deploys", |b| {
        b.iter(|| black_box(tune(&policy, &series, &options).unwrap()))
    });
    g.finish();
}

criterion_group!(
    benches,
    replay_beside_bare_loop,
    backtest_90_days,
    tune_100_policies
);
criterion_main!(benches);
