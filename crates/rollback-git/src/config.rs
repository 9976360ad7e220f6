//! Configuration: which repository, branch and path a target follows, where
//! its working clone is kept, and how rollbacks are committed.

use std::path::PathBuf;
use std::time::Duration;

use crate::{GitClient, GitError};

fn default_notes_ref() -> String {
    "refs/notes/rollback".to_owned()
}

fn default_push_attempts() -> u32 {
    3
}

fn default_history_limit() -> u32 {
    100
}

fn default_timeout() -> Duration {
    crate::client::DEFAULT_TIMEOUT
}

fn default_author_name() -> String {
    "rollback".to_owned()
}

fn default_author_email() -> String {
    "rollback@localhost".to_owned()
}

/// A Git target as written in a configuration file, for
/// [`crate::GitTarget::connect`].
///
/// ```
/// let c: rollback_git::GitConfig = serde_json::from_str(r#"{
///     "repository": "ssh://git@git.example.com/platform/config.git",
///     "branch": "main",
///     "path": "apps/web",
///     "cache_dir": "/var/cache/rollback/git",
///     "push_attempts": 5,
///     "timeout": "30s",
///     "author_name": "rollback-bot",
///     "author_email": "rollback-bot@example.com"
/// }"#).unwrap();
/// assert_eq!(c.notes_ref, "refs/notes/rollback");
/// assert_eq!(c.history_limit, 100);
/// assert_eq!(c.timeout, std::time::Duration::from_secs(30));
/// c.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct GitConfig {
    /// The repository, as `git clone` takes it: `file:///srv/config.git`,
    /// `ssh://git@host/org/config.git`, `https://host/org/config.git`,
    /// `git://host/config.git`, `git@host:org/config.git`.
    pub repository: String,
    /// The branch Argo CD or Flux deploys from (`main`).
    pub branch: String,
    /// The directory (or single file) the target follows, relative to the
    /// repository's root (`apps/web`); `.` for the whole tree.
    pub path: String,
    /// Where the target keeps its working clone (a bare repository per
    /// remote, shared by the targets of one repository). Default
    /// `$XDG_CACHE_HOME/rollback/git`, else `~/.cache/rollback/git`, else
    /// `rollback-git` in the system's temporary directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<PathBuf>,
    /// The git program. Default `git` from `PATH`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<PathBuf>,
    /// The ref health marks are kept under, as git notes on the path's
    /// tree. Default `refs/notes/rollback`.
    #[serde(default = "default_notes_ref")]
    pub notes_ref: String,
    /// How many pushes one rollback (or mark) tries when each is rejected
    /// because someone else pushed first, re-fetching and rebuilding in
    /// between, before it escalates. Default 3.
    #[serde(default = "default_push_attempts")]
    pub push_attempts: u32,
    /// How many of the newest commits that changed the path the history
    /// reads (a restore commit that recreates an old tree counts as that
    /// revision). Default 100.
    #[serde(default = "default_history_limit")]
    pub history_limit: u32,
    /// How long one git command (a fetch, a push) may run. Default `2m`.
    #[serde(default = "default_timeout", with = "rollback_core::time::duration")]
    pub timeout: Duration,
    /// The author and committer name of rollback commits and marks.
    /// Default `rollback`.
    #[serde(default = "default_author_name")]
    pub author_name: String,
    /// The author and committer email of rollback commits and marks.
    /// Default `rollback@localhost`.
    #[serde(default = "default_author_email")]
    pub author_email: String,
}

impl GitConfig {
    /// A target on `path` of `branch` in `repository`, with the defaults.
    pub fn new(
        repository: impl Into<String>,
        branch: impl Into<String>,
        path: impl Into<String>,
    ) -> Self {
        GitConfig {
            repository: repository.into(),
            branch: branch.into(),
            path: path.into(),
            cache_dir: None,
            git: None,
            notes_ref: default_notes_ref(),
            push_attempts: default_push_attempts(),
            history_limit: default_history_limit(),
            timeout: default_timeout(),
            author_name: default_author_name(),
            author_email: default_author_email(),
        }
    }

    /// Keep the working clone under `dir`.
    #[must_use]
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Try `attempts` pushes before escalating.
    #[must_use]
    pub fn push_attempts(mut self, attempts: u32) -> Self {
        self.push_attempts = attempts;
        self
    }

    /// Read the newest `limit` commits that changed the path.
    #[must_use]
    pub fn history_limit(mut self, limit: u32) -> Self {
        self.history_limit = limit;
        self
    }

