//! Runs the `git` binary: the one place this crate starts a process.
//!
//! Driving the binary (rather than a Rust git library) keeps what users
//! already have working: credential helpers, `~/.ssh/config`, `insteadOf`
//! rewrites, proxies. Every command runs with a clean git environment (no
//! inherited `GIT_DIR`, `GIT_INDEX_FILE` and the like, so running inside a
//! git hook is safe), `GIT_TERMINAL_PROMPT=0` (a missing credential fails
//! instead of waiting for a terminal), `LC_ALL=C` (git's messages are read
//! to tell an unreachable remote from a refused push), and a timeout after
//! which the process is killed.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt as _;

use crate::GitError;

/// How long one git command may run before it is killed: 2 minutes.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// The oldest git this crate drives: `fetch --no-write-fetch-head` (2.29)
/// and `%(trailers:separator=…)` (2.24) are the newest things it uses.
pub const MINIMUM_GIT: (u32, u32) = (2, 29);

/// `(major, minor)` of `git version 2.47.3` (or `git version 2.39.5 (Apple
/// Git-154)`).
pub(crate) fn parse_version(answer: &str) -> Option<(u32, u32)> {
    let v = answer.trim().strip_prefix("git version ")?;
    let mut parts = v.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Variables of the caller's environment that would point git elsewhere
/// than the command means (set by git itself inside hooks, say).
const CLEARED: [&str; 10] = [
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_NAMESPACE",
    "GIT_COMMON_DIR",
    "GIT_QUARANTINE_PATH",
    "GIT_PREFIX",
    "GIT_NOTES_REF",
];

/// The `git` program and how it runs: which binary, extra environment
/// variables (`GIT_SSH_COMMAND`, `GIT_CONFIG_GLOBAL`, …), and the timeout of
/// each command.
///
/// ```
/// use std::time::Duration;
/// let git = rollback_git::GitClient::new()
///     .program("/usr/bin/git")
///     .env("GIT_SSH_COMMAND", "ssh -i /etc/rollback/deploy_key -o BatchMode=yes")
///     .timeout(Duration::from_secs(30));
/// assert_eq!(git.timeout_value(), Duration::from_secs(30));
/// ```
#[derive(Debug, Clone)]
pub struct GitClient {
    program: PathBuf,
    env: Vec<(OsString, OsString)>,
    timeout: Duration,
}

impl Default for GitClient {
    fn default() -> Self {
        Self::new()
    }
}

impl GitClient {
    /// `git` from `PATH`, the caller's environment, [`DEFAULT_TIMEOUT`].
    pub fn new() -> Self {
        GitClient {
            program: PathBuf::from("git"),
            env: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Run this program instead of `git` from `PATH`.
    #[must_use]
    pub fn program(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = program.into();
        self
    }

    /// Set an environment variable for every command (after the caller's
    /// environment, before what a command sets itself).
    #[must_use]
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Kill a command that runs longer than `timeout`.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The timeout of each command.
    pub fn timeout_value(&self) -> Duration {
        self.timeout
    }

    /// The program run.
    pub fn program_path(&self) -> &Path {
        &self.program
    }

    /// `git version`'s answer (`git version 2.47.3`), once the program
    /// has run and is at least [`MINIMUM_GIT`].
    pub async fn version(&self) -> Result<String, GitError> {
        let out = self
            .command(None, "running `git version`")
            .arg("version")
            .run()
            .await?;
        let answer = out.stdout_text().trim().to_owned();
        match parse_version(&answer) {
            Some(v) if v >= MINIMUM_GIT => Ok(answer),
            _ => Err(GitError::Config(format!(
                "the git program {:?} answered {answer:?}; this crate needs git {}.{} or newer",
                self.program.display().to_string(),
                MINIMUM_GIT.0,
                MINIMUM_GIT.1
            ))),
        }
    }

    /// A command in the repository `git_dir` (or outside any, for `None`).
    pub(crate) fn command<'a>(&'a self, git_dir: Option<&Path>, operation: &str) -> Command<'a> {
        let mut args = Vec::new();
        if let Some(dir) = git_dir {
            let mut flag = OsString::from("--git-dir=");
            flag.push(dir.as_os_str());
            args.push(flag);
        }
        Command {
            client: self,
            operation: operation.to_owned(),
            args,
            env: Vec::new(),
            input: None,
        }
    }
}

/// One git command being put together.
#[derive(Debug)]
pub(crate) struct Command<'a> {
    client: &'a GitClient,
    operation: String,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    input: Option<Vec<u8>>,
}

