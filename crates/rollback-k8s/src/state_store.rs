//! [`ConfigMapStateStore`]: the engine's state kept in Kubernetes, one
//! ConfigMap per target, so that any replica that takes over a target
//! resumes what the previous one was doing.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use rollback_core::machine::MachineState;
use rollback_core::store::{StateStore, state_from_bytes, state_to_bytes};
use rollback_core::{Error, ErrorKind, Result, TargetId};

use crate::error::ApiFailure;

/// The ConfigMap's key holding the state (the JSON the file store writes).
pub(crate) const STATE_KEY: &str = "state.json";
/// The annotation naming the target, checked on every load.
pub(crate) const TARGET_ANNOTATION: &str = "rollback.dev/target";
/// The label every state ConfigMap carries (`kubectl get cm -l rollback.dev/state`).
pub(crate) const STATE_LABEL: &str = "rollback.dev/state";

/// One ConfigMap per target in one namespace, named `PREFIX-READABLE-HASH`
/// (the id lowercased to what a name may hold, cut to 40 characters, and a
/// 64-bit FNV-1a hash of the whole id), annotated with the target id.
///
/// Every write carries the `resourceVersion` this store last read or wrote
/// for the target (a target it never read is written on what is there), so a stale replica (one that lost its lease but has not
/// noticed yet) cannot overwrite what the new leader saved: its save is a
/// `Conflict` error. The one exception is a write whose answer was lost:
/// when the ConfigMap then holds exactly the bytes this store tried to
/// write, the store takes its resourceVersion and goes on.
///
/// ```no_run
/// # async fn demo(client: kube::Client) -> rollback_core::Result<()> {
/// use std::sync::Arc;
/// use rollback_k8s::ConfigMapStateStore;
/// let store = ConfigMapStateStore::new(client, "rollback", "rollback-state");
/// let engine = rollback_core::Engine::builder().store(Arc::new(store)).build();
/// # let _ = engine; Ok(()) }
/// ```
pub struct ConfigMapStateStore {
    api: Api<ConfigMap>,
    namespace: String,
    prefix: String,
    /// Per ConfigMap name: the resourceVersion last read or written, and
    /// the bytes of a write on it whose answer did not come.
    versions: Mutex<HashMap<String, (String, Option<String>)>>,
}

impl std::fmt::Debug for ConfigMapStateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigMapStateStore")
            .field("namespace", &self.namespace)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl ConfigMapStateStore {
    /// A store of ConfigMaps named `prefix-…` in `namespace`.
    pub fn new(client: kube::Client, namespace: &str, prefix: &str) -> Self {
        ConfigMapStateStore {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            prefix: prefix.trim_end_matches('-').to_owned(),
            versions: Mutex::new(HashMap::new()),
        }
    }

    /// The ConfigMap name of a target.
    pub fn name_of(&self, target: &TargetId) -> String {
        let mut readable = String::new();
        for c in target.as_str().chars() {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() {
                readable.push(c);
            } else if !readable.ends_with('-') {
                readable.push('-');
            }
            if readable.len() >= 40 {
                break;
            }
        }
        let readable = readable.trim_matches('-');
        let hash = fnv1a(target.as_str());
        if readable.is_empty() {
            format!("{}-{hash:016x}", self.prefix)
        } else {
            format!("{}-{readable}-{hash:016x}", self.prefix)
        }
    }

    fn versions(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Option<String>)>> {
        self.versions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn failure(&self, e: kube::Error, attempt: &str, verb: &str) -> Error {
        ApiFailure::from(e).into_error(attempt, verb, "configmaps", &self.namespace)
    }

    fn what(&self, name: &str) -> String {
        format!("the state in ConfigMap {}/{name}", self.namespace)
    }

    /// The target's state in `cm`, checking that it is the target's.
    fn decode(&self, target: &TargetId, name: &str, cm: &ConfigMap) -> Result<MachineState> {
        let what = self.what(name);
        let owner = cm
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(TARGET_ANNOTATION));
        if owner.map(String::as_str) != Some(target.as_str()) {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!(
                    "{what} belongs to {} (annotation {TARGET_ANNOTATION}), not to target {target}; move it away to start the watch afresh",
                    owner.map_or("no target".to_owned(), |o| format!("target {o}"))
                ),
            ));
        }
        let Some(json) = cm.data.as_ref().and_then(|d| d.get(STATE_KEY)) else {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!(
                    "{what} has no key {STATE_KEY}; the engine will not reset it: repair it, or delete the ConfigMap to start the watch afresh"
                ),
            ));
        };
        state_from_bytes(json.as_bytes(), &what)
    }

    fn remember(&self, name: &str, cm: &ConfigMap, attempted: Option<String>) {
        if let Some(rv) = &cm.metadata.resource_version {
            self.versions()
                .insert(name.to_owned(), (rv.clone(), attempted));
        }
    }
}

