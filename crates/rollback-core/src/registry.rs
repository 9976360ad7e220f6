//! From a target URL to its backend: each backend registers its scheme
//! (`k8s`, `codedeploy`, `mlflow`, `memory`) and each probe its kind
//! (`prometheus`, `kubernetes`, `scripted`), as object_store's `parse_url`
//! and opendal's service registry do. The watch file and the `rollback`
//! command resolve every URL through one [`Registry`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> rollback_core::Result<()> {
//! use rollback_core::registry::{Registry, TargetUrl};
//! let registry = Registry::with_memory();
//! let url = TargetUrl::parse("memory://shop/checkout")?;
//! let options = serde_json::json!({"revisions": ["v1", "v2"]});
//! let backend = registry.connect(&url, options.as_object().unwrap()).await?;
//! assert_eq!(backend.target.current().await?.id().as_str(), "v2");
//! let e = registry.connect(&TargetUrl::parse("nomad://jobs/web")?, &Default::default()).await.unwrap_err();
//! assert!(e.to_string().contains("this build knows memory"), "{e}");
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::de::DeserializeOwned;

use crate::{Error, HealthProbe, Result, Rollbacker, Target};

mod builtin;

pub use builtin::{Memory, Scripted};

/// Options of a target or a probe, as the watch file holds them (YAML, JSON
/// and TOML all read into this).
pub type Options = serde_json::Map<String, serde_json::Value>;

/// A target's URL: `SCHEME://REST`, such as `k8s://shop/checkout`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TargetUrl {
    raw: String,
    scheme_len: usize,
}

impl TargetUrl {
    /// Parse `SCHEME://REST`: a scheme of lowercase letters, digits, `+`,
    /// `-` or `.`, starting with a letter, and something after `://`.
    pub fn parse(raw: &str) -> Result<Self> {
        let raw = raw.trim();
        let bad = |why: &str| {
            Error::invalid(format!(
                "target URL {raw:?} {why}; write it like k8s://NAMESPACE/DEPLOYMENT, k8s://NAMESPACE/statefulset/NAME, codedeploy://APPLICATION/GROUP, mlflow://MODEL@ALIAS, git+ssh://HOST/REPO.git#BRANCH:PATH or memory://NAME"
            ))
        };
        let Some((scheme, rest)) = raw.split_once("://") else {
            return Err(bad("has no scheme"));
        };
        let valid = scheme
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase())
            && scheme
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
        if !valid {
            return Err(bad("has an invalid scheme"));
        }
        if rest.is_empty() {
            return Err(bad("names nothing after ://"));
        }
        if rest.chars().any(char::is_control) {
            return Err(bad("holds a control character"));
        }
        Ok(TargetUrl {
            raw: raw.to_owned(),
            scheme_len: scheme.len(),
        })
    }

    /// The scheme: `k8s`.
    pub fn scheme(&self) -> &str {
        &self.raw[..self.scheme_len]
    }

    /// What follows `://`: `shop/checkout`.
    pub fn rest(&self) -> &str {
        &self.raw[self.scheme_len + 3..]
    }

    /// The whole URL.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The two parts of [`TargetUrl::rest`] around `sep` (`shop/checkout`
    /// around `/`), both non-empty; `form` (`k8s://NAMESPACE/DEPLOYMENT`)
    /// says what was expected.
    pub fn two_parts(&self, sep: char, form: &str) -> Result<(&str, &str)> {
        match self.rest().split_once(sep) {
            Some((a, b)) if !a.is_empty() && !b.is_empty() && !b.contains(sep) => Ok((a, b)),
            _ => Err(self.error(format!("write it like {form}"))),
        }
    }

    /// An error about this URL: its message names the URL.
    pub fn error(&self, why: impl fmt::Display) -> Error {
        Error::invalid(format!("target {}: {why}", self.raw))
    }
}

