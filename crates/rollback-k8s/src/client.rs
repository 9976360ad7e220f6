//! The raw API calls, each mapped onto a core [`Error`] that names the
//! Deployment and says what to do.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use rollback_core::{Error, ErrorKind};
use serde_json::Value;

use crate::error::ApiFailure;

/// The API calls one Deployment needs.
#[derive(Clone)]
pub(crate) struct DeploymentApi {
    pub(crate) namespace: String,
    pub(crate) name: String,
    deployments: Api<DynamicObject>,
    replica_sets: Api<DynamicObject>,
    pods: Api<Pod>,
    namespaces: Api<Namespace>,
}

impl std::fmt::Debug for DeploymentApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeploymentApi")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .finish()
    }
}

impl DeploymentApi {
    pub(crate) fn new(client: kube::Client, namespace: &str, name: &str) -> Self {
        let deploy = ApiResource::erase::<Deployment>(&());
        let rs = ApiResource::erase::<ReplicaSet>(&());
        DeploymentApi {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            deployments: Api::namespaced_with(client.clone(), namespace, &deploy),
            replica_sets: Api::namespaced_with(client.clone(), namespace, &rs),
            pods: Api::namespaced(client.clone(), namespace),
            namespaces: Api::all(client),
        }
    }

    fn what(&self) -> String {
        format!("Deployment {}/{}", self.namespace, self.name)
    }

    /// Word of the Deployment's changes ([`deployment_changes`]).
    pub(crate) fn changes(&self) -> rollback_core::changes::Changes {
        deployment_changes(self.deployments.clone(), &self.name)
    }

    /// The Deployment, raw. A 404 says whether the namespace or the Deployment is missing.
    pub(crate) async fn deployment(&self) -> Result<DynamicObject, Error> {
        match self
            .deployments
            .get(&self.name)
            .await
            .map_err(ApiFailure::from)
        {
            Ok(d) => Ok(d),
            Err(e) if e.code() == Some(404) => Err(self.not_found().await),
            Err(e) => Err(e.into_error(
                &format!("reading {}", self.what()),
                "get",
                "deployments",
                &self.namespace,
            )),
        }
    }

    async fn not_found(&self) -> Error {
        match self
            .namespaces
            .get(&self.namespace)
            .await
            .map_err(ApiFailure::from)
        {
            Err(e) if e.code() == Some(404) => Error::not_found(format!(
                "namespace {} does not exist (looking for Deployment {}); check the namespace name and the kubeconfig's cluster",
                self.namespace, self.name
            )),
            _ => Error::not_found(format!(
                "Deployment {} not found in namespace {}; check the name (`kubectl get deployments -n {}`) and the kubeconfig's cluster",
                self.name, self.namespace, self.namespace
            )),
        }
    }

    /// The ReplicaSets the Deployment controls: listed by its selector, kept
    /// when their controller ownerReference has the Deployment's uid.
    pub(crate) async fn owned_replica_sets(
        &self,
        deployment: &DynamicObject,
    ) -> Result<Vec<DynamicObject>, Error> {
        let selector: LabelSelector = deployment
            .data
            .pointer("/spec/selector")
            .cloned()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| {
                Error::invalid(format!(
                    "{} has an unreadable spec.selector: {e}",
                    self.what()
                ))
            })?
            .unwrap_or_default();
        let selector = selector_string(&selector);
        let uid = deployment.metadata.uid.clone().unwrap_or_default();
        let list = self
            .replica_sets
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(ApiFailure::from)
            .map_err(|e| {
                e.into_error(
                    &format!("listing the ReplicaSets of {}", self.what()),
                    "list",
                    "replicasets",
                    &self.namespace,
                )
            })?;
        Ok(list
            .items
            .into_iter()
            .filter(|rs| {
                rs.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.controller == Some(true) && !uid.is_empty() && o.uid == uid)
            })
            .collect())
    }

    /// Apply a JSON patch to the Deployment.
    pub(crate) async fn patch_deployment(
        &self,
        patch: Value,
        dry_run: bool,
    ) -> Result<DynamicObject, Error> {
        let patch: json_patch::Patch = serde_json::from_value(patch).map_err(|e| {
            Error::new(
                ErrorKind::Permanent,
                format!("building the patch of {}: {e}", self.what()),
            )
        })?;
        let params = PatchParams {
            dry_run,
            ..PatchParams::default()
        };
        self.deployments
            .patch(&self.name, &params, &Patch::Json::<()>(patch))
            .await
            .map_err(ApiFailure::from)
            .map_err(|e| {
                e.into_error(
                    &format!("patching {}", self.what()),
                    "patch",
                    "deployments",
                    &self.namespace,
                )
            })
    }

    /// Apply a strategic merge patch to the Deployment (what `kubectl rollout
    /// restart` sends).
    pub(crate) async fn strategic_patch_deployment(
        &self,
        patch: Value,
        dry_run: bool,
    ) -> Result<DynamicObject, Error> {
        let params = PatchParams {
            dry_run,
            ..PatchParams::default()
        };
        self.deployments
            .patch(&self.name, &params, &Patch::Strategic(patch))
            .await
            .map_err(ApiFailure::from)
            .map_err(|e| {
                e.into_error(
                    &format!("patching {}", self.what()),
                    "patch",
                    "deployments",
                    &self.namespace,
                )
            })
    }

    /// The pods matching a label selector.
    pub(crate) async fn pods(&self, selector: &str) -> Result<Vec<Pod>, Error> {
        list_pods(&self.pods, selector, &self.what(), &self.namespace).await
    }
}

