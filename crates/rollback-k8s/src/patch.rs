//! What `kubectl rollout undo` computes, as pure functions over JSON
//! (kubectl's `polymorphichelpers/rollback.go`): which ReplicaSet a revision
//! number means, whether a template already matches, which annotations the
//! Deployment gets, and the JSON patch that restores a revision; and what
//! `kubectl rollout restart` sends (`polymorphichelpers/objectrestarter.go`);
//! and for StatefulSets and DaemonSets, what their ControllerRevisions hold
//! and the strategic merge patch that restores one.
//!
//! Templates stay raw JSON so that fields this crate's `k8s-openapi` does not
//! know survive the copy from the ReplicaSet into the Deployment.

use std::collections::BTreeMap;

use rollback_core::Timestamp;
use serde_json::{Map, Value, json};

/// The label the deployment controller adds to a ReplicaSet's pod template:
/// the hash of the template, which this crate uses as the revision id.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
/// The ReplicaSet annotation that numbers revisions.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// The annotation `kubectl --record` and deploy tools use for the reason of a change.
pub const CHANGE_CAUSE_ANNOTATION: &str = "kubernetes.io/change-cause";

/// The strategic merge patch directive that replaces a map wholesale.
pub const PATCH_DIRECTIVE: &str = "$patch";

/// What a StatefulSet's or DaemonSet's controller stores in a
/// ControllerRevision's `data` for `template`, the strategic merge patch that
/// restores it: `{"spec": {"template": {"$patch": "replace", ...}}}`
/// (kubectl's `getStatefulSetPatch` and `getDaemonSetPatch` compute the same
/// of the current object to decide "skipped rollback").
pub fn controller_revision_data(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(map) = t.as_object_mut() {
        map.insert(PATCH_DIRECTIVE.to_owned(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// The pod template a ControllerRevision's `data` restores: its
/// `spec.template` without the `$patch` directive; `None` when it holds none.
pub fn revision_template(data: &Value) -> Option<Value> {
    let mut t = data.pointer("/spec/template")?.clone();
    t.as_object_mut()?.remove(PATCH_DIRECTIVE);
    Some(t)
}

/// Two pod templates are the same (nil versus empty aside, as Go's semantic
/// equality has it). kubectl compares the bytes of its own encoding of the
/// object with the revision's; this compares what they mean, so a server
/// that writes the same template differently still matches.
pub fn templates_equal(a: &Value, b: &Value) -> bool {
    normalized(a) == normalized(b)
}

/// The strategic merge patch that restores a ControllerRevision: its `data`
/// as kubectl sends it, with `metadata.resourceVersion` as a precondition
/// when given (kubectl sends none and can overwrite a concurrent change).
pub fn revision_patch(data: &Value, resource_version: Option<&str>) -> Value {
    let mut patch = data.clone();
    if let (Some(rv), Some(map)) = (resource_version, patch.as_object_mut()) {
        let meta = map.entry("metadata").or_insert_with(|| json!({}));
        if let Some(meta) = meta.as_object_mut() {
            meta.insert("resourceVersion".to_owned(), json!(rv));
        }
    }
    patch
}

/// The annotations kubectl keeps from the Deployment and never copies from
/// the ReplicaSet (`annotationsToSkip` in kubectl's rollback.go).
pub const ANNOTATIONS_TO_SKIP: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION_ANNOTATION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];

/// The pod template without the `pod-template-hash` label, as kubectl patches
/// it into the Deployment. An emptied label map is dropped, as Go's
/// `omitempty` does.
pub fn template_without_hash(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
        if labels.is_empty()
            && let Some(meta) = t.pointer_mut("/metadata").and_then(Value::as_object_mut)
        {
            meta.remove("labels");
        }
    }
    t
}

/// Drop what Go's semantic equality does not tell apart from absence: nulls,
/// empty objects and empty arrays.
fn normalized(value: &Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::Object(map) => {
            let m: Map<String, Value> = map
                .iter()
                .filter_map(|(k, v)| normalized(v).map(|v| (k.clone(), v)))
                .collect();
            (!m.is_empty()).then_some(Value::Object(m))
        }
        Value::Array(items) => (!items.is_empty()).then(|| {
            Value::Array(
                items
                    .iter()
                    .map(|v| normalized(v).unwrap_or(Value::Null))
                    .collect(),
            )
        }),
        other => Some(other.clone()),
    }
}

/// kubectl's `equalIgnoreHash`: two pod templates are equal apart from the
/// `pod-template-hash` label (and nil versus empty, as Go's semantic equality).
pub fn templates_equal_ignoring_hash(a: &Value, b: &Value) -> bool {
    normalized(&template_without_hash(a)) == normalized(&template_without_hash(b))
}

/// The Deployment's annotations after a rollback, as kubectl computes them:
/// the skipped annotations the Deployment has, plus every other annotation
/// of the ReplicaSet. The Deployment's other annotations are dropped.
pub fn rollback_annotations(
    deployment: &BTreeMap<String, String>,
    replica_set: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for key in ANNOTATIONS_TO_SKIP {
        if let Some(v) = deployment.get(key) {
            out.insert(key.to_owned(), v.clone());
        }
    }
    for (k, v) in replica_set {
        if !ANNOTATIONS_TO_SKIP.contains(&k.as_str()) {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

/// What the patch must also do beyond kubectl's two operations.
#[derive(Debug, Clone, Default)]
pub struct PatchGuards<'a> {
    /// Fail with 409 Conflict unless the Deployment still has this
    /// resourceVersion (kubectl sends no precondition and can overwrite a
    /// concurrent change).
    pub resource_version: Option<&'a str>,
    /// Also set `spec.paused` to false (kubectl refuses paused Deployments).
    pub resume: bool,
    /// The Deployment has `metadata.annotations` (else it is added, where
    /// kubectl's `replace` would fail).
    pub has_annotations: bool,
}

/// The JSON patch restoring `template` (already without the hash label) and
/// `annotations`: kubectl's `replace /spec/template` and `replace
/// /metadata/annotations`, preceded by the guards asked for.
pub fn rollback_patch(
    template: &Value,
    annotations: &BTreeMap<String, String>,
    guards: &PatchGuards<'_>,
) -> Value {
    let mut ops = Vec::new();
    if let Some(rv) = guards.resource_version {
        // The apiserver treats a resourceVersion in the patched object as a precondition.
        ops.push(json!({"op": "replace", "path": "/metadata/resourceVersion", "value": rv}));
    }
    if guards.resume {
        ops.push(json!({"op": "replace", "path": "/spec/paused", "value": false}));
    }
    ops.push(json!({"op": "replace", "path": "/spec/template", "value": template}));
    let op = if guards.has_annotations {
        "replace"
    } else {
        "add"
    };
    ops.push(json!({"op": op, "path": "/metadata/annotations", "value": annotations}));
    Value::Array(ops)
}

/// The pod-template annotation `kubectl rollout restart` sets to the time of
/// the restart: a changed template makes the controller roll out a new
/// ReplicaSet, replacing every pod.
pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";

/// The value of [`RESTARTED_AT_ANNOTATION`] for a restart at `at`: RFC 3339
/// to the second, in UTC (kubectl's `time.Now().Format(time.RFC3339)` on a
/// UTC machine). When the template already carries that value (a restart
/// earlier in the same second), the template would not change and kubectl
/// fails ("if restart has already been triggered within the past second,
/// please wait"); this says instead how long after `at` the next second
/// starts.
pub fn restarted_at(previous: Option<&str>, at: Timestamp) -> Result<String, std::time::Duration> {
    let stamp = humantime::format_rfc3339_seconds(at.to_system_time()).to_string();
    if previous != Some(stamp.as_str()) {
        return Ok(stamp);
    }
    let into_second = at.as_millis().rem_euclid(1000).unsigned_abs();
    Err(std::time::Duration::from_millis(1000 - into_second))
}

/// The strategic merge patch of `kubectl rollout restart`: only the
/// template's [`RESTARTED_AT_ANNOTATION`], whatever else the Deployment holds.
pub fn restart_patch(restarted_at: &str) -> Value {
    json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: restarted_at}}}}})
}

