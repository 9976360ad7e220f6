//! `rollback check` on a watch file of 1,000 targets (250 each of
//! `k8s://`, `codedeploy://`, `mlflow://` and `memory://`, each with
//! options) and two probes (`prometheus`, `scripted`): the target is under
//! 100 ms. The file is also written to
//! `target/tmp/rollback-cli-bench/1000-targets.yaml` for timing the whole
//! process: `rollback check -c target/tmp/rollback-cli-bench/1000-targets.yaml`.

use std::fmt::Write as _;

use criterion::{Criterion, criterion_group, criterion_main};

/// A watch file with `n` targets.
fn watch_file(n: usize) -> String {
    let mut s = String::from(
        "policy:\n  interval: 30s\n  bake_time: 10m\n  failure_limit: 1\n  verify: 2m\n\
         audit: audit.jsonl\nstate: state/\n\
         probes:\n  - name: error_rate\n    success: \"< 0.01\"\n    prometheus:\n      url: http://prometheus:9090\n      \
         query: 'sum(rate(http_requests_total{code=~\"5..\",revision=\"{{revision}}\"}[1m])) / sum(rate(http_requests_total{revision=\"{{revision}}\"}[1m]))'\n\
         \x20 - name: latency\n    success: \"< 0.3\"\n    scripted: {values: [0.1]}\n\
         targets:\n",
    );
    for i in 0..n {
        let _ = match i % 4 {
            0 => writeln!(
                s,
                "  - url: k8s://shop/checkout-{i}\n    context: kind-kind\n    poll_interval: 2s"
            ),
            1 => writeln!(
                s,
                "  - url: codedeploy://bank/payments-{i}\n    region: eu-west-1"
            ),
            2 => writeln!(
                s,
                "  - url: mlflow://model-{i}@champion\n    tracking_uri: http://mlflow:5000"
            ),
            _ => writeln!(
                s,
                "  - url: memory://demo/{i}\n    revisions: [{{id: v1, health: good}}, v2]"
            ),
        };
    }
    s
}

fn check(c: &mut Criterion) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("rollback-cli-bench");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("1000-targets.yaml");
    std::fs::write(&path, watch_file(1000)).unwrap();
    let registry = rollback::registry();
    let report = rollback_cli::commands::check::report(&path, &registry);
    assert!(report.ok, "{}", report.stderr);
    assert!(
        report.stdout.contains("SUCCESS: 1000 targets, 2 probes"),
        "{}",
        report.stdout
    );
    c.bench_function("check a watch file of 1,000 targets", |b| {
        b.iter(|| rollback_cli::commands::check::report(&path, &registry))
    });
}

criterion_group!(benches, check);
criterion_main!(benches);
