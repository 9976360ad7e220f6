//! The command against a Deployment on the test API server (kmock, from
//! rollback-k8s's test support), with `kubectl` as the reference for
//! `undo`: the same seeded state in two namespaces, `kubectl rollout undo`
//! on one and `rollback undo` on the other, the same line printed and the
//! same Deployment left. Then `history`, `check`, and `watch` ending in 0,
//! 3, 4, 5 and 1 (the stand-in deployment controller of the support rolls
//! each change out).

mod common;
#[allow(clippy::all, unreachable_pub)]
#[path = "../../rollback-k8s/tests/support/mod.rs"]
mod support;

use std::path::Path;

use common::{rollback, write};
use predicates::prelude::*;
use predicates::str::contains;
use support::{KubeServer, Rev, Seed};

fn three() -> Seed {
    Seed::new(
        "web",
        vec![
            Rev::new(1, "aaa", "web:1"),
            Rev::new(2, "bbb", "web:2"),
            Rev::new(3, "ccc", "web:3"),
        ],
    )
}

async fn seeded(server: &KubeServer, ns: &str) {
    let client = server.client();
    support::create_namespace(&client, ns).await;
    support::seed(&client, ns, &three()).await;
}

fn kubeconfig(server: &KubeServer) -> String {
    format!("kubeconfig={}", server.kubeconfig().display())
}

async fn image(server: &KubeServer, ns: &str) -> String {
    let d = support::deployment_json(&server.client(), ns, "web").await;
    d["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn undo_prints_and_does_what_kubectl_does() {
    let server = KubeServer::start();
    let client = server.client();
    let cases: [(&str, &[&str]); 5] = [
        ("previous", &[]),
        ("given", &["--to-revision=1"]),
        ("matching", &["--to-revision=3"]),
        ("server-dry", &["--dry-run=server"]),
        ("missing", &["--to-revision=9"]),
    ];
    for (case, flags) in cases {
        let (kns, cns) = (format!("kubectl-{case}"), format!("cli-{case}"));
        seeded(&server, &kns).await;
        seeded(&server, &cns).await;
        let mut args = vec!["-n", kns.as_str(), "rollout", "undo", "deployment/web"];
        args.extend(flags);
        let (ok, kout, kerr) = server.kubectl(&args);

        server.clear_requests().await;
        let out = rollback(Path::new("."))
            .args([
                "undo",
                &format!("k8s://{cns}/web"),
                "--option",
                &kubeconfig(&server),
            ])
            .args(flags)
            .output()
            .unwrap();
        let (cout, cerr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        let calls = server.requests().await;
        assert_eq!(
            out.status.success(),
            ok,
            "{case}: kubectl {kout}{kerr}; rollback {cout}{cerr}"
        );
        if ok {
            assert_eq!(cout, kout, "{case}: the same line as kubectl");
        } else {
            assert_eq!(out.status.code(), Some(1));
            let reason = kerr.trim().trim_start_matches("error: ");
            assert!(
                cerr.starts_with(&format!("error: {reason}")),
                "{case}: kubectl {kerr}; rollback {cerr}"
            );
        }
        assert_eq!(
            support::without_bookkeeping(support::deployment_json(&client, &cns, "web").await),
            support::without_bookkeeping(support::deployment_json(&client, &kns, "web").await),
            "{case}: the same Deployment as kubectl's"
        );
        // The rollback-k8s `undo` example's calls: read, list, and the patch when one is due.
        let deployment = format!("GET /apis/apps/v1/namespaces/{cns}/deployments/web");
        assert_eq!(calls.first(), Some(&deployment), "{case}: {calls:?}");
        assert!(
            calls[1].starts_with(&format!("GET /apis/apps/v1/namespaces/{cns}/replicasets")),
            "{calls:?}"
        );
        let patches = calls.iter().filter(|c| c.starts_with("PATCH")).count();
        let expected = usize::from(matches!(case, "previous" | "given" | "server-dry"));
        assert_eq!(
            (calls.len(), patches),
            (2 + expected, expected),
            "{case}: {calls:?}"
        );
    }
    assert_eq!(image(&server, "cli-previous").await, "web:2");
    assert_eq!(image(&server, "cli-given").await, "web:1");
    assert_eq!(image(&server, "cli-server-dry").await, "web:3");
}

#[tokio::test]
async fn history_lists_revisions_newest_first() {
    let server = KubeServer::start();
    seeded(&server, "shop").await;
    rollback(Path::new("."))
        .args([
            "history",
            "k8s://shop/web",
            "--option",
            &kubeconfig(&server),
        ])
        .assert()
        .code(0)
        .stdout(contains(
            "k8s://shop/web\nREVISION  HEALTH   CURRENT  ID   LABEL\n",
        ))
        .stdout(contains(
            "3         unknown  *        ccc  revision 3 (deploy web:3)",
        ))
        .stdout(contains(
            "1         unknown           aaa  revision 1 (deploy web:1)",
        ));
    let out = rollback(Path::new("."))
        .args([
            "history",
            "k8s://shop/web",
            "-o",
            "json",
            "--option",
            &kubeconfig(&server),
        ])
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["revision"], 3);
    assert_eq!(rows[2]["id"], "aaa");
    assert_eq!(rows[2]["attributes"]["images"], "app=web:1");
}

/// A watch file for `k8s://shop/web` with a scripted error rate per
/// revision (by pod-template hash).
fn watch_file(
    dir: &Path,
    server: &KubeServer,
    bake: &str,
    per_revision: &str,
) -> std::path::PathBuf {
    write(
        dir,
        "watch.yaml",
        &format!(
            "policy:\n  interval: 100ms\n  bake_time: {bake}\n  failure_limit: 1\n  verify: 500ms\n\
             probes:\n  - name: error_rate\n    success: \"< 0.01\"\n    scripted:\n      per_revision: {per_revision}\n\
             state: state\naudit: audit.jsonl\n\
             targets:\n  - url: k8s://shop/web\n    kubeconfig: {}\n    poll_interval: 100ms\n",
            server.kubeconfig().display()
        ),
    )
}

#[tokio::test]
async fn check_a_file_with_a_kubernetes_probe() {
    let server = KubeServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "w.yaml",
        &format!(
            "policy: {{interval: 30s}}\nprobes:\n  - name: pods\n    failure: \"> 0\"\n    kubernetes: {{max_restarts: 2}}\n\
             targets:\n  - url: k8s://shop/web\n    kubeconfig: {}\n",
            server.kubeconfig().display()
        ),
    );
    rollback(dir.path())
        .args(["check", "-c"])
        .arg(&file)
        .assert()
        .code(0)
        .stdout(contains("SUCCESS: 1 target, 1 probe"));
    let bad = write(
        dir.path(),
        "bad.yaml",
        "probes: []\ntargets:\n  - url: k8s://shop\n  - url: k8s://shop/web\n    contxt: kind\n",
    );
    rollback(dir.path())
        .args(["check", "-c"])
        .arg(&bad)
        .assert()
        .code(1)
        .stderr(contains("targets[0]").and(contains("k8s://NAMESPACE/DEPLOYMENT")))
        .stderr(contains("targets[1]").and(contains("contxt")));
}

