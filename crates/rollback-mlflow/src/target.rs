//! A registered model and its alias as a [`Target`].

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use rollback_core::{
    Capabilities, Error, HistoryEntry, Mark, Result, RevisionId, RevisionRef, Target, TargetId,
};

use crate::config::{canonical_stage, validate_alias};
use crate::revision::{health_of, health_tags, tags};
use crate::{
    AliasMove, MlflowClient, MlflowConfig, MlflowError, MlflowRollbacker, ModelVersion,
    ModelVersionRevision, Pointer,
};

/// The most pages a history read follows before giving up (a guard against a
/// server that keeps answering with a next page).
const MAX_PAGES: usize = 100_000;

/// What a target and its rollbacker share.
#[derive(Debug)]
pub(crate) struct Model {
    pub(crate) client: MlflowClient,
    pub(crate) name: String,
    pub(crate) pointer: Pointer,
    pub(crate) page_size: u32,
    pub(crate) id: TargetId,
}

impl Model {
    /// The version the pointer points at, or `None` when the alias is unset
    /// (or the stage empty). An unknown model is an error.
    pub(crate) async fn pointed(&self) -> Result<Option<ModelVersion>, MlflowError> {
        match &self.pointer {
            Pointer::Alias(alias) => match self
                .client
                .get_model_version_by_alias(&self.name, alias)
                .await
            {
                Ok(v) => Ok(Some(v)),
                Err(MlflowError::AliasNotSet { .. }) => Ok(None),
                Err(e) => Err(e),
            },
            Pointer::Stage(stage) => {
                let latest = self
                    .client
                    .get_latest_versions(&self.name, &[stage.as_str()])
                    .await?;
                Ok(latest
                    .into_iter()
                    .filter(|v| v.current_stage.as_deref() == Some(stage.as_str()))
                    .max_by_key(|v| v.number()))
            }
        }
    }

    pub(crate) async fn pointed_or_not_found(&self) -> Result<ModelVersion, MlflowError> {
        self.pointed().await?.ok_or_else(|| match &self.pointer {
            Pointer::Alias(alias) => MlflowError::AliasNotSet {
                model: self.name.clone(),
                alias: alias.clone(),
            },
            Pointer::Stage(stage) => MlflowError::StageEmpty {
                model: self.name.clone(),
                stage: stage.clone(),
            },
        })
    }

    /// Every version, highest first, following the search pages.
    pub(crate) async fn versions(&self) -> Result<Vec<ModelVersion>, MlflowError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        let mut seen_tokens = BTreeSet::new();
        for _ in 0..MAX_PAGES {
            let page = self
                .client
                .search_model_versions(&self.name, self.page_size, token.as_deref())
                .await?;
            out.extend(page.model_versions);
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(next) if !seen_tokens.insert(next.clone()) => {
                    return Err(MlflowError::Decode {
                        operation: format!(
                            "listing the versions of registered model {:?}",
                            self.name
                        ),
                        url: self.client.base_url().to_string(),
                        reason: format!("the server repeated the page token {next:?}"),
                    });
                }
                Some(next) => token = Some(next),
                None => {
                    out.sort_by_key(|v| std::cmp::Reverse(v.number()));
                    out.dedup_by(|a, b| a.version == b.version);
                    return Ok(out);
                }
            }
        }
        Err(MlflowError::Decode {
            operation: format!("listing the versions of registered model {:?}", self.name),
            url: self.client.base_url().to_string(),
            reason: format!("more than {MAX_PAGES} pages"),
        })
    }

    pub(crate) fn context(&self, e: MlflowError) -> Error {
        e.into_core(Some(&format!("target {}", self.id)))
    }
}

/// A registered model plus the alias that says which version serves:
/// `models:/recommender@champion`.
///
/// - `current()` is the version the alias points at; an unset alias or an
///   unknown model is `NotFound`.
/// - `history()` is every version that finished registering (`READY`),
///   highest version first, read page by page; its health comes from the
///   `rollback.health` tag.
/// - `mark()` keeps the verdict in that tag (with its reason and time).
///
/// ```no_run
/// # async fn run() -> rollback_core::Result<()> {
/// use rollback_core::Target;
/// use rollback_mlflow::{MlflowClient, MlflowTarget};
///
/// let client = MlflowClient::from_env()?; // MLFLOW_TRACKING_URI and its credentials
/// let target = MlflowTarget::builder(client).model("recommender").alias("champion").build()?;
/// // or, from a configuration: MlflowTarget::connect(&config, None).await?
/// println!("{} serves {}", target.id(), target.current().await?.label());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct MlflowTarget {
    pub(crate) model: Arc<Model>,
}

