//! `rollback undo URL`: `kubectl rollout undo` for every backend.
//!
//! A `k8s://` target goes through [`K8sDeployment::undo`] or, for a
//! StatefulSet or DaemonSet (`k8s://NAMESPACE/statefulset/NAME`),
//! [`K8sWorkload::undo`], so its revision numbers, its checks, its API calls
//! (a read of the object, a list of its ReplicaSets or ControllerRevisions,
//! one patch) and its words are kubectl's. Every other
//! target goes through its [`Rollbacker`](rollback::Rollbacker): its history
//! is read, the revision picked, and the rollback asked for from the
//! revision that runs now. Neither waits for the change to converge, as
//! kubectl does not: `rollback watch` judges and verifies.

use std::time::SystemTime;

use rollback::k8s::{
    K8sDeployment, K8sTargetConfig, K8sWorkload, UndoOptions, UndoTo, k8s_target_config,
};
use rollback::registry::{Options, Registry, TargetUrl};
use rollback::{Actor, DryRun, Result, RollbackOutcome, RollbackRequest, Target, Timestamp};

use crate::cli::{DryRunArg, UndoArgs};
use crate::exit::Outcome;
use crate::target::{self, UndoTarget};

fn dry_run(arg: DryRunArg) -> DryRun {
    match arg {
        DryRunArg::None => DryRun::None,
        DryRunArg::Client => DryRun::Client,
        DryRunArg::Server => DryRun::Server,
    }
}

/// Run `rollback undo`; the result line goes to stdout.
pub async fn run(args: &UndoArgs, registry: &Registry) -> Result<Outcome> {
    let (url, options) = target::resolve(registry, &args.url, &args.target)?;
    let to = UndoTarget::from_flags(args.to_revision, args.to.as_deref());
    let dry = dry_run(args.dry_run);
    let (resource, outcome) = if url.scheme() == "k8s" {
        undo_deployment(&url, &options, &to, dry).await?
    } else {
        (
            url.to_string(),
            undo_any(registry, &url, &options, &to, dry).await?,
        )
    };
    crate::outln!("{}", line(&resource, &outcome, dry));
    Ok(Outcome::Healthy)
}

/// A Deployment, StatefulSet or DaemonSet, through rollback-k8s's `undo`:
/// kubectl's semantics and API calls.
async fn undo_deployment(
    url: &TargetUrl,
    options: &Options,
    to: &UndoTarget,
    dry: DryRun,
) -> Result<(String, RollbackOutcome)> {
    let undo = UndoOptions {
        dry_run: dry,
        expect_current: None,
    };
    match k8s_target_config(url, options)? {
        K8sTargetConfig::Deployment(config) => {
            let deployment = K8sDeployment::connect(&config, None).await?;
            let undo_to = undo_to(url, to, &deployment).await?;
            let outcome = deployment.undo(&undo_to, &undo).await?;
            Ok((format!("deployment.apps/{}", config.deployment), outcome))
        }
        K8sTargetConfig::Workload(config) => {
            let workload = K8sWorkload::connect(&config, None).await?;
            let undo_to = undo_to(url, to, &workload).await?;
            let outcome = workload.undo(&undo_to, &undo).await?;
            Ok((
                format!("{}.apps/{}", config.kind.singular(), config.name),
                outcome,
            ))
        }
        _ => Err(url.error("`rollback undo` does not know this kind of k8s:// target yet")),
    }
}

/// The revision `to` names, as rollback-k8s's `undo` takes it.
async fn undo_to(url: &TargetUrl, to: &UndoTarget, target: &dyn Target) -> Result<UndoTo> {
    Ok(match to {
        UndoTarget::Previous => UndoTo::Previous,
        UndoTarget::Number(n) => UndoTo::Number(*n),
        UndoTarget::Id(id) => UndoTo::Id(id.clone()),
        UndoTarget::LastGood => {
            let history = target.history().await?;
            let current = target.current().await?;
            let entry = to.pick(url, &history, current.id())?;
            UndoTo::Id(entry.revision.id().clone())
        }
    })
}

