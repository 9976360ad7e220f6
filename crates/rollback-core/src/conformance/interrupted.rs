//! A rollback cut short after each of its steps, as a killed process would
//! leave it, then asked again by a new rollbacker (as after a restart).

use std::sync::Arc;

use async_trait::async_trait;

use super::rollbacker::{choose, request};
use super::{ConformanceFailure, Report, fail};
use crate::steps::Steps;
use crate::{DryRun, Result, RollbackOutcome, Rollbacker, Target};

/// A backend's side of [`check_interrupted_rollback`].
#[async_trait]
pub trait InterruptionFixture: Send + Sync {
    /// A target set up afresh in the same state each time: a revision
    /// current that the check rolls away from, and at least one earlier
    /// revision to roll back to.
    async fn setup(&self) -> Result<Arc<dyn Target>>;

    /// A new rollbacker of `target` (as a restarted process builds it)
    /// whose steps `steps` counts and may stop.
    fn rollbacker(&self, target: &Arc<dyn Target>, steps: Steps) -> Arc<dyn Rollbacker>;

    /// The records the backend keeps of rollbacks of `target` (move
    /// records, tags, annotations, deployments it created), one string
    /// each, with what differs between two targets set up alike (a model's
    /// generated name, a deployment id) left out. Two complete runs of the
    /// same rollback on targets set up alike give the same list (sorted by
    /// the check); a record lost or written twice shows as a difference.
    async fn records(&self, target: &Arc<dyn Target>) -> Result<Vec<String>>;
}

const CHECK: &str = "interrupted_rollback_completes";

/// For each step `k` a complete rollback takes, and once after the last:
/// set the target up, run the rollback stopped before step `k + 1`, then
/// run the same request with a new rollbacker. The end state must be the restored revision, and the
/// backend's records the same as those of an uninterrupted run: complete,
/// each written once.
pub async fn check_interrupted_rollback(
    fixture: &dyn InterruptionFixture,
) -> std::result::Result<Report, ConformanceFailure> {
    let setup = || async {
        fixture.setup().await.map_err(|e| ConformanceFailure {
            check: CHECK,
            target: "(setup)".into(),
            message: e.full_message(),
        })
    };
    // The reference: one uninterrupted run.
    let target = setup().await?;
    let (from, to) = choose(&*target, CHECK).await?;
    let req = request(&from, to.clone(), DryRun::None);
    let steps = Steps::new();
    match fixture
        .rollbacker(&target, steps.clone())
        .rollback(&req)
        .await
    {
        Ok(RollbackOutcome::RolledBack { .. }) => {}
        other => {
            return Err(fail(
                &*target,
                CHECK,
                format!("an uninterrupted rollback returned {other:?}"),
            ));
        }
    }
    let taken = steps.taken();
    let records = |t: Arc<dyn Target>| async move {
        let mut r = fixture
            .records(&t)
            .await
            .map_err(|e| fail(&*t, CHECK, e.full_message()))?;
        r.sort();
        Ok::<_, ConformanceFailure>(r)
    };
    let want = records(target.clone()).await?;
    if want.is_empty() {
        return Err(fail(
            &*target,
            CHECK,
            "a complete rollback left no record in the backend",
        ));
    }
    // k = n: every step taken and the process killed before it could
    // record that: asked again, the rollback must find it done.
    let names = taken
        .iter()
        .map(String::as_str)
        .chain(["(after the last step)"]);
    for (k, step) in names.enumerate() {
        let target = setup().await?;
        let (from_k, to_k) = choose(&*target, CHECK).await?;
        if from_k != from || to_k.id() != to.id() {
            return Err(fail(
                &*target,
                CHECK,
                format!(
                    "setup is not the same each time: {from_k} -> {} after {from} -> {}",
                    to_k.id(),
                    to.id()
                ),
            ));
        }
        let req = request(&from, to_k, DryRun::None);
        let cut = fixture.rollbacker(&target, Steps::stop_after(k));
        let first = cut.rollback(&req).await;
        let again = fixture
            .rollbacker(&target, Steps::new())
            .rollback(&req)
            .await;
        let context = format!(
            "stopped before step {} ({step}), first call {first:?}",
            k + 1
        );
        match again {
            Ok(RollbackOutcome::RolledBack { .. } | RollbackOutcome::AlreadyAt { .. }) => {}
            other => {
                return Err(fail(
                    &*target,
                    CHECK,
                    format!("{context}; asked again: {other:?}"),
                ));
            }
        }
        let now = target
            .current()
            .await
            .map_err(|e| fail(&*target, CHECK, e.full_message()))?;
        if now.id() != to.id() {
            return Err(fail(
                &*target,
                CHECK,
                format!(
                    "{context}; asked again, the target runs {} instead of {}",
                    now.id(),
                    to.id()
                ),
            ));
        }
        let got = records(target.clone()).await?;
        if got != want {
            return Err(fail(
                &*target,
                CHECK,
                format!(
                    "{context}; the backend's records are {got:?}, but an uninterrupted rollback leaves {want:?}"
                ),
            ));
        }
    }
    Ok(Report {
        passed: vec![CHECK],
        skipped: Vec::new(),
    })
}
