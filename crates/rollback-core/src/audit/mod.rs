//! The audit log: a record for every decision and action.
//!
//! [`AuditRecord`]s go to an [`AuditSink`]: [`MemoryAuditSink`] for tests,
//! [`TextAuditSink`] for a human timeline, [`JsonLinesAuditSink`] for a file
//! that survives a crash, reads back ([`JsonLinesAuditSink::read`]) and is a
//! hash chain ([`verify`]).
//!
//! ## The JSON-lines file
//!
//! The file's first line is a header, `{"rollback_audit":1,"created":…}`.
//! Every record line carries `"prev"`: the SHA-256 (lowercase hex) of the
//! bytes of the line before it, without its newline, so the header anchors
//! the chain. A process killed mid-write leaves a last line without a
//! newline (torn); the next [`JsonLinesAuditSink::open`] ends it with a
//! newline and writes a repair line, `{"repaired":"torn line","prev":…}`,
//! chained to the fragment, before any new record.
//!
//! [`verify`] walks the chain and reports the first line that does not
//! follow the one before: an edited, deleted, inserted or reordered line.
//! The chain has no secret: it shows edits made with a text editor, not a
//! rewrite of the whole file by someone who recomputes every hash. Keep the
//! head ([`ChainReport::head`]) elsewhere to detect that, or the loss of the
//! last lines.

pub(crate) mod float;
mod jsonl;
mod text;

use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

pub use jsonl::{AuditLog, ChainBreak, ChainReport, JsonLinesAuditSink, verify};
pub use text::TextAuditSink;

use crate::machine::{Breach, DecisionKind};
use crate::{
    Actor, CommandKind, PhaseKind, Result, RevisionHealth, RevisionId, TargetId, Timestamp,
    TriggerOutcome, Verdict, VerdictCause,
};

/// The backend actions the engine carries out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ActionKind {
    /// [`crate::Rollbacker::rollback`].
    Rollback,
    /// [`crate::Rollbacker::wait_converged`].
    WaitConverged,
    /// [`crate::Target::mark`].
    Mark,
}