/// What a command printed, and how it ended.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: String,
    pub(crate) code: Option<i32>,
}

impl Output {
    pub(crate) fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub(crate) fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl Command<'_> {
    pub(crate) fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub(crate) fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub(crate) fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub(crate) fn envs(mut self, vars: &[(&'static str, String)]) -> Self {
        for (k, v) in vars {
            self.env.push(((*k).into(), v.into()));
        }
        self
    }

    pub(crate) fn input(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.input = Some(input.into());
        self
    }

    /// Run it; a non-zero exit is [`GitError::Command`].
    pub(crate) async fn run(self) -> Result<Output, GitError> {
        let operation = self.operation.clone();
        let out = self.output().await?;
        if out.success() {
            Ok(out)
        } else {
            Err(GitError::Command {
                operation,
                code: out.code,
                stderr: out.stderr.trim().to_owned(),
            })
        }
    }

    /// Run it, whatever its exit code; only a program that does not start
    /// or does not finish in time is an error.
    pub(crate) async fn output(self) -> Result<Output, GitError> {
        let c = self.client;
        let mut cmd = tokio::process::Command::new(&c.program);
        cmd.args(&self.args)
            .stdin(if self.input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for var in CLEARED {
            cmd.env_remove(var);
        }
        cmd.env("GIT_TERMINAL_PROMPT", "0").env("LC_ALL", "C");
        for (k, v) in c.env.iter().chain(&self.env) {
            cmd.env(k, v);
        }
        tracing::trace!(operation = %self.operation, args = ?self.args, "git");
        let mut child = cmd.spawn().map_err(|source| GitError::Spawn {
            operation: self.operation.clone(),
            program: c.program.display().to_string(),
            source,
        })?;
        let writer = match (self.input, child.stdin.take()) {
            (Some(input), Some(mut stdin)) => Some(tokio::spawn(async move {
                // A command that exits early closes its end: not our error.
                let _ = stdin.write_all(&input).await;
                let _ = stdin.shutdown().await;
            })),
            _ => None,
        };
        let out = match tokio::time::timeout(c.timeout, child.wait_with_output()).await {
            Ok(Ok(out)) => out,
            Ok(Err(source)) => {
                return Err(GitError::Spawn {
                    operation: self.operation,
                    program: c.program.display().to_string(),
                    source,
                });
            }
            // Dropping the future kills the child (kill_on_drop).
            Err(_) => {
                return Err(GitError::Timeout {
                    operation: self.operation,
                    after: c.timeout,
                });
            }
        };
        if let Some(w) = writer {
            let _ = w.await;
        }
        Ok(Output {
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            code: out.status.code(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_old_ones_are_refused() {
        assert_eq!(parse_version("git version 2.47.3\n"), Some((2, 47)));
        assert_eq!(
            parse_version("git version 2.39.5 (Apple Git-154)"),
            Some((2, 39))
        );
        assert_eq!(parse_version("git version 3.0.0.rc1"), Some((3, 0)));
        assert_eq!(parse_version("hub version 2.14"), None);
        assert!(parse_version("git version 2.28.0").unwrap() < MINIMUM_GIT);
    }

    #[tokio::test]
    async fn a_program_that_is_not_git_is_refused() {
        let e = GitClient::new()
            .program("true")
            .version()
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("answered \"\"; this crate needs git 2.29 or newer"),
            "{e}"
        );
    }
}