    /// Check every field without running anything; an error names the field.
    pub fn validate(&self) -> Result<(), GitError> {
        validate_repository(&self.repository)?;
        validate_branch(&self.branch)?;
        normalize_path(&self.path)?;
        validate_notes_ref(&self.notes_ref)?;
        if self.push_attempts == 0 {
            return Err(GitError::Config(
                "field `push_attempts` must be at least 1".into(),
            ));
        }
        if self.history_limit == 0 {
            return Err(GitError::Config(
                "field `history_limit` must be at least 1".into(),
            ));
        }
        if self.timeout.is_zero() {
            return Err(GitError::Config("field `timeout` must not be zero".into()));
        }
        for (field, value) in [
            ("author_name", &self.author_name),
            ("author_email", &self.author_email),
        ] {
            if value.trim().is_empty() || value.contains(['<', '>', '\n', '\0']) {
                return Err(GitError::Config(format!(
                    "field `{field}` {value:?} must be non-empty, on one line, without `<` or `>`"
                )));
            }
        }
        Ok(())
    }

    /// The git client this configuration describes.
    pub fn client(&self) -> GitClient {
        let c = GitClient::new().timeout(self.timeout);
        match &self.git {
            Some(p) => c.program(p),
            None => c,
        }
    }

    /// The cache directory in use: `cache_dir`, or the default.
    pub fn resolved_cache_dir(&self) -> PathBuf {
        self.cache_dir.clone().unwrap_or_else(default_cache_dir)
    }
}

/// `$XDG_CACHE_HOME/rollback/git`, else `~/.cache/rollback/git`, else the
/// temporary directory's `rollback-git`.
pub(crate) fn default_cache_dir() -> PathBuf {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(x) = var("XDG_CACHE_HOME") {
        PathBuf::from(x).join("rollback").join("git")
    } else if let Some(h) = var("HOME") {
        PathBuf::from(h).join(".cache").join("rollback").join("git")
    } else {
        std::env::temp_dir().join("rollback-git")
    }
}

fn validate_repository(repository: &str) -> Result<(), GitError> {
    let bad = |why: &str| {
        Err(GitError::Config(format!(
            "field `repository` {:?} {why}",
            redact(repository)
        )))
    };
    if repository.trim().is_empty() {
        bad("is empty")
    } else if repository.starts_with('-') {
        bad("starts with `-`, which git would read as an option")
    } else if repository.chars().any(char::is_control) {
        bad("holds a control character")
    } else if repository != repository.trim() {
        bad("starts or ends with white space")
    } else {
        Ok(())
    }
}

/// The rules of `git check-ref-format --branch` that matter here.
fn validate_branch(branch: &str) -> Result<(), GitError> {
    let bad = |why: &str| {
        Err(GitError::Config(format!(
            "field `branch` {branch:?} is not a branch name git accepts: {why}"
        )))
    };
    let name = branch.strip_prefix("refs/heads/").unwrap_or(branch);
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.starts_with('-') || name.starts_with('/') || name.ends_with('/') {
        return bad("it starts with `-` or `/`, or ends with `/`");
    }
    if name.ends_with('.') || name.ends_with(".lock") || name == "@" {
        return bad("it ends with `.` or `.lock`, or is `@`");
    }
    if name.contains("..") || name.contains("@{") || name.contains("//") {
        return bad("it holds `..`, `@{` or `//`");
    }
    if name
        .chars()
        .any(|c| c.is_control() || c == ' ' || "~^:?*[\\".contains(c))
    {
        return bad("it holds a space, a control character or one of ~^:?*[\\");
    }
    if name.split('/').any(|c| c.starts_with('.')) {
        return bad("a component starts with `.`");
    }
    Ok(())
}

fn validate_notes_ref(notes_ref: &str) -> Result<(), GitError> {
    let Some(rest) = notes_ref.strip_prefix("refs/notes/") else {
        return Err(GitError::Config(format!(
            "field `notes_ref` {notes_ref:?} must start with refs/notes/ (git notes live there)"
        )));
    };
    validate_branch(rest).map_err(|_| {
        GitError::Config(format!(
            "field `notes_ref` {notes_ref:?} is not a ref name git accepts"
        ))
    })
}

