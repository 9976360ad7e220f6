//! A local CodeDeploy for trying the engine out and for tests: moto's
//! CodeDeploy server (PyPI `moto[server]`), extended with what moto lacks.
//!
//! moto implements create/get/list of applications, deployment groups and
//! deployments, but not `StopDeployment`, and its deployments never leave
//! `Created`. The extension (`tests/support/moto_codedeploy_ext.py`, run
//! from memory with `python -c`) adds `StopDeployment(autoRollbackEnabled)`
//! with CodeDeploy's rollback deployment and `rollbackInfo`, paging of
//! `ListDeployments` newest first, the 25-id limit of `BatchGetDeployments`,
//! one active deployment per group, and a control endpoint to set a
//! deployment's status, inject AWS errors (before a call, or after it took
//! effect, as a lost answer) and count calls; for Lambda applications it
//! shifts the AppSpec's alias in moto's own Lambda service as CodeDeploy
//! does, and rolls a stopped Lambda deployment back by shifting the alias
//! back. An [`Agent`]
//! plays the CodeDeploy agent: it takes new deployments through
//! `InProgress` to `Succeeded` (or `Failed`).
//!
//! ```no_run
//! # async fn demo() -> rollback_core::Result<()> {
//! use rollback_aws::local::LocalCodeDeploy;
//! let server = LocalCodeDeploy::start(".venv", None)?; // a venv with moto[server]
//! let client = server.client();
//! # let _ = client; Ok(()) }
//! ```

