//! `prometheus` probes, for the watch file and the `rollback` command.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rollback_core::http::Auth;
use rollback_core::registry::{ProbeFor, ProbeKind};
use rollback_core::{HealthProbe, Result};

use crate::{
    Aggregate, BurnRateConfig, BurnRateProbe, PrometheusClient, PrometheusConfig, PrometheusProbe,
    SampleSplit,
};

/// `prometheus`: an instant PromQL query per measurement. Options: `url`
/// (the server), `query` (`{{target}}` and `{{revision}}` are replaced),
/// `baseline_query`, `aggregate`, `auth`, `timeout`, `at_context_time`,
/// `samples` (canary and baseline series split by a label, for `mann_whitney`).
#[derive(Debug, Clone, Copy, Default)]
pub struct PrometheusProbeKind;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
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
    at_context_time: bool,
    #[serde(default)]
    samples: Option<SampleSplit>,
}

impl Options {
    fn probe(self, name: &str) -> Result<PrometheusProbe> {
        let mut server = PrometheusConfig::new(self.url);
        server.auth = self.auth;
        if let Some(t) = self.timeout {
            server.timeout = t;
        }
        let mut b = PrometheusProbe::builder(name, PrometheusClient::from_config(&server)?)
            .query(self.query)
            .at_context_time(self.at_context_time);
        if let Some(q) = self.baseline_query {
            b = b.baseline_query(q);
        }
        if let Some(a) = self.aggregate {
            b = b.aggregate(a);
        }
        if let Some(split) = self.samples {
            b = b.samples(split);
        }
        Ok(b.build()?)
    }
}

#[async_trait]
impl ProbeKind for PrometheusProbeKind {
    fn kind(&self) -> &'static str {
        "prometheus"
    }

    fn check(&self, options: &rollback_core::registry::Options) -> Result<()> {
        let o: Options = rollback_core::registry::options(options)?;
        o.probe("check").map(drop)
    }

    async fn build(&self, probe: ProbeFor<'_>) -> Result<Arc<dyn HealthProbe>> {
        let o: Options = rollback_core::registry::options(probe.options)?;
        Ok(Arc::new(o.probe(probe.name)?))
    }
}

/// `burn_rate`: an SLO's error-budget burn rate over window pairs
/// ([`BurnRateProbe`]). Options: `url`, `objective` (percent), `bad` or
/// `good`, `total` (each with `{{window}}`), `windows` (`[{long, short,
/// factor}]`, default the Workbook's four), `watch`, `min_window`,
/// `min_requests`, `auth`, `timeout`, `at_context_time`. Judge it with
/// `success: "<= 1"`.
#[derive(Debug, Clone, Copy, Default)]
pub struct BurnRateProbeKind;

#[async_trait]
impl ProbeKind for BurnRateProbeKind {
    fn kind(&self) -> &'static str {
        "burn_rate"
    }

    fn check(&self, options: &rollback_core::registry::Options) -> Result<()> {
        let c: BurnRateConfig = rollback_core::registry::options(options)?;
        BurnRateProbe::from_config("check", &c).map(drop)?;
        Ok(())
    }

    async fn build(&self, probe: ProbeFor<'_>) -> Result<Arc<dyn HealthProbe>> {
        let c: BurnRateConfig = rollback_core::registry::options(probe.options)?;
        Ok(Arc::new(BurnRateProbe::from_config(probe.name, &c)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(v: serde_json::Value) -> Result<()> {
        PrometheusProbeKind.check(v.as_object().unwrap())
    }

    #[test]
    fn a_probe_needs_a_server_and_a_query() {
        check(serde_json::json!({"url": "http://127.0.0.1:9090", "query": "up", "timeout": "5s"}))
            .unwrap();
        let e = check(serde_json::json!({"url": "http://127.0.0.1:9090"})).unwrap_err();
        assert!(e.to_string().contains("query"), "{e}");
        let e =
            check(serde_json::json!({"url": "http://x", "query": "up", "step": "1m"})).unwrap_err();
        assert!(e.to_string().contains("step"), "{e}");
    }
}
