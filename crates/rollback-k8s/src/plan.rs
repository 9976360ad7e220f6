//! What one `kubectl rollout undo` will do to a Deployment, decided from one
//! read of it, before anything is sent: [`UndoPlan`], carried out by
//! [`crate::K8sDeployment::undo`].

use std::fmt;

use rollback_core::{Error, Revision};
use serde_json::Value;

use crate::patch::{
    PatchGuards, rollback_annotations, rollback_patch, template_without_hash,
    templates_equal_ignoring_hash,
};
use crate::revision::K8sRevision;
use crate::target::Snapshot;

/// The change an [`UndoPlan`] makes, by kubectl's checks in kubectl's order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum UndoChange {
    /// The Deployment is paused and the handle does not resume it: refused
    /// with kubectl's reason (a client dry run, which kubectl answers before
    /// this check, still reports the revision).
    Paused,
    /// The Deployment's template already matches the revision's: nothing.
    Nothing,
    /// One JSON patch replaces the template and the annotations as kubectl
    /// does, guarded by the resourceVersion read.
    Patch {
        /// The JSON patch (RFC 6902).
        patch: Value,
        /// It also sets `spec.paused` to false.
        resumes: bool,
    },
}

/// One undo of one Deployment to one revision, as decided from a
/// [`Snapshot`]: kubectl's checks in kubectl's order (a paused Deployment
/// is refused, a matching template is left alone), else the patch.
/// `Display` says what it does: `roll back Deployment shop/web to revision 1
/// (pod-template-hash aaa, app=web:1)`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct UndoPlan {
    /// `Deployment shop/web to revision 1 (pod-template-hash aaa, app=web:1)`.
    what: String,
    /// The namespace and the name.
    namespace: String,
    name: String,
    /// The revision restored, as kubectl names it in its skip message.
    number: i64,
    /// Its pod-template hash.
    hash: String,
    pub(crate) change: UndoChange,
}

impl UndoPlan {
    /// The plan for restoring `revision` (one of `snapshot`'s), resuming a
    /// paused Deployment when `resume_paused`.
    pub(crate) fn new(snapshot: &Snapshot, revision: &K8sRevision, resume_paused: bool) -> Self {
        let meta = &snapshot.deployment.metadata;
        let ns = meta.namespace.as_deref().unwrap_or_default();
        let name = meta.name.as_deref().unwrap_or_default();
        let paused = snapshot.paused();
        let template = snapshot
            .deployment
            .data
            .pointer("/spec/template")
            .unwrap_or(&Value::Null);
        let change = if paused && !resume_paused {
            UndoChange::Paused
        } else if templates_equal_ignoring_hash(revision.template(), template) {
            UndoChange::Nothing
        } else {
            let annotations = rollback_annotations(
                &meta.annotations.clone().unwrap_or_default(),
                revision.annotations(),
            );
            let patch = rollback_patch(
                &template_without_hash(revision.template()),
                &annotations,
                &PatchGuards {
                    resource_version: meta.resource_version.as_deref(),
                    resume: paused,
                    has_annotations: meta.annotations.is_some(),
                },
            );
            UndoChange::Patch {
                patch,
                resumes: paused,
            }
        };
        UndoPlan {
            what: format!(
                "Deployment {ns}/{name} to {} (pod-template-hash {}, {})",
                revision.label(),
                revision.id(),
                revision.images()
            ),
            namespace: ns.to_owned(),
            name: name.to_owned(),
            number: revision.number(),
            hash: revision.id().to_string(),
            change,
        }
    }

    /// kubectl's refusal of a paused Deployment, with the way out.
    pub(crate) fn paused(&self) -> Error {
        Error::permanent(format!(
            "you cannot rollback a paused deployment; resume it first with 'kubectl rollout resume deployment/{}' \
             and try again (namespace {}; or build the rollbacker with resume_paused(true))",
            self.name, self.namespace
        ))
    }

    /// `Deployment shop/web to revision 1 (pod-template-hash aaa, app=web:1)`.
    pub(crate) fn what(&self) -> &str {
        &self.what
    }

