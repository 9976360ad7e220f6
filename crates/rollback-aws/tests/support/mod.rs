//! A moto CodeDeploy server for the tests, extended by
//! `moto_codedeploy_ext.py` (StopDeployment, statuses, paging), and helpers
//! to seed deployment groups and play the CodeDeploy agent.
//!
//! One server per test process, on a free loopback port. It exits when this
//! process does (it watches its stdin, which only this process holds).

#![allow(dead_code)]

use std::collections::{HashSet, VecDeque};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aws_sdk_codedeploy::Client;
use aws_sdk_codedeploy::config::retry::RetryConfig;
use aws_sdk_codedeploy::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_codedeploy::types::{
    DeploymentInfo, DeploymentStatus, GitHubLocation, RevisionLocation, RevisionLocationType,
};
use rollback_aws::CodeDeployTarget;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// ListDeployments page size of the test server: small, so that tests page.
pub const PAGE_SIZE: usize = 10;

/// The running server.
pub struct Moto {
    pub url: String,
    port: u16,
    _child: Mutex<Child>,
    _stdin: Mutex<ChildStdin>,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

static MOTO: OnceLock<Result<Moto, String>> = OnceLock::new();

fn venv() -> PathBuf {
    match std::env::var_os("ROLLBACK_VENV") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv"),
    }
}

fn start() -> Result<Moto, String> {
    let venv = venv();
    let python = venv.join("bin/python");
    if !python.exists() {
        return Err(format!(
            "no Python venv at {} (set ROLLBACK_VENV, or run ./scripts/test --setup-only to install moto[server])",
            venv.display()
        ));
    }
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/moto_codedeploy_ext.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .arg("--page-size")
        .arg(PAGE_SIZE.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {} {}: {e}", python.display(), script.display()))?;
    let stdin = child.stdin.take().ok_or("no stdin pipe")?;
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let stderr_pipe = child.stderr.take().ok_or("no stderr pipe")?;

    let stderr = Arc::new(Mutex::new(VecDeque::new()));
    let sink = stderr.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr_pipe).lines().map_while(Result::ok) {
            let mut lines = sink.lock().unwrap_or_else(|p| p.into_inner());
            if lines.len() >= 200 {
                lines.pop_front();
            }
            lines.push_back(line);
        }
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next();
        let _ = tx.send(first);
        // keep draining so the server never blocks on a full pipe
        for _ in lines {}
    });
    let tail = |stderr: &Arc<Mutex<VecDeque<String>>>| {
        std::thread::sleep(Duration::from_millis(200));
        let lines = stderr.lock().unwrap_or_else(|p| p.into_inner());
        lines.iter().cloned().collect::<Vec<_>>().join("\n")
    };
    let first = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Some(Ok(line))) => line,
        other => {
            let _ = child.kill();
            return Err(format!(
                "the moto CodeDeploy server did not start ({other:?}); is moto[server] installed in {}? \
                 (run ./scripts/test --setup-only)\n--- server stderr ---\n{}",
                venv.display(),
                tail(&stderr)
            ));
        }
    };
    let url = first
        .strip_prefix("READY ")
        .ok_or_else(|| {
            format!(
                "unexpected first line from the server: {first}\n{}",
                tail(&stderr)
            )
        })?
        .to_owned();
    let port = url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("no port in {url}"))?;
    Ok(Moto {
        url,
        port,
        _child: Mutex::new(child),
        _stdin: Mutex::new(stdin),
        stderr,
    })
}

/// The server of this test process, started on first use. Fails the test
/// (never skips it) when the server cannot start.
pub fn moto() -> &'static Moto {
    match MOTO.get_or_init(start) {
        Ok(m) => m,
        Err(e) => panic!("{e}"),
    }
}

