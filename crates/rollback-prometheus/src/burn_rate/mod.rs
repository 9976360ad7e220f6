//! The error-budget burn-rate probe: multiwindow, multi-burn-rate alerting
//! (the SRE Workbook) as one measurement per interval.
//!
//! Configured with the SLO's objective and its bad (or good) and total
//! queries, each with `{{window}}` where the range goes, it counts bad and
//! total requests over every window of its pairs (by default the Workbook's
//! four) and measures the highest, over the pairs, of the smaller of the
//! pair's two burn rates divided by its factor: above 1, a pair fires. The
//! policy judges it with `success: "<= 1"`. The measurement's detail names
//! the pair, both burn rates and the error budget left.
//!
//! - A window with no series in its total query has no data; with no
//!   requests, or fewer in a pair's long window than `min_requests`, the
//!   pair is not judged. When no pair can be judged the value is NaN, which
//!   the engine judges inconclusive: never a pass.
//! - A bad query that returns nothing counts no bad requests (no series of
//!   5xx responses exists before the first one); a good query that returns
//!   nothing has no data.
//! - A query that returns several series, a range vector or a string is a
//!   probe error naming the query.

mod windows;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_trait::async_trait;
use rollback_core::http::Auth;
use rollback_core::replay::Sample as ReplaySample;
use rollback_core::{HealthProbe, Measurement, ProbeContext, RevisionId, TargetId, Timestamp};
use serde::{Deserialize, Serialize};

pub use windows::{
    Assessment, Burn, NotJudged, WindowCount, WindowPair, assess, promql_duration, scale,
};

use crate::client::{PrometheusClient, QueryResult};
use crate::config::PrometheusConfig;
use crate::error::PrometheusError;
use crate::probe::{HistoryRange, render, several_series};

fn default_min_requests() -> f64 {
    100.0
}

fn default_min_window() -> Duration {
    Duration::from_secs(60)
}

fn default_windows() -> Vec<WindowPair> {
    WindowPair::WORKBOOK.to_vec()
}

/// A `burn_rate` probe's options, as the watch file writes them.
///
/// ```
/// # use rollback_prometheus::BurnRateConfig;
/// let c: BurnRateConfig = serde_json::from_value(serde_json::json!({
///     "url": "http://127.0.0.1:9090",
///     "objective": 99.9,
///     "bad": "sum(increase(http_requests_total{code=~\"5..\"}[{{window}}]))",
///     "total": "sum(increase(http_requests_total[{{window}}]))",
///     "watch": "2h",
/// })).unwrap();
/// assert_eq!(c.windows.len(), 4);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BurnRateConfig {
    /// The Prometheus server's base URL.
    pub url: String,
    /// The SLO's objective, in percent: `99.9`.
    pub objective: f64,
    /// The PromQL counting bad requests over `{{window}}`; or give `good`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bad: Option<String>,
    /// The PromQL counting good requests over `{{window}}`; or give `bad`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub good: Option<String>,
    /// The PromQL counting all requests over `{{window}}`.
    pub total: String,
    /// The window pairs; default the Workbook's four.
    #[serde(default = "default_windows")]
    pub windows: Vec<WindowPair>,
    /// How long a change is watched (`initial_delay` plus `bake_time`):
    /// when shorter than the longest window, every window is scaled down by
    /// `watch / longest`.
    #[serde(
        default,
        with = "rollback_core::time::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub watch: Option<Duration>,
    /// The shortest window scaling may make. Default 1m (a rate needs two
    /// scrapes in its window).
    #[serde(default = "default_min_window", with = "rollback_core::time::duration")]
    pub min_window: Duration,
    /// The fewest requests a pair's long window needs for the pair to be
    /// judged. Default 100.
    #[serde(default = "default_min_requests")]
    pub min_requests: f64,
    /// Authentication, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
    /// How long one query may take. Default 10s.
    #[serde(
        default,
        with = "rollback_core::time::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// Evaluate at the measurement's time instead of the server's now.
    #[serde(default)]
    pub at_context_time: bool,
}

/// How bad requests are counted.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Errors {
    Bad(String),
    Good(String),
}

