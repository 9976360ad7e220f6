//! What a rollback of a deployment group will do, decided from its
//! deployments before anything is changed, and the description its
//! deployment carries.

use std::fmt;

use aws_sdk_codedeploy::types::{DeploymentInfo, DeploymentStatus};
use rollback_core::{Revision, RevisionId, Timestamp};

use crate::appspec::LambdaSpec;
use crate::history::{self, ROLLBACK_DESCRIPTION_PREFIX, deployment_id, is_in_flight, status_str};
use crate::revision::CodeDeployRevision;

/// CodeDeploy refuses longer deployment descriptions; stay well within.
pub(crate) const MAX_DESCRIPTION_CHARS: usize = 512;

/// A deployment as a plan names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Deployed {
    pub(crate) id: String,
    /// The label of the revision it installs.
    pub(crate) revision: String,
    /// Its status as CodeDeploy spells it.
    pub(crate) status: String,
}

impl Deployed {
    pub(crate) fn of(d: &DeploymentInfo) -> Self {
        Deployed {
            id: deployment_id(d).to_owned(),
            revision: history::revision_of(d).label().to_owned(),
            status: status_str(d).to_owned(),
        }
    }
}

/// What a rollback to one revision does; its `Display` is the imperative
/// that dry runs prefix with "would".
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// The label of the revision to restore.
    pub(crate) to: String,
    pub(crate) course: Course,
}

/// The CodeDeploy calls a [`Plan`] makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Course {
    /// The newest deployment installs the revision and has not failed.
    AlreadyAt { newest: Deployed },
    /// A deployment whose description names this rollback's decision exists
    /// (a call cut short after `CreateDeployment` left it): it is this
    /// rollback's deployment, whatever became of it; no second one is made.
    AlreadyDeployed { ours: Deployed },
    /// The newest deployment is in flight, and CodeDeploy's own rollback
    /// (to the last succeeded deployment's revision) restores the revision:
    /// `StopDeployment(autoRollbackEnabled = true)`.
    StopWithAutoRollback { bad: Deployed },
    /// The newest deployment is in flight, and CodeDeploy's own rollback
    /// would restore another revision: stop it, then deploy the revision.
    StopThenCreate { bad: Deployed },
    /// The newest deployment is complete: deploy the revision again.
    Create { reverts: Option<Deployed> },
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let to = &self.to;
        match &self.course {
            Course::AlreadyAt { newest } => write!(
                f,
                "change nothing: its newest deployment {} installs {to} and is {}",
                newest.id, newest.status
            ),
            Course::AlreadyDeployed { ours } => write!(
                f,
                "change nothing: deployment {} of {to} was created for this rollback and is {}",
                ours.id, ours.status
            ),
            Course::StopWithAutoRollback { bad } => write!(
                f,
                "stop deployment {} of {} with autoRollbackEnabled, so that CodeDeploy redeploys {to}",
                bad.id, bad.revision
            ),
            Course::StopThenCreate { bad } => write!(
                f,
                "stop deployment {} of {}, then create a deployment of {to}",
                bad.id, bad.revision
            ),
            Course::Create { reverts: Some(bad) } => write!(
                f,
                "create a deployment of {to} reverting deployment {} of {}",
                bad.id, bad.revision
            ),
            Course::Create { reverts: None } => write!(f, "create a deployment of {to}"),
        }
    }
}

/// Decide what a rollback to `to`, decided at `decided_at`, does, given the
/// group's deployments newest first.
pub(crate) fn plan(
    deployments: &[DeploymentInfo],
    to: &CodeDeployRevision,
    decided_at: Timestamp,
) -> Plan {
    Plan {
        to: to.label().to_owned(),
        course: course(deployments, to.id(), decided_at),
    }
}

fn course(deployments: &[DeploymentInfo], to: &RevisionId, decided_at: Timestamp) -> Course {
    let Some(newest) = deployments.first() else {
        return Course::Create { reverts: None };
    };
    let installs_to = |d: &DeploymentInfo| history::revision_of(d).id() == to;
    if installs_to(newest)
        && (is_in_flight(newest.status()) || newest.status() == Some(&DeploymentStatus::Succeeded))
    {
        return Course::AlreadyAt {
            newest: Deployed::of(newest),
        };
    }
    let ours = deployments.iter().find(|d| {
        installs_to(d)
            && d.description()
                .is_some_and(|text| names_decision(text, decided_at))
    });
    if let Some(ours) = ours {
        return Course::AlreadyDeployed {
            ours: Deployed::of(ours),
        };
    }
    if is_in_flight(newest.status()) {
        let bad = Deployed::of(newest);
        return match codedeploy_rollback_restores(deployments) {
            Some(restores) if &restores == to => Course::StopWithAutoRollback { bad },
            _ => Course::StopThenCreate { bad },
        };
    }
    Course::Create {
        reverts: Some(Deployed::of(newest)),
    }
}

