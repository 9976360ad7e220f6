//! MLflow's registry resources as its REST API returns them: registered
//! models, model versions, their tags and aliases.

use serde::Deserialize as _;

/// One tag of a model version or registered model.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tag {
    /// The key.
    pub key: String,
    /// The value.
    #[serde(default)]
    pub value: String,
}

/// A model version, as MLflow returns it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[non_exhaustive]
pub struct ModelVersion {
    /// The registered model's name.
    pub name: String,
    /// The version number, as MLflow writes it (a decimal string).
    pub version: String,
    /// Creation time, milliseconds since the Unix epoch.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub creation_timestamp: Option<i64>,
    /// Last update, milliseconds since the Unix epoch.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub last_updated_timestamp: Option<i64>,
    /// The legacy stage (`None`, `Staging`, `Production`, `Archived`).
    #[serde(default)]
    pub current_stage: Option<String>,
    /// The description.
    #[serde(default)]
    pub description: Option<String>,
    /// Where the model's artifacts are.
    #[serde(default)]
    pub source: Option<String>,
    /// The run that produced the model, if any.
    #[serde(default)]
    pub run_id: Option<String>,
    /// `READY`, `PENDING_REGISTRATION` or `FAILED_REGISTRATION`.
    #[serde(default)]
    pub status: Option<String>,
    /// The tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// The aliases pointing at this version (MLflow fills this on single
    /// reads, not in search results).
    #[serde(default)]
    pub aliases: Vec<String>,
}

impl ModelVersion {
    /// The value of a tag.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|t| t.key == key)
            .map(|t| t.value.as_str())
    }

    /// The version number.
    pub fn number(&self) -> Option<u64> {
        self.version.parse().ok()
    }

    /// Whether MLflow finished registering it (`READY`, or no status at all).
    pub fn is_ready(&self) -> bool {
        self.status.as_deref().is_none_or(|s| s == "READY")
    }
}

/// One alias of a registered model.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct AliasEntry {
    /// The alias.
    pub alias: String,
    /// The version it points at.
    pub version: String,
}

/// A registered model, as MLflow returns it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[non_exhaustive]
pub struct RegisteredModel {
    /// The name.
    pub name: String,
    /// The aliases and the versions they point at.
    #[serde(default)]
    pub aliases: Vec<AliasEntry>,
    /// The latest version per stage.
    #[serde(default)]
    pub latest_versions: Vec<ModelVersion>,
    /// The tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
}

/// One page of a model-version search.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[non_exhaustive]
pub struct ModelVersionPage {
    /// The versions on this page (MLflow omits the field when there are none).
    #[serde(default)]
    pub model_versions: Vec<ModelVersion>,
    /// The token for the next page; absent on the last page.
    #[serde(default)]
    pub next_page_token: Option<String>,
}

fn lenient_i64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum NumOrString {
        Num(i64),
        Str(String),
    }
    Ok(match Option::<NumOrString>::deserialize(d)? {
        Some(NumOrString::Num(n)) => Some(n),
        Some(NumOrString::Str(s)) => s.parse().ok(),
        None => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_versions_parse_leniently() {
        let v: ModelVersion = serde_json::from_str(
            r#"{"name":"m","version":"3","creation_timestamp":"1700000000000","status":"READY","tags":[{"key":"k","value":"v"}],"extra":1}"#,
        )
        .unwrap();
        assert_eq!(v.creation_timestamp, Some(1_700_000_000_000));
        assert_eq!(v.tag("k"), Some("v"));
        assert_eq!(v.number(), Some(3));
        assert!(v.is_ready());
    }
}
