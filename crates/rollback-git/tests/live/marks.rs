//! Health marks as git notes on the path's trees, pushed to the remote:
//! read back with the history, written once, kept when two engines mark at
//! the same time.

use std::time::Duration;

use rollback_core::{ErrorKind, Mark, RevisionHealth, Target, Timestamp};

use crate::support::{Remote, git};

const AT: Timestamp = Timestamp::from_millis(1_795_780_800_000);

fn mark(revision: &str, health: RevisionHealth, at: Timestamp) -> Mark {
    Mark::new(revision.into(), health, format!("judged {health}"), at)
}

#[tokio::test]
async fn marks_read_back_and_the_same_mark_is_written_once() {
    let (remote, seeded) = Remote::seed();
    let cache = tempfile::tempdir().unwrap();
    let t = remote.target(cache.path()).await;
    let [web1, web2, web3] = &seeded.web;
    t.mark(&mark(web2, RevisionHealth::Good, AT)).await.unwrap();
    t.mark(&mark(web3, RevisionHealth::Bad, AT)).await.unwrap();
    let later = AT.plus(Duration::from_secs(600));
    t.mark(&mark(web2, RevisionHealth::Bad, later))
        .await
        .unwrap();
    let h = t.history().await.unwrap();
    let health: Vec<_> = h.iter().map(|e| e.health).collect();
    assert_eq!(
        health,
        [
            RevisionHealth::Bad,
            RevisionHealth::Bad,
            RevisionHealth::Unknown
        ]
    );
    assert_eq!(h[2].revision.id().as_str(), web1);
    assert_eq!(
        remote.note(web2).unwrap(),
        format!(
            "Health: good\nReason: judged good\nMarked-At: {AT}\n\nHealth: bad\nReason: judged bad\nMarked-At: {later}\n"
        )
    );
    // Three marks, three notes commits, dated at the marks' times.
    let commits = remote.git(&["rev-list", "--count", "refs/notes/rollback"]);
    assert_eq!(commits, "3");
    assert_eq!(
        remote.git(&["log", "-1", "--format=%ct %an", "refs/notes/rollback"]),
        format!("{} rollback", later.as_millis() / 1000)
    );
    // The same marks again (a retry, a restart): nothing written.
    t.mark(&mark(web2, RevisionHealth::Good, AT)).await.unwrap();
    t.mark(&mark(web2, RevisionHealth::Bad, later))
        .await
        .unwrap();
    assert_eq!(
        remote.git(&["rev-list", "--count", "refs/notes/rollback"]),
        commits
    );
}

#[tokio::test]
async fn a_mark_of_no_object_of_the_repository_is_not_found() {
    let (remote, _) = Remote::seed();
    let cache = tempfile::tempdir().unwrap();
    let t = remote.target(cache.path()).await;
    for revision in ["v2", &"0".repeat(40)] {
        let e = t
            .mark(&mark(revision, RevisionHealth::Good, AT))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(
            e.message().contains(&format!(
                "revision {revision} is no tree or file of {}",
                remote.url
            )),
            "{}",
            e.message()
        );
    }
    assert_eq!(remote.git(&["for-each-ref", "refs/notes"]), "");
}

#[tokio::test]
async fn two_engines_marking_at_once_both_land() {
    let (remote, seeded) = Remote::seed();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (ta, tb) = (remote.target(a.path()).await, remote.target(b.path()).await);
    let [web1, web2, web3] = &seeded.web;
    let (ra, rb) = tokio::join!(
        async {
            ta.mark(&mark(web1, RevisionHealth::Good, AT)).await?;
            ta.mark(&mark(web3, RevisionHealth::Bad, AT)).await
        },
        async {
            tb.mark(&mark(web2, RevisionHealth::Good, AT)).await?;
            tb.mark(&mark(
                web3,
                RevisionHealth::Bad,
                AT.plus(Duration::from_secs(1)),
            ))
            .await
        },
    );
    ra.unwrap();
    rb.unwrap();
    let h = ta.history().await.unwrap();
    let health: Vec<_> = h.iter().map(|e| e.health).collect();
    assert_eq!(
        health,
        [
            RevisionHealth::Bad,
            RevisionHealth::Good,
            RevisionHealth::Good
        ]
    );
    assert_eq!(remote.note(web3).unwrap().matches("Health: bad").count(), 2);
}

#[tokio::test]
async fn notes_written_by_hand_are_kept() {
    let (remote, seeded) = Remote::seed();
    let web3 = &seeded.web[2];
    git(
        &remote.work,
        &[
            "notes",
            "--ref=rollback",
            "add",
            "-m",
            "ask Dana before rolling this back",
            web3,
        ],
    );
    git(
        &remote.work,
        &["push", "--quiet", "origin", "refs/notes/rollback"],
    );
    let cache = tempfile::tempdir().unwrap();
    let t = remote.target(cache.path()).await;
    assert_eq!(
        t.history().await.unwrap()[0].health,
        RevisionHealth::Unknown
    );
    t.mark(&mark(web3, RevisionHealth::Bad, AT)).await.unwrap();
    assert_eq!(t.history().await.unwrap()[0].health, RevisionHealth::Bad);
    assert!(
        remote
            .note(web3)
            .unwrap()
            .starts_with("ask Dana before rolling this back\n\nHealth: bad\n")
    );
}