/// The revision CodeDeploy's own rollback of the newest deployment
/// (`StopDeployment` with `autoRollbackEnabled`) restores: on Lambda, the
/// version the deployment shifts the alias from; elsewhere, the revision of
/// the group's last succeeded deployment.
pub(crate) fn codedeploy_rollback_restores(deployments: &[DeploymentInfo]) -> Option<RevisionId> {
    let newest = deployments.first()?;
    if let Some(spec) = history::revision_of(newest).lambda() {
        return Some(RevisionId::new(spec.previous_id()));
    }
    deployments[1..]
        .iter()
        .find(|d| d.status() == Some(&DeploymentStatus::Succeeded))
        .map(|d| history::revision_of(d).id().clone())
}

/// The version a rollback's Lambda AppSpec shifts the alias from, given the
/// group's deployments newest first: the version the newest deployment
/// shifted the alias to (or was shifting it to: a stopped Lambda deployment
/// leaves the alias where traffic shifting had it), or, when that is the
/// version to restore (a rollback to it that failed), the version it
/// shifted the alias from. CodeDeploy refuses an AppSpec whose versions are
/// the same.
pub(crate) fn shift_from(
    deployments: &[DeploymentInfo],
    to: &LambdaSpec,
) -> Result<String, String> {
    let Some(newest) = deployments.first() else {
        return Err(
            "the group has no deployments, so no version of the alias to shift from".into(),
        );
    };
    let revision = history::revision_of(newest);
    let Some(spec) = revision.lambda() else {
        let why = revision
            .attributes()
            .get(crate::attributes::APPSPEC_ERROR)
            .map(|e| format!(": its AppSpec does not read ({e})"))
            .unwrap_or_else(|| ": it has no Lambda AppSpec".into());
        return Err(format!(
            "the version alias {} of function {} is on is unknown, because of the newest deployment {}{why}",
            to.alias,
            to.name,
            deployment_id(newest)
        ));
    };
    if (&spec.name, &spec.alias) != (&to.name, &to.alias) {
        return Err(format!(
            "the newest deployment {} shifts alias {} of function {}, not alias {} of function {}",
            deployment_id(newest),
            spec.alias,
            spec.name,
            to.alias,
            to.name
        ));
    }
    Ok(if spec.target_version != to.target_version {
        spec.target_version.clone()
    } else {
        spec.current_version.clone()
    })
}

/// The words of a description that tie it to one rollback decision.
fn decision_mark(decided_at: Timestamp) -> String {
    format!(", decided at {decided_at}")
}

/// Whether a deployment description is that of the rollback decided at `decided_at`.
pub(crate) fn names_decision(description: &str, decided_at: Timestamp) -> bool {
    description.starts_with("Rollback ") && description.contains(&decision_mark(decided_at))
}

