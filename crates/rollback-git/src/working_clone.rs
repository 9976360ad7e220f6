//! The working clone a target keeps in its cache directory: a bare
//! repository that fetches the branch and the notes ref, reads history and
//! trees, builds commits and notes with plumbing commands (no working tree
//! is ever checked out), and pushes.
//!
//! The remote is the truth: every operation fetches first, with forced
//! refspecs and `--prune`, so whatever an interrupted operation left in the
//! clone (a commit never pushed, a note written locally) is replaced by what
//! the remote holds. Operations take an exclusive lock on the clone (a file
//! lock, so targets in other processes sharing the cache wait too).

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rollback_core::Timestamp;

use crate::GitError;
use crate::client::{Command, GitClient};
use crate::error::one_line;

/// The kind of object at a path: a directory or a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ObjectKind {
    Tree,
    Blob,
}

impl ObjectKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Tree => "tree",
            ObjectKind::Blob => "blob",
        }
    }
}

/// One entry of a tree, as `git ls-tree` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TreeEntry {
    pub(crate) mode: String,
    pub(crate) kind: String,
    pub(crate) id: String,
    pub(crate) name: String,
}

/// A commit of the branch that changed the path, newest first.
#[derive(Debug, Clone)]
pub(crate) struct PathCommit {
    pub(crate) commit: String,
    /// Committer time, in seconds since the epoch.
    pub(crate) time: i64,
    pub(crate) author: String,
    pub(crate) subject: String,
    /// The trailers of its message, unfolded, in order.
    pub(crate) trailers: Vec<(String, String)>,
    /// What the path holds at this commit (`None`: the commit deleted it).
    pub(crate) object: Option<(ObjectKind, String)>,
}

impl PathCommit {
    /// The value of the last trailer `key` (case-insensitive, as git reads them).
    pub(crate) fn trailer(&self, key: &str) -> Option<&str> {
        self.trailers
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn object_id(&self) -> Option<&str> {
        self.object.as_ref().map(|(_, id)| id.as_str())
    }
}

/// The remote's tips after a fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tips {
    pub(crate) branch: String,
    pub(crate) notes: Option<String>,
}

/// One ref a push moves: from `old` (`None`: the ref must not exist yet)
/// to `new`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RefUpdate {
    pub(crate) refname: String,
    pub(crate) old: Option<String>,
    pub(crate) new: String,
}

/// How a push ended, when it reached the remote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Every ref moved (or, for a dry run, would move).
    Done,
    /// Someone pushed first: the refs are not where the push was built on.
    Raced(String),
    /// The remote cannot take an atomic push.
    AtomicUnsupported,
}

/// The exclusive lock on a working clone, held while it lives.
#[derive(Debug)]
pub(crate) struct Lock {
    _file: File,
}

/// Author and committer of what the clone writes, at the engine's time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) name: String,
    pub(crate) email: String,
}

impl Identity {
    /// The environment that makes git write this identity at `at` (the
    /// engine's time, never the wall clock), so the same request builds the
    /// same commit on the same tip.
    pub(crate) fn env(&self, at: Timestamp) -> Vec<(&'static str, String)> {
        let date = format!("@{} +0000", at.as_millis().div_euclid(1000).max(0));
        vec![
            ("GIT_AUTHOR_NAME", self.name.clone()),
            ("GIT_AUTHOR_EMAIL", self.email.clone()),
            ("GIT_COMMITTER_NAME", self.name.clone()),
            ("GIT_COMMITTER_EMAIL", self.email.clone()),
            ("GIT_AUTHOR_DATE", date.clone()),
            ("GIT_COMMITTER_DATE", date),
        ]
    }
}

/// A bare clone of one remote in the cache directory.
#[derive(Debug)]
pub(crate) struct WorkingClone {
    client: GitClient,
    repository: String,
    shown: String,
    cache_dir: PathBuf,
    dir: PathBuf,
    lock_path: PathBuf,
}

