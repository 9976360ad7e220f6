//! The canary judge's rank-sum numbers against R's
//! `wilcox.test(canary, baseline, conf.int = TRUE, exact = FALSE, correct = TRUE)`
//! (Debian's r-base-core, which `./scripts/test` installs), on fixtures
//! generated here: continuous and tied values, equal and unequal sizes,
//! small and large samples, tiny and large scales, shifted and not.
//!
//! R finds the estimate and the bounds with `uniroot` to `tol.root`; it is
//! set to 1e-13 here so that R's answer is as exact as this crate's
//! bisection. Where half the pairwise differences lie on each side of the
//! estimate (an even number of pairs), any point between the two middle
//! differences is a root: R's must lie between them, this crate's is their
//! middle, the median of the differences.

use std::fmt::Write as _;
use std::process::Command;

use rollback_core::canary::{MannWhitney, Samples, rank_sum};
use rollback_core::condition::{NoData, Verdict};

struct Case {
    name: String,
    canary: Vec<f64>,
    baseline: Vec<f64>,
    confidence: f64,
}

fn normalish(rng: &mut fastrand::Rng, n: usize, mean: f64, spread: f64) -> Vec<f64> {
    // The sum of four uniforms, centred: close enough to normal, and exact to generate.
    (0..n)
        .map(|_| {
            let s: f64 = (0..4).map(|_| rng.f64()).sum::<f64>() - 2.0;
            mean + spread * s
        })
        .collect()
}

fn cases() -> Vec<Case> {
    let mut rng = fastrand::Rng::with_seed(14);
    let mut out = Vec::new();
    let mut add = |name: &str, canary: Vec<f64>, baseline: Vec<f64>, confidence: f64| {
        out.push(Case {
            name: name.to_owned(),
            canary,
            baseline,
            confidence,
        })
    };
    for (i, (n, m)) in [
        (5, 7),
        (9, 11),
        (15, 15),
        (21, 13),
        (40, 31),
        (3, 5),
        (200, 151),
    ]
    .into_iter()
    .enumerate()
    {
        for (shift, label) in [(0.0, "same"), (0.3, "shifted"), (1.5, "far")] {
            let canary = normalish(&mut rng, n, 100.0 + shift * 10.0, 10.0);
            let baseline = normalish(&mut rng, m, 100.0, 10.0);
            let confidence = [0.98, 0.95, 0.9][i % 3];
            add(&format!("{label} {n}x{m}"), canary, baseline, confidence);
        }
    }
    // Ties: request counts and latencies rounded to whole milliseconds.
    for (n, m) in [(11, 9), (25, 17), (7, 7)] {
        let canary: Vec<f64> = normalish(&mut rng, n, 12.0, 4.0)
            .into_iter()
            .map(f64::round)
            .collect();
        let baseline: Vec<f64> = normalish(&mut rng, m, 10.0, 4.0)
            .into_iter()
            .map(f64::round)
            .collect();
        add(&format!("tied {n}x{m}"), canary, baseline, 0.98);
    }
    // Kayenta's scale: values near 0.0333.
    let canary = normalish(&mut rng, 31, 0.03334, 0.000004);
    let baseline = normalish(&mut rng, 29, 0.03333, 0.000004);
    add("tiny scale 31x29", canary, baseline, 0.98);
    // Large values.
    let canary = normalish(&mut rng, 17, 2.0e9, 4.0e7);
    let baseline = normalish(&mut rng, 19, 1.9e9, 4.0e7);
    add("large scale 17x19", canary, baseline, 0.98);
    out
}

fn r_vector(v: &[f64]) -> String {
    let items: Vec<String> = v.iter().map(|x| format!("{x:e}")).collect();
    format!("c({})", items.join(", "))
}