/// A [`HealthProbe`] of an SLO's error-budget burn rate over window pairs;
/// see the [module docs](self).
#[derive(Debug, Clone)]
pub struct BurnRateProbe {
    name: String,
    client: PrometheusClient,
    errors: Errors,
    total: String,
    budget: f64,
    pairs: Vec<WindowPair>,
    min_requests: f64,
    at_context_time: bool,
}

fn config_error(field: impl Into<String>, reason: impl Into<String>) -> PrometheusError {
    PrometheusError::config(field, reason)
}

impl BurnRateProbe {
    /// The probe `name` (as the policy names it) from its options.
    pub fn from_config(name: &str, c: &BurnRateConfig) -> Result<Self, PrometheusError> {
        let mut server = PrometheusConfig::new(c.url.clone());
        server.auth = c.auth.clone();
        if let Some(t) = c.timeout {
            server.timeout = t;
        }
        Self::new(name, PrometheusClient::from_config(&server)?, c)
    }

    /// The probe `name` on `client`, with the rest of `c` (its `url`,
    /// `auth` and `timeout` are the client's business).
    pub fn new(
        name: &str,
        client: PrometheusClient,
        c: &BurnRateConfig,
    ) -> Result<Self, PrometheusError> {
        if name.trim().is_empty() {
            return Err(config_error("name", "the probe needs a name"));
        }
        if !(c.objective.is_finite() && c.objective > 1.0 && c.objective < 100.0) {
            return Err(config_error(
                "objective",
                format!(
                    "{} is not a percentage above 1 and under 100: write 99.9 for 99.9 % (not 0.999)",
                    c.objective
                ),
            ));
        }
        let window_in = |field: &str, q: &str| {
            if q.contains("{{window}}") {
                Ok(q.to_owned())
            } else {
                Err(config_error(
                    field,
                    format!(
                        "{q:?} has no {{{{window}}}}: write the range as [{{{{window}}}}], so that each window counts its own requests"
                    ),
                ))
            }
        };
        let errors = match (&c.bad, &c.good) {
            (Some(b), None) => Errors::Bad(window_in("bad", b)?),
            (None, Some(g)) => Errors::Good(window_in("good", g)?),
            (Some(_), Some(_)) => {
                return Err(config_error("good", "give `bad` or `good`, not both"));
            }
            (None, None) => {
                return Err(config_error(
                    "bad",
                    "a burn rate needs `bad` (or `good`) requests beside `total`",
                ));
            }
        };
        let total = window_in("total", &c.total)?;
        if c.windows.is_empty() {
            return Err(config_error("windows", "at least one pair of windows"));
        }
        for (i, p) in c.windows.iter().enumerate() {
            p.check()
                .map_err(|(field, reason)| config_error(format!("windows[{i}].{field}"), reason))?;
        }
        if c.min_window.is_zero() {
            return Err(config_error("min_window", "must be longer than 0s"));
        }
        if !(c.min_requests.is_finite() && c.min_requests >= 0.0) {
            return Err(config_error(
                "min_requests",
                format!("{} is not a number of requests", c.min_requests),
            ));
        }
        if let Some(w) = c.watch
            && w.is_zero()
        {
            return Err(config_error("watch", "must be longer than 0s"));
        }
        Ok(BurnRateProbe {
            name: name.to_owned(),
            client,
            errors,
            total,
            budget: 1.0 - c.objective / 100.0,
            pairs: scale(&c.windows, c.watch, c.min_window),
            min_requests: c.min_requests.max(f64::MIN_POSITIVE),
            at_context_time: c.at_context_time,
        })
    }

    /// The window pairs it judges, after scaling.
    pub fn pairs(&self) -> &[WindowPair] {
        &self.pairs
    }

    /// Every distinct window of the pairs, shortest first.
    fn windows(&self) -> BTreeSet<Duration> {
        self.pairs.iter().flat_map(|p| [p.long, p.short]).collect()
    }

    /// The queries of one window for `target` and `revision`: the errors'
    /// and the total's.
    fn queries(&self, w: Duration, target: &TargetId, revision: &RevisionId) -> [String; 2] {
        let window = promql_duration(w);
        let q = |s: &str| render(&s.replace("{{window}}", &window), target, revision);
        match &self.errors {
            Errors::Bad(b) | Errors::Good(b) => [q(b), q(&self.total)],
        }
    }

