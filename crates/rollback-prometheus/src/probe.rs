//! The PromQL health probe, and the history of its SLI for replay.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use rollback_core::replay::{Sample as ReplaySample, Series};
use rollback_core::{HealthProbe, Measurement, ProbeContext, RevisionId, TargetId, Timestamp};

use crate::client::{PrometheusClient, QueryResult, format_labels};
use crate::config::{Aggregate, ProbeConfig};
use crate::error::PrometheusError;
use crate::samples::SampleSplit;

/// A [`HealthProbe`] over an instant PromQL query.
///
/// The result must be a scalar or a vector of at most one series: an empty
/// vector is no data ([`Measurement::NO_DATA`]); several series are an error
/// naming the query and the series, unless the probe aggregates them
/// ([`PrometheusProbeBuilder::aggregate`]). NaN and infinities are returned
/// as they are, and the engine judges them inconclusive. Network failures,
/// timeouts, HTTP errors and PromQL errors (with Prometheus' own message) are
/// `Err`: probe errors, never failed measurements.
///
/// `{{target}}` and `{{revision}}` in the queries are replaced by the watched
/// target and revision, escaped for a PromQL string literal.
#[derive(Debug, Clone)]
pub struct PrometheusProbe {
    name: String,
    client: PrometheusClient,
    query: String,
    baseline_query: Option<String>,
    aggregate: Option<Aggregate>,
    at_context_time: bool,
    samples: Option<SampleSplit>,
}

/// Builds a [`PrometheusProbe`]; see [`PrometheusProbe::builder`].
#[derive(Debug)]
#[must_use]
pub struct PrometheusProbeBuilder {
    name: String,
    client: PrometheusClient,
    query: Option<String>,
    baseline_query: Option<String>,
    aggregate: Option<Aggregate>,
    at_context_time: bool,
    samples: Option<SampleSplit>,
}

impl PrometheusProbeBuilder {
    /// The PromQL giving the SLI.
    pub fn query(mut self, promql: impl Into<String>) -> Self {
        self.query = Some(promql.into());
        self
    }

    /// The PromQL giving the baseline for relative conditions (`<= +10%`),
    /// usually the same SLI on the stable revision.
    pub fn baseline_query(mut self, promql: impl Into<String>) -> Self {
        self.baseline_query = Some(promql.into());
        self
    }

    /// Fold several series into one value instead of refusing them.
    pub fn aggregate(mut self, aggregate: Aggregate) -> Self {
        self.aggregate = Some(aggregate);
        self
    }

    /// Evaluate the query at the context's time (`ProbeContext::at`) instead
    /// of at the server's current time. Use it when the engine runs on a
    /// clock that is not the wall clock Prometheus sees.
    pub fn at_context_time(mut self, yes: bool) -> Self {
        self.at_context_time = yes;
        self
    }

    /// Read canary and baseline samples from the query's series, split by
    /// a label, for a probe judged by `mann_whitney`.
    pub fn samples(mut self, split: SampleSplit) -> Self {
        self.samples = Some(split);
        self
    }

    /// Check the settings and build the probe.
    pub fn build(self) -> Result<PrometheusProbe, PrometheusError> {
        if let Some(split) = &self.samples {
            split.check()?;
            if self.baseline_query.is_some() || self.aggregate.is_some() {
                return Err(PrometheusError::config(
                    "samples",
                    format!(
                        "probe {:?}: samples come from the query's series split by {}; leave out baseline_query and aggregate",
                        self.name, split.label
                    ),
                ));
            }
        }
        if self.name.trim().is_empty() {
            return Err(PrometheusError::config(
                "name",
                "the probe needs a name, as the policy names it",
            ));
        }
        let query = self.query.unwrap_or_default();
        if query.trim().is_empty() {
            return Err(PrometheusError::config(
                "query",
                format!("probe {:?} needs a PromQL query", self.name),
            ));
        }
        if let Some(b) = &self.baseline_query
            && b.trim().is_empty()
        {
            return Err(PrometheusError::config(
                "baseline_query",
                format!(
                    "probe {:?}: the baseline query is empty; leave it out instead",
                    self.name
                ),
            ));
        }
        Ok(PrometheusProbe {
            name: self.name,
            client: self.client,
            query,
            baseline_query: self.baseline_query,
            aggregate: self.aggregate,
            at_context_time: self.at_context_time,
            samples: self.samples,
        })
    }
}

/// Where a range of history is read: `start` to `end` inclusive, every `step`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryRange {
    /// The first evaluation time.
    pub start: Timestamp,
    /// The last evaluation time (inclusive).
    pub end: Timestamp,
    /// Time between two evaluations: the policy's `interval` to replay it.
    pub step: Duration,
}

/// Escape a string for a double-quoted PromQL string literal.
fn escape_promql(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out
}

