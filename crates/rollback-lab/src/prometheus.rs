//! History straight from a Prometheus server (feature `prometheus`): the
//! watch file's `prometheus` probes as range queries, in chunks of at most
//! [`rollback_prometheus::MAX_POINTS_PER_QUERY`] steps, under Prometheus'
//! limit of 11,000 points per series.

use std::time::Duration;

use rollback_core::http::Auth;
use rollback_core::replay::Series;
use rollback_core::watchfile::WatchFile;
use rollback_core::{Error, Result, RevisionId, TargetId, Timestamp};
use rollback_prometheus::{
    Aggregate, BurnRateConfig, BurnRateProbe, HistoryRange, PrometheusClient, PrometheusConfig,
    PrometheusProbe, history_series,
};

use crate::changes::value_changes;

/// Which history to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    /// The first evaluation time.
    pub start: Timestamp,
    /// The last evaluation time (inclusive).
    pub end: Timestamp,
    /// Time between evaluations; default the policy's `interval`.
    pub step: Option<Duration>,
    /// What `{{target}}` in a query stands for.
    pub target: String,
    /// What `{{revision}}` in a query stands for.
    pub revision: String,
}

/// A `prometheus` probe's options in a watch file, as its probe kind reads them.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeOptions {
    url: String,
    query: String,
    #[serde(default)]
    baseline_query: Option<String>,
    #[serde(default)]
    aggregate: Option<Aggregate>,
    #[serde(default)]
    auth: Option<Auth>,
    #[serde(default, with = "rollback_core::time::duration::option")]
    timeout: Option<Duration>,
    #[serde(default)]
    #[allow(dead_code)]
    at_context_time: bool,
}

fn probe(name: &str, options: &rollback_core::registry::Options) -> Result<PrometheusProbe> {
    let o: ProbeOptions = serde_json::from_value(serde_json::Value::Object(options.clone()))
        .map_err(|e| Error::invalid(format!("probe {name}: {e}")))?;
    let mut server = PrometheusConfig::new(o.url);
    server.auth = o.auth;
    if let Some(t) = o.timeout {
        server.timeout = t;
    }
    let mut b =
        PrometheusProbe::builder(name, PrometheusClient::from_config(&server)?).query(o.query);
    if let Some(q) = o.baseline_query {
        b = b.baseline_query(q);
    }
    if let Some(a) = o.aggregate {
        b = b.aggregate(a);
    }
    Ok(b.build()?)
}

/// Read the history of every probe of `file` from its Prometheus server,
/// one sample per step, as the probe would have measured it at each step
/// (see [`PrometheusProbe::history`] and [`BurnRateProbe::history`]). Every
/// probe must be a `prometheus` or a `burn_rate` probe; give the series of
/// others in a file.
pub async fn fetch_history(file: &WatchFile, query: &HistoryQuery) -> Result<Series> {
    let mut probes = Vec::with_capacity(file.probes.len());
    let mut burn_rates = Vec::new();
    for p in &file.probes {
        match p.kind.as_str() {
            "prometheus" => probes.push(probe(&p.name, &p.options)?),
            "burn_rate" => {
                let c: BurnRateConfig = rollback_core::registry::options(&p.options)
                    .map_err(|e| Error::invalid(format!("probe {}: {}", p.name, e.message())))?;
                burn_rates.push((p.name.as_str(), BurnRateProbe::from_config(&p.name, &c)?));
            }
            kind => {
                return Err(Error::invalid(format!(
                    "probe {} is a {kind} probe: the lab reads history from prometheus and burn_rate probes only; give its series in a file",
                    p.name
                )));
            }
        }
    }
    let range = HistoryRange {
        start: query.start,
        end: query.end,
        step: query.step.unwrap_or(file.policy.interval),
    };
    let (target, revision) = (
        TargetId::new(query.target.clone()),
        RevisionId::new(query.revision.clone()),
    );
    let refs: Vec<&PrometheusProbe> = probes.iter().collect();
    let mut series = history_series(&refs, &target, &revision, range).await?;
    for (name, p) in &burn_rates {
        for sample in p.history(&target, &revision, range).await? {
            series.push(name, sample);
        }
    }
    Ok(series)
}

/// Change points from a series on a Prometheus server: every time the
/// value of any series `promql` returns changes, such as
/// `kube_deployment_status_observed_generation{deployment="checkout"}`.
pub async fn fetch_change_points(
    client: &PrometheusClient,
    promql: &str,
    start: Timestamp,
    end: Timestamp,
    step: Duration,
) -> Result<Vec<Timestamp>> {
    let series = client.query_range(promql, start, end, step).await?;
    let mut times: Vec<Timestamp> = series
        .iter()
        .flat_map(|s| {
            let samples: Vec<rollback_core::replay::Sample> = s
                .samples
                .iter()
                .map(|x| rollback_core::replay::Sample {
                    at: x.at,
                    value: Some(x.value),
                    baseline: None,
                })
                .collect();
            value_changes(&samples)
        })
        .collect();
    times.sort();
    times.dedup();
    Ok(times)
}
