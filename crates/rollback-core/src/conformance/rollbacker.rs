//! A [`Rollbacker`] against its [`Target`]. These checks change the target.

use std::sync::Arc;

use super::{CONVERGENCE_TIMEOUT, Checked, ConformanceFailure, Report, fail, run};
use crate::{
    Actor, Convergence, DryRun, ErrorKind, Mark, RevisionHealth, RevisionId, RevisionRecord,
    RevisionRef, RollbackOutcome, RollbackRequest, Rollbacker, Target, Timestamp,
};

pub(super) fn request(from: &RevisionId, to: RevisionRef, dry_run: DryRun) -> RollbackRequest {
    RollbackRequest::new(to, Timestamp::from_millis(1_795_780_800_000))
        .from(from.clone())
        .reason("rollback-core conformance suite")
        .actor(Actor::new("conformance-suite"))
        .dry_run(dry_run)
}

async fn current_id(
    target: &dyn Target,
    check: &'static str,
) -> Result<RevisionId, ConformanceFailure> {
    target
        .current()
        .await
        .map(|c| c.id().clone())
        .map_err(|e| fail(target, check, e.full_message()))
}

async fn current_is(target: &dyn Target, check: &'static str, want: &RevisionId) -> Checked {
    let now = current_id(target, check).await?;
    if &now == want {
        Ok(())
    } else {
        Err(fail(
            target,
            check,
            format!("current revision is {now} but should be {want}"),
        ))
    }
}

/// The revision the checks roll back to: the newest other revision not
/// marked bad (or any other), and the current one.
pub(super) async fn choose(
    target: &dyn Target,
    check: &'static str,
) -> Result<(RevisionId, RevisionRef), ConformanceFailure> {
    let history = target
        .history()
        .await
        .map_err(|e| fail(target, check, e.full_message()))?;
    let current = current_id(target, check).await?;
    let others: Vec<_> = history
        .iter()
        .filter(|e| e.revision.id() != &current)
        .collect();
    let to = others
        .iter()
        .find(|e| e.health != RevisionHealth::Bad)
        .or(others.first())
        .ok_or_else(|| {
            fail(
                target,
                check,
                "the target needs at least two revisions in its history",
            )
        })?;
    Ok((current, to.revision.clone()))
}

/// [`Rollbacker::target`] names the target it is paired with.
pub async fn rollbacker_serves_its_target(
    target: &dyn Target,
    rollbacker: &dyn Rollbacker,
) -> Checked {
    if rollbacker.target() != target.id() {
        return Err(fail(
            target,
            "rollbacker_serves_its_target",
            format!(
                "the rollbacker says it moves target {}",
                rollbacker.target()
            ),
        ));
    }
    Ok(())
}

/// A client dry run answers `DryRun` and changes nothing.
pub async fn client_dry_run_changes_nothing(
    target: &dyn Target,
    rollbacker: &dyn Rollbacker,
) -> Checked {
    const CHECK: &str = "client_dry_run_changes_nothing";
    let (current, to) = choose(target, CHECK).await?;
    match rollbacker
        .rollback(&request(&current, to, DryRun::Client))
        .await
    {
        Ok(RollbackOutcome::DryRun { .. }) => {}
        Ok(other) => return Err(fail(target, CHECK, format!("a dry run returned {other:?}"))),
        Err(e) => return Err(fail(target, CHECK, e.full_message())),
    }
    current_is(target, CHECK, &current).await
}

/// A server dry run: answered `DryRun` by a backend with
/// `server_dry_run`, refused as `Unsupported` by one without; either way
/// nothing changes.
pub async fn server_dry_run(target: &dyn Target, rollbacker: &dyn Rollbacker) -> Checked {
    const CHECK: &str = "server_dry_run";
    let (current, to) = choose(target, CHECK).await?;
    let supported = rollbacker.capabilities().server_dry_run;
    match (
        supported,
        rollbacker
            .rollback(&request(&current, to, DryRun::Server))
            .await,
    ) {
        (true, Ok(RollbackOutcome::DryRun { .. })) => {}
        (false, Err(e)) if e.kind() == ErrorKind::Unsupported => {}
        (true, other) => {
            return Err(fail(
                target,
                CHECK,
                format!("the backend has server_dry_run, but a server dry run returned {other:?}"),
            ));
        }
        (false, other) => {
            return Err(fail(
                target,
                CHECK,
                format!(
                    "without server_dry_run a server dry run must be Unsupported, got {other:?}"
                ),
            ));
        }
    }
    current_is(target, CHECK, &current).await
}

/// A rollback to a revision the history does not hold is `NotFound` and
/// changes nothing.
pub async fn unknown_revision_is_not_found(
    target: &dyn Target,
    rollbacker: &dyn Rollbacker,
) -> Checked {
    const CHECK: &str = "unknown_revision_is_not_found";
    let current = current_id(target, CHECK).await?;
    let unknown: RevisionRef = Arc::new(RevisionRecord::new("conformance-suite-no-such-revision"));
    match rollbacker
        .rollback(&request(&current, unknown, DryRun::None))
        .await
    {
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => {
            return Err(fail(
                target,
                CHECK,
                format!(
                    "expected a NotFound error, got {}: {}",
                    e.kind(),
                    e.full_message()
                ),
            ));
        }
        Ok(o) => {
            return Err(fail(
                target,
                CHECK,
                format!("expected a NotFound error, got {o:?}"),
            ));
        }
    }
    current_is(target, CHECK, &current).await
}