impl Moto {
    /// The last lines the server wrote to stderr, for failure messages.
    pub fn stderr_tail(&self) -> String {
        let lines = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        lines
            .iter()
            .rev()
            .take(40)
            .rev()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// An SDK client for the server: dummy credentials and region, no retries.
    pub fn client(&self) -> Client {
        let conf = aws_sdk_codedeploy::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "rollback-aws-tests",
            ))
            .endpoint_url(&self.url)
            .retry_config(RetryConfig::disabled())
            .build();
        Client::from_conf(conf)
    }

    /// POST a JSON body to the extension's control endpoint.
    pub async fn control(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let body = body.to_string();
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .unwrap_or_else(|e| panic!("connecting to moto: {e}\n{}", self.stderr_tail()));
        let head = format!(
            "POST /_rollback_test/{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(body.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        assert!(
            head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
            "control {path}: {text}\n{}",
            self.stderr_tail()
        );
        serde_json::from_str(body).unwrap_or_else(|e| panic!("control {path}: {e}: {body}"))
    }

    /// How often the server has seen `action` so far.
    pub async fn calls(&self, action: &str) -> u64 {
        self.control("calls", serde_json::json!({})).await[action]
            .as_u64()
            .unwrap_or(0)
    }

    /// Make the next `times` calls of `action` whose request body contains
    /// `matching` (an application name, a deployment id) fail with an AWS error.
    pub async fn fail_next(
        &self,
        action: &str,
        matching: &str,
        code: &str,
        message: &str,
        times: u32,
    ) {
        self.control(
            "fail",
            serde_json::json!({"action": action, "match": matching, "code": code, "message": message, "times": times}),
        )
        .await;
    }
}

static GROUPS: AtomicUsize = AtomicUsize::new(0);

/// A GitHub revision of the test repository.
pub fn github(commit: &str) -> RevisionLocation {
    RevisionLocation::builder()
        .revision_type(RevisionLocationType::GitHub)
        .git_hub_location(
            GitHubLocation::builder()
                .repository("bank/payments")
                .commit_id(commit)
                .build(),
        )
        .build()
}

/// The revision id of a GitHub commit of the test repository.
pub fn github_id(commit: &str) -> String {
    format!("github:bank/payments@{commit}")
}

/// A fresh application with one deployment group on the shared server.
pub struct Group {
    pub moto: &'static Moto,
    pub client: Client,
    pub app: String,
    pub name: String,
}

impl Group {
    pub async fn new(prefix: &str) -> Group {
        let moto = moto();
        let client = moto.client();
        let n = GROUPS.fetch_add(1, Ordering::SeqCst);
        let app = format!("{prefix}-{}-{n}", std::process::id());
        let name = "payments".to_owned();
        client
            .create_application()
            .application_name(&app)
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateApplication: {e:?}\n{}", moto.stderr_tail()));
        client
            .create_deployment_group()
            .application_name(&app)
            .deployment_group_name(&name)
            .service_role_arn("arn:aws:iam::123456789012:role/CodeDeployServiceRole")
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateDeploymentGroup: {e:?}\n{}", moto.stderr_tail()));
        Group {
            moto,
            client,
            app,
            name,
        }
    }

    /// The target under test: fast polling, short stop timeout.
    pub fn target(&self) -> CodeDeployTarget {
        self.target_builder().build().unwrap()
    }

    pub fn target_builder(&self) -> rollback_aws::CodeDeployTargetBuilder {
        CodeDeployTarget::builder(self.client.clone())
            .application(&self.app)
            .deployment_group(&self.name)
            .poll_interval(Duration::from_millis(50))
            .stop_timeout(Duration::from_secs(10))
    }

    /// Create a deployment of `revision`; it stays `Created`.
    pub async fn deploy(&self, revision: RevisionLocation) -> String {
        self.client
            .create_deployment()
            .application_name(&self.app)
            .deployment_group_name(&self.name)
            .revision(revision)
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateDeployment: {e:?}\n{}", self.moto.stderr_tail()))
            .deployment_id
            .unwrap()
    }

    pub async fn set_status(&self, id: &str, status: &str) {
        self.moto
            .control(
                &format!("deployments/{id}/status"),
                serde_json::json!({"status": status}),
            )
            .await;
    }

