//! A throwaway MLflow tracking server on a loopback port, for tests and
//! examples: `mlflow server` from a Python venv, with a SQLite registry in a
//! fresh directory.
//!
//! The server runs under a small watchdog (Python, from the same venv) that
//! stops it, and removes its directory, when its owner goes away: when the
//! [`LocalMlflowServer`] is dropped or this process exits, however it exits
//! (the watchdog watches a pipe that the OS closes), or, with
//! [`Owner::Process`], when another process ends. Static destructors do not
//! run in Rust, so nothing here relies on them.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// Why a local server could not be started.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(String);

/// Who keeps the server alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The [`LocalMlflowServer`] value: the server stops when it is dropped or
    /// when this process exits.
    This,
    /// The process with this id: the server stops when that process has
    /// exited (checked every 300 ms), so that several processes (the tests
    /// of one binary under cargo-nextest) can share it.
    Process(u32),
}

/// Where the Python venv with MLflow is: `ROLLBACK_VENV`, else `.venv` at the
/// root of this workspace (which `./scripts/test --setup-only` creates).
pub fn find_venv() -> Result<PathBuf, StartError> {
    let venv = match std::env::var_os("ROLLBACK_VENV") {
        Some(v) => PathBuf::from(v),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv"),
    };
    if venv.join("bin/mlflow").is_file() && venv.join("bin/python").exists() {
        Ok(venv)
    } else {
        Err(StartError(format!(
            "no MLflow in the Python venv {}: run ./scripts/test --setup-only at the workspace root (or point ROLLBACK_VENV at a venv with `pip install mlflow`)",
            venv.display()
        )))
    }
}

const WATCHDOG: &str = r#"
import json, os, shutil, signal, subprocess, sys, threading, time
cfg = json.loads(sys.argv[1])
log = open(cfg["log"], "ab")
env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
proc = subprocess.Popen(cfg["argv"], stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True)
def stop(code=0):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    if cfg["remove_dir"]:
        shutil.rmtree(cfg["dir"], ignore_errors=True)
    for path in cfg["also_remove"]:
        try:
            os.remove(path)
        except OSError:
            pass
    os._exit(code)
signal.signal(signal.SIGTERM, lambda *_: stop())
signal.signal(signal.SIGINT, lambda *_: stop())
owner = cfg["owner_pid"]
if owner is None:
    def pipe_closed():
        try:
            sys.stdin.buffer.read()
        finally:
            os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=pipe_closed, daemon=True).start()
while True:
    if proc.poll() is not None:
        stop(3)
    if owner is not None:
        try:
            os.kill(owner, 0)
        except ProcessLookupError:
            stop()
    time.sleep(0.3)
"#;

/// A running local MLflow tracking server.
#[derive(Debug)]
pub struct LocalMlflowServer {
    url: String,
    dir: PathBuf,
    watchdog: Option<Child>,
    pipe: Option<ChildStdin>,
    startup: Duration,
}

impl LocalMlflowServer {
    /// Start a server from the venv [`find_venv`] finds, owned by the returned value.
    pub async fn start() -> Result<Self, StartError> {
        Self::start_with(&find_venv()?, Owner::This).await
    }

    /// Start a server from `venv`, kept alive by `owner`. Tries up to three
    /// free ports (another process may take a port between the pick and the
    /// bind), and checks that the server answering is this one.
    pub async fn start_with(venv: &Path, owner: Owner) -> Result<Self, StartError> {
        Self::start_with_cleanup(venv, owner, &[]).await
    }

