//! The detailed errors of this crate, mapped onto [`rollback_core::Error`].

use std::time::Duration;

use rollback_core::{Error, ErrorKind};

/// Why a fetch from or a push to a remote failed, as git's own message
/// (in the C locale) tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RemoteFailure {
    /// No answer: connection refused, host unknown, timed out, hung up.
    Unreachable,
    /// The remote answered but refused the credentials (or asked for ones
    /// that could not be given without a terminal).
    Unauthorized,
    /// No repository at that URL.
    NoRepository,
    /// The repository has no such branch.
    NoBranch,
    /// Something else git could not do.
    Other,
}

impl RemoteFailure {
    /// Read git's message.
    pub fn of(stderr: &str) -> RemoteFailure {
        let s = stderr.to_ascii_lowercase();
        let any = |needles: &[&str]| needles.iter().any(|n| s.contains(n));
        if any(&["couldn't find remote ref"]) {
            RemoteFailure::NoBranch
        } else if any(&[
            "does not appear to be a git repository",
            "no such repository",
            "repository not found",
            "not found",
            "returned error: 404",
        ]) && !any(&["command not found", "git: not found"])
        {
            RemoteFailure::NoRepository
        } else if any(&[
            "permission denied",
            "authentication failed",
            "could not read username",
            "could not read password",
            "terminal prompts disabled",
            "returned error: 401",
            "returned error: 403",
            "access denied",
            "service not enabled",
            "host key verification failed",
        ]) {
            RemoteFailure::Unauthorized
        } else if any(&[
            "unable to connect",
            "connection refused",
            "could not resolve",
            "failed to connect",
            "couldn't connect",
            "timed out",
            "hung up unexpectedly",
            "early eof",
            "connection reset",
            "unable to access",
            "network is unreachable",
            "no route to host",
            "could not read from remote repository",
        ]) {
            RemoteFailure::Unreachable
        } else {
            RemoteFailure::Other
        }
    }

    /// The meaning for the engine.
    pub fn kind(self) -> ErrorKind {
        match self {
            RemoteFailure::Unreachable => ErrorKind::Transient,
            RemoteFailure::Unauthorized => ErrorKind::Unauthorized,
            RemoteFailure::NoRepository | RemoteFailure::NoBranch => ErrorKind::NotFound,
            RemoteFailure::Other => ErrorKind::Permanent,
        }
    }

    fn hint(self) -> &'static str {
        match self {
            RemoteFailure::Unreachable => "the remote is unreachable",
            RemoteFailure::Unauthorized => "the remote refused access",
            RemoteFailure::NoRepository => "there is no repository at that URL",
            RemoteFailure::NoBranch => "the repository has no such branch",
            RemoteFailure::Other => "git could not do it",
        }
    }

    fn advice(self) -> &'static str {
        match self {
            RemoteFailure::Unreachable => "; check the URL and the network (it is retried)",
            RemoteFailure::Unauthorized => {
                "; git's credential helpers, SSH keys and agent are used as for the user running the engine, and nothing can prompt: check what those credentials may do"
            }
            RemoteFailure::NoRepository => "; check the URL",
            RemoteFailure::NoBranch => "; `git ls-remote --heads URL` lists the branches",
            RemoteFailure::Other => "",
        }
    }
}

/// What went wrong driving git.
///
/// Every variant says what was being done (`operation`: "fetching branch
/// main of file:///srv/config.git") so that a log line or an audit record
/// names the repository; it converts into [`rollback_core::Error`] with
/// the kind the engine acts on ([`GitError::kind`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GitError {
    /// The git program did not start.
    #[error(
        "{operation}: the git program {program:?} could not be run ({source}); install git or set `git` in the target's options to its path"
    )]
    Spawn {
        /// What was being done.
        operation: String,
        /// The program.
        program: String,
        /// Why it did not start.
        source: std::io::Error,
    },
    /// A command ran past the timeout and was killed.
    #[error("{operation}: git did not finish within {}s and was stopped; raise `timeout` if the remote is slow", after.as_secs())]
    Timeout {
        /// What was being done.
        operation: String,
        /// The timeout.
        after: Duration,
    },
    /// A command that talks to the remote failed.
    #[error("{operation}: {}: {detail}{}", failure.hint(), failure.advice())]
    Remote {
        /// What was being done.
        operation: String,
        /// Why, as git's message tells it.
        failure: RemoteFailure,
        /// git's message.
        detail: String,
    },
    /// A local git command failed (in the working clone).
    #[error("{operation}: git exited with {}: {stderr}", code.map_or("a signal".to_owned(), |c| format!("code {c}")))]
    Command {
        /// What was being done.
        operation: String,
        /// The exit code (`None`: killed by a signal).
        code: Option<i32>,
        /// git's message.
        stderr: String,
    },
    /// The push was refused for a reason other than someone pushing first
    /// (a hook, a protected branch).
    #[error("{operation}: the remote refused the push: {detail}")]
    Refused {
        /// What was being done.
        operation: String,
        /// The refusal, with the remote's own lines.
        detail: String,
    },
    /// What was asked for is not in the repository.
    #[error("{0}")]
    NotFound(String),
    /// The branch moved in a way the rollback must not paper over.
    #[error("{message}")]
    Conflict {
        /// What happened and what to do.
        message: String,
        /// Whether asking again may help.
        retryable: bool,
    },
    /// The working clone or a record in the repository is not what this
    /// crate wrote.
    #[error("{0}")]
    Corrupt(String),
    /// The configuration is unusable.
    #[error("{0}")]
    Config(String),
}

