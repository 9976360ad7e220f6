//! Serde configuration of the client, the probes and the receiver.
//!
//! Every type refuses unknown fields and takes human durations (`"10s"`,
//! `"1m"`), so a typo in a config file is an error naming the field instead
//! of a silently ignored setting.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use rollback_core::time::duration;

pub(crate) use rollback_core::http::{Auth, Secret};

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Where Prometheus is and how to talk to it.
///
/// ```
/// # use rollback_prometheus::PrometheusConfig;
/// let c: PrometheusConfig = serde_json::from_str(
///     r#"{"url": "http://127.0.0.1:9090", "timeout": "5s", "auth": {"bearer": {"token": "t"}}}"#,
/// ).unwrap();
/// assert_eq!(c.timeout, std::time::Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    /// The server's base URL, like `http://prometheus:9090` (a path prefix
    /// such as `/prometheus` is kept).
    pub url: String,
    /// Authentication, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
    /// How long one query may take. Default 10s.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
}

impl PrometheusConfig {
    /// A config for `url` with no auth and the default timeout.
    pub fn new(url: impl Into<String>) -> Self {
        PrometheusConfig {
            url: url.into(),
            auth: None,
            timeout: default_timeout(),
        }
    }
}

/// How several series of one query are folded into one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    /// The sum of the series.
    Sum,
    /// The largest value (NaN if any is NaN).
    Max,
    /// The smallest value (NaN if any is NaN).
    Min,
    /// The mean.
    Avg,
}

impl Aggregate {
    /// Fold `values` (at least one). NaN in any input gives NaN, so an
    /// aggregate never hides a value the engine would judge inconclusive.
    pub fn apply(self, values: &[f64]) -> Option<f64> {
        if values.is_empty() {
            return None;
        }
        if values.iter().any(|v| v.is_nan()) {
            return Some(f64::NAN);
        }
        let sum = || values.iter().sum::<f64>();
        Some(match self {
            Aggregate::Sum => sum(),
            Aggregate::Avg => sum() / values.len() as f64,
            Aggregate::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            Aggregate::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
        })
    }

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Aggregate::Sum => "sum",
            Aggregate::Max => "max",
            Aggregate::Min => "min",
            Aggregate::Avg => "avg",
        }
    }
}

impl fmt::Display for Aggregate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One PromQL probe.
///
/// `query` and `baseline_query` may use `{{target}}` and `{{revision}}`; they
/// are replaced by the watched target and revision (escaped for a PromQL
/// string literal), so one probe can measure whichever revision is judged:
/// `sum(rate(http_requests_total{code=~"5..",revision="{{revision}}"}[1m]))`.
///
/// ```
/// # use rollback_prometheus::ProbeConfig;
/// let p: ProbeConfig = serde_json::from_str(
///     r#"{"name": "error-rate", "query": "sum(rate(x[1m]))", "aggregate": "max"}"#,
/// ).unwrap();
/// assert_eq!(p.name, "error-rate");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// The probe's name, as the policy names it.
    pub name: String,
    /// The PromQL giving the SLI: a scalar or a one-element vector.
    pub query: String,
    /// The PromQL giving the baseline for relative conditions (`<= +10%`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_query: Option<String>,
    /// Fold several series into one value; without it several series are an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<Aggregate>,
    /// Evaluate at the engine's time for the measurement instead of the
    /// server's now (for engines on a clock other than the wall clock).
    #[serde(default, skip_serializing_if = "is_false")]
    pub at_context_time: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn default_max_body_bytes() -> usize {
    1024 * 1024
}
fn default_dedup_capacity() -> usize {
    10_000
}
fn default_log_capacity() -> usize {
    1_000
}

/// The receiver's default `header_read_timeout` and `body_read_timeout`.
pub(crate) const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The receiver's default `idle_timeout`.
pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// The receiver's default `max_connections`.
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 256;

fn default_read_timeout() -> Duration {
    DEFAULT_READ_TIMEOUT
}
fn default_idle_timeout() -> Duration {
    DEFAULT_IDLE_TIMEOUT
}
fn default_max_connections() -> usize {
    DEFAULT_MAX_CONNECTIONS
}

/// One row of the receiver's routing table.
///
/// `matchers` use Alertmanager's equality syntax: `alertname="HighErrorRate"`,
/// `severity!="info"` (quotes optional). All must hold. `target` is the
/// target id, and may name alert labels in braces:
/// `k8s:{namespace}/{deployment}`. A route whose template names a label the
/// alert lacks does not match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Label matchers; all must hold. Empty matches every alert.
    #[serde(default)]
    pub matchers: Vec<String>,
    /// The target id, possibly with `{label}` placeholders.
    pub target: String,
}