impl fmt::Display for TargetUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// Read `options` into a backend's config type; an error names the field.
pub fn options<T: DeserializeOwned>(options: &Options) -> Result<T> {
    let value = serde_json::Value::Object(options.clone());
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            Error::invalid(e.inner().to_string())
        } else {
            Error::invalid(format!("`{path}`: {}", e.inner()))
        }
    })
}

/// Read `options` into a backend's config type with the fields the URL
/// gives (`namespace` and `deployment` of `k8s://shop/checkout`); the
/// options may not give them again.
pub fn config_from<T: DeserializeOwned>(
    url: &TargetUrl,
    from_url: &[(&str, &str)],
    options: &Options,
) -> Result<T> {
    let mut all = options.clone();
    for (key, value) in from_url {
        if all.contains_key(*key) {
            return Err(Error::invalid(format!(
                "`{key}` comes from the URL {url}; remove it from the options"
            )));
        }
        all.insert(
            (*key).to_owned(),
            serde_json::Value::String((*value).to_owned()),
        );
    }
    self::options(&all)
}

/// A target and its rollbacker, as a backend builds them from a URL.
#[derive(Debug, Clone)]
pub struct Backend {
    /// The target.
    pub target: Arc<dyn Target>,
    /// Its rollbacker.
    pub rollbacker: Arc<dyn Rollbacker>,
}

impl Backend {
    /// A target and its rollbacker.
    pub fn new(target: impl Target, rollbacker: impl Rollbacker) -> Self {
        Backend {
            target: Arc::new(target),
            rollbacker: Arc::new(rollbacker),
        }
    }
}

/// The future a [`scheme`]'s connect function returns.
pub type Connecting = std::pin::Pin<Box<dyn Future<Output = Result<Backend>> + Send>>;

/// A scheme made of two functions: `config` turns a URL and its options
/// into the backend's config (checked without connecting), `connect` turns
/// a config into the target and its rollbacker.
///
/// ```
/// use rollback_core::registry::{Backend, scheme};
/// let demo = scheme("demo", "demo://NAME", |url, _| Ok(url.rest().to_owned()), |name| {
///     Box::pin(async move {
///         let t = rollback_core::memory::InMemoryTarget::new(name, [rollback_core::RevisionRecord::new("v1")])?;
///         Ok(Backend::new(t.clone(), rollback_core::memory::InMemoryRollbacker::new(&t)))
///     })
/// });
/// let registry = rollback_core::registry::Registry::new().scheme(demo);
/// assert_eq!(registry.schemes(), ["demo"]);
/// ```
pub fn scheme<C: Send + 'static>(
    name: &'static str,
    form: &'static str,
    config: fn(&TargetUrl, &Options) -> Result<C>,
    connect: fn(C) -> Connecting,
) -> impl TargetScheme {
    FnScheme {
        name,
        form,
        config,
        connect,
    }
}

struct FnScheme<C> {
    name: &'static str,
    form: &'static str,
    config: fn(&TargetUrl, &Options) -> Result<C>,
    connect: fn(C) -> Connecting,
}

impl<C> fmt::Debug for FnScheme<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scheme")
            .field("scheme", &self.name)
            .finish()
    }
}

#[async_trait]
impl<C: Send + 'static> TargetScheme for FnScheme<C> {
    fn scheme(&self) -> &'static str {
        self.name
    }

    fn form(&self) -> &'static str {
        self.form
    }

    fn check(&self, url: &TargetUrl, options: &Options) -> Result<()> {
        (self.config)(url, options).map(drop)
    }

    async fn connect(&self, url: &TargetUrl, options: &Options) -> Result<Backend> {
        (self.connect)((self.config)(url, options)?).await
    }
}

/// A backend's URL scheme.
#[async_trait]
pub trait TargetScheme: fmt::Debug + Send + Sync + 'static {
    /// The scheme it serves: `k8s`.
    fn scheme(&self) -> &'static str;

    /// The URL's form, for messages: `k8s://NAMESPACE/DEPLOYMENT`.
    fn form(&self) -> &'static str;

    /// Check the URL and options without connecting to anything (for
    /// `rollback check`).
    fn check(&self, url: &TargetUrl, options: &Options) -> Result<()>;

    /// Build the target and its rollbacker, with credentials found the way
    /// the backend's ecosystem finds them.
    async fn connect(&self, url: &TargetUrl, options: &Options) -> Result<Backend>;
}

