//! The burn-rate probe cross-checked against something this project did
//! not write: sloth-style recording and alerting rules for the same SLO
//! (sloth's `events` SLI recording rules and its multiwindow,
//! multi-burn-rate alert), evaluated by `promtool test rules` over the same
//! series, fire at exactly the evaluation steps where the probe's
//! measurement fails `success: "<= 1"`: the probe against a real Prometheus
//! holding the same series (backfilled with `promtool tsdb
//! create-blocks-from openmetrics`), both with instant queries at each step
//! and with the range queries of its history.

mod support;

use std::fmt::Write as _;
use std::time::Duration;

use rollback_core::time::{Clock, SystemClock};
use rollback_core::{HealthProbe, ProbeContext, RevisionId, TargetId, Timestamp};
use rollback_prometheus::{BurnRateConfig, BurnRateProbe, HistoryRange, PrometheusClient};
use support::{PrometheusServer, PrometheusSetup, require_binary};

const MINUTES: i64 = 12 * 60;
const PER_MINUTE: f64 = 1000.0;

/// The error ratio of each minute: healthy (0.05 %, burn 0.5), a fast burn
/// (3 %, burn 30) for 40 minutes from 3h, and a slow one (1.2 %, burn 12,
/// under the fast pair's 14.4) from 6h to 10h.
fn ratio(minute: i64) -> f64 {
    match minute {
        180..220 => 0.03,
        360..600 => 0.012,
        _ => 0.0005,
    }
}

/// The two counters, one value a minute from minute 0.
fn counters() -> (Vec<f64>, Vec<f64>) {
    let (mut ok, mut bad) = (vec![0.0], vec![0.0]);
    for m in 1..=MINUTES {
        let errors = (PER_MINUTE * ratio(m)).round();
        ok.push(ok[ok.len() - 1] + PER_MINUTE - errors);
        bad.push(bad[bad.len() - 1] + errors);
    }
    (ok, bad)
}

const OBJECTIVE: f64 = 99.9;
/// The Workbook's two paging pairs (sloth's page alert); the ticket pairs'
/// day-long windows would make the test's series days long.
const PAIRS: [(&str, &str, f64); 2] = [("1h", "5m", 14.4), ("6h", "30m", 6.0)];

/// Sloth's rules for the SLO, as sloth writes them for an `events` SLI:
/// one `slo:sli_error:ratio_rate<window>` recording rule per window, and
/// the alert `(short > f*budget and long > f*budget) or (...)` with
/// `max(...) without (sloth_window)`.
fn sloth_rules() -> String {
    let budget = 1.0 - OBJECTIVE / 100.0;
    let mut out =
        String::from("groups:\n  - name: sloth-slo-sli-recordings-app-requests\n    rules:\n");
    let mut windows: Vec<&str> = PAIRS.iter().flat_map(|(l, s, _)| [*l, *s]).collect();
    windows.sort();
    windows.dedup();
    for w in windows {
        let _ = write!(
            out,
            "      - record: slo:sli_error:ratio_rate{w}\n        expr: |\n          (sum(rate(http_requests_total{{job=\"app\",code=~\"5..\"}}[{w}])))\n          /\n          (sum(rate(http_requests_total{{job=\"app\"}}[{w}])))\n        labels:\n          sloth_id: app-requests\n          sloth_service: app\n          sloth_slo: requests\n          sloth_window: {w}\n"
        );
    }
    let filter = "{sloth_id=\"app-requests\", sloth_service=\"app\", sloth_slo=\"requests\"}";
    let pair = |(long, short, f): (&str, &str, f64)| {
        format!(
            "(\n            max(slo:sli_error:ratio_rate{short}{filter} > ({f} * {budget})) without (sloth_window)\n            and\n            max(slo:sli_error:ratio_rate{long}{filter} > ({f} * {budget})) without (sloth_window)\n          )"
        )
    };
    let _ = write!(
        out,
        "  - name: sloth-slo-alerts-app-requests\n    rules:\n      - alert: AppRequestsHighErrorRate\n        expr: |\n          {}\n          or\n          {}\n        labels:\n          sloth_severity: page\n",
        pair(PAIRS[0]),
        pair(PAIRS[1])
    );
    out
}