#[tokio::test]
async fn watch_rolls_back_a_bad_revision_exit_3() {
    let server = KubeServer::start();
    seeded(&server, "shop").await;
    let controller = support::spawn_controller(server.client(), "shop", "web");
    let dir = tempfile::tempdir().unwrap();
    let file = watch_file(dir.path(), &server, "10s", "{ccc: [0.05], bbb: [0.001]}");
    let out = tokio::task::spawn_blocking(move || {
        rollback(Path::new("."))
            .args(["watch", "-c"])
            .arg(&file)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("rollback done: rolled back Deployment shop/web to revision 2 (pod-template-hash bbb, app=web:2)"), "{stdout}");
    assert!(
        stdout.contains("k8s:shop/web: rolled back to bbb"),
        "{stdout}"
    );
    assert_eq!(image(&server, "shop").await, "web:2");
    controller.abort();
}

#[tokio::test]
async fn watch_ends_in_0_4_5_and_1() {
    let server = KubeServer::start();
    seeded(&server, "shop").await;
    let controller = support::spawn_controller(server.client(), "shop", "web");
    let run = |dir: std::path::PathBuf, args: Vec<String>| {
        tokio::task::spawn_blocking(move || rollback(&dir).args(args).output().unwrap())
    };
    let words = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };

    // 5: healthy, but the bake time is longer than the timeout; resumable.
    let d5 = tempfile::tempdir().unwrap();
    watch_file(d5.path(), &server, "1h", "{ccc: [0.001]}");
    let o = run(
        d5.path().into(),
        vec![
            "watch".into(),
            "--timeout".into(),
            "1s".into(),
            "-c".into(),
            "watch.yaml".into(),
        ],
    )
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(5), "{}", words(&o));
    assert!(
        words(&o).contains("k8s:shop/web: observing"),
        "{}",
        words(&o)
    );

    // 0: healthy for the bake time: promoted.
    let d0 = tempfile::tempdir().unwrap();
    watch_file(d0.path(), &server, "600ms", "{ccc: [0.001]}");
    let o = run(
        d0.path().into(),
        vec!["watch".into(), "-c".into(), "watch.yaml".into()],
    )
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", words(&o));
    assert_eq!(image(&server, "shop").await, "web:3", "nothing changed");

    // 4: the restored revision fails its verification too: escalated.
    let d4 = tempfile::tempdir().unwrap();
    watch_file(d4.path(), &server, "10s", "{ccc: [0.05], bbb: [0.05]}");
    let o = run(
        d4.path().into(),
        vec!["watch".into(), "-c".into(), "watch.yaml".into()],
    )
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", words(&o));
    assert!(
        words(&o).contains("k8s:shop/web: escalated"),
        "{}",
        words(&o)
    );

    // 1: an unreachable API server; nothing is changed.
    let before = support::without_bookkeeping(
        support::deployment_json(&server.client(), "shop", "web").await,
    );
    let d1 = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = std::fs::read_to_string(server.kubeconfig())
        .unwrap()
        .replace(
            server.url.trim_start_matches("http://"),
            &format!("127.0.0.1:{port}"),
        );
    let dead_config = write(d1.path(), "dead-kubeconfig", &dead);
    let text = std::fs::read_to_string(watch_file(d1.path(), &server, "10s", "{ccc: [0.05]}"))
        .unwrap()
        .replace(
            &server.kubeconfig().display().to_string(),
            &dead_config.display().to_string(),
        );
    write(d1.path(), "watch.yaml", &text);
    let o = run(
        d1.path().into(),
        vec!["watch".into(), "-c".into(), "watch.yaml".into()],
    )
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", words(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.starts_with("error: ") && stderr.contains("shop/web"),
        "{stderr}"
    );
    assert_eq!(
        support::without_bookkeeping(
            support::deployment_json(&server.client(), "shop", "web").await
        ),
        before
    );
    controller.abort();
}