/// The Alertmanager webhook receiver.
///
/// The timeouts and `max_connections` bound what slow or silent clients can
/// hold (see [`AlertmanagerReceiver`](crate::AlertmanagerReceiver), "Slow
/// clients"); the defaults suit a receiver that a few Alertmanager
/// instances call.
///
/// ```
/// # use rollback_prometheus::ReceiverConfig;
/// let c: ReceiverConfig = serde_json::from_str(r#"{
///     "bearer_token": "s3cret",
///     "routes": [{"matchers": ["alertname=\"HighErrorRate\""], "target": "k8s:{namespace}/{deployment}"}]
/// }"#).unwrap();
/// assert_eq!(c.max_body_bytes, 1024 * 1024);
/// assert_eq!(c.header_read_timeout, std::time::Duration::from_secs(10));
/// assert_eq!(c.max_connections, 256);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    /// The token Alertmanager sends (`http_config.authorization.credentials`).
    pub bearer_token: Secret,
    /// The routing table, first match wins.
    pub routes: Vec<RouteConfig>,
    /// Larger request bodies are refused with 413. Default 1 MiB.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// How many alert keys (fingerprint + startsAt) are remembered for
    /// deduplication; the oldest are forgotten first. Default 10000.
    #[serde(default = "default_dedup_capacity")]
    pub dedup_capacity: usize,
    /// How many alert records the receiver keeps for inspection. Default 1000.
    #[serde(default = "default_log_capacity")]
    pub log_capacity: usize,
    /// How long a request head may take to arrive, from the accept (or from
    /// a later request's first byte on a kept-alive connection); then the
    /// connection is closed. Default 10s.
    #[serde(default = "default_read_timeout", with = "duration")]
    pub header_read_timeout: Duration,
    /// How long a request body may take to arrive once its head is in; then
    /// the request is answered 408 and the connection closed. Default 10s.
    #[serde(default = "default_read_timeout", with = "duration")]
    pub body_read_timeout: Duration,
    /// How long a kept-alive connection may sit without a request and
    /// without a byte moving; then it is closed. Default 10s.
    #[serde(default = "default_idle_timeout", with = "duration")]
    pub idle_timeout: Duration,
    /// How many connections are served at once; more wait to be accepted
    /// until one closes. Default 256.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

impl ReceiverConfig {
    /// A config with this token, these routes and every default.
    pub fn new(bearer_token: impl Into<Secret>, routes: Vec<RouteConfig>) -> Self {
        ReceiverConfig {
            bearer_token: bearer_token.into(),
            routes,
            max_body_bytes: default_max_body_bytes(),
            dedup_capacity: default_dedup_capacity(),
            log_capacity: default_log_capacity(),
            header_read_timeout: default_read_timeout(),
            body_read_timeout: default_read_timeout(),
            idle_timeout: default_idle_timeout(),
            max_connections: default_max_connections(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_and_bad_durations_name_the_field() {
        let e = serde_json::from_str::<PrometheusConfig>(r#"{"url": "http://x", "timout": "1s"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `timout`"), "{e}");
        let e =
            serde_json::from_str::<PrometheusConfig>(r#"{"url": "http://x", "timeout": "soon"}"#)
                .unwrap_err()
                .to_string();
        assert!(e.contains("invalid duration \"soon\""), "{e}");
        let e = serde_json::from_str::<ProbeConfig>(
            r#"{"name": "a", "query": "up", "aggregate": "median"}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown variant `median`"), "{e}");
    }

    #[test]
    fn secrets_do_not_print() {
        let c: PrometheusConfig = serde_json::from_str(
            r#"{"url": "http://x", "auth": {"basic": {"username": "u", "password": "hunter2"}}}"#,
        )
        .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("username: \"u\""), "{shown}");
    }

    #[test]
    fn aggregates_propagate_nan() {
        assert_eq!(Aggregate::Sum.apply(&[1.0, 2.0]), Some(3.0));
        assert_eq!(Aggregate::Avg.apply(&[1.0, 2.0]), Some(1.5));
        assert_eq!(Aggregate::Max.apply(&[1.0, 2.0]), Some(2.0));
        assert_eq!(Aggregate::Min.apply(&[1.0, 2.0]), Some(1.0));
        assert_eq!(Aggregate::Min.apply(&[]), None);
        for a in [
            Aggregate::Sum,
            Aggregate::Max,
            Aggregate::Min,
            Aggregate::Avg,
        ] {
            assert!(a.apply(&[1.0, f64::NAN]).is_some_and(f64::is_nan), "{a}");
        }
    }
}
