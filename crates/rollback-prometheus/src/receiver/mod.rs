//! The Alertmanager webhook receiver: firing alerts become rollback triggers.
//!
//! Its parts: `routes` (label matchers, target templates), `payload` (the
//! webhook's version-4 payload and its checks), `dedup` (which alerts were
//! handed over), `http` (the request checks and answers), `server` (the
//! receiver's own HTTP server) and `records` (what is kept of each alert).

mod dedup;
mod http;
mod payload;
mod records;
mod routes;
mod server;

use std::collections::{BTreeMap, VecDeque};
use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use rollback_core::time::{Clock, SystemClock};
use rollback_core::{TargetId, Trigger, TriggerOutcome, TriggerSink};

use crate::config::{self, ReceiverConfig, RouteConfig, Secret};
use crate::error::PrometheusError;
use dedup::Dedup;
use payload::Alert;
use server::ConnectionLimits;

pub use records::{AlertOutcome, AlertRecord, AlertStatus, ReceiverStats};
pub use routes::{Matcher, Route};
pub use server::ReceiverServer;

/// The path the receiver serves: point Alertmanager's `webhook_configs.url` at
/// `http://HOST:PORT/webhook/alertmanager`.
pub const WEBHOOK_PATH: &str = "/webhook/alertmanager";

/// The webhook payload version this receiver reads.
pub const PAYLOAD_VERSION: &str = "4";

struct Shared {
    sink: Arc<dyn TriggerSink>,
    clock: Arc<dyn Clock>,
    token: Secret,
    routes: Vec<Route>,
    max_body_bytes: usize,
    body_read_timeout: Duration,
    limits: ConnectionLimits,
    log_capacity: usize,
    dedup: Mutex<Dedup>,
    records: Mutex<VecDeque<AlertRecord>>,
    stats: Mutex<ReceiverStats>,
}

/// An HTTP endpoint for Alertmanager's webhook (payload version 4).
///
/// - Requests must carry one `Authorization: Bearer <token>` header
///   (compared in constant time; two Authorization headers are 400),
///   `Content-Type: application/json` and a body within the size limit;
///   otherwise they are refused with 401, 415 or 413. A body that is not
///   JSON (invalid UTF-8 included) is 400; JSON that is not a version-4
///   payload, or an alert with an unknown status, a bad `startsAt`, or a
///   fingerprint that is empty or holds a control character, is 422 and
///   nothing of the payload is handled. Every refusal has a JSON body
///   `{"error": "..."}` saying what was wrong, and a body slower than
///   `body_read_timeout` is 408 (see "Slow clients").
/// - Alert fields the receiver logs are escaped (`\n`, `\u{1b}`), so labels
///   cannot forge log lines; what goes to the sink (the summary from the
///   annotations) is left as it is, for the audit sinks to escape.
/// - A firing alert is routed by its labels to a target (first matching
///   route) and handed to the [`TriggerSink`] once: its key is the
///   fingerprint plus `startsAt`, and repeats of the key (Alertmanager
///   repeats notifications every `repeat_interval`, and on every change of
///   the group) are dropped. Keys are remembered up to a bound, oldest
///   forgotten first; the sink is idempotent per key as well.
/// - A resolved alert is recorded (tracing, [`Self::records`]) and never triggers.
/// - If the sink fails, the answer is 503 so that Alertmanager retries, and the
///   alert is not remembered as handled.
///
/// # Slow clients
///
/// [`Self::serve`] bounds what one client can hold, so that slow or silent
/// connections cannot starve Alertmanager's (each knob is a builder method
/// and a [`ReceiverConfig`] field):
///
/// | knob | default | bounds |
/// |---|---|---|
/// | `header_read_timeout` | 10s | a request head, from the accept (or a later request's first byte) to its last header; the connection is closed |
/// | `body_read_timeout` | 10s | the whole body, once the head is in; answered 408 and closed |
/// | `idle_timeout` | 10s | a kept-alive connection with no request and no bytes moving; closed |
/// | `max_connections` | 256 | connections served at once; more wait in the listen backlog to be accepted |
///
/// A valid alert queued behind slow clients is served once their timeouts
/// free a connection. The body timeout also applies under [`Self::router`];
/// the others are the job of whatever server mounts that router.
///
/// The Alertmanager side (0.25) of a receiver served at `rollback:9095`:
///
/// ```yaml
/// receivers:
///   - name: rollback
///     webhook_configs:
///       - url: http://rollback:9095/webhook/alertmanager
///         send_resolved: true
///         http_config:
///           authorization: { type: Bearer, credentials: s3cret }
/// ```
#[derive(Clone)]
pub struct AlertmanagerReceiver {
    shared: Arc<Shared>,
}

