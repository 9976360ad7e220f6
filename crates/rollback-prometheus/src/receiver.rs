//! The Alertmanager webhook receiver: firing alerts become rollback triggers.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rollback_core::{TargetId, Timestamp, Trigger, TriggerOutcome, TriggerSink};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::config::{ReceiverConfig, RouteConfig, Secret};
use crate::error::PrometheusError;

/// The path the receiver serves: point Alertmanager's `webhook_configs.url` at
/// `http://HOST:PORT/webhook/alertmanager`.
pub const WEBHOOK_PATH: &str = "/webhook/alertmanager";

/// The webhook payload version this receiver reads.
pub const PAYLOAD_VERSION: &str = "4";

// ---------------------------------------------------------------------------
// Routing

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MatchOp {
    Eq,
    Ne,
}

/// One label matcher: `name="value"` or `name!="value"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    label: String,
    op: MatchOp,
    value: String,
}

impl Matcher {
    /// Whether the labels satisfy the matcher; a missing label is the empty
    /// string, as in Alertmanager.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.label).map(String::as_str).unwrap_or("");
        (v == self.value) == (self.op == MatchOp::Eq)
    }
}

impl FromStr for Matcher {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.contains("=~") || s.contains("!~") {
            return Err(format!(
                "{s:?}: regular-expression matchers (=~, !~) are not supported; use = or != (one route per value)"
            ));
        }
        let (label, op, rest) = if let Some((l, r)) = s.split_once("!=") {
            (l, MatchOp::Ne, r)
        } else if let Some((l, r)) = s.split_once('=') {
            (l, MatchOp::Eq, r)
        } else {
            return Err(format!(
                "{s:?}: a matcher is written label=\"value\" or label!=\"value\""
            ));
        };
        let label = label.trim();
        let valid_name = label
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            return Err(format!(
                "{s:?}: {label:?} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)"
            ));
        }
        let rest = rest.trim();
        let value = if let Some(inner) = rest.strip_prefix('"') {
            let inner = inner
                .strip_suffix('"')
                .ok_or_else(|| format!("{s:?}: the value's closing quote is missing"))?;
            let mut out = String::new();
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    match chars.next() {
                        Some(n @ ('"' | '\\')) => out.push(n),
                        Some('n') => out.push('\n'),
                        other => {
                            return Err(format!(
                                "{s:?}: unknown escape \\{}",
                                other.map(String::from).unwrap_or_default()
                            ));
                        }
                    }
                } else if c == '"' {
                    return Err(format!("{s:?}: an unescaped quote inside the value"));
                } else {
                    out.push(c);
                }
            }
            out
        } else {
            rest.to_owned()
        };
        Ok(Matcher {
            label: label.to_owned(),
            op,
            value,
        })
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = if self.op == MatchOp::Eq { "=" } else { "!=" };
        write!(f, "{}{}{:?}", self.label, op, self.value)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Label(String),
}

/// A target id with `{label}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TargetTemplate(Vec<Part>);

impl FromStr for TargetTemplate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("{s:?}: a `{{` without its `}}`"))?;
            let label = after[..close].trim();
            if label.is_empty() || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("{s:?}: {{{label}}} does not name a label"));
            }
            parts.push(Part::Label(label.to_owned()));
            rest = &after[close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("{s:?}: a `}}` without its `{{`"));
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        if parts.is_empty() {
            return Err("the target is empty".into());
        }
        Ok(TargetTemplate(parts))
    }
}

impl TargetTemplate {
    /// The target for these labels, or the first label the alert lacks.
    fn render(&self, labels: &BTreeMap<String, String>) -> Result<TargetId, String> {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Label(l) => match labels.get(l) {
                    Some(v) if !v.is_empty() => out.push_str(v),
                    _ => return Err(l.clone()),
                },
            }
        }
        Ok(TargetId::new(out))
    }
}

/// One row of the routing table: matchers and the target they name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    matchers: Vec<Matcher>,
    target: TargetTemplate,
}

