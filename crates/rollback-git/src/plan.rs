//! One rollback as a value: what [`crate::GitRollbacker`] found on the
//! branch, and what remains to be written.
//!
//! A rollback of path P from revision F to revision T, decided at D, leaves
//! on the branch:
//! - one commit whose tree is the tip's with P replaced by T, carrying the
//!   trailers `Rollback-To: T`, `Rollback-From: F`, `Rollback-Path: P`,
//!   `Reason:` and `Rollback-Decided-At: D` (see [`crate::trailers`]);
//! - the verdict `bad` at D in F's note under the notes ref.
//!
//! [`RollbackPlan::decide`] compares that with what the branch holds and
//! keeps only what is missing: a commit with the same path and decision
//! time is this rollback, done already.

use std::collections::HashMap;
use std::fmt;

use rollback_core::{RollbackRequest, TargetId, Timestamp};

use crate::GitError;
use crate::marks::{self, Verdict, one_line};
use crate::revision::trailers;
use crate::target::BranchPath;
use crate::working_clone::{PathCommit, Tips};

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// What a rollback will write, read from the branch before anything
/// changes. Its `Display` says it in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackPlan {
    target: TargetId,
    describe: String,
    path: String,
    notes_ref: String,
    pub(crate) tips: Tips,
    pub(crate) to: String,
    /// The newest commit whose path holds `to`.
    pub(crate) to_commit: String,
    pub(crate) from: Option<String>,
    /// The rollback commit of this request, when the branch holds it.
    pub(crate) found: Option<String>,
    /// The commit's message, when it remains to be written.
    pub(crate) message: Option<String>,
    /// The note `from` gets, when its bad verdict remains to be written.
    pub(crate) note: Option<String>,
    pub(crate) decided_at: Timestamp,
}

/// The trailers' value of a decision time.
pub(crate) fn decided_at_text(at: Timestamp) -> String {
    at.to_string()
}

impl RollbackPlan {
    /// What `request` leaves to write, given the branch's tips, the path's
    /// log from the tip and the notes of the revisions in it. Changes
    /// nothing.
    ///
    /// - `request.to` must be a revision of the log, else `NotFound`;
    /// - a rollback commit of the path with the request's decision time
    ///   means the commit is written; if the path has moved on since, that
    ///   is a `Conflict` not worth retrying (someone changed it after the
    ///   rollback: it is theirs to undo);
    /// - otherwise, a path already at `to` needs nothing; a path at
    ///   another revision than `request.from` is a `Conflict` not worth
    ///   retrying (someone deployed meanwhile); else the commit remains;
    /// - the revision left needs its bad verdict unless its note holds it.
    pub(crate) fn decide(
        t: &BranchPath,
        request: &RollbackRequest,
        tips: &Tips,
        log: &[PathCommit],
        notes: &HashMap<String, String>,
    ) -> Result<RollbackPlan, GitError> {
        let to = request.to.id().as_str();
        let current = t.current_of(tips, log)?;
        let current = rollback_core::Revision::id(&current).as_str().to_owned();
        let Some(to_commit) = log.iter().find(|c| c.object_id() == Some(to)) else {
            return Err(GitError::NotFound(format!(
                "revision {to} is not in the history of {} (the newest {} commits that changed it); the history lists the revisions it can roll back to",
                t.describe(),
                t.history_limit
            )));
        };
        let key = decided_at_text(request.decided_at);
        let found = log.iter().find(|c| {
            c.trailer(trailers::ROLLBACK_DECIDED_AT) == Some(key.as_str())
                && c.trailer(trailers::ROLLBACK_PATH) == Some(t.path.as_str())
        });
        let (from, message) = match found {
            Some(c) => {
                if current != to {
                    return Err(GitError::Conflict {
                        message: format!(
                            "the rollback decided at {key} was committed as {} restoring {to}, but {} has moved on since and holds {current}; nothing was written (the newer change is for its author to undo)",
                            short(&c.commit),
                            t.describe()
                        ),
                        retryable: false,
                    });
                }
                (c.trailer(trailers::ROLLBACK_FROM).map(str::to_owned), None)
            }
            None if current == to => (None, None),
            None => {
                if let Some(f) = &request.from
                    && f.as_str() != current
                {
                    return Err(GitError::Conflict {
                        message: format!(
                            "{} holds {current}, not {f} that the rollback was decided on: someone deployed meanwhile; nothing was written",
                            t.describe()
                        ),
                        retryable: false,
                    });
                }
                let message = commit_message(t, request, &current, to_commit);
                (Some(current.clone()), Some(message))
            }
        };
        let note = from.as_deref().filter(|f| *f != to).and_then(|f| {
            let verdict = Verdict::new(
                rollback_core::RevisionHealth::Bad,
                &request.reason,
                request.decided_at,
            );
            marks::with(notes.get(f).map(String::as_str), &verdict)
        });
        Ok(RollbackPlan {
            target: t.id.clone(),
            describe: t.describe(),
            path: t.path.clone(),
            notes_ref: t.notes_ref.clone(),
            tips: tips.clone(),
            to: to.to_owned(),
            to_commit: to_commit.commit.clone(),
            from,
            found: found.map(|c| c.commit.clone()),
            message,
            note,
            decided_at: request.decided_at,
        })
    }

