//! `rollback audit show FILE` (the text timeline of a JSON-lines audit log)
//! and `rollback audit verify FILE` (its hash chain).

use std::path::Path;

use rollback::audit::{self, JsonLinesAuditSink, TextAuditSink};
use rollback::{Error, Result};

use crate::exit::Outcome;

/// Print the timeline: one line per record; torn lines are reported on
/// stderr.
pub fn show(path: &Path) -> Result<Outcome> {
    let log = JsonLinesAuditSink::read(path)?;
    let text = TextAuditSink::new(std::io::sink());
    for r in &log.records {
        crate::outln!("{}", text.line(r));
    }
    for n in &log.torn_lines {
        eprintln!(
            "{} line {n}: torn (a write a crash cut short); its record is lost",
            path.display()
        );
    }
    Ok(Outcome::Healthy)
}

/// Check the chain; exit 1 with the first break on stderr when broken.
pub fn verify(path: &Path) -> Result<Outcome> {
    let report = audit::verify(path)?;
    match &report.broken {
        None => {
            crate::outln!(
                "{}: chain intact, {} records in {} lines{}; head {}",
                path.display(),
                report.records,
                report.lines,
                if report.torn_lines.is_empty() {
                    String::new()
                } else {
                    format!(", torn lines {:?}", report.torn_lines)
                },
                report.head.as_deref().unwrap_or("-")
            );
            Ok(Outcome::Healthy)
        }
        Some(b) => Err(Error::invalid(format!(
            "{}: chain broken at {b}: the line was edited, deleted, inserted or moved",
            path.display()
        ))),
    }
}