impl Route {
    /// A route from matchers (`alertname="HighErrorRate"`) and a target
    /// template (`k8s:{namespace}/{deployment}`).
    pub fn new<S: AsRef<str>>(matchers: &[S], target: &str) -> Result<Self, PrometheusError> {
        Self::parse(matchers, target, "route")
    }

    fn parse<S: AsRef<str>>(
        matchers: &[S],
        target: &str,
        field: &str,
    ) -> Result<Self, PrometheusError> {
        let matchers = matchers
            .iter()
            .enumerate()
            .map(|(i, m)| {
                m.as_ref()
                    .parse()
                    .map_err(|e| PrometheusError::config(format!("{field}.matchers[{i}]"), e))
            })
            .collect::<Result<_, _>>()?;
        let target = target
            .parse()
            .map_err(|e| PrometheusError::config(format!("{field}.target"), e))?;
        Ok(Route { matchers, target })
    }

    /// The target for an alert with these labels, if the route matches it.
    fn route(&self, labels: &BTreeMap<String, String>) -> Option<Result<TargetId, String>> {
        self.matchers
            .iter()
            .all(|m| m.matches(labels))
            .then(|| self.target.render(labels))
    }
}

// ---------------------------------------------------------------------------
// Payload (Alertmanager's webhook, version 4)

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    version: String,
    #[serde(default)]
    group_key: String,
    #[serde(default)]
    truncated_alerts: u64,
    #[serde(default)]
    receiver: String,
    alerts: Vec<Alert>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Alert {
    status: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    starts_at: String,
    fingerprint: String,
}

// ---------------------------------------------------------------------------
// Records

/// Whether an alert fires or has resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    /// Firing: may trigger a rollback.
    Firing,
    /// Resolved: recorded, never triggers.
    Resolved,
}

/// What the receiver did with one alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum AlertOutcome {
    /// Handed to the trigger sink, which answered this.
    Triggered {
        /// The sink's answer.
        result: TriggerOutcome,
    },
    /// The same alert (fingerprint + startsAt) was handed over before.
    Duplicate,
    /// A resolved alert: recorded only.
    Resolved,
    /// No route matched; nothing was triggered.
    Unrouted {
        /// Why.
        reason: String,
    },
    /// The sink failed; Alertmanager is answered 503 and will retry.
    SinkFailed {
        /// The sink's error.
        error: String,
    },
}

/// One alert as the receiver saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRecord {
    /// When the receiver handled it.
    pub received_at: Timestamp,
    /// Alertmanager's fingerprint of the alert's labels.
    pub fingerprint: String,
    /// When the alert started, as Alertmanager wrote it.
    pub starts_at: String,
    /// The `alertname` label, if any.
    pub alertname: Option<String>,
    /// Firing or resolved.
    pub status: AlertStatus,
    /// The routed target, if a route matched.
    pub target: Option<TargetId>,
    /// What was done.
    pub outcome: AlertOutcome,
}

/// Counters since the receiver started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiverStats {
    /// Requests that passed the checks (answered 200, or 503 if the sink failed).
    pub requests: u64,
    /// Requests refused (4xx).
    pub rejected: u64,
    /// Firing alerts received (duplicates included).
    pub firing: u64,
    /// Resolved alerts received.
    pub resolved: u64,
    /// Firing alerts handed to the sink.
    pub triggered: u64,
    /// Firing alerts dropped as duplicates.
    pub duplicates: u64,
    /// Firing alerts no route matched.
    pub unrouted: u64,
    /// Sink calls that failed.
    pub sink_errors: u64,
}

// ---------------------------------------------------------------------------
// The receiver

struct Dedup {
    seen: HashSet<String>,
    order: VecDeque<String>,
    in_flight: HashSet<String>,
    capacity: usize,
}

