//! Test support: a Kubernetes API server (kmock plus `kube_apiserver.py`) on a
//! free loopback port, a kubeconfig for `kubectl`, seeding of Deployments the
//! way the deployment controller leaves them, and a stand-in controller.
//!
//! Other crates' tests use it too (rollback-mlflow's, through
//! `#[path = "…/rollback-k8s/tests/support/mod.rs"]`): it names nothing
//! relative to the including crate but the venv (`ROLLBACK_VENV`, else the
//! workspace's `.venv`, two levels above any crate of `crates/`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// The venv with kmock: `ROLLBACK_VENV`, else `<workspace root>/.venv`.
pub(crate) fn venv() -> PathBuf {
    std::env::var_os("ROLLBACK_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv"))
}

/// A running test API server. Dropping it stops it; its stderr is printed
/// when the test panics. It also exits by itself when this process dies
/// (its stdin closes).
pub(crate) struct KubeServer {
    child: Child,
    _stdin: ChildStdin,
    pub url: String,
    pub dir: tempfile::TempDir,
    stderr_path: PathBuf,
}

impl KubeServer {
    pub(crate) fn start() -> KubeServer {
        let venv = venv();
        let python = venv.join("bin/python");
        assert!(
            python.exists(),
            "no Python venv with kmock at {} (set ROLLBACK_VENV or run ./scripts/test --setup-only from the workspace root)",
            venv.display()
        );
        // Embedded (include_str! resolves beside this file), so that other
        // crates' tests can include this module with #[path].
        let dir = tempfile::tempdir().expect("a temp dir");
        let script = dir.path().join("kube_apiserver.py");
        std::fs::write(&script, include_str!("kube_apiserver.py"))
            .expect("writing the server script");
        let stderr_path = dir.path().join("apiserver.stderr");
        let stderr = std::fs::File::create(&stderr_path).expect("a stderr file");
        let mut child = Command::new(&python)
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {} {}: {e}", python.display(), script.display()));
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
        let Some(port) = line
            .trim()
            .strip_prefix("READY ")
            .and_then(|p| p.parse::<u16>().ok())
        else {
            let _ = child.kill();
            let _ = child.wait();
            let mut err = String::new();
            let _ = std::fs::File::open(&stderr_path).and_then(|mut f| f.read_to_string(&mut err));
            panic!(
                "the test API server did not start (is kmock installed in {}? run ./scripts/test --setup-only); stdout: {line:?}; stderr:\n{err}",
                venv.display()
            );
        };
        let url = format!("http://127.0.0.1:{port}");
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kmock\n  cluster:\n    server: {url}\nusers:\n- name: anonymous\n  user: {{}}\ncontexts:\n- name: kmock\n  context:\n    cluster: kmock\n    user: anonymous\ncurrent-context: kmock\n"
        );
        std::fs::write(dir.path().join("kubeconfig"), kubeconfig).expect("writing the kubeconfig");
        KubeServer {
            child,
            _stdin: stdin,
            url,
            dir,
            stderr_path,
        }
    }

    pub(crate) fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url.parse().expect("a URL"));
        kube::Client::try_from(config).expect("a kube client")
    }

    pub(crate) fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// Run kubectl against this server: (success, stdout, stderr).
    pub(crate) fn kubectl(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .arg("--cache-dir")
            .arg(self.dir.path().join("kubectl-cache"))
            .args(args)
            .output()
            .expect("running kubectl (is it on PATH?)");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    async fn control(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        // The control endpoints speak plain JSON over HTTP/1.1; a tiny blocking client does.
        use std::io::Write;
        let addr = self.url.trim_start_matches("http://").to_owned();
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let response = tokio::task::spawn_blocking(move || {
            let mut stream =
                std::net::TcpStream::connect(&addr).expect("connecting to the test API server");
            stream
                .write_all(request.as_bytes())
                .expect("sending a control request");
            let mut out = String::new();
            stream
                .read_to_string(&mut out)
                .expect("reading a control response");
            out
        })
        .await
        .expect("the control request task");
        let (_, json) = response.split_once("\r\n\r\n").expect("an HTTP response");
        serde_json::from_str(json).unwrap_or_else(|e| panic!("control response {json:?}: {e}"))
    }

    /// The API requests served so far, raw: method, path, query, content_type, body.
    pub(crate) async fn request_log(&self) -> Vec<Value> {
        let v = self.control("GET", "/_test/requests", None).await;
        v["requests"].as_array().cloned().unwrap_or_default()
    }

    /// The API requests served so far: `METHOD path?query`.
    pub(crate) async fn requests(&self) -> Vec<String> {
        let v = self.control("GET", "/_test/requests", None).await;
        v["requests"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                let q = r["query"].as_str().unwrap_or_default();
                let p = r["path"].as_str().unwrap_or_default();
                let m = r["method"].as_str().unwrap_or_default();
                if q.is_empty() {
                    format!("{m} {p}")
                } else {
                    format!("{m} {p}?{q}")
                }
            })
            .collect()
    }

    pub(crate) async fn clear_requests(&self) {
        self.control("DELETE", "/_test/requests", None).await;
    }

    /// Add a fault rule (see kube_apiserver.py).
    pub(crate) async fn fault(&self, rule: Value) {
        self.control("POST", "/_test/faults", Some(rule)).await;
    }

    pub(crate) fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for KubeServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- test API server stderr ---\n{}\n--- end ---",
                self.stderr()
            );
        }
    }
}

