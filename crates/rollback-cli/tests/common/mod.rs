//! Helpers of the tests through the binary: the `rollback` command, watch
//! files in temporary directories, and a watch run in the background whose
//! output a test reads line by line.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The `rollback` binary under test.
pub(crate) fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rollback"))
}

/// `rollback ARGS…`, in `dir`, with no inherited RUST_LOG.
pub(crate) fn rollback(dir: &Path) -> assert_cmd::Command {
    let mut c = assert_cmd::Command::new(bin());
    c.current_dir(dir)
        .env_remove("RUST_LOG")
        .env_remove("RUST_BACKTRACE");
    c
}

/// Write `text` to `dir/name`; its path.
pub(crate) fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The fast policy of the memory tests: measure every 100ms, one failure
/// tolerated, verify 500ms; `extra` adds or overrides lines.
pub(crate) fn policy(bake: &str, extra: &str) -> String {
    format!(
        "policy:\n  interval: 100ms\n  bake_time: {bake}\n  failure_limit: 1\n  verify: 500ms\n{extra}"
    )
}

/// A `rollback watch` (or `serve`) running in the background, its stdout
/// (or stderr) read line by line.
pub(crate) struct Running {
    pub(crate) child: Child,
    lines: mpsc::Receiver<String>,
    pub(crate) seen: Vec<String>,
}

impl Running {
    /// Start `rollback ARGS` in `dir`.
    pub(crate) fn start(dir: &Path, args: &[&str]) -> Running {
        Self::start_with(dir, args, &[])
    }

    /// Start `rollback ARGS` in `dir` with extra environment variables.
    pub(crate) fn start_with(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Running {
        Self::spawn(dir, args, env, false)
    }

    /// Start `rollback ARGS` in `dir` with extra environment variables,
    /// reading its stderr (the log of `rollback serve`) instead of stdout.
    pub(crate) fn start_logging(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Running {
        Self::spawn(dir, args, env, true)
    }

    fn spawn(dir: &Path, args: &[&str], env: &[(&str, &str)], stderr: bool) -> Running {
        let (out, err) = if stderr {
            (Stdio::null(), Stdio::piped())
        } else {
            (Stdio::piped(), Stdio::inherit())
        };
        let mut child = Command::new(bin())
            .args(args)
            .current_dir(dir)
            .envs(env.iter().copied())
            .env_remove("RUST_LOG")
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start rollback");
        let out: Box<dyn std::io::Read + Send> = match (child.stdout.take(), child.stderr.take()) {
            (Some(o), _) => Box::new(o),
            (None, Some(e)) => Box::new(e),
            (None, None) => unreachable!("one of stdout and stderr is piped"),
        };
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Wait (at most `within`) for a line containing `text`; panics with
    /// what was seen.
    pub(crate) fn wait_for(&mut self, text: &str, within: Duration) -> String {
        let deadline = std::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line with {text:?} within {within:?}; saw:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Send a signal (`INT`, `TERM`) with kill(1).
    pub(crate) fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// Wait for the exit; its code and the rest of stdout.
    pub(crate) fn finish(mut self) -> (i32, Vec<String>) {
        let status = self.child.wait().expect("wait");
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        (status.code().unwrap_or(-1), std::mem::take(&mut self.seen))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free port on 127.0.0.1 (bound, then let go, for a child to listen on).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Poll `f` every 50 ms until it gives a value; panics after `within`.
pub(crate) async fn until<T, F, Fut>(what: &str, within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not within {within:?}");
}

/// Wait (at most `within`) for a child to exit; its exit code.
pub(crate) fn exit_code_within(child: &mut Child, within: Duration) -> Option<i32> {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s.code();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the command did not exit within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