/// What a probe is built for.
#[derive(Debug, Clone)]
pub struct ProbeFor<'a> {
    /// The probe's name, as the policy names it.
    pub name: &'a str,
    /// Its options.
    pub options: &'a Options,
    /// The target it measures, and its URL and options (a Kubernetes probe
    /// watches the Deployment the URL names).
    pub url: &'a TargetUrl,
    /// The target's options.
    pub target_options: &'a Options,
}

/// A kind of probe: `prometheus`, `kubernetes`, `scripted`.
#[async_trait]
pub trait ProbeKind: fmt::Debug + Send + Sync + 'static {
    /// The kind: the key that names it in the watch file.
    fn kind(&self) -> &'static str;

    /// Check the options without connecting to anything.
    fn check(&self, options: &Options) -> Result<()>;

    /// Build the probe for one target.
    async fn build(&self, probe: ProbeFor<'_>) -> Result<Arc<dyn HealthProbe>>;
}

/// The schemes and probe kinds one build knows.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    schemes: BTreeMap<&'static str, Arc<dyn TargetScheme>>,
    probes: BTreeMap<&'static str, Arc<dyn ProbeKind>>,
}

impl Registry {
    /// Nothing registered.
    pub fn new() -> Self {
        Self::default()
    }

    /// `memory://` targets and `scripted` probes, for demos and drills.
    pub fn with_memory() -> Self {
        Self::new().scheme(Memory).probe(Scripted::default())
    }

    /// Register a scheme (replacing one of the same name).
    #[must_use]
    pub fn scheme(mut self, scheme: impl TargetScheme) -> Self {
        self.schemes.insert(scheme.scheme(), Arc::new(scheme));
        self
    }

    /// Register a probe kind (replacing one of the same name).
    #[must_use]
    pub fn probe(mut self, kind: impl ProbeKind) -> Self {
        self.probes.insert(kind.kind(), Arc::new(kind));
        self
    }

    /// The schemes this registry knows, sorted.
    pub fn schemes(&self) -> Vec<&'static str> {
        self.schemes.keys().copied().collect()
    }

    /// The probe kinds this registry knows, sorted.
    pub fn probe_kinds(&self) -> Vec<&'static str> {
        self.probes.keys().copied().collect()
    }

    fn scheme_of(&self, url: &TargetUrl) -> Result<&Arc<dyn TargetScheme>> {
        self.schemes.get(url.scheme()).ok_or_else(|| {
            url.error(format!(
                "unknown scheme {:?}; this build knows {}",
                url.scheme(),
                self.schemes
                    .values()
                    .map(|s| format!("{} ({})", s.scheme(), s.form()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }

    /// The probe kind `kind`, or an error listing the kinds this build knows.
    pub fn probe_kind(&self, kind: &str) -> Result<&Arc<dyn ProbeKind>> {
        self.probes.get(kind).ok_or_else(|| {
            Error::invalid(format!(
                "unknown probe kind {kind:?}; this build knows {}",
                self.probe_kinds().join(", ")
            ))
        })
    }

    /// Check a target's URL and options without connecting.
    pub fn check(&self, url: &TargetUrl, options: &Options) -> Result<()> {
        self.scheme_of(url)?
            .check(url, options)
            .map_err(|e| url.error(e.message()))
    }

    /// Build the target and rollbacker a URL names.
    pub async fn connect(&self, url: &TargetUrl, options: &Options) -> Result<Backend> {
        let scheme = self.scheme_of(url)?;
        scheme
            .check(url, options)
            .map_err(|e| url.error(e.message()))?;
        scheme.connect(url, options).await
    }
}

#[cfg(test)]
mod tests;
