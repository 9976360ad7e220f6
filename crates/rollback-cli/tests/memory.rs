//! The command on `memory://` targets and `scripted` probes: every exit
//! code of `watch`, several targets (the worst wins), signals, `-o json`,
//! resuming, bad input, and the other subcommands. No server.

mod common;

use std::time::Duration;

use common::{Running, policy, rollback, write};
use predicates::prelude::*;
use predicates::str::contains;

/// Targets `memory://shop/a` (a1 good, a2 current) and `memory://shop/b`
/// (b1 good, b2 current), judged by one probe whose values are given per
/// revision.
fn two_targets(policy: &str, per_revision: &str) -> String {
    format!(
        "{policy}probes:\n  - name: error_rate\n    success: \"< 0.01\"\n    scripted:\n      per_revision: {per_revision}\n\
         targets:\n  - url: memory://shop/a\n    revisions: [{{id: a1, health: good}}, a2]\n  - url: memory://shop/b\n    revisions: [{{id: b1, health: good}}, b2]\n"
    )
}

const GOOD_A_BAD_B: &str = "{a2: [0.001], b2: [0.05], b1: [0.001]}";

#[test]
fn the_example_rolls_back_and_verifies_exit_3() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    rollback(std::path::Path::new(root))
        .args(["watch", "-c", "examples/watch/quickstart.yaml"])
        .assert()
        .code(3)
        .stdout(contains("shop/checkout    watching revision v2"))
        .stdout(contains("decision rollback: roll back from v2 to v1"))
        .stdout(contains("decision complete: rollback to v1 verified"))
        .stdout(contains("result: rolled back, exit 3"));
}

#[test]
fn a_healthy_revision_is_promoted_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "w.yaml",
        &two_targets(&policy("600ms", ""), "{a2: [0.001], b2: [0.002]}"),
    );
    rollback(dir.path())
        .args(["watch", "-c"])
        .arg(&file)
        .assert()
        .code(0)
        .stdout(contains("shop/a: promoted"))
        .stdout(contains("shop/b: promoted"));
}

#[test]
fn a_failed_verification_escalates_exit_4() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "w.yaml",
        &two_targets(
            &policy("10s", ""),
            "{a2: [0.05], a1: [0.05], b2: [0.05], b1: [0.05]}",
        ),
    );
    rollback(dir.path())
        .args(["watch", "-c"])
        .arg(&file)
        .arg("memory://shop/a")
        .assert()
        .code(4)
        .stdout(contains("shop/a: escalated"))
        .stdout(contains("shop/b").not());
}

#[test]
fn a_breach_in_a_dry_run_asks_humans_exit_4() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "w.yaml",
        &two_targets(&policy("10s", "  dry_run: true\n"), GOOD_A_BAD_B),
    );
    rollback(dir.path())
        .args(["watch", "-c"])
        .arg(&file)
        .arg("memory://shop/b")
        .assert()
        .code(4)
        .stdout(contains("breached at").and(contains("would roll back to b1")));
}

#[test]
fn a_watch_longer_than_the_timeout_exits_5_and_resumes_next_time() {
    let dir = tempfile::tempdir().unwrap();
    let text = two_targets(&policy("1h", ""), "{a2: [0.001], b2: [0.001]}") + "state: state\n";
    let file = write(dir.path(), "w.yaml", &text);
    rollback(dir.path())
        .args(["watch", "--timeout", "700ms", "-c"])
        .arg(&file)
        .assert()
        .code(5)
        .stdout(contains("shop/a: observing"))
        .stdout(contains("stopped by timeout, exit 5"));
    rollback(dir.path())
        .args(["watch", "--timeout", "300ms", "-c"])
        .arg(&file)
        .assert()
        .code(5)
        .stdout(contains("resumed watch of a2 while observing"));
    rollback(dir.path())
        .args(["status", "-c"])
        .arg(&file)
        .assert()
        .code(0)
        .stdout(contains("shop/a  a2  observing, bake time ends"));
}