    /// Bad and total counts from what the two queries returned.
    fn count(&self, errors: Option<f64>, total: Option<f64>) -> WindowCount {
        let bad = match (&self.errors, errors, total) {
            (Errors::Bad(_), b, _) => b.unwrap_or(0.0),
            (Errors::Good(_), Some(g), Some(t)) => t - g,
            (Errors::Good(_), None, _) => {
                return WindowCount {
                    bad: 0.0,
                    total: None,
                };
            }
            (Errors::Good(_), Some(_), None) => 0.0,
        };
        WindowCount { bad, total }
    }

    /// Judge one set of window counts.
    pub fn assess(&self, counts: &BTreeMap<Duration, WindowCount>) -> Assessment {
        assess(&self.pairs, self.budget, self.min_requests, counts)
    }

    /// Take one measurement, with the detailed error and the assessment.
    pub async fn measure_detailed(
        &self,
        context: &ProbeContext,
    ) -> Result<(Measurement, Assessment), PrometheusError> {
        let at = self.at_context_time.then_some(context.at);
        let mut set = tokio::task::JoinSet::new();
        for w in self.windows() {
            for (k, q) in self
                .queries(w, &context.target, &context.revision)
                .into_iter()
                .enumerate()
            {
                let client = self.client.clone();
                set.spawn(async move {
                    let result = client.query(&q, at).await;
                    (w, k, result.and_then(|r| one_value(&q, r)))
                });
            }
        }
        let mut values: BTreeMap<Duration, [Option<f64>; 2]> = BTreeMap::new();
        while let Some(joined) = set.join_next().await {
            let (w, k, v) = joined.map_err(|e| PrometheusError::Shape {
                query: self.total.clone(),
                reason: format!("a query task failed: {e}"),
            })?;
            values.entry(w).or_default()[k] = v?;
        }
        let counts = values
            .into_iter()
            .map(|(w, [e, t])| (w, self.count(e, t)))
            .collect();
        let assessment = self.assess(&counts);
        tracing::debug!(probe = %self.name, target = %context.target, %assessment, "measured");
        let m = Measurement::value(assessment.value()).with_detail(assessment.to_string());
        Ok((m, assessment))
    }

    /// The measurement at every step of `range`, as the probe would have
    /// taken it (range queries of every window), for replay.
    pub async fn history(
        &self,
        target: &TargetId,
        revision: &RevisionId,
        range: HistoryRange,
    ) -> Result<Vec<ReplaySample>, PrometheusError> {
        let mut by_step: BTreeMap<Timestamp, BTreeMap<Duration, [Option<f64>; 2]>> =
            BTreeMap::new();
        let mut t = range.start;
        while t <= range.end {
            by_step.insert(t, BTreeMap::new());
            let next = t.plus(range.step.max(Duration::from_millis(1)));
            if next == t {
                break;
            }
            t = next;
        }
        for w in self.windows() {
            for (k, q) in self.queries(w, target, revision).into_iter().enumerate() {
                let series = self
                    .client
                    .query_range(&q, range.start, range.end, range.step)
                    .await?;
                if series.len() > 1 {
                    return Err(several_series(
                        &q,
                        series.len(),
                        series.iter().map(|s| &s.labels),
                    ));
                }
                for s in series.iter().flat_map(|s| &s.samples) {
                    if let Some(step) = by_step.get_mut(&s.at) {
                        step.entry(w).or_default()[k] = Some(s.value);
                    }
                }
            }
        }
        Ok(by_step
            .into_iter()
            .map(|(at, values)| {
                let counts = self
                    .windows()
                    .into_iter()
                    .map(|w| {
                        let [e, t] = values.get(&w).copied().unwrap_or_default();
                        (w, self.count(e, t))
                    })
                    .collect();
                ReplaySample {
                    at,
                    value: Some(self.assess(&counts).value()),
                    baseline: None,
                }
            })
            .collect())
    }
}

/// The one number of an instant query: `None` for an empty vector.
fn one_value(query: &str, result: QueryResult) -> Result<Option<f64>, PrometheusError> {
    match result {
        QueryResult::Scalar(s) => Ok(Some(s.value)),
        QueryResult::Vector(series) => match series.len() {
            0 => Ok(None),
            1 => Ok(Some(series[0].sample.value)),
            n => Err(several_series(query, n, series.iter().map(|s| &s.labels))),
        },
        other => Err(PrometheusError::Shape {
            query: query.to_owned(),
            reason: format!(
                "the result is a {}; a burn rate needs one number per window: wrap the range in increase(...[{{{{window}}}}]) and aggregate with sum(...)",
                other.type_name()
            ),
        }),
    }
}

