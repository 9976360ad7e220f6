//! Loopback servers that answer as Datadog's and Google Cloud Monitoring's
//! query APIs document their answers, and a few misbehaving endpoints.
//!
//! - `GET /api/v1/query?from&to&query` (Datadog v1, "Query timeseries
//!   points"): `DD-API-KEY` and `DD-APPLICATION-KEY` required (403
//!   `{"errors": ["Forbidden"]}` otherwise); `from` and `to` in Unix
//!   seconds; a series per `track` for `by{track}` queries, one series
//!   otherwise, none for a query about `version:gone`; 400 `{"errors": […]}`
//!   for a query with `bad(`.
//! - `POST /api/v2/query/scalar` (Datadog v2, "Query scalar data"): a
//!   `scalar_request` body with `from`/`to` in milliseconds; a
//!   `scalar_response` with one column.
//! - `GET /v3/projects/PROJECT/timeSeries` (Cloud Monitoring, list): bearer
//!   token required (401 in Google's error shape); `interval.startTime` and
//!   `interval.endTime` in RFC 3339; points newest first; `{"unit": "1"}`
//!   (no `timeSeries`) when the filter names `checkout-gone`.
//!
//! The error rate answered depends on the revision the query names: `v2`
//! (or `bad`) is 5 %, any other 0.2 %.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// What the last request to any route carried.
#[derive(Debug, Clone, Default)]
pub(crate) struct Seen {
    pub(crate) path: String,
    pub(crate) query: BTreeMap<String, String>,
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) body: Option<Value>,
}

#[derive(Clone, Default)]
struct Shared {
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// A server on a free loopback port, stopped on drop.
pub(crate) struct Apis {
    pub(crate) url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Apis {
    /// Every request so far.
    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The last request.
    pub(crate) fn last(&self) -> Seen {
        self.seen().pop().expect("no request reached the server")
    }
}

impl Drop for Apis {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn record(state: &Shared, uri: &Uri, headers: &HeaderMap, body: Option<Value>) -> Seen {
    let url = reqwest::Url::parse(&format!("http://loopback{uri}")).unwrap();
    let seen = Seen {
        path: url.path().to_owned(),
        query: url.query_pairs().into_owned().collect(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        body,
    };
    state.seen.lock().unwrap().push(seen.clone());
    seen
}

fn error_rate_of(text: &str) -> f64 {
    if text.contains("version:v2") || text.contains("checkout-v2") || text.contains("bad") {
        0.05
    } else {
        0.002
    }
}

fn datadog_keys(seen: &Seen) -> Option<Response> {
    let ok = seen.headers.get("dd-api-key").map(String::as_str) == Some("dd-api-key")
        && seen.headers.get("dd-application-key").map(String::as_str) == Some("dd-app-key");
    (!ok).then(|| {
        (
            StatusCode::FORBIDDEN,
            axum::Json(json!({"errors": ["Forbidden"]})),
        )
            .into_response()
    })
}

fn series(scope: &str, query: &str, from: i64, values: &[f64]) -> Value {
    let pointlist: Vec<Value> = values
        .iter()
        .enumerate()
        .map(|(i, v)| json!([((from + 60 * i as i64) * 1000) as f64, v]))
        .collect();
    json!({
        "unit": null, "query_index": 0, "aggr": "sum",
        "metric": "trace.http.request.errors", "tag_set": [scope],
        "expression": query, "scope": scope, "interval": 60,
        "length": values.len(), "start": from * 1000, "end": (from + 60 * values.len() as i64) * 1000,
        "pointlist": pointlist, "display_name": "trace.http.request.errors", "attributes": {}
    })
}

async fn datadog_v1(State(state): State<Shared>, uri: Uri, headers: HeaderMap) -> Response {
    let seen = record(&state, &uri, &headers, None);
    if let Some(refused) = datadog_keys(&seen) {
        return refused;
    }
    let (Some(from), Some(to), Some(query)) = (
        seen.query.get("from").and_then(|f| f.parse::<i64>().ok()),
        seen.query.get("to").and_then(|t| t.parse::<i64>().ok()),
        seen.query.get("query"),
    ) else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"errors": ["from, to and query are required"]})),
        )
            .into_response();
    };
    if query.contains("bad(") {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"errors": ["Error parsing query: unable to parse bad(: Rule 'scope_expr' didn't match"]})),
        )
            .into_response();
    }
    let list: Vec<Value> = if query.contains("version:gone") {
        Vec::new()
    } else if query.contains("by{track}") {
        let slow = query.contains("service:slow");
        let baseline = [
            101.0, 99.0, 104.0, 98.0, 102.0, 100.0, 103.0, 97.0, 100.5, 101.5,
        ];
        let canary: Vec<f64> = baseline
            .iter()
            .map(|v| if slow { v * 1.3 } else { v + 0.4 })
            .collect();
        vec![
            series("track:baseline", query, from, &baseline),
            series("track:canary", query, from, &canary),
        ]
    } else {
        let rate = error_rate_of(query);
        vec![series(
            "service:checkout",
            query,
            from,
            &[rate * 0.5, rate * 0.9, rate],
        )]
    };
    axum::Json(json!({
        "status": "ok", "res_type": "time_series", "resp_version": 1, "query": query,
        "from_date": from * 1000, "to_date": to * 1000, "series": list,
        "values": [], "times": [], "message": "", "group_by": []
    }))
    .into_response()
}