pub(crate) fn render(query: &str, target: &TargetId, revision: &RevisionId) -> String {
    if !query.contains("{{") {
        return query.to_owned();
    }
    query
        .replace("{{target}}", &escape_promql(target.as_str()))
        .replace("{{revision}}", &escape_promql(revision.as_str()))
}

impl PrometheusProbe {
    /// A builder for a probe named `name` (as the policy names it) using `client`.
    pub fn builder(name: impl Into<String>, client: PrometheusClient) -> PrometheusProbeBuilder {
        PrometheusProbeBuilder {
            name: name.into(),
            client,
            query: None,
            baseline_query: None,
            aggregate: None,
            at_context_time: false,
            samples: None,
        }
    }

    /// A probe from its serde configuration.
    pub fn from_config(
        client: PrometheusClient,
        config: &ProbeConfig,
    ) -> Result<Self, PrometheusError> {
        let mut b = Self::builder(config.name.clone(), client).query(config.query.clone());
        if let Some(q) = &config.baseline_query {
            b = b.baseline_query(q.clone());
        }
        if let Some(a) = config.aggregate {
            b = b.aggregate(a);
        }
        b.at_context_time(config.at_context_time).build()
    }

    /// The SLI's PromQL, before `{{target}}`/`{{revision}}` are replaced.
    pub fn query(&self) -> &str {
        &self.query
    }

    /// The client.
    pub fn client(&self) -> &PrometheusClient {
        &self.client
    }

    /// Turn an instant query's result into one value: `None` for no data.
    fn reduce(&self, query: &str, result: QueryResult) -> Result<Option<f64>, PrometheusError> {
        match result {
            QueryResult::Scalar(s) => Ok(Some(s.value)),
            QueryResult::Vector(series) => match (series.len(), self.aggregate) {
                (0, _) => Ok(None),
                (1, _) => Ok(Some(series[0].sample.value)),
                (_, Some(a)) => Ok(a.apply(&series.iter().map(|s| s.sample.value).collect::<Vec<_>>())),
                (n, None) => Err(several_series(query, n, series.iter().map(|s| &s.labels))),
            },
            QueryResult::Matrix(_) => Err(PrometheusError::Shape {
                query: query.to_owned(),
                reason: "the result is a range vector; a probe needs one number: wrap the range selector in a function such as rate(...[5m]) or avg_over_time(...[5m])".into(),
            }),
            QueryResult::String(_) => Err(PrometheusError::Shape {
                query: query.to_owned(),
                reason: "the result is a string; a probe needs one number".into(),
            }),
        }
    }

    async fn value(
        &self,
        query: &str,
        at: Option<Timestamp>,
    ) -> Result<Option<f64>, PrometheusError> {
        let result = self.client.query(query, at).await?;
        self.reduce(query, result)
    }

    /// Take one measurement, with the detailed error.
    pub async fn measure_detailed(
        &self,
        context: &ProbeContext,
    ) -> Result<Measurement, PrometheusError> {
        let at = self.at_context_time.then_some(context.at);
        let query = render(&self.query, &context.target, &context.revision);
        if let Some(split) = &self.samples {
            let result = self.client.query(&query, at).await?;
            return split.measurement(&query, result, context);
        }
        let (value, baseline) = match &self.baseline_query {
            None => (self.value(&query, at).await?, None),
            Some(b) => {
                let b = render(b, &context.target, &context.revision);
                let (v, b) = tokio::join!(self.value(&query, at), self.value(&b, at));
                (v?, b?)
            }
        };
        tracing::debug!(probe = %self.name, target = %context.target, revision = %context.revision, ?value, ?baseline, "measured");
        Ok(Measurement {
            value,
            baseline,
            detail: None,
            samples: None,
        })
    }

    /// The probe's SLI over a range of history, one sample per step, as the
    /// probe would have measured it at each step: `value: None` where there
    /// was no data, NaN as it is, and the baseline query's value beside it.
    /// This is the series [`rollback_core::replay`] takes (see [`history_series`]).
    ///
    /// The query runs as a range query (`/api/v1/query_range`), which
    /// Prometheus evaluates exactly as the instant query at each step.
    pub async fn history(
        &self,
        target: &TargetId,
        revision: &RevisionId,
        range: HistoryRange,
    ) -> Result<Vec<ReplaySample>, PrometheusError> {
        let query = render(&self.query, target, revision);
        if let Some(split) = &self.samples {
            let series = self
                .client
                .query_range(&query, range.start, range.end, range.step)
                .await?;
            return Ok(split.history(&series, target, revision));
        }
        let values = self.history_of(&query, range).await?;
        let baselines = match &self.baseline_query {
            Some(b) => Some(self.history_of(&render(b, target, revision), range).await?),
            None => None,
        };
        Ok(values
            .into_iter()
            .enumerate()
            .map(|(i, (at, value))| ReplaySample {
                at,
                value,
                baseline: baselines
                    .as_ref()
                    .and_then(|b| b.get(i))
                    .and_then(|(_, v)| *v),
            })
            .collect())
    }

