use std::sync::Arc;

use async_trait::async_trait;

use super::*;
use crate::memory::{InMemoryRollbacker, InMemoryTarget, ScriptStep, ScriptedProbe};
use crate::steps::Steps;
use crate::{RevisionHealth, RevisionRecord, Rollbacker, Timestamp};

#[tokio::test]
async fn in_memory_backends_conform() {
    let t = InMemoryTarget::new(
        "demo",
        [
            RevisionRecord::new("v1"),
            RevisionRecord::new("v2"),
            RevisionRecord::new("v3"),
        ],
    )
    .unwrap();
    t.set_health(&"v2".into(), RevisionHealth::Bad).unwrap();
    let r = InMemoryRollbacker::new(&t);
    let report = check_rollbacker(&t, &r).await.unwrap();
    assert_eq!(
        t.current_id().as_str(),
        "v1",
        "skips the revision marked bad"
    );
    assert!(report.passed.contains(&"server_dry_run"));
    assert!(report.passed.contains(&"marks_read_back"));
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
}

#[tokio::test]
async fn scripted_probes_conform() {
    let ctx = ProbeContext::new("demo".into(), "v1".into(), Timestamp::EPOCH);
    let probe =
        ScriptedProbe::new("error_rate").script([ScriptStep::Value(0.1), ScriptStep::NoData]);
    check_probe(&probe, &ctx).await.unwrap();
    let e = check_probe(&ScriptedProbe::new(" "), &ctx)
        .await
        .unwrap_err();
    assert_eq!(e.check, "probe name");
}

#[tokio::test]
async fn a_broken_rollbacker_fails_the_suite() {
    let t = InMemoryTarget::new(
        "demo",
        [RevisionRecord::new("v1"), RevisionRecord::new("v2")],
    )
    .unwrap();
    let r = InMemoryRollbacker::new(&t);
    r.fail_convergence(Some("stuck".into()));
    let e = check_rollbacker(&t, &r).await.unwrap_err();
    assert_eq!(e.check, "wait_converged_reports_convergence");
    let single = InMemoryTarget::new("one", [RevisionRecord::new("v1")]).unwrap();
    let e = check_rollbacker(&single, &InMemoryRollbacker::new(&single))
        .await
        .unwrap_err();
    assert_eq!(e.check, "client_dry_run_changes_nothing");
    assert!(e.message.contains("at least two revisions"), "{e}");
    let other = InMemoryTarget::new(
        "other",
        [RevisionRecord::new("v1"), RevisionRecord::new("v2")],
    )
    .unwrap();
    let e = check_rollbacker(&t, &InMemoryRollbacker::new(&other))
        .await
        .unwrap_err();
    assert_eq!(e.check, "rollbacker_serves_its_target");
}

/// In-memory targets for the interruption check; `forgetful` makes a
/// rollbacker that skips its record when the target is already there, as a
/// backend without the fix did.
struct Fixture {
    forgetful: bool,
    /// The target the last setup made.
    last: std::sync::Mutex<Option<InMemoryTarget>>,
}

impl Fixture {
    fn new(forgetful: bool) -> Self {
        Fixture {
            forgetful,
            last: std::sync::Mutex::new(None),
        }
    }

    fn last(&self) -> InMemoryTarget {
        self.last.lock().unwrap().clone().unwrap()
    }
}

#[derive(Debug)]
struct Forgetful(InMemoryRollbacker, InMemoryTarget);

#[async_trait]
impl Rollbacker for Forgetful {
    fn target(&self) -> &crate::TargetId {
        self.0.target()
    }
    async fn rollback(
        &self,
        request: &crate::RollbackRequest,
    ) -> crate::Result<crate::RollbackOutcome> {
        if &self.1.current_id() == request.to.id() {
            return Ok(crate::RollbackOutcome::AlreadyAt {
                detail: "already there".into(),
            });
        }
        self.0.rollback(request).await
    }
}

#[async_trait]
impl InterruptionFixture for Fixture {
    async fn setup(&self) -> crate::Result<Arc<dyn Target>> {
        let t = InMemoryTarget::new(
            "demo",
            [RevisionRecord::new("v1"), RevisionRecord::new("v2")],
        )?;
        *self.last.lock().unwrap() = Some(t.clone());
        Ok(Arc::new(t))
    }
    fn rollbacker(&self, _: &Arc<dyn Target>, steps: Steps) -> Arc<dyn Rollbacker> {
        let t = self.last();
        let r = InMemoryRollbacker::new(&t);
        r.steps(steps);
        if self.forgetful {
            Arc::new(Forgetful(r, t))
        } else {
            Arc::new(r)
        }
    }
    async fn records(&self, _: &Arc<dyn Target>) -> crate::Result<Vec<String>> {
        Ok(self
            .last()
            .records()
            .iter()
            .map(|r| format!("{r:?}"))
            .collect())
    }
}

#[tokio::test]
async fn an_interrupted_in_memory_rollback_completes_once() {
    let report = check_interrupted_rollback(&Fixture::new(false))
        .await
        .unwrap();
    assert_eq!(report.passed, ["interrupted_rollback_completes"]);
    let e = check_interrupted_rollback(&Fixture::new(true))
        .await
        .unwrap_err();
    assert!(
        e.message
            .contains("stopped before step 2 (keep the rollback record)"),
        "{e}"
    );
}

#[tokio::test]
async fn the_memory_and_file_stores_conform() {
    let memory = crate::store::MemoryStateStore::new();
    let report = check_state_store(&memory, "").await.unwrap();
    assert_eq!(report.passed.len(), 4, "{report:?}");
    let dir = tempfile::tempdir().unwrap();
    let file = crate::store::FileStateStore::new(dir.path()).unwrap();
    check_state_store(&file, "").await.unwrap();
    // Twice on one store, under another prefix.
    check_state_store(&file, "second/").await.unwrap();
}