#[test]
fn with_several_targets_the_worst_wins() {
    let dir = tempfile::tempdir().unwrap();
    // promoted (0) and rolled back (3): 3
    let file = write(
        dir.path(),
        "a.yaml",
        &two_targets(&policy("600ms", ""), GOOD_A_BAD_B),
    );
    rollback(dir.path())
        .args(["watch", "-c"])
        .arg(&file)
        .assert()
        .code(3)
        .stdout(contains("shop/a: promoted").and(contains("shop/b: rolled back to b1")));
    // rolled back (3) and timed out (5): 5
    let file = write(
        dir.path(),
        "b.yaml",
        &two_targets(&policy("1h", ""), GOOD_A_BAD_B),
    );
    rollback(dir.path())
        .args(["watch", "--timeout", "2s", "-c"])
        .arg(&file)
        .assert()
        .code(5)
        .stdout(contains("shop/a: observing").and(contains("shop/b: rolled back to b1")));
    // escalated (4) and timed out (5): 4
    let file = write(
        dir.path(),
        "c.yaml",
        &two_targets(&policy("1h", ""), "{a2: [0.001], b2: [0.05], b1: [0.05]}"),
    );
    rollback(dir.path())
        .args(["watch", "--timeout", "2s", "-c"])
        .arg(&file)
        .assert()
        .code(4)
        .stdout(contains("shop/a: observing").and(contains("shop/b: escalated")))
        .stdout(contains("stopped by timeout, exit 4"));
}

#[test]
fn json_output_is_one_object_per_record_then_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "w.yaml",
        &two_targets(&policy("10s", ""), GOOD_A_BAD_B),
    );
    let out = rollback(dir.path())
        .args(["watch", "-o", "json", "-c"])
        .arg(&file)
        .arg("memory://shop/b")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let (summary, records) = lines.split_last().unwrap();
    assert!(
        records
            .iter()
            .all(|r| r["event"].is_string() && r["target"] == "shop/b")
    );
    assert!(
        records
            .iter()
            .any(|r| r["event"] == "decided" && r["decision"] == "rollback")
    );
    let s = &summary["summary"];
    assert_eq!(s["exit_code"], 3);
    assert_eq!(s["outcome"], "rolled_back");
    assert_eq!(s["targets"][0]["phase"]["phase"], "rolled_back");
    assert_eq!(s["targets"][0]["phase"]["to"], "b1");
}

fn signalled(signal: &str, code: i32) {
    let dir = tempfile::tempdir().unwrap();
    let text = two_targets(&policy("1h", ""), "{a2: [0.001], b2: [0.001]}")
        + "state: state\naudit: audit.jsonl\n";
    write(dir.path(), "w.yaml", &text);
    let mut run = Running::start(dir.path(), &["watch", "-c", "w.yaml"]);
    run.wait_for("error_rate on a2", Duration::from_secs(30));
    run.signal(signal);
    let (got, lines) = run.finish();
    assert_eq!(got, code, "{}", lines.join("\n"));
    let last = lines.last().unwrap();
    assert!(
        last.contains(&format!("stopped by SIG{signal}, exit {code}")),
        "{last}"
    );
    // The state was saved and the audit log is whole: the next watch resumes.
    rollback(dir.path())
        .args(["audit", "verify", "audit.jsonl"])
        .assert()
        .code(0)
        .stdout(contains("chain intact"));
    rollback(dir.path())
        .args(["watch", "--timeout", "300ms", "-c", "w.yaml"])
        .assert()
        .code(5)
        .stdout(contains("resumed watch of a2 while observing"));
}

#[test]
fn sigint_stops_cleanly_with_130() {
    signalled("INT", 130);
}

#[test]
fn sigterm_stops_cleanly_with_143() {
    signalled("TERM", 143);
}

