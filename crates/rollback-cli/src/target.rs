//! A target named on the command line: its URL, and its options from
//! `--option KEY=VALUE` and, with `-c FILE`, from that URL's entry in a
//! watch file (`--option` wins).

use rollback::registry::{Options, Registry, TargetUrl};
use rollback::watchfile::WatchFile;
use rollback::{Error, HistoryEntry, Result, RevisionId};

use crate::cli::TargetOptions;

/// The URL and options of a target named on the command line, checked
/// against `registry` without connecting.
pub fn resolve(
    registry: &Registry,
    url: &str,
    given: &TargetOptions,
) -> Result<(TargetUrl, Options)> {
    let url = TargetUrl::parse(url)?;
    let mut options = Options::new();
    if let Some(file) = &given.file {
        let watch = WatchFile::load(file, registry).map_err(Error::from)?;
        let Some(entry) = watch.targets.iter().find(|t| t.url == url) else {
            let known: Vec<&str> = watch.targets.iter().map(|t| t.url.as_str()).collect();
            return Err(Error::invalid(format!(
                "target {url} is not in watch file {} (it has: {})",
                file.display(),
                known.join(", ")
            )));
        };
        options = entry.options.clone();
    }
    for pair in &given.options {
        let (key, value) = parse_option(pair)?;
        options.insert(key, value);
    }
    registry.check(&url, &options)?;
    Ok((url, options))
}

/// `KEY=VALUE`, the value read as YAML (`2s` and `http://h:1` are strings,
/// `3` a number, `[v1, v2]` a list).
pub fn parse_option(pair: &str) -> Result<(String, serde_json::Value)> {
    let Some((key, value)) = pair.split_once('=') else {
        return Err(Error::invalid(format!(
            "--option {pair:?}: write it as KEY=VALUE"
        )));
    };
    let key = key.trim();
    if key.is_empty() {
        return Err(Error::invalid(format!(
            "--option {pair:?}: the key is empty"
        )));
    }
    let value = if value.trim().is_empty() {
        serde_json::Value::String(String::new())
    } else {
        serde_yaml_ng::from_str(value).map_err(|e| {
            Error::invalid(format!(
                "--option {key}: the value does not read as YAML: {e}"
            ))
        })?
    };
    Ok((key.to_owned(), value))
}

/// The revision number `rollback history` shows and `--to-revision` takes:
/// the backend's own number where it has one (a Deployment's `revision`
/// annotation, an MLflow model `version`), else the position in the
/// history counted from the oldest, 1.
pub fn number(history: &[HistoryEntry], index: usize) -> i64 {
    let attributes = history[index].revision.attributes();
    ["revision", "version"]
        .iter()
        .find_map(|k| attributes.get(*k).and_then(|v| v.parse().ok()))
        .unwrap_or((history.len() - index) as i64)
}

/// Which revision an undo restores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UndoTarget {
    /// The revision before the current one (`kubectl rollout undo`).
    Previous,
    /// The revision with this number ([`number`]).
    Number(i64),
    /// The revision with this id.
    Id(RevisionId),
    /// The newest revision marked good, other than the current one.
    LastGood,
}

impl UndoTarget {
    /// From `--to-revision N` or `--to ID|last-good`.
    pub fn from_flags(to_revision: Option<i64>, to: Option<&str>) -> UndoTarget {
        match (to_revision, to) {
            (Some(0), _) | (None, None) => UndoTarget::Previous,
            (Some(n), _) => UndoTarget::Number(n),
            (None, Some("last-good")) => UndoTarget::LastGood,
            (None, Some(id)) => UndoTarget::Id(RevisionId::new(id)),
        }
    }

    /// The history entry this names, given the current revision's id.
    pub fn pick<'a>(
        &self,
        url: &TargetUrl,
        history: &'a [HistoryEntry],
        current: &RevisionId,
    ) -> Result<&'a HistoryEntry> {
        let listing = format!("`rollback history {url}` lists its revisions");
        let found = match self {
            UndoTarget::Previous => history.iter().find(|e| e.revision.id() != current),
            UndoTarget::Number(n) => (0..history.len())
                .find(|&i| number(history, i) == *n)
                .map(|i| &history[i]),
            UndoTarget::Id(id) => history.iter().find(|e| e.revision.id() == id),
            UndoTarget::LastGood => history
                .iter()
                .find(|e| e.revision.id() != current && e.health == rollback::RevisionHealth::Good),
        };
        found.ok_or_else(|| {
            Error::not_found(match self {
                UndoTarget::Previous => format!(
                    "no rollout history found for {url}: it has no earlier revision to roll back to"
                ),
                UndoTarget::Number(n) => {
                    format!("unable to find specified revision {n} in history of {url}; {listing}")
                }
                UndoTarget::Id(id) => {
                    format!("revision {id} is not in the history of {url}; {listing}")
                }
                UndoTarget::LastGood => format!(
                    "no revision of {url} other than the current one is marked good; {listing}"
                ),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_read_as_yaml() {
        let (k, v) = parse_option("revisions=[v1, v2]").unwrap();
        assert_eq!(
            (k.as_str(), v),
            ("revisions", serde_json::json!(["v1", "v2"]))
        );
        let (_, v) = parse_option("endpoint_url=http://127.0.0.1:5000").unwrap();
        assert_eq!(v, serde_json::json!("http://127.0.0.1:5000"));
        let (_, v) = parse_option("poll_interval=2s").unwrap();
        assert_eq!(v, serde_json::json!("2s"));
        assert!(
            parse_option("context")
                .unwrap_err()
                .to_string()
                .contains("KEY=VALUE")
        );
        assert!(parse_option("=x").is_err());
    }

    #[test]
    fn flags_name_the_revision() {
        assert_eq!(UndoTarget::from_flags(None, None), UndoTarget::Previous);
        assert_eq!(UndoTarget::from_flags(Some(0), None), UndoTarget::Previous);
        assert_eq!(UndoTarget::from_flags(Some(2), None), UndoTarget::Number(2));
        assert_eq!(
            UndoTarget::from_flags(None, Some("last-good")),
            UndoTarget::LastGood
        );
        assert_eq!(
            UndoTarget::from_flags(None, Some("v1")),
            UndoTarget::Id("v1".into())
        );
    }
}
