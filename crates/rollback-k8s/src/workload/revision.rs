//! ControllerRevisions as revisions.

use std::collections::BTreeMap;

use kube::api::DynamicObject;
use rollback_core::{Error, Revision, RevisionId, Timestamp};
use serde_json::Value;

use crate::patch::{CHANGE_CAUSE_ANNOTATION, Numbered, revision_template};
use crate::revision::image_attributes;

/// One revision of a StatefulSet or DaemonSet: a ControllerRevision it
/// controls.
///
/// The id is the ControllerRevision's name without the `OWNER-` prefix (the
/// controller names it after the hash of the template it holds), so it
/// stays the same when the controller renumbers the revision on a rollback.
/// Attributes: `revision` (the number), `controllerrevision` (the name),
/// `images` (`container=image`, comma-separated), `image.<container>` for
/// each container and init container, `change-cause` (the
/// `kubernetes.io/change-cause` annotation the controller copies from the
/// object) and `created`.
#[derive(Debug, Clone)]
pub struct K8sControllerRevision {
    id: RevisionId,
    label: String,
    attributes: BTreeMap<String, String>,
    number: i64,
    name: String,
    data: Value,
    template: Value,
}

impl K8sControllerRevision {
    /// The ControllerRevision's `revision`.
    pub fn number(&self) -> i64 {
        self.number
    }
    /// The ControllerRevision's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Its `data`, raw: the strategic merge patch that restores it.
    pub fn data(&self) -> &Value {
        &self.data
    }
    /// The pod template it restores.
    pub fn template(&self) -> &Value {
        &self.template
    }
    /// The container images, `container=image`, comma-separated.
    pub fn images(&self) -> &str {
        self.attributes
            .get("images")
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// Read a ControllerRevision of `owner` (`StatefulSet shop/db`). One
    /// whose data holds no `spec.template` is an error naming it.
    pub(crate) fn from_controller_revision(cr: &DynamicObject, owner: &str) -> Result<Self, Error> {
        let name = cr.metadata.name.clone().unwrap_or_default();
        let ns = cr.metadata.namespace.as_deref().unwrap_or_default();
        let number = cr
            .data
            .get("revision")
            .and_then(Value::as_i64)
            .unwrap_or_default();
        let data = cr.data.get("data").cloned().unwrap_or(Value::Null);
        let template = revision_template(&data).ok_or_else(|| {
            Error::invalid(format!(
                "ControllerRevision {ns}/{name} (revision {number}) of {owner} holds no spec.template in its data, \
                 so it cannot be restored; `kubectl get controllerrevision {name} -n {ns} -o yaml` shows what it holds"
            ))
        })?;
        let owner_name = owner.rsplit('/').next().unwrap_or_default();
        let id = name
            .strip_prefix(&format!("{owner_name}-"))
            .filter(|s| !s.is_empty())
            .unwrap_or(&name)
            .to_owned();
        let mut attributes = image_attributes(&template);
        attributes.insert("revision".into(), number.to_string());
        attributes.insert("controllerrevision".into(), name.clone());
        if let Some(cause) = cr
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(CHANGE_CAUSE_ANNOTATION))
        {
            attributes.insert("change-cause".into(), cause.clone());
        }
        if let Some(t) = &cr.metadata.creation_timestamp {
            attributes.insert(
                "created".into(),
                Timestamp::from_millis(t.0.as_millisecond()).to_string(),
            );
        }
        Ok(K8sControllerRevision {
            id: RevisionId::new(id),
            label: format!("revision {number}"),
            attributes,
            number,
            name,
            data,
            template,
        })
    }
}

impl Numbered for K8sControllerRevision {
    fn number(&self) -> i64 {
        self.number
    }
}

impl Revision for K8sControllerRevision {
    fn id(&self) -> &RevisionId {
        &self.id
    }
    fn label(&self) -> &str {
        &self.label
    }
    /// `None`: a ControllerRevision's creation time is when the revision
    /// first shipped, not when it last became current.
    fn created_at(&self) -> Option<Timestamp> {
        None
    }
    fn attributes(&self) -> &BTreeMap<String, String> {
        &self.attributes
    }
}