#[async_trait]
impl HealthProbe for BurnRateProbe {
    fn name(&self) -> &str {
        &self.name
    }

    async fn measure(&self, context: &ProbeContext) -> rollback_core::Result<Measurement> {
        match self.measure_detailed(context).await {
            Ok((m, _)) => Ok(m),
            Err(e) => {
                let e: rollback_core::Error = e.into();
                Err(rollback_core::Error::new(
                    e.kind(),
                    format!(
                        "probe {:?} on target {}: {}",
                        self.name,
                        context.target,
                        e.message()
                    ),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(v: serde_json::Value) -> Result<BurnRateProbe, String> {
        let mut base = serde_json::json!({
            "url": "http://127.0.0.1:9090",
            "objective": 99.9,
            "bad": "sum(increase(http_requests_total{code=~\"5..\",revision=\"{{revision}}\"}[{{window}}]))",
            "total": "sum(increase(http_requests_total{revision=\"{{revision}}\"}[{{window}}]))",
        });
        for (k, x) in v.as_object().unwrap() {
            if x.is_null() {
                base.as_object_mut().unwrap().remove(k);
            } else {
                base[k] = x.clone();
            }
        }
        let c: BurnRateConfig = serde_json::from_value(base).map_err(|e| e.to_string())?;
        BurnRateProbe::from_config("slo", &c).map_err(|e| e.to_string())
    }

    #[test]
    fn the_queries_of_each_window() {
        let p = config(serde_json::json!({"watch": "2h"})).unwrap();
        let w: Vec<String> = p.windows().into_iter().map(promql_duration).collect();
        assert_eq!(w, ["1m", "100s", "200s", "10m", "40m", "2h"]);
        let [bad, total] = p.queries(
            Duration::from_secs(100),
            &TargetId::new("t"),
            &RevisionId::new("v\"2"),
        );
        assert_eq!(
            bad,
            r#"sum(increase(http_requests_total{code=~"5..",revision="v\"2"}[100s]))"#
        );
        assert_eq!(
            total,
            r#"sum(increase(http_requests_total{revision="v\"2"}[100s]))"#
        );
    }

    #[test]
    fn good_requests_count_the_bad_ones_as_the_rest() {
        let p = config(serde_json::json!({"bad": null, "good": "sum(increase(ok[{{window}}]))"}))
            .unwrap();
        assert_eq!(
            p.count(Some(990.0), Some(1000.0)),
            WindowCount {
                bad: 10.0,
                total: Some(1000.0)
            }
        );
        assert_eq!(
            p.count(None, Some(1000.0)).total,
            None,
            "no good series: no data"
        );
        let p = config(serde_json::json!({})).unwrap();
        assert_eq!(
            p.count(None, Some(1000.0)),
            WindowCount {
                bad: 0.0,
                total: Some(1000.0)
            },
            "no bad series: none bad"
        );
    }

    #[test]
    fn bad_options_name_their_field() {
        let e = |v| config(v).unwrap_err();
        assert!(e(serde_json::json!({"objective": 100})).contains("`objective`"));
        assert!(e(serde_json::json!({"objective": 0.999})).contains("not 0.999"));
        assert!(e(serde_json::json!({"bad": null})).contains("`bad`"));
        assert!(e(serde_json::json!({"good": "x[{{window}}]"})).contains("not both"));
        let m = e(serde_json::json!({"total": "sum(rate(x[5m]))"}));
        assert!(m.contains("`total`") && m.contains("{{window}}"), "{m}");
        let m = e(serde_json::json!({"windows": [{"long": "5m", "short": "1h", "factor": 2}]}));
        assert!(m.contains("`windows[0].short`"), "{m}");
        assert!(e(serde_json::json!({"windows": []})).contains("`windows`"));
        assert!(e(serde_json::json!({"min_requests": -1})).contains("`min_requests`"));
        assert!(e(serde_json::json!({"watch": "0s"})).contains("`watch`"));
        let m = e(serde_json::json!({"windws": []}));
        assert!(m.contains("unknown field `windws`"), "{m}");
    }
}
