//! kubectl parity for StatefulSets and DaemonSets: the same object and
//! ControllerRevisions are seeded twice on one test API server, in namespace
//! `kubectl` and in namespace `crate`; `kubectl rollout undo` runs against
//! the first and `K8sWorkload::undo` against the second. The objects must
//! end equal apart from server bookkeeping, with the same outcome; when both
//! patch, both send a strategic merge patch, the crate's kubectl's body (the
//! ControllerRevision's data) plus its resourceVersion precondition. And
//! `kubectl rollout status` and `WorkloadStatus` say the same of the same
//! status; `kubectl rollout history` lists the target's history.

mod support;
mod workloads;

use rollback_core::policy::RetryPolicy;
use rollback_core::{DryRun, ErrorKind, RollbackOutcome};
use rollback_k8s::{K8sWorkload, UndoOptions, UndoTo, WorkloadKind, WorkloadStatus};
use serde_json::{Value, json};
use support::{KubeServer, Rev};
use workloads::{WSeed, three};

const KINDS: [WorkloadKind; 2] = [WorkloadKind::StatefulSet, WorkloadKind::DaemonSet];

struct Run {
    before: Value,
    kubectl: Result<String, String>,
    kubectl_after: Value,
    ours: rollback_core::Result<RollbackOutcome>,
    ours_after: Value,
}

/// The PATCH a namespace's object received: (query, body).
fn patch_of(log: &[Value], ns: &str, kind: WorkloadKind) -> Option<(String, Value)> {
    let path = format!("/apis/apps/v1/namespaces/{ns}/{}/web", kind.plural());
    log.iter()
        .find(|r| r["method"] == "PATCH" && r["path"] == path.as_str())
        .map(|r| {
            assert_eq!(r["content_type"], "application/strategic-merge-patch+json");
            (
                r["query"].as_str().unwrap_or_default().to_owned(),
                serde_json::from_str(r["body"].as_str().unwrap_or("null")).unwrap(),
            )
        })
}

async fn run(seed: &WSeed, to_revision: Option<i64>, dry_run: Option<DryRun>) -> Run {
    let kind = seed.kind;
    let server = KubeServer::start();
    let client = server.client();
    for ns in ["kubectl", "crate"] {
        support::create_namespace(&client, ns).await;
        workloads::seed(&client, ns, seed).await;
    }
    let read = |ns: &'static str| {
        let client = client.clone();
        async move {
            support::without_bookkeeping(workloads::object_json(&client, ns, kind, "web").await)
        }
    };
    let before = read("crate").await;
    assert_eq!(read("kubectl").await, before, "both namespaces start equal");
    server.clear_requests().await;

    let resource = format!("{}/web", kind.singular());
    let flag = to_revision.map(|n| format!("--to-revision={n}"));
    let mut args = vec!["-n", "kubectl", "rollout", "undo", resource.as_str()];
    args.extend(flag.as_deref());
    match dry_run {
        Some(DryRun::Server) => args.push("--dry-run=server"),
        Some(DryRun::Client) => args.push("--dry-run=client"),
        _ => {}
    }
    let (ok, stdout, stderr) = server.kubectl(&args);
    let kubectl = if ok {
        Ok(stdout.trim().to_owned())
    } else {
        Err(stderr.trim().to_owned())
    };

    let ours = K8sWorkload::builder(client.clone(), kind)
        .namespace("crate")
        .name("web")
        .retry(RetryPolicy::NEVER)
        .build()
        .unwrap()
        .undo(
            &to_revision.map_or(UndoTo::Previous, UndoTo::Number),
            &UndoOptions {
                dry_run: dry_run.unwrap_or_default(),
                expect_current: None,
            },
        )
        .await;

    let log = server.request_log().await;
    match (
        patch_of(&log, "kubectl", kind),
        patch_of(&log, "crate", kind),
    ) {
        (Some((kq, theirs)), Some((cq, mut mine))) => {
            assert_eq!(
                kq.contains("dryRun=All"),
                cq.contains("dryRun=All"),
                "{kq} versus {cq}"
            );
            let meta = mine
                .as_object_mut()
                .and_then(|m| m.remove("metadata"))
                .expect("the crate's precondition");
            assert!(meta["resourceVersion"].is_string(), "{meta}");
            assert_eq!(theirs, mine, "the patches differ");
            assert_eq!(theirs["spec"]["template"]["$patch"], "replace");
        }
        (None, None) => {}
        (k, c) => panic!("only one side patched: kubectl {k:?}, crate {c:?}"),
    }
    let kubectl_after = read("kubectl").await;
    let ours_after = read("crate").await;
    assert_eq!(
        ours_after, kubectl_after,
        "kubectl: {kubectl:?}; ours: {ours:?}"
    );
    Run {
        before,
        kubectl,
        kubectl_after,
        ours,
        ours_after,
    }
}

