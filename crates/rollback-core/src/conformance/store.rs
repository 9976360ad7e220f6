//! Checks of a [`StateStore`]: what the engine relies on to resume.

use std::sync::Arc;

use super::{ConformanceFailure, Report, run};
use crate::machine::{Candidate, Machine, MachineState, Watch};
use crate::store::StateStore;
use crate::{Policy, RevisionHealth, TargetId, Timestamp};

fn failure(
    target: &TargetId,
    check: &'static str,
    message: impl Into<String>,
) -> ConformanceFailure {
    ConformanceFailure {
        check,
        target: target.to_string(),
        message: message.into(),
    }
}

/// A state of `target` watching `revision`, started at `at`.
fn state(target: &TargetId, revision: &str, at: i64) -> MachineState {
    let policy = Arc::new(
        Policy::from_yaml(
            "interval: 30s\nbake_time: 10m\nprobes: [{name: error_rate, success: '< 0.01'}]",
        )
        .expect("the checks' policy is valid"),
    );
    let history = vec![
        Candidate::new(revision, RevisionHealth::Unknown),
        Candidate::new("v1", RevisionHealth::Good),
    ];
    Machine::new(
        policy,
        Watch::new(target.clone(), revision, history),
        Timestamp::from_millis(at),
    )
    .state()
    .clone()
}

async fn load(
    store: &dyn StateStore,
    target: &TargetId,
    check: &'static str,
) -> Result<Option<MachineState>, ConformanceFailure> {
    store
        .load(target)
        .await
        .map_err(|e| failure(target, check, format!("load failed: {}", e.full_message())))
}

async fn save(
    store: &dyn StateStore,
    s: &MachineState,
    check: &'static str,
) -> Result<(), ConformanceFailure> {
    store.save(s).await.map_err(|e| {
        failure(
            &s.watch.target,
            check,
            format!("save failed: {}", e.full_message()),
        )
    })
}

/// `load` of a target never saved is `Ok(None)`.
pub async fn unsaved_target_loads_none(store: &dyn StateStore, prefix: &str) -> super::Checked {
    let check = "unsaved_target_loads_none";
    let t = TargetId::new(format!("{prefix}never-saved"));
    match load(store, &t, check).await? {
        None => Ok(()),
        Some(s) => Err(failure(&t, check, format!("loaded {:?}", s.watch.revision))),
    }
}

/// What was saved loads back equal, and a second save replaces the first.
pub async fn saved_state_loads_back(store: &dyn StateStore, prefix: &str) -> super::Checked {
    let check = "saved_state_loads_back";
    let t = TargetId::new(format!("{prefix}shop/checkout"));
    for (revision, at) in [("v2", 1_000), ("v3", 2_000), ("v3", 3_000)] {
        let s = state(&t, revision, at);
        save(store, &s, check).await?;
        let back = load(store, &t, check).await?;
        if back.as_ref() != Some(&s) {
            return Err(failure(
                &t,
                check,
                format!("saved {revision} at {at} but loaded {back:?}"),
            ));
        }
    }
    Ok(())
}

/// Target ids that a naive mapping to names would merge (case, `/`
/// against `_` or `%2F`, non-ASCII, a long id) are kept apart.
pub async fn targets_are_kept_apart(store: &dyn StateStore, prefix: &str) -> super::Checked {
    let check = "targets_are_kept_apart";
    // Long, but within what a file name holds once percent-encoded (255 bytes).
    let long = format!("{prefix}{}", "deep/".repeat(30));
    let ids: Vec<TargetId> = [
        "a/b",
        "a_b",
        "a%2Fb",
        "A/B",
        "a.b",
        "k8s:shop/web",
        "mlflow:recommender@champion",
        "café/ünïcode",
        ".hidden",
    ]
    .iter()
    .map(|s| TargetId::new(format!("{prefix}{s}")))
    .chain([TargetId::new(long)])
    .collect();
    for (i, t) in ids.iter().enumerate() {
        save(store, &state(t, &format!("r{i}"), 10 + i as i64), check).await?;
    }
    for (i, t) in ids.iter().enumerate() {
        let back = load(store, t, check).await?;
        let want = format!("r{i}");
        if back.as_ref().map(|s| s.watch.revision.as_str()) != Some(want.as_str())
            || back.as_ref().map(|s| &s.watch.target) != Some(t)
        {
            return Err(failure(
                t,
                check,
                format!("expected {want}, loaded {back:?}"),
            ));
        }
    }
    Ok(())
}

/// Saves of different targets at once all land.
pub async fn concurrent_saves_land(store: &dyn StateStore, prefix: &str) -> super::Checked {
    let check = "concurrent_saves_land";
    let states: Vec<MachineState> = (0..8)
        .map(|i| state(&TargetId::new(format!("{prefix}fleet/{i}")), "v2", i))
        .collect();
    let saves = states.iter().map(|s| save(store, s, check));
    for r in futures_join_all(saves).await {
        r?;
    }
    for s in &states {
        let back = load(store, &s.watch.target, check).await?;
        if back.as_ref() != Some(s) {
            return Err(failure(&s.watch.target, check, format!("loaded {back:?}")));
        }
    }
    Ok(())
}

/// Await all, in order (no futures crate in core).
async fn futures_join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let futures: Vec<F> = futures.into_iter().collect();
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// Runs every check of a [`StateStore`], its targets' ids starting with
/// `prefix` (so one store can be checked twice, or beside other data):
/// unsaved targets load `None`, saved states load back equal and a save
/// replaces, ids a naive name mapping would merge are kept apart, and
/// concurrent saves of different targets all land. Corruption (the other
/// half of the contract) needs the store's own medium: each store's tests
/// write it by hand.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use rollback_core::conformance;
/// use rollback_core::store::FileStateStore;
/// let dir = tempfile::tempdir().unwrap();
/// let report = conformance::check_state_store(&FileStateStore::new(dir.path()).unwrap(), "").await.unwrap();
/// assert!(report.passed.contains(&"targets_are_kept_apart"));
/// # }
/// ```
pub async fn check_state_store(
    store: &dyn StateStore,
    prefix: &str,
) -> Result<Report, ConformanceFailure> {
    let mut report = Report::default();
    run(
        &mut report,
        "unsaved_target_loads_none",
        unsaved_target_loads_none(store, prefix),
    )
    .await?;
    run(
        &mut report,
        "saved_state_loads_back",
        saved_state_loads_back(store, prefix),
    )
    .await?;
    run(
        &mut report,
        "targets_are_kept_apart",
        targets_are_kept_apart(store, prefix),
    )
    .await?;
    run(
        &mut report,
        "concurrent_saves_land",
        concurrent_saves_land(store, prefix),
    )
    .await?;
    Ok(report)
}
