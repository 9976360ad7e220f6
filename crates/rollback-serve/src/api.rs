//! The HTTP surface: the operator API for bots, `/metrics`, the health
//! endpoints, the OpenAPI description, and the mounted Alertmanager
//! receiver. [`ROUTES`] lists every route; `openapi.yaml` describes the
//! same ones (a test checks that they agree).
//!
//! Target ids hold `/` and `:` (`k8s:shop/checkout`): in a path they are
//! one percent-encoded segment, `/api/v1/targets/k8s%3Ashop%2Fcheckout`.
//! Every answer of the API is JSON; an error is `{"error": "..."}` saying
//! what to do.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rollback_core::supervisor::Noticed;
use rollback_core::{Actor, Command, ErrorKind, TargetId};
use serde::Serialize;
use serde_json::json;

use crate::chunked::{self, Pace};
use crate::config::UNAUTHENTICATED;
use crate::metrics::{OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE};
use crate::server::{READY, STOPPING, Shared};

/// The OpenAPI description of [`ROUTES`], served at `/openapi.yaml`.
pub const OPENAPI_YAML: &str = include_str!("../openapi.yaml");

/// Every route the server answers: method and path, `{target}` standing
/// for a percent-encoded target id. The receiver's route answers only when
/// `serve.alertmanager` is configured.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.yaml"),
    ("get", "/api/v1/targets"),
    ("get", "/api/v1/targets/{target}"),
    ("get", "/api/v1/targets/{target}/timeline"),
    ("post", "/api/v1/targets/{target}/pause"),
    ("post", "/api/v1/targets/{target}/resume"),
    ("post", "/api/v1/targets/{target}/approve"),
    ("post", "/api/v1/targets/{target}/rollback"),
    ("post", "/api/v1/targets/{target}/promote"),
    ("post", "/webhook/alertmanager"),
];

/// The largest request body the operator API reads.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// The records a timeline shows when the request names no `limit`.
const DEFAULT_TIMELINE: usize = 50;

/// Percent-encode a path segment: everything but `A-Z a-z 0-9 - . _ ~`.
pub(crate) fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An answer of the API that is not a success.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(json!({"error": self.message}))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"rollback\""),
            );
        }
        r
    }
}

type Answer = Result<Response, ApiError>;

fn json_response(status: StatusCode, body: impl IntoResponse) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// The router of every route, with the receiver's merged in when given.
pub(crate) fn router(
    shared: Arc<Shared>,
    receiver: Option<&rollback_prometheus::AlertmanagerReceiver>,
) -> Router {
    let command = |c: fn(Option<Bytes>) -> Result<Command, ApiError>| {
        move |state: State<Arc<Shared>>, headers: HeaderMap, target: Path<String>, body: Bytes| async move {
            give(state, headers, target, c(Some(body))).await
        }
    };
    let api = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.yaml", get(openapi))
        .route("/api/v1/targets", get(list))
        .route("/api/v1/targets/{target}", get(one))
        .route("/api/v1/targets/{target}/timeline", get(timeline))
        .route(
            "/api/v1/targets/{target}/pause",
            post(command(|_| Ok(Command::Pause))),
        )
        .route(
            "/api/v1/targets/{target}/resume",
            post(command(|_| Ok(Command::Resume))),
        )
        .route(
            "/api/v1/targets/{target}/approve",
            post(command(|_| Ok(Command::Approve))),
        )
        .route(
            "/api/v1/targets/{target}/promote",
            post(command(|_| Ok(Command::Promote))),
        )
        .route(
            "/api/v1/targets/{target}/rollback",
            post(command(rollback_body)),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(shared);
    match receiver {
        Some(r) => api.merge(r.router()),
        None => api,
    }
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such route; GET /openapi.yaml describes the API",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "this route does not take that method; GET /openapi.yaml describes the API",
    )
}

async fn healthz() -> Response {
    json_response(StatusCode::OK, json!({"status": "ok"}).to_string())
}

