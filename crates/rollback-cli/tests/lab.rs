//! The policy lab through the command: `replay --plot`, `backtest` and
//! `tune` on a watch file's policy and a recorded CSV. No server.

mod common;

use common::{rollback, write};
use predicates::str::contains;

const FILE: &str = r#"
policy:
  interval: 10s
  bake_time: 1h
  consecutive_failure_limit: 2
probes:
  - name: error_rate
    success: "< 0.05"
    scripted: { values: [0.001] }
targets: [{ url: memory://shop/checkout, revisions: [v1] }]
"#;

/// A day of 10-second samples, `timestamp,value`, with one bad hour.
fn day() -> String {
    let mut csv = String::from("timestamp,value\n");
    for i in 0..8640i64 {
        let bad = (36_000..39_600).contains(&(i * 10));
        csv.push_str(&format!(
            "{},{}\n",
            1_795_780_800 + i * 10,
            if bad { 0.2 } else { 0.001 }
        ));
    }
    csv
}

#[test]
fn backtest_counts_detections_and_false_rollbacks() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "w.yaml", FILE);
    write(dir.path(), "err.csv", &day());
    write(
        dir.path(),
        "incidents.csv",
        "start,end,name\n1795816800,1795820400,INC-7\n",
    );
    rollback(dir.path())
        .args(["backtest", "-c"])
        .arg(&file)
        .args(["--series", "error_rate=err.csv", "--every", "1h"])
        .args(["--incidents", "incidents.csv", "--plot", "backtest.svg"])
        .assert()
        .code(0)
        .stdout(contains("24"))
        .stdout(contains("INC-7"));
    let svg = std::fs::read_to_string(dir.path().join("backtest.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
        "{}",
        &svg[..80]
    );
    let json = rollback(dir.path())
        .args(["backtest", "-c"])
        .arg(&file)
        .args([
            "--series",
            "error_rate=err.csv",
            "--every",
            "1h",
            "--incidents",
            "incidents.csv",
            "-o",
            "json",
        ])
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(v["summary"]["detections"], 1, "{v}");
    assert_eq!(v["summary"]["false_rollbacks"], 0, "{v}");
}

#[test]
fn tune_prints_the_best_policy_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "w.yaml", FILE);
    write(dir.path(), "err.csv", &day());
    write(
        dir.path(),
        "incidents.csv",
        "start,end\n1795816800,1795820400\n",
    );
    write(
        dir.path(),
        "space.yaml",
        "grid:\n  consecutive_failure_limit: [1, 2, 4]\n  probes.error_rate.success: ['< 0.05', '< 0.5']\n",
    );
    rollback(dir.path())
        .args(["tune", "-c"])
        .arg(&file)
        .args([
            "--series",
            "error_rate=err.csv",
            "--every",
            "1h",
            "--incidents",
            "incidents.csv",
        ])
        .args([
            "--space",
            "space.yaml",
            "--write-policy",
            "best.yaml",
            "--plot",
            "tune.svg",
        ])
        .assert()
        .code(0);
    let best = std::fs::read_to_string(dir.path().join("best.yaml")).unwrap();
    assert!(
        best.contains("< 0.05"),
        "the threshold that catches the incident: {best}"
    );
    assert!(dir.path().join("tune.svg").exists());
    // A space whose every policy rolls back healthy deploys has nothing
    // within a budget of none.
    write(
        dir.path(),
        "jumpy.yaml",
        "grid:\n  probes.error_rate.success: ['< 0.0001']\n",
    );
    rollback(dir.path())
        .args(["tune", "-c"])
        .arg(&file)
        .args([
            "--series",
            "error_rate=err.csv",
            "--every",
            "1h",
            "--space",
            "jumpy.yaml",
        ])
        .args(["--incidents", "incidents.csv"])
        .assert()
        .code(1)
        .stderr(contains(
            "no policy of the space stays within 0 false rollbacks",
        ));
}

#[test]
fn replay_draws_its_plot_and_bad_input_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "w.yaml", FILE);
    write(dir.path(), "err.csv", &day());
    rollback(dir.path())
        .args(["replay", "-c"])
        .arg(&file)
        .args(["--series", "error_rate=err.csv", "--plot", "replay.svg"])
        .assert()
        .code(0)
        .stdout(contains("would not roll back: ended promoted"));
    assert!(dir.path().join("replay.svg").exists());
    rollback(dir.path())
        .args(["backtest", "-c"])
        .arg(&file)
        .args(["--series", "missing.csv", "--every", "1h"])
        .assert()
        .code(1)
        .stderr(contains("missing.csv"));
    rollback(dir.path())
        .args(["backtest", "-c"])
        .arg(&file)
        .args(["--series", "error_rate=err.csv"])
        .assert()
        .code(2);
}
