use super::*;

const BUDGET: f64 = 0.001; // 99.9 %

fn min(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

/// Counts with `total` requests in every window and `ratio` of them bad,
/// per window.
fn counts(total: f64, ratios: &[(u64, f64)]) -> BTreeMap<Duration, WindowCount> {
    ratios
        .iter()
        .map(|&(m, r)| {
            (
                min(m),
                WindowCount {
                    bad: total * r,
                    total: Some(total),
                },
            )
        })
        .collect()
}

/// The Workbook's windows, each with its error ratio.
fn workbook(r: [f64; 7]) -> Vec<(u64, f64)> {
    // 5m, 30m, 1h, 2h, 6h, 1d, 3d
    [5, 30, 60, 120, 360, 1440, 4320]
        .into_iter()
        .zip(r)
        .collect()
}

#[test]
fn the_workbook_pairs_and_their_factors() {
    let p = WindowPair::WORKBOOK;
    assert_eq!(p[0].to_string(), "1h/5m at 14.4x");
    assert_eq!(p[1].to_string(), "6h/30m at 6x");
    assert_eq!(p[2].to_string(), "1d/2h at 3x");
    assert_eq!(p[3].to_string(), "3d/6h at 1x");
    // 14.4 spends 2 % of a 30-day budget in the long window's hour.
    assert!((p[0].factor * 1.0 / (30.0 * 24.0) - 0.02).abs() < 1e-12);
}

#[test]
fn a_pair_fires_only_when_both_windows_burn_past_its_factor() {
    // 2 % errors over 1h (burn 20) but 1 % over 5m (burn 10): 14.4 not met by 5m.
    let c = counts(10_000.0, &workbook([0.01, 0.0, 0.02, 0.0, 0.0, 0.0, 0.0]));
    let a = assess(&WindowPair::WORKBOOK, BUDGET, 100.0, &c);
    assert!(!a.fires(), "{a}");
    assert!((a.value() - 10.0 / 14.4).abs() < 1e-9, "{}", a.value());
    // Both over: it fires, and the detail names the pair and both burn rates.
    let c = counts(10_000.0, &workbook([0.03, 0.0, 0.02, 0.0, 0.0, 0.0, 0.0]));
    let a = assess(&WindowPair::WORKBOOK, BUDGET, 100.0, &c);
    assert!(a.fires());
    assert!((a.value() - 20.0 / 14.4).abs() < 1e-9);
    let text = a.to_string();
    assert!(
        text.starts_with("pair 1h/5m at 14.4x fires: burn rates 20.00 over 1h and 30.00 over 5m"),
        "{text}"
    );
    assert!(text.contains("error budget left 100.0 % over 3d"), "{text}");
}

#[test]
fn the_slow_pairs_catch_a_slow_burn_and_the_budget_left_is_told() {
    // 0.4 % everywhere: burn 4; the 1d/2h pair (3x) fires, the fast ones do not.
    let c = counts(1e6, &workbook([0.004; 7]));
    let a = assess(&WindowPair::WORKBOOK, BUDGET, 100.0, &c);
    assert!(a.fires());
    let (p, b) = a.worst().unwrap();
    assert_eq!(*p, WindowPair::WORKBOOK[3]); // 4/1 beats 4/3
    assert_eq!((b.long, b.short), (4.0, 4.0));
    assert!((a.budget_left.unwrap().0 + 3.0).abs() < 1e-9);
    assert!(
        a.to_string().contains("error budget left -300.0 % over 3d"),
        "{a}"
    );
    // 0.05 %: burn 0.5, no pair fires; the nearest is named.
    let c = counts(1e6, &workbook([0.0005; 7]));
    let a = assess(&WindowPair::WORKBOOK, BUDGET, 100.0, &c);
    assert!(!a.fires());
    assert!((a.value() - 0.5).abs() < 1e-12);
    assert!(
        a.to_string()
            .starts_with("no pair fires; nearest 3d/6h at 1x"),
        "{a}"
    );
    assert!(a.to_string().contains("left 50.0 % over 3d"), "{a}");
}

#[test]
fn too_little_traffic_no_traffic_and_nan_are_never_judged() {
    // Three requests, all bad: under the floor of 100, nothing is judged.
    let c = counts(3.0, &workbook([1.0; 7]));
    let a = assess(&WindowPair::WORKBOOK, BUDGET, 100.0, &c);
    assert!(a.value().is_nan());
    assert!(!a.fires());
    let text = a.to_string();
    assert!(text.starts_with("no pair could be judged"), "{text}");
    assert!(
        text.contains("1h/5m at 14.4x (3 requests over 1h, under the floor of 100)"),
        "{text}"
    );
    // No requests at all.
    let a = assess(
        &WindowPair::WORKBOOK,
        BUDGET,
        100.0,
        &counts(0.0, &workbook([0.0; 7])),
    );
    assert!(a.value().is_nan());
    assert!(a.to_string().contains("no traffic over 1h"), "{a}");
    assert!(a.to_string().contains("error budget left unknown"), "{a}");
    // A NaN window, and a window without data, leave their pairs out.
    let mut c = counts(1e4, &workbook([0.0; 7]));
    c.insert(
        min(5),
        WindowCount {
            bad: f64::NAN,
            total: Some(1e4),
        },
    );
    c.insert(
        min(30),
        WindowCount {
            bad: 0.0,
            total: None,
        },
    );
    let a = assess(&WindowPair::WORKBOOK, BUDGET, 100.0, &c);
    assert_eq!(a.pairs[0].1, Err(NotJudged::NotFinite(min(5))));
    assert_eq!(a.pairs[1].1, Err(NotJudged::NoData(min(30))));
    assert!(a.pairs[2].1.is_ok());
    assert_eq!(a.value(), 0.0, "the judged pairs burn nothing");
    // Nothing at all.
    let a = assess(&WindowPair::WORKBOOK, BUDGET, 100.0, &BTreeMap::new());
    assert!(a.value().is_nan());
}

#[test]
fn windows_scale_to_a_short_watch() {
    // A 2-hour watch: the 3-day window becomes 2h, everything else by 1/36.
    let s = scale(&WindowPair::WORKBOOK, Some(min(120)), min(1));
    assert_eq!(s[3].long, min(120));
    assert_eq!(s[3].short, min(10));
    assert_eq!(s[2].long, Duration::from_secs(2400)); // 1d / 36
    assert_eq!(s[2].short, Duration::from_secs(200)); // 2h / 36
    assert_eq!(s[0].long, Duration::from_secs(100)); // 1h / 36
    assert_eq!(s[0].short, min(1), "5m / 36 = 8s, at least min_window");
    assert_eq!(s[0].factor, 14.4);
    assert_eq!(promql_duration(s[2].short), "200s");
    assert_eq!(promql_duration(s[2].long), "40m");
    // A watch as long as the longest window, or none: as written.
    assert_eq!(
        scale(&WindowPair::WORKBOOK, Some(min(4320)), min(1)),
        WindowPair::WORKBOOK
    );
    assert_eq!(
        scale(&WindowPair::WORKBOOK, None, min(1)),
        WindowPair::WORKBOOK
    );
}

#[test]
fn pairs_are_checked_by_field() {
    let bad = WindowPair {
        long: min(5),
        short: min(60),
        factor: 14.4,
    };
    assert_eq!(bad.check().unwrap_err().0, "short");
    let bad = WindowPair {
        long: min(60),
        short: min(5),
        factor: 0.0,
    };
    assert_eq!(bad.check().unwrap_err().0, "factor");
    let bad = WindowPair {
        long: min(60),
        short: Duration::ZERO,
        factor: 1.0,
    };
    assert_eq!(bad.check().unwrap_err().0, "short");
    assert_eq!(promql_duration(min(4320)), "3d");
    assert_eq!(promql_duration(Duration::from_secs(90)), "90s");
}
