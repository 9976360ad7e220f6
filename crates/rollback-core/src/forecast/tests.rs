use std::sync::Arc;

use super::*;
use crate::Policy;
use crate::machine::{Candidate, Decision, Event, Machine, Watch};
use crate::{RevisionHealth, Verdict};

fn t(secs: i64) -> Timestamp {
    Timestamp::from_millis(1_795_780_800_000 + secs * 1000)
}

fn c(s: &str) -> Condition {
    s.parse().unwrap()
}

fn trend_of(values: &[f64], every: i64) -> Trend {
    let mut trend = Trend::default();
    for (i, v) in values.iter().enumerate() {
        trend.push(t(i as i64 * every), *v, 1000);
    }
    trend
}

fn forecast(method: TrendMethod, window: u32, horizon_secs: u64) -> Forecast {
    Forecast {
        horizon: Duration::from_secs(horizon_secs),
        method,
        window,
        alpha: None,
        beta: None,
    }
}

#[test]
fn a_line_is_fitted_exactly_and_its_crossing_found() {
    // 0.001 + 0.0001 a second, every 10 s: 0.0019 at 90 s.
    let values: Vec<f64> = (0..10).map(|i| 0.001 + 0.001 * i as f64).collect();
    let trend = trend_of(&values, 10);
    for method in [TrendMethod::LeastSquares, TrendMethod::Holt] {
        let f = forecast(method, 10, 60);
        let p = f.predict(&c("< 0.015"), &trend, t(90)).unwrap();
        assert!((p.level - 0.010).abs() < 1e-12, "{method}: {p:?}");
        assert!((p.slope - 0.0001).abs() < 1e-12, "{method}: {p:?}");
        assert_eq!(p.bound, 0.015);
        assert_eq!(p.breach_at, t(140), "{method}");
        assert!(p.within_horizon(), "50 s is within 60 s");
        let f = forecast(method, 10, 49);
        assert!(
            !f.predict(&c("< 0.015"), &trend, t(90))
                .unwrap()
                .within_horizon()
        );
    }
}

#[test]
fn least_squares_averages_noise() {
    // Alternating ±0.001 around a flat 0.005: no trend to speak of.
    let values: Vec<f64> = (0..10)
        .map(|i| 0.005 + if i % 2 == 0 { 0.001 } else { -0.001 })
        .collect();
    let p = forecast(TrendMethod::LeastSquares, 10, 600).predict(
        &c("< 0.01"),
        &trend_of(&values, 30),
        t(270),
    );
    // The fitted slope is tiny and negative (the last point is low).
    assert!(p.is_none(), "{p:?}");
}

#[test]
fn falling_values_cross_a_lower_bound_and_ranges_both() {
    let falling: Vec<f64> = (0..5).map(|i| 0.99 - 0.01 * i as f64).collect();
    let trend = trend_of(&falling, 60);
    let f = forecast(TrendMethod::LeastSquares, 5, 3600);
    // 0.95 at 240 s, falling 0.01 a minute: 0.9 five minutes later.
    let p = f.predict(&c(">= 0.9"), &trend, t(240)).unwrap();
    assert_eq!(p.breach_at, t(540));
    let p = f
        .predict(&c("between 0.9 and 1.0"), &trend, t(240))
        .unwrap();
    assert_eq!((p.bound, p.breach_at), (0.9, t(540)));
    // Rising values cross a range's upper bound.
    let rising: Vec<f64> = falling.iter().map(|v| 1.9 - v).collect();
    let p = f
        .predict(&c("between 0.9 and 1.0"), &trend_of(&rising, 60), t(240))
        .unwrap();
    assert_eq!((p.bound, p.breach_at), (1.0, t(540)));
    // Moving away from the only bound: never.
    assert!(f.predict(&c("< 2"), &trend, t(240)).is_none());
    assert!(
        f.predict(&c("> 0.5"), &trend_of(&rising, 60), t(240))
            .is_none()
    );
}

