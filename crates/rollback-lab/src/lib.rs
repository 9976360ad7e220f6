//! `rollback-lab`: the policy lab. Before trusting a rollback policy, ask
//! what it would have done over months of history: how often it would have
//! rolled back a healthy deploy, and how fast it would have caught the
//! incidents there were.
//!
//! - [`backtest`]: the decision machine run from every change point (given,
//!   every N hours, or read from a series such as
//!   `kube_deployment_status_observed_generation`) over its bake window;
//!   would-be rollbacks, promotions, escalations, and against labelled
//!   incidents: detections, misses, false rollbacks, detection delay.
//! - [`tune`]: a grid or list of policy variations, each backtested on all
//!   cores; the Pareto front of delay against false rollbacks, and the best
//!   policy under a false-rollback budget as a policy file.
//! - [`input`]: the series users have: Prometheus' `query_range` answer,
//!   two-column and wide CSVs, the replay's own formats; and (feature
//!   `prometheus`) [`fetch_history`] straight from a Prometheus server.
//! - [`plot`]: SVG plots of the series, conditions, verdicts, change
//!   points, rollbacks and incidents, and of a tune result; no system
//!   fonts needed.
//!
//! The machine is the one that runs live ([`rollback_core::machine`]),
//! through [`rollback_core::replay::Replay`], so a number from the lab is a
//! promise about production.
//!
//! ```
//! use std::time::Duration;
//! use rollback_core::replay::{Sample, Series};
//! use rollback_core::{Policy, Timestamp};
//! use rollback_lab::{BacktestOptions, ChangePoints, Incident, backtest};
//!
//! // A day of 10-second samples with one bad hour.
//! let t = |s: i64| Timestamp::from_millis(1_795_780_800_000 + s * 1000);
//! let series: Series = (0..8640)
//!     .map(|i| {
//!         let bad = (36_000..39_600).contains(&(i * 10));
//!         let value = Some(if bad { 0.2 } else { 0.001 });
//!         ("error_rate", Sample { at: t(i * 10), value, baseline: None })
//!     })
//!     .collect();
//! let policy = Policy::from_yaml(
//!     "interval: 10s\nbake_time: 1h\nconsecutive_failure_limit: 2\nprobes: [{name: error_rate, success: '< 0.05'}]",
//! )?;
//! let incident = Incident { start: t(36_000), end: t(39_600), name: Some("INC-7".into()) };
//! let options = BacktestOptions::new(ChangePoints::Every(Duration::from_secs(3600)))
//!     .incidents(vec![incident]);
//! let report = backtest(&policy, &series, &options)?;
//!
//! assert_eq!(report.summary.changes, 24);
//! assert_eq!(report.summary.detections, 1);
//! assert_eq!(report.summary.false_rollbacks, 0);
//! assert_eq!(report.summary.delay.unwrap().median, 20.0);
//! println!("{report}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod backtest;
mod changes;
mod incidents;
pub mod input;
pub mod plot;
#[cfg(feature = "prometheus")]
mod prometheus;
mod report;
mod tune;

pub use backtest::{
    BacktestOptions, BacktestReport, BacktestSummary, ChangeOutcome, ChangeRun, DelayStats,
    IncidentResult, backtest,
};
pub use changes::{ChangePoints, parse_change_points, read_change_points, value_changes};
pub use incidents::{Incident, parse_incidents_csv, parse_incidents_json, read_incidents};
pub use input::{SeriesFile, read_series};
pub use plot::{PlotOptions, plot_backtest, plot_replay, plot_tune};
#[cfg(feature = "prometheus")]
pub use prometheus::{HistoryQuery, fetch_change_points, fetch_history};
pub use tune::{
    TuneCandidate, TuneOptions, TuneReport, TuneSpace, Variation, apply, describe_variation, tune,
};
