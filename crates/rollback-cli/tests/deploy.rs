//! What `deploy/` ships holds together: the container's command and the
//! manifest's arguments are a valid `rollback serve` command line, the
//! ConfigMap's watch file passes `rollback check`, and the ClusterRole
//! allows every request `rollback serve` makes to the Kubernetes API. The
//! last is checked by running `rollback serve` against the test API server
//! (kmock, from rollback-k8s's test support) with its own bearer token
//! while a Deployment gets a bad revision, is judged and rolled back, and
//! matching each request with that token to the ClusterRole's rules.

mod common;
#[allow(clippy::all, unreachable_pub)]
#[path = "../../rollback-k8s/tests/support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use common::{Running, until, write};
use kube::api::{Api, Patch, PatchParams};
use rollback_cli::cli::{Cli, Command};
use serde::Deserialize;
use serde_json::{Value, json};
use support::{KubeServer, Rev, Seed};

const WAIT: Duration = Duration::from_secs(40);
const SA_TOKEN: &str = "rollback-serve-service-account";

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// The manifest's documents.
fn manifests() -> Vec<Value> {
    let text = std::fs::read_to_string(deploy_dir().join("kubernetes.yaml")).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).expect("a YAML document"))
        .collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in deploy/kubernetes.yaml"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|s| s.as_str().expect("a string").to_owned())
        .collect()
}

#[test]
fn the_container_and_the_manifest_run_a_valid_serve_command() {
    let docs = manifests();
    let deployment = of_kind(&docs, "Deployment");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let args = strings(&container["args"]);
    let cli = Cli::try_parse_from(std::iter::once("rollback".to_owned()).chain(args.clone()))
        .unwrap_or_else(|e| panic!("the manifest's args {args:?}: {e}"));
    let Command::Serve(serve) = cli.command else {
        panic!("the manifest runs {args:?}, not serve")
    };
    // The watch file is where the ConfigMap is mounted.
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "config")
        .expect("the config volume mounted");
    let mount_path = mount["mountPath"].as_str().unwrap();
    assert_eq!(serve.file, Path::new(mount_path).join("rollback.yaml"));
    // The port the probes and the Service use is the one it listens on.
    let port = serve.listen.expect("--listen").port();
    assert_eq!(container["ports"][0]["containerPort"], json!(port));
    let service = of_kind(&docs, "Service");
    assert_eq!(service["spec"]["ports"][0]["port"], json!(port));

    // The Containerfile's CMD is the same command line.
    let containerfile = std::fs::read_to_string(deploy_dir().join("Containerfile")).unwrap();
    let cmd = containerfile
        .lines()
        .find_map(|l| l.strip_prefix("CMD "))
        .expect("a CMD line");
    let cmd: Vec<String> = serde_json::from_str(cmd).expect("CMD in JSON form");
    assert_eq!(cmd, args, "the Containerfile's CMD and the manifest's args");

    // Every variable the watch file reads is set from the Secret.
    let file = of_kind(&docs, "ConfigMap")["data"]["rollback.yaml"]
        .as_str()
        .unwrap()
        .to_owned();
    let set: BTreeSet<String> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect();
    for name in file.split("${").skip(1).filter_map(|s| s.split_once('}')) {
        assert!(
            set.contains(name.0),
            "the watch file reads ${{{}}}, which the Deployment does not set",
            name.0
        );
    }
}

#[test]
fn the_configmaps_watch_file_passes_check() {
    let docs = manifests();
    let file = of_kind(&docs, "ConfigMap")["data"]["rollback.yaml"]
        .as_str()
        .unwrap()
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "rollback.yaml", &file);
    common::rollback(dir.path())
        .args(["check", "-c", "rollback.yaml"])
        .env("ROLLBACK_BOT_TOKEN", "t0ken-of-the-bot")
        .env("ALERTMANAGER_TOKEN", "t0ken-of-alertmanager")
        .env(
            "SLACK_WEBHOOK_URL",
            "https://hooks.slack.com/services/T0/B0/x",
        )
        .assert()
        .code(0);
}

/// One rule of the ClusterRole.
struct Rule {
    groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
}

impl Rule {
    fn allows(&self, group: &str, resource: &str, verb: &str) -> bool {
        let has = |list: &[String], x: &str| list.iter().any(|v| v == x || v == "*");
        has(&self.groups, group) && has(&self.resources, resource) && has(&self.verbs, verb)
    }
}

