//! How each probe is judged: its policy as written, and its effective
//! rules once the policy-wide defaults are applied.

use std::sync::Arc;

use super::Policy;
use crate::canary::MannWhitney;
use crate::condition::{Condition, NoData};
use crate::forecast::Forecast;

/// The judging of one probe. Limits left out take the policy-wide value.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbePolicy {
    /// The probe's name; a [`crate::HealthProbe`] of this name measures it.
    pub name: String,
    /// When a measurement passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success: Option<Condition>,
    /// When a measurement fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Condition>,
    /// Overrides the policy's `failure_limit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_limit: Option<u32>,
    /// Overrides the policy's `consecutive_failure_limit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failure_limit: Option<u32>,
    /// Overrides the policy's `inconclusive_limit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inconclusive_limit: Option<u32>,
    /// Overrides the policy's `consecutive_error_limit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_error_limit: Option<u32>,
    /// Overrides the policy's `no_data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_data: Option<NoData>,
    /// A trend forecast of the success condition: early detection of a
    /// slow burn ([`crate::forecast`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forecast: Option<Forecast>,
    /// Judge the probe's canary and baseline samples by Kayenta's
    /// Mann-Whitney judge instead of conditions ([`crate::canary`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mann_whitney: Option<MannWhitney>,
}

impl ProbePolicy {
    /// A probe policy with no conditions yet.
    pub fn new(name: impl Into<String>) -> Self {
        ProbePolicy {
            name: name.into(),
            success: None,
            failure: None,
            failure_limit: None,
            consecutive_failure_limit: None,
            inconclusive_limit: None,
            consecutive_error_limit: None,
            no_data: None,
            forecast: None,
            mann_whitney: None,
        }
    }

    /// Set the success condition.
    pub fn success(mut self, c: Condition) -> Self {
        self.success = Some(c);
        self
    }

    /// Set the failure condition.
    pub fn failure(mut self, c: Condition) -> Self {
        self.failure = Some(c);
        self
    }

    /// Set the trend forecast of the success condition.
    pub fn forecast(mut self, f: Forecast) -> Self {
        self.forecast = Some(f);
        self
    }

    /// Judge canary against baseline samples by Mann-Whitney.
    pub fn mann_whitney(mut self, judge: MannWhitney) -> Self {
        self.mann_whitney = Some(judge);
        self
    }
}

/// The rules of a policy and their descriptions, computed once per
/// `Arc<Policy>`: every target of a watch file shares one policy, and each
/// machine kept a copy (about 270 bytes a watch with one probe).
#[derive(Debug)]
pub(crate) struct SharedRules {
    pub(crate) rules: Arc<[ProbeRules]>,
    /// [`ProbeRules::describe`] of each, for the audit log.
    pub(crate) conditions: Arc<[String]>,
}

type RulesCache = std::collections::HashMap<usize, (std::sync::Weak<Policy>, Arc<SharedRules>)>;

static SHARED_RULES: std::sync::Mutex<Option<RulesCache>> = std::sync::Mutex::new(None);

/// The rules of `policy`, shared by every holder of the same `Arc`. The
/// cache holds a weak reference, which keeps the address from being reused
/// while it is cached; entries of dropped policies are pruned as it grows.
pub(crate) fn shared_rules(policy: &Arc<Policy>) -> Arc<SharedRules> {
    let key = Arc::as_ptr(policy) as usize;
    let mut cache = SHARED_RULES.lock().unwrap_or_else(|e| e.into_inner());
    let cache = cache.get_or_insert_with(Default::default);
    if let Some((weak, shared)) = cache.get(&key)
        && weak.upgrade().is_some_and(|p| Arc::ptr_eq(&p, policy))
    {
        return shared.clone();
    }
    if cache.len() >= 64 && cache.len().is_power_of_two() {
        cache.retain(|_, (weak, _)| weak.strong_count() > 0);
    }
    let rules: Arc<[ProbeRules]> = policy.rules().into();
    let conditions = rules.iter().map(ProbeRules::describe).collect();
    let shared = Arc::new(SharedRules { rules, conditions });
    cache.insert(key, (Arc::downgrade(policy), shared.clone()));
    shared
}

impl Policy {
    /// The effective rules of each probe, in policy order.
    pub(crate) fn rules(&self) -> Vec<ProbeRules> {
        self.probes
            .iter()
            .map(|p| {
                let failure_limit = p.failure_limit.or(self.failure_limit);
                let consecutive_failure_limit = p
                    .consecutive_failure_limit
                    .or(self.consecutive_failure_limit);
                let failure_limit = match (failure_limit, consecutive_failure_limit) {
                    (None, None) => Some(0),
                    (f, _) => f,
                };
                ProbeRules {
                    success: p.success,
                    failure: p.failure,
                    failure_limit,
                    consecutive_failure_limit,
                    inconclusive_limit: p.inconclusive_limit.unwrap_or(self.inconclusive_limit),
                    consecutive_error_limit: p
                        .consecutive_error_limit
                        .unwrap_or(self.consecutive_error_limit),
                    no_data: p.no_data.unwrap_or(self.no_data),
                    forecast: p.forecast,
                    mann_whitney: p.mann_whitney,
                }
            })
            .collect()
    }
}

/// The effective judging rules of one probe, with policy-wide defaults applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ProbeRules {
    /// When a measurement passes.
    pub success: Option<Condition>,
    /// When a measurement fails.
    pub failure: Option<Condition>,
    /// Failed measurements tolerated, if limited.
    pub failure_limit: Option<u32>,
    /// Failed measurements in a row tolerated, if limited.
    pub consecutive_failure_limit: Option<u32>,
    /// Inconclusive measurements tolerated.
    pub inconclusive_limit: u32,
    /// Probe errors in a row tolerated.
    pub consecutive_error_limit: u32,
    /// How no data counts.
    pub no_data: NoData,
    /// The trend forecast, if any.
    pub forecast: Option<Forecast>,
    /// The Mann-Whitney judge, if any: it replaces the conditions.
    pub mann_whitney: Option<MannWhitney>,
}

impl ProbeRules {
    /// The conditions as written: `success < 0.01, failure >= 0.05`.
    /// With a forecast: `success < 0.01, forecast 10m (least squares over 10)`.
    pub(crate) fn describe(&self) -> String {
        if let Some(judge) = &self.mann_whitney {
            return judge.to_string();
        }
        let conditions = match (&self.success, &self.failure) {
            (Some(s), Some(f)) => format!("success {s}, failure {f}"),
            (Some(s), None) => format!("success {s}"),
            (None, Some(f)) => format!("failure {f}"),
            (None, None) => "no condition".into(),
        };
        match &self.forecast {
            Some(f) => format!(
                "{conditions}, forecast {} ({} over {})",
                crate::time::format_duration(f.horizon),
                f.method,
                f.window
            ),
            None => conditions,
        }
    }
}
