//! Measuring one service level indicator.

use std::fmt;

use async_trait::async_trait;

use crate::canary::Samples;
use crate::{Result, RevisionId, TargetId, Timestamp};

/// One measurement of an SLI.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Measurement {
    /// The value; `None` when the source had no data (an empty query result).
    pub value: Option<f64>,
    /// The baseline to compare with for relative conditions (`<= +10%`): the
    /// same SLI on the stable revision, where the probe measures one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    /// What the value stands for, in words, for the audit log and the
    /// timeline (`progress deadline exceeded; 3 pods in CrashLoopBackOff`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Values of the canary and of its baseline, for a probe judged by
    /// `mann_whitney` ([`crate::canary`]); `value` and `baseline` are then
    /// their means, for the timeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<Samples>,
}

impl Measurement {
    /// A value with no baseline.
    pub const fn value(v: f64) -> Self {
        Measurement {
            value: Some(v),
            baseline: None,
            detail: None,
            samples: None,
        }
    }

    /// No data.
    pub const NO_DATA: Measurement = Measurement {
        value: None,
        baseline: None,
        detail: None,
        samples: None,
    };

    /// A value with a baseline.
    pub const fn with_baseline(v: f64, baseline: f64) -> Self {
        Measurement {
            value: Some(v),
            baseline: Some(baseline),
            detail: None,
            samples: None,
        }
    }

    /// Samples of canary and baseline, with their means as value and
    /// baseline (`None` for a side without values).
    pub fn samples(samples: Samples) -> Self {
        let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
        Measurement {
            value: mean(&samples.canary),
            baseline: mean(&samples.baseline),
            detail: None,
            samples: Some(samples),
        }
    }

    /// The same measurement, described in words.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// What a probe is measuring for. Built with [`ProbeContext::new`], so it can grow.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProbeContext {
    /// The target being watched.
    pub target: TargetId,
    /// The revision being judged: the new one while observing, the restored
    /// one while verifying a rollback.
    pub revision: RevisionId,
    /// When the measurement was asked for.
    pub at: Timestamp,
}

impl ProbeContext {
    /// Measuring `revision` of `target` at `at`.
    pub fn new(target: TargetId, revision: RevisionId, at: Timestamp) -> Self {
        ProbeContext {
            target,
            revision,
            at,
        }
    }
}

/// Takes one measurement of one SLI.
///
/// The probe measures; the policy judges. The probe returns a raw
/// [`Measurement`], and the policy's success and failure conditions for the
/// probe's name turn it into a [`crate::Verdict`], so the same judging runs
/// live and in replay over recorded values.
///
/// # Contract
/// - `name()` is constant and matches a probe name in the policy.
/// - `measure` takes one fresh measurement. No data (an empty result) is
///   `Ok(Measurement { value: None, .. })`, never an error and never zero.
///   NaN and infinities may be returned as they are: the engine judges them
///   `Inconclusive`, never `Pass`.
/// - An `Err` means the probe could not measure (network, query error,
///   timeout): it counts towards `consecutive_error_limit`, never as a failed
///   measurement.
/// - Safe to call concurrently for different contexts.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait HealthProbe: fmt::Debug + Send + Sync + 'static {
    /// The probe's name, as the policy names it.
    fn name(&self) -> &str;

    /// Take one measurement.
    async fn measure(&self, context: &ProbeContext) -> Result<Measurement>;
}

fn _dyn_ok(_: std::sync::Arc<dyn HealthProbe>) {}
