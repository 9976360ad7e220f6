//! `rollback-prometheus`: the signal side of the rollback loop.
//!
//! - [`PrometheusProbe`]: a [`rollback_core::HealthProbe`] over an instant
//!   PromQL query. One scalar or one series is a value; an empty result is no
//!   data; several series are an error unless the probe aggregates them;
//!   NaN and infinities go to the engine as they are (it judges them
//!   inconclusive). HTTP, PromQL and timeout failures are probe errors, never
//!   failed measurements.
//! - [`PrometheusProbe::history`]: the same SLI over a range of history
//!   (`/api/v1/query_range`), one sample per step, for replaying a policy
//!   on real metrics; [`history_series`] reads several probes into the
//!   [`rollback_core::replay::Series`] that [`rollback_core::replay`] takes.
//! - [`BurnRateProbe`]: an SLO's error-budget burn rate over multiwindow,
//!   multi-burn-rate pairs (the SRE Workbook's four by default, scaled to a
//!   short watch), with a floor on request volume; arithmetic in
//!   [`burn_rate`] (no network).
//! - [`AlertmanagerReceiver`]: an endpoint for Alertmanager's webhook
//!   (payload version 4) that routes firing alerts by their labels to
//!   targets and hands them once to a [`rollback_core::TriggerSink`] (the
//!   engine), however often Alertmanager repeats them.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use rollback_core::{HealthProbe, ProbeContext, RevisionId, TargetId, Timestamp, TriggerSink};
//! use rollback_prometheus::{AlertmanagerReceiver, PrometheusClient, PrometheusProbe};
//!
//! # async fn example(engine: Arc<dyn TriggerSink>) -> Result<(), Box<dyn std::error::Error>> {
//! let client = PrometheusClient::builder("http://prometheus:9090")
//!     .bearer_token("token")
//!     .timeout(Duration::from_secs(5))
//!     .build()?;
//!
//! // The 5xx ratio of the revision being judged.
//! let probe = PrometheusProbe::builder("error-rate", client)
//!     .query(
//!         r#"sum(rate(http_requests_total{code=~"5..",revision="{{revision}}"}[1m]))
//!          / sum(rate(http_requests_total{revision="{{revision}}"}[1m]))"#,
//!     )
//!     .build()?;
//! let m = probe
//!     .measure(&ProbeContext::new(
//!         TargetId::new("k8s:shop/checkout"),
//!         RevisionId::new("7d9f"),
//!         Timestamp::from(std::time::SystemTime::now()),
//!     ))
//!     .await?;
//! println!("error rate: {:?}", m.value);
//!
//! // Alerts naming a namespace and deployment roll that Deployment back.
//! let receiver = AlertmanagerReceiver::builder(engine)
//!     .bearer_token("s3cret")
//!     .route(&[r#"severity="page""#], "k8s:{namespace}/{deployment}")
//!     .build()?;
//! let server = receiver.serve("127.0.0.1:9095".parse()?).await?;
//! println!("point Alertmanager's webhook_configs at {}", server.url());
//! # Ok(())
//! # }
//! ```

pub mod burn_rate;
mod client;
mod config;
mod error;
mod probe;
mod receiver;
mod registry;
mod samples;

pub use burn_rate::{
    Assessment, Burn, BurnRateConfig, BurnRateProbe, NotJudged, WindowCount, WindowPair,
};
pub use client::{
    InstantSeries, MAX_POINTS_PER_QUERY, PrometheusClient, PrometheusClientBuilder, QueryResult,
    RangeSeries, Sample, format_labels,
};
pub use config::{Aggregate, ProbeConfig, PrometheusConfig, ReceiverConfig, RouteConfig};
pub use error::PrometheusError;
pub use probe::{HistoryRange, PrometheusProbe, PrometheusProbeBuilder, history_series};
pub use receiver::{
    AlertOutcome, AlertRecord, AlertStatus, AlertmanagerReceiver, AlertmanagerReceiverBuilder,
    Matcher, PAYLOAD_VERSION, ReceiverServer, ReceiverStats, Route, WEBHOOK_PATH,
};
pub use registry::{BurnRateProbeKind, PrometheusProbeKind};
pub use samples::SampleSplit;
