//! Model versions as revisions, and the tags this crate writes on them.

use std::collections::BTreeMap;

use rollback_core::{IRREVERSIBLE_ATTRIBUTE, Revision, RevisionHealth, RevisionId, Timestamp};

use crate::ModelVersion;

/// The keys of the model-version tags this crate reads and writes.
pub mod tags {
    /// `good` or `bad`: the health verdict kept in MLflow
    /// ([`rollback_core::Target::mark`], and the bad version of a rollback).
    pub const HEALTH: &str = "rollback.health";
    /// Why the health verdict was given.
    pub const HEALTH_REASON: &str = "rollback.health.reason";
    /// The engine's time of the verdict (RFC 3339): a mark's time, or the
    /// decision time of the rollback that left the version.
    pub const HEALTH_AT: &str = "rollback.health.at";
    /// Prefix of the move records: `rollback.move.<alias>.<unix millis>`,
    /// whose value is an [`crate::AliasMove`] as JSON and whose millis are
    /// the rollback's decision time, so one rollback has one key however
    /// often it is carried out. Each rollback writes its record on both
    /// versions, the one restored and the one left.
    pub const MOVE_PREFIX: &str = "rollback.move.";
    /// `true` on a version that must not be rolled back blindly; it becomes
    /// the revision attribute [`rollback_core::IRREVERSIBLE_ATTRIBUTE`].
    pub const IRREVERSIBLE: &str = "rollback.irreversible";
}

/// A model version as a [`Revision`].
///
/// The id is the version number, which MLflow never reuses within a
/// registered model. The attributes are `model`, `version`, `run_id`,
/// `source`, `status`, `stage`, `description` (where set) and every tag as
/// `tag.<key>`.
#[derive(Debug, Clone)]
pub struct ModelVersionRevision {
    id: RevisionId,
    label: String,
    created_at: Option<Timestamp>,
    attributes: BTreeMap<String, String>,
    version: ModelVersion,
}

impl ModelVersionRevision {
    /// The revision of a model version.
    pub fn new(version: ModelVersion) -> Self {
        let mut attributes = BTreeMap::new();
        attributes.insert("model".to_owned(), version.name.clone());
        attributes.insert("version".to_owned(), version.version.clone());
        let optional = [
            ("run_id", &version.run_id),
            ("source", &version.source),
            ("status", &version.status),
            ("stage", &version.current_stage),
            ("description", &version.description),
        ];
        for (key, value) in optional {
            if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
                attributes.insert(key.to_owned(), v.to_owned());
            }
        }
        for tag in &version.tags {
            attributes.insert(format!("tag.{}", tag.key), tag.value.clone());
        }
        if version
            .tag(tags::IRREVERSIBLE)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            attributes.insert(IRREVERSIBLE_ATTRIBUTE.to_owned(), "true".to_owned());
        }
        ModelVersionRevision {
            id: RevisionId::new(version.version.clone()),
            label: format!("version {}", version.version),
            created_at: version.creation_timestamp.map(Timestamp::from_millis),
            attributes,
            version,
        }
    }

    /// The model version as MLflow returned it.
    pub fn model_version(&self) -> &ModelVersion {
        &self.version
    }

    /// The health kept in the version's `rollback.health` tag.
    pub fn health(&self) -> RevisionHealth {
        health_of(&self.version)
    }
}

pub(crate) fn health_of(v: &ModelVersion) -> RevisionHealth {
    match v.tag(tags::HEALTH) {
        Some("good") => RevisionHealth::Good,
        Some("bad") => RevisionHealth::Bad,
        _ => RevisionHealth::Unknown,
    }
}

impl Revision for ModelVersionRevision {
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
}

/// The health tags of a verdict, in the order they are written: the
/// verdict last, so a write cut short leaves the old verdict.
pub(crate) fn health_tags(
    health: RevisionHealth,
    reason: &str,
    at: Timestamp,
) -> Option<[(&'static str, String); 3]> {
    let verdict = match health {
        RevisionHealth::Good => "good",
        RevisionHealth::Bad => "bad",
        RevisionHealth::Unknown => return None,
    };
    Some([
        (tags::HEALTH_REASON, clip(reason, MAX_REASON_CHARS)),
        (tags::HEALTH_AT, at.to_string()),
        (tags::HEALTH, verdict.to_owned()),
    ])
}

/// Whether the post-rollback hooks of a recorded move have all succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HooksState {
    /// The move is recorded but its hooks have not all succeeded yet: the
    /// next request for the same rollback, by this process or a restarted
    /// one, runs them again.
    Pending,
    /// Every hook succeeded, or there were none. Records written before
    /// this state was kept read as done.
    #[default]
    Done,
}

/// One move of an alias (or stage) by a rollback, as recorded in version tags.
/// MLflow keeps no history of alias moves; these records are that history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AliasMove {
    /// The registered model's name (the record sits on two of its versions;
    /// the name keeps it meaningful when copied elsewhere, to a hook say).
    pub model: String,
    /// The alias moved, in alias mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// The stage moved, in legacy stage mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// The version it pointed at before (none when the alias was unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The version it points at now.
    pub to: String,
    /// The rollback's reason (the breach, an operator's words), clipped to
    /// 1000 characters.
    pub reason: String,
    /// Who asked: `rollback-engine`, or the operator's name.
    pub actor: String,
    /// The engine's decision time of the rollback, RFC 3339.
    pub at: String,
    /// The same in milliseconds since the Unix epoch: it orders the records
    /// and ends the record's key.
    pub at_ms: i64,
    /// Whether the post-rollback hooks have all succeeded.
    #[serde(default)]
    pub hooks: HooksState,
}

/// The longest reason kept in a tag, in characters.
pub(crate) const MAX_REASON_CHARS: usize = 1000;

pub(crate) fn clip(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tag;

    #[test]
    fn attributes_carry_run_source_and_tags() {
        let v: ModelVersion = serde_json::from_value(serde_json::json!({
            "name": "rec", "version": "7", "creation_timestamp": 1_700_000_000_000_i64,
            "source": "s3://b/7", "run_id": "abc", "status": "READY", "current_stage": "None", "description": "",
            "tags": [Tag { key: "rollback.health".into(), value: "bad".into() }, Tag { key: "rollback.irreversible".into(), value: "true".into() }],
        }))
        .unwrap();
        let r = ModelVersionRevision::new(v);
        assert_eq!(r.id().as_str(), "7");
        assert_eq!(r.label(), "version 7");
        assert_eq!(
            r.created_at(),
            Some(Timestamp::from_millis(1_700_000_000_000))
        );
        assert_eq!(r.attributes()["run_id"], "abc");
        assert_eq!(r.attributes()["source"], "s3://b/7");
        assert_eq!(r.attributes()["tag.rollback.health"], "bad");
        assert!(!r.attributes().contains_key("description"));
        assert!(r.is_irreversible());
        assert_eq!(r.health(), RevisionHealth::Bad);
    }

    #[test]
    fn clip_respects_char_boundaries() {
        assert_eq!(clip("héllo", 2), "hé…");
        assert_eq!(clip("ok", 5), "ok");
    }
}
