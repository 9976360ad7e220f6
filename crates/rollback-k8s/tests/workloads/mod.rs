//! StatefulSets and DaemonSets on the test API server, seeded the way their
//! controllers leave them: the object, one ControllerRevision per revision
//! (named `NAME-HASH`, labelled with the template's labels and the hash,
//! the object's annotations copied, controlled by the object, its `data` the
//! strategic merge patch `{"spec": {"template": {"$patch": "replace", ...}}}`
//! encoded as Go encodes it: sorted keys, `creationTimestamp: null`), and a
//! complete rollout in the status; and a stand-in controller that records a
//! new template as the next revision (or renumbers the revision that
//! already holds it, as the controllers do on a rollback).
#![allow(dead_code)]

use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, StatefulSet};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use rollback_k8s::WorkloadKind;
use rollback_k8s::patch::{controller_revision_data, revision_template, templates_equal};
use serde_json::{Value, json};

use crate::support::{self, Rev};

pub(crate) fn resource(kind: WorkloadKind) -> ApiResource {
    match kind {
        WorkloadKind::StatefulSet => ApiResource::erase::<StatefulSet>(&()),
        _ => ApiResource::erase::<DaemonSet>(&()),
    }
}

pub(crate) fn objects(client: &kube::Client, ns: &str, kind: WorkloadKind) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &resource(kind))
}

pub(crate) fn revisions(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::erase::<ControllerRevision>(&()),
    )
}

/// A StatefulSet or DaemonSet as its controller leaves it after rolling out
/// `revs[current]`.
#[derive(Debug, Clone)]
pub(crate) struct WSeed {
    pub kind: WorkloadKind,
    pub name: String,
    pub replicas: i64,
    pub revs: Vec<Rev>,
    pub current: usize,
    /// A StatefulSet's `rollingUpdate.partition` (the apiserver defaults it to 0).
    pub partition: Option<i64>,
    pub on_delete: bool,
}

impl WSeed {
    pub(crate) fn new(kind: WorkloadKind, name: &str, revs: Vec<Rev>) -> WSeed {
        let current = revs.len().saturating_sub(1);
        WSeed {
            kind,
            name: name.into(),
            replicas: 3,
            revs,
            current,
            partition: Some(0),
            on_delete: false,
        }
    }
}

/// `kind` web: revisions 1 (web:1, hash aaa), 2 (web:2, bbb), 3 (web:3, ccc, current).
pub(crate) fn three(kind: WorkloadKind) -> WSeed {
    WSeed::new(
        kind,
        "web",
        vec![
            Rev::new(1, "aaa", "web:1"),
            Rev::new(2, "bbb", "web:2"),
            Rev::new(3, "ccc", "web:3"),
        ],
    )
}

/// The ControllerRevision data the controller writes for a pod template,
/// as Go's encoder writes the typed template (`creationTimestamp: null`).
///
/// Its maps are in sorted key order, as Go's encoder writes a map and as
/// kubectl compares the bytes: serde_json keeps insertion order when
/// another crate of the build turns on its `preserve_order` feature (the
/// AWS SDK's HTTP client does, in a `--workspace` build), and the bytes
/// must not depend on which crates are built with the test.
pub(crate) fn data_of(template: &Value) -> Value {
    let mut t = template.clone();
    t["metadata"]["creationTimestamp"] = Value::Null;
    sorted(controller_revision_data(&t))
}

fn sorted(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

fn hash_label(kind: WorkloadKind) -> &'static str {
    match kind {
        WorkloadKind::StatefulSet => "controller.kubernetes.io/hash",
        _ => "controller-revision-hash",
    }
}

/// The object a ControllerRevision belongs to.
struct Owner<'a> {
    kind: WorkloadKind,
    name: &'a str,
    uid: &'a str,
}

async fn create_revision(
    client: &kube::Client,
    ns: &str,
    owner: &Owner<'_>,
    hash: &str,
    number: i64,
    template: &Value,
    annotations: Value,
) {
    let mut labels = template["metadata"]["labels"].clone();
    let (kind, owner, uid) = (owner.kind, owner.name, owner.uid);
    labels[hash_label(kind)] = json!(hash);
    let cr = json!({
        "apiVersion": "apps/v1", "kind": "ControllerRevision",
        "metadata": {
            "name": format!("{owner}-{hash}"), "labels": labels, "annotations": annotations,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": kind.kind(), "name": owner, "uid": uid,
                                  "controller": true, "blockOwnerDeletion": true}],
        },
        "data": data_of(template),
        "revision": number,
    });
    let cr: DynamicObject = serde_json::from_value(cr).expect("a controller revision");
    revisions(client, ns)
        .create(&PostParams::default(), &cr)
        .await
        .expect("creating a controller revision");
}

fn full_status(kind: WorkloadKind, generation: i64, replicas: i64, revision: &str) -> Value {
    match kind {
        WorkloadKind::StatefulSet => json!({"status": {
            "observedGeneration": generation, "replicas": replicas, "readyReplicas": replicas,
            "currentReplicas": replicas, "updatedReplicas": replicas, "availableReplicas": replicas,
            "currentRevision": revision, "updateRevision": revision, "collisionCount": 0,
        }}),
        _ => json!({"status": {
            "observedGeneration": generation, "currentNumberScheduled": replicas, "numberMisscheduled": 0,
            "desiredNumberScheduled": replicas, "numberReady": replicas, "updatedNumberScheduled": replicas,
            "numberAvailable": replicas,
        }}),
    }
}