/// Builds an [`MlflowTarget`].
#[derive(Debug)]
#[must_use]
pub struct MlflowTargetBuilder {
    client: MlflowClient,
    model: Option<String>,
    alias: Option<String>,
    stage: Option<String>,
    page_size: u32,
    id: Option<TargetId>,
}

impl MlflowTarget {
    /// Start building a target that talks through `client`.
    pub fn builder(client: MlflowClient) -> MlflowTargetBuilder {
        MlflowTargetBuilder {
            client,
            model: None,
            alias: None,
            stage: None,
            page_size: 100,
            id: None,
        }
    }

    /// The target a configuration names, talking through `client` when the
    /// caller has one (used as it is: the configuration's server,
    /// credentials, timeouts and retry then do not apply), else through a
    /// client built from the configuration, with MLflow's environment
    /// variables for the server and credentials it leaves out
    /// ([`MlflowConfig::client`]). It does not contact the server.
    ///
    /// ```no_run
    /// # async fn run() -> rollback_core::Result<()> {
    /// use rollback_mlflow::{MlflowConfig, MlflowTarget};
    /// let target = MlflowTarget::connect(&MlflowConfig::alias("recommender", "champion"), None).await?;
    /// let rollbacker = target.rollbacker();
    /// # let _ = rollbacker; Ok(()) }
    /// ```
    pub async fn connect(config: &MlflowConfig, client: Option<MlflowClient>) -> Result<Self> {
        let pointer = config.pointer()?;
        let client = match client {
            Some(client) => client,
            None => config.client()?,
        };
        let mut b = Self::builder(client)
            .model(config.model.clone())
            .page_size(config.page_size);
        match pointer {
            Pointer::Alias(a) => b = b.alias(a),
            Pointer::Stage(s) => {
                #[allow(deprecated)]
                {
                    b = b.stage(s);
                }
            }
        }
        b.build()
    }

    /// The registered model's name.
    pub fn model_name(&self) -> &str {
        &self.model.name
    }

    /// The alias or stage this target follows.
    pub fn pointer(&self) -> &Pointer {
        &self.model.pointer
    }

    /// The client this target talks through.
    pub fn client(&self) -> &MlflowClient {
        &self.model.client
    }

    /// A rollbacker for this target (with no post-rollback hooks yet).
    pub fn rollbacker(&self) -> MlflowRollbacker {
        MlflowRollbacker::new(self)
    }

    /// The moves of this target's alias recorded by rollbacks, oldest first:
    /// the alias history MLflow itself does not keep.
    pub async fn alias_moves(&self) -> Result<Vec<AliasMove>> {
        let prefix = format!(
            "{}{}.",
            tags::MOVE_PREFIX,
            self.model.pointer.tag_component()
        );
        let versions = self
            .model
            .versions()
            .await
            .map_err(|e| self.model.context(e))?;
        let mut moves = std::collections::BTreeMap::new();
        for v in &versions {
            for tag in v.tags.iter().filter(|t| t.key.starts_with(&prefix)) {
                match serde_json::from_str::<AliasMove>(&tag.value) {
                    Ok(m) if self.model.pointer.matches(&m) && m.model == self.model.name => {
                        moves.insert((m.at_ms, tag.key.clone()), m);
                    }
                    // Another alias whose name starts the same.
                    Ok(_) => {}
                    Err(e) => tracing::warn!(
                        target = %self.model.id, version = %v.version, key = %tag.key, error = %e,
                        "ignoring a move tag that is not an alias move record"
                    ),
                }
            }
        }
        Ok(moves.into_values().collect())
    }
}

impl MlflowTargetBuilder {
    /// The registered model's name (required).
    pub fn model(mut self, name: impl Into<String>) -> Self {
        self.model = Some(name.into());
        self
    }

    /// The alias that serves, such as `champion` (this or [`Self::stage`] is required).
    pub fn alias(mut self, alias: impl Into<String>) -> Self {
        self.alias = Some(alias.into());
        self
    }

    /// Legacy: the stage that serves (`Production`). A rollback transitions
    /// the version into it with `archive_existing_versions`.
    #[deprecated(note = "MLflow deprecated model stages in favour of aliases; use `alias`")]
    pub fn stage(mut self, stage: impl Into<String>) -> Self {
        self.stage = Some(stage.into());
        self
    }

    /// Versions per page when reading the history (1 to 10000; default 100).
    pub fn page_size(mut self, n: u32) -> Self {
        self.page_size = n;
        self
    }