fn values(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A `promtool test rules` file: the same series, and at every step the
/// alert firing exactly where `fires` says.
fn promtool_test(steps: &[(i64, bool)]) -> String {
    let (ok, bad) = counters();
    let mut out = format!(
        "rule_files: [rules.yml]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n      - series: 'http_requests_total{{job=\"app\",code=\"200\"}}'\n        values: '{}'\n      - series: 'http_requests_total{{job=\"app\",code=\"500\"}}'\n        values: '{}'\n    alert_rule_test:\n",
        values(&ok),
        values(&bad)
    );
    for &(minute, fires) in steps {
        let _ = write!(
            out,
            "      - eval_time: {minute}m\n        alertname: AppRequestsHighErrorRate\n"
        );
        if fires {
            out.push_str("        exp_alerts:\n          - exp_labels: {sloth_id: app-requests, sloth_service: app, sloth_slo: requests, sloth_severity: page}\n");
        } else {
            out.push_str("        exp_alerts: []\n");
        }
    }
    out
}

fn openmetrics(t0: i64) -> String {
    let (ok, bad) = counters();
    let mut out = String::from("# HELP http_requests Requests.\n# TYPE http_requests counter\n");
    for (m, (o, b)) in ok.iter().zip(&bad).enumerate() {
        let at = t0 + m as i64 * 60;
        let _ = writeln!(
            out,
            "http_requests_total{{code=\"200\",job=\"app\"}} {o} {at}"
        );
        let _ = writeln!(
            out,
            "http_requests_total{{code=\"500\",job=\"app\"}} {b} {at}"
        );
    }
    out.push_str("# EOF\n");
    out
}

fn run(command: &mut std::process::Command) -> String {
    let out = command.output().expect("the command runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{command:?} failed:\n{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_fails_where_sloths_alert_fires() {
    let promtool = require_binary("promtool");
    let dir = tempfile::tempdir().unwrap();
    // Recent enough for the server's retention, whole minutes.
    let t0 = (SystemClock.now().as_millis() / 1000 - 14 * 3600) / 60 * 60;
    let input = dir.path().join("history.om");
    std::fs::write(&input, openmetrics(t0)).unwrap();
    let tsdb = dir.path().join("tsdb");
    run(std::process::Command::new(&promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(&tsdb));
    let prom = PrometheusServer::start(PrometheusSetup {
        tsdb: Some(tsdb),
        ..Default::default()
    })
    .await;

    let config: BurnRateConfig = serde_json::from_value(serde_json::json!({
        "url": prom.url(),
        "objective": OBJECTIVE,
        "bad": "sum(increase(http_requests_total{job=\"app\",code=~\"5..\"}[{{window}}]))",
        "total": "sum(increase(http_requests_total{job=\"app\"}[{{window}}]))",
        "windows": PAIRS.iter().map(|(l, s, f)| serde_json::json!({"long": l, "short": s, "factor": f})).collect::<Vec<_>>(),
        "at_context_time": true,
    }))
    .unwrap();
    let client = PrometheusClient::builder(prom.url())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let probe = BurnRateProbe::new("error-budget", client, &config).unwrap();

    // Every 5 minutes from 10m: the probe's instant measurement at each.
    let at = |minute: i64| Timestamp::from_millis((t0 + minute * 60) * 1000);
    let mut steps = Vec::new();
    for minute in (10..=MINUTES).step_by(5) {
        let ctx = ProbeContext::new(TargetId::new("app"), RevisionId::new("v2"), at(minute));
        let m = probe.measure(&ctx).await.unwrap();
        let v = m.value.unwrap();
        assert!(v.is_finite(), "minute {minute}: {m:?}");
        let fires = v > 1.0;
        if fires {
            let d = m.detail.as_deref().unwrap();
            assert!(d.contains(" fires: burn rates "), "{d}");
        }
        steps.push((minute, fires));
    }
    let firing: Vec<i64> = steps.iter().filter(|s| s.1).map(|s| s.0).collect();
    // Not vacuous: the fast burn fires the 1h/5m pair within its 40 minutes,
    // the slow one the 6h/30m pair, and the healthy hours nothing.
    assert!(firing.iter().any(|m| (180..230).contains(m)), "{firing:?}");
    assert!(firing.iter().any(|m| (400..620).contains(m)), "{firing:?}");
    assert!(firing.iter().all(|m| (180..640).contains(m)), "{firing:?}");

    // The same steps through the range queries of the probe's history.
    let history = probe
        .history(
            &TargetId::new("app"),
            &RevisionId::new("v2"),
            HistoryRange {
                start: at(10),
                end: at(MINUTES),
                step: Duration::from_secs(300),
            },
        )
        .await
        .unwrap();
    let from_history: Vec<(i64, bool)> = history
        .iter()
        .map(|s| {
            let minute = (s.at.as_millis() / 1000 - t0) / 60;
            (minute, s.value.unwrap() > 1.0)
        })
        .collect();
    assert_eq!(from_history, steps);

    // promtool evaluates sloth's rules over the same series: the alert fires
    // at exactly those steps.
    std::fs::write(dir.path().join("rules.yml"), sloth_rules()).unwrap();
    std::fs::write(dir.path().join("test.yml"), promtool_test(&steps)).unwrap();
    run(std::process::Command::new(&promtool)
        .args(["check", "rules", "rules.yml"])
        .current_dir(dir.path()));
    let out = run(std::process::Command::new(&promtool)
        .args(["test", "rules", "test.yml"])
        .current_dir(dir.path()));
    assert!(out.contains("SUCCESS"), "{out}");
    eprintln!(
        "{} steps, the alert firing at {} of them, as the probe fails: {firing:?}",
        steps.len(),
        firing.len()
    );
}

/// Bad input against the same real Prometheus: never a pass. No pair judged
/// is NaN (the engine's inconclusive), with the reason in the detail;
/// queries of the wrong shape are probe errors naming the query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_inconclusive_or_a_probe_error() {
    let promtool = require_binary("promtool");
    let dir = tempfile::tempdir().unwrap();
    let t0 = (SystemClock.now().as_millis() / 1000 - 14 * 3600) / 60 * 60;
    let input = dir.path().join("history.om");
    std::fs::write(&input, openmetrics(t0)).unwrap();
    let tsdb = dir.path().join("tsdb");
    run(std::process::Command::new(&promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(&tsdb));
    let prom = PrometheusServer::start(PrometheusSetup {
        tsdb: Some(tsdb),
        ..Default::default()
    })
    .await;
    let bad = "sum(increase(http_requests_total{job=\"app\",code=~\"5..\"}[{{window}}]))";
    let total = "sum(increase(http_requests_total{job=\"app\"}[{{window}}]))";
    let measure = |bad: String, total: String| {
        let url = prom.url();
        async move {
            let config: BurnRateConfig = serde_json::from_value(serde_json::json!({
                "url": url, "objective": OBJECTIVE, "bad": bad, "total": total,
                "windows": [{"long": "1h", "short": "5m", "factor": 14.4}],
                "at_context_time": true,
            }))
            .unwrap();
            let probe = BurnRateProbe::from_config("error-budget", &config).unwrap();
            let at = Timestamp::from_millis((t0 + 215 * 60) * 1000); // 35 minutes into the fast burn
            probe
                .measure(&ProbeContext::new(
                    TargetId::new("app"),
                    RevisionId::new("v2"),
                    at,
                ))
                .await
        }
    };
    let inconclusive = |m: rollback_core::Measurement, why: &str| {
        assert!(m.value.is_some_and(f64::is_nan), "{m:?}");
        let d = m.detail.unwrap();
        assert!(
            d.starts_with("no pair could be judged") && d.contains(why),
            "{why:?} in {d}"
        );
    };
    // The fast burn itself fires.
    let m = measure(bad.into(), total.into()).await.unwrap();
    assert!(m.value.unwrap() > 1.0, "{m:?}");
    // Empty windows: a job with no series.
    let m = measure(bad.replace("app", "gone"), total.replace("app", "gone"))
        .await
        .unwrap();
    inconclusive(m, "no data over 1h");
    // Zero traffic.
    let m = measure(bad.into(), format!("{total} * 0")).await.unwrap();
    inconclusive(m, "no traffic over 1h");
    // Three requests, all bad: under the floor.
    let m = measure(format!("{bad} * 0 + 3"), format!("{total} * 0 + 3"))
        .await
        .unwrap();
    inconclusive(m, "3 requests over 1h, under the floor of 100");
    // NaN.
    let m = measure(format!("{bad} * NaN"), total.into()).await.unwrap();
    inconclusive(m, "NaN or infinite over 1h");
    // Several series: the total without sum(...).
    let e = measure(
        bad.into(),
        "increase(http_requests_total{job=\"app\"}[{{window}}])".into(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("returned 2 series") && e.contains("increase(http_requests_total"),
        "{e}"
    );
    // A range vector.
    let e = measure(
        "http_requests_total{code=\"500\"}[{{window}}]".into(),
        total.into(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("the result is a matrix"), "{e}");
}
