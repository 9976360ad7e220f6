//! Decisions per second of the sans-IO machine: measurement and tick events
//! of a three-probe policy, judged in the `Observing` phase.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rollback_core::machine::Candidate;
use rollback_core::machine::{Event, Machine, Watch};
use rollback_core::{Measurement, Policy, RevisionHealth, Timestamp};

const POLICY: &str = r#"
interval: 10s
bake_time: 100000h
consecutive_failure_limit: 3
probes:
  - { name: error_rate, success: "< 0.01", failure: ">= 0.05" }
  - { name: p99_latency, success: "<= 0.1" }
  - { name: ctr, success: ">= -5%" }
"#;

fn machine() -> Machine {
    let policy = Arc::new(Policy::from_yaml(POLICY).expect("policy"));
    let watch = Watch::new(
        "bench",
        "v2",
        vec![
            Candidate::new("v2", RevisionHealth::Unknown),
            Candidate::new("v1", RevisionHealth::Good),
        ],
    );
    Machine::new(policy, watch, Timestamp::EPOCH)
}

fn decisions(c: &mut Criterion) {
    const ROUNDS: u64 = 10_000;
    let mut g = c.benchmark_group("machine");
    // one tick and three measurements per round
    g.throughput(Throughput::Elements(ROUNDS * 4));
    g.bench_function("decisions", |b| {
        b.iter_batched_ref(
            machine,
            |m| {
                for i in 0..ROUNDS {
                    let now = Timestamp::from_millis(i as i64 * 10_000);
                    let _ = black_box(m.handle(now, Event::Tick));
                    let e = if i % 5 == 0 { 0.02 } else { 0.001 };
                    let _ = black_box(m.handle(
                        now,
                        Event::Measured {
                            probe: 0,
                            measurement: Measurement::value(e),
                        },
                    ));
                    let _ = black_box(m.handle(
                        now,
                        Event::Measured {
                            probe: 1,
                            measurement: Measurement::value(0.05),
                        },
                    ));
                    let _ = black_box(m.handle(
                        now,
                        Event::Measured {
                            probe: 2,
                            measurement: Measurement::with_baseline(0.041, 0.042),
                        },
                    ));
                }
            },
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, decisions);
criterion_main!(benches);
