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
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod audit;
mod auth;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod condition;
mod driver;
mod error;
pub mod machine;
mod memory;
mod policy;
mod probe;
pub mod replay;
mod retry;
mod revision;
pub mod store;
mod rollbacker;
mod target;
mod time;
mod trigger;

pub use audit::{AuditEntry, AuditRecord, AuditSink, JsonLinesAuditSink, MemoryAuditSink, TextAuditSink};
pub use auth::{Actor, AllowAll, Authorizer, Command, CommandKind, Denied, Grants};
pub use condition::{Comparison, Condition, ConditionParseError, NoData, Verdict, VerdictCause, judge};
pub use driver::{CommandReceipt, Engine, EngineBuilder, Jitter, SeededJitter, WatchHandle, WatchSpec, describe, kind_of};
pub use error::{Error, ErrorKind, Result};
pub use machine::{Breach, Candidate, Decision, Event, Machine, MachineState, Phase, PhaseKind, Step, Watch};
pub use memory::{InMemoryRollbacker, InMemoryTarget, RecordedRollback, ScriptStep, ScriptedProbe};
pub use policy::{Approval, OnIrreversible, Policy, PolicyError, PolicyFormat, ProbePolicy, ProbeRules, RollbackTo};
pub use probe::{HealthProbe, Measurement, ProbeContext};
pub use replay::{ReplayOptions, ReplayReport, Sample, Series, replay};
pub use retry::RetryPolicy;
pub use revision::{HistoryEntry, IRREVERSIBLE_ATTRIBUTE, Revision, RevisionHealth, RevisionId, RevisionRecord, RevisionRef};
pub use rollbacker::{Convergence, RollbackOutcome, RollbackRequest, Rollbacker};
pub use store::{FileStateStore, MemoryStateStore, StateStore};
pub use target::{Capabilities, Target, TargetExt, TargetId};
pub use trigger::{Trigger, TriggerOutcome, TriggerSink};
pub use time::{Clock, SystemClock, Timestamp, TokioClock, format_duration};

/// mockall mocks of the four traits (feature `mock`).
#[cfg(feature = "mock")]
pub mod mock {
    pub use crate::probe::MockHealthProbe;
    pub use crate::revision::MockRevision;
    pub use crate::rollbacker::MockRollbacker;
    pub use crate::target::MockTarget;
}
