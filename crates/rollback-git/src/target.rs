//! A path on a branch of a Git repository: the [`Target`].

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use rollback_core::{
    Capabilities, Error, HistoryEntry, Mark, Result, Revision as _, RevisionRef, Target, TargetId,
};
use tracing::Instrument as _;

use crate::config::{branch_name, normalize_path};
use crate::marks::{self, Verdict};
use crate::revision::{entries, revisions};
use crate::working_clone::{Identity, PathCommit, Pushed, RefUpdate, Tips, WorkingClone};
use crate::{GitClient, GitConfig, GitError, GitRevision, GitRollbacker};

/// What a target follows, shared by the target and its rollbacker.
#[derive(Debug)]
pub(crate) struct BranchPath {
    pub(crate) id: TargetId,
    pub(crate) clone: WorkingClone,
    pub(crate) branch: String,
    pub(crate) path: String,
    pub(crate) notes_ref: String,
    pub(crate) history_limit: u32,
    pub(crate) push_attempts: u32,
    pub(crate) identity: Identity,
}

impl BranchPath {
    /// The core error of `e`, naming this target.
    pub(crate) fn context(&self, e: GitError) -> Error {
        e.into_core(self.id.as_str())
    }

    /// `apps/web on branch main of file:///srv/config.git`.
    pub(crate) fn describe(&self) -> String {
        format!(
            "{} on branch {} of {}",
            self.path,
            self.branch,
            self.clone.shown()
        )
    }

    /// Fetch, then read the path's log from the tip (the clone's lock held).
    pub(crate) async fn read(&self, limit: u32) -> Result<(Tips, Vec<PathCommit>), GitError> {
        let tips = self.clone.fetch(&self.branch, &self.notes_ref).await?;
        let log = self.clone.path_log(&tips.branch, &self.path, limit).await?;
        Ok((tips, log))
    }

    /// The error for a path the tip does not hold.
    pub(crate) fn missing_at_tip(&self, tips: &Tips, log: &[PathCommit]) -> GitError {
        let short: String = tips.branch.chars().take(12).collect();
        GitError::NotFound(match log.first() {
            Some(c) => format!(
                "path {} does not exist at the tip (commit {short}) of branch {} of {}: commit {} (\"{}\") deleted it; restore it with a commit, or point the target at a path that exists",
                self.path,
                self.branch,
                self.clone.shown(),
                c.commit.chars().take(12).collect::<String>(),
                c.subject
            ),
            None => format!(
                "path {} does not exist at the tip (commit {short}) of branch {} of {}, nor in its history; `git ls-tree -r --name-only {}` lists what the branch holds",
                self.path,
                self.branch,
                self.clone.shown(),
                self.branch
            ),
        })
    }

    /// The revision the tip holds.
    pub(crate) fn current_of(
        &self,
        tips: &Tips,
        log: &[PathCommit],
    ) -> Result<GitRevision, GitError> {
        match log.first() {
            Some(c) if c.object.is_some() => Ok(revisions(&log[..1])
                .pop()
                .expect("a commit with an object is a revision")),
            _ => Err(self.missing_at_tip(tips, log)),
        }
    }
}

/// A path (a directory, or one file) on a branch of a Git repository, as
/// Argo CD and Flux deploy it: a [`Target`].
///
/// - Its revisions are the commits of the branch's first-parent history
///   that changed the path, newest first, each identified by the object
///   the path holds (its tree id, or its blob id for a file): a restore
///   commit that recreates an old tree is that same revision again, listed
///   once, at its newest commit.
/// - The current revision is what the branch's tip holds at the path; a
///   tip without the path is `NotFound`, naming the commit that deleted it.
/// - Health marks ([`Target::mark`]) are git notes under `notes_ref` on the
///   path's object, pushed to the remote (see the `marks` module docs for
///   their form); the history reads them back. A revision without a
///   verdict that a rollback commit rolled away from (its `Rollback-From`
///   trailer) is `Bad`, so what was rolled back stays known where the notes
///   did not travel (a mirror that does not fetch `refs/notes/*`).
///
/// Every call fetches first, into a bare working clone kept in the cache
/// directory, so it reads what the remote holds now.
#[derive(Debug, Clone)]
pub struct GitTarget {
    pub(crate) inner: Arc<BranchPath>,
}

impl GitTarget {
    /// The target `config` describes, with `client` (or the one the config
    /// describes) running git. Checks the configuration and that the git
    /// program runs; contacts no remote (the first read does).
    ///
    /// ```no_run
    /// # async fn run() -> rollback_core::Result<()> {
    /// use rollback_git::{GitConfig, GitTarget};
    /// let config = GitConfig::new("ssh://git@git.example.com/platform/config.git", "main", "apps/web");
    /// let web = GitTarget::connect(&config, None).await?;
    /// let rollbacker = web.rollbacker();
    /// # let _ = rollbacker; Ok(()) }
    /// ```
    pub async fn connect(config: &GitConfig, client: Option<GitClient>) -> Result<Self> {
        config.validate()?;
        let client = client.unwrap_or_else(|| config.client());
        let version = client.version().await?;
        tracing::debug!(%version, "git");
        let path = normalize_path(&config.path)?;
        let branch = branch_name(&config.branch).to_owned();
        let shown = crate::config::redact(&config.repository);
        let id = TargetId::new(format!("git:{shown}#{branch}:{path}"));
        Ok(GitTarget {
            inner: Arc::new(BranchPath {
                id,
                clone: WorkingClone::new(client, &config.repository, config.resolved_cache_dir()),
                branch,
                path,
                notes_ref: config.notes_ref.clone(),
                history_limit: config.history_limit,
                push_attempts: config.push_attempts,
                identity: Identity {
                    name: config.author_name.clone(),
                    email: config.author_email.clone(),
                },
            }),
        })
    }

