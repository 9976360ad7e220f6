//! `rollback history URL`: the revisions newest first with their health
//! marks, as `kubectl rollout history` lists them.

use std::collections::BTreeMap;

use rollback::registry::Registry;
use rollback::{Error, HistoryEntry, Result};

use crate::cli::{HistoryArgs, HistoryFormat};
use crate::exit::Outcome;
use crate::target;

/// One revision, as `-o json|yaml` prints it.
#[derive(Debug, serde::Serialize)]
pub struct HistoryRow {
    /// The number `--to-revision` takes.
    pub revision: i64,
    /// The stable id `--to` takes.
    pub id: String,
    /// The backend's label.
    pub label: String,
    /// `good`, `bad` or `unknown`.
    pub health: rollback::RevisionHealth,
    /// Whether it runs now.
    pub current: bool,
    /// When it was (last) deployed, where the backend knows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployed: Option<String>,
    /// The backend's attributes (images, run id, change cause).
    pub attributes: BTreeMap<String, String>,
}

/// The rows of a history, newest first.
pub fn rows(history: &[HistoryEntry], current: &rollback::RevisionId) -> Vec<HistoryRow> {
    (0..history.len())
        .map(|i| {
            let r = &history[i].revision;
            HistoryRow {
                revision: target::number(history, i),
                id: r.id().to_string(),
                label: r.label().to_owned(),
                health: history[i].health,
                current: r.id() == current,
                deployed: r.created_at().map(|t| t.to_string()),
                attributes: r.attributes().clone(),
            }
        })
        .collect()
}

/// The table: `REVISION  HEALTH  CURRENT  ID  LABEL`, under the URL.
pub fn table(url: &str, rows: &[HistoryRow]) -> String {
    let width = |f: &dyn Fn(&HistoryRow) -> usize, title: usize| {
        rows.iter().map(f).max().unwrap_or(0).max(title)
    };
    let wr = width(&|r| r.revision.to_string().len(), 8);
    let wh = width(&|r| r.health.to_string().len(), 7);
    let wi = width(&|r| r.id.len(), 2);
    let mut out = format!("{url}\n");
    out.push_str(&format!(
        "{:<wr$}  {:<wh$}  {:<7}  {:<wi$}  LABEL\n",
        "REVISION", "HEALTH", "CURRENT", "ID"
    ));
    for r in rows {
        let label = r
            .attributes
            .get("change-cause")
            .map_or(r.label.clone(), |c| format!("{} ({c})", r.label));
        out.push_str(&format!(
            "{:<wr$}  {:<wh$}  {:<7}  {:<wi$}  {}\n",
            r.revision,
            r.health.to_string(),
            if r.current { "*" } else { "" },
            r.id,
            label
        ));
    }
    out
}

/// Run `rollback history`.
pub async fn run(args: &HistoryArgs, registry: &Registry) -> Result<Outcome> {
    let (url, options) = target::resolve(registry, &args.url, &args.target)?;
    let backend = registry.connect(&url, &options).await?;
    let history = backend.target.history().await?;
    let current = backend.target.current().await?;
    let rows = rows(&history, current.id());
    let text = match args.output {
        None => table(url.as_str(), &rows),
        Some(HistoryFormat::Json) => {
            let mut s = serde_json::to_string_pretty(&rows)
                .map_err(|e| Error::permanent("cannot write JSON").with_source(e))?;
            s.push('\n');
            s
        }
        Some(HistoryFormat::Yaml) => serde_yaml_ng::to_string(&rows)
            .map_err(|e| Error::permanent("cannot write YAML").with_source(e))?,
    };
    crate::out!("{text}");
    Ok(Outcome::Healthy)
}
