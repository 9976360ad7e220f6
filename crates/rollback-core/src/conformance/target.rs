//! The read side of a [`Target`]: none of these checks changes anything.

use std::collections::BTreeSet;

use super::{Checked, Report, fail, run};
use crate::{HistoryEntry, RevisionId, Target};

async fn history(
    target: &dyn Target,
    check: &'static str,
) -> Result<Vec<HistoryEntry>, super::ConformanceFailure> {
    target
        .history()
        .await
        .map_err(|e| fail(target, check, e.full_message()))
}

fn ids(h: &[HistoryEntry]) -> Vec<RevisionId> {
    h.iter().map(|e| e.revision.id().clone()).collect()
}

/// The history holds at least the current revision.
pub async fn history_is_not_empty(target: &dyn Target) -> Checked {
    const CHECK: &str = "history_is_not_empty";
    if history(target, CHECK).await?.is_empty() {
        return Err(fail(
            target,
            CHECK,
            "the history is empty; it must hold at least the current revision",
        ));
    }
    Ok(())
}

/// No revision id is listed twice.
pub async fn history_has_no_duplicates(target: &dyn Target) -> Checked {
    const CHECK: &str = "history_has_no_duplicates";
    let mut seen = BTreeSet::new();
    for id in ids(&history(target, CHECK).await?) {
        if !seen.insert(id.clone()) {
            return Err(fail(
                target,
                CHECK,
                format!("revision {id} is listed twice"),
            ));
        }
    }
    Ok(())
}

/// Where creation times are known, they descend.
pub async fn history_is_newest_first(target: &dyn Target) -> Checked {
    const CHECK: &str = "history_is_newest_first";
    let h = history(target, CHECK).await?;
    let times: Vec<_> = h.iter().filter_map(|e| e.revision.created_at()).collect();
    if times.windows(2).any(|w| w[0] < w[1]) {
        return Err(fail(
            target,
            CHECK,
            format!("creation times are not descending: {times:?}"),
        ));
    }
    Ok(())
}

/// `current()` is in `history()`.
pub async fn history_holds_the_current_revision(target: &dyn Target) -> Checked {
    const CHECK: &str = "history_holds_the_current_revision";
    let h = history(target, CHECK).await?;
    let current = target
        .current()
        .await
        .map_err(|e| fail(target, CHECK, e.full_message()))?;
    if !h.iter().any(|e| e.revision.id() == current.id()) {
        return Err(fail(
            target,
            CHECK,
            format!("current revision {} is not in the history", current.id()),
        ));
    }
    Ok(())
}

/// Two reads without a change list the same revisions.
pub async fn history_is_stable(target: &dyn Target) -> Checked {
    const CHECK: &str = "history_is_stable";
    let a = ids(&history(target, CHECK).await?);
    let b = ids(&history(target, CHECK).await?);
    if a != b {
        return Err(fail(
            target,
            CHECK,
            format!("two reads without a change listed different revisions: {a:?} then {b:?}"),
        ));
    }
    Ok(())
}

/// `record()` agrees with `id()` and `label()`.
pub async fn revision_record_matches(target: &dyn Target) -> Checked {
    const CHECK: &str = "revision_record_matches";
    let current = target
        .current()
        .await
        .map_err(|e| fail(target, CHECK, e.full_message()))?;
    let record = current.record();
    if &record.id != current.id() || record.label != current.label() {
        return Err(fail(
            target,
            CHECK,
            "record() does not match id() and label()",
        ));
    }
    Ok(())
}

/// Every read-side check, in order. Changes nothing.
pub async fn check_target(target: &dyn Target) -> Result<Report, super::ConformanceFailure> {
    let mut r = Report::default();
    run(&mut r, "history_is_not_empty", history_is_not_empty(target)).await?;
    run(
        &mut r,
        "history_has_no_duplicates",
        history_has_no_duplicates(target),
    )
    .await?;
    run(
        &mut r,
        "history_is_newest_first",
        history_is_newest_first(target),
    )
    .await?;
    run(
        &mut r,
        "history_holds_the_current_revision",
        history_holds_the_current_revision(target),
    )
    .await?;
    run(&mut r, "history_is_stable", history_is_stable(target)).await?;
    run(
        &mut r,
        "revision_record_matches",
        revision_record_matches(target),
    )
    .await?;
    Ok(r)
}