    /// The rollbacker of this target.
    pub fn rollbacker(&self) -> GitRollbacker {
        GitRollbacker::new(self)
    }

    /// The repository, as messages show it (a password in the URL hidden).
    pub fn repository(&self) -> &str {
        self.inner.clone.shown()
    }

    /// The branch followed.
    pub fn branch(&self) -> &str {
        &self.inner.branch
    }

    /// The path followed, normalized (`.` for the whole tree).
    pub fn path(&self) -> &str {
        &self.inner.path
    }

    /// The ref the health marks are kept under.
    pub fn notes_ref(&self) -> &str {
        &self.inner.notes_ref
    }

    /// The working clone (a bare repository) in the cache directory.
    pub fn clone_dir(&self) -> &Path {
        self.inner.clone.dir()
    }

    /// The revision the branch's tip holds, with its commit.
    pub async fn current_revision(&self) -> Result<GitRevision> {
        let t = &self.inner;
        async {
            let _lock = t.clone.lock().await?;
            let (tips, log) = t.read(1).await?;
            t.current_of(&tips, &log)
        }
        .await
        .map_err(|e| t.context(e))
    }
}

#[async_trait]
impl Target for GitTarget {
    fn id(&self) -> &TargetId {
        &self.inner.id
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE.with_mark(true)
    }

    async fn current(&self) -> Result<RevisionRef> {
        Ok(Arc::new(self.current_revision().await?))
    }

    async fn history(&self) -> Result<Vec<HistoryEntry>> {
        let t = &self.inner;
        let span = tracing::debug_span!("git_history", target = %t.id);
        async {
            let _lock = t.clone.lock().await?;
            let (tips, log) = t.read(t.history_limit).await?;
            t.current_of(&tips, &log)?;
            let revs = revisions(&log);
            let ids: Vec<&str> = revs.iter().map(|r| r.id().as_str()).collect();
            let notes = match tips.notes {
                Some(_) => t.clone.notes(&t.notes_ref, &ids).await?,
                None => Default::default(),
            };
            Ok(entries(revs, &notes, &log))
        }
        .instrument(span)
        .await
        .map_err(|e: GitError| t.context(e))
    }

    /// Adds the verdict to the note of the revision's object under
    /// `notes_ref` and pushes the notes ref (fast-forward, re-fetching and
    /// writing again when someone else pushed notes first, `push_attempts`
    /// times). A verdict of the same health and time already there is not
    /// written again. A revision that is no object of the repository is
    /// `NotFound`.
    async fn mark(&self, mark: &Mark) -> Result<()> {
        let t = &self.inner;
        let span = tracing::info_span!("git_mark", target = %t.id, revision = %mark.revision, health = %mark.health);
        async {
            let _lock = t.clone.lock().await?;
            let verdict = Verdict::new(mark.health, &mark.reason, mark.at);
            let object = mark.revision.as_str();
            let mut raced = String::new();
            for attempt in 1..=t.push_attempts {
                let tips = t.clone.fetch(&t.branch, &t.notes_ref).await?;
                if !is_object_id(object) || !t.clone.has_object(object).await? {
                    return Err(GitError::NotFound(format!(
                        "revision {object} is no tree or file of {}; the history lists the revisions of {}",
                        t.clone.shown(),
                        t.path
                    )));
                }
                let notes = match &tips.notes {
                    Some(_) => t.clone.notes(&t.notes_ref, &[object]).await?,
                    None => Default::default(),
                };
                let Some(note) = marks::with(notes.get(object).map(String::as_str), &verdict) else {
                    return Ok(());
                };
                let new = t
                    .clone
                    .write_note(&t.notes_ref, object, &note, &t.identity, mark.at)
                    .await?;
                let update = RefUpdate {
                    refname: t.notes_ref.clone(),
                    old: tips.notes.clone(),
                    new,
                };
                let op = format!(
                    "pushing the {} mark of {object} to {} of {}",
                    mark.health,
                    t.notes_ref,
                    t.clone.shown()
                );
                match t.clone.push(&[update], false, false, &op).await? {
                    Pushed::Done => return Ok(()),
                    Pushed::Raced(why) => {
                        tracing::debug!(attempt, %why, "someone pushed notes first; fetching again");
                        raced = why;
                    }
                    Pushed::AtomicUnsupported => {
                        return Err(GitError::Corrupt(format!(
                            "{op}: a push that was not atomic answered that atomic pushes are unsupported"
                        )));
                    }
                }
            }
            Err(GitError::Conflict {
                message: format!(
                    "pushing the {} mark of {object} to {} of {} was rejected {} times because others pushed meanwhile ({raced})",
                    mark.health,
                    t.notes_ref,
                    t.clone.shown(),
                    t.push_attempts
                ),
                retryable: true,
            })
        }
        .instrument(span)
        .await
        .map_err(|e| t.context(e))
    }
}

/// Whether `s` looks like a full object id (SHA-1 or SHA-256).
pub(crate) fn is_object_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn _dyn_ok(_: Arc<dyn Target>) {}
