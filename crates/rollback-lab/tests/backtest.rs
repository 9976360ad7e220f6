//! A backtest of one change point is the replay of that window, over
//! random series and policies; the same inputs give the same report.

use proptest::prelude::*;
use rollback_core::replay::{self, ReplayOptions, Sample, Series};
use rollback_core::{Phase, Policy, Timestamp};
use rollback_lab::{BacktestOptions, ChangeOutcome, ChangePoints, backtest};

fn t(s: i64) -> Timestamp {
    Timestamp::from_millis(1_795_780_800_000 + s * 1000)
}

fn policy() -> impl Strategy<Value = Policy> {
    let limit = prop_oneof![Just(None), (0u32..5).prop_map(Some)];
    (
        (1u64..4, 2u64..30, 0u64..3),
        (limit.clone(), limit, 0u32..5),
        (0usize..3, any::<bool>()),
    )
        .prop_map(
            |((interval, bake, delay), (failure_limit, consecutive, inconclusive), (c, dry_run))| {
                let success = ["< 0.5", "between 0.1 and 0.7", "<= +10%"][c];
                let mut text = format!(
                    "interval: {interval}s\nbake_time: {}s\ninitial_delay: {}s\ninconclusive_limit: {inconclusive}\ndry_run: {dry_run}\n",
                    interval * bake,
                    interval * delay
                );
                if let Some(l) = failure_limit {
                    text.push_str(&format!("failure_limit: {l}\n"));
                }
                if let Some(l) = consecutive {
                    text.push_str(&format!("consecutive_failure_limit: {l}\n"));
                }
                text.push_str(&format!(
                    "probes:\n  - {{name: a, success: '{success}', failure: '>= 0.9'}}\n  - {{name: b, success: '< 0.8'}}\n"
                ));
                Policy::from_yaml(&text).unwrap()
            },
        )
}

fn series() -> impl Strategy<Value = Series> {
    let value = prop_oneof![8 => (0.0..1.0f64).prop_map(Some), 1 => Just(None)];
    let row = (
        0i64..600,
        value,
        prop_oneof![Just(None), (0.2..0.6f64).prop_map(Some)],
    );
    (
        proptest::collection::vec(row.clone(), 1..200),
        proptest::collection::vec(row, 1..200),
    )
        .prop_map(|(a, b)| {
            let sample = |(s, value, baseline): (i64, Option<f64>, Option<f64>)| Sample {
                at: t(s),
                value,
                baseline,
            };
            a.into_iter()
                .map(|r| ("a", sample(r)))
                .chain(b.into_iter().map(|r| ("b", sample(r))))
                .collect()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn one_change_point_is_the_replay_of_its_window(
        policy in policy(),
        series in series(),
        at in 0i64..600,
    ) {
        let (first, last) = series.span().unwrap();
        let at = t(at).clamp(first, last);
        let options = BacktestOptions::new(ChangePoints::At(vec![at]));
        let report = backtest(&policy, &series, &options).unwrap();
        prop_assert_eq!(report.changes.len(), 1);
        let run = &report.changes[0];
        let until = at.plus(policy.initial_delay + policy.bake_time).min(last);
        prop_assert_eq!(run.until, until);
        let replayed = replay::run(
            &policy,
            &series,
            &ReplayOptions { start: Some(at), end: Some(until) },
        )
        .unwrap();
        prop_assert_eq!(run.rollback_at, replayed.rollback_at);
        prop_assert_eq!(&run.reason, &replayed.reason);
        prop_assert_eq!(run.rounds, replayed.rounds);
        let outcome = match (&replayed.phase, replayed.rollback_at) {
            (_, Some(_)) => ChangeOutcome::Rollback,
            (Phase::Promoted { .. }, None) => ChangeOutcome::Promotion,
            (Phase::Escalated { .. }, None) => ChangeOutcome::Escalation,
            (Phase::Frozen { .. }, None) => ChangeOutcome::Freeze,
            _ => ChangeOutcome::Unfinished,
        };
        prop_assert_eq!(run.outcome, outcome);
        prop_assert_eq!(backtest(&policy, &series, &options).unwrap(), report);
    }
}

#[test]
fn a_deploy_series_gives_the_change_points() {
    let mut series = Series::new();
    for s in (0..6 * 3600).step_by(10) {
        let generation = 1 + s / 5000;
        series.push(
            "kube_deployment_status_observed_generation",
            Sample {
                at: t(s),
                value: Some(generation as f64),
                baseline: None,
            },
        );
        series.push(
            "error_rate",
            Sample {
                at: t(s),
                value: Some(if (15_000..15_100).contains(&s) {
                    0.3
                } else {
                    0.0
                }),
                baseline: None,
            },
        );
    }
    let policy = Policy::from_yaml(
        "interval: 10s\nbake_time: 30m\nfailure_limit: 2\nprobes: [{name: error_rate, success: '< 0.1'}]",
    )
    .unwrap();
    let options = BacktestOptions::new(ChangePoints::OnChangeOf(
        "kube_deployment_status_observed_generation".into(),
    ));
    let report = backtest(&policy, &series, &options).unwrap();
    let at: Vec<Timestamp> = report.changes.iter().map(|c| c.at).collect();
    assert_eq!(at, [t(5000), t(10_000), t(15_000), t(20_000)]);
    assert_eq!(report.summary.rollbacks, 1);
    assert_eq!(report.changes[2].rollback_at, Some(t(15_020)));
    assert_eq!(report.summary.promotions, 2);
    assert_eq!(
        report.summary.unfinished, 1,
        "the data ends within the last bake"
    );
}