/// Seed the object and its ControllerRevisions; returns the object's uid.
pub(crate) async fn seed(client: &kube::Client, ns: &str, s: &WSeed) -> String {
    let cur = &s.revs[s.current];
    let mut annotations = json!({});
    if let Some(c) = &cur.change_cause {
        annotations["kubernetes.io/change-cause"] = json!(c);
    }
    let strategy = if s.on_delete {
        json!({"type": "OnDelete"})
    } else {
        match (s.kind, s.partition) {
            (WorkloadKind::StatefulSet, Some(p)) => {
                json!({"type": "RollingUpdate", "rollingUpdate": {"partition": p}})
            }
            (WorkloadKind::StatefulSet, None) => json!({"type": "RollingUpdate"}),
            _ => {
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
            }
        }
    };
    let mut spec = json!({
        "selector": {"matchLabels": {"app": s.name}},
        "template": support::template(&s.name, cur, false),
        "updateStrategy": strategy,
        "revisionHistoryLimit": 10,
    });
    if s.kind == WorkloadKind::StatefulSet {
        spec["replicas"] = json!(s.replicas);
        spec["serviceName"] = json!(s.name);
        spec["podManagementPolicy"] = json!("OrderedReady");
    }
    let object = json!({
        "apiVersion": "apps/v1", "kind": s.kind.kind(),
        "metadata": {"name": s.name, "labels": {"app": s.name}, "annotations": annotations},
        "spec": spec,
    });
    let object: DynamicObject = serde_json::from_value(object).expect("an object");
    let api = objects(client, ns, s.kind);
    let created = api
        .create(&PostParams::default(), &object)
        .await
        .expect("creating the object");
    let uid = created.metadata.uid.clone().expect("a uid");
    for rev in &s.revs {
        let mut ann = json!({});
        if let Some(c) = &rev.change_cause {
            ann["kubernetes.io/change-cause"] = json!(c);
        }
        let number: i64 = rev.number.parse().expect("a revision number");
        let template = support::template(&s.name, rev, false);
        let owner = Owner {
            kind: s.kind,
            name: &s.name,
            uid: &uid,
        };
        create_revision(client, ns, &owner, &rev.hash, number, &template, ann).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let status = full_status(s.kind, 1, s.replicas, &format!("{}-{}", s.name, cur.hash));
    api.patch_status(&s.name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .expect("setting the status");
    uid
}

/// The object as raw JSON.
pub(crate) async fn object_json(
    client: &kube::Client,
    ns: &str,
    kind: WorkloadKind,
    name: &str,
) -> Value {
    serde_json::to_value(
        objects(client, ns, kind)
            .get(name)
            .await
            .expect("reading the object"),
    )
    .expect("json")
}

/// Set the object's status by a merge patch of `status`.
pub(crate) async fn set_status(
    client: &kube::Client,
    ns: &str,
    kind: WorkloadKind,
    name: &str,
    status: Value,
) {
    objects(client, ns, kind)
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
        .expect("setting the status");
}

fn fnv(text: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in text.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

/// One reconcile of a stand-in StatefulSet or DaemonSet controller: when
/// the generation is not observed, record the template as a revision (the
/// existing one that holds it renumbered to the next number, as the
/// controllers do, or a new one), and report a complete rollout. Returns
/// whether it changed anything.
pub(crate) async fn controller_step(
    client: &kube::Client,
    ns: &str,
    kind: WorkloadKind,
    name: &str,
) -> bool {
    let api = objects(client, ns, kind);
    let Ok(o) = api.get(name).await else {
        return false;
    };
    let generation = o.metadata.generation.unwrap_or(1);
    let observed = o
        .data
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if observed >= generation {
        return false;
    }
    let uid = o.metadata.uid.clone().unwrap_or_default();
    let template = o
        .data
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_default();
    let crs = revisions(client, ns);
    let Ok(list) = crs
        .list(&ListParams::default().labels(&format!("app={name}")))
        .await
    else {
        return false;
    };
    let owned: Vec<DynamicObject> = list
        .items
        .into_iter()
        .filter(|cr| {
            cr.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.uid == uid)
        })
        .collect();
    let number = |cr: &DynamicObject| cr.data.get("revision").and_then(Value::as_i64).unwrap_or(0);
    let max = owned.iter().map(number).max().unwrap_or(0);
    let matching = owned.iter().find(|cr| {
        revision_template(cr.data.get("data").unwrap_or(&Value::Null))
            .is_some_and(|t| templates_equal(&t, &template))
    });
    let revision_name = match matching {
        Some(cr) => {
            let n = cr.metadata.name.clone().unwrap_or_default();
            if number(cr) != max {
                let _ = crs
                    .patch(
                        &n,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"revision": max + 1})),
                    )
                    .await;
            }
            n
        }
        None => {
            let hash = fnv(&template.to_string());
            let ann = o
                .metadata
                .annotations
                .clone()
                .map(|a| serde_json::to_value(a).unwrap_or_default())
                .unwrap_or_else(|| json!({}));
            let owner = Owner {
                kind,
                name,
                uid: &uid,
            };
            create_revision(client, ns, &owner, &hash, max + 1, &template, ann).await;
            format!("{name}-{hash}")
        }
    };
    let replicas = o
        .data
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(3);
    let status = full_status(kind, generation, replicas, &revision_name);
    let _ = api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await;
    true
}

/// Run the stand-in controller for one object in the background.
pub(crate) fn spawn_controller(
    client: kube::Client,
    ns: &str,
    kind: WorkloadKind,
    name: &str,
) -> tokio::task::JoinHandle<()> {
    let (ns, name) = (ns.to_owned(), name.to_owned());
    tokio::spawn(async move {
        loop {
            controller_step(&client, &ns, kind, &name).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}