    /// Whether nothing remains to be written.
    pub fn is_complete(&self) -> bool {
        self.message.is_none() && self.note.is_none()
    }

    /// The target.
    pub fn target(&self) -> &TargetId {
        &self.target
    }

    /// The revision restored.
    pub fn to(&self) -> &str {
        &self.to
    }

    /// The revision rolled away from, when there is one.
    pub fn from(&self) -> Option<&str> {
        self.from.as_deref()
    }

    /// The rollback commit of this request, when the branch holds it.
    pub fn found(&self) -> Option<&str> {
        self.found.as_deref()
    }

    /// The step that pushes the commit (`None`: it is on the branch).
    pub(crate) fn commit_step(&self) -> Option<String> {
        self.message.as_ref().map(|_| {
            format!(
                "push the commit restoring {} to {}",
                self.path,
                short(&self.to)
            )
        })
    }

    /// The step that pushes the bad verdict of the revision left.
    pub(crate) fn mark_step(&self) -> Option<String> {
        match (&self.note, &self.from) {
            (Some(_), Some(f)) => Some(format!(
                "push the bad mark of {} to {}",
                short(f),
                self.notes_ref
            )),
            _ => None,
        }
    }
}

impl fmt::Display for RollbackPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.message.is_some() {
            parts.push(format!(
                "commit on {} restoring it from {} to {} (as at commit {}) over tip {}",
                self.describe,
                self.from.as_deref().map_or("?", short),
                short(&self.to),
                short(&self.to_commit),
                short(&self.tips.branch)
            ));
        }
        if let (Some(_), Some(from)) = (&self.note, &self.from) {
            parts.push(format!("mark {} bad in {}", short(from), self.notes_ref));
        }
        if parts.is_empty() {
            return match &self.found {
                Some(c) => write!(
                    f,
                    "nothing: {} holds {} since rollback commit {}",
                    self.describe,
                    short(&self.to),
                    short(c)
                ),
                None => write!(
                    f,
                    "nothing: {} holds {} already",
                    self.describe,
                    short(&self.to)
                ),
            };
        }
        write!(f, "{}", parts.join(", and "))?;
        if let Some(c) = &self.found {
            write!(f, " (rollback commit {} is on the branch)", short(c))?;
        }
        write!(f, "; pushed as a fast-forward")
    }
}

