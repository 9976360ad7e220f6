//! Real remotes for the tests: bare repositories seeded with a history, over
//! `file://` and over `git daemon` on a loopback port; the real `git` as the
//! reference for what they hold.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rollback_git::{GitClient, GitConfig, GitTarget};
use tempfile::TempDir;

/// The seed's first commit time (2026-11-17T22:13:20Z), an hour between
/// commits; every rollback in the tests is decided later.
pub(crate) const T0: i64 = 1_795_000_000;

/// The environment every git of the tests runs with: no user or system
/// configuration, a fixed identity.
pub(crate) const ENV: [(&str, &str); 6] = [
    ("GIT_CONFIG_GLOBAL", "/dev/null"),
    ("GIT_CONFIG_NOSYSTEM", "1"),
    ("GIT_AUTHOR_NAME", "Dev"),
    ("GIT_AUTHOR_EMAIL", "dev@example.com"),
    ("GIT_COMMITTER_NAME", "Dev"),
    ("GIT_COMMITTER_EMAIL", "dev@example.com"),
];

/// The client the targets under test use: the machine's git, without the
/// user's configuration.
pub(crate) fn client() -> GitClient {
    GitClient::new()
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .timeout(Duration::from_secs(30))
}

/// Run git in `dir` (with `args`), at commit time `at` if given; panics
/// with git's message on failure. Returns stdout.
pub(crate) fn git_at(dir: &Path, at: Option<i64>, args: &[&str]) -> String {
    let mut c = Command::new("git");
    c.current_dir(dir).args(args).envs(ENV).env("LC_ALL", "C");
    for var in ["GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"] {
        c.env_remove(var);
    }
    if let Some(t) = at {
        c.env("GIT_AUTHOR_DATE", format!("@{t} +0000"))
            .env("GIT_COMMITTER_DATE", format!("@{t} +0000"));
    }
    let out = c.output().expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// [`git_at`] without a commit time, trimmed.
pub(crate) fn git(dir: &Path, args: &[&str]) -> String {
    git_at(dir, None, args).trim().to_owned()
}

/// A bare repository and a working clone that pushes to it (the "other
/// engineer").
#[derive(Debug)]
pub(crate) struct Remote {
    /// The bare repository.
    pub(crate) bare: PathBuf,
    /// A clone with a working tree, for commits made beside the engine's.
    pub(crate) work: PathBuf,
    /// The URL targets use.
    pub(crate) url: String,
    _dir: Option<TempDir>,
}

/// The revisions of `apps/web` the seed leaves, oldest first.
#[derive(Debug, Clone)]
pub(crate) struct Seeded {
    pub(crate) web: [String; 3],
}

impl Remote {
    /// A seeded bare repository `name.git` under `base`, served at `url`.
    pub(crate) fn seed_in(base: &Path, name: &str, url: String) -> (Remote, Seeded) {
        let bare = base.join(format!("{name}.git"));
        git(
            base,
            &[
                "init",
                "--quiet",
                "--bare",
                "--initial-branch=main",
                bare.to_str().unwrap(),
            ],
        );
        let work = base.join(format!("{name}.work"));
        git(
            base,
            &[
                "init",
                "--quiet",
                "--initial-branch=main",
                work.to_str().unwrap(),
            ],
        );
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        let r = Remote {
            bare,
            work,
            url,
            _dir: None,
        };
        r.commit(
            T0,
            "web v1, api v1",
            &[
                ("apps/web/deploy.yaml", "image: web:1\n"),
                ("apps/web/service.yaml", "port: 80\n"),
                ("apps/api/deploy.yaml", "image: api:1\n"),
            ],
        );
        r.commit(
            T0 + 3600,
            "web v2",
            &[("apps/web/deploy.yaml", "image: web:2\n")],
        );
        r.commit(
            T0 + 7200,
            "api v2",
            &[("apps/api/deploy.yaml", "image: api:2\n")],
        );
        r.commit(
            T0 + 10800,
            "web v3",
            &[("apps/web/deploy.yaml", "image: web:3\n")],
        );
        r.push();
        let web = ["main~3", "main~2", "main"]
            .map(|c| git(&r.bare, &["rev-parse", &format!("{c}:apps/web")]));
        (r, Seeded { web })
    }

    /// A seeded repository over `file://`, in a directory of its own.
    pub(crate) fn seed() -> (Remote, Seeded) {
        let dir = TempDir::new().unwrap();
        let url = format!("file://{}/config.git", dir.path().display());
        let (mut r, s) = Remote::seed_in(dir.path(), "config", url);
        r._dir = Some(dir);
        (r, s)
    }

    /// Commit `files` in the working clone at `at` (not pushed).
    pub(crate) fn commit(&self, at: i64, subject: &str, files: &[(&str, &str)]) -> String {
        for (path, content) in files {
            let p = self.work.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, content).unwrap();
            git(&self.work, &["add", path]);
        }
        git_at(&self.work, Some(at), &["commit", "--quiet", "-m", subject]);
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// Push the working clone's main.
    pub(crate) fn push(&self) {
        git(&self.work, &["push", "--quiet", "origin", "main"]);
    }

    /// git in the bare repository, trimmed.
    pub(crate) fn git(&self, args: &[&str]) -> String {
        git(&self.bare, args)
    }

    /// What `path` holds at `rev` (`git rev-parse REV:PATH`).
    pub(crate) fn object(&self, rev: &str, path: &str) -> String {
        self.git(&["rev-parse", &format!("{rev}:{path}")])
    }

    /// The note on `object` under refs/notes/rollback, if any.
    pub(crate) fn note(&self, object: &str) -> Option<String> {
        let out = Command::new("git")
            .current_dir(&self.bare)
            .envs(ENV)
            .args(["notes", "--ref=rollback", "show", object])
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8(out.stdout).unwrap())
    }

    /// The commits of main, newest first: `subject` each.
    pub(crate) fn subjects(&self) -> Vec<String> {
        self.git(&["log", "--format=%s", "main"])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The config of a target on `apps/web` of main, its clone under `cache`.
    pub(crate) fn config(&self, cache: &Path) -> GitConfig {
        GitConfig::new(&self.url, "main", "apps/web").cache_dir(cache)
    }

    /// A target on `apps/web` of main, its clone under `cache`.
    pub(crate) async fn target(&self, cache: &Path) -> GitTarget {
        GitTarget::connect(&self.config(cache), Some(client()))
            .await
            .unwrap()
    }
}

/// `git daemon` serving every repository under its base directory, with
/// pushes enabled, on a free loopback port; stopped on drop.
#[derive(Debug)]
pub(crate) struct Daemon {
    child: Child,
    /// The port it listens on.
    pub(crate) port: u16,
    /// The directory it serves.
    pub(crate) base: TempDir,
}

impl Daemon {
    /// Start it; panics (a clear failure, not a skip) when `git daemon`
    /// cannot run.
    pub(crate) fn start() -> Daemon {
        Daemon::serve(true)
    }

    /// Start it without `receive-pack`: fetches work, pushes are refused.
    pub(crate) fn start_read_only() -> Daemon {
        Daemon::serve(false)
    }

    fn serve(pushes: bool) -> Daemon {
        let base = TempDir::new().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new("git")
            .envs(ENV)
            .args([
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--informative-errors",
                "--listen=127.0.0.1",
            ])
            .args(pushes.then_some("--enable=receive-pack"))
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.path().display()))
            .arg(base.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon starts (git's exec path holds git-daemon)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("git daemon exited with {status} before listening on port {port}");
            }
            assert!(
                Instant::now() < deadline,
                "git daemon did not listen on port {port} within 10s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Daemon { child, port, base }
    }

    /// A seeded repository `name.git` served by this daemon.
    pub(crate) fn seed(&self, name: &str) -> (Remote, Seeded) {
        let url = format!("git://127.0.0.1:{}/{name}.git", self.port);
        Remote::seed_in(self.base.path(), name, url)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
