//! The audit log: a record for every decision and action.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;

use crate::{
    Actor, CommandKind, Error, PhaseKind, Result, RevisionId, TargetId, Timestamp, Verdict,
    VerdictCause,
};

/// What happened.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
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
        /// The revision judged.
        judged: RevisionId,
        /// The value (none: no data).
        value: Option<f64>,
        /// The baseline, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        baseline: Option<f64>,
        /// The verdict (none: the machine was not judging).
        verdict: Option<Verdict>,
        /// Why.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cause: Option<VerdictCause>,
        /// The conditions it was judged against.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        against: Option<String>,
        /// What the probe said the value stands for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
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
        /// From.
        from: PhaseKind,
        /// To.
        to: PhaseKind,
    },
    /// The machine decided something.
    Decided {
        /// The decision's kind (`rollback`, `promote`, …).
        decision: String,
        /// A human description with the reason.
        detail: String,
    },
    /// A backend action started.
    ActionStarted {
        /// `rollback`, `mark`, `wait_converged`.
        action: String,
        /// Its subject.
        revision: RevisionId,
        /// Try number, from 1.
        attempt: u32,
    },
    /// A backend action failed with a retryable error and will be retried.
    ActionRetrying {
        /// The action.
        action: String,
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
        action: String,
        /// What the backend reported.
        detail: String,
    },
    /// A backend action failed for good.
    ActionFailed {
        /// The action.
        action: String,
        /// The error.
        error: String,
    },
    /// An operator command was accepted by the authorizer and handled.
    CommandAccepted {
        /// The command.
        command: String,
    },
    /// An operator command was valid for the actor but not in this phase.
    CommandRejected {
        /// The command.
        command: CommandKind,
        /// Why.
        reason: String,
    },
    /// The authorizer denied an operator command.
    CommandDenied {
        /// The command.
        command: CommandKind,
        /// Why.
        reason: String,
    },
    /// An external trigger (an alert) arrived.
    TriggerReceived {
        /// Its key.
        key: String,
        /// What it says.
        summary: String,
        /// What came of it.
        outcome: String,
    },
    /// State could not be persisted (the engine went on).
    StoreFailed {
        /// The error.
        error: String,
    },
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuditRecord {
    /// When.
    pub at: Timestamp,
    /// Which target.
    pub target: TargetId,
    /// Which watched revision.
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
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.at, self.target, self.describe())
    }
}

impl AuditRecord {
    /// What happened, in words, without the time and the target.
    pub fn describe(&self) -> String {
        struct Body<'a>(&'a AuditRecord);
        impl fmt::Display for Body<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.write_body(f)
            }
        }
        Body(self).to_string()
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
            AuditEntry::Decided { decision, detail } => write!(f, "decision {decision}: {detail}"),
            AuditEntry::ActionStarted {
                action,
                revision,
                attempt,
            } => {
                write!(f, "{action} {revision} (try {attempt}) by {}", self.actor)
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
            AuditEntry::ActionSucceeded { action, detail } => write!(f, "{action} done: {detail}"),
            AuditEntry::ActionFailed { action, error } => write!(f, "{action} failed: {error}"),
            AuditEntry::CommandAccepted { command } => {
                write!(f, "{} gave command {command}", self.actor)
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
        }
    }
}

/// Writes each record as one human line to a writer (stdout, a file, a chat
/// bridge), with the time relative to the first record when asked.
pub struct TextAuditSink {
    out: Mutex<Box<dyn std::io::Write + Send>>,
    relative: bool,
    origin: Mutex<Option<crate::Timestamp>>,
}

impl fmt::Debug for TextAuditSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TextAuditSink")
            .field("relative", &self.relative)
            .finish_non_exhaustive()
    }
}

impl TextAuditSink {
    /// Lines to `out`.
    pub fn new(out: impl std::io::Write + Send + 'static) -> Self {
        TextAuditSink {
            out: Mutex::new(Box::new(out)),
            relative: false,
            origin: Mutex::new(None),
        }
    }

    /// Write `+MM:SS` from the first record instead of absolute times.
    pub fn relative_time(mut self, yes: bool) -> Self {
        self.relative = yes;
        self
    }
}

