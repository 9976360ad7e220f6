//! `rollback-core`: the policy engine of `rollback`.
//!
//! It watches a change after it ships, judges it against SLOs, rolls it back
//! to the last known good revision when a probe breaches its policy, verifies
//! that health came back, and records every step.
//!
//! This crate has no network dependency. The root holds what an embedder
//! touches: the four traits backends implement ([`Target`], [`Revision`],
//! [`HealthProbe`], [`Rollbacker`]) and their data, the [`Policy`], and the
//! [`Engine`] that watches a [`WatchSpec`]. The rest lives in modules:
//!
//! | module | what it holds |
//! |---|---|
//! | [`machine`] | the sans-IO decision machine the engine drives |
//! | [`audit`] | audit records, the text and hash-chained JSON-lines sinks, [`audit::verify`] |
//! | [`store`] | where the machine's state is persisted |
//! | [`supervisor`] | every new revision of every target judged, continuously |
//! | [`auth`] | who may give operator commands |
//! | [`condition`] | `< 0.01`, `<= +10%`, verdicts |
//! | [`canary`] | canary against baseline by statistics: Kayenta's Mann-Whitney judge |
//! | [`plan`] | targets that depend on each other, rolled back in order |
//! | [`policy`] | the parts of a policy |
//! | [`time`] | timestamps, clocks, human durations |
//! | [`memory`] | in-memory backends to try a policy with |
//! | [`replay`] | run a policy over recorded series |
//! | [`watchfile`] | the watch file: targets by URL, probes, policy, audit, state |
//! | [`registry`] | target URLs and probe kinds, resolved to backends |
//! | [`http`] | network-free HTTP helpers every backend shares |
//! | [`steps`] | counting and interrupting a backend's steps, for crash tests |
//! | `conformance` | the suite every backend runs (feature `conformance`) |
//!
//! Try a policy on in-memory backends, on virtual time:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> rollback_core::Result<()> {
//! use std::sync::Arc;
//! use rollback_core::audit::MemoryAuditSink;
//! use rollback_core::memory::{InMemoryRollbacker, InMemoryTarget, ScriptedProbe};
//! use rollback_core::time::TokioClock;
//! use rollback_core::*;
//!
//! let policy = Policy::from_yaml(r#"
//! interval: 30s
//! failure_limit: 1
//! verify: 1m
//! probes: [{ name: error_rate, success: "< 0.01" }]
//! "#).map_err(Error::from)?;
//! let target = InMemoryTarget::new("shop/checkout", [RevisionRecord::new("v1"), RevisionRecord::new("v2")])?;
//! target.set_health(&"v1".into(), RevisionHealth::Good)?;
//! let probe = ScriptedProbe::new("error_rate")
//!     .script_for("v2", [0.004, 0.02, 0.03])
//!     .script_for("v1", [0.001]);
//! let rollbacker = InMemoryRollbacker::new(&target);
//! let audit = MemoryAuditSink::new();
//! let engine = Engine::builder()
//!     .audit(Arc::new(audit.clone()))
//!     .clock(Arc::new(TokioClock::starting_at(Timestamp::EPOCH)))
//!     .build();
//! let spec = WatchSpec::new(policy, Arc::new(target.clone()), Arc::new(rollbacker.clone()), vec![Arc::new(probe)]);
//! let end = engine.watch(spec).await?.finished().await;
//!
//! assert!(matches!(end, Phase::RolledBack { .. }));
//! assert_eq!(target.current_id().as_str(), "v1");
//! assert_eq!(rollbacker.performed().len(), 1);
//! assert!(audit.records().iter().any(|r| r.describe().starts_with("decision rollback")));
//! # Ok(()) }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod audit;
pub mod auth;
pub mod canary;
pub mod changes;
pub mod condition;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod engine;
mod error;
pub mod forecast;
pub mod http;
pub mod machine;
pub mod memory;
pub mod plan;
pub mod policy;
mod probe;
pub mod registry;
pub mod replay;
mod retry;
mod revision;
mod rollbacker;
pub mod steps;
pub mod store;
pub mod supervisor;
mod target;
pub mod time;
mod trigger;
pub mod watchfile;

/// A mutex's guard, poisoned or not: a panic while holding the crate's
/// locks cannot leave the data half updated (each update is a single
/// assignment or a complete step), so poisoning is ignored.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// The root: the traits, their data, the policy, the engine.
pub use auth::{Actor, Command};
pub use engine::{CommandReceipt, Engine, EngineBuilder, WatchHandle, WatchSpec};
pub use error::{Error, ErrorKind, Result};
pub use machine::Phase;
pub use policy::Policy;
pub use probe::{HealthProbe, Measurement, ProbeContext};
pub use revision::{
    HistoryEntry, IRREVERSIBLE_ATTRIBUTE, Revision, RevisionHealth, RevisionId, RevisionRecord,
    RevisionRef,
};
pub use rollbacker::{Convergence, DryRun, RollbackOutcome, RollbackRequest, Rollbacker};
pub use target::{Capabilities, Mark, Target, TargetExt, TargetId};
pub use time::Timestamp;
pub use trigger::{Trigger, TriggerOutcome, TriggerSink};

// Short paths for the crate's own code; the public path of each is its module's.
pub(crate) use auth::CommandKind;
pub(crate) use condition::{Verdict, VerdictCause};
pub(crate) use machine::{Candidate, MachineState, PhaseKind};
pub(crate) use policy::{Approval, OnIrreversible, ProbeRules, RollbackTo};

/// mockall mocks of the four traits (feature `mock`).
#[cfg(feature = "mock")]
pub mod mock {
    pub use crate::probe::MockHealthProbe;
    pub use crate::revision::MockRevision;
    pub use crate::rollbacker::MockRollbacker;
    pub use crate::target::MockTarget;
}