#[test]
fn a_trend_already_past_the_bound_breaches_now() {
    // The last value passes `< 0.01`, but the fit is past it already.
    let values = [0.002, 0.005, 0.008, 0.0099, 0.0099];
    let p = forecast(TrendMethod::LeastSquares, 5, 60)
        .predict(&c("< 0.01"), &trend_of(&values, 60), t(240))
        .unwrap();
    assert!(p.level >= 0.01, "{p:?}");
    assert_eq!(p.breach_at, t(240));
    assert!(p.to_string().contains("already past 0.01"), "{p}");
}

#[test]
fn nothing_is_forecast_before_the_window_fills_or_from_one_instant() {
    let f = forecast(TrendMethod::LeastSquares, 10, 600);
    let nine = trend_of(&[0.001; 9], 10);
    assert!(f.predict(&c("< 0.01"), &nine, t(80)).is_none());
    let mut same_time = Trend::default();
    for v in [0.001, 0.002, 0.003] {
        same_time.push(t(0), v, 3);
    }
    for method in [TrendMethod::LeastSquares, TrendMethod::Holt] {
        assert!(
            forecast(method, 3, 600)
                .predict(&c("< 0.01"), &same_time, t(0))
                .is_none()
        );
    }
}

#[test]
fn a_trend_keeps_the_latest_finite_values() {
    let mut trend = Trend::default();
    for (i, v) in [1.0, f64::NAN, 2.0, f64::INFINITY, 3.0, 4.0]
        .into_iter()
        .enumerate()
    {
        trend.push(t(i as i64), v, 3);
    }
    let kept: Vec<f64> = trend.points().map(|p| p.1).collect();
    assert_eq!(kept, [2.0, 3.0, 4.0]);
    let json = serde_json::to_string(&trend).unwrap();
    assert_eq!(serde_json::from_str::<Trend>(&json).unwrap(), trend);
}

#[test]
fn the_detail_names_the_method_the_values_and_the_time() {
    let values: Vec<f64> = (0..10).map(|i| 0.001 * i as f64).collect();
    let p = forecast(TrendMethod::Holt, 10, 600)
        .predict(&c("< 0.015"), &trend_of(&values, 60), t(540))
        .unwrap();
    let text = p.to_string();
    for part in [
        "Holt's linear smoothing over the last 10 measurements",
        "0.009000 now, rising 0.001000 a minute",
        "reaches 0.015 of success < 0.015 at 2026-11-27T12:15:00.000Z, in 6m",
        "(horizon 10m)",
    ] {
        assert!(text.contains(part), "{part:?} in {text}");
    }
}

const POLICY: &str = r#"
interval: 1m
bake_time: 1h
probes:
  - name: error_rate
    success: "< 0.05"
    forecast: { horizon: 10m, window: 5 }
"#;

#[test]
fn a_policy_reads_a_forecast_and_refuses_bad_ones_by_field() {
    let p = Policy::from_yaml(POLICY).unwrap();
    let f = p.probes[0].forecast.unwrap();
    assert_eq!(
        (f.horizon, f.window, f.method),
        (Duration::from_secs(600), 5, TrendMethod::LeastSquares)
    );
    let refused = |forecast: &str, success: &str| {
        let text =
            format!("probes:\n  - name: p\n    success: {success:?}\n    forecast: {forecast}\n");
        let e = Policy::from_yaml(&text).unwrap_err();
        (e.field, e.reason)
    };
    let (field, reason) = refused("{horizon: 10m, window: 2}", "< 1");
    assert_eq!(field, "probes[0].forecast.window", "{reason}");
    let (field, reason) = refused("{horizon: 0s}", "< 1");
    assert_eq!(field, "probes[0].forecast.horizon", "{reason}");
    let (field, reason) = refused("{horizon: 1m, alpha: 0.5}", "< 1");
    assert_eq!(field, "probes[0].forecast.alpha", "{reason}");
    assert!(reason.contains("holt only"), "{reason}");
    let (field, reason) = refused("{horizon: 1m, method: holt, beta: 1.5}", "< 1");
    assert_eq!(field, "probes[0].forecast.beta", "{reason}");
    let (field, reason) = refused("{horizon: 1m}", "== 0");
    assert_eq!(field, "probes[0].forecast", "{reason}");
    assert!(reason.contains("cannot forecast success == 0"), "{reason}");
    let (field, reason) = refused("{horizon: 1m}", "<= +10%");
    assert_eq!(field, "probes[0].forecast", "{reason}");
    let (field, reason) = refused("{horizon: 1m, windw: 5}", "< 1");
    assert!(field.starts_with("probes[0].forecast"), "{field}: {reason}");
    assert!(reason.contains("windw"), "{reason}");
    let e = Policy::from_yaml("probes:\n  - {name: p, failure: '> 1', forecast: {horizon: 1m}}\n")
        .unwrap_err();
    assert_eq!(e.field, "probes[0].forecast");
    assert!(e.reason.contains("needs a `success`"), "{}", e.reason);
}