/// The rollback commit's message: a subject, a sentence, the trailers.
fn commit_message(
    t: &BranchPath,
    request: &RollbackRequest,
    from: &str,
    to_commit: &PathCommit,
) -> String {
    let to = request.to.id().as_str();
    let reason = one_line(&request.reason);
    let reason = if reason.is_empty() {
        "(none given)".to_owned()
    } else {
        reason
    };
    format!(
        "Roll back {path} to {to_short}\n\n\
         Restore {path} on {branch} to what commit {commit_short} put there\n\
         (\"{subject}\"), away from {from_short}.\n\n\
         {k_to}: {to}\n\
         {k_to_commit}: {commit}\n\
         {k_from}: {from}\n\
         {k_path}: {path}\n\
         {k_reason}: {reason}\n\
         {k_at}: {at}\n\
         {k_actor}: {actor}\n",
        path = t.path,
        to_short = short(to),
        branch = t.branch,
        commit_short = short(&to_commit.commit),
        subject = one_line(&to_commit.subject).replace('"', "'"),
        from_short = short(from),
        k_to = trailers::ROLLBACK_TO,
        k_to_commit = trailers::ROLLBACK_TO_COMMIT,
        commit = to_commit.commit,
        k_from = trailers::ROLLBACK_FROM,
        k_path = trailers::ROLLBACK_PATH,
        k_reason = trailers::REASON,
        k_at = trailers::ROLLBACK_DECIDED_AT,
        at = decided_at_text(request.decided_at),
        k_actor = trailers::ROLLBACK_ACTOR,
        actor = one_line(request.actor.as_str()),
    )
}

/// The objects a plan's pushes need, written in the working clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Prepared {
    /// The rollback commit, when the plan writes one.
    pub(crate) commit: Option<String>,
    /// The notes ref's new tip, when the plan writes a mark.
    pub(crate) notes: Option<String>,
}

impl RollbackPlan {
    /// Write the commit and the note in the working clone (the remote is
    /// untouched): the commit's tree is the tip's with the path replaced by
    /// the restored object, in the mode it had at `to_commit`; its dates
    /// and the note's are the decision time.
    pub(crate) async fn prepare(&self, t: &BranchPath) -> Result<Prepared, GitError> {
        let commit = match &self.message {
            None => None,
            Some(message) => {
                let entry = t
                    .clone
                    .entry_at(&self.to_commit, &self.path)
                    .await?
                    .filter(|e| e.id == self.to)
                    .ok_or_else(|| {
                        GitError::Corrupt(format!(
                            "{} does not hold {} at commit {}, though its log says so",
                            t.describe(),
                            self.to,
                            self.to_commit
                        ))
                    })?;
                let root = t.clone.root_tree(&self.tips.branch).await?;
                let tree = t.clone.replace(&root, &self.path, &entry).await?;
                Some(
                    t.clone
                        .commit_tree(
                            &tree,
                            &self.tips.branch,
                            message,
                            &t.identity,
                            self.decided_at,
                        )
                        .await?,
                )
            }
        };
        let notes = match (&self.note, &self.from) {
            (Some(note), Some(from)) => Some(
                t.clone
                    .write_note(&t.notes_ref, from, note, &t.identity, self.decided_at)
                    .await?,
            ),
            _ => None,
        };
        Ok(Prepared { commit, notes })
    }

    /// The ref updates that push `prepared`: the branch from its tip, the
    /// notes ref from its tip (or from nothing).
    pub(crate) fn updates(
        &self,
        t: &BranchPath,
        prepared: &Prepared,
    ) -> (
        Option<crate::working_clone::RefUpdate>,
        Option<crate::working_clone::RefUpdate>,
    ) {
        let branch = prepared
            .commit
            .as_ref()
            .map(|c| crate::working_clone::RefUpdate {
                refname: format!("refs/heads/{}", t.branch),
                old: Some(self.tips.branch.clone()),
                new: c.clone(),
            });
        let notes = prepared
            .notes
            .as_ref()
            .map(|n| crate::working_clone::RefUpdate {
                refname: t.notes_ref.clone(),
                old: self.tips.notes.clone(),
                new: n.clone(),
            });
        (branch, notes)
    }
}
