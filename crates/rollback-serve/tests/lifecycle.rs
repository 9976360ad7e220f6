//! The server's life: a deploy noticed and judged while it runs, reloads
//! (a change on disk, an explicit reload) that add, remove and restart only
//! what changed, a graceful shutdown that lets a rollback in flight finish
//! or resumes it on the next start, and starts that fail with their reason.

mod common;

use std::time::Duration;

use common::{BOT, Bot, SERVE, Shelf, VIEWER, events, start, until, write};
use rollback_core::audit::{ActionKind, AuditEntry, MemoryAuditSink};
use rollback_core::machine::PhaseKind;
use rollback_core::{RevisionHealth, RevisionRecord};
use rollback_serve::Server;

const WAIT: Duration = Duration::from_secs(20);

fn policy(bake: &str) -> String {
    format!(
        "policy:\n  interval: 100ms\n  bake_time: {bake}\n  verify: 300ms\n\
         probes:\n  - name: error_rate\n    success: \"< 0.01\"\n    scripted:\n      per_revision: {{bad: [0.05], v1: [0.001], v2: [0.001], v3: [0.001]}}\n"
    )
}

fn phase(server: &Server, id: &str) -> Option<PhaseKind> {
    server
        .engine()
        .phases()
        .into_iter()
        .find(|(t, _)| t.as_str() == id)
        .map(|(_, p)| p.kind())
}

#[tokio::test]
async fn a_deploy_while_serving_is_judged_and_rolled_back_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let shelf = Shelf::default();
    let (web, _) = shelf.put("web", &["v1", "v2"]);
    let file = write(
        dir.path(),
        "rollback.yaml",
        &format!(
            "{}targets:\n  - url: shelf://web\n{SERVE}  poll_interval: 100ms\n",
            policy("500ms")
        ),
    );
    let audit = MemoryAuditSink::new();
    let server = start(&file, shelf.registry(), &audit).await;
    until("v2 promoted", WAIT, || {
        phase(&server, "web") == Some(PhaseKind::Promoted)
    })
    .await;
    web.deploy(RevisionRecord::new("bad"));
    until("bad rolled back", WAIT, || {
        phase(&server, "web") == Some(PhaseKind::RolledBack)
    })
    .await;
    assert_eq!(web.current_id().as_str(), "v2");
    assert_eq!(web.health_of(&"bad".into()), Some(RevisionHealth::Bad));
    assert_eq!(
        events(&audit, "web"),
        [
            "started v2",
            "observing->promoted",
            "decided promote",
            "started bad",
            "observing->rolling_back",
            "decided rollback",
            "rolling_back->verifying",
            "verifying->rolled_back",
            "decided complete",
        ]
    );
    // The revision rolled back to is not judged again: the supervisor's
    // next looks find what the rollback restored and neither start nor
    // resume a watch of it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = events(&audit, "web");
    assert_eq!(seen.len(), 9, "{seen:?}");
    server.shutdown().await;
}

/// A server on the file `text` (targets a and b), once both are observed.
async fn a_and_b_observed(
    dir: &std::path::Path,
    shelf: &Shelf,
    text: &str,
    audit: &MemoryAuditSink,
) -> Server {
    let file = write(dir, "rollback.yaml", text);
    let server = start(&file, shelf.registry(), audit).await;
    until("a and b observed", WAIT, || {
        phase(&server, "a") == Some(PhaseKind::Observing)
            && phase(&server, "b") == Some(PhaseKind::Observing)
    })
    .await;
    server
}

async fn c_replaced_b(server: &Server) {
    until("c observed and b gone", WAIT, || {
        phase(server, "c") == Some(PhaseKind::Observing) && phase(server, "b").is_none()
    })
    .await;
}

#[tokio::test]
async fn a_change_on_disk_is_reloaded_unasked() {
    let dir = tempfile::tempdir().unwrap();
    let shelf = Shelf::default();
    for name in ["a", "b", "c"] {
        shelf.put(name, &["v1", "v2"]);
    }
    let text = |targets: &str| format!("{}targets:\n{targets}{SERVE}", policy("1h"));
    let audit = MemoryAuditSink::new();
    let server = a_and_b_observed(
        dir.path(),
        &shelf,
        &text("  - url: shelf://a\n  - url: shelf://b\n"),
        &audit,
    )
    .await;
    // The file is checked every 100 ms (SERVE): b goes, c comes.
    write(
        dir.path(),
        "rollback.yaml",
        &text("  - url: shelf://a\n  - url: shelf://c\n"),
    );
    c_replaced_b(&server).await;
    assert_eq!(server.targets().len(), 2);
    assert_eq!(events(&audit, "a"), ["started v2"], "a was not disturbed");
    server.shutdown().await;
}

