//! One deployable version of a target.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::Timestamp;

/// The stable identity of a revision. Content-derived where the backend
/// allows: the pod-template hash, the CodeDeploy revision location, the model
/// version. Two revisions with the same id are the same deployable thing.
///
/// Shared, not copied: an id is kept by many maps (the engine's, the
/// supervisor's, the server's, its timeline's, the state store's), and
/// cloning it costs a reference count, not an allocation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RevisionId(std::sync::Arc<str>);

impl serde::Serialize for RevisionId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for RevisionId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d).map(RevisionId::new)
    }
}

impl RevisionId {
    /// A revision id from any string.
    pub fn new(id: impl Into<String>) -> Self {
        RevisionId(id.into().into())
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RevisionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for RevisionId {
    fn from(s: &str) -> Self {
        RevisionId(s.into())
    }
}

impl From<String> for RevisionId {
    fn from(s: String) -> Self {
        RevisionId(s.into())
    }
}

/// The attribute that marks a revision as irreversible (a schema migration,
/// say): its value `"true"` makes the policy's `on_irreversible` apply.
pub const IRREVERSIBLE_ATTRIBUTE: &str = "rollback.irreversible";

/// One deployable version of a target.
///
/// Backends may carry much more (a pod template, a revision location); the
/// engine only needs what this trait gives, and [`Revision::record`] turns any
/// revision into a serializable [`RevisionRecord`] for the journal and the
/// audit log.
///
/// # Contract
/// - `id()` is stable: the same deployable content gives the same id however
///   often the backend renumbers or re-lists it.
/// - `label()` is for humans (`revision 3`, `v2`, `version 7`) and may change.
/// - `created_at()` is when the revision was (last) deployed to the target,
///   so a history ordered newest first has it descending; a backend that
///   redeploys an old revision reports the redeployment's time.
/// - `attributes()` are free-form facts (images, run id, change cause); the
///   attribute [`IRREVERSIBLE_ATTRIBUTE`] set to `"true"` marks a change that
///   must not be rolled back blindly.
/// - All methods are cheap and never do I/O.
#[cfg_attr(feature = "mock", mockall::automock)]
pub trait Revision: fmt::Debug + Send + Sync + 'static {
    /// The stable id.
    fn id(&self) -> &RevisionId;
    /// A human label.
    fn label(&self) -> &str;
    /// When this revision was (last) deployed to the target, if the backend knows.
    fn created_at(&self) -> Option<Timestamp>;
    /// Free-form attributes.
    fn attributes(&self) -> &BTreeMap<String, String>;

    /// Whether this revision is marked irreversible.
    fn is_irreversible(&self) -> bool {
        self.attributes()
            .get(IRREVERSIBLE_ATTRIBUTE)
            .is_some_and(|v| v == "true")
    }

    /// A serializable copy.
    fn record(&self) -> RevisionRecord {
        RevisionRecord {
            id: self.id().clone(),
            label: self.label().to_owned(),
            created_at: self.created_at(),
            attributes: self.attributes().clone(),
        }
    }
}

/// A shared, type-erased revision, as targets return them.
pub type RevisionRef = Arc<dyn Revision>;

/// The plain, serializable form of a revision. Also a [`Revision`] itself, used
/// by the in-memory backends and by backends with nothing more to carry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevisionRecord {
    /// The stable id.
    pub id: RevisionId,
    /// A human label.
    pub label: String,
    /// Creation time, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    /// Free-form attributes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

impl RevisionRecord {
    /// A revision whose label is its id.
    pub fn new(id: impl Into<String>) -> Self {
        let id = id.into();
        RevisionRecord {
            label: id.clone(),
            id: RevisionId::new(id),
            created_at: None,
            attributes: BTreeMap::new(),
        }
    }

    /// Set the label.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// Set the creation time.
    pub fn created_at(mut self, at: Timestamp) -> Self {
        self.created_at = Some(at);
        self
    }

    /// Add an attribute.
    pub fn attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.insert(key.into(), value.into());
        self
    }

    /// Mark it irreversible (see [`IRREVERSIBLE_ATTRIBUTE`]).
    pub fn irreversible(self) -> Self {
        self.attribute(IRREVERSIBLE_ATTRIBUTE, "true")
    }
}

impl Revision for RevisionRecord {
    fn id(&self) -> &RevisionId {
        &self.id
    }
    fn label(&self) -> &str {
        &self.label
    }
    fn created_at(&self) -> Option<Timestamp> {
        self.created_at
    }
    fn attributes(&self) -> &BTreeMap<String, String> {
        &self.attributes
    }
    fn record(&self) -> RevisionRecord {
        self.clone()
    }
}

/// What is known of a revision's health.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum RevisionHealth {
    /// Nothing is known: never judged, or still being judged.
    #[default]
    Unknown,
    /// Known good: it was promoted, or its deployment succeeded.
    Good,
    /// Known bad: it was rolled back, or its deployment failed.
    Bad,
}

impl RevisionHealth {
    /// `unknown`, `good` or `bad`.
    pub fn as_str(self) -> &'static str {
        match self {
            RevisionHealth::Unknown => "unknown",
            RevisionHealth::Good => "good",
            RevisionHealth::Bad => "bad",
        }
    }
}

impl fmt::Display for RevisionHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of a target's history.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    /// The revision.
    pub revision: RevisionRef,
    /// What the backend knows of its health.
    pub health: RevisionHealth,
}

impl HistoryEntry {
    /// An entry.
    pub fn new(revision: RevisionRef, health: RevisionHealth) -> Self {
        HistoryEntry { revision, health }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_through_json() {
        let r = RevisionRecord::new("abc123")
            .label("revision 3")
            .attribute("image", "shop:1.2")
            .irreversible();
        assert!(r.is_irreversible());
        let json = serde_json::to_string(&r).unwrap();
        let back: RevisionRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        let dynamic: RevisionRef = Arc::new(r.clone());
        assert_eq!(dynamic.record(), r);
    }
}
