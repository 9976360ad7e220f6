//! `rollback status [-c FILE | --state DIR]`: each target's saved phase and
//! last decision, from the state directory (and, with a watch file whose
//! audit log is JSON lines, the last decision recorded there).

use std::collections::BTreeMap;
use std::path::Path;

use rollback::audit::{AuditEntry, JsonLinesAuditSink};
use rollback::machine::{MachineState, Phase};
use rollback::registry::Registry;
use rollback::store::{FileStateStore, StateStore};
use rollback::watchfile::{AuditFormat, WatchFile};
use rollback::{Error, Result, TargetId};

use crate::cli::StatusArgs;
use crate::exit::Outcome;

/// One target's status.
#[derive(Debug, serde::Serialize)]
pub struct TargetStatus {
    /// The target.
    pub target: String,
    /// The watched revision.
    pub revision: String,
    /// The phase, with its data.
    pub phase: Phase,
    /// The phase in words.
    pub detail: String,
    /// The last decision the audit log holds, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_decision: Option<String>,
}

/// A phase in words: `rolled back to v1 at …`.
pub fn describe(phase: &Phase) -> String {
    match phase {
        Phase::Observing { bake_until } => format!("observing, bake time ends {bake_until}"),
        Phase::Paused { since, .. } => format!("paused since {since}"),
        Phase::AwaitingApproval { to, since } => {
            format!("awaiting approval since {since} to roll back to {to}")
        }
        Phase::RollingBack { to, by, since } => {
            format!("rolling back to {to} (decided {since} by {by})")
        }
        Phase::Verifying { restored, until } => format!("verifying {restored} until {until}"),
        Phase::Promoted { at, by } => format!("promoted at {at} by {by}"),
        Phase::RolledBack { to, at } => format!("rolled back to {to} at {at}"),
        Phase::Escalated { reason, at } => format!("escalated at {at}: {reason}"),
        Phase::Frozen { reason, at } => format!("frozen at {at}: {reason}"),
        Phase::DryRunBreached {
            would_roll_back_to,
            at,
        } => match would_roll_back_to {
            Some(to) => format!("breached at {at} (dry run; would roll back to {to})"),
            None => format!("breached at {at} (dry run; no revision to roll back to)"),
        },
        other => format!("{}", other.kind()),
    }
}

/// Every saved state in `dir`, by target.
pub async fn states(dir: &Path) -> Result<Vec<MachineState>> {
    let store = FileStateStore::new(dir)?;
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Error::permanent(format!("cannot read state directory {}", dir.display())).with_source(e)
    })?;
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let text = std::fs::read(&path).map_err(|e| {
            Error::permanent(format!("cannot read {}", path.display())).with_source(e)
        })?;
        let target = serde_json::from_slice::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| {
                v.pointer("/state/watch/target")?
                    .as_str()
                    .map(str::to_owned)
            })
            .ok_or_else(|| {
                Error::invalid(format!(
                    "{} is not a saved watch state (no state.watch.target)",
                    path.display()
                ))
            })?;
        if let Some(state) = store.load(&TargetId::new(target)).await? {
            out.push(state);
        }
    }
    Ok(out)
}

/// The last decision of each target in a JSON-lines audit log.
fn last_decisions(path: &Path) -> Result<BTreeMap<TargetId, String>> {
    let log = JsonLinesAuditSink::read(path)?;
    let mut last = BTreeMap::new();
    for r in log.records {
        if matches!(r.entry, AuditEntry::Decided { .. }) {
            last.insert(r.target.clone(), format!("{} {}", r.at, r.describe()));
        }
    }
    Ok(last)
}

/// Run `rollback status`.
pub async fn run(args: &StatusArgs, registry: &Registry) -> Result<Outcome> {
    let (dir, audit) = match (&args.file, &args.state) {
        (_, Some(dir)) => (dir.clone(), None),
        (Some(file), None) => {
            let w = WatchFile::load(file, registry).map_err(Error::from)?;
            let Some(dir) = w.state else {
                return Err(Error::invalid(format!(
                    "watch file {} names no state directory (`state:`), so no watch state was kept",
                    file.display()
                )));
            };
            (dir, w.audit.filter(|a| a.format == AuditFormat::JsonLines))
        }
        (None, None) => return Err(Error::invalid("give -c FILE or --state DIR")),
    };
    if !dir.is_dir() {
        return Err(Error::not_found(format!(
            "state directory {} does not exist: no watch has run with it",
            dir.display()
        )));
    }
    let decisions = match audit.filter(|a| a.path.exists()) {
        Some(a) => last_decisions(&a.path)?,
        None => BTreeMap::new(),
    };
    let rows: Vec<TargetStatus> = states(&dir)
        .await?
        .into_iter()
        .map(|s| TargetStatus {
            target: s.watch.target.to_string(),
            revision: s.watch.revision.to_string(),
            detail: describe(&s.phase),
            last_decision: decisions.get(&s.watch.target).cloned(),
            phase: s.phase,
        })
        .collect();
    if args.output.is_some() {
        for r in &rows {
            crate::outln!("{}", serde_json::to_string(r).unwrap_or_default());
        }
    } else if rows.is_empty() {
        crate::outln!("no saved watches in {}", dir.display());
    } else {
        for r in &rows {
            crate::outln!("{}  {}  {}", r.target, r.revision, r.detail);
            if let Some(d) = &r.last_decision {
                crate::outln!("    last decision: {d}");
            }
        }
    }
    Ok(Outcome::Healthy)
}
