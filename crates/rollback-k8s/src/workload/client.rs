//! The API calls one StatefulSet or DaemonSet needs, each mapped onto a core
//! [`Error`] that names the object and says what to do.

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use rollback_core::Error;
use serde_json::Value;

use super::WorkloadKind;
use crate::client::selector_string;
use crate::error::ApiFailure;

/// The API calls of one StatefulSet or DaemonSet.
#[derive(Clone)]
pub(crate) struct WorkloadApi {
    pub(crate) kind: WorkloadKind,
    pub(crate) namespace: String,
    pub(crate) name: String,
    client: kube::Client,
    objects: Api<DynamicObject>,
    revisions: Api<DynamicObject>,
}

impl std::fmt::Debug for WorkloadApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadApi")
            .field("kind", &self.kind)
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .finish()
    }
}

fn resource(kind: WorkloadKind) -> ApiResource {
    match kind {
        WorkloadKind::StatefulSet => ApiResource::erase::<StatefulSet>(&()),
        WorkloadKind::DaemonSet => ApiResource::erase::<DaemonSet>(&()),
    }
}

impl WorkloadApi {
    pub(crate) fn new(
        client: kube::Client,
        kind: WorkloadKind,
        namespace: &str,
        name: &str,
    ) -> Self {
        let revisions = ApiResource::erase::<ControllerRevision>(&());
        WorkloadApi {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            objects: Api::namespaced_with(client.clone(), namespace, &resource(kind)),
            revisions: Api::namespaced_with(client.clone(), namespace, &revisions),
            client,
        }
    }

    /// `StatefulSet shop/db`.
    pub(crate) fn what(&self) -> String {
        format!("{} {}/{}", self.kind, self.namespace, self.name)
    }

    /// The object, raw. A 404 says whether the namespace is missing, or the
    /// name belongs to another kind (a Deployment named so: the URL to use).
    pub(crate) async fn object(&self) -> Result<DynamicObject, Error> {
        match self.objects.get(&self.name).await.map_err(ApiFailure::from) {
            Ok(o) => Ok(o),
            Err(e) if e.code() == Some(404) => Err(self.not_found().await),
            Err(e) => Err(e.into_error(
                &format!("reading {}", self.what()),
                "get",
                self.kind.plural(),
                &self.namespace,
            )),
        }
    }

    async fn exists(&self, resource: &ApiResource) -> bool {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.namespace, resource);
        matches!(api.get_opt(&self.name).await, Ok(Some(_)))
    }

    async fn not_found(&self) -> Error {
        let (ns, name, kind) = (&self.namespace, &self.name, self.kind);
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        if let Err(e) = namespaces.get(ns).await.map_err(ApiFailure::from)
            && e.code() == Some(404)
        {
            return Error::not_found(format!(
                "namespace {ns} does not exist (looking for {kind} {name}); check the namespace name and the kubeconfig's cluster"
            ));
        }
        // The name may belong to another kind that rolls back.
        let others = [
            (
                "Deployment",
                ApiResource::erase::<Deployment>(&()),
                format!("k8s://{ns}/{name}"),
            ),
            (
                "StatefulSet",
                resource(WorkloadKind::StatefulSet),
                format!("k8s://{ns}/statefulset/{name}"),
            ),
            (
                "DaemonSet",
                resource(WorkloadKind::DaemonSet),
                format!("k8s://{ns}/daemonset/{name}"),
            ),
        ];
        for (other, res, url) in others {
            if other != kind.kind() && self.exists(&res).await {
                return Error::not_found(format!(
                    "{kind} {name} not found in namespace {ns}, but {other} {ns}/{name} exists: \
                     it is a {other}, not a {kind}; name it {url}"
                ));
            }
        }
        Error::not_found(format!(
            "{kind} {name} not found in namespace {ns}; check the name (`kubectl get {} -n {ns}`) and the kubeconfig's cluster",
            kind.plural()
        ))
    }

    /// The ControllerRevisions the object controls: listed by its selector,
    /// kept when their controller ownerReference has the object's uid
    /// (kubectl's `controlledHistory`).
    pub(crate) async fn owned_revisions(
        &self,
        object: &DynamicObject,
    ) -> Result<Vec<DynamicObject>, Error> {
        let selector: LabelSelector = object
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
        let uid = object.metadata.uid.clone().unwrap_or_default();
        let list = self
            .revisions
            .list(&ListParams::default().labels(&selector_string(&selector)))
            .await
            .map_err(ApiFailure::from)
            .map_err(|e| {
                e.into_error(
                    &format!("listing the ControllerRevisions of {}", self.what()),
                    "list",
                    "controllerrevisions",
                    &self.namespace,
                )
            })?;
        Ok(list
            .items
            .into_iter()
            .filter(|cr| {
                cr.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.controller == Some(true) && !uid.is_empty() && o.uid == uid)
            })
            .collect())
    }

    /// The pods in the object's namespace that `selector` selects.
    pub(crate) async fn pods(&self, selector: &str) -> Result<Vec<Pod>, Error> {
        let pods = Api::<Pod>::namespaced(self.client.clone(), &self.namespace);
        crate::client::list_pods(&pods, selector, &self.what(), &self.namespace).await
    }

    /// Apply a strategic merge patch to the object.
    pub(crate) async fn patch(&self, patch: Value, dry_run: bool) -> Result<DynamicObject, Error> {
        let params = PatchParams {
            dry_run,
            ..PatchParams::default()
        };
        self.objects
            .patch(&self.name, &params, &Patch::Strategic(patch))
            .await
            .map_err(ApiFailure::from)
            .map_err(|e| {
                e.into_error(
                    &format!("patching {}", self.what()),
                    "patch",
                    self.kind.plural(),
                    &self.namespace,
                )
            })
    }
}
