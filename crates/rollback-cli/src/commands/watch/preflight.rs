//! Before any watch starts: every Prometheus server a probe queries answers
//! a query (`vector(1)`), so that an unreachable server or a wrong URL is
//! an error of the command (exit 1, nothing changed) rather than probe
//! errors that escalate the watch later.

use std::collections::BTreeSet;

use rollback::prometheus::{PrometheusClient, PrometheusConfig};
use rollback::registry::Options;
use rollback::watchfile::WatchFile;
use rollback::{Error, Result};

/// Query each distinct Prometheus server of the file's probes once.
pub(super) async fn prometheus_servers_answer(file: &WatchFile) -> Result<()> {
    let mut asked = BTreeSet::new();
    for probe in file.probes.iter().filter(|p| p.kind == "prometheus") {
        let server: Options = probe
            .options
            .iter()
            .filter(|(k, _)| ["url", "auth", "timeout"].contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let config: PrometheusConfig = rollback::registry::options(&server)
            .map_err(|e| Error::invalid(format!("probe {}: {}", probe.name, e.message())))?;
        if !asked.insert(config.url.clone()) {
            continue;
        }
        let client = PrometheusClient::from_config(&config)
            .map_err(|e| Error::invalid(format!("probe {}: {e}", probe.name)))?;
        if let Err(e) = client.query("vector(1)", None).await {
            return Err(Error::transient(format!(
                "probe {} in {}: the Prometheus server {} does not answer: {e}",
                probe.name, file.source_name, config.url
            )));
        }
    }
    Ok(())
}