impl ActionKind {
    /// `rollback`, `wait_converged`, `mark`.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Rollback => "rollback",
            ActionKind::WaitConverged => "wait_converged",
            ActionKind::Mark => "mark",
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened. Every field name differs from the [`AuditRecord`]'s own
/// (`at`, `target`, `revision`, `actor`, `event`), so a JSON line has each
/// key once.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
#[non_exhaustive]
pub enum AuditEntry {
    /// A watch of a revision started.
    WatchStarted {
        /// Whether the policy is a dry run.
        dry_run: bool,
    },
    /// A watch was resumed from the state store.
    WatchResumed {
        /// The phase it resumed in.
        phase: PhaseKind,
    },
    /// A probe measured.
    Measured {
        /// The probe.
        probe: String,
        /// The revision judged: the watched one, or the restored one while
        /// verifying.
        judged: RevisionId,
        /// The value (none: no data). NaN and infinities are kept.
        #[serde(with = "float::option")]
        value: Option<f64>,
        /// The baseline, if any.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            with = "float::option"
        )]
        baseline: Option<f64>,
        /// The verdict (none: the machine was not judging).
        verdict: Option<Verdict>,
        /// What made the verdict.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cause: Option<VerdictCause>,
        /// The conditions it was judged against, as the policy writes them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        against: Option<String>,
        /// What the probe said the value stands for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
        /// When the engine was due to measure: the schedule's time plus its
        /// jitter (none: in a record written before this field was). The
        /// record's time less this is how late the measurement was judged.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        due_at: Option<Timestamp>,
    },
    /// A probe could not measure.
    ProbeFailed {
        /// The probe.
        probe: String,
        /// The revision judged.
        judged: RevisionId,
        /// The error.
        error: String,
    },
    /// The machine changed phase.
    Transition {
        /// The phase left.
        from: PhaseKind,
        /// The phase entered.
        to: PhaseKind,
    },
    /// The machine decided something.
    Decided {
        /// The decision's kind.
        decision: DecisionKind,
        /// The decision in words, with its reason.
        detail: String,
        /// What breached, with its structure (probe, value, conditions,
        /// limit), for notifications: the breach of a rollback, of an
        /// approval to wait for or of a dry run; for an escalation or a
        /// freeze, the breach that ended observation, if one did (`detail`
        /// says what failed after it, such as the rollback or its
        /// verification). Absent from records written before it existed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        breach: Option<Breach>,
        /// The revision the decision restores: of a rollback, of an
        /// approval to wait for, of a dry run's would-be rollback.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<RevisionId>,
    },
    /// A backend action is about to be called: written (and flushed) before
    /// the call, so a kill during it still leaves a record of it.
    ActionStarted {
        /// The action.
        action: ActionKind,
        /// The revision it is about: restored, waited for, or marked.
        subject: RevisionId,
        /// Try number, from 1.
        attempt: u32,
    },
    /// A rollback interrupted by a restart is carried out again; what the
    /// target ran when the engine looked.
    ActionResumed {
        /// The action.
        action: ActionKind,
        /// The revision it is about.
        subject: RevisionId,
        /// The revision the target ran on resuming.
        found: RevisionId,
    },
    /// A backend action failed with a retryable error and will be retried.
    ActionRetrying {
        /// The action.
        action: ActionKind,
        /// The try that failed.
        attempt: u32,
        /// The error.
        error: String,
        /// The wait before the next try, in milliseconds.
        wait_ms: u64,
    },
    /// A backend action succeeded.
    ActionSucceeded {
        /// The action.
        action: ActionKind,
        /// What the backend reported.
        detail: String,
    },
    /// A backend action failed for good.
    ActionFailed {
        /// The action.
        action: ActionKind,
        /// The error.
        error: String,
    },
    /// A health mark was written to the backend.
    Marked {
        /// The revision marked.
        subject: RevisionId,
        /// The mark.
        health: RevisionHealth,
    },
    /// An operator command was accepted by the authorizer and handled.
    CommandAccepted {
        /// The command.
        command: CommandKind,
        /// The revision an operator's rollback asked for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<RevisionId>,
    },
    /// An operator command was authorized but could not be taken: not in
    /// this phase, or the target is not watched.
    CommandRejected {
        /// The command.
        command: CommandKind,
        /// What the phase allows instead, or that nobody watches the target.
        reason: String,
    },
    /// The authorizer denied an operator command.
    CommandDenied {
        /// The command.
        command: CommandKind,
        /// The authorizer's reason (no grant for this actor and target).
        reason: String,
    },
    /// An external trigger (an alert) arrived.
    TriggerReceived {
        /// Its key.
        key: String,
        /// What it says.
        summary: String,
        /// What came of it.
        #[serde(flatten)]
        outcome: TriggerOutcome,
    },
    /// State could not be persisted (the engine went on).
    StoreFailed {
        /// The error.
        error: String,
    },
    /// A notification about the target (a chat message, a webhook) could
    /// not be delivered: its retries ran out, or it was dropped because the
    /// sender's queue was full. Decisions never wait for notifications; this
    /// record says which one a channel missed.
    NotificationFailed {
        /// The channel, as its sender names it (`slack`, `teams`, a name
        /// from the configuration).
        channel: String,
        /// What the notification was about, as its sender names it
        /// (`rollback_started`, `escalated`, ...).
        notification: String,
        /// Tries made (0 when it was dropped before any).
        attempts: u32,
        /// The last error, or why it was dropped.
        error: String,
    },
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuditRecord {
    /// The engine's time of the event.
    pub at: Timestamp,
    /// The target.
    pub target: TargetId,
    /// The revision the watch is about (the one judged when it started).
    pub revision: RevisionId,
    /// Who: the engine, an operator, an alert.
    pub actor: Actor,
    /// What happened.
    #[serde(flatten)]
    pub entry: AuditEntry,
}

fn value(v: Option<f64>) -> String {
    v.map_or_else(|| "no data".to_owned(), |v| format!("{v}"))
}

impl fmt::Display for AuditRecord {
    /// One human line, for timelines and chat: time, target, what happened.
    /// Control characters in any field are escaped, so no field can start
    /// a line of its own.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.at,
            text::escape(self.target.as_str()),
            self.describe()
        )
    }
}