/// The description of a rollback deployment: the deployment it reverts
/// (which marks that deployment's revision bad in the history), the
/// revision it restores, when the rollback was decided (which makes it this
/// rollback's deployment, see [`names_decision`]), who asked and why. The
/// same request gives the same text; within [`MAX_DESCRIPTION_CHARS`], the
/// reason is shortened first and the decision's time is always kept.
pub(crate) fn description(
    reverts: Option<&Deployed>,
    to: &str,
    decided_at: Timestamp,
    actor: &str,
    reason: &str,
) -> String {
    let head = match reverts {
        Some(bad) => format!(
            "{ROLLBACK_DESCRIPTION_PREFIX}{} ({}) to {to}",
            bad.id, bad.revision
        ),
        None => format!("Rollback to {to}"),
    };
    let mark = decision_mark(decided_at);
    let mut tail = format!(", by {actor}");
    if !reason.trim().is_empty() {
        tail.push_str(": ");
        tail.push_str(reason.trim());
    }
    let count = |s: &str| s.chars().count();
    if count(&head) + count(&mark) + count(&tail) <= MAX_DESCRIPTION_CHARS {
        return format!("{head}{mark}{tail}");
    }
    let room = MAX_DESCRIPTION_CHARS.saturating_sub(count(&mark) + 1);
    if count(&head) < room {
        let tail: String = tail.chars().take(room - count(&head)).collect();
        format!("{head}{mark}{tail}…")
    } else {
        let head: String = head.chars().take(room).collect();
        format!("{head}…{mark}")
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_codedeploy::types::DeploymentStatus::*;

    use super::*;
    use crate::history::tests::deployment;

    const DECIDED: Timestamp = Timestamp::from_millis(1_795_780_800_000);

    fn github(commit: &str) -> CodeDeployRevision {
        history::revision_of(&deployment("d0", commit, Succeeded, 0))
    }

    fn course_to(deployments: &[DeploymentInfo], commit: &str) -> Course {
        plan(deployments, &github(commit), DECIDED).course
    }

    fn d(id: &str, commit: &str, status: &str) -> Deployed {
        Deployed {
            id: id.into(),
            revision: format!("bank/payments@{commit}"),
            status: status.into(),
        }
    }

    #[test]
    fn plans_follow_what_codedeploy_users_do() {
        let complete = vec![
            deployment("d3", "bad", Succeeded, 30),
            deployment("d2", "good", Succeeded, 20),
        ];
        assert_eq!(
            course_to(&complete, "good"),
            Course::Create {
                reverts: Some(d("d3", "bad", "Succeeded"))
            }
        );
        assert_eq!(
            course_to(&complete, "bad"),
            Course::AlreadyAt {
                newest: d("d3", "bad", "Succeeded")
            }
        );

        let in_flight = vec![
            deployment("d4", "bad", InProgress, 40),
            deployment("d3", "older", Failed, 30),
            deployment("d2", "good", Succeeded, 20),
            deployment("d1", "oldest", Succeeded, 10),
        ];
        assert_eq!(
            course_to(&in_flight, "good"),
            Course::StopWithAutoRollback {
                bad: d("d4", "bad", "InProgress")
            }
        );
        assert_eq!(
            course_to(&in_flight, "oldest"),
            Course::StopThenCreate {
                bad: d("d4", "bad", "InProgress")
            }
        );

        let rolling_back = vec![
            deployment("d5", "good", Created, 50),
            deployment("d4", "bad", Stopped, 40),
        ];
        assert_eq!(
            course_to(&rolling_back, "good"),
            Course::AlreadyAt {
                newest: d("d5", "good", "Created")
            }
        );

        let failed_rollback = vec![
            deployment("d5", "good", Failed, 50),
            deployment("d4", "bad", Stopped, 40),
        ];
        assert_eq!(
            course_to(&failed_rollback, "good"),
            Course::Create {
                reverts: Some(d("d5", "good", "Failed"))
            }
        );
    }

    #[test]
    fn a_deployment_of_this_decision_is_never_made_twice() {
        let bad = d("d4", "bad", "Succeeded");
        let ours_text = description(Some(&bad), "bank/payments@good", DECIDED, "engine", "slow");
        let mut ours = deployment("d5", "good", Failed, 50);
        ours.description = Some(ours_text.clone());
        let ds = vec![ours, deployment("d4", "bad", Succeeded, 40)];
        assert_eq!(
            course_to(&ds, "good"),
            Course::AlreadyDeployed {
                ours: d("d5", "good", "Failed")
            }
        );
        // Another decision, or another revision, is not this rollback's.
        let later = plan(
            &ds,
            &github("good"),
            DECIDED.plus(std::time::Duration::from_secs(1)),
        );
        assert!(matches!(later.course, Course::Create { .. }), "{later:?}");
        assert!(names_decision(&ours_text, DECIDED));
        assert!(!names_decision(
            "release 1.2, decided at 2026-11-27T12:00:00.000Z",
            DECIDED
        ));
    }

    /// A deployment of a Lambda group shifting alias `live` of `payments`.
    fn shift(
        id: &str,
        current: u32,
        target: u32,
        status: DeploymentStatus,
        at: i64,
    ) -> DeploymentInfo {
        use aws_sdk_codedeploy::types::{
            AppSpecContent, ComputePlatform, RevisionLocation, RevisionLocationType,
        };
        let spec = format!(
            "Resources:\n  - f:\n      Type: AWS::Lambda::Function\n      Properties: {{Name: payments, Alias: live, CurrentVersion: {current}, TargetVersion: {target}}}\n"
        );
        let mut d = deployment(id, "unused", status, at);
        d.compute_platform = Some(ComputePlatform::Lambda);
        d.revision = Some(
            RevisionLocation::builder()
                .revision_type(RevisionLocationType::AppSpecContent)
                .app_spec_content(AppSpecContent::builder().content(spec).build())
                .build(),
        );
        d
    }

    #[test]
    fn lambda_rollbacks_shift_the_alias_from_where_it_is() {
        let to = |ds: &[DeploymentInfo], v: u32| {
            ds.iter()
                .map(history::revision_of)
                .find(|r| {
                    r.lambda()
                        .is_some_and(|s| s.target_version == v.to_string())
                })
                .unwrap()
        };
        let complete = vec![
            shift("d2", 2, 3, Succeeded, 20),
            shift("d1", 1, 2, Succeeded, 10),
        ];
        let good = to(&complete, 2);
        assert_eq!(good.id().as_str(), "lambda:payments:live@2");
        assert_eq!(shift_from(&complete, good.lambda().unwrap()).unwrap(), "3");
        assert!(matches!(
            plan(&complete, &good, DECIDED).course,
            Course::Create { .. }
        ));

        // In flight from 2: CodeDeploy's own rollback shifts back to 2.
        let canary = vec![
            shift("d2", 2, 3, InProgress, 20),
            shift("d1", 1, 2, Succeeded, 10),
        ];
        assert_eq!(
            codedeploy_rollback_restores(&canary).unwrap().as_str(),
            "lambda:payments:live@2"
        );
        assert!(matches!(
            plan(&canary, &to(&canary, 2), DECIDED).course,
            Course::StopWithAutoRollback { .. }
        ));
        // To 1, which the canary does not shift from: stop, then deploy.
        let older = vec![
            shift("d3", 2, 3, InProgress, 30),
            shift("d2", 1, 2, Succeeded, 20),
            shift("d1", 0, 1, Succeeded, 10),
        ];
        assert!(matches!(
            plan(&older, &to(&older, 1), DECIDED).course,
            Course::StopThenCreate { .. }
        ));
        assert_eq!(
            shift_from(&older, to(&older, 1).lambda().unwrap()).unwrap(),
            "3"
        );

        // A rollback to 2 that failed: shift again, from where it came.
        let failed = vec![
            shift("d3", 3, 2, Failed, 30),
            shift("d2", 2, 3, Succeeded, 20),
            shift("d1", 1, 2, Succeeded, 10),
        ];
        assert_eq!(
            shift_from(&failed, to(&failed, 2).lambda().unwrap()).unwrap(),
            "3"
        );

        // Another function's deployment on top: the alias cannot be told.
        let mut other = shift("d3", 5, 6, Succeeded, 30);
        other.revision = other.revision.map(|mut r| {
            r.app_spec_content = r.app_spec_content.map(|mut c| {
                c.content = c
                    .content
                    .map(|t| t.replace("Name: payments", "Name: ledger"));
                c
            });
            r
        });
        let mixed = vec![other, shift("d1", 1, 2, Succeeded, 10)];
        let e = shift_from(&mixed, to(&mixed, 2).lambda().unwrap()).unwrap_err();
        assert_eq!(
            e,
            "the newest deployment d3 shifts alias live of function ledger, not alias live of function payments"
        );
    }

    #[test]
    fn plans_say_what_they_would_do() {
        let p = |course| Plan {
            to: "bank/payments@good".into(),
            course,
        };
        let bad = d("d4", "bad", "InProgress");
        assert_eq!(
            p(Course::StopWithAutoRollback { bad: bad.clone() }).to_string(),
            "stop deployment d4 of bank/payments@bad with autoRollbackEnabled, so that CodeDeploy redeploys bank/payments@good"
        );
        assert_eq!(
            p(Course::StopThenCreate { bad: bad.clone() }).to_string(),
            "stop deployment d4 of bank/payments@bad, then create a deployment of bank/payments@good"
        );
        assert_eq!(
            p(Course::Create {
                reverts: Some(bad.clone())
            })
            .to_string(),
            "create a deployment of bank/payments@good reverting deployment d4 of bank/payments@bad"
        );
        assert_eq!(
            p(Course::Create { reverts: None }).to_string(),
            "create a deployment of bank/payments@good"
        );
        assert_eq!(
            p(Course::AlreadyAt {
                newest: bad.clone()
            })
            .to_string(),
            "change nothing: its newest deployment d4 installs bank/payments@good and is InProgress"
        );
        assert_eq!(
            p(Course::AlreadyDeployed { ours: bad }).to_string(),
            "change nothing: deployment d4 of bank/payments@good was created for this rollback and is InProgress"
        );
    }

    #[test]
    fn descriptions_name_the_reverted_deployment_and_stay_short() {
        let bad = Deployed {
            id: "d3".into(),
            revision: "bank/payments@bad".into(),
            status: "Succeeded".into(),
        };
        let text = description(
            Some(&bad),
            "bank/payments@good",
            DECIDED,
            "alice",
            "p99 latency 180ms > 100ms",
        );
        assert_eq!(
            text,
            "Rollback of deployment d3 (bank/payments@bad) to bank/payments@good, decided at 2026-11-27T12:00:00.000Z, by alice: p99 latency 180ms > 100ms"
        );
        assert_eq!(history::reverted_by_description(&text), Some("d3"));
        let long = description(
            None,
            "bank/payments@good",
            DECIDED,
            "engine",
            &"x".repeat(2000),
        );
        assert_eq!(long.chars().count(), MAX_DESCRIPTION_CHARS);
        assert!(long.ends_with('…'));
        assert!(names_decision(&long, DECIDED));
        // A label too long for the limit is cut, the decision kept.
        let huge = description(None, &"k".repeat(2000), DECIDED, "engine", "why");
        assert_eq!(huge.chars().count(), MAX_DESCRIPTION_CHARS);
        assert!(names_decision(&huge, DECIDED), "{huge}");
    }
}
