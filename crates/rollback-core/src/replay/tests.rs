use super::*;

const POLICY: &str = "interval: 10s\nbake_time: 10m\nfailure_limit: 1\nprobes: [{name: error_rate, success: '< 0.01'}, {name: latency, success: '<= 0.1'}]";

fn t(s: i64) -> Timestamp {
    Timestamp::from_millis(1_795_780_800_000 + s * 1000)
}

#[test]
fn csv_replay_finds_when_and_why() {
    let mut csv = String::from("timestamp,probe,value\n");
    for s in (0..600).step_by(10) {
        let err = if s >= 120 { 0.05 } else { 0.001 };
        csv.push_str(&format!(
            "{},error_rate,{err}\n{},latency,0.05\n",
            1_795_780_800 + s,
            1_795_780_800 + s
        ));
    }
    let series = Series::from_csv(csv.as_bytes()).unwrap();
    let report = run(
        &Policy::from_yaml(POLICY).unwrap(),
        &series,
        &ReplayOptions::default(),
    )
    .unwrap();
    assert_eq!(
        report.rollback_at,
        Some(t(130)),
        "second failure (failure_limit 1) at 130s"
    );
    assert!(matches!(report.phase, Phase::RollingBack { .. }));
    let reason = report.reason.unwrap();
    assert!(
        reason.contains("probe error_rate failed 2 times (failure_limit 1); last value 0.05"),
        "{reason}"
    );
    assert_eq!(report.verdicts["error_rate"], [12, 2, 0]);
    assert_eq!(report.rounds, 14);
}

#[test]
fn gaps_are_no_data_and_json_matches_csv() {
    let json = r#"{"probes": {
        "error_rate": [["2026-11-27T12:00:00Z", "0.001"], [1795780810, 0.001], [1795780820, null], {"t": 1795780830, "v": "NaN"}],
        "latency": [[1795780800, 0.05], [1795780810, 0.05], [1795780820, 0.05], [1795780830, 0.05]]
    }}"#;
    let series = Series::from_json(json).unwrap();
    let again = Series::from_json(&series.to_json()).unwrap();
    assert_eq!(series.samples("latency"), again.samples("latency"));
    let policy = Policy::from_yaml("interval: 10s\nbake_time: 10m\ninconclusive_limit: 1\nprobes: [{name: error_rate, success: '< 0.01'}, {name: latency, success: '<= 0.1'}]").unwrap();
    let report = run(&policy, &series, &ReplayOptions::default()).unwrap();
    let Phase::Escalated { reason, .. } = &report.phase else {
        panic!("{:?}", report.phase)
    };
    assert!(
        reason.contains("probe error_rate was inconclusive 2 times (inconclusive_limit 1)"),
        "{reason}"
    );
    assert_eq!(report.rollback_at, None);
}

#[test]
fn a_replay_is_exact() {
    let mut series = Series::new();
    for s in 0..1000 {
        let v = if s % 7 == 0 { 0.02 } else { 0.001 };
        series.push(
            "error_rate",
            Sample {
                at: t(s * 10),
                value: Some(v),
                baseline: None,
            },
        );
        series.push(
            "latency",
            Sample {
                at: t(s * 10),
                value: Some(0.01),
                baseline: None,
            },
        );
    }
    let policy = Policy::from_yaml("interval: 10s\nbake_time: 3h\nconsecutive_failure_limit: 1\nprobes: [{name: error_rate, success: '< 0.01'}, {name: latency, success: '<= 0.1'}]").unwrap();
    let a = run(&policy, &series, &ReplayOptions::default()).unwrap();
    let b = run(&policy, &series, &ReplayOptions::default()).unwrap();
    assert_eq!(a, b);
    assert!(
        matches!(a.phase, Phase::Observing { .. }),
        "isolated failures never breach a consecutive limit of 1"
    );
    assert_eq!(a.rounds, 1000);
}