/// One revision to seed: a ReplicaSet the Deployment owns.
#[derive(Debug, Clone)]
pub(crate) struct Rev {
    /// The revision annotation (a number, or garbage for the bad-input tests).
    pub number: String,
    pub hash: String,
    pub containers: Vec<(String, String)>,
    pub init_containers: Vec<(String, String)>,
    pub change_cause: Option<String>,
    pub extra_annotations: BTreeMap<String, String>,
    pub env: Option<String>,
}

impl Rev {
    pub(crate) fn new(number: i64, hash: &str, image: &str) -> Rev {
        Rev {
            number: number.to_string(),
            hash: hash.into(),
            containers: vec![("app".into(), image.into())],
            init_containers: vec![],
            change_cause: Some(format!("deploy {image}")),
            extra_annotations: BTreeMap::new(),
            env: None,
        }
    }
}

/// A Deployment as the controller leaves it after rolling out `revs[current]`.
#[derive(Debug, Clone)]
pub(crate) struct Seed {
    pub name: String,
    pub replicas: i32,
    pub revs: Vec<Rev>,
    pub current: usize,
    pub paused: bool,
    pub deployment_annotations: BTreeMap<String, String>,
}

impl Seed {
    pub(crate) fn new(name: &str, revs: Vec<Rev>) -> Seed {
        let current = revs.len().saturating_sub(1);
        Seed {
            name: name.into(),
            replicas: 3,
            revs,
            current,
            paused: false,
            deployment_annotations: BTreeMap::new(),
        }
    }
}

fn container(name: &str, image: &str, env: Option<&str>) -> Value {
    let mut c = json!({
        "name": name, "image": image, "resources": {},
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    });
    if let Some(v) = env {
        c["env"] = json!([{"name": "MODE", "value": v}]);
    }
    c
}

/// A pod template as the apiserver returns it (defaults filled in).
pub(crate) fn template(app: &str, rev: &Rev, with_hash: bool) -> Value {
    let mut labels = json!({"app": app});
    if with_hash {
        labels["pod-template-hash"] = json!(rev.hash);
    }
    let mut spec = json!({
        "containers": rev.containers.iter().map(|(n, i)| container(n, i, rev.env.as_deref())).collect::<Vec<_>>(),
        "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
        "securityContext": {}, "schedulerName": "default-scheduler",
    });
    if !rev.init_containers.is_empty() {
        spec["initContainers"] = rev
            .init_containers
            .iter()
            .map(|(n, i)| container(n, i, None))
            .collect();
    }
    json!({"metadata": {"labels": labels}, "spec": spec})
}

pub(crate) async fn create_namespace(client: &kube::Client, ns: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let obj: Namespace =
        serde_json::from_value(json!({"metadata": {"name": ns}})).expect("a namespace");
    api.create(&PostParams::default(), &obj)
        .await
        .expect("creating a namespace");
}