async fn readyz(State(s): State<Arc<Shared>>) -> Response {
    match s.state.load(Ordering::SeqCst) {
        READY => json_response(
            StatusCode::OK,
            json!({"status": "ready", "targets": s.target_count()}).to_string(),
        ),
        STOPPING => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "stopping"}).to_string(),
        ),
        _ => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "starting"}).to_string(),
        ),
    }
}

async fn metrics(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let body = chunked::body(Pace::Writer, move |out| {
        s.metrics.encode_to(out, openmetrics)
    });
    let content_type = if openmetrics {
        OPENMETRICS_CONTENT_TYPE
    } else {
        TEXT_CONTENT_TYPE
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

async fn openapi() -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/yaml"),
        )],
        OPENAPI_YAML,
    )
        .into_response()
}

/// The actor of an API request, or a 401.
fn actor(s: &Shared, headers: &HeaderMap) -> Result<Actor, ApiError> {
    s.operators
        .actor(headers)
        .map_err(|why| ApiError::new(StatusCode::UNAUTHORIZED, why.0))
}

/// What the API shows of one target.
#[derive(Debug, Serialize)]
struct TargetView {
    target: TargetId,
    url: String,
    /// The revision whose watch the supervisor last started or resumed.
    revision: Option<String>,
    phase: Option<rollback_core::Phase>,
    last_decision: Option<crate::observer::LastDecision>,
    supervision: Supervision,
}

/// What the supervisor's last look at a target found.
#[derive(Debug, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Supervision {
    Starting,
    Watching {
        revision: rollback_core::RevisionId,
    },
    Failed {
        error: String,
    },
    /// Another replica leads the target's shard (leader election): this
    /// one shows no phase; the leader's API does.
    Following {
        shard: usize,
        /// The shard's leader, as last seen (none: no replica holds it).
        leader: Option<String>,
    },
}

fn supervision(n: Option<&Noticed>) -> Supervision {
    match n {
        Some(Noticed::Watching(r)) => Supervision::Watching {
            revision: r.clone(),
        },
        Some(Noticed::Failed(e)) => Supervision::Failed { error: e.clone() },
        _ => Supervision::Starting,
    }
}

/// One target's view: its phase, last decision and the supervisor's last
/// look, each read alone (no copy of every target's).
fn view(s: &Shared, id: TargetId, url: String) -> TargetView {
    let n = s.noticed_of(&id);
    let following = s.leadership.as_ref().and_then(|l| {
        let shard = l.shard_of(&id);
        (!l.leads(shard)).then(|| Supervision::Following {
            shard,
            leader: l.leader_of(shard),
        })
    });
    TargetView {
        revision: match &n {
            Some(Noticed::Watching(r)) => Some(r.to_string()),
            _ => None,
        },
        phase: s.engine.phase(&id),
        last_decision: s.observer.last_decision(&id),
        supervision: following.unwrap_or_else(|| supervision(n.as_ref())),
        url,
        target: id,
    }
}

/// `{"targets": [...]}`, sorted by id, each view written as it is built.
async fn list(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Answer {
    actor(&s, &headers)?;
    let body = chunked::body(Pace::Client, move |out| -> std::io::Result<()> {
        use std::io::Write as _;
        out.write_all(b"{\"targets\":[")?;
        for (i, (id, url)) in s.supervised().into_iter().enumerate() {
            if i > 0 {
                out.write_all(b",")?;
            }
            serde_json::to_writer(&mut *out, &view(&s, id, url))?;
        }
        out.write_all(b"]}")
    });
    Ok(json_response(StatusCode::OK, body))
}

fn unknown_target(target: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "target {target} is not supervised; GET /api/v1/targets lists the targets (an id is one percent-encoded path segment)"
        ),
    )
}

async fn one(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(target): Path<String>,
) -> Answer {
    actor(&s, &headers)?;
    let id = TargetId::new(target.clone());
    let url = s.url_of(&id).ok_or_else(|| unknown_target(&target))?;
    let view = view(&s, id, url);
    Ok(json_response(
        StatusCode::OK,
        serde_json::to_string(&view).unwrap_or_default(),
    ))
}