/// FNV-1a, 64 bits: a stable name for a repository's clone.
fn fnv64(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `config-1f2e3d4c5b6a7988`: the repository's last name and a hash of its
/// whole URL.
fn clone_name(repository: &str) -> String {
    let last = repository
        .trim_end_matches('/')
        .rsplit(['/', ':', '\\'])
        .next()
        .unwrap_or("");
    let last = last.strip_suffix(".git").unwrap_or(last);
    let mut name: String = last
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
        .take(40)
        .collect();
    if name.is_empty() || name.starts_with('.') {
        name.insert_str(0, "repo");
    }
    format!("{name}-{:016x}", fnv64(repository))
}

impl WorkingClone {
    pub(crate) fn new(client: GitClient, repository: &str, cache_dir: PathBuf) -> Self {
        let name = clone_name(repository);
        WorkingClone {
            client,
            repository: repository.to_owned(),
            shown: crate::config::redact(repository),
            dir: cache_dir.join(format!("{name}.git")),
            lock_path: cache_dir.join(format!("{name}.lock")),
            cache_dir,
        }
    }

    /// The repository as messages show it (no password).
    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }

    /// The bare repository on disk.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn git(&self, operation: &str) -> Command<'_> {
        self.client.command(Some(&self.dir), operation)
    }

    /// Take the clone's lock (waiting up to the client's timeout for another
    /// operation, in this process or another, to finish), creating the
    /// clone if it is not there yet.
    pub(crate) async fn lock(&self) -> Result<Lock, GitError> {
        let io = |what: &str, path: &Path, e: std::io::Error| {
            GitError::Config(format!(
                "{what} {} for the working clone of {}: {e}; set `cache_dir` to a directory the engine may write",
                path.display(),
                self.shown
            ))
        };
        std::fs::create_dir_all(&self.cache_dir)
            .map_err(|e| io("cannot create the cache directory", &self.cache_dir, e))?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock_path)
            .map_err(|e| io("cannot open the lock file", &self.lock_path, e))?;
        let deadline = tokio::time::Instant::now() + self.client.timeout_value();
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(GitError::Conflict {
                        message: format!(
                            "the working clone {} of {} stayed locked by another operation for {}s; is another engine stuck on it?",
                            self.dir.display(),
                            self.shown,
                            self.client.timeout_value().as_secs()
                        ),
                        retryable: true,
                    });
                }
                Err(TryLockError::Error(e)) => {
                    return Err(io("cannot lock", &self.lock_path, e));
                }
            }
        }
        let lock = Lock { _file: file };
        if self.dir.join("HEAD").is_file() {
            self.remove_stale_git_locks();
        } else {
            self.init().await?;
        }
        Ok(lock)
    }

    /// Remove the lock files a git killed mid-command left in the clone
    /// (`refs/…/main.lock`, `packed-refs.lock`, …): with the clone's own
    /// lock held no other git works in it, so any such file is stale, and
    /// left there it would fail every later fetch.
    fn remove_stale_git_locks(&self) {
        fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, found);
                } else if p.extension().is_some_and(|x| x == "lock") {
                    found.push(p);
                }
            }
        }
        let mut stale = Vec::new();
        walk(&self.dir.join("refs"), &mut stale);
        for name in [
            "packed-refs.lock",
            "HEAD.lock",
            "config.lock",
            "index.lock",
            "shallow.lock",
        ] {
            let p = self.dir.join(name);
            if p.is_file() {
                stale.push(p);
            }
        }
        for p in stale {
            tracing::warn!(lock = %p.display(), "removing a lock file a killed git left in the working clone");
            let _ = std::fs::remove_file(&p);
        }
    }

    /// Create the bare clone beside its final place, then move it there, so
    /// a half-made clone is never used.
    async fn init(&self) -> Result<(), GitError> {
        let tmp = self
            .dir
            .with_extension(format!("init-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let op = format!("creating the working clone of {}", self.shown);
        self.client
            .command(None, &op)
            .args(["init", "--bare", "--quiet"])
            .arg(&tmp)
            .run()
            .await?;
        for (key, value) in [
            ("gc.autoDetach", "false"),
            ("core.logAllRefUpdates", "false"),
        ] {
            self.client
                .command(Some(&tmp), &op)
                .args(["config", key, value])
                .run()
                .await?;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        std::fs::rename(&tmp, &self.dir).map_err(|e| {
            GitError::Config(format!(
                "{op}: cannot move {} to {}: {e}",
                tmp.display(),
                self.dir.display()
            ))
        })
    }

    /// Fetch the branch and the notes ref as the remote holds them now.
    pub(crate) async fn fetch(&self, branch: &str, notes_ref: &str) -> Result<Tips, GitError> {
        let op = format!("fetching branch {branch} of {}", self.shown);
        let out = self
            .git(&op)
            .args([
                "fetch",
                "--quiet",
                "--no-tags",
                "--prune",
                "--no-write-fetch-head",
                "--no-recurse-submodules",
                "--",
            ])
            .arg(&self.repository)
            .arg(format!("+refs/heads/{branch}:refs/remotes/origin/{branch}"))
            // The star matches nothing too: this fetches the notes ref
            // when it exists, and prunes it here when it does not.
            .arg(format!("+{notes_ref}*:{notes_ref}*"))
            .output()
            .await?;
        if !out.success() {
            return Err(GitError::remote(op, &out.stderr));
        }
        let remote_branch = format!("refs/remotes/origin/{branch}");
        let refs = self
            .git(&op)
            .args(["for-each-ref", "--format=%(objectname) %(refname)"])
            .arg(&remote_branch)
            .arg(notes_ref)
            .run()
            .await?
            .stdout_text();
        let mut tips = Tips {
            branch: String::new(),
            notes: None,
        };
        for line in refs.lines() {
            match line.split_once(' ') {
                Some((id, name)) if name == remote_branch => tips.branch = id.to_owned(),
                Some((id, name)) if name == notes_ref => tips.notes = Some(id.to_owned()),
                _ => {}
            }
        }
        if tips.branch.is_empty() {
            return Err(GitError::Corrupt(format!(
                "{op}: the fetch succeeded but {remote_branch} is not in the working clone {}",
                self.dir.display()
            )));
        }
        Ok(tips)
    }

    /// The newest `limit` commits of the branch's first-parent history that
    /// changed `path` (`.`: every commit), each with what the path holds.
    pub(crate) async fn path_log(
        &self,
        tip: &str,
        path: &str,
        limit: u32,
    ) -> Result<Vec<PathCommit>, GitError> {
        let op = format!("reading the history of {path} in {}", self.shown);
        let mut cmd = self
            .git(&op)
            .env("GIT_LITERAL_PATHSPECS", "1")
            .args(["log", "--first-parent", "--no-color"])
            .arg(format!("--max-count={limit}"))
            .arg("--format=%H%x1f%ct%x1f%an <%ae>%x1f%s%x1f%(trailers:only,unfold,separator=%x1e)%x1d")
            .arg(tip);
        if path != "." {
            cmd = cmd.args(["--", path]);
        }
        let text = cmd.run().await?.stdout_text();
        let mut commits = Vec::new();
        for record in text.split('\x1d') {
            let record = record.trim_start_matches('\n');
            if record.is_empty() {
                continue;
            }
            let f: Vec<&str> = record.split('\x1f').collect();
            let [commit, time, author, subject, trailers] = f[..] else {
                return Err(GitError::Corrupt(format!(
                    "{op}: git log printed a record this crate cannot read: {record:?}"
                )));
            };
            commits.push(PathCommit {
                commit: commit.to_owned(),
                time: time.parse().unwrap_or(0),
                author: author.to_owned(),
                subject: subject.to_owned(),
                trailers: trailers
                    .split('\x1e')
                    .filter_map(|t| t.split_once(':'))
                    .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                    .collect(),
                object: None,
            });
        }
        let names: Vec<String> = commits
            .iter()
            .map(|c| object_name(&c.commit, path))
            .collect();
        let objects = self.batch_check(&names, &op).await?;
        for (c, o) in commits.iter_mut().zip(objects) {
            c.object = o;
        }
        Ok(commits)
    }

    /// `git cat-file --batch-check` over `names`: each one's kind and id,
    /// `None` when missing (or neither a tree nor a blob).
    async fn batch_check(
        &self,
        names: &[String],
        op: &str,
    ) -> Result<Vec<Option<(ObjectKind, String)>>, GitError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut input = names.join("\n");
        input.push('\n');
        let text = self
            .git(op)
            .args(["cat-file", "--batch-check=%(objectname) %(objecttype)"])
            .input(input)
            .run()
            .await?
            .stdout_text();
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() != names.len() {
            return Err(GitError::Corrupt(format!(
                "{op}: git cat-file answered {} lines for {} objects",
                lines.len(),
                names.len()
            )));
        }
        Ok(lines
            .iter()
            .map(|l| match l.split_once(' ') {
                Some((id, "tree")) => Some((ObjectKind::Tree, id.to_owned())),
                Some((id, "blob")) => Some((ObjectKind::Blob, id.to_owned())),
                _ => None,
            })
            .collect())
    }

    /// The notes of `notes_ref` on each of `objects` that has one.
    pub(crate) async fn notes(
        &self,
        notes_ref: &str,
        objects: &[&str],
    ) -> Result<HashMap<String, String>, GitError> {
        let op = format!("reading the notes {notes_ref} of {}", self.shown);
        let listed = self
            .git(&op)
            .args(["notes", "--ref", notes_ref, "list"])
            .run()
            .await?
            .stdout_text();
        let wanted: Vec<(String, String)> = listed
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(_, object)| objects.contains(object))
            .map(|(note, object)| (note.to_owned(), object.to_owned()))
            .collect();
        if wanted.is_empty() {
            return Ok(HashMap::new());
        }
        let mut input = wanted
            .iter()
            .map(|(note, _)| note.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        input.push('\n');
        let out = self
            .git(&op)
            .args(["cat-file", "--batch"])
            .input(input)
            .run()
            .await?
            .stdout;
        let contents = parse_batch(&out).ok_or_else(|| {
            GitError::Corrupt(format!(
                "{op}: git cat-file --batch printed what this crate cannot read"
            ))
        })?;
        Ok(wanted
            .into_iter()
            .map(|(note, object)| (object, contents.get(&note).cloned().unwrap_or_default()))
            .collect())
    }

    /// The entry `path` names at `commit` (`.`: the commit's root tree).
    pub(crate) async fn entry_at(
        &self,
        commit: &str,
        path: &str,
    ) -> Result<Option<TreeEntry>, GitError> {
        let op = format!("reading {path} at commit {commit} of {}", self.shown);
        if path == "." {
            let id = self
                .git(&op)
                .args(["rev-parse", "--verify", "--quiet"])
                .arg(format!("{commit}^{{tree}}"))
                .run()
                .await?
                .stdout_text();
            return Ok(Some(TreeEntry {
                mode: "040000".into(),
                kind: "tree".into(),
                id: id.trim().to_owned(),
                name: String::new(),
            }));
        }
        let out = self
            .git(&op)
            .env("GIT_LITERAL_PATHSPECS", "1")
            .args(["ls-tree", "-z", "--full-tree"])
            .arg(commit)
            .args(["--", path])
            .run()
            .await?
            .stdout;
        Ok(parse_ls_tree(&out).into_iter().find(|e| e.name == path))
    }

    async fn ls_tree(&self, tree: &str, op: &str) -> Result<Vec<TreeEntry>, GitError> {
        let out = self
            .git(op)
            .args(["ls-tree", "-z"])
            .arg(tree)
            .run()
            .await?
            .stdout;
        Ok(parse_ls_tree(&out))
    }

    async fn mktree(&self, entries: &[TreeEntry], op: &str) -> Result<String, GitError> {
        let mut input = Vec::new();
        for e in entries {
            input.extend_from_slice(
                format!("{} {} {}\t{}", e.mode, e.kind, e.id, e.name).as_bytes(),
            );
            input.push(0);
        }
        let id = self
            .git(op)
            .args(["mktree", "-z"])
            .input(input)
            .run()
            .await?
            .stdout_text();
        Ok(id.trim().to_owned())
    }

    /// The tree `root` with `path` replaced by `entry` (its mode, kind and
    /// id; its name is the path's last component), built bottom-up with
    /// `git mktree`.
    pub(crate) async fn replace(
        &self,
        root: &str,
        path: &str,
        entry: &TreeEntry,
    ) -> Result<String, GitError> {
        if path == "." {
            return Ok(entry.id.clone());
        }
        let op = format!("building the tree that restores {path} in {}", self.shown);
        let parts: Vec<&str> = path.split('/').collect();
        // The trees along the path, root first.
        let mut trees = vec![root.to_owned()];
        for part in &parts[..parts.len() - 1] {
            let listing = self
                .ls_tree(trees.last().map_or("", String::as_str), &op)
                .await?;
            match listing
                .into_iter()
                .find(|e| e.name == *part && e.kind == "tree")
            {
                Some(e) => trees.push(e.id),
                None => {
                    return Err(GitError::NotFound(format!(
                        "{op}: directory {part} of {path} does not exist at the branch's tip"
                    )));
                }
            }
        }
        let mut child = TreeEntry {
            name: parts[parts.len() - 1].to_owned(),
            ..entry.clone()
        };
        for (i, tree) in trees.iter().enumerate().rev() {
            let mut listing = self.ls_tree(tree, &op).await?;
            listing.retain(|e| e.name != child.name);
            listing.push(child);
            let id = self.mktree(&listing, &op).await?;
            child = TreeEntry {
                mode: "040000".into(),
                kind: "tree".into(),
                id,
                name: if i > 0 {
                    parts[i - 1].to_owned()
                } else {
                    String::new()
                },
            };
        }
        Ok(child.id)
    }

    /// The root tree of `commit`.
    pub(crate) async fn root_tree(&self, commit: &str) -> Result<String, GitError> {
        Ok(self
            .entry_at(commit, ".")
            .await?
            .map(|e| e.id)
            .unwrap_or_default())
    }

    /// A commit of `tree` on `parent` with `message`, by `identity` at `at`.
    pub(crate) async fn commit_tree(
        &self,
        tree: &str,
        parent: &str,
        message: &str,
        identity: &Identity,
        at: Timestamp,
    ) -> Result<String, GitError> {
        let op = format!(
            "writing the rollback commit in the working clone of {}",
            self.shown
        );
        let id = self
            .git(&op)
            .envs(&identity.env(at))
            .args(["commit-tree", tree, "-p", parent, "-F", "-"])
            .input(message.as_bytes().to_vec())
            .run()
            .await?
            .stdout_text();
        Ok(id.trim().to_owned())
    }

    /// Write `content` as the note of `object` in the clone's `notes_ref`
    /// (on top of what was fetched); the new tip of the notes ref.
    pub(crate) async fn write_note(
        &self,
        notes_ref: &str,
        object: &str,
        content: &str,
        identity: &Identity,
        at: Timestamp,
    ) -> Result<String, GitError> {
        let op = format!(
            "writing a health mark in the working clone of {}",
            self.shown
        );
        self.git(&op)
            .envs(&identity.env(at))
            .args([
                "notes", "--ref", notes_ref, "add", "--force", "-F", "-", object,
            ])
            .input(content.as_bytes().to_vec())
            .run()
            .await?;
        let tip = self
            .git(&op)
            .args(["rev-parse", "--verify", notes_ref])
            .run()
            .await?
            .stdout_text();
        Ok(tip.trim().to_owned())
    }

    /// Whether `object` is in the clone.
    pub(crate) async fn has_object(&self, object: &str) -> Result<bool, GitError> {
        let op = format!("looking up object {object} in {}", self.shown);
        Ok(self
            .git(&op)
            .args(["cat-file", "-e", "--"])
            .arg(format!("{object}^{{object}}"))
            .output()
            .await?
            .success())
    }

    /// Push `updates`, each only if its ref is still at `old` on the remote
    /// (a lease per ref; every `new` is a descendant of its `old`, so each
    /// update is a fast-forward), all or none when `atomic`.
    pub(crate) async fn push(
        &self,
        updates: &[RefUpdate],
        atomic: bool,
        dry_run: bool,
        operation: &str,
    ) -> Result<Pushed, GitError> {
        let mut cmd = self
            .git(operation)
            .args(["push", "--porcelain", "--no-verify"]);
        if atomic {
            cmd = cmd.arg("--atomic");
        }
        if dry_run {
            cmd = cmd.arg("--dry-run");
        }
        for u in updates {
            cmd = cmd.arg(format!(
                "--force-with-lease={}:{}",
                u.refname,
                u.old.as_deref().unwrap_or("")
            ));
        }
        cmd = cmd.arg("--").arg(&self.repository);
        for u in updates {
            cmd = cmd.arg(format!("{}:{}", u.new, u.refname));
        }
        let out = cmd.output().await?;
        let rejected: Vec<String> = out
            .stdout_text()
            .lines()
            .filter(|l| l.starts_with('!'))
            .map(|l| l.split('\t').skip(1).collect::<Vec<_>>().join(" "))
            .collect();
        if out.success() && rejected.is_empty() {
            return Ok(Pushed::Done);
        }
        if !rejected.is_empty() {
            // The server's compare-and-swap of a ref lost to another push
            // between its checks and its update.
            let lost_lock = out.stderr.contains("cannot lock ref");
            let all_races = rejected.iter().all(|r| {
                [
                    "fetch first",
                    "non-fast-forward",
                    "stale info",
                    "atomic push failed",
                ]
                .iter()
                .any(|race| r.contains(race))
                    || (lost_lock
                        && [
                            "failed to update ref",
                            "atomic transaction failed",
                            "failed to lock",
                        ]
                        .iter()
                        .any(|race| r.contains(race)))
            });
            let detail = rejected.join("; ");
            if all_races {
                return Ok(Pushed::Raced(detail));
            }
            let remote: Vec<&str> = out
                .stderr
                .lines()
                .filter_map(|l| l.strip_prefix("remote:"))
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            return Err(GitError::Refused {
                operation: operation.to_owned(),
                detail: if remote.is_empty() {
                    detail
                } else {
                    format!("{detail} (the remote said: {})", remote.join(" / "))
                },
            });
        }
        if out.stderr.contains("does not support --atomic") {
            return Ok(Pushed::AtomicUnsupported);
        }
        if out.stderr.trim().is_empty() {
            return Err(GitError::Refused {
                operation: operation.to_owned(),
                detail: one_line(&out.stdout_text()),
            });
        }
        Err(GitError::remote(operation, &out.stderr))
    }
}

/// `<commit>:<path>`, or the commit's root tree for `.`.
fn object_name(commit: &str, path: &str) -> String {
    if path == "." {
        format!("{commit}^{{tree}}")
    } else {
        format!("{commit}:{path}")
    }
}

/// `git ls-tree -z` output.
fn parse_ls_tree(out: &[u8]) -> Vec<TreeEntry> {
    out.split(|b| *b == 0)
        .filter(|r| !r.is_empty())
        .filter_map(|r| {
            let r = String::from_utf8_lossy(r);
            let (meta, name) = r.split_once('\t')?;
            let mut m = meta.split(' ');
            Some(TreeEntry {
                mode: m.next()?.to_owned(),
                kind: m.next()?.to_owned(),
                id: m.next()?.to_owned(),
                name: name.to_owned(),
            })
        })
        .collect()
}

/// `git cat-file --batch` output: each object's content by its id (a
/// missing object is left out).
fn parse_batch(out: &[u8]) -> Option<HashMap<String, String>> {
    let mut contents = HashMap::new();
    let mut rest = out;
    while !rest.is_empty() {
        let header_end = rest.iter().position(|b| *b == b'\n')?;
        let header = String::from_utf8_lossy(&rest[..header_end]).into_owned();
        rest = &rest[header_end + 1..];
        let parts: Vec<&str> = header.split(' ').collect();
        if parts.len() == 2 && parts[1] == "missing" {
            continue;
        }
        let [id, _kind, size] = parts[..] else {
            return None;
        };
        let size: usize = size.parse().ok()?;
        let body = rest.get(..size)?;
        contents.insert(id.to_owned(), String::from_utf8_lossy(body).into_owned());
        rest = rest.get(size + 1..).unwrap_or(&[]);
    }
    Some(contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_names_are_stable_and_readable() {
        assert_eq!(
            clone_name("file:///srv/config.git"),
            format!("config-{:016x}", fnv64("file:///srv/config.git"))
        );
        assert!(clone_name("git@host:org/deploy.git").starts_with("deploy-"));
        assert!(clone_name("https://h/").starts_with("h-"));
        assert!(clone_name("/").starts_with("repo-"));
        assert_ne!(clone_name("file:///a/x.git"), clone_name("file:///b/x.git"));
        assert_eq!(fnv64(""), 0xcbf2_9ce4_8422_2325);
    }

    #[test]
    fn batch_and_ls_tree_output_parse() {
        let out = b"aaaa blob 5\nhello\nbbbb missing\ncccc blob 0\n\n";
        let c = parse_batch(out).unwrap();
        assert_eq!(c["aaaa"], "hello");
        assert_eq!(c["cccc"], "");
        assert!(!c.contains_key("bbbb"));
        assert!(parse_batch(b"aaaa blob 99\nshort\n").is_none());
        let e = parse_ls_tree(b"100644 blob abc\tweird name.yaml\x00040000 tree def\tdir\0");
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].name, "weird name.yaml");
        assert_eq!(e[1].kind, "tree");
    }

    #[test]
    fn identities_write_the_engines_time() {
        let i = Identity {
            name: "rollback".into(),
            email: "r@x".into(),
        };
        let env = i.env(Timestamp::from_millis(1_795_780_800_999));
        assert!(env.contains(&("GIT_COMMITTER_DATE", "@1795780800 +0000".to_owned())));
        let env = i.env(Timestamp::from_millis(-5));
        assert!(env.contains(&("GIT_AUTHOR_DATE", "@0 +0000".to_owned())));
    }
}