/// Seed a Deployment and its ReplicaSets the way the controller leaves them.
/// Returns the Deployment's uid.
pub(crate) async fn seed(client: &kube::Client, ns: &str, s: &Seed) -> String {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let cur = &s.revs[s.current];
    let mut annotations = s.deployment_annotations.clone();
    annotations.insert(
        "deployment.kubernetes.io/revision".into(),
        cur.number.clone(),
    );
    if let Some(c) = &cur.change_cause {
        annotations.insert("kubernetes.io/change-cause".into(), c.clone());
    }
    let d = json!({
        "metadata": {"name": s.name, "labels": {"app": s.name}, "annotations": annotations},
        "spec": {
            "replicas": s.replicas, "paused": s.paused,
            "selector": {"matchLabels": {"app": s.name}},
            "template": template(&s.name, cur, false),
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
            "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
        },
    });
    let d: Deployment = serde_json::from_value(d).expect("a deployment");
    let created = deployments
        .create(&PostParams::default(), &d)
        .await
        .expect("creating the deployment");
    let uid = created.metadata.uid.clone().expect("a uid");
    for (i, rev) in s.revs.iter().enumerate() {
        let mut ann = BTreeMap::new();
        ann.insert(
            "deployment.kubernetes.io/revision".to_owned(),
            rev.number.clone(),
        );
        ann.insert(
            "deployment.kubernetes.io/desired-replicas".to_owned(),
            s.replicas.to_string(),
        );
        ann.insert(
            "deployment.kubernetes.io/max-replicas".to_owned(),
            (s.replicas + 1).to_string(),
        );
        if let Some(c) = &rev.change_cause {
            ann.insert("kubernetes.io/change-cause".into(), c.clone());
        }
        ann.extend(rev.extra_annotations.clone());
        let replicas = if i == s.current { s.replicas } else { 0 };
        let rs = json!({
            "metadata": {
                "name": format!("{}-{}", s.name, rev.hash),
                "labels": {"app": s.name, "pod-template-hash": rev.hash},
                "annotations": ann,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": s.name, "uid": uid, "controller": true, "blockOwnerDeletion": true}],
            },
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": s.name, "pod-template-hash": rev.hash}},
                "template": template(&s.name, rev, true),
            },
        });
        let rs: ReplicaSet = serde_json::from_value(rs).expect("a replica set");
        replica_sets
            .create(&PostParams::default(), &rs)
            .await
            .expect("creating a replica set");
        // Distinct creation times, in revision order, as in a real history.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let status = json!({"status": {
        "observedGeneration": 1, "replicas": s.replicas, "updatedReplicas": s.replicas,
        "readyReplicas": s.replicas, "availableReplicas": s.replicas,
        "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability."},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "message": format!("ReplicaSet \"{}-{}\" has successfully progressed.", s.name, cur.hash)},
        ],
    }});
    deployments
        .patch_status(&s.name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .expect("setting the deployment status");
    uid
}

/// The Deployment as raw JSON.
pub(crate) async fn deployment_json(client: &kube::Client, ns: &str, name: &str) -> Value {
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &kube::api::ApiResource::erase::<Deployment>(&()),
    );
    serde_json::to_value(api.get(name).await.expect("reading the deployment")).expect("json")
}

/// The Deployment without server bookkeeping, to compare across namespaces.
pub(crate) fn without_bookkeeping(mut d: Value) -> Value {
    if let Some(meta) = d.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "namespace",
            "managedFields",
            "selfLink",
        ] {
            meta.remove(k);
        }
    }
    d
}

fn fnv_hash(text: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in text.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
        .chars()
        .map(|c| {
            if c.is_ascii_digit() {
                char::from(b'b' + (c as u8 - b'0'))
            } else {
                c
            }
        })
        .collect()
}

