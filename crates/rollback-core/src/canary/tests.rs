use super::*;

fn s(canary: &[f64], baseline: &[f64]) -> Samples {
    Samples::new(canary.to_vec(), baseline.to_vec())
}

const BASE: [f64; 8] = [100.0, 98.0, 103.0, 101.0, 99.0, 102.0, 97.0, 100.5];

fn shifted(by: f64) -> Vec<f64> {
    BASE.iter().map(|v| v * by).collect()
}

#[test]
fn a_clearly_higher_canary_fails_and_a_similar_one_passes() {
    let judge = MannWhitney::default();
    let j = judge.judge(&s(&shifted(1.3), &BASE), NoData::Inconclusive);
    assert_eq!(
        (j.verdict, j.cause, j.classification),
        (
            Verdict::Fail,
            VerdictCause::CanaryHigher,
            Classification::High
        )
    );
    assert!(!j.critical);
    let t = j.test.unwrap();
    assert!(t.low > 0.0 && t.estimate > 20.0, "{t:?}");
    assert!((j.mean_ratio.unwrap() - 1.3).abs() < 1e-9);

    let similar = [100.2, 98.1, 102.9, 101.3, 99.4, 101.8, 97.2, 100.1];
    let j = judge.judge(&s(&similar, &BASE), NoData::Inconclusive);
    assert_eq!(
        (j.verdict, j.cause),
        (Verdict::Pass, VerdictCause::NoSignificantDifference)
    );
}

#[test]
fn only_the_direction_asked_for_fails() {
    let lower = shifted(0.7);
    let mut judge = MannWhitney::default();
    assert_eq!(
        judge.judge(&s(&lower, &BASE), NoData::Inconclusive).cause,
        VerdictCause::CanaryLower
    );
    judge.direction = Direction::Increase;
    assert_eq!(
        judge.judge(&s(&lower, &BASE), NoData::Inconclusive).verdict,
        Verdict::Pass
    );
    judge.direction = Direction::Decrease;
    assert_eq!(
        judge
            .judge(&s(&shifted(1.3), &BASE), NoData::Inconclusive)
            .verdict,
        Verdict::Pass
    );
}

#[test]
fn effect_sizes_allow_small_changes_and_critical_ones_breach() {
    let mut judge = MannWhitney {
        direction: Direction::Increase,
        ..MannWhitney::default()
    };
    judge.effect_size.allowed_increase = 1.5;
    let j = judge.judge(&s(&shifted(1.3), &BASE), NoData::Inconclusive);
    assert_eq!(j.verdict, Verdict::Pass, "1.3 is under the allowed 1.5");
    judge.effect_size.allowed_increase = 1.1;
    judge.critical = true;
    judge.effect_size.critical_increase = 2.0;
    let j = judge.judge(&s(&shifted(1.3), &BASE), NoData::Inconclusive);
    assert_eq!((j.cause, j.critical), (VerdictCause::CanaryHigher, false));
    let j = judge.judge(&s(&shifted(2.5), &BASE), NoData::Inconclusive);
    assert_eq!(
        (j.cause, j.critical),
        (VerdictCause::CriticallyHigher, true)
    );
    assert!(j.to_string().starts_with("canary critically higher"), "{j}");
}

#[test]
fn a_mean_of_zero_does_not_stop_the_classification() {
    let judge = MannWhitney::default();
    let baseline = [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, -1.0, 0.0];
    let canary = [5.0, 6.0, 7.0, 5.5, 6.5, 5.2, 6.1, 7.3];
    let j = judge.judge(&s(&canary, &baseline), NoData::Inconclusive);
    assert_eq!((j.verdict, j.mean_ratio), (Verdict::Fail, None));
}

