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

/// A `rollback watch` running in the background, its stdout read line by
/// line.
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
        let mut child = Command::new(bin())
            .args(args)
            .current_dir(dir)
            .envs(env.iter().copied())
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start rollback");
        let out = child.stdout.take().unwrap();
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