impl fmt::Debug for AlertmanagerReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlertmanagerReceiver")
            .field("routes", &self.shared.routes)
            .field("max_body_bytes", &self.shared.max_body_bytes)
            .field("body_read_timeout", &self.shared.body_read_timeout)
            .field("limits", &self.shared.limits)
            .finish_non_exhaustive()
    }
}

/// Builds an [`AlertmanagerReceiver`]; see [`AlertmanagerReceiver::builder`].
#[derive(Debug)]
#[must_use]
pub struct AlertmanagerReceiverBuilder {
    sink: Arc<dyn TriggerSink>,
    clock: Arc<dyn Clock>,
    token: Option<Secret>,
    routes: Vec<Result<Route, PrometheusError>>,
    max_body_bytes: usize,
    body_read_timeout: Duration,
    limits: ConnectionLimits,
    dedup_capacity: usize,
    log_capacity: usize,
}

impl AlertmanagerReceiverBuilder {
    /// The bearer token Alertmanager must send.
    pub fn bearer_token(mut self, token: impl Into<Secret>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Where the receiver reads the time (the `received_at` of its records):
    /// give it the engine's clock, so that on virtual time both agree.
    /// Default [`SystemClock`].
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Add a route: matchers like `alertname="HighErrorRate"` and a target
    /// template like `k8s:{namespace}/{deployment}`. First match wins.
    pub fn route<S: AsRef<str>>(mut self, matchers: &[S], target: &str) -> Self {
        let field = format!("routes[{}]", self.routes.len());
        self.routes.push(Route::parse(matchers, target, &field));
        self
    }

    /// Refuse bodies larger than this (413). Default 1 MiB.
    pub fn max_body_bytes(mut self, n: usize) -> Self {
        self.max_body_bytes = n;
        self
    }

    /// Close a connection whose request head (from the accept, or from a
    /// later request's first byte) has not fully arrived after this long.
    /// Default 10s.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.limits.header_read_timeout = timeout;
        self
    }

    /// Answer 408 (and close the connection) when a request body has not
    /// fully arrived this long after its head. Default 10s.
    pub fn body_read_timeout(mut self, timeout: Duration) -> Self {
        self.body_read_timeout = timeout;
        self
    }

    /// Close a kept-alive connection after this long without a request or
    /// any byte moving. Default 10s.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.limits.idle_timeout = timeout;
        self
    }

    /// Serve at most this many connections at once; more wait to be
    /// accepted until one closes. Default 256: far more than the few
    /// Alertmanager instances that send webhooks need, and well under the
    /// usual limit of 1024 open files.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.limits.max_connections = n;
        self
    }

    /// Remember this many alert keys for deduplication. Default 10000.
    pub fn dedup_capacity(mut self, n: usize) -> Self {
        self.dedup_capacity = n;
        self
    }

    /// Keep this many alert records. Default 1000.
    pub fn log_capacity(mut self, n: usize) -> Self {
        self.log_capacity = n;
        self
    }

    /// Check the settings and build the receiver.
    pub fn build(self) -> Result<AlertmanagerReceiver, PrometheusError> {
        let token = self.token.ok_or_else(|| {
            PrometheusError::config(
                "bearer_token",
                "the receiver needs a bearer token; unauthenticated webhooks are refused",
            )
        })?;
        if token.expose().trim().is_empty() {
            return Err(PrometheusError::config("bearer_token", "is empty"));
        }
        let routes = self.routes.into_iter().collect::<Result<Vec<_>, _>>()?;
        if routes.is_empty() {
            return Err(PrometheusError::config(
                "routes",
                "at least one route is needed to map alerts to targets",
            ));
        }
        if self.max_body_bytes == 0 {
            return Err(PrometheusError::config(
                "max_body_bytes",
                "must be more than zero",
            ));
        }
        for (field, timeout) in [
            ("header_read_timeout", self.limits.header_read_timeout),
            ("body_read_timeout", self.body_read_timeout),
            ("idle_timeout", self.limits.idle_timeout),
        ] {
            if timeout.is_zero() {
                return Err(PrometheusError::config(
                    field,
                    "must be more than zero, or every connection would be closed at once",
                ));
            }
        }
        if self.limits.max_connections == 0
            || self.limits.max_connections > tokio::sync::Semaphore::MAX_PERMITS
        {
            return Err(PrometheusError::config(
                "max_connections",
                format!(
                    "must be between 1 and {}, got {}",
                    tokio::sync::Semaphore::MAX_PERMITS,
                    self.limits.max_connections
                ),
            ));
        }
        if self.dedup_capacity == 0 {
            return Err(PrometheusError::config(
                "dedup_capacity",
                "must be more than zero, or repeated notifications could trigger again",
            ));
        }
        Ok(AlertmanagerReceiver {
            shared: Arc::new(Shared {
                sink: self.sink,
                clock: self.clock,
                token,
                routes,
                max_body_bytes: self.max_body_bytes,
                body_read_timeout: self.body_read_timeout,
                limits: self.limits,
                log_capacity: self.log_capacity,
                dedup: Mutex::new(Dedup::new(self.dedup_capacity)),
                records: Mutex::new(VecDeque::new()),
                stats: Mutex::new(ReceiverStats::default()),
            }),
        })
    }
}

