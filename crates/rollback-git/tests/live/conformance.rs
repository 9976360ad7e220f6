//! The conformance suite of rollback-core against both remotes, then `git
//! log` and `git show` on what the remote holds.

use rollback_core::conformance::{check_rollbacker, check_target};
use rollback_core::{Target, Timestamp};

use crate::support::{Daemon, Remote, Seeded};

/// The checks the suite runs, and those it skips, for this backend.
const PASSED: [&str; 13] = [
    "history_is_not_empty",
    "history_has_no_duplicates",
    "history_is_newest_first",
    "history_holds_the_current_revision",
    "history_is_stable",
    "revision_record_matches",
    "rollbacker_serves_its_target",
    "client_dry_run_changes_nothing",
    "server_dry_run",
    "unknown_revision_is_not_found",
    "rollback_makes_the_revision_current",
    "repeated_rollback_is_already_at",
    "marks_read_back",
];

async fn conforms(remote: &Remote, seeded: &Seeded) {
    let cache = tempfile::tempdir().unwrap();
    let target = remote.target(cache.path()).await;
    let read = check_target(&target).await.unwrap();
    assert_eq!(read.passed, PASSED[..6]);
    let before = remote.git(&["rev-parse", "main"]);
    let report = check_rollbacker(&target, &target.rollbacker())
        .await
        .unwrap();
    assert_eq!(report.passed, PASSED);
    assert_eq!(
        report.skipped,
        [(
            "wait_converged_reports_convergence",
            "the backend has no convergence"
        )]
    );

    // What the remote holds, as git shows it: one commit on top of the
    // seed's tip, restoring apps/web to web v2 and nothing else.
    let [_, web2, web3] = &seeded.web;
    assert_eq!(remote.git(&["rev-parse", "main~1"]), before);
    assert_eq!(remote.object("main", "apps/web"), *web2);
    assert_eq!(
        remote.git(&["show", "main:apps/web/deploy.yaml"]),
        "image: web:2"
    );
    assert_eq!(
        remote.git(&["show", "main:apps/api/deploy.yaml"]),
        "image: api:2"
    );
    assert_eq!(
        remote.git(&["diff", "--name-only", "main~1", "main"]),
        "apps/web/deploy.yaml"
    );
    assert_eq!(
        remote.git(&["log", "-1", "--format=%s", "main"]),
        format!("Roll back apps/web to {}", &web2[..12])
    );
    let trailers = remote.git(&["log", "-1", "--format=%(trailers:only,unfold)", "main"]);
    let decided_at = Timestamp::from_millis(1_795_780_800_000);
    for line in [
        format!("Rollback-To: {web2}"),
        format!("Rollback-From: {web3}"),
        "Rollback-Path: apps/web".to_owned(),
        "Reason: rollback-core conformance suite".to_owned(),
        format!("Rollback-Decided-At: {decided_at}"),
        "Rollback-Actor: conformance-suite".to_owned(),
    ] {
        assert!(trailers.lines().any(|l| l == line), "{line} in {trailers}");
    }
    // Dated at the engine's decision, by the configured identity.
    assert_eq!(
        remote.git(&["log", "-1", "--format=%ct %cn <%ce> %at", "main"]),
        "1795780800 rollback <rollback@localhost> 1795780800"
    );
    // The repeated rollback wrote nothing more.
    assert_eq!(
        remote.git(&["rev-list", "--count", "--grep=Rollback-Decided-At", "main"]),
        "1"
    );
    // The marks: web v3 bad (written with the rollback), web v2 good (the
    // suite's mark), as notes on the trees.
    let bad = remote.note(web3).expect("web v3 is marked");
    assert_eq!(
        bad,
        format!("Health: bad\nReason: rollback-core conformance suite\nMarked-At: {decided_at}\n")
    );
    let good = remote.note(web2).expect("web v2 is marked");
    assert!(good.starts_with("Health: good\n"), "{good}");
    let current = target.current().await.unwrap();
    assert_eq!(current.id().as_str(), web2);
}

#[tokio::test]
async fn a_bare_repository_over_file_urls_conforms() {
    let (remote, seeded) = Remote::seed();
    conforms(&remote, &seeded).await;
}

#[tokio::test]
async fn a_repository_served_by_git_daemon_conforms() {
    let daemon = Daemon::start();
    let (remote, seeded) = daemon.seed("config");
    conforms(&remote, &seeded).await;
}