fn machine(policy: &Policy) -> Machine {
    let watch = Watch::new(
        "t",
        "v2",
        vec![
            Candidate::new("v2", RevisionHealth::Unknown),
            Candidate::new("v1", RevisionHealth::Good),
        ],
    );
    Machine::new(Arc::new(policy.clone()), watch, t(0))
}

/// Feed one measurement per minute from `values`; the verdicts, and the
/// first step that decided.
fn feed(m: &mut Machine, values: &[f64]) -> (Vec<Verdict>, Option<(i64, crate::machine::Step)>) {
    let mut verdicts = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let at = t(i as i64 * 60);
        let tick = m.handle(at, Event::Tick);
        assert_eq!(tick.decision, Some(Decision::Measure), "minute {i}");
        let step = m.handle(
            at,
            Event::Measured {
                probe: 0,
                measurement: Measurement::value(*v),
            },
        );
        verdicts.push(step.verdict.unwrap().0);
        if step.decision.is_some() {
            return (verdicts, Some((i as i64, step)));
        }
    }
    (verdicts, None)
}

#[test]
fn the_machine_rolls_back_on_a_forecast_breach_before_the_threshold() {
    let policy = Policy::from_yaml(POLICY).unwrap();
    // +0.002 a minute from 0.01: the threshold 0.05 is reached at minute 20;
    // with five points the trend is clear at minute 4, when 0.05 is 16
    // minutes away; within 10 minutes at minute 10 (0.03 now).
    let ramp: Vec<f64> = (0..30).map(|i| 0.01 + 0.002 * i as f64).collect();
    let mut m = machine(&policy);
    let (verdicts, decided) = feed(&mut m, &ramp);
    let (minute, step) = decided.unwrap();
    assert_eq!(minute, 10);
    assert_eq!(verdicts.iter().filter(|v| **v == Verdict::Fail).count(), 1);
    assert_eq!(
        step.verdict,
        Some((Verdict::Fail, Some(VerdictCause::ForecastBreach)))
    );
    let p = step.prediction.unwrap();
    assert_eq!(p.breach_at, t(20 * 60));
    let Some(Decision::Rollback { reason, .. }) = &step.decision else {
        panic!("{step:?}");
    };
    let reason = reason.to_string();
    assert!(
        reason.contains("forecast 10m (least squares over 5)"),
        "{reason}"
    );

    // The same values without a forecast: the plain threshold fails at minute 20.
    let plain =
        Policy::from_yaml(&POLICY.replace("forecast: { horizon: 10m, window: 5 }", "")).unwrap();
    let (_, decided) = feed(&mut machine(&plain), &ramp);
    assert_eq!(decided.unwrap().0, 20);
}

#[test]
fn a_flat_healthy_series_is_never_failed_by_its_forecast() {
    let policy = Policy::from_yaml(POLICY).unwrap();
    let flat: Vec<f64> = (0..60)
        .map(|i| 0.01 + 0.002 * ((i * 7 % 5) as f64 - 2.0))
        .collect();
    let (verdicts, decided) = feed(&mut machine(&policy), &flat);
    assert!(decided.is_none());
    assert!(verdicts.iter().all(|v| *v == Verdict::Pass), "{verdicts:?}");
}