impl AuditRecord {
    /// What happened, in words, without the time and the target; control
    /// characters escaped.
    pub fn describe(&self) -> String {
        struct Body<'a>(&'a AuditRecord);
        impl fmt::Display for Body<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.write_body(f)
            }
        }
        text::escape(&Body(self).to_string()).into_owned()
    }

    fn write_body(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.entry {
            AuditEntry::WatchStarted { dry_run } => {
                write!(
                    f,
                    "watching revision {}{}",
                    self.revision,
                    if *dry_run { " (dry run)" } else { "" }
                )
            }
            AuditEntry::WatchResumed { phase } => {
                write!(f, "resumed watch of {} while {phase}", self.revision)
            }
            AuditEntry::Measured {
                probe,
                judged,
                value: v,
                baseline,
                verdict,
                cause,
                against,
                detail,
                due_at: _,
            } => {
                write!(f, "{probe} on {judged} = {}", value(*v))?;
                if let Some(d) = detail {
                    write!(f, " ({d})")?;
                }
                if let Some(b) = baseline {
                    write!(f, " (baseline {b})")?;
                }
                match (verdict, cause) {
                    (Some(verdict), Some(cause)) => {
                        write!(f, " -> {verdict} ({})", cause_text(*cause))?
                    }
                    (Some(verdict), None) => write!(f, " -> {verdict}")?,
                    (None, _) => return write!(f, " (not judged)"),
                }
                match against {
                    Some(c) => write!(f, " [{c}]"),
                    None => Ok(()),
                }
            }
            AuditEntry::ProbeFailed {
                probe,
                judged,
                error,
            } => write!(f, "{probe} on {judged} could not measure: {error}"),
            AuditEntry::Transition { from, to } => write!(f, "{from} -> {to}"),
            AuditEntry::Decided {
                decision, detail, ..
            } => write!(f, "decision {decision}: {detail}"),
            AuditEntry::ActionStarted {
                action: ActionKind::WaitConverged,
                subject,
                ..
            } => write!(f, "waiting for {subject} to converge"),
            AuditEntry::ActionStarted {
                action,
                subject,
                attempt,
            } => {
                write!(f, "{action} to {subject} (try {attempt}) by {}", self.actor)
            }
            AuditEntry::ActionResumed {
                action,
                subject,
                found,
            } => {
                write!(
                    f,
                    "resuming an interrupted {action} to {subject}: the target runs {found}"
                )
            }
            AuditEntry::ActionRetrying {
                action,
                attempt,
                error,
                wait_ms,
            } => {
                write!(
                    f,
                    "{action} try {attempt} failed, retrying in {wait_ms}ms: {error}"
                )
            }
            AuditEntry::ActionSucceeded {
                action: ActionKind::WaitConverged,
                detail,
            } => write!(f, "{detail}"),
            AuditEntry::ActionSucceeded { action, detail } => write!(f, "{action} done: {detail}"),
            AuditEntry::ActionFailed { action, error } => write!(f, "{action} failed: {error}"),
            AuditEntry::Marked { subject, health } => {
                write!(f, "marked {subject} {health} in the backend")
            }
            AuditEntry::CommandAccepted { command, to } => {
                write!(f, "{} gave command {command}", self.actor)?;
                match to {
                    Some(to) => write!(f, " to {to}"),
                    None => Ok(()),
                }
            }
            AuditEntry::CommandRejected { command, reason } => {
                write!(
                    f,
                    "{} gave command {command}, rejected: {reason}",
                    self.actor
                )
            }
            AuditEntry::CommandDenied { command, reason } => {
                write!(f, "{} was denied command {command}: {reason}", self.actor)
            }
            AuditEntry::TriggerReceived {
                key,
                summary,
                outcome,
            } => write!(f, "alert {summary} ({key}): {outcome}"),
            AuditEntry::StoreFailed { error } => write!(f, "could not persist state: {error}"),
            AuditEntry::NotificationFailed {
                channel,
                notification,
                attempts,
                error,
            } => write!(
                f,
                "notification {notification} to {channel} failed after {attempts} tr{}: {error}",
                if *attempts == 1 { "y" } else { "ies" }
            ),
        }
    }
}

fn cause_text(c: VerdictCause) -> &'static str {
    match c {
        VerdictCause::FailureMatched => "failure condition matched",
        VerdictCause::SuccessMatched => "success condition matched",
        VerdictCause::SuccessNotMatched => "success condition not met",
        VerdictCause::FailureNotMatched => "failure condition not met",
        VerdictCause::NeitherMatched => "neither condition matched",
        VerdictCause::NoData => "no data",
        VerdictCause::NotFinite => "not a finite number",
        VerdictCause::NoBaseline => "no baseline",
        VerdictCause::ForecastBreach => "trend breaks the success condition within the horizon",
        VerdictCause::CanaryHigher => "canary significantly higher than baseline",
        VerdictCause::CanaryLower => "canary significantly lower than baseline",
        VerdictCause::CriticallyHigher => {
            "canary higher than baseline past the critical effect size"
        }
        VerdictCause::CriticallyLower => "canary lower than baseline past the critical effect size",
        VerdictCause::NoSignificantDifference => "no significant difference from baseline",
        VerdictCause::TooFewSamples => "too few canary or baseline values",
        VerdictCause::NoSamples => "one value, not canary and baseline samples",
    }
}

/// Where audit records go.
///
/// # Contract
/// - `record` returns once the record is stored as durably as the sink
///   promises; records of one target arrive in order.
/// - A failing sink does not stop the engine: it is reported through tracing.
#[async_trait]
pub trait AuditSink: fmt::Debug + Send + Sync + 'static {
    /// Store one record.
    async fn record(&self, record: &AuditRecord) -> Result<()>;
}

/// Keeps audit records in memory. Cloning shares them.
#[derive(Debug, Clone, Default)]
pub struct MemoryAuditSink {
    records: Arc<Mutex<Vec<AuditRecord>>>,
}

impl MemoryAuditSink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every record so far.
    pub fn records(&self) -> Vec<AuditRecord> {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[async_trait]
impl AuditSink for MemoryAuditSink {
    async fn record(&self, record: &AuditRecord) -> Result<()> {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(record.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests;
