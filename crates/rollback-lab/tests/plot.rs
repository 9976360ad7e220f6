//! The plots are well-formed SVG and hold the markers they promise: change
//! points, would-be rollbacks, incidents, verdict dots, condition bands.

use std::time::Duration;

use rollback_core::replay::{ReplayOptions, Sample, Series};
use rollback_core::{Policy, Timestamp};
use rollback_lab::plot::{
    CHANGE_COLOUR, FAIL_COLOUR, INCIDENT_COLOUR, PASS_COLOUR, PlotOptions, ROLLBACK_COLOUR,
};
use rollback_lab::{
    BacktestOptions, ChangePoints, Incident, TuneOptions, TuneSpace, plot_backtest, plot_replay,
    plot_tune, tune,
};

fn t(s: i64) -> Timestamp {
    Timestamp::from_millis(1_795_780_800_000 + s * 1000)
}

/// Two days of an error ratio and a latency, with two bad stretches (one
/// labelled) and a latency blip.
fn series() -> Series {
    let mut s = Series::new();
    for i in 0..2 * 8640 {
        let at = t(i * 10);
        let sec = i * 10;
        let wobble = ((i * 7919) % 101) as f64 / 101.0;
        let bad = (30_000..31_800).contains(&sec) || (120_000..120_300).contains(&sec);
        s.push(
            "error_rate",
            Sample {
                at,
                value: Some(if bad {
                    0.04 + 0.02 * wobble
                } else {
                    0.002 + 0.004 * wobble
                }),
                baseline: None,
            },
        );
        s.push(
            "p99_latency",
            Sample {
                at,
                value: Some(
                    0.08 + 0.03 * wobble
                        + if (90_000..90_100).contains(&sec) {
                            0.2
                        } else {
                            0.0
                        },
                ),
                baseline: None,
            },
        );
    }
    s
}

const POLICY: &str = "interval: 10s\nbake_time: 2h\nfailure_limit: 3\ninconclusive_limit: 1000\nprobes:\n  - {name: error_rate, success: '< 0.01', failure: '>= 0.03'}\n  - {name: p99_latency, success: '<= 0.15'}\n";

fn colour(c: plotters::style::RGBColor) -> String {
    format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
}

/// Elements whose `stroke` or `fill` is `c`.
fn with_colour(doc: &roxmltree::Document<'_>, c: plotters::style::RGBColor) -> Vec<String> {
    let c = colour(c);
    doc.descendants()
        .filter(|n| {
            ["stroke", "fill"]
                .iter()
                .any(|a| n.attribute(*a).is_some_and(|v| v.eq_ignore_ascii_case(&c)))
        })
        .map(|n| n.tag_name().name().to_owned())
        .collect()
}

fn texts(doc: &roxmltree::Document<'_>) -> Vec<String> {
    doc.descendants()
        .filter(|n| n.tag_name().name() == "text")
        .filter_map(|n| n.text().map(str::to_owned))
        .collect()
}