#[async_trait]
impl AuditSink for TextAuditSink {
    async fn record(&self, record: &AuditRecord) -> Result<()> {
        let when = if self.relative {
            let origin = *self
                .origin
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(record.at);
            let s = record.at.since(origin).as_secs();
            format!("+{:02}:{:02}", s / 60, s % 60)
        } else {
            record.at.to_string()
        };
        let line = format!(
            "{when}  {:<16} {}\n",
            record.target.as_str(),
            record.describe()
        );
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        out.write_all(line.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| Error::transient("cannot write the audit timeline").with_source(e))
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

/// Appends records to a file, one JSON object per line, flushed after each.
#[derive(Debug)]
pub struct JsonLinesAuditSink {
    path: PathBuf,
    file: tokio::sync::Mutex<tokio::fs::File>,
    sync: bool,
}

impl JsonLinesAuditSink {
    /// Open (or create) `path` for appending.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .await
            .map_err(|e| {
                Error::permanent(format!(
                    "cannot open audit log {} for appending",
                    path.display()
                ))
                .with_source(e)
            })?;
        Ok(JsonLinesAuditSink {
            path,
            file: tokio::sync::Mutex::new(file),
            sync: false,
        })
    }

    /// Also fsync after every record (slower; survives power loss).
    pub fn sync_every_record(mut self, yes: bool) -> Self {
        self.sync = yes;
        self
    }

    /// Read every record of a JSON-lines audit log. Errors name the line.
    pub fn read(path: impl AsRef<Path>) -> Result<Vec<AuditRecord>> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::permanent(format!("cannot read audit log {}", path.display())).with_source(e)
        })?;
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|e| {
                    Error::new(
                        crate::ErrorKind::Corrupt,
                        format!("audit log {} line {}: {e}", path.display(), i + 1),
                    )
                })
            })
            .collect()
    }
}

#[async_trait]
impl AuditSink for JsonLinesAuditSink {
    async fn record(&self, record: &AuditRecord) -> Result<()> {
        let mut line = serde_json::to_vec(record)
            .map_err(|e| Error::permanent("cannot serialize an audit record").with_source(e))?;
        line.push(b'\n');
        let mut file = self.file.lock().await;
        let io = async {
            file.write_all(&line).await?;
            file.flush().await?;
            if self.sync {
                file.sync_data().await?;
            }
            Ok::<_, std::io::Error>(())
        };
        io.await.map_err(|e| {
            Error::transient(format!(
                "cannot append to audit log {}",
                self.path.display()
            ))
            .with_source(e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(entry: AuditEntry) -> AuditRecord {
        AuditRecord {
            at: Timestamp::from_millis(1_795_780_800_000),
            target: "shop/checkout".into(),
            revision: "v2".into(),
            actor: Actor::engine(),
            entry,
        }
    }

    #[tokio::test]
    async fn json_lines_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let sink = JsonLinesAuditSink::open(&path)
            .await
            .unwrap()
            .sync_every_record(true);
        let a = record(AuditEntry::Transition {
            from: PhaseKind::Observing,
            to: PhaseKind::RollingBack,
        });
        let b = record(AuditEntry::Measured {
            probe: "error_rate".into(),
            judged: "v2".into(),
            value: None,
            baseline: None,
            verdict: Some(Verdict::Inconclusive),
            cause: Some(VerdictCause::NoData),
            against: Some("success < 0.01".into()),
            detail: None,
        });
        sink.record(&a).await.unwrap();
        sink.record(&b).await.unwrap();
        drop(sink);
        let again = JsonLinesAuditSink::open(&path).await.unwrap();
        again.record(&a).await.unwrap();
        assert_eq!(
            JsonLinesAuditSink::read(&path).unwrap(),
            vec![a.clone(), b.clone(), a.clone()]
        );
        assert_eq!(
            b.to_string(),
            "2026-11-27T12:00:00.000Z shop/checkout error_rate on v2 = no data -> inconclusive (no data) [success < 0.01]"
        );
        std::fs::write(&path, "{not json}\n").unwrap();
        let e = JsonLinesAuditSink::read(&path).unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
    }
}
