//! `git+file://`, `git+ssh://`, `git+https://`, `git+http://` and `git://`
//! targets, for the watch file and the `rollback` command.
//!
//! The URL is the repository's, as git takes it, with `git+` before its
//! scheme (none for `git://`) and `#BRANCH:PATH` after it:
//!
//! | target URL | repository | branch | path |
//! |---|---|---|---|
//! | `git+file:///srv/config.git#main:apps/web` | `file:///srv/config.git` | `main` | `apps/web` |
//! | `git+ssh://git@git.example.com/platform/config.git#main:apps/web` | `ssh://git@git.example.com/platform/config.git` | `main` | `apps/web` |
//! | `git+https://git.example.com/platform/config.git#release/2026.11:clusters/eu/web.yaml` | `https://git.example.com/platform/config.git` | `release/2026.11` | `clusters/eu/web.yaml` |
//! | `git://127.0.0.1:9418/config.git#main:.` | `git://127.0.0.1:9418/config.git` | `main` | the whole tree |
//!
//! A branch name cannot hold `:`, so the first `:` after `#` ends it. The
//! options are those of [`GitConfig`] but the three the URL gives:
//! `cache_dir`, `git`, `notes_ref`, `push_attempts`, `history_limit`,
//! `timeout`, `author_name`, `author_email`.

use rollback_core::Result;
use rollback_core::registry::{
    Backend, Options, Registry, TargetScheme, TargetUrl, config_from, scheme,
};

use crate::{GitConfig, GitTarget};

const EXAMPLE: &str = "git+file:///srv/config.git#main:apps/web";

/// The five schemes, one per transport git speaks.
pub fn git_schemes() -> [impl TargetScheme; 5] {
    [
        scheme(
            "git+file",
            "git+file:///PATH/REPO.git#BRANCH:PATH",
            config,
            connect,
        ),
        scheme(
            "git+ssh",
            "git+ssh://[USER@]HOST/REPO.git#BRANCH:PATH",
            config,
            connect,
        ),
        scheme(
            "git+https",
            "git+https://HOST/REPO.git#BRANCH:PATH",
            config,
            connect,
        ),
        scheme(
            "git+http",
            "git+http://HOST/REPO.git#BRANCH:PATH",
            config,
            connect,
        ),
        scheme(
            "git",
            "git://HOST[:PORT]/REPO.git#BRANCH:PATH",
            config,
            connect,
        ),
    ]
}

/// `registry` with the five schemes of [`git_schemes`].
pub fn register(registry: Registry) -> Registry {
    git_schemes().into_iter().fold(registry, |r, s| r.scheme(s))
}

fn connect(c: GitConfig) -> rollback_core::registry::Connecting {
    Box::pin(async move {
        let target = GitTarget::connect(&c, None).await?;
        let rollbacker = target.rollbacker();
        Ok(Backend::new(target, rollbacker))
    })
}

fn config(url: &TargetUrl, options: &Options) -> Result<GitConfig> {
    let transport = url.scheme().strip_prefix("git+").unwrap_or(url.scheme());
    let Some((location, fragment)) = url.rest().split_once('#') else {
        return Err(url.error(format!(
            "name the branch and the path after `#`, like {EXAMPLE}"
        )));
    };
    let Some((branch, path)) = fragment.split_once(':') else {
        return Err(url.error(format!(
            "name the path after the branch and `:` (`.` for the whole tree), like {EXAMPLE}"
        )));
    };
    if location.is_empty() || branch.is_empty() || path.is_empty() {
        return Err(url.error(format!(
            "give the repository, the branch and the path (`.` for the whole tree), like {EXAMPLE}"
        )));
    }
    let repository = format!("{transport}://{location}");
    let c: GitConfig = config_from(
        url,
        &[
            ("repository", repository.as_str()),
            ("branch", branch),
            ("path", path),
        ],
        options,
    )?;
    c.validate()?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(url: &str, options: serde_json::Value) -> Result<GitConfig> {
        config(&TargetUrl::parse(url)?, options.as_object().unwrap())
    }

    #[test]
    fn the_url_names_repository_branch_and_path() {
        for (url, repository, branch, path) in [
            (
                "git+file:///srv/config.git#main:apps/web",
                "file:///srv/config.git",
                "main",
                "apps/web",
            ),
            (
                "git+ssh://git@git.example.com:2222/platform/config.git#main:apps/web",
                "ssh://git@git.example.com:2222/platform/config.git",
                "main",
                "apps/web",
            ),
            (
                "git+https://git.example.com/config.git#release/2026.11:clusters/eu/web.yaml",
                "https://git.example.com/config.git",
                "release/2026.11",
                "clusters/eu/web.yaml",
            ),
            (
                "git://127.0.0.1:9418/config.git#main:.",
                "git://127.0.0.1:9418/config.git",
                "main",
                ".",
            ),
            (
                "git+http://h/c.git#feature#1:a:b",
                "http://h/c.git",
                "feature#1",
                "a:b",
            ),
        ] {
            let c = read(url, serde_json::json!({})).unwrap();
            assert_eq!(
                (c.repository.as_str(), c.branch.as_str(), c.path.as_str()),
                (repository, branch, path),
                "{url}"
            );
        }
        let c = read(
            "git+file:///srv/config.git#main:apps/web",
            serde_json::json!({"cache_dir": "/var/cache/rollback", "push_attempts": 5, "timeout": "30s"}),
        )
        .unwrap();
        assert_eq!(c.push_attempts, 5);
        assert_eq!(
            c.cache_dir.as_deref(),
            Some(std::path::Path::new("/var/cache/rollback"))
        );
    }

    #[test]
    fn bad_urls_and_options_are_named() {
        for (url, options, says) in [
            (
                "git+file:///srv/config.git",
                serde_json::json!({}),
                "after `#`",
            ),
            (
                "git+file:///srv/config.git#main",
                serde_json::json!({}),
                "after the branch and `:`",
            ),
            (
                "git+file:///srv/config.git#main:",
                serde_json::json!({}),
                "`.` for the whole tree",
            ),
            (
                "git+file://#main:apps",
                serde_json::json!({}),
                "give the repository",
            ),
            (
                "git+file:///r.git#ma in:apps",
                serde_json::json!({}),
                "field `branch`",
            ),
            (
                "git+file:///r.git#main:../etc",
                serde_json::json!({}),
                "field `path`",
            ),
            (
                "git+file:///r.git#main:apps",
                serde_json::json!({"branch": "x"}),
                "`branch` comes from the URL",
            ),
            (
                "git+file:///r.git#main:apps",
                serde_json::json!({"pushes": 2}),
                "pushes",
            ),
            (
                "git+file:///r.git#main:apps",
                serde_json::json!({"push_attempts": 0}),
                "`push_attempts`",
            ),
        ] {
            let e = read(url, options).unwrap_err().to_string();
            assert!(e.contains(says), "{url}: {e}");
        }
    }

    #[test]
    fn every_transport_is_registered() {
        let r = register(Registry::new());
        assert_eq!(
            r.schemes(),
            ["git", "git+file", "git+http", "git+https", "git+ssh"]
        );
        let url = TargetUrl::parse("git+ssh://git@h/c.git#main:apps/web").unwrap();
        r.check(&url, &Options::new()).unwrap();
    }
}