/// A rollback answers `RolledBack` and makes the revision current. Returns
/// the revision restored.
pub async fn rollback_makes_the_revision_current(
    target: &dyn Target,
    rollbacker: &dyn Rollbacker,
) -> Result<RevisionRef, ConformanceFailure> {
    const CHECK: &str = "rollback_makes_the_revision_current";
    let (current, to) = choose(target, CHECK).await?;
    match rollbacker
        .rollback(&request(&current, to.clone(), DryRun::None))
        .await
    {
        Ok(RollbackOutcome::RolledBack { .. }) => {}
        Ok(other) => {
            return Err(fail(
                target,
                CHECK,
                format!("expected RolledBack, got {other:?}"),
            ));
        }
        Err(e) => return Err(fail(target, CHECK, e.full_message())),
    }
    current_is(target, CHECK, to.id()).await?;
    Ok(to)
}

/// After a rollback, `wait_converged` reports `Converged` (for a backend
/// with `convergence`).
pub async fn wait_converged_reports_convergence(
    target: &dyn Target,
    rollbacker: &dyn Rollbacker,
    revision: &RevisionId,
) -> Checked {
    const CHECK: &str = "wait_converged_reports_convergence";
    match rollbacker
        .wait_converged(revision, CONVERGENCE_TIMEOUT)
        .await
    {
        Ok(Convergence::Converged) => current_is(target, CHECK, revision).await,
        Ok(other) => Err(fail(
            target,
            CHECK,
            format!("expected Converged, got {other:?}"),
        )),
        Err(e) => Err(fail(target, CHECK, e.full_message())),
    }
}

/// The same rollback again is `AlreadyAt` and changes nothing.
pub async fn repeated_rollback_is_already_at(
    target: &dyn Target,
    rollbacker: &dyn Rollbacker,
    to: &RevisionRef,
) -> Checked {
    const CHECK: &str = "repeated_rollback_is_already_at";
    match rollbacker
        .rollback(&request(to.id(), to.clone(), DryRun::None))
        .await
    {
        Ok(RollbackOutcome::AlreadyAt { .. }) => {}
        Ok(other) => {
            return Err(fail(
                target,
                CHECK,
                format!("a repeated rollback returned {other:?}, not AlreadyAt"),
            ));
        }
        Err(e) => return Err(fail(target, CHECK, e.full_message())),
    }
    current_is(target, CHECK, to.id()).await
}

/// A mark written with [`Target::mark`] reads back in the history (for a
/// backend with `mark`). Marks `revision` good.
pub async fn marks_read_back(target: &dyn Target, revision: &RevisionId) -> Checked {
    const CHECK: &str = "marks_read_back";
    let mark = Mark::new(
        revision.clone(),
        RevisionHealth::Good,
        "rollback-core conformance suite",
        Timestamp::from_millis(1_795_780_800_000),
    );
    target
        .mark(&mark)
        .await
        .map_err(|e| fail(target, CHECK, e.full_message()))?;
    let history = target
        .history()
        .await
        .map_err(|e| fail(target, CHECK, e.full_message()))?;
    match history.iter().find(|e| e.revision.id() == revision) {
        Some(e) if e.health == RevisionHealth::Good => Ok(()),
        Some(e) => Err(fail(
            target,
            CHECK,
            format!(
                "revision {revision} was marked good but reads back {}",
                e.health
            ),
        )),
        None => Err(fail(
            target,
            CHECK,
            format!("revision {revision} left the history"),
        )),
    }
}

/// Every rollbacker check, in order, on a target with at least two
/// revisions. **It changes the target**: it rolls it back to the newest
/// earlier revision not marked bad, and marks that one good where the
/// backend keeps marks.
pub async fn check_rollbacker(
    target: &dyn Target,
    rollbacker: &dyn Rollbacker,
) -> Result<Report, ConformanceFailure> {
    let mut r = super::check_target(target).await?;
    let caps = rollbacker.capabilities();
    run(
        &mut r,
        "rollbacker_serves_its_target",
        rollbacker_serves_its_target(target, rollbacker),
    )
    .await?;
    run(
        &mut r,
        "client_dry_run_changes_nothing",
        client_dry_run_changes_nothing(target, rollbacker),
    )
    .await?;
    run(&mut r, "server_dry_run", server_dry_run(target, rollbacker)).await?;
    run(
        &mut r,
        "unknown_revision_is_not_found",
        unknown_revision_is_not_found(target, rollbacker),
    )
    .await?;
    let to = rollback_makes_the_revision_current(target, rollbacker).await?;
    r.passed.push("rollback_makes_the_revision_current");
    if caps.convergence {
        run(
            &mut r,
            "wait_converged_reports_convergence",
            wait_converged_reports_convergence(target, rollbacker, to.id()),
        )
        .await?;
    } else {
        r.skip(
            "wait_converged_reports_convergence",
            "the backend has no convergence",
        );
    }
    run(
        &mut r,
        "repeated_rollback_is_already_at",
        repeated_rollback_is_already_at(target, rollbacker, &to),
    )
    .await?;
    if target.capabilities().mark {
        run(&mut r, "marks_read_back", marks_read_back(target, to.id())).await?;
    } else {
        r.skip("marks_read_back", "the target keeps no health marks");
    }
    // The read side still holds after the changes.
    super::check_target(target).await?;
    Ok(r)
}
