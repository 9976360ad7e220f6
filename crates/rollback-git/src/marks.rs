//! Health marks as git notes: one note per revision (on the path's tree or
//! blob, so the mark follows the content, wherever it is committed again),
//! holding one paragraph per verdict, oldest first, each in trailer form so
//! that `git notes --ref=rollback show TREE` reads well:
//!
//! ```text
//! Health: bad
//! Reason: error_rate 0.031 breached < 0.01
//! Marked-At: 2026-11-27T12:00:00.000Z
//! ```
//!
//! The last verdict is the revision's health. A verdict is keyed by its
//! health and its time (the engine's, never the wall clock), so the same
//! mark written again (an engine's retry, a rollback completing after a
//! restart) is found and not written twice.

use rollback_core::{RevisionHealth, Timestamp};

/// The trailer keys of a mark.
pub mod keys {
    /// `good`, `bad` or `unknown`.
    pub const HEALTH: &str = "Health";
    /// Why, on one line.
    pub const REASON: &str = "Reason";
    /// The engine's time of the verdict, RFC 3339 with milliseconds.
    pub const MARKED_AT: &str = "Marked-At";
}

/// One verdict in a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub(crate) health: RevisionHealth,
    pub(crate) reason: String,
    pub(crate) at: String,
}

impl Verdict {
    pub(crate) fn new(health: RevisionHealth, reason: &str, at: Timestamp) -> Self {
        Verdict {
            health,
            reason: one_line(reason),
            at: at.to_string(),
        }
    }

    fn paragraph(&self) -> String {
        format!(
            "{}: {}\n{}: {}\n{}: {}\n",
            keys::HEALTH,
            self.health,
            keys::REASON,
            if self.reason.is_empty() {
                "(none given)"
            } else {
                &self.reason
            },
            keys::MARKED_AT,
            self.at
        )
    }
}

/// A text on one line: newlines and other control characters become spaces,
/// runs of white space one space.
pub(crate) fn one_line(s: &str) -> String {
    s.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The verdicts of a note, oldest first; paragraphs that are not verdicts
/// (a note someone wrote by hand) are skipped.
pub(crate) fn verdicts(note: &str) -> Vec<Verdict> {
    note.split("\n\n")
        .filter_map(|p| {
            let mut health = None;
            let mut reason = String::new();
            let mut at = String::new();
            for line in p.lines() {
                let Some((k, v)) = line.split_once(':') else {
                    continue;
                };
                let v = v.trim();
                match k.trim() {
                    k if k.eq_ignore_ascii_case(keys::HEALTH) => {
                        health = match v {
                            "good" => Some(RevisionHealth::Good),
                            "bad" => Some(RevisionHealth::Bad),
                            "unknown" => Some(RevisionHealth::Unknown),
                            _ => None,
                        }
                    }
                    k if k.eq_ignore_ascii_case(keys::REASON) => reason = v.to_owned(),
                    k if k.eq_ignore_ascii_case(keys::MARKED_AT) => at = v.to_owned(),
                    _ => {}
                }
            }
            Some(Verdict {
                health: health?,
                reason,
                at,
            })
        })
        .collect()
}

/// The health a note says: its last verdict's, `Unknown` without one.
pub(crate) fn health(note: Option<&str>) -> RevisionHealth {
    note.and_then(|n| verdicts(n).pop())
        .map_or(RevisionHealth::Unknown, |v| v.health)
}

/// The note with `verdict` added, or `None` when it holds a verdict of the
/// same health and time already.
pub(crate) fn with(note: Option<&str>, verdict: &Verdict) -> Option<String> {
    let note = note.unwrap_or("").trim_end();
    if verdicts(note)
        .iter()
        .any(|v| v.health == verdict.health && v.at == verdict.at)
    {
        return None;
    }
    Some(if note.is_empty() {
        verdict.paragraph()
    } else {
        format!("{note}\n\n{}", verdict.paragraph())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: Timestamp = Timestamp::from_millis(1_795_780_800_000);

    #[test]
    fn verdicts_append_once_and_the_last_one_counts() {
        let bad = Verdict::new(RevisionHealth::Bad, "error_rate\n0.03 > 0.01", AT);
        let note = with(None, &bad).unwrap();
        assert_eq!(
            note,
            "Health: bad\nReason: error_rate 0.03 > 0.01\nMarked-At: 2026-11-27T12:00:00.000Z\n"
        );
        assert_eq!(with(Some(&note), &bad), None, "the same mark again");
        let good = Verdict::new(
            RevisionHealth::Good,
            "",
            AT.plus(std::time::Duration::from_secs(60)),
        );
        let note = with(Some(&note), &good).unwrap();
        assert_eq!(health(Some(&note)), RevisionHealth::Good);
        assert_eq!(verdicts(&note).len(), 2);
        assert!(note.contains("Reason: (none given)"));
        // An old mark retried after a newer one is not written again.
        assert_eq!(with(Some(&note), &bad), None);
        assert_eq!(health(None), RevisionHealth::Unknown);
        assert_eq!(
            health(Some("written by hand\n\nHealth: maybe\n")),
            RevisionHealth::Unknown
        );
    }
}