#[tokio::test]
async fn reloads_add_remove_and_restart_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let shelf = Shelf::default();
    for name in ["a", "b", "c"] {
        shelf.put(name, &["v1", "v2"]);
    }
    // Reloads only when asked, so each report is the explicit reload's (a
    // check of the file on disk could apply a change first and leave the
    // explicit reload nothing to report; that check has its own test).
    let serve = SERVE.replace("reload_check: 100ms", "reload_check: 0s");
    let text = |targets: &str, operators_extra: &str| {
        format!(
            "{}targets:\n{targets}{serve}{operators_extra}",
            policy("1h")
        )
    };
    let audit = MemoryAuditSink::new();
    let server = a_and_b_observed(
        dir.path(),
        &shelf,
        &text("  - url: shelf://a\n  - url: shelf://b\n", ""),
        &audit,
    )
    .await;
    let viewer = Bot::new(&server, Some(VIEWER));

    // b goes, c comes; a is not disturbed.
    write(
        dir.path(),
        "rollback.yaml",
        &text("  - url: shelf://a\n  - url: shelf://c\n", ""),
    );
    let r = server.reload().await.unwrap();
    assert_eq!((r.added, r.removed), (vec!["c".into()], vec!["b".into()]));
    c_replaced_b(&server).await;
    let (_, list) = viewer.get("/api/v1/targets").await;
    let ids: Vec<&str> = list["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["target"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "c"]);

    // Nothing changed: nothing is touched.
    let r = server.reload().await.unwrap();
    assert_eq!(
        (r.added.len(), r.removed.len(), r.changed.len(), r.unchanged),
        (0, 0, 0, 2)
    );

    // c's options change: only c restarts, from its saved state.
    write(
        dir.path(),
        "rollback.yaml",
        &text(
            "  - url: shelf://a\n  - url: shelf://c\n    note: moved\n",
            "",
        ),
    );
    let r = server.reload().await.unwrap();
    assert_eq!(r.changed, ["c".into()], "{r}");
    assert_eq!(r.unchanged, 1);
    until("c resumed from its saved state", WAIT, || {
        events(&audit, "c").contains(&"resumed v2 observing".to_owned())
    })
    .await;
    assert_eq!(
        events(&audit, "a"),
        ["started v2"],
        "a was not disturbed by any reload"
    );

    // A broken file is refused whole, and counted.
    write(
        dir.path(),
        "rollback.yaml",
        "targets: [{url: shelf://a}]\npolicy: {intervl: 1s}\n",
    );
    let e = server.reload().await.unwrap_err();
    assert!(e.full_message().contains("intervl"), "{}", e.full_message());
    assert_eq!(server.targets().len(), 2);
    let metrics = reqwest::get(format!("{}/metrics", server.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"rollback_reloads_total{outcome="failed"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains("rollback_targets 2"), "{metrics}");

    // A token taken out of the file stops working at the reload.
    let no_viewer = text(
        "  - url: shelf://a\n  - url: shelf://c\n    note: moved\n",
        "",
    )
    .replace("    - {actor: viewer, token: \"${VIEWER_TOKEN}\"}\n", "");
    write(dir.path(), "rollback.yaml", &no_viewer);
    server.reload().await.unwrap();
    assert_eq!(viewer.get("/api/v1/targets").await.0, 401);
    assert_eq!(
        Bot::new(&server, Some(BOT)).get("/api/v1/targets").await.0,
        200
    );
    server.shutdown().await;
}

fn rolling_file(dir: &std::path::Path, grace: &str) -> std::path::PathBuf {
    write(
        dir,
        "rollback.yaml",
        &format!(
            "{}state: state\naudit: audit.jsonl\ntargets:\n  - url: shelf://web\n{}",
            policy("1h"),
            SERVE.replace("shutdown_grace: 5s", &format!("shutdown_grace: {grace}"))
        ),
    )
}

fn converging(audit: &MemoryAuditSink) -> bool {
    common::seen(audit, "web", |e| {
        matches!(
            e,
            AuditEntry::ActionStarted {
                action: ActionKind::WaitConverged,
                ..
            }
        )
    })
}

#[tokio::test]
async fn a_shutdown_lets_the_rollback_in_flight_finish_and_a_restart_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let shelf = Shelf::default();
    let (web, rollbacker) = shelf.put("web", &["v1", "bad"]);
    rollbacker.converge_after(Duration::from_millis(1500));
    let file = rolling_file(dir.path(), "10s");
    // A verification long enough that the shutdown, which looks at the
    // phases every 50 ms, stops it on a busy machine too (with 300 ms it
    // once finished first and the restart resumed it rolled back).
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("verify: 300ms", "verify: 2s")).unwrap();
    let audit = MemoryAuditSink::new();
    let server = start(&file, shelf.registry(), &audit).await;
    until("the rollback is converging", WAIT, || converging(&audit)).await;
    let url = server.url();
    let report = server.shutdown().await;
    assert!(report.interrupted.is_empty(), "{report:?}");
    assert!(
        common::seen(&audit, "web", |e| matches!(
            e,
            AuditEntry::ActionSucceeded {
                action: ActionKind::WaitConverged,
                ..
            }
        )),
        "the rollback finished: {:?}",
        events(&audit, "web")
    );
    assert!(
        reqwest::get(format!("{url}/healthz")).await.is_err(),
        "nothing listens any more"
    );
    assert_eq!(web.current_id().as_str(), "v1");

    // The next start resumes the verification where it was.
    let audit = MemoryAuditSink::new();
    let server = start(&file, shelf.registry(), &audit).await;
    until("verified after the restart", WAIT, || {
        phase(&server, "web") == Some(PhaseKind::RolledBack)
    })
    .await;
    let seen = events(&audit, "web");
    assert_eq!(seen[0], "resumed bad verifying", "{seen:?}");
    assert!(!seen.iter().any(|e| e.starts_with("started")), "{seen:?}");
    assert_eq!(rollbacker.performed().len(), 1, "one rollback call in all");
    // The audit log of the file holds both runs as one chain.
    let log =
        rollback_core::audit::JsonLinesAuditSink::read(dir.path().join("audit.jsonl")).unwrap();
    assert!(log.records.len() >= 8);
    server.shutdown().await;
}