    pub async fn fail(&self, id: &str, code: &str, message: &str) {
        self.moto
            .control(
                &format!("deployments/{id}/status"),
                serde_json::json!({"status": "Failed", "errorCode": code, "errorMessage": message}),
            )
            .await;
    }

    /// Deploy each revision in turn (oldest first), moving each to its status
    /// through `InProgress`. Returns the deployment ids, oldest first.
    pub async fn seed(&self, steps: &[(RevisionLocation, &str)]) -> Vec<String> {
        let mut ids = Vec::new();
        for (revision, status) in steps {
            let id = self.deploy(revision.clone()).await;
            if *status != "Created" {
                self.set_status(&id, "InProgress").await;
                self.set_status(&id, status).await;
            }
            ids.push(id);
        }
        ids
    }

    pub async fn deployment(&self, id: &str) -> DeploymentInfo {
        self.client
            .get_deployment()
            .deployment_id(id)
            .send()
            .await
            .unwrap()
            .deployment_info
            .unwrap()
    }

    /// Every deployment of the group (all pages, 25 at a time).
    pub async fn deployments(&self) -> Vec<DeploymentInfo> {
        all_deployments(&self.client, &self.app, &self.name).await
    }

    /// Play the CodeDeploy agent for deployments created from now on: each
    /// goes `InProgress`, then `Succeeded`, or `Failed` when it installs a
    /// commit in `failing`. Stops when the returned guard is dropped.
    pub async fn agent(&self, failing: &[&str]) -> Agent {
        let existing: HashSet<String> = self
            .deployments()
            .await
            .iter()
            .filter_map(|d| d.deployment_id.clone())
            .collect();
        let failing: HashSet<String> = failing.iter().map(|s| s.to_string()).collect();
        let client = self.client.clone();
        let (app, name, moto) = (self.app.clone(), self.name.clone(), self.moto);
        let task = tokio::spawn(async move {
            loop {
                for d in all_deployments(&client, &app, &name).await {
                    let id = d.deployment_id.clone().unwrap_or_default();
                    if existing.contains(&id) {
                        continue;
                    }
                    let commit = d
                        .revision()
                        .and_then(|r| r.git_hub_location())
                        .and_then(|g| g.commit_id())
                        .unwrap_or_default()
                        .to_owned();
                    let path = format!("deployments/{id}/status");
                    match d.status() {
                        Some(DeploymentStatus::Created) => {
                            moto.control(&path, serde_json::json!({"status": "InProgress"}))
                                .await;
                        }
                        Some(DeploymentStatus::InProgress) if failing.contains(&commit) => {
                            moto.control(
                                &path,
                                serde_json::json!({"status": "Failed", "errorCode": "SCRIPT_FAILED", "errorMessage": "ValidateService failed on 1 of 2 instances"}),
                            )
                            .await;
                        }
                        Some(DeploymentStatus::InProgress) => {
                            moto.control(&path, serde_json::json!({"status": "Succeeded"}))
                                .await;
                        }
                        _ => {}
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Agent(task)
    }
}

/// The background CodeDeploy agent; aborted on drop.
pub struct Agent(tokio::task::JoinHandle<()>);

impl Drop for Agent {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub async fn all_deployments(client: &Client, app: &str, group: &str) -> Vec<DeploymentInfo> {
    let mut ids = Vec::new();
    let mut token = None;
    loop {
        let page = client
            .list_deployments()
            .application_name(app)
            .deployment_group_name(group)
            .set_next_token(token)
            .send()
            .await
            .unwrap();
        ids.extend(page.deployments().iter().cloned());
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    let mut out = Vec::new();
    for chunk in ids.chunks(25) {
        let got = client
            .batch_get_deployments()
            .set_deployment_ids(Some(chunk.to_vec()))
            .send()
            .await
            .unwrap();
        out.extend(got.deployments_info().iter().cloned());
    }
    out
}