async fn timeline(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(target): Path<String>,
    RawQuery(query): RawQuery,
) -> Answer {
    actor(&s, &headers)?;
    let mut limit = DEFAULT_TIMELINE;
    for pair in query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=') {
            Some(("limit", v)) => {
                limit = v.parse().map_err(|_| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        format!("limit={v:?} is not a number of records"),
                    )
                })?;
            }
            _ => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("unknown query parameter {pair:?}; the timeline takes limit=N"),
                ));
            }
        }
    }
    let id = TargetId::new(target.clone());
    let records = s
        .observer
        .timeline(&id, limit)
        .ok_or_else(|| unknown_target(&target))?;
    // The records are kept as JSON: joined, not parsed again.
    let body = format!(
        "{{\"target\":{},\"records\":[{}]}}",
        serde_json::to_string(&id).unwrap_or_default(),
        records.join(",")
    );
    Ok(json_response(StatusCode::OK, body))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    #[serde(default)]
    to: Option<rollback_core::RevisionId>,
}

fn rollback_body(body: Option<Bytes>) -> Result<Command, ApiError> {
    let body = body.unwrap_or_default();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Command::Rollback { to: None });
    }
    let bad = |why: String| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "the body is empty (the policy's choice) or JSON like {{\"to\": \"REVISION\"}}: {why}"
            ),
        )
    };
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| bad(e.to_string()))?;
    if !value.is_object() {
        return Err(bad(format!("{value} is not an object")));
    }
    let b: RollbackBody = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
    Ok(Command::Rollback { to: b.to })
}

/// Give an operator command. The engine authorizes and audits it; a
/// request without a valid token is audited as `unauthenticated` (and
/// denied by the grants, which never name that actor).
async fn give(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(target): Path<String>,
    command: Result<Command, ApiError>,
) -> Answer {
    let authenticated = s.operators.actor(&headers);
    let command = match (command, &authenticated) {
        (Ok(c), _) => c,
        (Err(_), Err(why)) => return Err(ApiError::new(StatusCode::UNAUTHORIZED, why.0)),
        (Err(e), Ok(_)) => return Err(e),
    };
    let kind = command.kind();
    let id = TargetId::new(target);
    if let (Some(l), Ok(_)) = (&s.leadership, &authenticated) {
        let shard = l.shard_of(&id);
        if !l.leads(shard) {
            s.metrics.command(kind.as_str(), "rejected");
            let leader = l
                .leader_of(shard)
                .unwrap_or_else(|| "not elected yet".to_owned());
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "replica {} does not lead target {id} (shard {shard}); its leader is {leader}: give the command there",
                    l.identity
                ),
            ));
        }
    }
    let actor = match &authenticated {
        Ok(a) => a.clone(),
        Err(_) => Actor::new(UNAUTHENTICATED),
    };
    let result = s.engine.command(&id, command, actor).await;
    if let Err(why) = authenticated {
        s.metrics.command(kind.as_str(), "unauthenticated");
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, why.0));
    }
    match result {
        Ok(receipt) => {
            s.metrics.command(kind.as_str(), "accepted");
            Ok(json_response(
                StatusCode::OK,
                json!({"target": id, "command": kind, "phase": receipt.phase}).to_string(),
            ))
        }
        Err(e) => {
            let (status, outcome) = match e.kind() {
                ErrorKind::Unauthorized => (StatusCode::FORBIDDEN, "denied"),
                ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
                ErrorKind::InvalidInput | ErrorKind::Conflict => (StatusCode::CONFLICT, "rejected"),
                _ => (StatusCode::INTERNAL_SERVER_ERROR, "failed"),
            };
            s.metrics.command(kind.as_str(), outcome);
            Err(ApiError::new(status, e.full_message()))
        }
    }
}
