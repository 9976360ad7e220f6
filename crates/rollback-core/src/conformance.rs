//! The conformance suite every backend runs against its own server.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use rollback_core::{conformance, InMemoryRollbacker, InMemoryTarget, RevisionRecord};
//! let target = InMemoryTarget::new("demo", [RevisionRecord::new("v1"), RevisionRecord::new("v2")]).unwrap();
//! let rollbacker = InMemoryRollbacker::new(&target);
//! conformance::check_target(&target).await.unwrap();
//! conformance::check_rollbacker(&target, &rollbacker).await.unwrap();
//! # }
//! ```

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::{
    Actor, Convergence, ErrorKind, HealthProbe, ProbeContext, RevisionHealth, RevisionId,
    RevisionRecord, RevisionRef, RollbackOutcome, RollbackRequest, Rollbacker, Target,
};

/// A check the backend failed.
#[derive(Debug, thiserror::Error)]
#[error("conformance check `{check}` failed on target {target}: {message}")]
pub struct ConformanceFailure {
    /// The check.
    pub check: &'static str,
    /// The target.
    pub target: String,
    /// What went wrong.
    pub message: String,
}

fn fail(
    target: &dyn Target,
    check: &'static str,
    message: impl Into<String>,
) -> ConformanceFailure {
    ConformanceFailure {
        check,
        target: target.id().to_string(),
        message: message.into(),
    }
}

/// How long `check_rollbacker` lets a backend converge.
pub const CONVERGENCE_TIMEOUT: Duration = Duration::from_secs(120);

/// Checks the read side of a [`Target`]: the history is non-empty, has no
/// duplicate ids, is newest first where creation times are known, holds the
/// current revision, and is stable across reads. Changes nothing.
pub async fn check_target(target: &dyn Target) -> Result<(), ConformanceFailure> {
    let history = target
        .history()
        .await
        .map_err(|e| fail(target, "history", e.full_message()))?;
    if history.is_empty() {
        return Err(fail(
            target,
            "history",
            "the history is empty; it must hold at least the current revision",
        ));
    }
    let mut seen = BTreeSet::new();
    for e in &history {
        if !seen.insert(e.revision.id().clone()) {
            return Err(fail(
                target,
                "history has no duplicates",
                format!("revision {} is listed twice", e.revision.id()),
            ));
        }
    }
    let times: Vec<_> = history
        .iter()
        .filter_map(|e| e.revision.created_at())
        .collect();
    if times.windows(2).any(|w| w[0] < w[1]) {
        return Err(fail(
            target,
            "history is newest first",
            format!("creation times are not descending: {times:?}"),
        ));
    }
    let current = target
        .current()
        .await
        .map_err(|e| fail(target, "current", e.full_message()))?;
    if !seen.contains(current.id()) {
        return Err(fail(
            target,
            "history holds current",
            format!("current revision {} is not in the history", current.id()),
        ));
    }
    let again = target
        .history()
        .await
        .map_err(|e| fail(target, "history", e.full_message()))?;
    let ids = |h: &[crate::HistoryEntry]| {
        h.iter()
            .map(|e| e.revision.id().clone())
            .collect::<Vec<_>>()
    };
    if ids(&again) != ids(&history) {
        return Err(fail(
            target,
            "history is stable",
            "two reads without a change listed different revisions",
        ));
    }
    let record = current.record();
    if &record.id != current.id() || record.label != current.label() {
        return Err(fail(
            target,
            "revision record",
            "record() does not match id() and label()",
        ));
    }
    Ok(())
}

fn request(
    target: &dyn Target,
    from: &RevisionId,
    to: RevisionRef,
    dry_run: bool,
) -> RollbackRequest {
    RollbackRequest {
        target: target.id().clone(),
        from: Some(from.clone()),
        to,
        reason: "rollback-core conformance suite".into(),
        actor: Actor::new("conformance-suite"),
        dry_run,
    }
}

