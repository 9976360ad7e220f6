//! External rollback triggers, such as firing Alertmanager alerts.

use std::fmt;

use async_trait::async_trait;

use crate::{Result, TargetId};

/// An external signal that a target's current change is bad.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Trigger {
    /// The alert's identity: duplicates with the same key never trigger twice
    /// (for Alertmanager: the fingerprint plus `startsAt`).
    pub key: String,
    /// What it says, for the audit log and the timeline.
    pub summary: String,
}

/// What became of a trigger.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
#[non_exhaustive]
pub enum TriggerOutcome {
    /// It was handed to the watch of the target, which judged it a breach.
    Accepted,
    /// The same key was seen before; nothing happened.
    Duplicate,
    /// The target's watch is not judging now (paused, rolling back, finished);
    /// it was recorded and nothing happened.
    Ignored {
        /// The phase that does not judge (`the watch is paused`).
        reason: String,
    },
    /// No watch of that target is running.
    NoWatch,
}

impl fmt::Display for TriggerOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TriggerOutcome::Accepted => f.write_str("accepted"),
            TriggerOutcome::Duplicate => f.write_str("duplicate, ignored"),
            TriggerOutcome::Ignored { reason } => write!(f, "ignored: {reason}"),
            TriggerOutcome::NoWatch => f.write_str("no watch"),
        }
    }
}

/// Where triggers go: the [`crate::Engine`] implements it, and the Alertmanager
/// receiver of `rollback-prometheus` calls it.
///
/// # Contract
/// - Idempotent per `(target, trigger.key)`: a repeated key is `Duplicate`
///   and never causes a second rollback.
/// - Returns once the trigger is recorded (not when a rollback finishes).
#[async_trait]
pub trait TriggerSink: fmt::Debug + Send + Sync + 'static {
    /// Deliver a trigger for `target`.
    async fn trigger(&self, target: &TargetId, trigger: Trigger) -> Result<TriggerOutcome>;
}

fn _dyn_ok(_: std::sync::Arc<dyn TriggerSink>) {}