#[test]
fn bad_samples_are_never_a_pass() {
    let judge = MannWhitney::default();
    // NaN is removed; what is left is judged.
    let mut canary = shifted(1.3);
    canary.push(f64::NAN);
    let j = judge.judge(&s(&canary, &BASE), NoData::Inconclusive);
    assert_eq!((j.verdict, j.removed), (Verdict::Fail, 1));
    assert!(j.to_string().ends_with("1 NaN removed"), "{j}");
    // Only NaN on a side: no data, judged by no_data.
    let j = judge.judge(&s(&[f64::NAN, f64::NAN], &BASE), NoData::Inconclusive);
    assert_eq!(
        (j.verdict, j.cause),
        (Verdict::Inconclusive, VerdictCause::NoData)
    );
    let j = judge.judge(&s(&[], &BASE), NoData::Fail);
    assert_eq!(j.verdict, Verdict::Fail);
    // Too few values.
    let j = judge.judge(&s(&[1.0, 2.0], &BASE), NoData::Pass);
    assert_eq!(
        (j.verdict, j.cause),
        (Verdict::Inconclusive, VerdictCause::TooFewSamples)
    );
    // Infinite values.
    let j = judge.judge(&s(&[1.0, 2.0, f64::INFINITY], &BASE), NoData::Pass);
    assert_eq!(
        (j.verdict, j.cause),
        (Verdict::Inconclusive, VerdictCause::NotFinite)
    );
}

#[test]
fn identical_and_constant_samples() {
    let judge = MannWhitney::default();
    let j = judge.judge(&s(&BASE, &BASE), NoData::Inconclusive);
    assert_eq!((j.verdict, j.test), (Verdict::Pass, None));
    let j = judge.judge(&s(&[2.0; 5], &[2.0; 7]), NoData::Inconclusive);
    assert_eq!(j.verdict, Verdict::Pass);
    // Two different constants: the shift is exact, no noise added.
    let j = judge.judge(&s(&[3.0; 10], &[2.0; 10]), NoData::Inconclusive);
    assert_eq!(j.verdict, Verdict::Fail);
    let t = j.test.unwrap();
    assert_eq!((t.estimate, t.low, t.high), (1.0, 1.0, 1.0));
}

#[test]
fn settings_are_checked_by_field() {
    let ok = MannWhitney::default();
    ok.check().unwrap();
    let bad = MannWhitney {
        confidence: 98.0,
        ..ok
    };
    assert_eq!(bad.check().unwrap_err().0, "confidence");
    let mut bad = ok;
    bad.effect_size.critical_increase = 0.0;
    assert_eq!(bad.check().unwrap_err().0, "effect_size.critical_increase");
    let bad = MannWhitney {
        min_samples: 0,
        ..ok
    };
    assert_eq!(bad.check().unwrap_err().0, "min_samples");
    let e = serde_json::from_str::<MannWhitney>(r#"{"confidense": 0.9}"#).unwrap_err();
    assert!(e.to_string().contains("unknown field `confidense`"), "{e}");
    let parsed: MannWhitney = serde_json::from_str(
        r#"{"direction": "increase", "effect_size": {"critical_increase": 1.5}}"#,
    )
    .unwrap();
    assert_eq!(parsed.confidence, 0.98);
    assert_eq!(parsed.effect_size.critical_increase, 1.5);
    assert_eq!(parsed.effect_size.allowed_increase, 1.0);
}

#[test]
fn the_numbers_read_at_any_scale() {
    let judge = MannWhitney::default();
    let tiny: Vec<f64> = BASE.iter().map(|v| v * 1e-6).collect();
    let slower: Vec<f64> = tiny.iter().map(|v| v * 1.3).collect();
    let j = judge.judge(&s(&slower, &tiny), NoData::Inconclusive);
    let text = j.to_string();
    assert!(text.contains("shift 0.0000300"), "{text}");
    assert_eq!(Significant(12.3456789).to_string(), "12.346");
    assert_eq!(Significant(123456.7).to_string(), "123457");
    assert_eq!(Significant(-0.5).to_string(), "-0.50000");
}