/// Checks a [`Rollbacker`] against its [`Target`], which must have at least
/// two revisions in its history. **It changes the target**: it rolls it back
/// to the newest earlier revision not marked bad.
///
/// Checked: a dry run changes nothing; a rollback makes the revision current
/// and converges; a second identical rollback is `AlreadyAt`; a rollback to a
/// revision the history does not hold is `NotFound` and changes nothing.
pub async fn check_rollbacker(
    target: &dyn Target,
    rollbacker: &dyn Rollbacker,
) -> Result<(), ConformanceFailure> {
    check_target(target).await?;
    let history = target
        .history()
        .await
        .map_err(|e| fail(target, "history", e.full_message()))?;
    let current = target
        .current()
        .await
        .map_err(|e| fail(target, "current", e.full_message()))?;
    let current_id = current.id().clone();
    let others: Vec<_> = history
        .iter()
        .filter(|e| e.revision.id() != &current_id)
        .collect();
    let Some(to) = others
        .iter()
        .find(|e| e.health != RevisionHealth::Bad)
        .or(others.first())
    else {
        return Err(fail(
            target,
            "setup",
            "the target needs at least two revisions in its history",
        ));
    };
    let to = to.revision.clone();
    let to_id = to.id().clone();
    let current_is = |check: &'static str, want: &RevisionId| {
        let want = want.clone();
        async move {
            let now = target
                .current()
                .await
                .map_err(|e| fail(target, check, e.full_message()))?;
            if now.id() == &want {
                Ok(())
            } else {
                Err(fail(
                    target,
                    check,
                    format!("current revision is {} but should be {want}", now.id()),
                ))
            }
        }
    };

    match rollbacker
        .rollback(&request(target, &current_id, to.clone(), true))
        .await
    {
        Ok(RollbackOutcome::DryRun { .. }) => {}
        Ok(other) => {
            return Err(fail(
                target,
                "dry run",
                format!("a dry run returned {other:?}"),
            ));
        }
        Err(e) => return Err(fail(target, "dry run", e.full_message())),
    }
    current_is("dry run changes nothing", &current_id).await?;

    let unknown: RevisionRef = Arc::new(RevisionRecord::new("conformance-suite-no-such-revision"));
    match rollbacker
        .rollback(&request(target, &current_id, unknown, false))
        .await
    {
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => {
            return Err(fail(
                target,
                "unknown revision",
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
                "unknown revision",
                format!("expected a NotFound error, got {o:?}"),
            ));
        }
    }
    current_is("unknown revision changes nothing", &current_id).await?;

    match rollbacker
        .rollback(&request(target, &current_id, to.clone(), false))
        .await
    {
        Ok(RollbackOutcome::RolledBack { .. }) => {}
        Ok(other) => {
            return Err(fail(
                target,
                "rollback",
                format!("expected RolledBack, got {other:?}"),
            ));
        }
        Err(e) => return Err(fail(target, "rollback", e.full_message())),
    }
    match rollbacker.wait_converged(&to_id, CONVERGENCE_TIMEOUT).await {
        Ok(Convergence::Converged) => {}
        Ok(other) => {
            return Err(fail(
                target,
                "convergence",
                format!("expected Converged, got {other:?}"),
            ));
        }
        Err(e) => return Err(fail(target, "convergence", e.full_message())),
    }
    current_is("rollback makes the revision current", &to_id).await?;

    match rollbacker
        .rollback(&request(target, &to_id, to.clone(), false))
        .await
    {
        Ok(RollbackOutcome::AlreadyAt { .. }) => {}
        Ok(other) => {
            return Err(fail(
                target,
                "idempotence",
                format!("a repeated rollback returned {other:?}, not AlreadyAt"),
            ));
        }
        Err(e) => return Err(fail(target, "idempotence", e.full_message())),
    }
    current_is("a repeated rollback changes nothing", &to_id).await?;
    check_target(target).await
}

/// Checks a [`HealthProbe`]: its name is non-empty and constant, and two
/// concurrent measurements of the same context both answer (a value, no
/// data, or an error that says which probe failed), without panicking.
pub async fn check_probe(
    probe: &dyn HealthProbe,
    context: &ProbeContext,
) -> Result<(), ConformanceFailure> {
    let fail = |check: &'static str, message: String| ConformanceFailure {
        check,
        target: context.target.to_string(),
        message,
    };
    let name = probe.name().to_owned();
    if name.trim().is_empty() {
        return Err(fail("probe name", "the probe's name is empty".into()));
    }
    let (a, b) = tokio::join!(probe.measure(context), probe.measure(context));
    for r in [a, b] {
        if let Err(e) = r
            && e.message().trim().is_empty()
        {
            return Err(fail(
                "probe errors",
                format!("probe {name} failed with an empty message"),
            ));
        }
    }
    if probe.name() != name {
        return Err(fail(
            "probe name",
            format!("the name changed from {name:?} to {:?}", probe.name()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{InMemoryRollbacker, InMemoryTarget};

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
        check_rollbacker(&t, &r).await.unwrap();
        assert_eq!(
            t.current_id().as_str(),
            "v1",
            "skips the revision marked bad"
        );
    }

    #[tokio::test]
    async fn scripted_probes_conform() {
        let ctx = ProbeContext {
            target: "demo".into(),
            revision: "v1".into(),
            at: crate::Timestamp::EPOCH,
        };
        let probe = crate::ScriptedProbe::new("error_rate")
            .script([crate::ScriptStep::Value(0.1), crate::ScriptStep::NoData]);
        check_probe(&probe, &ctx).await.unwrap();
        let e = check_probe(&crate::ScriptedProbe::new(" "), &ctx)
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
        assert_eq!(e.check, "convergence");
        let single = InMemoryTarget::new("one", [RevisionRecord::new("v1")]).unwrap();
        let e = check_rollbacker(&single, &InMemoryRollbacker::new(&single))
            .await
            .unwrap_err();
        assert_eq!(e.check, "setup");
    }
}