#[test]
fn check_lists_every_problem_with_its_field() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(
        dir.path(),
        "good.yaml",
        &two_targets(&policy("1m", ""), GOOD_A_BAD_B),
    );
    rollback(dir.path())
        .args(["check", "-c"])
        .arg(&good)
        .assert()
        .code(0)
        .stdout(contains("SUCCESS: 2 targets, 1 probe"));
    let bad = write(
        dir.path(),
        "bad.yaml",
        "policy:\n  interval: 100ms\n  intervl: 1s\nprobes:\n  - name: error_rate\n    success: \"< 0.01\"\n    prometheus: {url: \"http://127.0.0.1:9\"}\n\
         targets:\n  - shop/checkout\n  - nomad://jobs/web\n  - url: memory://a\n    revisions: [v1]\n  - url: memory://a\n    revisions: [v1]\n",
    );
    rollback(dir.path())
        .args(["check", "-c"])
        .arg(&bad)
        .assert()
        .code(1)
        .stdout(contains("Checking"))
        .stderr(contains("FAILED"))
        .stderr(contains("bad.yaml"))
        .stderr(contains("targets[0].url").and(contains("has no scheme")))
        .stderr(
            contains("targets[1]")
                .and(contains("unknown scheme \"nomad\""))
                .and(contains("this build knows")),
        )
        .stderr(contains("targets[3].url").and(contains("already targets[2]")))
        .stderr(contains("probes[0].prometheus").and(contains("query")));
}

#[test]
fn bad_input_is_a_short_error_naming_what_and_where() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["watch", "-c", "missing.yaml"],
        vec!["check", "-c", "missing.yaml"],
        vec!["status", "-c", "missing.yaml"],
        vec!["replay", "-c", "missing.yaml", "--series", "s.csv"],
    ] {
        rollback(dir.path())
            .args(&args)
            .assert()
            .code(1)
            .stderr(contains("missing.yaml").and(contains("cannot read")));
    }
    rollback(dir.path())
        .args(["undo", "shop/checkout"])
        .assert()
        .code(1)
        .stderr(contains("\"shop/checkout\" has no scheme"));
    rollback(dir.path())
        .args(["history", "nomad://jobs/web"])
        .assert()
        .code(1)
        .stderr(contains("unknown scheme \"nomad\"").and(contains("codedeploy")));
    rollback(dir.path())
        .args(["undo", "memory://a", "--option", "revisions"])
        .assert()
        .code(1)
        .stderr(contains("KEY=VALUE"));
    let file = write(
        dir.path(),
        "w.yaml",
        &two_targets(&policy("1m", ""), GOOD_A_BAD_B),
    );
    rollback(dir.path())
        .args(["watch", "-c"])
        .arg(&file)
        .arg("memory://shop/c")
        .assert()
        .code(1)
        .stderr(contains("memory://shop/c is not in watch file"));
    // usage errors are clap's: exit 2
    rollback(dir.path()).args(["watch"]).assert().code(2);
    rollback(dir.path())
        .args(["undo", "memory://a", "--dry-run=maybe"])
        .assert()
        .code(2);
}

#[test]
fn undo_and_history_of_a_memory_target() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "w.yaml",
        &two_targets(&policy("1m", ""), GOOD_A_BAD_B),
    );
    rollback(dir.path())
        .args(["history", "memory://shop/a", "-c"])
        .arg(&file)
        .assert()
        .code(0)
        .stdout(contains("REVISION  HEALTH   CURRENT  ID  LABEL"))
        .stdout(contains("2         unknown  *        a2"))
        .stdout(contains("1         good              a1"));
    let out = rollback(dir.path())
        .args([
            "history",
            "memory://x",
            "-o",
            "json",
            "--option",
            "revisions=[v1, v2, v3]",
        ])
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["v3", "v2", "v1"]);
    assert_eq!(rows[0]["current"], true);
    rollback(dir.path())
        .args([
            "history",
            "memory://x",
            "-o",
            "yaml",
            "--option",
            "revisions=[v1, v2]",
        ])
        .assert()
        .code(0)
        .stdout(contains("- revision: 2\n  id: v2"));
    rollback(dir.path())
        .args(["undo", "memory://shop/a", "-c"])
        .arg(&file)
        .assert()
        .code(0)
        .stdout("memory://shop/a rolled back: rolled shop/a back to a1\n");
    rollback(dir.path())
        .args([
            "undo",
            "memory://x",
            "--option",
            "revisions=[v1, v2, v3]",
            "--to-revision",
            "1",
            "--dry-run=client",
        ])
        .assert()
        .code(0)
        .stdout(contains("v1").and(contains("(dry run)")));
    rollback(dir.path())
        .args([
            "undo",
            "memory://x",
            "--option",
            "revisions=[v1, v2]",
            "--to",
            "last-good",
        ])
        .assert()
        .code(1)
        .stderr(contains(
            "no revision of memory://x other than the current one is marked good",
        ));
    rollback(dir.path())
        .args(["undo", "memory://x", "--option", "revisions=[v1]"])
        .assert()
        .code(1)
        .stderr(contains("no rollout history found for memory://x"));
}

