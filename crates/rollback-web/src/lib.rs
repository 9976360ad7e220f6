//! `rollback-web`: a generic web probe for the rollback engine, with the
//! semantics of Argo Rollouts' `web` metric provider. Any HTTP API that
//! answers JSON is a signal: Datadog's and Google Cloud Monitoring's query
//! APIs, an in-house health endpoint.
//!
//! One request per measurement: `url`, `method` (`GET`, `POST`, `PUT`),
//! `headers` (values from the environment with `${NAME}` in the watch file),
//! `body` or `json_body`, `timeout`; the value is read from the JSON answer
//! by an RFC 9535 JSONPath (`json_path`, [`serde_json_path`]). A status other
//! than 2xx is a probe error with the status and the start of the body; a
//! path matching nothing is no data; several matches are an error unless
//! aggregated (`aggregate`). With `samples`, the probe reads canary and
//! baseline samples for the `mann_whitney` judge ([`rollback_core::canary`]).
//!
//! In a watch file (`examples/watch/datadog.yaml`,
//! `examples/watch/cloud-monitoring.yaml`):
//!
//! ```yaml
//! probes:
//!   - name: error_rate
//!     success: "< 0.01"
//!     web:
//!       url: "${DATADOG_API_URL}/api/v1/query?from={{start_seconds}}&to={{end_seconds}}&query=sum:trace.http.request.errors{version:{{revision}}}.as_rate()"
//!       headers: { DD-API-KEY: "${DD_API_KEY}", DD-APPLICATION-KEY: "${DD_APP_KEY}" }
//!       json_path: "$.series[0].pointlist[-1][1]"
//! ```
//!
//! As a library:
//!
//! ```no_run
//! # async fn demo() -> rollback_core::Result<()> {
//! use rollback_core::{HealthProbe, ProbeContext, Timestamp};
//! use rollback_web::{WebConfig, WebProbe};
//! let mut config = WebConfig::new("http://health.internal/api/errors?revision={{revision}}");
//! config.json_path = "$.data.error_rate".into();
//! let probe = WebProbe::new("error_rate", config)?;
//! let m = probe.measure(&ProbeContext::new("shop/checkout".into(), "v2".into(), Timestamp::from_millis(0))).await?;
//! println!("{:?}", m.value);
//! # Ok(()) }
//! ```

mod config;
mod error;
mod probe;
mod registry;

pub use config::{Aggregate, Header, Headers, Method, SamplePaths, WebConfig};
pub use error::WebError;
pub use probe::{MAX_BODY_BYTES, WebProbe};
pub use registry::WebProbeKind;

/// Register the `web` probe kind in `registry`.
pub fn register(registry: rollback_core::registry::Registry) -> rollback_core::registry::Registry {
    registry.probe(WebProbeKind)
}
