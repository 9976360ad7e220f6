//! What a notification says: which event, what breached, which revisions,
//! and what happens next. The channels (Slack, Teams, a webhook) lay the
//! same [`Notice`] out in their own formats.

use std::fmt;
use std::time::Duration;

use rollback_core::machine::{Breach, Limit};
use rollback_core::time::format_duration;
use rollback_core::{RevisionId, TargetId, Timestamp};
use serde::{Deserialize, Serialize};

/// The events a notification is sent for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum NoticeKind {
    /// The rollback's first backend call is about to be made.
    RollbackStarted,
    /// The rollback converged (verification follows, where the policy verifies).
    RollbackDone,
    /// The restored revision passed verification.
    RollbackVerified,
    /// Humans must take over (a rollback or its verification failed, no
    /// revision to roll back to, a limit on rollbacks, ...).
    Escalated,
    /// A breach of an irreversible revision: frozen, not rolled back.
    Frozen,
    /// A breach waits for an approver (`approval: manual`).
    AwaitingApproval,
}

impl NoticeKind {
    /// Every kind, in the order of a rollback.
    pub const ALL: [NoticeKind; 6] = [
        NoticeKind::AwaitingApproval,
        NoticeKind::RollbackStarted,
        NoticeKind::RollbackDone,
        NoticeKind::RollbackVerified,
        NoticeKind::Escalated,
        NoticeKind::Frozen,
    ];

    /// The snake_case name: `rollback_started`.
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::RollbackStarted => "rollback_started",
            NoticeKind::RollbackDone => "rollback_done",
            NoticeKind::RollbackVerified => "rollback_verified",
            NoticeKind::Escalated => "escalated",
            NoticeKind::Frozen => "frozen",
            NoticeKind::AwaitingApproval => "awaiting_approval",
        }
    }

    /// Whether the event needs a human now (escalated, frozen, awaiting
    /// approval): the channels show it as an alarm.
    pub fn needs_humans(self) -> bool {
        matches!(
            self,
            NoticeKind::Escalated | NoticeKind::Frozen | NoticeKind::AwaitingApproval
        )
    }
}

impl fmt::Display for NoticeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One notification, before a channel formats it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Notice {
    /// The event.
    pub event: NoticeKind,
    /// The target.
    pub target: TargetId,
    /// The engine's time of the event (RFC 3339 in the payloads).
    pub at: Timestamp,
    /// The revision judged bad (the watched one): what is rolled back from.
    pub revision: RevisionId,
    /// The revision restored, or to be restored, when there is one.
    pub to: Option<RevisionId>,
    /// What breached, with its structure, when known.
    pub breach: Option<Breach>,
    /// The engine's words for the event (the decision and its reason).
    pub detail: String,
    /// What happens next, and what a human can do.
    pub next: String,
}

/// A breach's parts as label and value, for a card's facts.
pub(crate) fn breach_facts(breach: &Breach) -> Vec<(&'static str, String)> {
    match breach {
        Breach::Probe {
            probe,
            limit,
            allowed,
            count,
            value,
            conditions,
            ..
        } => {
            let (name, what) = match limit {
                Limit::FailureLimit => ("failure_limit", "failed measurements"),
                Limit::ConsecutiveFailureLimit => {
                    ("consecutive_failure_limit", "failed measurements in a row")
                }
                Limit::InconclusiveLimit => ("inconclusive_limit", "inconclusive measurements"),
                Limit::ConsecutiveErrorLimit => {
                    ("consecutive_error_limit", "probe errors in a row")
                }
                _ => ("limit", "measurements"),
            };
            vec![
                ("Probe", probe.clone()),
                (
                    "Value",
                    value.map_or_else(|| "no data".to_owned(), |v| v.to_string()),
                ),
                ("Condition", conditions.clone()),
                ("Limit", format!("{name} {allowed}: {count} {what}")),
            ]
        }
        Breach::Alert { key, summary } => vec![("Alert", format!("{summary} ({key})"))],
        Breach::Operator { actor } => vec![("Asked by", actor.to_string())],
        _ => vec![("Breach", breach.to_string())],
    }
}