/// Any other target, through its rollbacker.
async fn undo_any(
    registry: &Registry,
    url: &TargetUrl,
    options: &Options,
    to: &UndoTarget,
    dry: DryRun,
) -> Result<RollbackOutcome> {
    let backend = registry.connect(url, options).await?;
    let history = backend.target.history().await?;
    let current = backend.target.current().await?;
    let entry = to.pick(url, &history, current.id())?;
    let user = std::env::var("USER").unwrap_or_else(|_| "operator".to_owned());
    let request = RollbackRequest::new(entry.revision.clone(), Timestamp::from(SystemTime::now()))
        .from(current.id().clone())
        .reason(format!("rollback undo by {user}"))
        .actor(Actor::new(format!("{user} (rollback undo)")))
        .dry_run(dry);
    backend.rollbacker.rollback(&request).await
}

/// kubectl's line for an undo's outcome: `deployment.apps/web rolled back`,
/// `… skipped rollback (current template already matches revision 3)`,
/// `… rolled back (server dry run)`; the backend's detail follows where
/// kubectl prints none of its own.
pub fn line(resource: &str, outcome: &RollbackOutcome, dry: DryRun) -> String {
    // kubectl's skip message ends at its first `)`; the rest is the crate's.
    let skipped = |detail: &str| {
        detail.find("skipped rollback (").and_then(|at| {
            detail[at..]
                .find(')')
                .map(|end| detail[at..at + end + 1].to_owned())
        })
    };
    let k8s = ["deployment.apps/", "statefulset.apps/", "daemonset.apps/"]
        .iter()
        .any(|kind| resource.starts_with(kind));
    match outcome {
        RollbackOutcome::RolledBack { detail } if k8s => {
            let _ = detail;
            format!("{resource} rolled back")
        }
        RollbackOutcome::RolledBack { detail } => format!("{resource} rolled back: {detail}"),
        RollbackOutcome::AlreadyAt { detail } => match skipped(detail) {
            Some(s) if k8s => format!("{resource} {s}"),
            _ => format!("{resource} skipped rollback ({detail})"),
        },
        RollbackOutcome::DryRun { detail } => {
            let suffix = if dry == DryRun::Server {
                "(server dry run)"
            } else {
                "(dry run)"
            };
            let rest = detail
                .strip_prefix("client dry run: ")
                .or_else(|| detail.strip_prefix("server dry run: "))
                .unwrap_or(detail);
            match skipped(rest) {
                Some(s) => format!("{resource} {s} {suffix}"),
                None if k8s && dry == DryRun::Server => format!("{resource} rolled back {suffix}"),
                None => format!("{resource} {rest} {suffix}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_s_lines() {
        let d = "deployment.apps/web";
        let o = |detail: &str| detail.to_owned();
        assert_eq!(
            line(
                d,
                &RollbackOutcome::RolledBack {
                    detail: o("rolled back Deployment x")
                },
                DryRun::None
            ),
            "deployment.apps/web rolled back"
        );
        assert_eq!(
            line(
                d,
                &RollbackOutcome::AlreadyAt {
                    detail: o(
                        "skipped rollback (current template already matches revision 3): Deployment shop/web already runs ccc"
                    )
                },
                DryRun::None
            ),
            "deployment.apps/web skipped rollback (current template already matches revision 3)"
        );
        assert_eq!(
            line(
                d,
                &RollbackOutcome::DryRun {
                    detail: o(
                        "server dry run: the API server accepted rolling back Deployment shop/web to revision 1"
                    )
                },
                DryRun::Server
            ),
            "deployment.apps/web rolled back (server dry run)"
        );
        assert_eq!(
            line(
                d,
                &RollbackOutcome::DryRun {
                    detail: o(
                        "server dry run: skipped rollback (current template already matches revision 3): x"
                    )
                },
                DryRun::Server
            ),
            "deployment.apps/web skipped rollback (current template already matches revision 3) (server dry run)"
        );
        assert_eq!(
            line(
                "statefulset.apps/db",
                &RollbackOutcome::RolledBack {
                    detail: o("rolled back StatefulSet shop/db to revision 2 (bbb, app=db:2)")
                },
                DryRun::None
            ),
            "statefulset.apps/db rolled back"
        );
        let client = line(
            d,
            &RollbackOutcome::DryRun {
                detail: o(
                    "client dry run: would roll back Deployment shop/web to revision 2 (pod-template-hash bbb, app=web:2)",
                ),
            },
            DryRun::Client,
        );
        assert!(
            client.contains("web:2") && client.ends_with("(dry run)"),
            "{client}"
        );
    }
}