#[async_trait]
impl StateStore for ConfigMapStateStore {
    async fn load(&self, target: &TargetId) -> Result<Option<MachineState>> {
        let name = self.name_of(target);
        let found = self.api.get_opt(&name).await.map_err(|e| {
            self.failure(
                e,
                &format!(
                    "reading ConfigMap {}/{name} (state of {target})",
                    self.namespace
                ),
                "get",
            )
        })?;
        let Some(cm) = found else {
            self.versions().remove(&name);
            return Ok(None);
        };
        let state = self.decode(target, &name, &cm)?;
        self.remember(&name, &cm, None);
        Ok(Some(state))
    }

    async fn save(&self, state: &MachineState) -> Result<()> {
        let target = &state.watch.target;
        let name = self.name_of(target);
        let bytes = state_to_bytes(state)?;
        let json = String::from_utf8(bytes)
            .map_err(|e| Error::permanent("machine state is not UTF-8").with_source(e))?;
        let attempt = format!(
            "saving the state of {target} in ConfigMap {}/{name}",
            self.namespace
        );
        let known = self.versions().get(&name).cloned();
        let (rv, attempted_before) = match known {
            Some((rv, attempted)) => (Some(rv), attempted),
            None => (None, None),
        };
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(self.namespace.clone()),
                labels: Some(BTreeMap::from([(
                    STATE_LABEL.to_owned(),
                    "true".to_owned(),
                )])),
                annotations: Some(BTreeMap::from([(
                    TARGET_ANNOTATION.to_owned(),
                    target.to_string(),
                )])),
                resource_version: rv.clone(),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(STATE_KEY.to_owned(), json.clone())])),
            ..ConfigMap::default()
        };
        // Remember what is attempted, in case its answer is lost.
        if let Some(rv) = &rv {
            self.versions()
                .insert(name.clone(), (rv.clone(), Some(json.clone())));
        }
        let written = match &rv {
            None => self.api.create(&PostParams::default(), &cm).await,
            Some(_) => self.api.replace(&name, &PostParams::default(), &cm).await,
        };
        match written {
            Ok(cm) => {
                self.remember(&name, &cm, None);
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // Written by someone else since this store last read it, or
                // by this store's own write whose answer was lost: only the
                // latter is ours to go on from.
                let now = self.api.get_opt(&name).await.ok().flatten();
                let holds = now
                    .as_ref()
                    .and_then(|cm| cm.data.as_ref())
                    .and_then(|d| d.get(STATE_KEY))
                    .cloned();
                match now {
                    Some(cm) if holds.as_ref() == Some(&json) => {
                        self.remember(&name, &cm, None);
                        Ok(())
                    }
                    // Never read by this store (the engine always loads
                    // first; a stale replica has): write on what is there.
                    Some(cm) if rv.is_none() => {
                        self.remember(&name, &cm, None);
                        Box::pin(self.save(state)).await
                    }
                    Some(cm) if holds.is_some() && holds == attempted_before => {
                        self.remember(&name, &cm, None);
                        Box::pin(self.save(state)).await
                    }
                    _ => Err(Error::new(
                        ErrorKind::Conflict,
                        format!(
                            "{attempt} failed: another replica wrote it since this one read it (a new leader took the target over); not overwritten"
                        ),
                    )),
                }
            }
            Err(e) => {
                Err(self.failure(e, &attempt, if rv.is_some() { "update" } else { "create" }))
            }
        }
    }
}
