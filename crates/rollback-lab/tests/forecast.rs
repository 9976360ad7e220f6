//! The trend forecast backtested (issue 14): on a week of a slow-burn error
//! rate it rolls back earlier than the plain threshold, and on the same week
//! without the burns (noise and one-sample spikes past the threshold) it
//! rolls back no more often. Run with `--no-capture` for the table that
//! BENCHMARKS.md records.

use std::time::Duration;

use rollback_core::replay::{Sample, Series};
use rollback_core::{Policy, Timestamp};
use rollback_lab::{BacktestOptions, BacktestSummary, ChangePoints, Incident, backtest};

const MINUTE: i64 = 60;
const DAYS: i64 = 7;
const CHANGE_EVERY: i64 = 4 * 60; // minutes

fn t(minute: i64) -> Timestamp {
    Timestamp::from_millis(1_795_780_800_000 + minute * MINUTE * 1000)
}

/// xorshift64*: the same week on every run, without a dependency.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A slow burn: from `start` (minutes) the error rate climbs `slope` a
/// minute above the healthy level, until the next change point.
struct Burn {
    start: i64,
    slope: f64,
}

/// A week of 1-minute error rates: 0.006 ± 0.004 of noise (up to half the threshold), a one-sample
/// spike to 0.03..0.08 about every 200 minutes, and with `burns`, one slow
/// burn after every fourth change point.
fn week(burns: bool) -> (Series, Vec<Incident>) {
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let minutes = DAYS * 24 * 60;
    let mut plan = Vec::new();
    if burns {
        let mut change = 0;
        let mut k = 0;
        while change < minutes {
            if k % 4 == 1 {
                plan.push(Burn {
                    start: change + 20 + (k * 13 % 41),
                    slope: 0.0005 + 0.00025 * (k % 5) as f64,
                });
            }
            change += CHANGE_EVERY;
            k += 1;
        }
    }
    let incidents = plan
        .iter()
        .map(|b| Incident {
            start: t(b.start),
            end: t((b.start / CHANGE_EVERY + 1) * CHANGE_EVERY - 1),
            name: Some(format!("burn at minute {}", b.start)),
        })
        .collect();
    let series = (0..minutes)
        .map(|m| {
            let mut v = 0.006 + 0.004 * (2.0 * noise.next() - 1.0);
            if noise.next() < 1.0 / 200.0 {
                v = 0.03 + 0.05 * noise.next();
            }
            for b in &plan {
                let end = (b.start / CHANGE_EVERY + 1) * CHANGE_EVERY;
                if (b.start..end).contains(&m) {
                    v += b.slope * (m - b.start) as f64;
                }
            }
            (
                "error_rate",
                Sample {
                    at: t(m),
                    value: Some(v),
                    baseline: None,
                },
            )
        })
        .collect();
    (series, incidents)
}

const PLAIN: &str = "
interval: 1m
bake_time: 2h
consecutive_failure_limit: 1
probes:
  - name: error_rate
    success: '< 0.02'
";

fn policies() -> Vec<(&'static str, Policy)> {
    let with =
        |forecast: &str| Policy::from_yaml(&format!("{PLAIN}    forecast: {forecast}\n")).unwrap();
    vec![
        ("threshold", Policy::from_yaml(PLAIN).unwrap()),
        (
            "least squares, window 15, horizon 15m",
            with("{horizon: 15m, window: 15}"),
        ),
        (
            "Holt (0.3, 0.1), window 15, horizon 15m",
            with("{horizon: 15m, window: 15, method: holt}"),
        ),
    ]
}

fn run(policy: &Policy, series: &Series, incidents: &[Incident]) -> BacktestSummary {
    let options = BacktestOptions::new(ChangePoints::Every(Duration::from_secs(
        CHANGE_EVERY as u64 * 60,
    )))
    .incidents(incidents.to_vec());
    backtest(policy, series, &options).unwrap().summary
}

#[test]
fn the_forecast_rolls_back_a_slow_burn_earlier_with_no_more_false_rollbacks() {
    let (burning, incidents) = week(true);
    let (healthy, _) = week(false);
    // The healthy week's rollbacks are all false: hold them against an
    // incident nobody could meet, so the lab counts them as such.
    let never = [Incident {
        start: t(-10),
        end: t(-9),
        name: None,
    }];
    println!(
        "{:<40} {:>10} {:>7} {:>13} {:>11} {:>11} {:>16}",
        "policy",
        "detections",
        "misses",
        "median delay",
        "p90 delay",
        "false (burn)",
        "false (healthy)"
    );
    let mut rows = Vec::new();
    for (name, policy) in policies() {
        let burn = run(&policy, &burning, &incidents);
        let calm = run(&policy, &healthy, &never);
        let delay = burn.delay.unwrap();
        println!(
            "{name:<40} {:>10} {:>7} {:>12}s {:>10}s {:>11} {:>16}",
            burn.detections,
            burn.misses,
            delay.median,
            delay.p90,
            burn.false_rollbacks,
            calm.false_rollbacks
        );
        rows.push((burn, calm));
    }
    let (plain_burn, plain_calm) = rows[0];
    assert_eq!(plain_burn.incidents, 11);
    assert_eq!(
        plain_burn.detections, plain_burn.incidents,
        "{plain_burn:?}"
    );
    for (burn, calm) in &rows[1..] {
        assert_eq!(burn.detections, plain_burn.detections, "{burn:?}");
        assert!(
            burn.delay.unwrap().median < plain_burn.delay.unwrap().median,
            "{burn:?} against {plain_burn:?}"
        );
        assert!(burn.delay.unwrap().max < plain_burn.delay.unwrap().max);
        assert!(
            burn.false_rollbacks <= plain_burn.false_rollbacks,
            "{burn:?}"
        );
        assert!(
            calm.false_rollbacks <= plain_calm.false_rollbacks,
            "{calm:?}"
        );
    }
}
