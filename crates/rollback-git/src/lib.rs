//! `rollback-git`: configuration kept in Git, rolled back the GitOps way.
//!
//! Argo CD and Flux deploy what a branch holds at a path. Rolling such a
//! change back means committing the last good state on top of the branch,
//! never force-pushing: the history stays the audit trail, and the
//! controllers sync the restored state like any other commit.
//!
//! - [`GitTarget`] is a [`rollback_core::Target`]: a repository, a branch
//!   and a path (a directory, or one file). Its revisions are the commits of
//!   the branch's first-parent history that changed the path, newest first,
//!   each identified by the path's tree id (blob id for a file), so a
//!   restore commit that recreates an old tree is that same revision again.
//!   Health marks are git notes on those trees under `refs/notes/rollback`
//!   ([`marks`]), pushed to the remote, read back with the history.
//! - [`GitRollbacker`] is a [`rollback_core::Rollbacker`]: it writes one
//!   commit whose tree is the tip's with the path replaced by the last good
//!   tree, with trailers ([`trailers`]: `Rollback-To`, `Reason`, and
//!   `Rollback-Decided-At`, the engine's decision time, so the same request
//!   finds its commit instead of writing a second), and pushes it together
//!   with the bad mark of the revision left, atomically, as a fast-forward
//!   only. A push rejected because someone pushed meanwhile re-fetches and
//!   rebuilds on the new tip, `push_attempts` times, then escalates.
//!   Commit and note dates are the engine's decision time, never the wall
//!   clock. Each rollback is a [`RollbackPlan`] read from the remote first.
//! - Everything runs the `git` binary ([`GitClient`]), so credential
//!   helpers, SSH keys and agents, `insteadOf` rewrites and proxies work as
//!   the user has them; no working tree is checked out: the target keeps a
//!   bare working clone in its cache directory and builds trees and commits
//!   with git's plumbing.
//! - git's failures map onto [`rollback_core::ErrorKind`] ([`GitError::kind`]):
//!   an unreachable remote is `Transient`, refused credentials
//!   `Unauthorized`, a missing repository, branch, path or revision
//!   `NotFound`, a branch moved by someone else `Conflict`.
//! - [`GitConfig`] is a target as written in a configuration file; the
//!   watch file names it by URL ([`register`]):
//!   `git+ssh://git@git.example.com/platform/config.git#main:apps/web`.
//!
//! ```no_run
//! # async fn run() -> rollback_core::Result<()> {
//! use rollback_core::{Actor, Rollbacker, RollbackRequest, Target, TargetExt, Timestamp};
//! use rollback_git::{GitConfig, GitTarget};
//!
//! let config = GitConfig::new("ssh://git@git.example.com/platform/config.git", "main", "apps/web")
//!     .cache_dir("/var/cache/rollback/git");
//! let web = GitTarget::connect(&config, None).await?;
//! let rollbacker = web.rollbacker();
//!
//! let history = web.history().await?;
//! let good = history.iter().skip(1).find(|e| e.health != rollback_core::RevisionHealth::Bad).unwrap();
//! let decided_at = Timestamp::parse("2026-11-27T12:00:00Z").unwrap();
//! let request = RollbackRequest::new(good.revision.clone(), decided_at)
//!     .from(history[0].revision.id().clone())
//!     .reason("error_rate 0.031 breached < 0.01")
//!     .actor(Actor::new("oncall@example.com"));
//! println!("{}", rollbacker.plan(&request).await?);
//! let outcome = rollbacker.rollback(&request).await?;
//! println!("{}", outcome.detail());
//! # Ok(()) }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

mod client;
mod config;
mod error;
pub mod marks;
mod plan;
mod registry;
mod revision;
mod rollbacker;
mod target;
mod working_clone;

pub use client::{DEFAULT_TIMEOUT, GitClient, MINIMUM_GIT};
pub use config::{GitConfig, redact};
pub use error::{GitError, RemoteFailure};
pub use plan::RollbackPlan;
pub use registry::{git_schemes, register};
pub use revision::{GitRevision, attributes, trailers};
pub use rollbacker::GitRollbacker;
pub use target::GitTarget;
