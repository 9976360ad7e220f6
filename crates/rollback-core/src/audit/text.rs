//! The human timeline: one line per record.

use std::borrow::Cow;
use std::fmt;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{AuditRecord, AuditSink};
use crate::{Error, Result, Timestamp};

/// `s` with every control character (newline, carriage return, tab, escape,
/// …) written as its Rust escape (`\n`, `\u{1b}`), so text from outside (an
/// alert summary, a fingerprint, an actor's name) cannot start a line of its
/// own in a timeline or move the cursor of a terminal.
pub(crate) fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Writes each record as one human line to a writer (stdout, a file, a chat
/// bridge), with the time relative to the first record when asked. Every
/// field is escaped ([`AuditRecord::describe`]), so one record is one line.
pub struct TextAuditSink {
    out: Mutex<Box<dyn std::io::Write + Send>>,
    relative: bool,
    origin: Mutex<Option<Timestamp>>,
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

    /// The line [`AuditSink::record`] writes for `record`, without its newline.
    pub fn line(&self, record: &AuditRecord) -> String {
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
        format!(
            "{when}  {:<16} {}",
            escape(record.target.as_str()),
            record.describe()
        )
    }
}

#[async_trait]
impl AuditSink for TextAuditSink {
    async fn record(&self, record: &AuditRecord) -> Result<()> {
        let mut line = self.line(record);
        line.push('\n');
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        out.write_all(line.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| Error::transient("cannot write the audit timeline").with_source(e))
    }
}