#[test]
fn the_trend_is_saved_with_the_state_and_resumed() {
    let policy = Arc::new(Policy::from_yaml(POLICY).unwrap());
    let ramp: Vec<f64> = (0..30).map(|i| 0.01 + 0.002 * i as f64).collect();
    let mut m = machine(&policy);
    let _ = feed(&mut m, &ramp[..6]);
    let json = serde_json::to_string(m.state()).unwrap();
    let state: crate::MachineState = serde_json::from_str(&json).unwrap();
    assert_eq!(state.trends[0].len(), 5);
    let mut resumed = Machine::resume(policy.clone(), state).unwrap();
    let mut verdicts = Vec::new();
    for (i, v) in ramp.iter().enumerate().skip(6) {
        let at = t(i as i64 * 60);
        let _ = resumed.handle(at, Event::Tick);
        let step = resumed.handle(
            at,
            Event::Measured {
                probe: 0,
                measurement: Measurement::value(*v),
            },
        );
        verdicts.push(step.verdict.unwrap().0);
        if step.decision.is_some() {
            assert_eq!(
                i, 10,
                "the resumed machine decides when the unbroken one does"
            );
            break;
        }
    }
    assert_eq!(verdicts.last(), Some(&Verdict::Fail));
    // A state saved without trends (before the policy forecast) resumes with empty ones.
    let mut old = m.state().clone();
    old.trends.clear();
    let again = Machine::resume(policy, old).unwrap();
    assert_eq!(again.state().trends.len(), 1);
    assert!(again.state().trends[0].is_empty());
}

#[test]
fn an_outlier_past_the_bound_stays_out_of_the_fit() {
    let policy = Policy::from_yaml(&format!("{POLICY}consecutive_failure_limit: 1\n")).unwrap();
    let mut values = vec![0.01; 30];
    values[12] = 0.2;
    let (verdicts, decided) = feed(&mut machine(&policy), &values);
    assert!(decided.is_none());
    let fails: Vec<usize> = (0..verdicts.len())
        .filter(|&i| verdicts[i] == Verdict::Fail)
        .collect();
    assert_eq!(fails, [12], "only the outlier fails: {verdicts:?}");
}

#[test]
fn a_watch_file_carries_the_forecast_beside_the_conditions() {
    use crate::registry::Registry;
    use crate::watchfile::WatchFile;
    let parse = |forecast: &str| {
        let text = format!(
            "policy: {{interval: 1m, bake_time: 1h}}\nprobes:\n  - name: error_rate\n    success: '< 0.01'\n    forecast: {forecast}\n    scripted: {{values: [0.001]}}\ntargets: [{{url: memory://a, revisions: [v1, v2]}}]\n"
        );
        WatchFile::parse(
            &text,
            crate::policy::PolicyFormat::Yaml,
            "w.yaml",
            std::path::Path::new("."),
            &Registry::with_memory(),
            &|_| None,
        )
    };
    let file = parse("{horizon: 10m, method: holt, alpha: 0.4}").unwrap();
    let f = file.policy.probes[0].forecast.unwrap();
    assert_eq!(
        (f.method, f.alpha, f.window),
        (TrendMethod::Holt, Some(0.4), 10)
    );
    let e = parse("{horizon: 10m, window: 1}").unwrap_err();
    assert_eq!(e.problems[0].field, "probes[0].forecast.window", "{e}");
    let e = parse("{horizon: 10m, alpha: 0.4}").unwrap_err();
    assert_eq!(e.problems[0].field, "probes[0].forecast.alpha", "{e}");
    let e = parse("{horizon: soon}").unwrap_err();
    assert!(e.problems[0].field.starts_with("probes[0].forecast"), "{e}");
    assert!(e.to_string().contains("invalid duration \"soon\""), "{e}");
}