#[test]
fn status_replay_audit_and_completions() {
    let dir = tempfile::tempdir().unwrap();
    let text = two_targets(&policy("10s", ""), GOOD_A_BAD_B) + "state: state\naudit: audit.jsonl\n";
    let file = write(dir.path(), "w.yaml", &text);
    rollback(dir.path())
        .args(["watch", "-c", "w.yaml", "memory://shop/b"])
        .assert()
        .code(3);
    rollback(dir.path())
        .args(["status", "--state", "state"])
        .assert()
        .code(0)
        .stdout(contains("shop/b  b2  rolled back to b1"));
    rollback(dir.path())
        .args(["status", "-c", "w.yaml"])
        .assert()
        .code(0)
        .stdout(
            contains("last decision:").and(contains("decision complete: rollback to b1 verified")),
        );
    rollback(dir.path())
        .args(["audit", "show", "audit.jsonl"])
        .assert()
        .code(0)
        .stdout(contains("shop/b").and(contains("decision rollback: roll back from b2 to b1")));
    // An edited line breaks the chain.
    let audit = dir.path().join("audit.jsonl");
    let edited = std::fs::read_to_string(&audit)
        .unwrap()
        .replacen("0.05", "0.005", 1);
    std::fs::write(&audit, edited).unwrap();
    rollback(dir.path())
        .args(["audit", "verify", "audit.jsonl"])
        .assert()
        .code(1)
        .stderr(contains("chain broken at line"));
    // Replay: when and why the policy would have rolled back.
    let mut csv = String::from("timestamp,probe,value\n");
    for i in 0..40 {
        let v = if i < 10 { 0.001 } else { 0.05 };
        csv.push_str(&format!(
            "{},error_rate,{v}\n",
            1_793_491_200.0 + f64::from(i) * 0.1
        ));
    }
    write(dir.path(), "series.csv", &csv);
    rollback(dir.path())
        .args(["replay", "-c"])
        .arg(&file)
        .args(["--series", "series.csv"])
        .assert()
        .code(0)
        .stdout(contains("would roll back at 2026-11-01T00:00:01").and(contains("error_rate")));
    rollback(dir.path())
        .args(["completions", "bash"])
        .assert()
        .code(0)
        .stdout(contains("_rollback()"));
    rollback(dir.path())
        .args(["--help"])
        .assert()
        .code(0)
        .stdout(contains("Exit codes:").and(contains("1 > 4 > 5 > 3 > 0")));
    rollback(dir.path())
        .args(["watch", "--help"])
        .assert()
        .code(0)
        .stdout(contains("Exit codes:"));
}

#[test]
fn a_release_across_dependent_targets_rolls_back_dependents_first() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let out = rollback(std::path::Path::new(root))
        .args(["watch", "-c", "examples/watch/release.yaml"])
        .assert()
        .code(3)
        .stdout(contains("shop/frontend: rolled back to web-1"))
        .stdout(contains("shop/api: rolled back to api-1"))
        .stdout(contains("shop/schema: rolled back to schema-1"))
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    let started = |t: &str| {
        text.find(&format!("{t:<16} rollback to "))
            .unwrap_or_else(|| panic!("no rollback of {t} in\n{text}"))
    };
    assert!(started("shop/frontend") < started("shop/api"), "{text}");
    assert!(started("shop/api") < started("shop/schema"), "{text}");
}