#[tokio::test]
async fn a_rollback_cut_at_the_bound_is_resumed_by_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let shelf = Shelf::default();
    let (web, rollbacker) = shelf.put("web", &["v1", "bad"]);
    rollbacker.converge_after(Duration::from_secs(30));
    let file = rolling_file(dir.path(), "200ms");
    let audit = MemoryAuditSink::new();
    let server = start(&file, shelf.registry(), &audit).await;
    until("the rollback is converging", WAIT, || converging(&audit)).await;
    let report = server.shutdown().await;
    assert_eq!(report.interrupted, ["web".into()]);

    rollbacker.converge_after(Duration::ZERO);
    let audit = MemoryAuditSink::new();
    let server = start(&file, shelf.registry(), &audit).await;
    until("rolled back after the restart", WAIT, || {
        phase(&server, "web") == Some(PhaseKind::RolledBack)
    })
    .await;
    assert_eq!(events(&audit, "web")[0], "resumed bad rolling_back");
    assert_eq!(web.current_id().as_str(), "v1");
    let calls = rollbacker.calls();
    assert_eq!(calls.len(), 2, "carried out again: {calls:?}");
    assert!(matches!(
        calls[1].result,
        Ok(rollback_core::RollbackOutcome::AlreadyAt { .. })
    ));
    server.shutdown().await;
}

#[tokio::test]
async fn a_server_that_cannot_start_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let shelf = Shelf::default();
    shelf.put("web", &["v1", "v2"]);
    let start_err = |file: std::path::PathBuf, listen: &str| {
        let registry = shelf.registry();
        let listen = listen.parse().unwrap();
        async move {
            Server::builder(file)
                .listen(listen)
                .registry(registry)
                .env(common::env)
                .start()
                .await
                .map(|_| ())
                .unwrap_err()
                .full_message()
        }
    };
    let bad_serve = write(
        dir.path(),
        "a.yaml",
        &format!(
            "{}targets: [{{url: shelf://web}}]\nserve:\n  operators: [{{actor: bot, token: \"${{NOPE}}\"}}]\n",
            policy("1h")
        ),
    );
    let e = start_err(bad_serve, "127.0.0.1:0").await;
    assert!(e.contains("NOPE"), "{e}");
    let bad_serve = write(
        dir.path(),
        "b.yaml",
        &format!(
            "{}targets: [{{url: shelf://web}}]\nserve:\n  notifications: {{channels: [{{slack: ftp://x}}]}}\n",
            policy("1h")
        ),
    );
    let e = start_err(bad_serve, "127.0.0.1:0").await;
    assert!(
        e.contains("serve.notifications.channels[0].slack") && e.contains("not an http"),
        "{e}"
    );
    let unknown = write(
        dir.path(),
        "c.yaml",
        &format!("{}targets: [{{url: nomad://jobs/web}}]\n", policy("1h")),
    );
    let e = start_err(unknown, "127.0.0.1:0").await;
    assert!(e.contains("unknown scheme \"nomad\""), "{e}");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let good = write(
        dir.path(),
        "d.yaml",
        &format!("{}targets: [{{url: shelf://web}}]\n", policy("1h")),
    );
    let e = start_err(good, &busy.local_addr().unwrap().to_string()).await;
    assert!(e.starts_with("cannot listen on 127.0.0.1:"), "{e}");
}
