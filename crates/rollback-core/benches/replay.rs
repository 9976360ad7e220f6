//! Replay of 30 days of 10-second samples (259,200 per probe) through a
//! three-probe policy, and reading 100,000 CSV rows oldest and newest first.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rollback_core::replay::{self, ReplayOptions, Sample, Series};
use rollback_core::{Policy, Timestamp};

const SAMPLES: i64 = 30 * 24 * 3600 / 10;

const POLICY: &str = r#"
interval: 10s
bake_time: 31d
failure_limit: 100000
inconclusive_limit: 100000
probes:
  - { name: error_rate, success: "< 0.01", failure: ">= 0.05" }
  - { name: p99_latency, success: "<= 0.1" }
  - { name: ctr, success: ">= -5%" }
"#;

fn series() -> Series {
    let mut s = Series::new();
    let start = 1_795_780_800_000;
    for i in 0..SAMPLES {
        let at = Timestamp::from_millis(start + i * 10_000);
        let wobble = (i % 97) as f64 / 97.0;
        s.push(
            "error_rate",
            Sample {
                at,
                value: Some(0.001 + 0.012 * wobble),
                baseline: None,
            },
        );
        s.push(
            "p99_latency",
            Sample {
                at,
                value: Some(0.05 + 0.03 * wobble),
                baseline: None,
            },
        );
        s.push(
            "ctr",
            Sample {
                at,
                value: Some(0.04),
                baseline: Some(0.041),
            },
        );
    }
    s
}

fn replay_30_days(c: &mut Criterion) {
    let policy = Policy::from_yaml(POLICY).expect("policy");
    let series = series();
    let report = replay::run(&policy, &series, &ReplayOptions::default()).expect("replay");
    assert_eq!(report.rounds, SAMPLES as u64, "every sample was replayed");
    let mut g = c.benchmark_group("replay");
    g.throughput(Throughput::Elements(SAMPLES as u64 * 3));
    g.sample_size(20);
    g.bench_function("30_days_10s_3_probes", |b| {
        b.iter(|| black_box(replay::run(&policy, &series, &ReplayOptions::default())))
    });
    g.finish();
}

const ROWS: i64 = 100_000;

/// 100,000 rows of one probe, 10 s apart.
fn csv(newest_first: bool) -> String {
    let mut text = String::from("timestamp,probe,value\n");
    let mut rows: Vec<i64> = (0..ROWS).collect();
    if newest_first {
        rows.reverse();
    }
    for i in rows {
        text.push_str(&format!(
            "{},error_rate,{}\n",
            1_795_780_800 + i * 10,
            i % 97
        ));
    }
    text
}

fn read_csv(c: &mut Criterion) {
    let mut g = c.benchmark_group("series_from_csv");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.sample_size(10);
    for (name, newest_first) in [("100k_oldest_first", false), ("100k_newest_first", true)] {
        let text = csv(newest_first);
        g.bench_function(name, |b| {
            b.iter(|| black_box(Series::from_csv(text.as_bytes()).expect("series")))
        });
    }
    g.finish();
}

criterion_group!(benches, replay_30_days, read_csv);
criterion_main!(benches);
