//! `rollback-core`: the policy engine of `rollback`.
//!
//! It watches a change after it ships, judges it against SLOs, rolls it back
//! to the last known good revision when a probe breaches its policy, verifies
//! that health came back, and records every step.
//!
//! This crate has no network dependency. It holds the four traits backends
//! implement ([`Target`], [`Revision`], [`HealthProbe`], [`Rollbacker`]), the
//! [`Policy`], the sans-IO decision [`Machine`], the async [`Engine`] that
//! drives it, the audit log and state store, in-memory backends to test a
//! policy with, and [`replay`] of recorded metrics.
//!
//! Try a policy on in-memory backends, on virtual time:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> rollback_core::Result<()> {
//! use std::sync::Arc;
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
mod auth;
mod condition;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod driver;
mod error;
pub mod machine;
mod memory;
mod policy;
mod probe;
pub mod replay;
mod retry;
mod revision;
mod rollbacker;
pub mod store;
mod target;
mod time;
mod trigger;

pub use audit::{
    AuditEntry, AuditRecord, AuditSink, JsonLinesAuditSink, MemoryAuditSink, TextAuditSink,
};
pub use auth::{Actor, AllowAll, Authorizer, Command, CommandKind, Denied, Grants};
pub use condition::{
    Comparison, Condition, ConditionParseError, NoData, Verdict, VerdictCause, judge,
};
pub use driver::{
    CommandReceipt, Engine, EngineBuilder, Jitter, SeededJitter, WatchHandle, WatchSpec, describe,
    kind_of,
};
pub use error::{Error, ErrorKind, Result};
pub use machine::{
    Breach, Candidate, Decision, Event, Machine, MachineState, Phase, PhaseKind, Step, Watch,
};
pub use memory::{InMemoryRollbacker, InMemoryTarget, RecordedRollback, ScriptStep, ScriptedProbe};
pub use policy::duration;
pub use policy::{
    Approval, OnIrreversible, Policy, PolicyError, PolicyFormat, ProbePolicy, ProbeRules,
    RollbackTo,
};
pub use probe::{HealthProbe, Measurement, ProbeContext};
pub use replay::{ReplayOptions, ReplayReport, Sample, Series, replay};
pub use retry::RetryPolicy;
pub use revision::{
    HistoryEntry, IRREVERSIBLE_ATTRIBUTE, Revision, RevisionHealth, RevisionId, RevisionRecord,
    RevisionRef,
};
pub use rollbacker::{Convergence, RollbackOutcome, RollbackRequest, Rollbacker};
pub use store::{FileStateStore, MemoryStateStore, StateStore};
pub use target::{Capabilities, Target, TargetExt, TargetId};
pub use time::{Clock, SystemClock, Timestamp, TokioClock, format_duration};
pub use trigger::{Trigger, TriggerOutcome, TriggerSink};

/// mockall mocks of the four traits (feature `mock`).
#[cfg(feature = "mock")]
pub mod mock {
    pub use crate::probe::MockHealthProbe;
    pub use crate::revision::MockRevision;
    pub use crate::rollbacker::MockRollbacker;
    pub use crate::target::MockTarget;
}
