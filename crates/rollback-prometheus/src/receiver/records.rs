//! What the receiver keeps of the alerts it saw: one record per alert and
//! counters.

use rollback_core::{TargetId, Timestamp, TriggerOutcome};
use serde::{Deserialize, Serialize};

/// Whether an alert fires or has resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    /// Firing: may trigger a rollback.
    Firing,
    /// Resolved: recorded, never triggers.
    Resolved,
}

/// What the receiver did with one alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum AlertOutcome {
    /// Handed to the trigger sink, which answered this.
    Triggered {
        /// The sink's answer.
        result: TriggerOutcome,
    },
    /// The same alert (fingerprint + startsAt) was handed over before.
    Duplicate,
    /// A resolved alert: recorded only.
    Resolved,
    /// No route matched; nothing was triggered.
    Unrouted {
        /// Why.
        reason: String,
    },
    /// The sink failed; Alertmanager is answered 503 and will retry.
    SinkFailed {
        /// The sink's error.
        error: String,
    },
}

/// One alert as the receiver saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRecord {
    /// When the receiver handled it.
    pub received_at: Timestamp,
    /// Alertmanager's fingerprint of the alert's labels.
    pub fingerprint: String,
    /// When the alert started, as Alertmanager wrote it.
    pub starts_at: String,
    /// The `alertname` label, if any.
    pub alertname: Option<String>,
    /// Firing or resolved.
    pub status: AlertStatus,
    /// The routed target, if a route matched.
    pub target: Option<TargetId>,
    /// What was done.
    pub outcome: AlertOutcome,
}

/// Counters since the receiver started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiverStats {
    /// Requests that passed the checks (answered 200, or 503 if the sink failed).
    pub requests: u64,
    /// Requests refused (4xx).
    pub rejected: u64,
    /// Firing alerts received (duplicates included).
    pub firing: u64,
    /// Resolved alerts received.
    pub resolved: u64,
    /// Firing alerts handed to the sink.
    pub triggered: u64,
    /// Firing alerts dropped as duplicates.
    pub duplicates: u64,
    /// Firing alerts no route matched.
    pub unrouted: u64,
    /// Sink calls that failed.
    pub sink_errors: u64,
}