#[test]
fn a_backtest_plot_holds_its_markers() {
    let policy = Policy::from_yaml(POLICY).unwrap();
    let incidents = vec![Incident {
        start: t(30_000),
        end: t(31_800),
        name: Some("INC-1".into()),
    }];
    let options = BacktestOptions::new(ChangePoints::Every(Duration::from_secs(4 * 3600)))
        .incidents(incidents);
    let (report, svg) =
        plot_backtest(&policy, &series(), &options, &PlotOptions::default()).unwrap();
    let s = report.summary;
    assert_eq!(s.changes, 12);
    assert_eq!((s.detections, s.misses), (1, 0), "{report}");
    assert!(s.rollbacks >= 2 && s.false_rollbacks >= 1, "{report}");
    let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let panels = 2;
    let rollback = with_colour(&doc, ROLLBACK_COLOUR);
    // a line and a triangle per rollback per panel, and the legend's line
    let lines = rollback
        .iter()
        .filter(|n| *n == "polyline" || *n == "line")
        .count();
    let triangles = rollback.iter().filter(|n| *n == "polygon").count();
    assert_eq!(lines, s.rollbacks * panels + 1, "{rollback:?}");
    assert_eq!(triangles, s.rollbacks * panels, "{rollback:?}");
    let changes = with_colour(&doc, CHANGE_COLOUR);
    assert_eq!(
        changes.len(),
        s.changes * panels + 1,
        "change lines and the legend's"
    );
    let incidents = with_colour(&doc, INCIDENT_COLOUR);
    assert_eq!(
        incidents.len(),
        panels + 1,
        "an incident span per panel and the legend's"
    );
    assert!(
        with_colour(&doc, FAIL_COLOUR)
            .iter()
            .filter(|n| *n == "circle")
            .count()
            > 3
    );
    assert!(
        with_colour(&doc, PASS_COLOUR)
            .iter()
            .filter(|n| *n == "circle")
            .count()
            > 100
    );
    let words = texts(&doc).join("|");
    for w in [
        "error_rate",
        "p99_latency",
        "success < 0.01",
        "failure >= 0.03",
        "would-be rollback",
        "change point",
        "incident",
        "pass",
        "fail",
    ] {
        assert!(words.contains(w), "{w} not in {words}");
    }
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("backtest.svg");
    std::fs::write(&out, &svg).unwrap();
    eprintln!("wrote {}", out.display());
}

#[test]
fn a_replay_plot_marks_its_change_and_rollback() {
    let policy = Policy::from_yaml(POLICY).unwrap();
    let options = ReplayOptions {
        start: Some(t(28_800)),
        end: Some(t(36_000)),
    };
    let (report, svg) = plot_replay(&policy, &series(), &options, &PlotOptions::default()).unwrap();
    assert_eq!(
        report,
        rollback_core::replay::run(&policy, &series(), &options).unwrap()
    );
    assert!(report.rollback_at.is_some());
    let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
    let rollback = with_colour(&doc, ROLLBACK_COLOUR);
    assert_eq!(rollback.iter().filter(|n| *n == "polygon").count(), 2);
    assert_eq!(with_colour(&doc, CHANGE_COLOUR).len(), 2 + 1);
    assert!(with_colour(&doc, INCIDENT_COLOUR).is_empty());
}

#[test]
fn a_tune_plot_shows_the_front_and_the_best() {
    let policy = Policy::from_yaml(POLICY).unwrap();
    let incidents = vec![Incident {
        start: t(30_000),
        end: t(31_800),
        name: None,
    }];
    let space = TuneSpace::from_yaml(
        "grid:\n  failure_limit: [0, 2, 5, 20]\n  probes.error_rate.failure: ['>= 0.03', '>= 0.05']\n",
    )
    .unwrap();
    let options = TuneOptions {
        backtest: BacktestOptions::new(ChangePoints::Every(Duration::from_secs(4 * 3600)))
            .incidents(incidents),
        space,
        false_rollback_budget: 1,
    };
    let report = tune(&policy, &series(), &options).unwrap();
    assert_eq!(report.candidates.len(), 8);
    assert!(!report.front.is_empty());
    let svg = plot_tune(&report, &PlotOptions::default()).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
    let words = texts(&doc).join("|");
    assert!(
        words.contains("Pareto front") && words.contains("false rollbacks"),
        "{words}"
    );
    if let Some(b) = report.best {
        assert!(
            words.contains(&format!("best within budget: #{b}")),
            "{words}"
        );
        assert!(
            with_colour(&doc, ROLLBACK_COLOUR)
                .iter()
                .any(|n| n == "circle")
        );
    }
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("tune.svg");
    std::fs::write(&out, &svg).unwrap();
    let text = report.to_string();
    assert!(text.contains("Pareto front"), "{text}");
}
