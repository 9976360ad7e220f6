//! A cross-check against Prometheus itself: for a plain threshold policy,
//! the would-be rollback times of a backtest are the times an equivalent
//! alerting rule (`for:` equal to the policy's tolerance) starts firing,
//! as `promtool test rules` evaluates it over the same series.

use std::fmt::Write as _;
use std::process::Command;
use std::time::Duration;

use rollback_core::replay::{Sample, Series};
use rollback_core::{Policy, Timestamp};
use rollback_lab::{BacktestOptions, ChangePoints, backtest};

const INSTALL_HINT: &str = "install Debian's prometheus package (it ships promtool) with `apt-get install prometheus`, or run ./scripts/test";

fn promtool() -> std::path::PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin"] {
        let p = std::path::Path::new(dir).join("promtool");
        if p.is_file() {
            return p;
        }
    }
    panic!("`promtool` was not found on this machine: {INSTALL_HINT}");
}

/// A small deterministic generator (xorshift), so the episodes are random
/// but the test is the same every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

const STEP: i64 = 10;
const HOURS: i64 = 8;
const TOLERANCE: u32 = 3;

#[test]
fn rollback_times_are_the_times_the_equivalent_alert_fires() {
    // Episodes of a bad error ratio, 1 to 9 samples long, within hourly
    // deploy windows (never across a deploy, which the alert cannot see).
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let n = (HOURS * 3600 / STEP) as usize;
    let mut values = vec![0.001f64; n];
    let mut episodes: Vec<(usize, usize)> = Vec::new();
    for hour in 0..HOURS as usize {
        let per_hour = 3600 / STEP as usize;
        let mut at = hour * per_hour + 12 + rng.below(30) as usize;
        let mut rolled_back = false;
        while at + 12 < (hour + 1) * per_hour - 12 {
            // A window ends at its rollback: later episodes of the hour
            // stay within the tolerance, so that the alert would not fire
            // where the lab no longer looks.
            let len = 1 + rng.below(if rolled_back { TOLERANCE as u64 } else { 9 }) as usize;
            rolled_back |= len > TOLERANCE as usize;
            for v in &mut values[at..at + len] {
                *v = 0.05 + rng.below(100) as f64 / 100.0;
            }
            episodes.push((at, at + len - 1));
            at += len + 12 + rng.below(40) as usize;
        }
    }
    let series: Series = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            (
                "error_ratio",
                Sample {
                    at: Timestamp::from_millis(i as i64 * STEP * 1000),
                    value: Some(*v),
                    baseline: None,
                },
            )
        })
        .collect();
    let policy = Policy::from_yaml(&format!(
        "interval: {STEP}s\nbake_time: 1h\nconsecutive_failure_limit: {TOLERANCE}\nprobes: [{{name: error_ratio, success: '< 0.05'}}]"
    ))
    .unwrap();
    let report = backtest(
        &policy,
        &series,
        &BacktestOptions::new(ChangePoints::Every(Duration::from_secs(3600))),
    )
    .unwrap();
    let rollbacks: Vec<i64> = report
        .rollbacks()
        .map(|r| r.rollback_at.unwrap().as_millis() / 1000)
        .collect();
    // The lab's own view: an episode of more than TOLERANCE samples rolls back.
    let long = episodes
        .iter()
        .filter(|(a, b)| b - a >= TOLERANCE as usize)
        .count();
    assert!(long >= 5 && long < episodes.len(), "episodes {episodes:?}");

    // The alerting rule and its test, over the same series.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yml"),
        format!(
            "groups:\n  - name: lab\n    rules:\n      - alert: ErrorRatioHigh\n        expr: error_ratio >= 0.05\n        for: {}s\n        labels: {{severity: page}}\n",
            TOLERANCE as i64 * STEP
        ),
    )
    .unwrap();
    let mut test = format!(
        "rule_files: [rules.yml]\nevaluation_interval: {STEP}s\ntests:\n  - interval: {STEP}s\n    input_series:\n      - series: 'error_ratio{{job=\"app\"}}'\n        values: '{}'\n    alert_rule_test:\n",
        values
            .iter()
            .map(|v| format!("{v}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let firing = "[{exp_labels: {job: app, severity: page}}]";
    let mut check = |at: i64, alerts: &str| {
        let _ = writeln!(
            test,
            "      - {{eval_time: {at}s, alertname: ErrorRatioHigh, exp_alerts: {alerts}}}"
        );
    };
    for &r in &rollbacks {
        check(r, firing); // fires at the rollback time,
        check(r - STEP, "[]"); // and not one evaluation before.
    }
    let mut checked_quiet = 0;
    for &(a, b) in &episodes {
        let (start, end) = (a as i64 * STEP, b as i64 * STEP);
        if !rollbacks.iter().any(|r| (start..=end).contains(r)) {
            check(end, "[]"); // an episode the policy tolerates never fires
            checked_quiet += 1;
        }
    }
    std::fs::write(dir.path().join("test.yml"), &test).unwrap();
    let out = Command::new(promtool())
        .args(["test", "rules", "test.yml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool disagrees:\n{said}");
    assert!(said.contains("SUCCESS"), "{said}");
    assert_eq!(rollbacks.len(), long, "one rollback per long episode");
    assert_eq!(checked_quiet, episodes.len() - long);
    eprintln!(
        "promtool agrees: {} rollback times, {} tolerated episodes, over {HOURS} h",
        rollbacks.len(),
        checked_quiet
    );
}