/// A string as the receiver logs it: control characters, and the Unicode
/// ones that break or reorder a line, escaped (`\n`, `\u{1b}`), so that an
/// alert's labels cannot forge or hide a log line.
struct Printable<'a>(&'a str);

impl Printable<'_> {
    fn needs_escape(c: char) -> bool {
        c.is_control()
            || matches!(
                c,
                '\u{061c}'
                    | '\u{200e}'
                    | '\u{200f}'
                    | '\u{2028}'
                    | '\u{2029}'
                    | '\u{202a}'..='\u{202e}'
                    | '\u{2066}'..='\u{2069}'
            )
    }
}

impl fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.0.chars().any(Self::needs_escape) {
            return f.write_str(self.0);
        }
        for c in self.0.chars() {
            if Self::needs_escape(c) {
                write!(f, "{}", c.escape_debug())?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves consistent data behind
    // (every critical section is a few plain inserts), so go on with it.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl AlertmanagerReceiver {
    /// A builder delivering triggers to `sink` (the engine).
    pub fn builder(sink: Arc<dyn TriggerSink>) -> AlertmanagerReceiverBuilder {
        AlertmanagerReceiverBuilder {
            sink,
            clock: Arc::new(SystemClock),
            token: None,
            routes: Vec::new(),
            max_body_bytes: 1024 * 1024,
            body_read_timeout: config::DEFAULT_READ_TIMEOUT,
            limits: ConnectionLimits {
                max_connections: config::DEFAULT_MAX_CONNECTIONS,
                header_read_timeout: config::DEFAULT_READ_TIMEOUT,
                idle_timeout: config::DEFAULT_IDLE_TIMEOUT,
            },
            dedup_capacity: 10_000,
            log_capacity: 1_000,
        }
    }

    /// A receiver from its serde configuration, on the system clock.
    pub fn from_config(
        sink: Arc<dyn TriggerSink>,
        config: &ReceiverConfig,
    ) -> Result<Self, PrometheusError> {
        let mut b = Self::builder(sink)
            .bearer_token(config.bearer_token.clone())
            .max_body_bytes(config.max_body_bytes)
            .header_read_timeout(config.header_read_timeout)
            .body_read_timeout(config.body_read_timeout)
            .idle_timeout(config.idle_timeout)
            .max_connections(config.max_connections)
            .dedup_capacity(config.dedup_capacity)
            .log_capacity(config.log_capacity);
        for RouteConfig { matchers, target } in &config.routes {
            b = b.route(matchers, target);
        }
        b.build()
    }

    /// The axum router serving [`WEBHOOK_PATH`], to mount in an existing server.
    pub fn router(&self) -> axum::Router {
        axum::Router::new()
            .route(WEBHOOK_PATH, axum::routing::post(http::webhook))
            .layer(DefaultBodyLimit::max(self.shared.max_body_bytes))
            .with_state(self.clone())
    }

    /// The alert records kept, oldest first.
    pub fn records(&self) -> Vec<AlertRecord> {
        lock(&self.shared.records).iter().cloned().collect()
    }

    /// The counters since the receiver started.
    pub fn stats(&self) -> ReceiverStats {
        *lock(&self.shared.stats)
    }

    fn record(&self, record: AlertRecord) {
        if self.shared.log_capacity == 0 {
            return;
        }
        let mut records = lock(&self.shared.records);
        records.push_back(record);
        while records.len() > self.shared.log_capacity {
            records.pop_front();
        }
    }

    fn target_for(&self, labels: &BTreeMap<String, String>) -> Result<TargetId, String> {
        let mut missing = Vec::new();
        for (i, route) in self.shared.routes.iter().enumerate() {
            match route.route(labels) {
                Some(Ok(target)) => return Ok(target),
                Some(Err(label)) => missing.push(format!("routes[{i}] needs label {label:?}")),
                None => {}
            }
        }
        if missing.is_empty() {
            Err("no route matches the alert's labels".into())
        } else {
            Err(format!("no route applies: {}", missing.join("; ")))
        }
    }

    async fn handle_alert(&self, receiver: &str, alert: Alert) -> AlertRecord {
        let status = if alert.status == "firing" {
            AlertStatus::Firing
        } else {
            AlertStatus::Resolved
        };
        let alertname = alert.labels.get("alertname").cloned();
        let routed = self.target_for(&alert.labels);
        let mut record = AlertRecord {
            received_at: self.shared.clock.now(),
            fingerprint: alert.fingerprint.clone(),
            starts_at: alert.starts_at.clone(),
            alertname: alertname.clone(),
            status,
            target: routed.as_ref().ok().cloned(),
            outcome: AlertOutcome::Resolved,
        };
        let name = alertname.as_deref().unwrap_or("(no alertname)");
        if status == AlertStatus::Resolved {
            tracing::info!(alert = %Printable(name), fingerprint = %Printable(&alert.fingerprint),
                starts_at = %Printable(&alert.starts_at),
                target = ?record.target,
                receiver = %Printable(receiver), "alert resolved; recorded, nothing triggered");
            return record;
        }
        let target = match routed {
            Ok(t) => t,
            Err(reason) => {
                tracing::warn!(alert = %Printable(name), fingerprint = %Printable(&alert.fingerprint),
                    reason = %Printable(&reason), "firing alert matches no route");
                record.outcome = AlertOutcome::Unrouted { reason };
                return record;
            }
        };
        let key = format!("{}@{}", alert.fingerprint, alert.starts_at.trim());
        let dedup_key = format!("{target}\u{0}{key}");
        if !lock(&self.shared.dedup).reserve(&dedup_key) {
            tracing::debug!(alert = %Printable(name), target = %Printable(target.as_str()),
                key = %Printable(&key), "repeated alert; already handed over");
            record.outcome = AlertOutcome::Duplicate;
            return record;
        }
        let detail = alert
            .annotations
            .get("summary")
            .or_else(|| alert.annotations.get("description"))
            .map(|s| format!(": {s}"))
            .unwrap_or_default();
        let summary = format!(
            "Alertmanager alert {name} firing since {}{detail}",
            alert.starts_at
        );
        let result = self
            .shared
            .sink
            .trigger(
                &target,
                Trigger {
                    key: key.clone(),
                    summary,
                },
            )
            .await;
        let remember = matches!(&result, Ok(o) if *o != TriggerOutcome::NoWatch);
        lock(&self.shared.dedup).finish(&dedup_key, remember);
        record.outcome = match result {
            Ok(result) => {
                tracing::info!(alert = %Printable(name), target = %Printable(target.as_str()),
                    key = %Printable(&key), outcome = ?result, "firing alert handed to the engine");
                AlertOutcome::Triggered { result }
            }
            Err(e) => {
                tracing::error!(alert = %Printable(name), target = %Printable(target.as_str()),
                    key = %Printable(&key), error = %Printable(&e.full_message()), "trigger sink failed");
                AlertOutcome::SinkFailed {
                    error: format!("target {target}: {}", e.full_message()),
                }
            }
        };
        record
    }
}