    /// Override the target id (default `mlflow:<model>@<alias>`, or
    /// `mlflow:<model>/stage/<stage>`).
    pub fn id(mut self, id: impl Into<TargetId>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Check and build.
    pub fn build(self) -> Result<MlflowTarget> {
        let name = self.model.filter(|m| !m.trim().is_empty()).ok_or_else(|| {
            Error::invalid(
                "an MLflow target needs the registered model's name: call .model(\"recommender\")",
            )
        })?;
        let pointer = match (self.alias, self.stage) {
            (Some(a), None) => {
                validate_alias(&a)?;
                Pointer::Alias(a)
            }
            (None, Some(s)) => {
                tracing::warn!(model = %name, stage = %s, "MLflow deprecated model stages; consider moving this registry to aliases");
                Pointer::Stage(canonical_stage(&s)?.to_owned())
            }
            (Some(_), Some(_)) => {
                return Err(Error::invalid(format!(
                    "MLflow target {name:?}: set an alias or a stage, not both"
                )));
            }
            (None, None) => {
                return Err(Error::invalid(format!(
                    "MLflow target {name:?}: say which alias serves: call .alias(\"champion\")"
                )));
            }
        };
        if !(1..=10_000).contains(&self.page_size) {
            return Err(Error::invalid(format!(
                "MLflow target {name:?}: page size {} is out of range 1 to 10000",
                self.page_size
            )));
        }
        let id = self.id.unwrap_or_else(|| match &pointer {
            Pointer::Alias(a) => TargetId::new(format!("mlflow:{name}@{a}")),
            Pointer::Stage(s) => TargetId::new(format!("mlflow:{name}/stage/{s}")),
        });
        Ok(MlflowTarget {
            model: Arc::new(Model {
                client: self.client,
                name,
                pointer,
                page_size: self.page_size,
                id,
            }),
        })
    }
}

#[async_trait]
impl Target for MlflowTarget {
    fn id(&self) -> &TargetId {
        &self.model.id
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE.with_mark(true)
    }

    async fn current(&self) -> Result<RevisionRef> {
        let v = self
            .model
            .pointed_or_not_found()
            .await
            .map_err(|e| self.model.context(e))?;
        Ok(Arc::new(ModelVersionRevision::new(v)))
    }

    async fn history(&self) -> Result<Vec<HistoryEntry>> {
        let current = self
            .model
            .pointed_or_not_found()
            .await
            .map_err(|e| self.model.context(e))?;
        let versions = self
            .model
            .versions()
            .await
            .map_err(|e| self.model.context(e))?;
        let mut entries: Vec<HistoryEntry> = versions
            .into_iter()
            .filter(|v| v.is_ready() || v.version == current.version)
            .map(|v| {
                let health = health_of(&v);
                HistoryEntry::new(Arc::new(ModelVersionRevision::new(v)), health)
            })
            .collect();
        if !entries
            .iter()
            .any(|e| e.revision.id().as_str() == current.version)
        {
            // Registered between the alias read and the search: keep the
            // contract (the history holds the current revision).
            let health = health_of(&current);
            let at = entries.partition_point(|e| {
                e.revision.id().as_str().parse::<u64>().ok() > current.number()
            });
            entries.insert(
                at,
                HistoryEntry::new(Arc::new(ModelVersionRevision::new(current)), health),
            );
        }
        Ok(entries)
    }

    async fn mark(&self, mark: &Mark) -> Result<()> {
        let version = version_number(&self.model, &mark.revision)?;
        let client = &self.model.client;
        let name = &self.model.name;
        let ctx = |e| self.model.context(e);
        match health_tags(mark.health, &mark.reason, mark.at) {
            None => {
                for key in [tags::HEALTH, tags::HEALTH_REASON, tags::HEALTH_AT] {
                    client
                        .delete_model_version_tag(name, &version, key)
                        .await
                        .map_err(ctx)?;
                }
            }
            Some(health_tags) => {
                for (key, value) in health_tags {
                    client
                        .set_model_version_tag(name, &version, key, &value)
                        .await
                        .map_err(ctx)?;
                }
            }
        }
        tracing::info!(target = %self.model.id, revision = %mark.revision, health = ?mark.health, "health kept in MLflow tags");
        Ok(())
    }
}

/// The version number a revision id names; anything else cannot be a version
/// of the model, so it is `NotFound`.
pub(crate) fn version_number(model: &Model, revision: &RevisionId) -> Result<String> {
    match revision.as_str().parse::<u64>() {
        Ok(n) => Ok(n.to_string()),
        Err(_) => Err(Error::not_found(format!(
            "target {}: revision {revision:?} is not a version of registered model {:?} (MLflow versions are numbers); list the history to see them",
            model.id, model.name
        ))),
    }
}

fn _dyn_ok(_: Arc<dyn Target>) {}
