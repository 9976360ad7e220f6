//! The command against StatefulSets and DaemonSets on the test API server
//! (kmock, from rollback-k8s's test support), through the registry's
//! `k8s://NAMESPACE/statefulset/NAME` and `k8s://NAMESPACE/daemonset/NAME`:
//! `undo` beside `kubectl rollout undo` (the same line, the same object
//! left), `history`, and a `watch` that rolls a bad revision back, then
//! `status`.

mod common;
#[allow(clippy::all, unreachable_pub)]
#[path = "../../rollback-k8s/tests/support/mod.rs"]
mod support;
#[allow(clippy::all, unreachable_pub)]
#[path = "../../rollback-k8s/tests/workloads/mod.rs"]
mod workloads;

use std::path::Path;

use common::{rollback, write};
use predicates::str::contains;
use rollback_k8s::WorkloadKind;
use support::KubeServer;

const KINDS: [WorkloadKind; 2] = [WorkloadKind::StatefulSet, WorkloadKind::DaemonSet];

fn kubeconfig(server: &KubeServer) -> String {
    format!("kubeconfig={}", server.kubeconfig().display())
}

async fn image(server: &KubeServer, ns: &str, kind: WorkloadKind) -> String {
    let o = workloads::object_json(&server.client(), ns, kind, "web").await;
    o["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn undo_prints_and_does_what_kubectl_does() {
    let server = KubeServer::start();
    let client = server.client();
    let cases: [(&str, &[&str]); 6] = [
        ("previous", &[]),
        ("given", &["--to-revision=1"]),
        ("matching", &["--to-revision=3"]),
        ("server-dry", &["--dry-run=server"]),
        ("matching-dry", &["--to-revision=3", "--dry-run=server"]),
        ("missing", &["--to-revision=9"]),
    ];
    for kind in KINDS {
        for (case, flags) in cases {
            let (kns, cns) = (
                format!("kubectl-{}-{case}", kind.singular()),
                format!("cli-{}-{case}", kind.singular()),
            );
            for ns in [&kns, &cns] {
                support::create_namespace(&client, ns).await;
                workloads::seed(&client, ns, &workloads::three(kind)).await;
            }
            let resource = format!("{}/web", kind.singular());
            let mut args = vec!["-n", kns.as_str(), "rollout", "undo", resource.as_str()];
            args.extend(flags);
            let (ok, kout, kerr) = server.kubectl(&args);
            let out = rollback(Path::new("."))
                .args([
                    "undo",
                    &format!("k8s://{cns}/{}/web", kind.singular()),
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
            assert_eq!(
                out.status.success(),
                ok,
                "{kind} {case}: kubectl {kout}{kerr}; rollback {cout}{cerr}"
            );
            if ok {
                assert_eq!(cout, kout, "{kind} {case}: the same line as kubectl");
            } else {
                assert_eq!(out.status.code(), Some(1));
                let reason = kerr.trim().trim_start_matches("error: ");
                assert!(
                    cerr.starts_with(&format!("error: {reason}")),
                    "{kind} {case}: kubectl {kerr}; rollback {cerr}"
                );
            }
            assert_eq!(
                support::without_bookkeeping(
                    workloads::object_json(&client, &cns, kind, "web").await
                ),
                support::without_bookkeeping(
                    workloads::object_json(&client, &kns, kind, "web").await
                ),
                "{kind} {case}: the same object as kubectl's"
            );
        }
        let s = kind.singular();
        assert_eq!(
            image(&server, &format!("cli-{s}-previous"), kind).await,
            "web:2"
        );
        assert_eq!(
            image(&server, &format!("cli-{s}-given"), kind).await,
            "web:1"
        );
        assert_eq!(
            image(&server, &format!("cli-{s}-server-dry"), kind).await,
            "web:3"
        );
    }
}

#[tokio::test]
async fn history_lists_controller_revisions_newest_first_and_a_wrong_kind_is_named() {
    let server = KubeServer::start();
    let client = server.client();
    support::create_namespace(&client, "shop").await;
    workloads::seed(&client, "shop", &workloads::three(WorkloadKind::DaemonSet)).await;
    rollback(Path::new("."))
        .args([
            "history",
            "k8s://shop/ds/web",
            "--option",
            &kubeconfig(&server),
        ])
        .assert()
        .code(0)
        .stdout(contains(
            "k8s://shop/ds/web\nREVISION  HEALTH   CURRENT  ID   LABEL\n",
        ))
        .stdout(contains(
            "3         unknown  *        ccc  revision 3 (deploy web:3)",
        ))
        .stdout(contains(
            "1         unknown           aaa  revision 1 (deploy web:1)",
        ));
    rollback(Path::new("."))
        .args([
            "history",
            "k8s://shop/statefulset/web",
            "--option",
            &kubeconfig(&server),
        ])
        .assert()
        .code(1)
        .stderr(contains(
            "StatefulSet web not found in namespace shop, but DaemonSet shop/web exists: it is a DaemonSet, \
             not a StatefulSet; name it k8s://shop/daemonset/web",
        ));
    rollback(Path::new("."))
        .args([
            "undo",
            "k8s://shop/cronjob/web",
            "--option",
            &kubeconfig(&server),
        ])
        .assert()
        .code(1)
        .stderr(contains(
            "\"cronjob\" is not a kind rollback-k8s rolls back",
        ));
}

#[tokio::test]
async fn watch_rolls_a_bad_statefulset_revision_back_and_status_says_so() {
    let server = KubeServer::start();
    let client = server.client();
    support::create_namespace(&client, "shop").await;
    workloads::seed(
        &client,
        "shop",
        &workloads::three(WorkloadKind::StatefulSet),
    )
    .await;
    let controller =
        workloads::spawn_controller(client.clone(), "shop", WorkloadKind::StatefulSet, "web");
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "watch.yaml",
        &format!(
            "policy:\n  interval: 100ms\n  bake_time: 10s\n  failure_limit: 1\n  verify: 500ms\n\
             probes:\n  - name: error_rate\n    success: \"< 0.01\"\n    scripted:\n      per_revision: {{ccc: [0.05], bbb: [0.001]}}\n\
             state: state\naudit: audit.jsonl\n\
             targets:\n  - url: k8s://shop/statefulset/web\n    kubeconfig: {}\n    poll_interval: 100ms\n",
            server.kubeconfig().display()
        ),
    );
    let (d, f) = (dir.path().to_owned(), file.clone());
    let out = tokio::task::spawn_blocking(move || {
        rollback(&d).args(["watch", "-c"]).arg(&f).output().unwrap()
    })
    .await
    .unwrap();
    controller.abort();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(
            "rollback done: rolled back StatefulSet shop/web to revision 2 (bbb, app=web:2)"
        ),
        "{stdout}"
    );
    assert_eq!(
        image(&server, "shop", WorkloadKind::StatefulSet).await,
        "web:2"
    );
    rollback(dir.path())
        .args(["status", "-c"])
        .arg(&file)
        .assert()
        .code(0)
        .stdout(contains(
            "k8s:shop/statefulset/web  ccc  rolled back to bbb at ",
        ))
        .stdout(contains("decision complete: rollback to bbb verified"));
}