impl Dedup {
    /// Reserve `key`; false when it was seen or is being handled.
    fn reserve(&mut self, key: &str) -> bool {
        if self.seen.contains(key) || self.in_flight.contains(key) {
            return false;
        }
        self.in_flight.insert(key.to_owned());
        true
    }

    fn finish(&mut self, key: &str, remember: bool) {
        self.in_flight.remove(key);
        if remember && self.capacity > 0 && self.seen.insert(key.to_owned()) {
            self.order.push_back(key.to_owned());
            while self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.seen.remove(&old);
                }
            }
        }
    }
}

struct Shared {
    sink: Arc<dyn TriggerSink>,
    token: Secret,
    routes: Vec<Route>,
    max_body_bytes: usize,
    log_capacity: usize,
    dedup: Mutex<Dedup>,
    records: Mutex<VecDeque<AlertRecord>>,
    stats: Mutex<ReceiverStats>,
}

/// An HTTP endpoint for Alertmanager's webhook (payload version 4).
///
/// - Requests must carry `Authorization: Bearer <token>` (compared in
///   constant time), `Content-Type: application/json` and a body within the
///   size limit; otherwise they are refused with 401, 415 or 413. A body that
///   is not JSON is 400; JSON that is not a version-4 payload is 422. Every
///   refusal has a JSON body `{"error": "..."}` saying what was wrong.
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
            .finish_non_exhaustive()
    }
}

/// Builds an [`AlertmanagerReceiver`]; see [`AlertmanagerReceiver::builder`].
#[derive(Debug)]
#[must_use]
pub struct AlertmanagerReceiverBuilder {
    sink: Arc<dyn TriggerSink>,
    token: Option<Secret>,
    routes: Vec<Result<Route, PrometheusError>>,
    max_body_bytes: usize,
    dedup_capacity: usize,
    log_capacity: usize,
}

impl AlertmanagerReceiverBuilder {
    /// The bearer token Alertmanager must send.
    pub fn bearer_token(mut self, token: impl Into<Secret>) -> Self {
        self.token = Some(token.into());
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
        if self.dedup_capacity == 0 {
            return Err(PrometheusError::config(
                "dedup_capacity",
                "must be more than zero, or repeated notifications could trigger again",
            ));
        }
        Ok(AlertmanagerReceiver {
            shared: Arc::new(Shared {
                sink: self.sink,
                token,
                routes,
                max_body_bytes: self.max_body_bytes,
                log_capacity: self.log_capacity,
                dedup: Mutex::new(Dedup {
                    seen: HashSet::new(),
                    order: VecDeque::new(),
                    in_flight: HashSet::new(),
                    capacity: self.dedup_capacity,
                }),
                records: Mutex::new(VecDeque::new()),
                stats: Mutex::new(ReceiverStats::default()),
            }),
        })
    }
}

/// A refusal: status and message.
struct Refusal(StatusCode, String);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves consistent data behind
    // (every critical section is a few plain inserts), so go on with it.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    let mut r = (status, axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"rollback\""),
        );
    }
    r
}

impl AlertmanagerReceiver {
    /// A builder delivering triggers to `sink` (the engine).
    pub fn builder(sink: Arc<dyn TriggerSink>) -> AlertmanagerReceiverBuilder {
        AlertmanagerReceiverBuilder {
            sink,
            token: None,
            routes: Vec::new(),
            max_body_bytes: 1024 * 1024,
            dedup_capacity: 10_000,
            log_capacity: 1_000,
        }
    }

    /// A receiver from its serde configuration.
    pub fn from_config(
        sink: Arc<dyn TriggerSink>,
        config: &ReceiverConfig,
    ) -> Result<Self, PrometheusError> {
        let mut b = Self::builder(sink)
            .bearer_token(config.bearer_token.clone())
            .max_body_bytes(config.max_body_bytes)
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
            .route(WEBHOOK_PATH, axum::routing::post(webhook))
            .layer(DefaultBodyLimit::max(self.shared.max_body_bytes))
            .with_state(self.clone())
    }