/// A ReplicaSet as kubectl's revision lookup sees it.
pub trait Numbered {
    /// The revision number, `None` when the annotation is missing (kubectl
    /// reads a missing annotation as revision 0).
    fn number(&self) -> i64;
}

/// Which ReplicaSet `kubectl rollout undo --to-revision=N` picks: the one
/// numbered `N`, or for `N == 0` the second highest number (the previous
/// revision). `None` when there is none.
pub fn pick_revision<T: Numbered>(replica_sets: &[T], to_revision: i64) -> Option<&T> {
    if to_revision > 0 {
        return replica_sets.iter().find(|rs| rs.number() == to_revision);
    }
    if to_revision < 0 {
        return None;
    }
    let mut latest: Option<&T> = None;
    let mut previous: Option<&T> = None;
    for rs in replica_sets {
        let n = rs.number();
        if latest.is_none_or(|l| l.number() < n) {
            previous = latest;
            latest = Some(rs);
        } else if previous.is_none_or(|p| p.number() < n) {
            previous = Some(rs);
        }
    }
    previous
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_stamps_are_rfc3339_seconds_and_never_repeat_the_previous_one() {
        use std::time::Duration;
        let now = Timestamp::from_millis(1_795_000_000_250);
        assert_eq!(
            restarted_at(None, now),
            Ok("2026-11-18T11:06:40Z".to_owned())
        );
        assert_eq!(
            restarted_at(Some("2026-11-18T11:06:39Z"), now),
            Ok("2026-11-18T11:06:40Z".to_owned())
        );
        assert_eq!(
            restarted_at(Some("2026-11-18T11:06:40Z"), now),
            Err(Duration::from_millis(750)),
            "the same second: wait for the next one"
        );
        assert_eq!(
            restarted_at(
                Some("2026-11-18T11:06:40Z"),
                now.plus(Duration::from_millis(750))
            ),
            Ok("2026-11-18T11:06:41Z".to_owned())
        );
        assert_eq!(
            restart_patch("2026-11-18T11:06:40Z"),
            json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-18T11:06:40Z"}}}}})
        );
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn annotations_keep_the_skipped_ones_of_the_deployment_and_copy_the_rest_of_the_replica_set() {
        let deployment = map(&[
            (REVISION_ANNOTATION, "5"),
            ("kubectl.kubernetes.io/last-applied-configuration", "{}"),
            ("team", "payments"),
            (CHANGE_CAUSE_ANNOTATION, "deploy v5"),
        ]);
        let rs = map(&[
            (REVISION_ANNOTATION, "3"),
            ("deployment.kubernetes.io/desired-replicas", "3"),
            ("deployment.kubernetes.io/max-replicas", "4"),
            (CHANGE_CAUSE_ANNOTATION, "deploy v3"),
            ("extra", "from-rs"),
        ]);
        let got = rollback_annotations(&deployment, &rs);
        assert_eq!(
            got,
            map(&[
                (REVISION_ANNOTATION, "5"),
                ("kubectl.kubernetes.io/last-applied-configuration", "{}"),
                (CHANGE_CAUSE_ANNOTATION, "deploy v3"),
                ("extra", "from-rs"),
            ])
        );
    }

    #[test]
    fn hash_label_is_removed_and_ignored_in_comparison() {
        let rs = json!({"metadata": {"labels": {"app": "web", "pod-template-hash": "abc"}}, "spec": {"containers": [{"name": "c", "image": "i:1", "resources": {}}]}});
        let dep = json!({"metadata": {"labels": {"app": "web"}, "creationTimestamp": null}, "spec": {"containers": [{"name": "c", "image": "i:1"}]}});
        assert!(templates_equal_ignoring_hash(&rs, &dep));
        assert_eq!(
            template_without_hash(&rs)["metadata"]["labels"],
            json!({"app": "web"})
        );
        let other = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i:2"}]}});
        assert!(!templates_equal_ignoring_hash(&rs, &other));
        let only_hash = json!({"metadata": {"labels": {"pod-template-hash": "abc"}}, "spec": {}});
        assert_eq!(
            template_without_hash(&only_hash),
            json!({"metadata": {}, "spec": {}})
        );
    }

    #[test]
    fn patch_has_kubectls_operations_after_the_guards() {
        let t = json!({"spec": {}});
        let a = map(&[("k", "v")]);
        let plain = rollback_patch(
            &t,
            &a,
            &PatchGuards {
                has_annotations: true,
                ..Default::default()
            },
        );
        assert_eq!(
            plain,
            json!([
                {"op": "replace", "path": "/spec/template", "value": {"spec": {}}},
                {"op": "replace", "path": "/metadata/annotations", "value": {"k": "v"}},
            ])
        );
        let guarded = rollback_patch(
            &t,
            &a,
            &PatchGuards {
                resource_version: Some("42"),
                resume: true,
                has_annotations: false,
            },
        );
        let ops: Vec<_> = guarded
            .as_array()
            .into_iter()
            .flatten()
            .map(|o| (o["op"].clone(), o["path"].clone()))
            .collect();
        assert_eq!(
            ops,
            vec![
                (json!("replace"), json!("/metadata/resourceVersion")),
                (json!("replace"), json!("/spec/paused")),
                (json!("replace"), json!("/spec/template")),
                (json!("add"), json!("/metadata/annotations")),
            ]
        );
    }

    #[test]
    fn controller_revisions_hold_a_replacing_patch_of_the_template() {
        let t = json!({"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "c", "image": "db:1"}]}});
        let data = controller_revision_data(&t);
        assert_eq!(data["spec"]["template"]["$patch"], json!("replace"));
        assert_eq!(revision_template(&data), Some(t.clone()));
        assert_eq!(revision_template(&json!({"spec": {}})), None);
        assert!(templates_equal(
            &t,
            &json!({"metadata": {"labels": {"app": "db"}, "creationTimestamp": null}, "spec": {"containers": [{"name": "c", "image": "db:1", "resources": {}}]}})
        ));
        assert!(!templates_equal(&t, &json!({"spec": {}})));
        assert_eq!(
            revision_patch(&data, Some("7")),
            json!({"metadata": {"resourceVersion": "7"}, "spec": {"template": t.clone().as_object().unwrap().clone().into_iter().chain([("$patch".to_owned(), json!("replace"))]).collect::<Map<_, _>>()}})
        );
        assert_eq!(revision_patch(&data, None), data);
    }

    struct N(i64);
    impl Numbered for N {
        fn number(&self) -> i64 {
            self.0
        }
    }

    #[test]
    fn previous_is_the_second_highest_number_whatever_the_order() {
        let sets = [N(2), N(7), N(0), N(5)];
        assert_eq!(pick_revision(&sets, 0).map(|n| n.0), Some(5));
        assert_eq!(pick_revision(&sets, 2).map(|n| n.0), Some(2));
        assert!(pick_revision(&sets, 3).is_none());
        assert!(pick_revision(&sets, -1).is_none());
        assert!(pick_revision(&[N(4)], 0).is_none());
        assert!(pick_revision::<N>(&[], 0).is_none());
    }
}