/// The pods `selector` selects in `namespace`, those of the workload `what`
/// (`Deployment shop/web`), an error naming it.
pub(crate) async fn list_pods(
    pods: &Api<Pod>,
    selector: &str,
    what: &str,
    namespace: &str,
) -> Result<Vec<Pod>, Error> {
    pods.list(&ListParams::default().labels(selector))
        .await
        .map(|l| l.items)
        .map_err(ApiFailure::from)
        .map_err(|e| {
            e.into_error(
                &format!("listing the pods of {what}"),
                "list",
                "pods",
                namespace,
            )
        })
}

/// A label selector as the API's `labelSelector` parameter (the apimachinery
/// `LabelSelectorAsSelector` string form).
pub(crate) fn selector_string(selector: &LabelSelector) -> String {
    let mut terms = Vec::new();
    for (k, v) in selector.match_labels.iter().flatten() {
        terms.push(format!("{k}={v}"));
    }
    for e in selector.match_expressions.iter().flatten() {
        let mut values = e.values.clone().unwrap_or_default();
        values.sort();
        match e.operator.as_str() {
            "In" => terms.push(format!("{} in ({})", e.key, values.join(","))),
            "NotIn" => terms.push(format!("{} notin ({})", e.key, values.join(","))),
            "Exists" => terms.push(e.key.clone()),
            "DoesNotExist" => terms.push(format!("!{}", e.key)),
            _ => {}
        }
    }
    terms.join(",")
}

/// Word of the Deployment's changes ([`rollback_core::Target::changes`]): a
/// watch of the Deployment (by `metadata.name`) marks the receiver each time
/// its `metadata.generation` (a new template: a deploy or a rollback) or
/// its `status.observedGeneration` (the controller has made the new
/// ReplicaSet, so the new revision can be read) changes, or it is deleted.
/// The watch restarts with backoff after errors (a server without watches
/// leaves the supervisor polling), and stops when the receiver is dropped.
pub(crate) fn deployment_changes(
    deployments: Api<DynamicObject>,
    name: &str,
) -> rollback_core::changes::Changes {
    use futures::StreamExt;
    use kube::runtime::WatchStreamExt;
    use kube::runtime::watcher::{self, Event};

    let (tx, rx) = rollback_core::changes::channel();
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let name = name.to_owned();
    tokio::spawn(async move {
        let mut events = std::pin::pin!(watcher::watcher(deployments, config).default_backoff());
        let generations = |d: &DynamicObject| {
            let observed = d.data["status"]["observedGeneration"].as_i64();
            (d.metadata.generation, observed)
        };
        let mut seen = None;
        loop {
            let event = tokio::select! {
                () = tx.closed() => return,
                event = events.next() => event,
            };
            match event {
                Some(Ok(Event::Apply(d) | Event::InitApply(d))) => {
                    let now = generations(&d);
                    if seen.is_some_and(|s| s != now) {
                        tx.send();
                    }
                    seen = Some(now);
                }
                Some(Ok(Event::Delete(_))) => {
                    seen = None;
                    tx.send();
                }
                Some(Ok(Event::Init | Event::InitDone)) => {}
                Some(Err(e)) => {
                    tracing::debug!(deployment = %name, "watching the Deployment: {e}")
                }
                None => return,
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    #[test]
    fn selector_strings_follow_apimachinery() {
        let s = LabelSelector {
            match_labels: Some([("app".to_owned(), "web".to_owned())].into()),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: Some(vec!["b".into(), "a".into()]),
                },
                LabelSelectorRequirement {
                    key: "canary".into(),
                    operator: "DoesNotExist".into(),
                    values: None,
                },
            ]),
        };
        assert_eq!(selector_string(&s), "app=web,tier in (a,b),!canary");
    }
}