impl GitError {
    /// The meaning of this error for the engine: a remote that does not
    /// answer or a timeout is `Transient`; refused credentials
    /// `Unauthorized`; a missing repository, branch, path or revision
    /// `NotFound`; a branch moved by someone else `Conflict`; a refused push
    /// or a failing local command `Permanent`; a bad option `InvalidInput`.
    pub fn kind(&self) -> ErrorKind {
        match self {
            GitError::Spawn { .. } => ErrorKind::Permanent,
            GitError::Timeout { .. } => ErrorKind::Transient,
            GitError::Remote { failure, .. } => failure.kind(),
            GitError::Command { .. } | GitError::Refused { .. } => ErrorKind::Permanent,
            GitError::NotFound(_) => ErrorKind::NotFound,
            GitError::Conflict { .. } => ErrorKind::Conflict,
            GitError::Corrupt(_) => ErrorKind::Corrupt,
            GitError::Config(_) => ErrorKind::InvalidInput,
        }
    }

    /// A remote command's failure, read from git's message.
    pub(crate) fn remote(operation: impl Into<String>, stderr: &str) -> GitError {
        GitError::Remote {
            operation: operation.into(),
            failure: RemoteFailure::of(stderr),
            detail: one_line(stderr),
        }
    }

    /// The core error, its message prefixed with `context` (the target).
    pub(crate) fn into_core(self, context: &str) -> Error {
        let kind = self.kind();
        let retryable = match &self {
            GitError::Conflict { retryable, .. } => Some(*retryable),
            _ => None,
        };
        let e = Error::new(kind, format!("target {context}: {self}"));
        match retryable {
            Some(r) => e.with_retryable(r),
            None => e,
        }
    }
}

impl From<GitError> for Error {
    fn from(e: GitError) -> Self {
        let kind = e.kind();
        match &e {
            GitError::Conflict { retryable, .. } => {
                Error::new(kind, e.to_string()).with_retryable(*retryable)
            }
            _ => Error::new(kind, e.to_string()),
        }
    }
}

/// git's message on one line: its `fatal:`/`error:` lines and the remote's
/// own, joined; hints dropped.
pub(crate) fn one_line(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("hint:"))
        .filter(|l| {
            !l.starts_with("Please make sure you have the correct access rights")
                && *l != "and the repository exists."
        })
        .collect();
    if lines.is_empty() {
        "(git printed nothing)".to_owned()
    } else {
        lines.join(" / ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_messages_tell_the_failure() {
        for (stderr, want) in [
            (
                "fatal: '/nonexistent/x.git' does not appear to be a git repository\nfatal: Could not read from remote repository.\n\nPlease make sure you have the correct access rights\nand the repository exists.",
                RemoteFailure::NoRepository,
            ),
            (
                "fatal: unable to connect to 127.0.0.1:\n127.0.0.1[0: 127.0.0.1]: errno=Connection refused",
                RemoteFailure::Unreachable,
            ),
            (
                "fatal: unable to access 'http://127.0.0.1:1/x.git/': Failed to connect to 127.0.0.1 port 1 after 0 ms: Couldn't connect to server",
                RemoteFailure::Unreachable,
            ),
            (
                "ssh: Could not resolve hostname nonexistent.invalid: Name or service not known\nfatal: Could not read from remote repository.",
                RemoteFailure::Unreachable,
            ),
            (
                "git@github.com: Permission denied (publickey).\nfatal: Could not read from remote repository.",
                RemoteFailure::Unauthorized,
            ),
            (
                "fatal: could not read Username for 'https://example.com': terminal prompts disabled",
                RemoteFailure::Unauthorized,
            ),
            (
                "fatal: remote error: service not enabled: /config.git",
                RemoteFailure::Unauthorized,
            ),
            (
                "fatal: couldn't find remote ref refs/heads/nob",
                RemoteFailure::NoBranch,
            ),
            (
                "fatal: remote error: no such repository: /missing.git",
                RemoteFailure::NoRepository,
            ),
            ("fatal: the sky fell", RemoteFailure::Other),
        ] {
            assert_eq!(RemoteFailure::of(stderr), want, "{stderr}");
        }
    }

    #[test]
    fn errors_name_what_and_where_and_map_to_kinds() {
        let e = GitError::remote(
            "fetching branch main of git://127.0.0.1:1/config.git",
            "fatal: unable to connect to 127.0.0.1:\n127.0.0.1[0: 127.0.0.1]: errno=Connection refused\n",
        );
        assert_eq!(e.kind(), ErrorKind::Transient);
        let core = e.into_core("git:git://127.0.0.1:1/config.git#main:apps/web");
        assert!(core.is_retryable());
        assert_eq!(
            core.message(),
            "target git:git://127.0.0.1:1/config.git#main:apps/web: fetching branch main of git://127.0.0.1:1/config.git: the remote is unreachable: fatal: unable to connect to 127.0.0.1: / 127.0.0.1[0: 127.0.0.1]: errno=Connection refused; check the URL and the network (it is retried)"
        );
        let c = GitError::Conflict {
            message: "moved".into(),
            retryable: false,
        }
        .into_core("t");
        assert_eq!(c.kind(), ErrorKind::Conflict);
        assert!(!c.is_retryable());
        assert_eq!(
            Error::from(GitError::NotFound("x".into())).kind(),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn one_line_keeps_the_errors_and_drops_the_hints() {
        assert_eq!(
            one_line(
                "error: failed to push some refs\nhint: Updates were rejected\nhint: use git pull\n"
            ),
            "error: failed to push some refs"
        );
        assert_eq!(one_line("\n"), "(git printed nothing)");
    }
}