    /// Serve the webhook on `addr` (port 0 picks a free port) until the
    /// returned handle is shut down or dropped.
    pub async fn serve(&self, addr: SocketAddr) -> Result<ReceiverServer, PrometheusError> {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            PrometheusError::config("listen", format!("cannot listen on {addr}: {e}"))
        })?;
        let local = listener.local_addr().map_err(|e| {
            PrometheusError::config("listen", format!("no local address for {addr}: {e}"))
        })?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let router = self.router();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = rx.await;
            };
            if let Err(e) = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %e, "the Alertmanager receiver stopped");
            }
        });
        tracing::info!(addr = %local, path = WEBHOOK_PATH, "Alertmanager receiver listening");
        Ok(ReceiverServer {
            addr: local,
            shutdown: Some(tx),
            task: Some(task),
        })
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

    /// Authentication and content type, checked before the body is read.
    fn check_headers(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let auth = headers.get(header::AUTHORIZATION).ok_or_else(|| {
            Refusal(
                StatusCode::UNAUTHORIZED,
                "missing `Authorization: Bearer <token>` header".into(),
            )
        })?;
        let auth = auth.as_bytes();
        let token = match auth.iter().position(|&b| b == b' ') {
            Some(i) if auth[..i].eq_ignore_ascii_case(b"bearer") => auth[i + 1..].trim_ascii(),
            _ => {
                return Err(Refusal(
                    StatusCode::UNAUTHORIZED,
                    "the Authorization header is not a bearer token (`Authorization: Bearer <token>`)".into(),
                ));
            }
        };
        if !bool::from(token.ct_eq(self.shared.token.expose().as_bytes())) {
            return Err(Refusal(
                StatusCode::UNAUTHORIZED,
                "invalid bearer token".into(),
            ));
        }
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mime = content_type.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("application/json") {
            let shown = if content_type.is_empty() {
                "none".to_owned()
            } else {
                format!("{content_type:?}")
            };
            return Err(Refusal(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Type must be application/json, got {shown}"),
            ));
        }
        Ok(())
    }

    /// Read and check the payload.
    fn parse_body(&self, body: Result<Bytes, BytesRejection>) -> Result<Payload, Refusal> {
        let body = body.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Refusal(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "request body larger than the limit of {} bytes",
                        self.shared.max_body_bytes
                    ),
                )
            } else {
                Refusal(
                    StatusCode::BAD_REQUEST,
                    format!("could not read the request body: {rejection}"),
                )
            }
        })?;
        let mut de = serde_json::Deserializer::from_slice(&body);
        let parsed: Result<Payload, _> = serde_path_to_error::deserialize(&mut de);
        let payload = match parsed.map(|p| de.end().map(|()| p)) {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                return Err(Refusal(
                    StatusCode::BAD_REQUEST,
                    format!("the body is not valid JSON: {e}"),
                ));
            }
            Err(e) => {
                // Syntax first: a body that is not JSON at all is 400 even if
                // its start already missed a field.
                if let Err(syntax) = serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
                    return Err(Refusal(
                        StatusCode::BAD_REQUEST,
                        format!("the body is not valid JSON: {syntax}"),
                    ));
                }
                let path = e.path().to_string();
                return Err(Refusal(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!(
                        "not an Alertmanager webhook payload: at `{path}`: {}",
                        e.into_inner()
                    ),
                ));
            }
        };
        if payload.version != PAYLOAD_VERSION {
            return Err(Refusal(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "webhook payload version {:?} is not supported; this receiver reads version {PAYLOAD_VERSION:?}",
                    payload.version
                ),
            ));
        }
        for (i, a) in payload.alerts.iter().enumerate() {
            if a.status != "firing" && a.status != "resolved" {
                return Err(Refusal(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!(
                        "`alerts[{i}].status` is {:?}; expected \"firing\" or \"resolved\"",
                        a.status
                    ),
                ));
            }
            if a.fingerprint.trim().is_empty() {
                return Err(Refusal(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("`alerts[{i}].fingerprint` is empty"),
                ));
            }
            if Timestamp::parse(&a.starts_at).is_none() {
                return Err(Refusal(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!(
                        "`alerts[{i}].startsAt` is {:?}, not an RFC 3339 time",
                        a.starts_at
                    ),
                ));
            }
        }
        Ok(payload)
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

    async fn handle(&self, request: Request) -> Response {
        // Headers first: an unauthenticated request is refused before its
        // body is read at all.
        let checked = match self.check_headers(request.headers()) {
            Ok(()) => self.parse_body(Bytes::from_request(request, &()).await),
            Err(refusal) => Err(refusal),
        };
        let payload = match checked {
            Ok(p) => p,
            Err(Refusal(status, message)) => {
                lock(&self.shared.stats).rejected += 1;
                tracing::warn!(status = status.as_u16(), %message, "refused an Alertmanager webhook request");
                return json_response(status, serde_json::json!({ "error": message }));
            }
        };
        if payload.truncated_alerts > 0 {
            tracing::warn!(
                truncated = payload.truncated_alerts,
                group_key = %payload.group_key,
                "Alertmanager truncated the alerts of this notification (max_alerts); the missing ones were not seen"
            );
        }
        let mut counts = ReceiverStats::default();
        let mut sink_errors = Vec::new();
        for alert in payload.alerts {
            let record = self.handle_alert(&payload.receiver, alert).await;
            match (&record.status, &record.outcome) {
                (AlertStatus::Resolved, _) => counts.resolved += 1,
                (AlertStatus::Firing, outcome) => {
                    counts.firing += 1;
                    match outcome {
                        AlertOutcome::Triggered { .. } => counts.triggered += 1,
                        AlertOutcome::Duplicate => counts.duplicates += 1,
                        AlertOutcome::Unrouted { .. } => counts.unrouted += 1,
                        AlertOutcome::SinkFailed { error } => {
                            counts.sink_errors += 1;
                            sink_errors.push(error.clone());
                        }
                        AlertOutcome::Resolved => {}
                    }
                }
            }
            self.record(record);
        }
        {
            let mut stats = lock(&self.shared.stats);
            stats.requests += 1;
            stats.firing += counts.firing;
            stats.resolved += counts.resolved;
            stats.triggered += counts.triggered;
            stats.duplicates += counts.duplicates;
            stats.unrouted += counts.unrouted;
            stats.sink_errors += counts.sink_errors;
        }
        let summary = serde_json::json!({
            "firing": counts.firing,
            "resolved": counts.resolved,
            "triggered": counts.triggered,
            "duplicates": counts.duplicates,
            "unrouted": counts.unrouted,
        });
        if sink_errors.is_empty() {
            json_response(
                StatusCode::OK,
                serde_json::json!({ "status": "ok", "alerts": summary }),
            )
        } else {
            json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({
                    "error": format!("could not deliver {} trigger(s): {}", sink_errors.len(), sink_errors.join("; ")),
                    "alerts": summary,
                }),
            )
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
            received_at: Timestamp::from(SystemTime::now()),
            fingerprint: alert.fingerprint.clone(),
            starts_at: alert.starts_at.clone(),
            alertname: alertname.clone(),
            status,
            target: routed.as_ref().ok().cloned(),
            outcome: AlertOutcome::Resolved,
        };
        let name = alertname.as_deref().unwrap_or("(no alertname)");
        if status == AlertStatus::Resolved {
            tracing::info!(alert = name, fingerprint = %alert.fingerprint, starts_at = %alert.starts_at,
                target = ?record.target, receiver, "alert resolved; recorded, nothing triggered");
            return record;
        }
        let target = match routed {
            Ok(t) => t,
            Err(reason) => {
                tracing::warn!(alert = name, fingerprint = %alert.fingerprint, %reason, "firing alert matches no route");
                record.outcome = AlertOutcome::Unrouted { reason };
                return record;
            }
        };
        let key = format!("{}@{}", alert.fingerprint, alert.starts_at.trim());
        let dedup_key = format!("{target}\u{0}{key}");
        if !lock(&self.shared.dedup).reserve(&dedup_key) {
            tracing::debug!(alert = name, %target, %key, "repeated alert; already handed over");
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
                tracing::info!(alert = name, %target, %key, outcome = ?result, "firing alert handed to the engine");
                AlertOutcome::Triggered { result }
            }
            Err(e) => {
                tracing::error!(alert = name, %target, %key, error = %e.full_message(), "trigger sink failed");
                AlertOutcome::SinkFailed {
                    error: format!("target {target}: {}", e.full_message()),
                }
            }
        };
        record
    }
}

