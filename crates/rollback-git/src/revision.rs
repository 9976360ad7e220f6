//! A revision of a path: the tree (or blob) the path holds, as the newest
//! commit that put it there shows it.

use std::collections::{BTreeMap, HashMap, HashSet};

use rollback_core::{
    HistoryEntry, IRREVERSIBLE_ATTRIBUTE, Revision, RevisionHealth, RevisionId, RevisionRecord,
    Timestamp,
};

use crate::marks;
use crate::working_clone::PathCommit;

/// The trailers of a rollback commit, and the one a change sets to say it
/// must not be rolled back blindly.
pub mod trailers {
    /// The revision restored: the path's tree (or blob) id.
    pub const ROLLBACK_TO: &str = "Rollback-To";
    /// The commit the restored tree was taken from.
    pub const ROLLBACK_TO_COMMIT: &str = "Rollback-To-Commit";
    /// The revision rolled away from.
    pub const ROLLBACK_FROM: &str = "Rollback-From";
    /// The path rolled back (one repository may hold many targets).
    pub const ROLLBACK_PATH: &str = "Rollback-Path";
    /// Why, on one line.
    pub const REASON: &str = "Reason";
    /// The engine's time of the decision, RFC 3339 with milliseconds: the
    /// rollback's identity, so the same request finds its commit instead of
    /// writing a second.
    pub const ROLLBACK_DECIDED_AT: &str = "Rollback-Decided-At";
    /// Who asked for it.
    pub const ROLLBACK_ACTOR: &str = "Rollback-Actor";
    /// Set to `true` on a change (a schema migration) that must not be
    /// rolled back blindly: the revision it writes gets the
    /// [`rollback_core::IRREVERSIBLE_ATTRIBUTE`].
    pub const ROLLBACK_IRREVERSIBLE: &str = "Rollback-Irreversible";
}

/// The attributes a [`GitRevision`] carries.
pub mod attributes {
    /// The newest commit that put the revision on the path (full id).
    pub const COMMIT: &str = "git.commit";
    /// That commit's subject.
    pub const SUBJECT: &str = "git.subject";
    /// That commit's author, `Name <email>`.
    pub const AUTHOR: &str = "git.author";
    /// `tree` for a directory, `blob` for a file.
    pub const OBJECT: &str = "git.object";
    /// When the commit is a rollback commit: the revision it rolled away from.
    pub const ROLLED_BACK_FROM: &str = "git.rolled_back_from";
}

/// One revision of a [`crate::GitTarget`]: the object the path holds (its
/// id is the revision's), as the newest commit that put it there on the
/// branch shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitRevision {
    record: RevisionRecord,
    commit: String,
}

impl GitRevision {
    pub(crate) fn from_commit(c: &PathCommit, created_at: Timestamp) -> Option<Self> {
        let (kind, id) = c.object.as_ref()?;
        let short = |s: &str| s.chars().take(7).collect::<String>();
        let mut record = RevisionRecord::new(id.clone())
            .label(format!(
                "{} {} (commit {})",
                kind.as_str(),
                short(id),
                short(&c.commit)
            ))
            .created_at(created_at)
            .attribute(attributes::COMMIT, &c.commit)
            .attribute(attributes::SUBJECT, &c.subject)
            .attribute(attributes::AUTHOR, &c.author)
            .attribute(attributes::OBJECT, kind.as_str());
        if let Some(from) = c.trailer(trailers::ROLLBACK_FROM) {
            record = record.attribute(attributes::ROLLED_BACK_FROM, from);
        }
        if c.trailer(trailers::ROLLBACK_IRREVERSIBLE)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            record = record.attribute(IRREVERSIBLE_ATTRIBUTE, "true");
        }
        Some(GitRevision {
            record,
            commit: c.commit.clone(),
        })
    }

    /// The newest commit that put this revision on the path.
    pub fn commit(&self) -> &str {
        &self.commit
    }
}

impl Revision for GitRevision {
    fn id(&self) -> &RevisionId {
        &self.record.id
    }
    fn label(&self) -> &str {
        &self.record.label
    }
    fn created_at(&self) -> Option<Timestamp> {
        self.record.created_at
    }
    fn attributes(&self) -> &BTreeMap<String, String> {
        &self.record.attributes
    }
    fn record(&self) -> RevisionRecord {
        self.record.clone()
    }
}