async fn datadog_v2_scalar(
    State(state): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Option<Value> = serde_json::from_slice(&body).ok();
    let seen = record(&state, &uri, &headers, body.clone());
    if let Some(refused) = datadog_keys(&seen) {
        return refused;
    }
    let attributes = body.as_ref().and_then(|b| b.pointer("/data/attributes"));
    let valid = body.as_ref().and_then(|b| b.pointer("/data/type"))
        == Some(&json!("scalar_request"))
        && attributes
            .and_then(|a| a.get("from"))
            .is_some_and(Value::is_i64)
        && attributes
            .and_then(|a| a.get("to"))
            .is_some_and(Value::is_i64);
    let query = attributes
        .and_then(|a| a.pointer("/queries/0/query"))
        .and_then(Value::as_str);
    let (true, Some(query)) = (valid, query) else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"errors": ["invalid scalar_request: data.type, attributes.from/to (ms) and queries are required"]})),
        )
            .into_response();
    };
    let p99 = if query.contains("version:v2") {
        0.41
    } else {
        0.12
    };
    axum::Json(json!({"data": {"type": "scalar_response", "attributes": {"columns": [
        {"name": "a", "values": [p99], "type": "number", "meta": {"unit": [{"family": "time", "name": "second", "plural": "seconds", "scale_factor": 1.0, "short_name": "s"}, null]}}
    ]}}}))
    .into_response()
}

async fn cloud_monitoring(State(state): State<Shared>, uri: Uri, headers: HeaderMap) -> Response {
    let seen = record(&state, &uri, &headers, None);
    if seen.headers.get("authorization").map(String::as_str) != Some("Bearer gcp-token") {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": {"code": 401, "message": "Request had invalid authentication credentials. Expected OAuth 2 access token.", "status": "UNAUTHENTICATED"}})),
        )
            .into_response();
    }
    let times = (
        seen.query
            .get("interval.startTime")
            .and_then(|t| rollback_core::Timestamp::parse(t)),
        seen.query
            .get("interval.endTime")
            .and_then(|t| rollback_core::Timestamp::parse(t)),
    );
    let (Some(filter), (Some(_), Some(end))) = (seen.query.get("filter"), times) else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": {"code": 400, "message": "Field filter and interval are required", "status": "INVALID_ARGUMENT"}})),
        )
            .into_response();
    };
    if filter.contains("checkout-gone") {
        return axum::Json(json!({"unit": "1"})).into_response();
    }
    let rate = error_rate_of(filter) * 10.0;
    // Newest first, one point a minute.
    let points: Vec<Value> = (0..3)
        .map(|i| {
            let e = end.minus(Duration::from_secs(60 * i));
            let s = e.minus(Duration::from_secs(60));
            json!({"interval": {"startTime": s.to_string(), "endTime": e.to_string()}, "value": {"doubleValue": rate * (1.0 - 0.1 * i as f64)}})
        })
        .collect();
    axum::Json(json!({"timeSeries": [{
        "metric": {"type": "loadbalancing.googleapis.com/https/request_count", "labels": {"response_code_class": "500"}},
        "resource": {"type": "https_lb_rule", "labels": {"backend_target_name": "checkout"}},
        "metricKind": "DELTA", "valueType": "DOUBLE", "points": points
    }], "unit": "1"}))
    .into_response()
}

/// Start the APIs on a free loopback port.
pub(crate) async fn start() -> Apis {
    let state = Shared::default();
    let app = Router::new()
        .route("/api/v1/query", get(datadog_v1))
        .route("/api/v2/query/scalar", post(datadog_v2_scalar))
        .route("/v3/projects/{project}/timeSeries", get(cloud_monitoring))
        .route(
            "/html",
            get(|| async {
                (
                    [("content-type", "text/html")],
                    "<html><body>Sign in</body></html>",
                )
            }),
        )
        .route("/json/{name}", get(fixed))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                axum::Json(json!({"value": 1}))
            }),
        )
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("cannot bind a loopback port for the test APIs");
    let addr: SocketAddr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .expect("the test APIs stopped with an error");
    });
    Apis {
        url: format!("http://{addr}"),
        seen: state.seen,
        stop: Some(stop),
    }
}

/// Fixed answers for the bad-input tests.
async fn fixed(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    let body = match name.as_str() {
        "several" => json!({"values": [1.0, 2.0, 4.0]}),
        "nan" => json!({"value": "NaN"}),
        "null" => json!({"value": null}),
        "string" => json!({"value": "high"}),
        "object" => json!({"value": {"p99": 0.2}}),
        "bool" => json!({"ok": true}),
        "number" => json!(0.25),
        "empty" => json!({"values": []}),
        _ => return (StatusCode::NOT_FOUND, "no such fixture").into_response(),
    };
    axum::Json(body).into_response()
}