async fn webhook(State(receiver): State<AlertmanagerReceiver>, request: Request) -> Response {
    receiver.handle(request).await
}

/// A running receiver; stops when shut down or dropped.
#[derive(Debug)]
pub struct ReceiverServer {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ReceiverServer {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The webhook URL to give Alertmanager.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, WEBHOOK_PATH)
    }

    /// Stop accepting requests and wait for those in progress.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ReceiverServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn matchers_parse_like_alertmanager() {
        let m: Matcher = r#"alertname="HighErrorRate""#.parse().unwrap();
        assert!(m.matches(&labels(&[("alertname", "HighErrorRate")])));
        assert!(!m.matches(&labels(&[("alertname", "Other")])));
        let m: Matcher = "severity != info".parse().unwrap();
        assert!(m.matches(&labels(&[("severity", "page")])));
        assert!(m.matches(&labels(&[])));
        assert!(!m.matches(&labels(&[("severity", "info")])));
        let m: Matcher = r#"x="a\"b""#.parse().unwrap();
        assert!(m.matches(&labels(&[("x", "a\"b")])));
        assert!(
            "x=~\"a.*\""
                .parse::<Matcher>()
                .unwrap_err()
                .contains("not supported")
        );
        assert!(
            "1x=\"a\""
                .parse::<Matcher>()
                .unwrap_err()
                .contains("not a label name")
        );
        assert!(
            "x=\"a"
                .parse::<Matcher>()
                .unwrap_err()
                .contains("closing quote")
        );
        assert!("nothing".parse::<Matcher>().is_err());
    }

    #[test]
    fn targets_render_from_labels() {
        let t: TargetTemplate = "k8s:{namespace}/{deployment}".parse().unwrap();
        let l = labels(&[("namespace", "shop"), ("deployment", "checkout")]);
        assert_eq!(t.render(&l).unwrap().as_str(), "k8s:shop/checkout");
        assert_eq!(
            t.render(&labels(&[("namespace", "shop")])).unwrap_err(),
            "deployment"
        );
        assert!("k8s:{namespace".parse::<TargetTemplate>().is_err());
        assert!("k8s:}".parse::<TargetTemplate>().is_err());
        assert!("k8s:{}".parse::<TargetTemplate>().is_err());
        assert!("".parse::<TargetTemplate>().is_err());
        assert_eq!(
            "plain"
                .parse::<TargetTemplate>()
                .unwrap()
                .render(&l)
                .unwrap()
                .as_str(),
            "plain"
        );
    }

    #[test]
    fn dedup_is_bounded_and_forgets_the_oldest() {
        let mut d = Dedup {
            seen: HashSet::new(),
            order: VecDeque::new(),
            in_flight: HashSet::new(),
            capacity: 2,
        };
        assert!(d.reserve("a"));
        assert!(!d.reserve("a"), "in flight");
        d.finish("a", true);
        assert!(!d.reserve("a"), "seen");
        for k in ["b", "c"] {
            assert!(d.reserve(k));
            d.finish(k, true);
        }
        assert_eq!(d.seen.len(), 2);
        assert!(d.reserve("a"), "a was forgotten");
        d.finish("a", false);
        assert!(d.reserve("a"), "not remembered after a failure");
    }
}
