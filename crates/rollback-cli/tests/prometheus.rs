//! The command with a `prometheus` probe on the real Prometheus (from
//! rollback-prometheus's test support), scraping two small apps: the
//! revisions of a `memory://` target are named by the app that serves them
//! (`127.0.0.1:PORT`), so the query `…{instance="{{revision}}"}` measures the
//! revision being judged. `check`, and `watch` ending in 3, 0, 4, 5 and 1
//! (an unreachable Prometheus). A probe has no history or undo.

mod common;
#[allow(clippy::all, unreachable_pub)]
#[path = "../../rollback-prometheus/tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::time::Duration;

use common::{rollback, write};
use predicates::prelude::*;
use predicates::str::contains;
use support::{MetricsApp, PrometheusServer, PrometheusSetup};

const QUERY: &str = r#"sum(rate(http_requests_total{code=~"5..",instance="{{revision}}"}[3s]) or vector(0)) / (sum(rate(http_requests_total{instance="{{revision}}"}[3s])) > 0)"#;

struct Setup {
    good: MetricsApp,
    bad: MetricsApp,
    prometheus: PrometheusServer,
}

async fn setup() -> Setup {
    let good = MetricsApp::start(50.0, 0.0, Duration::from_millis(20)).await;
    let bad = MetricsApp::start(50.0, 0.2, Duration::from_millis(20)).await;
    let prometheus = PrometheusServer::start(PrometheusSetup {
        scrape: vec![good.target(), bad.target()],
        interval: Some(Duration::from_millis(500)),
        ..Default::default()
    })
    .await;
    for app in [&good, &bad] {
        let q = QUERY.replace("{{revision}}", &app.target());
        prometheus.wait_for_data(&q, Duration::from_secs(30)).await;
    }
    Setup {
        good,
        bad,
        prometheus,
    }
}

/// A watch file: `memory://shop/checkout` running `current` after `earlier`
/// (marked good), judged by the Prometheus error ratio at `url`.
fn watch_file(dir: &Path, url: &str, bake: &str, extra: &str, earlier: &str, current: &str) {
    write(
        dir,
        "watch.yaml",
        &format!(
            "policy:\n  interval: 200ms\n  bake_time: {bake}\n  failure_limit: 1\n  verify: 1s\n{extra}\
             probes:\n  - name: error_rate\n    success: \"< 0.05\"\n    prometheus:\n      url: {url}\n      query: '{QUERY}'\n\
             targets:\n  - url: memory://shop/checkout\n    revisions: [{{id: \"{earlier}\", health: good}}, \"{current}\"]\n"
        ),
    );
}

async fn run(dir: &Path, args: &[&str]) -> std::process::Output {
    let (dir, args) = (
        dir.to_owned(),
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    );
    tokio::task::spawn_blocking(move || rollback(&dir).args(args).output().unwrap())
        .await
        .unwrap()
}

fn words(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test]
async fn check_a_prometheus_probe() {
    let dir = tempfile::tempdir().unwrap();
    watch_file(dir.path(), "http://127.0.0.1:9090", "1m", "", "v1", "v2");
    rollback(dir.path())
        .args(["check", "-c", "watch.yaml"])
        .assert()
        .code(0)
        .stdout(contains("SUCCESS: 1 target, 1 probe"));
    write(
        dir.path(),
        "bad.yaml",
        "probes:\n  - name: error_rate\n    success: \"< 0.05\"\n    prometheus: {url: \"http://127.0.0.1:9090\", qurey: x}\ntargets: [{url: \"memory://a\", revisions: [v1]}]\n",
    );
    rollback(dir.path())
        .args(["check", "-c", "bad.yaml"])
        .assert()
        .code(1)
        .stderr(contains("probes[0].prometheus").and(contains("qurey")));
}

#[tokio::test]
async fn watch_rolls_back_a_revision_whose_error_ratio_breaches_exit_3() {
    let s = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let (good, bad) = (s.good.target(), s.bad.target());
    watch_file(dir.path(), &s.prometheus.url(), "1m", "", &good, &bad);
    let o = run(dir.path(), &["watch", "-c", "watch.yaml"]).await;
    assert_eq!(o.status.code(), Some(3), "{}", words(&o));
    let out = words(&o);
    // The bad app answers 20 % of its requests with a 5xx: about 0.2, never under 0.05.
    let breach = out
        .lines()
        .find(|l| l.contains(&format!("error_rate on {bad} = ")))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(breach.contains("-> fail"), "{breach}");
    assert!(
        out.contains(&format!("error_rate on {good} = 0 -> pass")),
        "{out}"
    );
    assert!(out.contains(&format!("rolled back to {good}")), "{out}");
}

#[tokio::test]
async fn watch_ends_in_0_4_5_and_1() {
    let s = setup().await;
    let (good, bad, url) = (s.good.target(), s.bad.target(), s.prometheus.url());

    let d0 = tempfile::tempdir().unwrap();
    watch_file(d0.path(), &url, "1500ms", "", &bad, &good);
    let o = run(d0.path(), &["watch", "-c", "watch.yaml"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", words(&o));

    let d4 = tempfile::tempdir().unwrap();
    watch_file(d4.path(), &url, "1m", "  dry_run: true\n", &good, &bad);
    let o = run(d4.path(), &["watch", "-c", "watch.yaml"]).await;
    assert_eq!(o.status.code(), Some(4), "{}", words(&o));
    assert!(
        words(&o).contains("dry run; would roll back to"),
        "{}",
        words(&o)
    );

    let d5 = tempfile::tempdir().unwrap();
    watch_file(d5.path(), &url, "1h", "", &bad, &good);
    let o = run(d5.path(), &["watch", "--timeout", "1s", "-c", "watch.yaml"]).await;
    assert_eq!(o.status.code(), Some(5), "{}", words(&o));

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d1 = tempfile::tempdir().unwrap();
    watch_file(
        d1.path(),
        &format!("http://127.0.0.1:{port}"),
        "1m",
        "",
        &good,
        &bad,
    );
    let o = run(d1.path(), &["watch", "-c", "watch.yaml"]).await;
    assert_eq!(o.status.code(), Some(1), "{}", words(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("probe error_rate") && stderr.contains("does not answer"),
        "{stderr}"
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).is_empty(),
        "nothing was watched"
    );
}