    /// What kubectl says when the template already matches, with the
    /// revision found: `skipped rollback (current template already matches
    /// revision 3): Deployment shop/web already runs ccc`.
    pub(crate) fn skipped(&self) -> String {
        format!(
            "skipped rollback (current template already matches revision {}): Deployment {}/{} already runs {}",
            self.number, self.namespace, self.name, self.hash
        )
    }

    /// ` and resumed it` for a plan that resumes the Deployment, else empty.
    pub(crate) fn resumed(&self) -> &'static str {
        match self.change {
            UndoChange::Patch { resumes: true, .. } => " and resumed it",
            _ => "",
        }
    }
}

impl fmt::Display for UndoPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.change {
            UndoChange::Paused => write!(f, "refuse to roll back {}: it is paused", self.what),
            UndoChange::Nothing => write!(f, "change nothing: {}", self.skipped()),
            UndoChange::Patch { resumes, .. } => {
                write!(f, "roll back {}", self.what)?;
                if *resumes {
                    f.write_str(" and resume it")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::DynamicObject;
    use serde_json::json;

    fn snapshot(paused: bool, image: &str) -> (Snapshot, K8sRevision) {
        let template = |image: &str, hash: Option<&str>| {
            let mut labels = json!({"app": "web"});
            if let Some(h) = hash {
                labels["pod-template-hash"] = json!(h);
            }
            json!({"metadata": {"labels": labels}, "spec": {"containers": [{"name": "app", "image": image}]}})
        };
        let deployment: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "uid": "u", "resourceVersion": "7",
                         "annotations": {"deployment.kubernetes.io/revision": "2"}},
            "spec": {"paused": paused, "template": template(image, None)},
        }))
        .unwrap();
        let rs: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web-aaa", "namespace": "shop",
                         "annotations": {"deployment.kubernetes.io/revision": "1", "kubernetes.io/change-cause": "v1"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "u", "controller": true}]},
            "spec": {"template": template("web:1", Some("aaa"))},
        }))
        .unwrap();
        let revision = K8sRevision::from_replica_set(&rs, "web").unwrap();
        (Snapshot::new(deployment, &[rs]).unwrap(), revision)
    }

    #[test]
    fn a_plan_patches_skips_or_refuses_as_kubectl_does_and_says_so() {
        let (s, r) = snapshot(false, "web:2");
        let plan = UndoPlan::new(&s, &r, false);
        assert_eq!(
            plan.to_string(),
            "roll back Deployment shop/web to revision 1 (pod-template-hash aaa, app=web:1)"
        );
        let UndoChange::Patch { patch, resumes } = &plan.change else {
            panic!("{plan:?}")
        };
        assert!(!resumes);
        assert_eq!(patch[0]["value"], json!("7"), "the resourceVersion read");
        assert_eq!(
            patch[2]["value"],
            json!({"deployment.kubernetes.io/revision": "2", "kubernetes.io/change-cause": "v1"})
        );
        assert_eq!(plan.resumed(), "");

        let (s, r) = snapshot(false, "web:1");
        let plan = UndoPlan::new(&s, &r, false);
        assert_eq!(plan.change, UndoChange::Nothing);
        assert_eq!(
            plan.to_string(),
            "change nothing: skipped rollback (current template already matches revision 1): Deployment shop/web already runs aaa"
        );

        // Paused before matching, as kubectl checks.
        for image in ["web:1", "web:2"] {
            let (s, r) = snapshot(true, image);
            let plan = UndoPlan::new(&s, &r, false);
            assert_eq!(plan.change, UndoChange::Paused);
            assert_eq!(
                plan.to_string(),
                "refuse to roll back Deployment shop/web to revision 1 (pod-template-hash aaa, app=web:1): it is paused"
            );
            assert!(
                plan.paused().message().starts_with(
                    "you cannot rollback a paused deployment; resume it first with 'kubectl rollout resume deployment/web'"
                ),
                "{}",
                plan.paused()
            );
        }
        let (s, r) = snapshot(true, "web:2");
        let plan = UndoPlan::new(&s, &r, true);
        assert!(plan.to_string().ends_with(" and resume it"), "{plan}");
        assert_eq!(plan.resumed(), " and resumed it");
    }
}