fn image(v: &Value) -> &str {
    v["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
}

fn rolled_back(run: &Run, kind: WorkloadKind, to: &str) {
    assert_eq!(
        run.kubectl.as_deref(),
        Ok(format!("{}.apps/web rolled back", kind.singular()).as_str())
    );
    assert!(
        matches!(run.ours, Ok(RollbackOutcome::RolledBack { .. })),
        "{:?}",
        run.ours
    );
    assert_ne!(run.ours_after, run.before);
    assert_eq!(image(&run.ours_after), to);
}

fn refused(run: &Run, kubectl_error: &str) {
    assert_eq!(
        run.kubectl.as_ref().expect_err("kubectl refuses"),
        &format!("error: {kubectl_error}")
    );
    let err = run.ours.as_ref().expect_err("the crate refuses");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(
        err.message()
            .starts_with(kubectl_error.trim_end_matches(" in history")),
        "{}",
        err.message()
    );
    assert!(
        err.message().contains("web"),
        "names the object: {}",
        err.message()
    );
    assert_eq!(run.kubectl_after, run.before);
    assert_eq!(run.ours_after, run.before);
}

#[tokio::test]
async fn parity_previous_and_given_revision() {
    for kind in KINDS {
        rolled_back(&run(&three(kind), None, None).await, kind, "web:2");
        rolled_back(&run(&three(kind), Some(1), None).await, kind, "web:1");
        rolled_back(&run(&three(kind), Some(0), None).await, kind, "web:2");
    }
}

#[tokio::test]
async fn parity_template_already_matches() {
    for kind in KINDS {
        let run = run(&three(kind), Some(3), None).await;
        assert_eq!(
            run.kubectl.as_deref(),
            Ok(format!(
                "{}.apps/web skipped rollback (current template already matches revision 3)",
                kind.singular()
            )
            .as_str())
        );
        match &run.ours {
            Ok(RollbackOutcome::AlreadyAt { detail }) => assert!(
                detail
                    .starts_with("skipped rollback (current template already matches revision 3)"),
                "{detail}"
            ),
            other => panic!("expected AlreadyAt, got {other:?}"),
        }
        assert_eq!(run.ours_after, run.before);
    }
}

#[tokio::test]
async fn parity_no_history_and_missing_revisions() {
    for kind in KINDS {
        let one = WSeed::new(kind, "web", vec![Rev::new(1, "aaa", "web:1")]);
        refused(
            &run(&one, None, None).await,
            "no last revision to roll back to",
        );
        // Revision 2 was pruned (revisionHistoryLimit).
        let pruned = WSeed::new(
            kind,
            "web",
            vec![
                Rev::new(1, "aaa", "web:1"),
                Rev::new(3, "ccc", "web:3"),
                Rev::new(4, "ddd", "web:4"),
            ],
        );
        refused(
            &run(&pruned, Some(2), None).await,
            "unable to find specified revision 2 in history",
        );
        // And "previous" skips the gap: revision 3.
        rolled_back(&run(&pruned, None, None).await, kind, "web:3");
    }
}

#[tokio::test]
async fn parity_dry_runs() {
    for kind in KINDS {
        let server = run(&three(kind), Some(1), Some(DryRun::Server)).await;
        assert_eq!(
            server.kubectl.as_deref(),
            Ok(format!("{}.apps/web rolled back (server dry run)", kind.singular()).as_str())
        );
        assert!(
            matches!(server.ours, Ok(RollbackOutcome::DryRun { .. })),
            "{:?}",
            server.ours
        );
        assert_eq!(server.ours_after, server.before);

        let client = run(&three(kind), None, Some(DryRun::Client)).await;
        let stdout = client
            .kubectl
            .as_ref()
            .expect("kubectl prints the template");
        assert!(
            stdout.contains("web:2") && stdout.ends_with("(dry run)"),
            "{stdout}"
        );
        match &client.ours {
            Ok(RollbackOutcome::DryRun { detail }) => assert_eq!(
                detail,
                &format!(
                    "client dry run: would roll back {kind} crate/web to revision 2 (bbb, app=web:2)"
                )
            ),
            other => panic!("expected DryRun, got {other:?}"),
        }
        assert_eq!(client.ours_after, client.before);

        let matching = run(&three(kind), Some(3), Some(DryRun::Server)).await;
        assert_eq!(
            matching.kubectl.as_deref(),
            Ok(format!(
                "{}.apps/web skipped rollback (current template already matches revision 3) (server dry run)",
                kind.singular()
            )
            .as_str())
        );
        assert!(
            matches!(&matching.ours, Ok(RollbackOutcome::DryRun { detail })
                if detail.starts_with("server dry run: skipped rollback (current template already matches revision 3)")),
            "{:?}",
            matching.ours
        );
    }
}

/// After a rollback the controller renumbers the restored revision, so a
/// second undo goes back to the one just rolled away from: both agree at
/// every step.
#[tokio::test]
async fn parity_undo_three_times_with_the_controller_renumbering() {
    for kind in KINDS {
        let server = KubeServer::start();
        let client = server.client();
        for ns in ["kubectl", "crate"] {
            support::create_namespace(&client, ns).await;
            workloads::seed(&client, ns, &three(kind)).await;
        }
        let ours = K8sWorkload::builder(client.clone(), kind)
            .namespace("crate")
            .name("web")
            .build()
            .unwrap();
        let resource = format!("{}/web", kind.singular());
        for expected in ["web:2", "web:3", "web:2"] {
            let (ok, stdout, stderr) =
                server.kubectl(&["-n", "kubectl", "rollout", "undo", &resource]);
            assert!(ok, "{stdout} {stderr}");
            ours.undo(&UndoTo::Previous, &UndoOptions::default())
                .await
                .unwrap();
            for ns in ["kubectl", "crate"] {
                assert!(
                    workloads::controller_step(&client, ns, kind, "web").await,
                    "{ns}"
                );
            }
            let k = support::without_bookkeeping(
                workloads::object_json(&client, "kubectl", kind, "web").await,
            );
            let c = support::without_bookkeeping(
                workloads::object_json(&client, "crate", kind, "web").await,
            );
            assert_eq!(c, k);
            assert_eq!(image(&c), expected);
        }
        // Renumbered, not recreated: three ControllerRevisions, numbered 1, 5, 6.
        let history = rollback_core::Target::history(&ours).await.unwrap();
        let numbers: Vec<(String, String)> = history
            .iter()
            .map(|e| {
                (
                    e.revision.id().to_string(),
                    e.revision.attributes()["revision"].clone(),
                )
            })
            .collect();
        assert_eq!(
            numbers,
            [
                ("bbb".into(), "6".into()),
                ("ccc".into(), "5".into()),
                ("aaa".into(), "1".into())
            ]
        );
    }
}

/// `kubectl rollout status --watch=false` and [`WorkloadStatus`] on the same
/// statuses: the same line, the same done-ness.
#[tokio::test]
async fn rollout_status_says_what_kubectl_says() {
    let server = KubeServer::start();
    let client = server.client();
    support::create_namespace(&client, "status").await;
    let mut sts = three(WorkloadKind::StatefulSet);
    sts.name = "db".into();
    sts.partition = Some(1);
    workloads::seed(&client, "status", &sts).await;
    let mut plain = three(WorkloadKind::StatefulSet);
    plain.name = "plain".into();
    plain.partition = None;
    workloads::seed(&client, "status", &plain).await;
    let mut ds = three(WorkloadKind::DaemonSet);
    ds.name = "agent".into();
    workloads::seed(&client, "status", &ds).await;
    let mut on_delete = three(WorkloadKind::StatefulSet);
    on_delete.name = "legacy".into();
    on_delete.on_delete = true;
    workloads::seed(&client, "status", &on_delete).await;

    let sts_cases = [
        ("db", json!({"observedGeneration": 0})),
        ("db", json!({"observedGeneration": 1, "readyReplicas": 1})),
        (
            "db",
            json!({"observedGeneration": 1, "readyReplicas": 3, "updatedReplicas": 1}),
        ),
        (
            "db",
            json!({"observedGeneration": 1, "readyReplicas": 3, "updatedReplicas": 2}),
        ),
        (
            "plain",
            json!({"observedGeneration": 1, "readyReplicas": 3, "updatedReplicas": 1, "currentRevision": "plain-bbb", "updateRevision": "plain-ccc"}),
        ),
        (
            "plain",
            json!({"observedGeneration": 1, "readyReplicas": 3, "updatedReplicas": 3, "currentReplicas": 3, "currentRevision": "plain-ccc", "updateRevision": "plain-ccc"}),
        ),
    ];
    let ds_cases = [
        json!({"observedGeneration": 0}),
        json!({"observedGeneration": 1, "desiredNumberScheduled": 4, "updatedNumberScheduled": 2, "numberAvailable": 2}),
        json!({"observedGeneration": 1, "desiredNumberScheduled": 4, "updatedNumberScheduled": 4, "numberAvailable": 3}),
        json!({"observedGeneration": 1, "desiredNumberScheduled": 4, "updatedNumberScheduled": 4, "numberAvailable": 4}),
    ];
    let mut cases: Vec<(WorkloadKind, &str, Value)> = sts_cases
        .into_iter()
        .map(|(n, s)| (WorkloadKind::StatefulSet, n, s))
        .collect();
    cases.extend(
        ds_cases
            .into_iter()
            .map(|s| (WorkloadKind::DaemonSet, "agent", s)),
    );
    for (kind, name, status) in cases {
        workloads::set_status(&client, "status", kind, name, status.clone()).await;
        let resource = format!("{}/{name}", kind.singular());
        let (ok, stdout, stderr) = server.kubectl(&[
            "-n",
            "status",
            "rollout",
            "status",
            &resource,
            "--watch=false",
        ]);
        assert!(ok, "{resource} {status}: {stderr}");
        let handle = K8sWorkload::builder(client.clone(), kind)
            .namespace("status")
            .name(name)
            .build()
            .unwrap();
        let ours: WorkloadStatus = handle.rollout_status().await.unwrap();
        assert_eq!(ours.message, stdout.trim(), "{resource} {status}");
        let kubectl_done = [
            "roll out complete",
            "rolling update complete",
            "successfully rolled out",
        ]
        .iter()
        .any(|s| stdout.contains(s));
        assert_eq!(ours.done, kubectl_done, "{resource} {status}: {stdout}");
    }
    let (ok, _, stderr) = server.kubectl(&[
        "-n",
        "status",
        "rollout",
        "status",
        "statefulset/legacy",
        "--watch=false",
    ]);
    assert!(!ok);
    let handle = K8sWorkload::builder(client.clone(), WorkloadKind::StatefulSet)
        .namespace("status")
        .name("legacy")
        .build()
        .unwrap();
    let ours = handle.rollout_status().await.unwrap();
    assert!(ours.on_delete && !ours.done);
    // (kubectl's informer also logs that the test server serves no watches.)
    let kubectl_says = stderr
        .lines()
        .find_map(|l| l.strip_prefix("error: "))
        .unwrap_or_else(|| panic!("kubectl's error: {stderr}"));
    assert!(
        ours.message.starts_with(kubectl_says),
        "{} versus {kubectl_says}",
        ours.message
    );
}

/// `kubectl rollout history` and the target's history: the same revisions
/// with the same change causes (kubectl oldest first, the target newest
/// first), after a rollback renumbered one.
#[tokio::test]
async fn history_lists_what_kubectl_rollout_history_lists() {
    for kind in KINDS {
        let server = KubeServer::start();
        let client = server.client();
        support::create_namespace(&client, "h").await;
        let mut seed = three(kind);
        seed.revs[0].change_cause = None;
        workloads::seed(&client, "h", &seed).await;
        let ours = K8sWorkload::builder(client.clone(), kind)
            .namespace("h")
            .name("web")
            .build()
            .unwrap();
        ours.undo(&UndoTo::Number(1), &UndoOptions::default())
            .await
            .unwrap();
        assert!(workloads::controller_step(&client, "h", kind, "web").await);
        let resource = format!("{}/web", kind.singular());
        let (ok, stdout, stderr) = server.kubectl(&["-n", "h", "rollout", "history", &resource]);
        assert!(ok, "{stderr}");
        let kubectl: Vec<String> = stdout
            .lines()
            .skip(2)
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        let history = rollback_core::Target::history(&ours).await.unwrap();
        let mut mine: Vec<String> = history
            .iter()
            .map(|e| {
                let a = e.revision.attributes();
                let cause = a.get("change-cause").map_or("<none>", String::as_str);
                format!("{} {cause}", a["revision"])
            })
            .collect();
        mine.reverse();
        assert_eq!(mine, kubectl, "{kind}: {stdout}");
        assert_eq!(
            kubectl,
            ["2 deploy web:2", "3 deploy web:3", "4 <none>"],
            "{kind}"
        );
    }
}