/// The path as git names it inside a tree: no leading `./` or `/`, no
/// trailing `/`; `.` (or an empty path) is the whole tree.
pub(crate) fn normalize_path(path: &str) -> Result<String, GitError> {
    let bad = |why: &str| {
        Err(GitError::Config(format!(
            "field `path` {path:?} {why}; give a directory or file relative to the repository's root, like apps/web, or . for the whole tree"
        )))
    };
    if path.chars().any(char::is_control) {
        return bad("holds a control character");
    }
    let trimmed = path.trim_matches('/');
    let trimmed = trimmed.strip_prefix("./").unwrap_or(trimmed);
    if trimmed.is_empty() || trimmed == "." {
        return Ok(".".to_owned());
    }
    let parts: Vec<&str> = trimmed.split('/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return bad("has an empty, `.` or `..` component");
    }
    if parts.iter().any(|p| p.eq_ignore_ascii_case(".git")) {
        return bad("names a .git directory");
    }
    Ok(parts.join("/"))
}

/// The branch without `refs/heads/`.
pub(crate) fn branch_name(branch: &str) -> &str {
    branch.strip_prefix("refs/heads/").unwrap_or(branch)
}

/// The repository with any password in its URL replaced by `***`, for ids
/// and messages: `https://bot:***@git.example.com/config.git`.
pub fn redact(repository: &str) -> String {
    let Some((scheme, rest)) = repository.split_once("://") else {
        return repository.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = match userinfo.split_once(':') {
                Some((user, _password)) => format!("{user}:***"),
                None => userinfo.to_owned(),
            };
            format!("{scheme}://{user}@{host}{path}")
        }
        None => repository.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_and_unknown_fields_are_named() {
        let c: GitConfig = serde_json::from_str(
            r#"{"repository": "file:///srv/config.git", "branch": "main", "path": "apps/web"}"#,
        )
        .unwrap();
        assert_eq!(
            c,
            GitConfig::new("file:///srv/config.git", "main", "apps/web")
        );
        assert_eq!(c.push_attempts, 3);
        assert_eq!(c.timeout, Duration::from_secs(120));
        let back: GitConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let e = serde_json::from_str::<GitConfig>(
            r#"{"repository": "r", "branch": "main", "path": "p", "brnch": "x"}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("brnch"), "{e}");
        let e = serde_json::from_str::<GitConfig>(
            r#"{"repository": "r", "branch": "main", "path": "p", "timeout": "soon"}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("invalid duration \"soon\""), "{e}");
    }

    #[test]
    fn bad_fields_are_named() {
        let check = |c: GitConfig| c.validate().unwrap_err().to_string();
        let base = || GitConfig::new("file:///srv/config.git", "main", "apps/web");
        for (c, says) in [
            (
                GitConfig::new("", "main", "apps/web"),
                "field `repository` \"\" is empty",
            ),
            (
                GitConfig::new("--upload-pack=evil", "main", "x"),
                "starts with `-`",
            ),
            (
                GitConfig::new("file:///r", "ma in", "x"),
                "field `branch` \"ma in\"",
            ),
            (GitConfig::new("file:///r", "a..b", "x"), "`..`"),
            (GitConfig::new("file:///r", "x.lock", "x"), "`.lock`"),
            (GitConfig::new("file:///r", "main", "apps/../etc"), "`..`"),
            (GitConfig::new("file:///r", "main", "a/.git/b"), ".git"),
            (base().push_attempts(0), "`push_attempts`"),
        ] {
            let e = check(c);
            assert!(e.contains(says), "{e}");
        }
        let mut c = base();
        c.notes_ref = "refs/rollback".into();
        assert!(check(c).contains("refs/notes/"));
        let mut c = base();
        c.author_email = "a <b>".into();
        assert!(check(c).contains("author_email"));
        assert!(
            GitConfig::new("file:///r", "refs/heads/main", "x")
                .validate()
                .is_ok()
        );
        assert!(
            GitConfig::new("file:///r", "release/2026.11", "x")
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn paths_are_normalized() {
        for (given, want) in [
            ("apps/web", "apps/web"),
            ("/apps/web/", "apps/web"),
            ("./apps/web", "apps/web"),
            (".", "."),
            ("", "."),
            ("/", "."),
            ("config.yaml", "config.yaml"),
        ] {
            assert_eq!(normalize_path(given).unwrap(), want, "{given}");
        }
        assert!(normalize_path("apps//web").is_err());
    }

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact("https://bot:s3cret@git.example.com/config.git"),
            "https://bot:***@git.example.com/config.git"
        );
        assert_eq!(
            redact("ssh://git@git.example.com/config.git"),
            "ssh://git@git.example.com/config.git"
        );
        assert_eq!(redact("file:///srv/a@b.git"), "file:///srv/a@b.git");
        assert_eq!(redact("git@host:org/x.git"), "git@host:org/x.git");
        let e = GitConfig::new("https://bot:s3cret@h/x.git", "main", "a/../b")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(!e.contains("s3cret"), "{e}");
    }
}