use std::collections::{HashSet, VecDeque};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_codedeploy::Client;
use aws_sdk_codedeploy::config::retry::RetryConfig;
use aws_sdk_codedeploy::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_codedeploy::types::DeploymentStatus;
use rollback_core::{Error, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::GroupApi;

/// The server extension, kept with the tests.
const EXTENSION: &str = include_str!("../tests/support/moto_codedeploy_ext.py");

/// How long the server may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Lines of the server's stderr kept for error messages.
const STDERR_LINES: usize = 200;

/// A running moto CodeDeploy server on a free loopback port. It stops when
/// this value is dropped, and also when the process that started it exits.
#[derive(Debug)]
pub struct LocalCodeDeploy {
    url: String,
    port: u16,
    child: Mutex<Child>,
    _stdin: Mutex<ChildStdin>,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

fn tail(lines: &Mutex<VecDeque<String>>, n: usize) -> String {
    let lines = lines.lock().unwrap_or_else(|p| p.into_inner());
    let skip = lines.len().saturating_sub(n);
    lines
        .iter()
        .skip(skip)
        .cloned()
        .collect::<Vec<_>>()
        .join("\n")
}

impl LocalCodeDeploy {
    /// Start the server with the Python of `venv` (which must have
    /// `moto[server]`), listing `page_size` deployments a page (default 100).
    /// Blocks until the server listens.
    pub fn start(venv: impl AsRef<Path>, page_size: Option<usize>) -> Result<Self> {
        let venv = venv.as_ref();
        let python = venv.join("bin/python");
        if !python.exists() {
            return Err(Error::not_found(format!(
                "no Python venv at {}; create one with moto[server] (./scripts/test --setup-only does) or set ROLLBACK_VENV",
                venv.display()
            )));
        }
        Self::start_python(&python, page_size)
    }

    /// Start the server with this Python interpreter.
    pub fn start_python(python: &Path, page_size: Option<usize>) -> Result<Self> {
        let mut cmd = Command::new(python);
        cmd.arg("-c").arg(EXTENSION);
        if let Some(n) = page_size {
            cmd.arg("--page-size").arg(n.max(1).to_string());
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                Error::permanent(format!(
                    "starting the moto CodeDeploy server with {}",
                    python.display()
                ))
                .with_source(e)
            })?;
        let (Some(stdin), Some(stdout), Some(stderr_pipe)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            return Err(Error::permanent(
                "the moto CodeDeploy server has no stdio pipes",
            ));
        };
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr_pipe)
                .lines()
                .map_while(std::result::Result::ok)
            {
                let mut lines = sink.lock().unwrap_or_else(|p| p.into_inner());
                if lines.len() >= STDERR_LINES {
                    lines.pop_front();
                }
                lines.push_back(line);
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            // keep draining, so that the server never blocks on a full pipe
            for _ in lines {}
        });
        let failed = |child: &mut Child, what: String| {
            let _ = child.kill();
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(100));
            Error::permanent(format!(
                "the moto CodeDeploy server did not start: {what}; is moto[server] installed for {}?\n--- server stderr ---\n{}",
                python.display(),
                tail(&stderr, 40)
            ))
        };
        let first = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Some(Ok(line))) => line,
            Ok(_) => return Err(failed(&mut child, "it exited".into())),
            Err(_) => {
                return Err(failed(
                    &mut child,
                    format!("not ready within {START_TIMEOUT:?}"),
                ));
            }
        };
        let Some(url) = first.strip_prefix("READY ").map(str::to_owned) else {
            return Err(failed(&mut child, format!("unexpected output {first:?}")));
        };
        let Some(port) = url.rsplit(':').next().and_then(|p| p.parse().ok()) else {
            return Err(failed(&mut child, format!("no port in {url}")));
        };
        Ok(LocalCodeDeploy {
            url,
            port,
            child: Mutex::new(child),
            _stdin: Mutex::new(stdin),
            stderr,
        })
    }

    /// The endpoint URL (`http://127.0.0.1:<port>`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The last lines the server wrote to stderr, for failure messages.
    pub fn stderr_tail(&self) -> String {
        tail(&self.stderr, 40)
    }

    /// An SDK client for this server: dummy credentials, region `us-east-1`,
    /// and no SDK retries (so that tests see each failure at once).
    pub fn client(&self) -> Client {
        let conf = aws_sdk_codedeploy::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "rollback-aws-local",
            ))
            .endpoint_url(&self.url)
            .retry_config(RetryConfig::disabled())
            .build();
        Client::from_conf(conf)
    }

    /// POST a JSON body to the extension's control endpoint.
    pub async fn control(&self, path: &str, body: serde_json::Value) -> Result<serde_json::Value> {
        let failed = |what: String| {
            Error::transient(format!(
                "control call {path} to the moto CodeDeploy server: {what}"
            ))
        };
        let body = body.to_string();
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .map_err(|e| failed(e.to_string()))?;
        let head = format!(
            "POST /_rollback_test/{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream
            .write_all(head.as_bytes())
            .await
            .map_err(|e| failed(e.to_string()))?;
        stream
            .write_all(body.as_bytes())
            .await
            .map_err(|e| failed(e.to_string()))?;
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head.split_whitespace().nth(1).unwrap_or_default();
        if status != "200" {
            return Err(Error::permanent(format!(
                "control call {path} answered {head}: {body}"
            )));
        }
        serde_json::from_str(body).map_err(|e| failed(format!("{e}: {body}")))
    }

    /// Move a deployment to a status (`InProgress`, `Succeeded`, …).
    pub async fn set_status(&self, deployment: &str, status: &str) -> Result<()> {
        self.control(
            &format!("deployments/{deployment}/status"),
            serde_json::json!({"status": status}),
        )
        .await?;
        Ok(())
    }

    /// Fail a deployment with CodeDeploy error information.
    pub async fn fail_deployment(&self, deployment: &str, code: &str, message: &str) -> Result<()> {
        self.control(
            &format!("deployments/{deployment}/status"),
            serde_json::json!({"status": "Failed", "errorCode": code, "errorMessage": message}),
        )
        .await?;
        Ok(())
    }

    /// Make the next `times` calls of `action` (e.g. `CreateDeployment`)
    /// whose request body contains `matching` fail with an AWS error code.
    pub async fn fail_next(
        &self,
        action: &str,
        matching: &str,
        code: &str,
        message: &str,
        times: u32,
    ) -> Result<()> {
        self.control(
            "fail",
            serde_json::json!({"action": action, "match": matching, "code": code, "message": message, "times": times}),
        )
        .await?;
        Ok(())
    }

    /// Make the next call of `action` whose request body contains
    /// `matching` take effect, then answer `InternalFailure` (HTTP 500), as
    /// when the answer of a call that succeeded is lost on the way back.
    pub async fn lose_next_answer(&self, action: &str, matching: &str) -> Result<()> {
        self.control(
            "fail",
            serde_json::json!({
                "action": action, "match": matching, "code": "InternalFailure",
                "httpStatus": 500, "message": "the answer was lost", "times": 1, "after": true,
            }),
        )
        .await?;
        Ok(())
    }

    /// How often the server has seen `action` so far.
    pub async fn calls(&self, action: &str) -> Result<u64> {
        Ok(self.control("calls", serde_json::json!({})).await?[action]
            .as_u64()
            .unwrap_or(0))
    }

    /// Play the CodeDeploy agent for the deployment group: every deployment
    /// created from now on goes `InProgress`, then `Succeeded`, one step per
    /// `step`; deployments of a revision whose GitHub commit, S3 version or
    /// Lambda target version is in `failing` end `Failed` instead. Stops when the [`Agent`] is dropped.
    pub async fn agent(
        self: &Arc<Self>,
        application: &str,
        deployment_group: &str,
        failing: &[&str],
        step: Duration,
    ) -> Result<Agent> {
        let api = GroupApi {
            client: self.client(),
            application: application.to_owned(),
            group: deployment_group.to_owned(),
        };
        let existing: HashSet<String> = api
            .list_deployment_ids(None)
            .await
            .map_err(|e| e.into_error("starting the agent"))?
            .into_iter()
            .collect();
        let failing: HashSet<String> = failing.iter().map(|s| (*s).to_owned()).collect();
        let server = self.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Ok(ids) = api.list_deployment_ids(None).await {
                    let fresh: Vec<String> = ids
                        .into_iter()
                        .filter(|id| !existing.contains(id))
                        .collect();
                    for d in api.batch_get(&fresh).await.unwrap_or_default() {
                        let id = d.deployment_id().unwrap_or_default().to_owned();
                        let loc = d.revision();
                        let revision = crate::history::revision_of(&d);
                        let names = [
                            loc.and_then(|r| r.git_hub_location())
                                .and_then(|g| g.commit_id()),
                            loc.and_then(|r| r.s3_location()).and_then(|s| s.version()),
                            revision.lambda().map(|spec| spec.target_version.as_str()),
                        ];
                        let fails = names.iter().flatten().any(|n| failing.contains(*n));
                        let result = match d.status() {
                            Some(DeploymentStatus::Created) => {
                                server.set_status(&id, "InProgress").await
                            }
                            Some(DeploymentStatus::InProgress) if fails => {
                                server
                                    .fail_deployment(
                                        &id,
                                        "SCRIPT_FAILED",
                                        "ValidateService failed on 1 of 2 instances",
                                    )
                                    .await
                            }
                            Some(DeploymentStatus::InProgress) => {
                                server.set_status(&id, "Succeeded").await
                            }
                            _ => Ok(()),
                        };
                        if let Err(e) = result {
                            tracing::warn!(target: "rollback_aws", error = %e, "local CodeDeploy agent");
                        }
                    }
                }
                tokio::time::sleep(step).await;
            }
        });
        Ok(Agent(task))
    }
}

impl Drop for LocalCodeDeploy {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The workspace's test venv: `ROLLBACK_VENV`, else `default`.
pub fn venv_or(default: impl Into<PathBuf>) -> PathBuf {
    match std::env::var_os("ROLLBACK_VENV") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => default.into(),
    }
}

/// A background CodeDeploy agent (see [`LocalCodeDeploy::agent`]); stops on drop.
#[derive(Debug)]
pub struct Agent(tokio::task::JoinHandle<()>);

impl Drop for Agent {
    fn drop(&mut self) {
        self.0.abort();
    }
}