#[test]
fn bad_input_names_the_line_or_the_probe() {
    let e =
        Series::from_csv("timestamp,probe,value\n1795780800,e,0.1\nyesterday,e,0.2\n".as_bytes())
            .unwrap_err();
    assert!(e.to_string().contains("line 3, column timestamp"), "{e}");
    let e = Series::from_csv("time,probe,value\n".as_bytes()).unwrap_err();
    assert!(e.to_string().contains("must name the columns"), "{e}");
    let e = Series::from_csv("timestamp,probe,value\n1795780800,e,lots\n".as_bytes()).unwrap_err();
    assert!(
        e.to_string()
            .contains("line 2, column value: \"lots\" is not a number"),
        "{e}"
    );
    let e = Series::from_json(r#"{"probes": {"e": [["soon", 1]]}}"#).unwrap_err();
    assert!(e.to_string().contains("probe \"e\", sample 0"), "{e}");
    let policy = Policy::from_yaml(POLICY).unwrap();
    let mut only_latency = Series::new();
    only_latency.push(
        "latency",
        Sample {
            at: t(0),
            value: Some(0.1),
            baseline: None,
        },
    );
    let e = run(&policy, &only_latency, &ReplayOptions::default()).unwrap_err();
    assert!(
        e.to_string()
            .contains("no samples for the policy's probe \"error_rate\""),
        "{e}"
    );
}

fn sample(at: Timestamp, value: Option<f64>, baseline: Option<f64>) -> Sample {
    Sample {
        at,
        value,
        baseline,
    }
}

fn rows(n: i64, newest_first: bool) -> Vec<i64> {
    let mut v: Vec<i64> = (0..n).collect();
    if newest_first {
        v.reverse();
    }
    v
}

#[test]
fn a_newest_first_csv_reads_as_the_oldest_first_one() {
    let csv = |newest_first| {
        let mut text = String::from("timestamp,probe,value,baseline\n");
        for i in rows(100_000, newest_first) {
            let probe = ["error_rate", "latency"][(i % 2) as usize];
            text.push_str(&format!("{},{probe},{},0.5\n", 1_795_780_800 + i * 10, i));
        }
        Series::from_csv(text.as_bytes()).unwrap()
    };
    let oldest_first = csv(false);
    assert_eq!(oldest_first.samples("error_rate").len(), 50_000);
    assert!(oldest_first.samples("latency").is_sorted_by_key(|s| s.at));
    assert_eq!(csv(true), oldest_first);
}

#[test]
fn a_newest_first_json_reads_as_the_oldest_first_one() {
    let json = |newest_first| {
        let rows: Vec<String> = rows(100_000, newest_first)
            .into_iter()
            .map(|i| format!("[{}, {i}]", 1_795_780_800 + i * 10))
            .collect();
        Series::from_json(&format!(r#"{{"probes": {{"e": [{}]}}}}"#, rows.join(","))).unwrap()
    };
    let oldest_first = json(false);
    assert_eq!(oldest_first.samples("e").len(), 100_000);
    assert_eq!(json(true), oldest_first);
}

#[test]
fn samples_collected_in_any_order_equal_samples_pushed_in_order() {
    let mut pushed = Series::new();
    for i in 0..100_000 {
        pushed.push("e", sample(t(i), Some(i as f64), None));
    }
    let collected: Series = (0..100_000)
        .rev()
        .map(|i| ("e", sample(t(i), Some(i as f64), None)))
        .collect();
    assert_eq!(collected, pushed);
    let mut extended = Series::new();
    extended.push("e", sample(t(99_999), Some(99_999.0), None));
    extended.extend(
        (0..99_999)
            .rev()
            .map(|i| ("e", sample(t(i), Some(i as f64), None))),
    );
    assert_eq!(extended, pushed);
}

#[test]
fn samples_of_the_same_time_keep_their_order() {
    let same_time = [(5, 1.0), (3, 2.0), (5, 3.0), (3, 4.0), (5, 5.0)];
    let mut pushed = Series::new();
    for (s, v) in same_time {
        pushed.push("e", sample(t(s), Some(v), None));
    }
    let collected: Series = same_time
        .into_iter()
        .map(|(s, v)| ("e", sample(t(s), Some(v), None)))
        .collect();
    assert_eq!(collected, pushed);
    let values: Vec<_> = pushed
        .samples("e")
        .iter()
        .map(|s| s.value.unwrap())
        .collect();
    assert_eq!(values, [2.0, 4.0, 1.0, 3.0, 5.0]);
    let mut csv = String::from("timestamp,probe,value\n");
    for (s, v) in same_time {
        csv.push_str(&format!("{},e,{v}\n", t(s).as_millis() / 1000));
    }
    assert_eq!(Series::from_csv(csv.as_bytes()).unwrap(), pushed);
}

#[test]
fn nan_and_infinities_read_as_prometheus_writes_them() {
    let csv =
        "timestamp,probe,value,baseline\n1,e,NaN,+Inf\n2,e,-Inf,Inf\n3,e,,null\n4,e,inf,nan\n";
    let json = r#"{"probes": {"e": [[1, "NaN", "+Inf"], [2, "-Inf", "Inf"], [3, null, null], [4, "inf", "nan"]]}}"#;
    for series in [
        Series::from_csv(csv.as_bytes()).unwrap(),
        Series::from_json(json).unwrap(),
    ] {
        let s = series.samples("e");
        assert!(s[0].value.unwrap().is_nan());
        assert_eq!(s[0].baseline, Some(f64::INFINITY));
        assert_eq!(s[1].value, Some(f64::NEG_INFINITY));
        assert_eq!(s[1].baseline, Some(f64::INFINITY));
        assert_eq!((s[2].value, s[2].baseline), (None, None), "null is no data");
        assert_eq!(s[3].value, Some(f64::INFINITY));
        assert!(s[3].baseline.unwrap().is_nan());
    }
}

#[test]
fn to_json_writes_nan_and_infinities_as_prometheus_does() {
    let series: Series = [
        ("e", sample(t(0), Some(f64::NAN), Some(f64::INFINITY))),
        ("e", sample(t(1), Some(f64::NEG_INFINITY), None)),
        ("e", sample(t(2), None, Some(0.5))),
    ]
    .into_iter()
    .collect();
    let json: serde_json::Value = serde_json::from_str(&series.to_json()).unwrap();
    assert_eq!(
        json["probes"]["e"],
        serde_json::json!([
            [1_795_780_800.0, "NaN", "+Inf"],
            [1_795_780_801.0, "-Inf"],
            [1_795_780_802.0, null, 0.5]
        ])
    );
}

/// A sample as comparable data: its time, and the bits of its values.
type Row = (i64, Option<u64>, Option<u64>);

/// A series as comparable data, NaN compared by being NaN.
fn comparable(series: &Series) -> Vec<(String, Vec<Row>)> {
    let bits = |v: Option<f64>| v.map(|v| if v.is_nan() { u64::MAX } else { v.to_bits() });
    series
        .probes()
        .map(|p| {
            let samples = series.samples(p);
            let samples = samples
                .iter()
                .map(|s| (s.at.as_millis(), bits(s.value), bits(s.baseline)))
                .collect();
            (p.to_owned(), samples)
        })
        .collect()
}

mod round_trip {
    use proptest::prelude::*;

    use super::*;

    fn value() -> impl Strategy<Value = Option<f64>> {
        prop_oneof![
            Just(None),
            Just(Some(f64::NAN)),
            Just(Some(f64::INFINITY)),
            Just(Some(f64::NEG_INFINITY)),
            Just(Some(-0.0)),
            any::<f64>().prop_map(Some),
            (-1e3..1e3f64).prop_map(Some),
        ]
    }

    fn series() -> impl Strategy<Value = Series> {
        let millis = -3_000_000_000_000_000i64..3_000_000_000_000_000;
        let sample = (millis, value(), value()).prop_map(|(at, value, baseline)| Sample {
            at: Timestamp::from_millis(at),
            value,
            baseline,
        });
        proptest::collection::vec(("[a-z_]{1,8}|é|a \"quoted\" name", sample), 0..40)
            .prop_map(|samples| samples.into_iter().collect())
    }

    proptest! {
        #[test]
        fn any_series_survives_json(series in series()) {
            let again = Series::from_json(&series.to_json()).unwrap();
            prop_assert_eq!(comparable(&again), comparable(&series));
        }
    }
}

/// The fast path of [`Replay`] against feeding the machine every event, as
/// `run` did before it had one: the same reports, and the same measurements
/// observed, over random series and policies.
mod fast_path {
    use proptest::prelude::*;

    use super::*;

    /// Every event through the machine: the replay before its fast path.
    fn machine_only(
        policy: &Policy,
        series: &Series,
        options: &ReplayOptions,
        observed: &mut Vec<ReplayMeasurement>,
    ) -> ReplayReport {
        let (first, last) = series.span().unwrap();
        let start = options.start.unwrap_or(first);
        let end = options.end.unwrap_or(last);
        let probes: Vec<&[Sample]> = policy
            .probes
            .iter()
            .map(|p| series.samples(&p.name))
            .collect();
        let mut cursors = vec![0usize; probes.len()];
        let watch = Watch::new(
            "replay",
            REPLAY_REVISION,
            vec![
                Candidate::new(REPLAY_REVISION, RevisionHealth::Unknown),
                Candidate::new(REPLAY_PREVIOUS, RevisionHealth::Good),
            ],
        );
        let mut machine = Machine::new(Arc::new(policy.clone()), watch, start);
        let mut report = ReplayReport {
            phase: machine.phase().clone(),
            timeline: Vec::new(),
            rollback_at: None,
            reason: None,
            rounds: 0,
            verdicts: BTreeMap::new(),
        };
        let mut counts = vec![[0u64; 3]; probes.len()];
        'run: while let Some(now) = machine.next_deadline() {
            if now > end {
                break;
            }
            let step = machine.handle(now, Event::Tick);
            match step.decision {
                Some(Decision::Measure) => {
                    report.rounds += 1;
                    for (i, samples) in probes.iter().enumerate() {
                        let m = measurement(
                            samples,
                            &mut cursors[i],
                            now,
                            Staleness::of(policy.interval),
                        );
                        let (value, baseline) = (m.value, m.baseline);
                        let step = machine.handle(
                            now,
                            Event::Measured {
                                probe: i,
                                measurement: m,
                            },
                        );
                        if let Some((verdict, _)) = step.verdict {
                            tally(&mut counts[i], verdict);
                            observed.push(ReplayMeasurement {
                                at: now,
                                probe: i,
                                value,
                                baseline,
                                verdict,
                            });
                        }
                        if let Some(d) = step.decision {
                            record(&mut report, now, d);
                            break 'run;
                        }
                    }
                }
                Some(d) => {
                    record(&mut report, now, d);
                    break;
                }
                None => {}
            }
        }
        report.verdicts = policy
            .probes
            .iter()
            .zip(counts)
            .map(|(p, c)| (p.name.clone(), c))
            .collect();
        report.phase = machine.phase().clone();
        report
    }

    fn policy() -> impl Strategy<Value = Policy> {
        let limit = prop_oneof![Just(None), (0u32..4).prop_map(Some)];
        (
            (1u64..4, 1u64..40, 0u64..3),
            (limit.clone(), limit, 0u32..4),
            (any::<bool>(), any::<bool>(), 0usize..3),
            prop_oneof![Just("inconclusive"), Just("fail"), Just("pass")],
            proptest::option::of((3u32..6, 1u64..20, any::<bool>())),
        )
            .prop_map(
                |(
                    (interval, bake, delay),
                    (failure_limit, consecutive, inconclusive),
                    (dry_run, manual, conditions),
                    no_data,
                    forecast,
                )| {
                    let success = ["< 0.5", "between 0.1 and 0.6", "<= +10%"][conditions];
                    let mut text = format!(
                        "interval: {interval}s\nbake_time: {}s\ninitial_delay: {}s\ninconclusive_limit: {inconclusive}\nno_data: {no_data}\ndry_run: {dry_run}\napproval: {}\n",
                        interval * bake,
                        interval * delay,
                        if manual { "manual" } else { "auto" },
                    );
                    if let Some(l) = failure_limit {
                        text.push_str(&format!("failure_limit: {l}\n"));
                    }
                    if let Some(l) = consecutive {
                        text.push_str(&format!("consecutive_failure_limit: {l}\n"));
                    }
                    // Probe b forecasts, sometimes: its trend goes through the
                    // fast path's rounds as its counts do.
                    let forecast = forecast.map_or(String::new(), |(window, horizon, holt)| {
                        format!(
                            ", forecast: {{horizon: {}s, window: {window}, method: {}}}",
                            interval * horizon,
                            if holt { "holt" } else { "least_squares" }
                        )
                    });
                    text.push_str(&format!(
                        "probes:\n  - {{name: a, success: '{success}', failure: '>= 0.8'}}\n  - {{name: b, success: '< 0.7'{forecast}}}\n"
                    ));
                    Policy::from_yaml(&text).unwrap()
                },
            )
    }

    fn series() -> impl Strategy<Value = Series> {
        let value = prop_oneof![
            6 => (0.0..1.0f64).prop_map(Some),
            1 => Just(None),
            1 => Just(Some(f64::NAN)),
        ];
        let row = (
            0i64..400,
            value,
            prop_oneof![Just(None), (0.2..0.6f64).prop_map(Some)],
        );
        (
            proptest::collection::vec(row.clone(), 1..150),
            proptest::collection::vec(row, 1..150),
        )
            .prop_map(|(a, b)| {
                let at = |s: i64| t(s);
                a.into_iter()
                    .map(|(s, v, b)| ("a", sample(at(s), v, b)))
                    .chain(b.into_iter().map(|(s, v, bl)| ("b", sample(at(s), v, bl))))
                    .collect()
            })
    }

    /// Reports as comparable data: NaN values in a reason as text already.
    fn comparable(r: &ReplayReport) -> String {
        format!("{r:?}")
    }

    fn observed_bits(v: &[ReplayMeasurement]) -> Vec<String> {
        v.iter().map(|m| format!("{m:?}")).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn equals_the_machine_fed_every_event(
            policy in policy(),
            series in series(),
            window in (proptest::option::of(0i64..200), proptest::option::of(0i64..400)),
        ) {
            let options = ReplayOptions { start: window.0.map(t), end: window.1.map(t) };
            let mut slow = Vec::new();
            let want = machine_only(&policy, &series, &options, &mut slow);
            let mut fast = Vec::new();
            let got = Replay::new(&policy, &series)
                .unwrap()
                .run_observed(&options, &mut |m| fast.push(*m));
            prop_assert_eq!(comparable(&got), comparable(&want));
            prop_assert_eq!(observed_bits(&fast), observed_bits(&slow));
            prop_assert_eq!(comparable(&run(&policy, &series, &options).unwrap()), comparable(&want));
        }
    }
}