/// The API group, resource (with its subresource) and RBAC verb of a
/// request; `None` for discovery and other non-resource paths.
fn authorization_of(method: &str, path: &str, query: &str) -> Option<(String, String, String)> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    let rest = match rest {
        ["namespaces", _ns, rest @ ..] if !rest.is_empty() => rest,
        other => other,
    };
    let (resource, named) = match rest {
        [] => return None,
        [resource] => (resource.to_string(), false),
        [resource, _name] => (resource.to_string(), true),
        [resource, _name, sub, ..] => (format!("{resource}/{sub}"), true),
    };
    let watching = query
        .split('&')
        .any(|q| q == "watch=true" || q == "watch=1");
    let verb = match (method, named) {
        ("GET", _) if watching => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("PATCH", _) => "patch",
        ("PUT", _) => "update",
        ("POST", _) => "create",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        (other, _) => panic!("a {other} request to {path}"),
    };
    Some((group.to_owned(), resource, verb.to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_role_allows_every_request_serve_makes() {
    let docs = manifests();
    let rules: Vec<Rule> = of_kind(&docs, "ClusterRole")["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| Rule {
            groups: strings(&r["apiGroups"]),
            resources: strings(&r["resources"]),
            verbs: strings(&r["verbs"]),
        })
        .collect();

    let kube = KubeServer::start();
    let client = kube.client();
    support::create_namespace(&client, "shop").await;
    support::seed(
        &client,
        "shop",
        &Seed::new(
            "web",
            vec![Rev::new(1, "aaa", "web:1"), Rev::new(2, "bbb", "web:2")],
        ),
    )
    .await;
    let controller = support::spawn_controller(client.clone(), "shop", "web");
    let dir = tempfile::tempdir().unwrap();
    // serve's own credentials: a service account token.
    let kubeconfig = write(
        dir.path(),
        "kubeconfig",
        &format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kmock\n  cluster:\n    server: {}\n\
             users:\n- name: rollback\n  user:\n    token: {SA_TOKEN}\n\
             contexts:\n- name: kmock\n  context:\n    cluster: kmock\n    user: rollback\n\
             current-context: kmock\n",
            kube.url
        ),
    );
    write(
        dir.path(),
        "rollback.yaml",
        &format!(
            "policy:\n  interval: 100ms\n  bake_time: 500ms\n  verify: 500ms\n\
             probes:\n  - name: error_rate\n    success: \"< 0.01\"\n    scripted:\n      values: [0.05]\n      per_revision: {{aaa: [0.001], bbb: [0.001]}}\n\
             state: state\naudit: audit.jsonl\n\
             targets:\n  - url: k8s://shop/web\n    kubeconfig: {}\n    poll_interval: 100ms\n\
             serve:\n  poll_interval: 200ms\n  reload_check: 0s\n  operators: [{{actor: bot, token: deploy-test-token-01}}]\n",
            kubeconfig.display()
        ),
    );
    let listen = format!("127.0.0.1:{}", common::free_port());
    let mut serve = Running::start_logging(
        dir.path(),
        &["serve", "-c", "rollback.yaml", "--listen", &listen],
        &[],
    );
    let http = reqwest::Client::new();
    let phase = || async {
        let r = http
            .get(format!("http://{listen}/api/v1/targets/k8s%3Ashop%2Fweb"))
            .bearer_auth("deploy-test-token-01")
            .send()
            .await
            .ok()?;
        let v: Value = r.json().await.ok()?;
        v["phase"]["phase"].as_str().map(str::to_owned)
    };
    until("bbb promoted", WAIT, || async {
        (phase().await.as_deref() == Some("promoted")).then_some(())
    })
    .await;
    // A bad revision ships: judged and rolled back.
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), "shop");
    let template = support::template("web", &Rev::new(3, "ccc", "web:3"), false);
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": template}})),
        )
        .await
        .expect("a new revision");
    until("the new revision rolled back", WAIT, || async {
        (phase().await.as_deref() == Some("rolled_back")).then_some(())
    })
    .await;
    serve.signal("TERM");
    assert_eq!(common::exit_code_within(&mut serve.child, WAIT), Some(0));
    controller.abort();

    let bearer = format!("Bearer {SA_TOKEN}");
    let mut made = BTreeSet::new();
    for r in kube.request_log().await {
        if r["authorization"] != bearer.as_str() {
            continue;
        }
        let (m, p, q) = (
            r["method"].as_str().unwrap_or_default(),
            r["path"].as_str().unwrap_or_default(),
            r["query"].as_str().unwrap_or_default(),
        );
        if let Some(a) = authorization_of(m, p, q) {
            made.insert(a);
        }
    }
    eprintln!("serve's requests, as RBAC sees them: {made:?}");
    assert!(
        made.contains(&("apps".into(), "deployments".into(), "patch".into())),
        "serve's requests include the rollback's patch: {made:?}"
    );
    let denied: Vec<_> = made
        .iter()
        .filter(|(g, r, v)| !rules.iter().any(|rule| rule.allows(g, r, v)))
        .collect();
    assert!(
        denied.is_empty(),
        "deploy/kubernetes.yaml's ClusterRole does not allow {denied:?} (serve made {made:?})"
    );
}
