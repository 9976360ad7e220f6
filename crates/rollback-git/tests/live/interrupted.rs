//! A rollback cut short before each of its pushes (and after the last), then
//! asked again by a new rollbacker, as after a restart:
//! `conformance::check_interrupted_rollback` against both remotes, and
//! against a remote that cannot push atomically (the mark and the commit
//! are then two pushes, so an interruption can fall between them).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rollback_core::conformance::{InterruptionFixture, check_interrupted_rollback};
use rollback_core::steps::Steps;
use rollback_core::{Result, Rollbacker, Target, TargetId};
use rollback_git::GitTarget;
use tempfile::TempDir;

use crate::support::{Daemon, Remote};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Serve {
    File,
    Daemon,
    /// `file://`, with `receive.advertiseAtomic=false` on the remote.
    FileWithoutAtomicPushes,
}

struct Fixture {
    serve: Serve,
    daemon: Option<Daemon>,
    cache: TempDir,
    remotes: Mutex<BTreeMap<TargetId, (Remote, GitTarget)>>,
    steps: Mutex<Vec<Steps>>,
}

impl Fixture {
    fn new(serve: Serve) -> Self {
        Fixture {
            serve,
            daemon: (serve == Serve::Daemon).then(Daemon::start),
            cache: TempDir::new().unwrap(),
            remotes: Mutex::default(),
            steps: Mutex::default(),
        }
    }

    fn reference_steps(&self) -> Vec<String> {
        self.steps.lock().unwrap()[0].taken()
    }
}

#[async_trait::async_trait]
impl InterruptionFixture for Fixture {
    async fn setup(&self) -> Result<Arc<dyn Target>> {
        let n = self.remotes.lock().unwrap().len();
        let (remote, _) = match &self.daemon {
            Some(d) => d.seed(&format!("config-{n}")),
            None => Remote::seed(),
        };
        if self.serve == Serve::FileWithoutAtomicPushes {
            remote.git(&["config", "receive.advertiseAtomic", "false"]);
        }
        // A cache of its own per setup: each remote is a different URL.
        let target = remote.target(&self.cache.path().join(n.to_string())).await;
        self.remotes
            .lock()
            .unwrap()
            .insert(target.id().clone(), (remote, target.clone()));
        Ok(Arc::new(target))
    }

    fn rollbacker(&self, target: &Arc<dyn Target>, steps: Steps) -> Arc<dyn Rollbacker> {
        self.steps.lock().unwrap().push(steps.clone());
        let remotes = self.remotes.lock().unwrap();
        Arc::new(remotes[target.id()].1.rollbacker().steps(steps))
    }

    /// The rollback commits on main (subject, committer time, trailers) and
    /// every note under refs/notes/rollback, as git shows them.
    async fn records(&self, target: &Arc<dyn Target>) -> Result<Vec<String>> {
        let remotes = self.remotes.lock().unwrap();
        let remote = &remotes[target.id()].0;
        let mut out: Vec<String> = remote
            .git(&[
                "log",
                "--grep=^Rollback-Decided-At:",
                "--format=commit %s at %ct: %(trailers:only,unfold,separator=%x3b )",
                "main",
            ])
            .lines()
            .map(str::to_owned)
            .collect();
        let notes = remote.git(&["notes", "--ref=rollback", "list"]);
        for object in notes.lines().filter_map(|l| l.split(' ').nth(1)) {
            out.push(format!(
                "note on {object}: {}",
                remote.note(object).unwrap_or_default()
            ));
        }
        Ok(out)
    }
}

async fn check(serve: Serve) -> Fixture {
    let fixture = Fixture::new(serve);
    let report = check_interrupted_rollback(&fixture).await.unwrap();
    assert_eq!(report.passed, ["interrupted_rollback_completes"]);
    // Each setup ends with one rollback commit and one bad mark.
    for (remote, _) in fixture.remotes.lock().unwrap().values() {
        assert_eq!(
            remote.git(&[
                "rev-list",
                "--count",
                "--grep=^Rollback-Decided-At:",
                "main"
            ]),
            "1"
        );
        assert_eq!(
            remote
                .git(&["notes", "--ref=rollback", "list"])
                .lines()
                .count(),
            1
        );
    }
    fixture
}

fn atomic_step(fixture: &Fixture) -> String {
    let remotes = fixture.remotes.lock().unwrap();
    let (remote, _) = remotes.values().next().unwrap();
    let web2 = remote.object("main", "apps/web");
    let web3 = remote.object("main~1", "apps/web");
    format!(
        "push the commit restoring apps/web to {} and push the bad mark of {} to refs/notes/rollback",
        &web2[..12],
        &web3[..12]
    )
}

#[tokio::test]
async fn an_interrupted_rollback_over_file_urls_completes_written_once() {
    let f = check(Serve::File).await;
    assert_eq!(f.reference_steps(), [atomic_step(&f)]);
}

#[tokio::test]
async fn an_interrupted_rollback_over_git_daemon_completes_written_once() {
    let f = check(Serve::Daemon).await;
    assert_eq!(f.reference_steps(), [atomic_step(&f)]);
}

#[tokio::test]
async fn without_atomic_pushes_the_mark_then_the_commit_each_complete_once() {
    let f = check(Serve::FileWithoutAtomicPushes).await;
    let steps = f.reference_steps();
    let remotes = f.remotes.lock().unwrap();
    let (remote, _) = remotes.values().next().unwrap();
    let web2 = remote.object("main", "apps/web");
    let web3 = remote.object("main~1", "apps/web");
    drop(remotes);
    assert_eq!(
        steps,
        [
            atomic_step(&f),
            format!(
                "push the bad mark of {} to refs/notes/rollback",
                &web3[..12]
            ),
            format!("push the commit restoring apps/web to {}", &web2[..12]),
        ]
    );
}
