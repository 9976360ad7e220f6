//! ReplicaSets as revisions.

use std::collections::BTreeMap;

use kube::api::DynamicObject;
use rollback_core::{Error, Revision, RevisionId, Timestamp};
use serde_json::Value;

use crate::patch::{
    CHANGE_CAUSE_ANNOTATION, Numbered, POD_TEMPLATE_HASH_LABEL, REVISION_ANNOTATION,
};

/// One revision of a Deployment: a ReplicaSet it owns.
///
/// The id is the ReplicaSet's `pod-template-hash` label (its name suffix),
/// which is derived from the pod template: it stays the same when the
/// deployment controller renumbers the revision on a rollback. Attributes:
/// `revision` (the number), `replicaset`, `images` (`container=image`,
/// comma-separated, in container order), `image.<container>` for each
/// container and init container, `change-cause` (the
/// `kubernetes.io/change-cause` annotation) and `created` (the ReplicaSet's
/// creation time).
///
/// [`Revision::created_at`] is `None`: a ReplicaSet's creation time is when
/// the revision first shipped, not when it last became current, so it does
/// not follow the history order after a rollback.
#[derive(Debug, Clone)]
pub struct K8sRevision {
    id: RevisionId,
    label: String,
    attributes: BTreeMap<String, String>,
    number: i64,
    replica_set: String,
    created: Option<Timestamp>,
    template: Value,
    annotations: BTreeMap<String, String>,
}

impl K8sRevision {
    /// The `deployment.kubernetes.io/revision` number (0 when missing, as kubectl reads it).
    pub fn number(&self) -> i64 {
        self.number
    }
    /// The ReplicaSet's name.
    pub fn replica_set(&self) -> &str {
        &self.replica_set
    }
    /// When the ReplicaSet was created.
    pub fn replica_set_created(&self) -> Option<Timestamp> {
        self.created
    }
    /// The ReplicaSet's pod template, as the server returned it.
    pub fn template(&self) -> &Value {
        &self.template
    }
    /// The ReplicaSet's annotations.
    pub fn annotations(&self) -> &BTreeMap<String, String> {
        &self.annotations
    }
    /// The container images, `container=image`, comma-separated.
    pub fn images(&self) -> &str {
        self.attributes
            .get("images")
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// Read a ReplicaSet. An unparsable revision annotation is an error
    /// naming the ReplicaSet (kubectl silently skips such ReplicaSets, which
    /// can make `undo` pick a different revision than the user thinks).
    pub(crate) fn from_replica_set(rs: &DynamicObject, deployment: &str) -> Result<Self, Error> {
        let name = rs.metadata.name.clone().unwrap_or_default();
        let annotations = rs.metadata.annotations.clone().unwrap_or_default();
        let number = match annotations.get(REVISION_ANNOTATION) {
            None => 0,
            Some(text) => text.trim().parse::<i64>().map_err(|_| {
                Error::invalid(format!(
                    "ReplicaSet {ns}/{name} of Deployment {ns}/{deployment} has an unparsable \
                     {REVISION_ANNOTATION} annotation {text:?}; set it to the revision number \
                     (`kubectl annotate rs {name} -n {ns} --overwrite {REVISION_ANNOTATION}=N`) or delete the ReplicaSet",
                    ns = rs.metadata.namespace.as_deref().unwrap_or_default(),
                ))
            })?,
        };
        let template = rs
            .data
            .pointer("/spec/template")
            .cloned()
            .unwrap_or(Value::Null);
        let hash = template
            .pointer("/metadata/labels")
            .and_then(|l| l.get(POD_TEMPLATE_HASH_LABEL))
            .and_then(Value::as_str)
            .or_else(|| {
                rs.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(POD_TEMPLATE_HASH_LABEL))
                    .map(String::as_str)
            })
            .map(str::to_owned)
            // A ReplicaSet adopted without the label: its name is the next best stable id.
            .unwrap_or_else(|| name.clone());
        let created = rs
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| Timestamp::from_millis(t.0.as_millisecond()));

        let mut attributes = image_attributes(&template);
        attributes.insert("revision".into(), number.to_string());
        attributes.insert("replicaset".into(), name.clone());
        if let Some(cause) = annotations.get(CHANGE_CAUSE_ANNOTATION) {
            attributes.insert("change-cause".into(), cause.clone());
        }
        if let Some(t) = created {
            attributes.insert("created".into(), t.to_string());
        }
        Ok(K8sRevision {
            id: RevisionId::new(hash),
            label: format!("revision {number}"),
            attributes,
            number,
            replica_set: name,
            created,
            template,
            annotations,
        })
    }
}

/// The `images` (`container=image`, comma-separated, in container order)
/// and `image.<container>` attributes of a pod template (containers and
/// init containers).
pub(crate) fn image_attributes(template: &Value) -> BTreeMap<String, String> {
    let mut attributes = BTreeMap::new();
    let mut images = Vec::new();
    for list in ["/spec/initContainers", "/spec/containers"] {
        for c in template
            .pointer(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let cname = c.get("name").and_then(Value::as_str).unwrap_or_default();
            let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
            attributes.insert(format!("image.{cname}"), image.to_owned());
            if list.ends_with("/containers") {
                images.push(format!("{cname}={image}"));
            }
        }
    }
    attributes.insert("images".into(), images.join(","));
    attributes
}

impl Numbered for K8sRevision {
    fn number(&self) -> i64 {
        self.number
    }
}

impl Revision for K8sRevision {
    fn id(&self) -> &RevisionId {
        &self.id
    }
    fn label(&self) -> &str {
        &self.label
    }
    fn created_at(&self) -> Option<Timestamp> {
        None
    }
    fn attributes(&self) -> &BTreeMap<String, String> {
        &self.attributes
    }
}