    async fn history_of(
        &self,
        query: &str,
        range: HistoryRange,
    ) -> Result<Vec<(Timestamp, Option<f64>)>, PrometheusError> {
        let series = self
            .client
            .query_range(query, range.start, range.end, range.step)
            .await?;
        if series.len() > 1 && self.aggregate.is_none() {
            return Err(several_series(
                query,
                series.len(),
                series.iter().map(|s| &s.labels),
            ));
        }
        let mut at_time: BTreeMap<Timestamp, Vec<f64>> = BTreeMap::new();
        for s in &series {
            for sample in &s.samples {
                at_time.entry(sample.at).or_default().push(sample.value);
            }
        }
        let step_ms = i64::try_from(range.step.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        let mut out = Vec::new();
        let mut t = range.start.as_millis();
        while t <= range.end.as_millis() {
            let at = Timestamp::from_millis(t);
            let value = match at_time.remove(&at) {
                None => None,
                Some(values) if values.len() == 1 => Some(values[0]),
                Some(values) => self.aggregate.and_then(|a| a.apply(&values)),
            };
            out.push((at, value));
            t = t.saturating_add(step_ms);
            if t == i64::MAX {
                break;
            }
        }
        if let Some((stray, _)) = at_time.into_iter().next() {
            return Err(PrometheusError::Shape {
                query: query.to_owned(),
                reason: format!(
                    "the range query returned a sample at {stray}, off the requested grid from {} every {:?}",
                    range.start, range.step
                ),
            });
        }
        Ok(out)
    }
}

/// Read the history of several probes into the [`Series`] that
/// [`rollback_core::replay`] takes, each under its probe's name: a policy can
/// then be tried on what really happened.
pub async fn history_series(
    probes: &[&PrometheusProbe],
    target: &TargetId,
    revision: &RevisionId,
    range: HistoryRange,
) -> Result<Series, PrometheusError> {
    let mut series = Series::new();
    for probe in probes {
        for sample in probe.history(target, revision, range).await? {
            series.push(&probe.name, sample);
        }
    }
    Ok(series)
}

pub(crate) fn several_series<'a>(
    query: &str,
    n: usize,
    labels: impl Iterator<Item = &'a BTreeMap<String, String>>,
) -> PrometheusError {
    let shown: Vec<String> = labels.take(3).map(format_labels).collect();
    let more = if n > 3 {
        format!(" and {} more", n - 3)
    } else {
        String::new()
    };
    PrometheusError::Shape {
        query: query.to_owned(),
        reason: format!(
            "returned {n} series ({}{more}), a probe needs one: aggregate in PromQL (sum(...), max(...)) or configure the probe's `aggregate`",
            shown.join(", ")
        ),
    }
}

#[async_trait]
impl HealthProbe for PrometheusProbe {
    fn name(&self) -> &str {
        &self.name
    }

    async fn measure(&self, context: &ProbeContext) -> rollback_core::Result<Measurement> {
        self.measure_detailed(context).await.map_err(|e| {
            let e: rollback_core::Error = e.into();
            rollback_core::Error::new(
                e.kind(),
                format!(
                    "probe {:?} on target {}: {}",
                    self.name,
                    context.target,
                    e.message()
                ),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_escaped_promql_strings() {
        let q = r#"sum(rate(x{target="{{target}}",rev="{{revision}}"}[1m]))"#;
        let out = render(
            q,
            &TargetId::new(r#"k8s:shop/"a"\b"#),
            &RevisionId::new("r1"),
        );
        assert_eq!(
            out,
            r#"sum(rate(x{target="k8s:shop/\"a\"\\b",rev="r1"}[1m]))"#
        );
        assert_eq!(
            render("up", &TargetId::new("t"), &RevisionId::new("r")),
            "up"
        );
    }

    #[test]
    fn builder_names_the_missing_field() {
        let client = PrometheusClient::builder("http://127.0.0.1:1")
            .build()
            .unwrap();
        let e = PrometheusProbe::builder("p", client.clone())
            .build()
            .unwrap_err()
            .to_string();
        assert!(e.contains("`query`") && e.contains("\"p\""), "{e}");
        let e = PrometheusProbe::builder(" ", client.clone())
            .query("up")
            .build()
            .unwrap_err()
            .to_string();
        assert!(e.contains("`name`"), "{e}");
        let e = PrometheusProbe::builder("p", client)
            .query("up")
            .baseline_query("")
            .build()
            .unwrap_err()
            .to_string();
        assert!(e.contains("`baseline_query`"), "{e}");
    }
}