/// R's answers, one line per case: statistic, p-value, estimate, low, high.
fn ask_r(cases: &[Case]) -> Vec<[f64; 5]> {
    let mut script = String::from("options(digits = 17)\n");
    for c in cases {
        writeln!(
            script,
            "t <- wilcox.test({}, {}, conf.int = TRUE, exact = FALSE, correct = TRUE, conf.level = {}, tol.root = 1e-13)\n\
             cat(sprintf('%.17g', c(t$statistic, t$p.value, t$estimate, t$conf.int)), '\\n')",
            r_vector(&c.canary),
            r_vector(&c.baseline),
            c.confidence
        )
        .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cases.R");
    std::fs::write(&path, script).unwrap();
    let out = Command::new("Rscript")
        .arg("--vanilla")
        .arg(&path)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run Rscript ({e}): install Debian's r-base-core (./scripts/test does)")
        });
    assert!(
        out.status.success(),
        "Rscript failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<[f64; 5]> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Vec<f64> = l.split_whitespace().map(|x| x.parse().unwrap()).collect();
            [v[0], v[1], v[2], v[3], v[4]]
        })
        .collect();
    assert_eq!(rows.len(), cases.len(), "R answered {text}");
    rows
}

fn close(a: f64, b: f64, scale: f64, what: &str, case: &str) {
    let tolerance = 1e-9 * scale.max(f64::MIN_POSITIVE);
    assert!(
        (a - b).abs() <= tolerance,
        "{case}: {what}: this crate {a}, R {b} (difference {}, tolerance {tolerance})",
        (a - b).abs()
    );
}

#[test]
fn rank_sum_agrees_with_r() {
    let cases = cases();
    let r = ask_r(&cases);
    for (c, [w, p, estimate, low, high]) in cases.iter().zip(r) {
        let t = rank_sum(&c.canary, &c.baseline, c.confidence).unwrap();
        let scale = c
            .canary
            .iter()
            .chain(&c.baseline)
            .fold(0.0f64, |m, v| m.max(v.abs()));
        assert_eq!(t.u, w, "{}: U", c.name);
        assert!(
            (t.p_value - p).abs() <= 1e-12 + 1e-9 * p,
            "{}: p: this crate {}, R {p}",
            c.name,
            t.p_value
        );
        close(t.low, low, scale, "lower bound", &c.name);
        close(t.high, high, scale, "upper bound", &c.name);
        let mut diffs: Vec<f64> = c
            .canary
            .iter()
            .flat_map(|x| c.baseline.iter().map(move |y| x - y))
            .collect();
        diffs.sort_by(f64::total_cmp);
        let k = diffs.len();
        if k % 2 == 1 {
            close(t.estimate, estimate, scale, "estimate", &c.name);
            close(
                t.estimate,
                diffs[k / 2],
                scale,
                "median difference",
                &c.name,
            );
        } else {
            let (a, b) = (diffs[k / 2 - 1], diffs[k / 2]);
            let slack = 1e-9 * scale;
            assert!(
                estimate >= a - slack && estimate <= b + slack,
                "{}: R's estimate {estimate} is not between the middle differences {a} and {b}",
                c.name
            );
            close(
                t.estimate,
                (a + b) / 2.0,
                scale,
                "median difference",
                &c.name,
            );
        }
        assert!(
            t.low <= t.estimate && t.estimate <= t.high,
            "{}: {t:?}",
            c.name
        );
    }
}

#[test]
fn the_judge_follows_the_interval() {
    // The classification reads the interval R computes: far shifts fail,
    // equal distributions mostly pass at 98 %.
    let cases = cases();
    let judge = MannWhitney::default();
    for c in cases.iter().filter(|c| c.name.starts_with("far")) {
        let j = judge.judge(
            &Samples::new(c.canary.clone(), c.baseline.clone()),
            NoData::Inconclusive,
        );
        if c.canary.len() >= 5 {
            assert_eq!(j.verdict, Verdict::Fail, "{}: {j}", c.name);
        }
    }
}
