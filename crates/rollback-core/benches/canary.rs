//! The cost of one judgement by the Mann-Whitney canary judge: the rank-sum
//! test with the Hodges-Lehmann estimate and its interval (three bisections
//! down to adjacent floats), for per-pod samples (8 against 8), a window of
//! per-minute points (60 against 60) and a large sample (500 against 500).
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use rollback_core::canary::{MannWhitney, Samples};
use rollback_core::condition::NoData;

fn samples(n: usize, shift: f64) -> Samples {
    let mut rng = fastrand::Rng::with_seed(n as u64);
    let mut side = |mean: f64| -> Vec<f64> {
        (0..n)
            .map(|_| mean + 10.0 * ((0..4).map(|_| rng.f64()).sum::<f64>() - 2.0))
            .collect()
    };
    let canary = side(100.0 + shift);
    let baseline = side(100.0);
    Samples::new(canary, baseline)
}

fn judge(c: &mut Criterion) {
    let judge = MannWhitney::default();
    let mut g = c.benchmark_group("canary");
    for n in [8, 60, 500] {
        let s = samples(n, 3.0);
        g.bench_function(format!("judge {n}x{n}"), |b| {
            b.iter(|| black_box(judge.judge(black_box(&s), NoData::Inconclusive)))
        });
    }
    g.finish();
}

criterion_group!(benches, judge);
criterion_main!(benches);
