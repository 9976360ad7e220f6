//! The in-memory target: a revision history with health marks, and the
//! rollback records its rollbacker keeps in it.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::lock;
use crate::{
    Capabilities, Error, HistoryEntry, Mark, Result, RevisionHealth, RevisionId, RevisionRecord,
    RevisionRef, Target, TargetId, Timestamp,
};

#[derive(Debug)]
struct TargetState {
    /// Newest first.
    history: Vec<(Arc<RevisionRecord>, RevisionHealth)>,
    current: RevisionId,
    /// The rollback records the backend keeps, oldest first.
    records: Vec<RollbackRecord>,
}

/// The record an [`InMemoryRollbacker`](super::InMemoryRollbacker) keeps
/// of each rollback in its target, as a backend keeps a move record in a
/// tag or an annotation: written once per rollback (keyed by its decision
/// time), whatever interrupts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackRecord {
    /// The rollback's identity:
    /// [`RollbackRequest::decided_at`](crate::RollbackRequest::decided_at).
    pub decided_at: Timestamp,
    /// The revision rolled away from.
    pub from: Option<RevisionId>,
    /// The revision restored.
    pub to: RevisionId,
    /// The request's [`reason`](crate::RollbackRequest::reason), kept as a
    /// backend keeps it in a change-cause annotation or a tag.
    pub reason: String,
}

/// A target with a revision history, kept in memory. Cloning shares it.
///
/// Like a Kubernetes Deployment or a CodeDeploy group, deploying (or rolling
/// back to) a revision makes it the newest entry of the history.
#[derive(Debug, Clone)]
pub struct InMemoryTarget {
    id: TargetId,
    state: Arc<Mutex<TargetState>>,
    /// Marked on each deploy and rollback ([`Target::changes`]).
    changed: crate::changes::ChangeSender,
}

impl InMemoryTarget {
    /// A target that had `revisions` deployed in this order (oldest first);
    /// the last one is current. At least one revision is needed.
    pub fn new(
        id: impl Into<String>,
        revisions: impl IntoIterator<Item = RevisionRecord>,
    ) -> Result<Self> {
        let id = TargetId::new(id);
        let mut history: Vec<_> = revisions
            .into_iter()
            .map(|r| (Arc::new(r), RevisionHealth::Unknown))
            .collect();
        history.reverse();
        let Some((newest, _)) = history.first() else {
            return Err(Error::invalid(format!(
                "in-memory target {id} needs at least one revision"
            )));
        };
        let current = newest.id.clone();
        let mut seen = std::collections::BTreeSet::new();
        for (r, _) in &history {
            if !seen.insert(&r.id) {
                return Err(Error::invalid(format!(
                    "in-memory target {id}: revision {} is listed twice",
                    r.id
                )));
            }
        }
        Ok(InMemoryTarget {
            id,
            state: Arc::new(Mutex::new(TargetState {
                history,
                current,
                records: Vec::new(),
            })),
            changed: crate::changes::ChangeSender::new(),
        })
    }

    /// Deploy a revision: it becomes current and the newest entry.
    pub fn deploy(&self, revision: RevisionRecord) {
        let mut s = lock(&self.state);
        let health = s
            .history
            .iter()
            .position(|(r, _)| r.id == revision.id)
            .map(|i| s.history.remove(i).1);
        s.current = revision.id.clone();
        s.history
            .insert(0, (Arc::new(revision), health.unwrap_or_default()));
        drop(s);
        self.changed.send();
    }

    /// Set what the backend knows of a revision's health.
    pub fn set_health(&self, id: &RevisionId, health: RevisionHealth) -> Result<()> {
        let mut s = lock(&self.state);
        match s.history.iter_mut().find(|(r, _)| &r.id == id) {
            Some(entry) => {
                entry.1 = health;
                Ok(())
            }
            None => Err(self.unknown(id)),
        }
    }

    /// The id of the current revision.
    pub fn current_id(&self) -> RevisionId {
        lock(&self.state).current.clone()
    }

    /// The health mark of a revision, if it is in the history.
    pub fn health_of(&self, id: &RevisionId) -> Option<RevisionHealth> {
        lock(&self.state)
            .history
            .iter()
            .find(|(r, _)| &r.id == id)
            .map(|(_, h)| *h)
    }

    /// The rollback records kept in the target, oldest first.
    pub fn records(&self) -> Vec<RollbackRecord> {
        lock(&self.state).records.clone()
    }

    /// Keep `record` unless one with its decision time is kept already.
    pub(super) fn keep_record(&self, record: RollbackRecord) {
        let mut s = lock(&self.state);
        if !s.records.iter().any(|r| r.decided_at == record.decided_at) {
            s.records.push(record);
        }
    }

    fn unknown(&self, id: &RevisionId) -> Error {
        Error::not_found(format!(
            "revision {id} is not in the history of target {}",
            self.id
        ))
    }

    pub(super) fn roll_to(&self, id: &RevisionId) -> Result<bool> {
        let mut s = lock(&self.state);
        let Some(i) = s.history.iter().position(|(r, _)| &r.id == id) else {
            return Err(self.unknown(id));
        };
        if &s.current == id {
            return Ok(false);
        }
        let entry = s.history.remove(i);
        s.history.insert(0, entry);
        s.current = id.clone();
        drop(s);
        self.changed.send();
        Ok(true)
    }

    pub(super) fn find_revision(&self, id: &RevisionId) -> Result<Arc<RevisionRecord>> {
        lock(&self.state)
            .history
            .iter()
            .find(|(r, _)| &r.id == id)
            .map(|(r, _)| r.clone())
            .ok_or_else(|| self.unknown(id))
    }
}

#[async_trait]
impl Target for InMemoryTarget {
    fn id(&self) -> &TargetId {
        &self.id
    }

    fn changes(&self) -> Option<crate::changes::Changes> {
        Some(self.changed.subscribe())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE.with_mark(true)
    }

    async fn current(&self) -> Result<RevisionRef> {
        let s = lock(&self.state);
        let current = s
            .history
            .iter()
            .find(|(r, _)| r.id == s.current)
            .map(|(r, _)| r.clone());
        current
            .map(|r| r as RevisionRef)
            .ok_or_else(|| self.unknown(&s.current))
    }

    async fn history(&self) -> Result<Vec<HistoryEntry>> {
        let s = lock(&self.state);
        Ok(s.history
            .iter()
            .map(|(r, h)| HistoryEntry::new(r.clone() as RevisionRef, *h))
            .collect())
    }

    async fn mark(&self, mark: &Mark) -> Result<()> {
        self.set_health(&mark.revision, mark.health)
    }
}