/// The revisions of a path's log (newest first): each object once, at the
/// newest commit that put it there; commits that deleted the path are no
/// revision. A commit's time is its committer date, but never later than a
/// newer revision's, so the history's times descend as the branch's order
/// does even when clocks disagreed.
pub(crate) fn revisions(log: &[PathCommit]) -> Vec<GitRevision> {
    let mut seen = HashSet::new();
    let mut newer = i64::MAX;
    let mut out = Vec::new();
    for c in log {
        let Some(id) = c.object_id() else { continue };
        let secs = c.time.min(newer);
        newer = secs;
        if !seen.insert(id.to_owned()) {
            continue;
        }
        if let Some(r) =
            GitRevision::from_commit(c, Timestamp::from_millis(secs.saturating_mul(1000)))
        {
            out.push(r);
        }
    }
    out
}

/// The history entries of `revisions`, with the health their notes give;
/// a revision without a verdict that a rollback commit of the log rolled
/// away from (its `Rollback-From`) is `Bad`, so what was rolled back stays
/// known where the notes are not (a mirror that does not fetch them).
pub(crate) fn entries(
    revisions: Vec<GitRevision>,
    notes: &HashMap<String, String>,
    log: &[PathCommit],
) -> Vec<HistoryEntry> {
    let rolled_back: HashSet<&str> = log
        .iter()
        .filter(|c| c.trailer(trailers::ROLLBACK_DECIDED_AT).is_some())
        .filter_map(|c| c.trailer(trailers::ROLLBACK_FROM))
        .collect();
    revisions
        .into_iter()
        .map(|r| {
            let id = r.id().as_str();
            let health = match marks::health(notes.get(id).map(String::as_str)) {
                RevisionHealth::Unknown if rolled_back.contains(id) => RevisionHealth::Bad,
                health => health,
            };
            HistoryEntry::new(std::sync::Arc::new(r), health)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::working_clone::ObjectKind;

    fn commit(id: &str, time: i64, tree: Option<&str>, trailers: &[(&str, &str)]) -> PathCommit {
        PathCommit {
            commit: id.into(),
            time,
            author: "a <a@x>".into(),
            subject: format!("subject of {id}"),
            trailers: trailers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            object: tree.map(|t| (ObjectKind::Tree, t.to_owned())),
        }
    }

    #[test]
    fn a_restored_tree_is_the_same_revision_at_its_newest_commit() {
        let log = [
            commit("c5", 500, Some("t2"), &[("Rollback-From", "t3")]),
            commit("c4", 400, Some("t3"), &[("Rollback-Irreversible", "true")]),
            commit("c3", 300, None, &[]),
            commit("c2", 200, Some("t2"), &[]),
            commit("c1", 900, Some("t1"), &[]),
        ];
        let r = revisions(&log);
        let ids: Vec<_> = r.iter().map(|r| r.id().as_str()).collect();
        assert_eq!(ids, ["t2", "t3", "t1"]);
        assert_eq!(r[0].commit(), "c5");
        assert_eq!(r[0].attributes()[attributes::ROLLED_BACK_FROM], "t3");
        assert!(r[1].is_irreversible());
        assert!(!r[0].is_irreversible());
        assert_eq!(r[0].label(), "tree t2 (commit c5)");
        // c1's clock ran ahead: its time is clamped to the newer one's.
        assert_eq!(r[2].created_at(), Some(Timestamp::from_millis(200_000)));
        assert_eq!(r[1].created_at(), Some(Timestamp::from_millis(400_000)));
    }

    #[test]
    fn notes_give_the_health_and_rollback_commits_name_what_was_bad() {
        let mut log = vec![
            commit(
                "c3",
                300,
                Some("t1"),
                &[
                    ("Rollback-From", "t2"),
                    ("Rollback-Decided-At", "2026-11-27T12:00:00.000Z"),
                ],
            ),
            commit("c2", 200, Some("t2"), &[]),
            commit("c1", 100, Some("t1"), &[("Rollback-From", "t0")]),
        ];
        let health = |log: &[PathCommit], notes: &HashMap<String, String>| {
            entries(revisions(log), notes, log)
                .iter()
                .map(|e| e.health)
                .collect::<Vec<_>>()
        };
        let none = HashMap::new();
        assert_eq!(
            health(&log, &none),
            [RevisionHealth::Unknown, RevisionHealth::Bad]
        );
        let notes = HashMap::from([
            ("t1".to_owned(), "Health: good\n".to_owned()),
            ("t2".to_owned(), "Health: good\n".to_owned()),
        ]);
        assert_eq!(
            health(&log, &notes),
            [RevisionHealth::Good, RevisionHealth::Good],
            "a verdict comes first"
        );
        // A trailer written by hand, without the decision time, says nothing.
        log[0].trailers.retain(|(k, _)| k != "Rollback-Decided-At");
        assert_eq!(
            health(&log, &none),
            [RevisionHealth::Unknown, RevisionHealth::Unknown]
        );
    }
}