    /// Like [`Self::start_with`]; the watchdog also removes the files
    /// `also_remove` when it stops the server (a shared server's lock and
    /// state files, say).
    pub async fn start_with_cleanup(
        venv: &Path,
        owner: Owner,
        also_remove: &[PathBuf],
    ) -> Result<Self, StartError> {
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start(venv, owner, also_remove).await {
                Ok(s) => return Ok(s),
                Err(Attempt::Retry(why)) => last = why,
                Err(Attempt::Fatal(why)) => return Err(StartError(why)),
            }
        }
        Err(StartError(format!(
            "the MLflow server did not start on three free ports; last attempt: {last}"
        )))
    }

    async fn try_start(
        venv: &Path,
        owner: Owner,
        also_remove: &[PathBuf],
    ) -> Result<Self, Attempt> {
        let started = Instant::now();
        let port = free_port()
            .map_err(|e| Attempt::Fatal(format!("finding a free loopback port: {e}")))?;
        let dir = unique_dir()
            .map_err(|e| Attempt::Fatal(format!("creating the server's directory: {e}")))?;
        let dir_text = dir.to_string_lossy().into_owned();
        let log = dir.join("server.log");
        let argv = vec![
            venv.join("bin/mlflow").to_string_lossy().into_owned(),
            "server".into(),
            "--backend-store-uri".into(),
            format!("sqlite:///{dir_text}/mlflow.db"),
            "--default-artifact-root".into(),
            format!("{dir_text}/artifacts"),
            "--host".into(),
            "127.0.0.1".into(),
            "--port".into(),
            port.to_string(),
            "--workers".into(),
            "1".into(),
        ];
        let cfg = serde_json::json!({
            "argv": argv,
            "log": log,
            "dir": dir,
            "remove_dir": true,
            "also_remove": also_remove,
            "owner_pid": match owner { Owner::This => None, Owner::Process(pid) => Some(pid) },
        });
        let mut cmd = Command::new(venv.join("bin/python"));
        cmd.arg("-c").arg(WATCHDOG).arg(cfg.to_string());
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        match owner {
            Owner::This => {
                cmd.stdin(Stdio::piped());
            }
            Owner::Process(_) => {
                cmd.stdin(Stdio::null());
                // Out of this process's group, so that a runner ending this
                // process's group leaves the shared server to its watchdog.
                std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
            }
        }
        let mut watchdog = cmd.spawn().map_err(|e| {
            Attempt::Fatal(format!(
                "starting {} failed: {e}",
                venv.join("bin/python").display()
            ))
        })?;
        let pipe = watchdog.stdin.take();
        let mut server = LocalMlflowServer {
            url: format!("http://127.0.0.1:{port}"),
            dir: dir.clone(),
            watchdog: Some(watchdog),
            pipe,
            startup: Duration::ZERO,
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| Attempt::Fatal(format!("building an HTTP client: {e}")))?;
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(Ok(Some(status))) = server.watchdog.as_mut().map(Child::try_wait) {
                let tail = log_tail(&log);
                server.watchdog = None;
                let why = format!(
                    "the MLflow server on port {port} exited ({status}) before it was ready; its log ends:\n{tail}"
                );
                return Err(if tail.contains("address already in use") {
                    Attempt::Retry(why)
                } else {
                    Attempt::Fatal(why)
                });
            }
            if Instant::now() > deadline {
                let tail = log_tail(&log);
                return Err(Attempt::Fatal(format!(
                    "the MLflow server on port {port} was not ready after 90 s; its log ends:\n{tail}"
                )));
            }
            let healthy = matches!(http.get(format!("{}/health", server.url)).send().await, Ok(r) if r.status().is_success());
            if healthy {
                if server.is_ours(&http, &dir_text).await {
                    server.startup = started.elapsed();
                    return Ok(server);
                }
                // Another server holds the port; ours will fail to bind.
                return Err(Attempt::Retry(format!(
                    "port {port} is answered by another MLflow server"
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Whether the server answering is the one started here: the Default
    /// experiment's artifact location lies in this server's directory.
    async fn is_ours(&self, http: &reqwest::Client, dir: &str) -> bool {
        let url = format!(
            "{}/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default",
            self.url
        );
        match http.get(url).send().await {
            Ok(r) => r.text().await.is_ok_and(|body| body.contains(dir)),
            Err(_) => false,
        }
    }

    /// The tracking URI, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server's directory (SQLite database, artifacts, `server.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How long the server took to answer `/health`.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        log_tail(&self.dir.join("server.log"))
    }

    /// Leave the server to its [`Owner::Process`] owner: dropping the returned
    /// URL does not stop it.
    pub fn detach(mut self) -> String {
        self.watchdog = None;
        self.pipe = None;
        std::mem::take(&mut self.url)
    }
}

impl Drop for LocalMlflowServer {
    fn drop(&mut self) {
        // Closing the pipe tells the watchdog to stop the server; give it the
        // time to do so (killing the watchdog first would orphan the server).
        self.pipe = None;
        if let Some(mut child) = self.watchdog.take() {
            let deadline = Instant::now() + Duration::from_secs(20);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

enum Attempt {
    Retry(String),
    Fatal(String),
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn unique_dir() -> std::io::Result<PathBuf> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "rollback-mlflow-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(dir.join("artifacts"))?;
    Ok(dir)
}

fn log_tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(25)..].join("\n")
}