/// One reconcile of a stand-in deployment controller: find or create the
/// ReplicaSet for the Deployment's template, give it the next revision number
/// when it is not the newest, scale the others to zero, and report a
/// complete rollout in the status. Returns whether it changed anything.
pub(crate) async fn controller_step(client: &kube::Client, ns: &str, name: &str) -> bool {
    let deployments: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &kube::api::ApiResource::erase::<Deployment>(&()),
    );
    let replica_sets: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &kube::api::ApiResource::erase::<ReplicaSet>(&()),
    );
    let Ok(d) = deployments.get(name).await else {
        return false;
    };
    let generation = d.metadata.generation.unwrap_or(1);
    let observed = d
        .data
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if observed >= generation
        || d.data.pointer("/spec/paused").and_then(Value::as_bool) == Some(true)
    {
        return false;
    }
    let uid = d.metadata.uid.clone().unwrap_or_default();
    let template = d
        .data
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_default();
    let replicas = d
        .data
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let Ok(list) = replica_sets
        .list(&ListParams::default().labels(&format!("app={name}")))
        .await
    else {
        return false;
    };
    let owned: Vec<DynamicObject> = list
        .items
        .into_iter()
        .filter(|rs| {
            rs.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.uid == uid)
        })
        .collect();
    let number = |rs: &DynamicObject| {
        rs.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("deployment.kubernetes.io/revision"))
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0)
    };
    let max = owned.iter().map(number).max().unwrap_or(0);
    let matching = owned.iter().find(|rs| {
        rollback_k8s::patch::templates_equal_ignoring_hash(
            rs.data.pointer("/spec/template").unwrap_or(&Value::Null),
            &template,
        )
    });
    let (new_name, new_number) = match matching {
        Some(rs) if number(rs) == max => (rs.metadata.name.clone().unwrap_or_default(), max),
        Some(rs) => {
            let n = rs.metadata.name.clone().unwrap_or_default();
            let p = json!({"metadata": {"annotations": {"deployment.kubernetes.io/revision": (max + 1).to_string()}}});
            let _ = replica_sets
                .patch(&n, &PatchParams::default(), &Patch::Merge(p))
                .await;
            (n, max + 1)
        }
        None => {
            let hash = fnv_hash(&template.to_string());
            let mut t = template.clone();
            t["metadata"]["labels"]["pod-template-hash"] = json!(hash);
            let mut ann: BTreeMap<String, String> = d
                .metadata
                .annotations
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|(k, _)| {
                    !k.starts_with("deployment.kubernetes.io/")
                        && k != "kubectl.kubernetes.io/last-applied-configuration"
                })
                .collect();
            ann.insert(
                "deployment.kubernetes.io/revision".into(),
                (max + 1).to_string(),
            );
            ann.insert(
                "deployment.kubernetes.io/desired-replicas".into(),
                replicas.to_string(),
            );
            ann.insert(
                "deployment.kubernetes.io/max-replicas".into(),
                (replicas + 1).to_string(),
            );
            let rs = json!({
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {
                    "name": format!("{name}-{hash}"),
                    "labels": {"app": name, "pod-template-hash": hash},
                    "annotations": ann,
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true}],
                },
                "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name, "pod-template-hash": hash}}, "template": t},
            });
            let rs: DynamicObject = serde_json::from_value(rs).expect("a replica set");
            let _ = replica_sets.create(&PostParams::default(), &rs).await;
            (format!("{name}-{hash}"), max + 1)
        }
    };
    for rs in &owned {
        let n = rs.metadata.name.clone().unwrap_or_default();
        let want = if n == new_name { replicas } else { 0 };
        let _ = replica_sets
            .patch(
                &n,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": want}})),
            )
            .await;
    }
    let p = json!({"metadata": {"annotations": {"deployment.kubernetes.io/revision": new_number.to_string()}}});
    let _ = deployments
        .patch(name, &PatchParams::default(), &Patch::Merge(p))
        .await;
    let status = json!({"status": {
        "observedGeneration": generation, "replicas": replicas, "updatedReplicas": replicas,
        "readyReplicas": replicas, "availableReplicas": replicas,
        "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "message": format!("ReplicaSet \"{new_name}\" has successfully progressed.")},
        ],
    }});
    let _ = deployments
        .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await;
    true
}

/// Run the stand-in controller for one Deployment in the background.
pub(crate) fn spawn_controller(
    client: kube::Client,
    ns: &str,
    name: &str,
) -> tokio::task::JoinHandle<()> {
    let (ns, name) = (ns.to_owned(), name.to_owned());
    tokio::spawn(async move {
        loop {
            controller_step(&client, &ns, &name).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

/// Create a pod of a revision with the given container status.
pub(crate) async fn create_pod(
    client: &kube::Client,
    ns: &str,
    app: &str,
    hash: &str,
    pod: &str,
    container_status: Value,
) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": pod, "labels": {"app": app, "pod-template-hash": hash}},
        "spec": {"containers": [{"name": "app", "image": "img"}]},
    }))
    .expect("a pod");
    pods.create(&PostParams::default(), &p)
        .await
        .expect("creating a pod");
    let status = json!({"status": {"phase": "Running", "containerStatuses": [container_status]}});
    pods.patch_status(pod, &PatchParams::default(), &Patch::Merge(status))
        .await
        .expect("setting pod status");
}
