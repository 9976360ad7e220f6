//! Why a revision was judged bad: the limit a probe went past, an alert, an
//! operator.

use std::fmt;

use crate::Actor;
use crate::condition::VerdictCause;

/// Which limit a probe went past.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Limit {
    /// `failure_limit`
    FailureLimit,
    /// `consecutive_failure_limit`
    ConsecutiveFailureLimit,
    /// `inconclusive_limit`
    InconclusiveLimit,
    /// `consecutive_error_limit`
    ConsecutiveErrorLimit,
    /// A critical metric changed past its critical effect size
    /// (`mann_whitney.critical`): a breach at once.
    CriticalEffect,
}

impl Limit {
    fn as_str(self) -> &'static str {
        match self {
            Limit::FailureLimit => "failure_limit",
            Limit::ConsecutiveFailureLimit => "consecutive_failure_limit",
            Limit::InconclusiveLimit => "inconclusive_limit",
            Limit::ConsecutiveErrorLimit => "consecutive_error_limit",
            Limit::CriticalEffect => "mann_whitney.critical",
        }
    }
}

/// Why a revision was judged bad.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "cause")]
#[non_exhaustive]
pub enum Breach {
    /// A probe went past a limit.
    Probe {
        /// The probe's name.
        probe: String,
        /// The limit it went past.
        limit: Limit,
        /// The limit's value.
        allowed: u32,
        /// The count that went past it.
        count: u32,
        /// The last value measured, if any. NaN and infinities are kept
        /// (as `"NaN"`, `"+Inf"`, `"-Inf"`), so an inconclusive NaN does not
        /// read back as no data.
        #[serde(default, with = "crate::audit::float::option")]
        value: Option<f64>,
        /// Why the last measurement was judged as it was.
        verdict_cause: Option<VerdictCause>,
        /// The conditions, as written.
        conditions: String,
    },
    /// An alert fired for the target.
    Alert {
        /// The alert's identity (fingerprint and start time).
        key: String,
        /// What it says.
        summary: String,
    },
    /// An operator asked for the rollback.
    Operator {
        /// The operator, already authorized by the driver.
        actor: Actor,
    },
}

impl fmt::Display for Breach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Breach::Probe {
                probe,
                limit,
                allowed,
                count,
                value,
                verdict_cause,
                conditions,
            } => {
                if *limit == Limit::CriticalEffect {
                    write!(
                        f,
                        "probe {probe} changed past its critical effect size against its baseline ({conditions})"
                    )?;
                    if let Some(v) = value {
                        write!(f, "; canary mean {v}")?;
                    }
                    return Ok(());
                }
                let what = match limit {
                    Limit::FailureLimit => "failed",
                    Limit::ConsecutiveFailureLimit => "failed in a row",
                    Limit::InconclusiveLimit => "was inconclusive",
                    Limit::ConsecutiveErrorLimit => "could not be measured in a row",
                    Limit::CriticalEffect => unreachable!("written above"),
                };
                write!(
                    f,
                    "probe {probe} {what} {count} times ({} {allowed})",
                    limit.as_str()
                )?;
                match (value, verdict_cause) {
                    (Some(v), _) => write!(f, "; last value {v} against {conditions}"),
                    (None, Some(VerdictCause::NoData)) => {
                        write!(f, "; last measurement had no data")
                    }
                    _ => Ok(()),
                }
            }
            Breach::Alert { key, summary } => write!(f, "alert {summary} ({key}) fired"),
            Breach::Operator { actor } => write!(f, "{actor} asked for a rollback"),
        }
    }
}
