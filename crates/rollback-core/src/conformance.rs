//! The conformance suite every backend runs against its own server.
//!
//! One check per behaviour, each a public function named for it, so a
//! failure says which promise of the trait's `# Contract` was broken. Checks
//! a backend cannot pass by design are skipped by its [`crate::Capabilities`], not
//! faked; [`Report`] lists what ran and what was skipped, and why.
//!
//! - [`check_target`]: the read side (changes nothing);
//! - [`check_rollbacker`]: dry runs, an unknown revision, a rollback, its
//!   convergence, its idempotence, health marks (changes the target);
//! - [`check_interrupted_rollback`]: a rollback cut short after each of its
//!   steps, then asked again, ends complete with its records written once;
//! - [`check_probe`]: a probe's name and concurrent measurements;
//! - [`check_state_store`]: a [`crate::store::StateStore`] loads back what
//!   it saved, keeps targets apart and takes concurrent saves.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use rollback_core::conformance;
//! use rollback_core::memory::{InMemoryRollbacker, InMemoryTarget};
//! use rollback_core::RevisionRecord;
//! let target = InMemoryTarget::new("demo", [RevisionRecord::new("v1"), RevisionRecord::new("v2")]).unwrap();
//! let rollbacker = InMemoryRollbacker::new(&target);
//! conformance::check_target(&target).await.unwrap();
//! let report = conformance::check_rollbacker(&target, &rollbacker).await.unwrap();
//! assert!(report.passed.contains(&"repeated_rollback_is_already_at"));
//! # }
//! ```

mod interrupted;
mod rollbacker;
mod store;
mod target;

use std::time::Duration;

pub use interrupted::{InterruptionFixture, check_interrupted_rollback};
pub use rollbacker::{
    check_rollbacker, client_dry_run_changes_nothing, marks_read_back,
    repeated_rollback_is_already_at, rollback_makes_the_revision_current,
    rollbacker_serves_its_target, server_dry_run, unknown_revision_is_not_found,
    wait_converged_reports_convergence,
};
pub use store::{
    check_state_store, concurrent_saves_land, saved_state_loads_back, targets_are_kept_apart,
    unsaved_target_loads_none,
};
pub use target::{
    check_target, history_has_no_duplicates, history_holds_the_current_revision,
    history_is_newest_first, history_is_not_empty, history_is_stable, revision_record_matches,
};

use crate::{ProbeContext, Target};

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

/// What a run of checks did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The checks that ran and passed, in order.
    pub passed: Vec<&'static str>,
    /// The checks skipped, with the reason (a capability the backend lacks).
    pub skipped: Vec<(&'static str, &'static str)>,
}

impl Report {
    fn skip(&mut self, check: &'static str, why: &'static str) {
        self.skipped.push((check, why));
    }
}

/// The result of one check.
pub type Checked = Result<(), ConformanceFailure>;

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

/// How long a check lets a backend converge.
pub const CONVERGENCE_TIMEOUT: Duration = Duration::from_secs(120);

/// Run `check`, named `name`, into `report`.
async fn run(
    report: &mut Report,
    name: &'static str,
    check: impl Future<Output = Checked>,
) -> Checked {
    check.await?;
    report.passed.push(name);
    Ok(())
}

/// Checks a [`crate::HealthProbe`]: its name is non-empty and constant, and
/// two concurrent measurements of the same context both answer (a value,
/// no data, or an error that says which probe failed), without panicking.
pub async fn check_probe(
    probe: &dyn crate::HealthProbe,
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
mod tests;
