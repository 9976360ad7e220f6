//! One MLflow tracking server per test binary, shared by its test processes.
//!
//! cargo-nextest runs every test in a process of its own, so a `static` in one
//! process cannot share a server. The first test process of a run starts it
//! under a watchdog owned by the runner process (the tests' parent), and
//! writes its URL to a state file; the others find it there, under a file
//! lock. The watchdog stops the server when the runner exits. Under
//! `cargo test`, where tests are threads of one process, the same code runs
//! once through a `OnceCell`.

#![allow(dead_code)]

use std::fs::File;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rollback_mlflow::local_server::{LocalMlflowServer, Owner, find_venv};
use rollback_mlflow::{MlflowClient, Tag};
use tokio::sync::OnceCell;

fn state_path(ext: &str) -> PathBuf {
    let exe = std::env::current_exe().ok();
    let stem = exe
        .as_ref()
        .and_then(|p| p.file_stem())
        .map_or("tests".into(), |s| s.to_string_lossy().into_owned());
    let runner = std::os::unix::process::parent_id();
    std::env::temp_dir().join(format!("rollback-mlflow-{stem}-{runner}.{ext}"))
}

async fn healthy(url: &str) -> bool {
    let Ok(http) = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
    else {
        return false;
    };
    matches!(http.get(format!("{url}/health")).send().await, Ok(r) if r.status().is_success())
}

async fn start_or_join() -> Result<String, String> {
    let lock_path = state_path("lock");
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("opening {}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("locking {}: {e}", lock_path.display()))?;
    let state = state_path("url");
    if let Ok(url) = std::fs::read_to_string(&state)
        && healthy(url.trim()).await
    {
        return Ok(url.trim().to_owned());
    }
    let venv = find_venv().map_err(|e| e.to_string())?;
    let runner = Owner::Process(std::os::unix::process::parent_id());
    let cleanup = [lock_path.clone(), state.clone()];
    let server = LocalMlflowServer::start_with_cleanup(&venv, runner, &cleanup)
        .await
        .map_err(|e| e.to_string())?;
    eprintln!(
        "MLflow tracking server at {} ready after {:.1?}",
        server.url(),
        server.startup_time()
    );
    let url = server.detach();
    let mut f = File::create(&state).map_err(|e| format!("writing {}: {e}", state.display()))?;
    f.write_all(url.as_bytes())
        .map_err(|e| format!("writing {}: {e}", state.display()))?;
    Ok(url)
}

/// The URL of this test binary's MLflow server, started on first use.
pub(crate) async fn server_url() -> &'static str {
    static URL: OnceCell<String> = OnceCell::const_new();
    URL.get_or_init(|| async {
        match start_or_join().await {
            Ok(url) => url,
            Err(e) => {
                panic!("the MLflow tracking server for these tests could not be started: {e}")
            }
        }
    })
    .await
}

/// A client of this test binary's server.
pub(crate) async fn client() -> MlflowClient {
    MlflowClient::new(server_url().await).expect("client")
}

/// A registered-model name no other test uses.
pub(crate) fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Create a registered model with `versions` versions (sources
/// `s3://models/<name>/<n>`, run ids `run-<n>`, tag `trained_on`), and point
/// `alias` at `alias_at` when given.
pub(crate) async fn seed(
    client: &MlflowClient,
    name: &str,
    versions: u32,
    alias: Option<(&str, u32)>,
) {
    client
        .create_registered_model(name)
        .await
        .expect("create model");
    for n in 1..=versions {
        let tags = [Tag {
            key: "trained_on".into(),
            value: format!("2026-11-{n:02}"),
        }];
        let v = client
            .create_model_version(
                name,
                &format!("s3://models/{name}/{n}"),
                Some(&format!("run-{n}")),
                &tags,
            )
            .await
            .expect("create version");
        assert_eq!(v.version, n.to_string());
    }
    if let Some((alias, at)) = alias {
        client
            .set_alias(name, alias, &at.to_string())
            .await
            .expect("set alias");
    }
}