impl Notice {
    /// The card's title: `Rolling back k8s:shop/checkout`.
    pub fn title(&self) -> String {
        let t = &self.target;
        match self.event {
            NoticeKind::RollbackStarted => format!("Rolling back {t}"),
            NoticeKind::RollbackDone => format!("Rolled back {t}"),
            NoticeKind::RollbackVerified => format!("Rollback of {t} verified"),
            NoticeKind::Escalated => format!("{t} needs humans: escalated"),
            NoticeKind::Frozen => format!("{t} frozen: not rolled back"),
            NoticeKind::AwaitingApproval => format!("Rollback of {t} awaits approval"),
        }
    }

    /// The revisions: `v2 → v1`, or the judged one alone.
    pub fn revisions(&self) -> String {
        match &self.to {
            Some(to) => format!("{} → {to}", self.revision),
            None => self.revision.to_string(),
        }
    }

    /// What breached, in words; `None` when unknown.
    pub fn breach_text(&self) -> Option<String> {
        self.breach.as_ref().map(ToString::to_string)
    }

    /// One line for notifications that show text only (Slack's fallback).
    pub fn summary(&self) -> String {
        let mut s = format!("{} ({})", self.title(), self.revisions());
        if let Some(b) = self.breach_text() {
            s.push_str(": ");
            s.push_str(&b);
        }
        s
    }

    /// Label and value of each fact: target, revisions, the breach's parts.
    pub(crate) fn facts(&self) -> Vec<(&'static str, String)> {
        let mut facts = vec![
            ("Target", self.target.to_string()),
            ("Revisions", self.revisions()),
        ];
        match &self.breach {
            Some(b) => facts.extend(breach_facts(b)),
            None => facts.push(("Breach", "not known to this process".to_owned())),
        }
        facts
    }
}

/// The policy facts "what happens next" depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NextSteps {
    /// The policy's `verify`.
    pub(crate) verify: Duration,
}

/// The API path of a command on a target (the id percent-encoded).
pub(crate) fn command_path(target: &TargetId, command: &str) -> String {
    format!(
        "/api/v1/targets/{}/{command}",
        crate::api::encode_segment(target.as_str())
    )
}

impl NextSteps {
    /// What happens after `event`, and what a human can do.
    pub(crate) fn after(
        &self,
        event: NoticeKind,
        target: &TargetId,
        revision: &RevisionId,
        to: Option<&RevisionId>,
        detail: &str,
    ) -> String {
        let to_text = to.map_or_else(|| "the restored revision".to_owned(), ToString::to_string);
        let verify = format_duration(self.verify);
        match event {
            NoticeKind::AwaitingApproval => format!(
                "Nothing changes until an operator decides: approve the rollback to {to_text} (POST {}), roll back to another revision (POST {} with {{\"to\": \"REVISION\"}}), or promote {revision} if the breach is a false alarm (POST {}).",
                command_path(target, "approve"),
                command_path(target, "rollback"),
                command_path(target, "promote"),
            ),
            NoticeKind::RollbackStarted if self.verify.is_zero() => format!(
                "{target} is being rolled back to {to_text}; once it has converged the rollback is complete (no verification is configured). {revision} stays marked bad."
            ),
            NoticeKind::RollbackStarted => format!(
                "{target} is being rolled back to {to_text}; once it has converged, its probes verify {to_text} for {verify}. {revision} stays marked bad."
            ),
            NoticeKind::RollbackDone if self.verify.is_zero() => format!(
                "{to_text} runs again; no verification is configured. {revision} stays marked bad; the next deploy is judged when it ships."
            ),
            NoticeKind::RollbackDone => format!(
                "{to_text} runs again; its probes verify it for {verify}: passing, it is marked known good; failing, humans are called (escalated)."
            ),
            NoticeKind::RollbackVerified => format!(
                "{to_text} passed verification and is marked known good; {revision} stays marked bad. Nothing else happens until the next deploy, which is judged when it ships."
            ),
            NoticeKind::Escalated => {
                let reason = detail
                    .strip_prefix("escalate to humans: ")
                    .unwrap_or(detail);
                format!(
                    "Humans must take over: nothing more is done automatically for {revision}. Why: {reason}"
                )
            }
            NoticeKind::Frozen => format!(
                "{revision} is marked irreversible, so it stays deployed and nothing is rolled back automatically; humans must decide: roll forward, or roll back by hand (POST {}).",
                command_path(target, "rollback"),
            ),
        }
    }
}
