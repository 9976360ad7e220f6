//! Bounded fuzzing of the Alertmanager receiver through its public surface,
//! as a plain test: mutated webhook bodies (see rollback-core's
//! `tests/fuzz/mutate.rs`) go to [`AlertmanagerReceiver::router`] as
//! requests, without a socket, so each passes the receiver's header checks,
//! body limit, UTF-8 and JSON checks and payload validation, and what
//! passes reaches a sink that records every trigger.
//!
//! Each input fails the test on a panic, on taking longer than
//! `mutate::MAX_TIME`, or on an answer other than the one a model of the
//! documented checks expects:
//! - every answer is JSON: `{"error": "…"}` with 400, 401, 413, 415 or 422,
//!   or `{"status": "ok", "alerts": {…}}` with 200; nothing else;
//! - the status is the one the headers and body call for (most requests
//!   carry good headers, the others one fault each), and a 200 only for a
//!   body that is a version-4 payload of valid alerts;
//! - a 200 counts the alerts as the model routes and deduplicates them, and
//!   the sink got exactly the triggers counted; a refusal triggers nothing;
//! - no alert key reaches the sink twice, across the whole run.
//!
//! `ROLLBACK_FUZZ_ITERATIONS=1000000 cargo nextest run -p rollback-prometheus
//! --test fuzz` runs longer; `ROLLBACK_FUZZ_SEED=…` explores elsewhere or
//! reproduces a failure.

#[path = "../../rollback-core/tests/fuzz/mutate.rs"]
mod mutate;
mod support;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::handler::Handler;
use axum::http::{HeaderValue, Request, StatusCode, header};
use rollback_core::{Timestamp, TriggerSink};
use rollback_prometheus::{AlertmanagerReceiver, ReceiverStats, WEBHOOK_PATH};
use serde_json::{Value, json};
use support::{RecordingSink, TestAlert, webhook_payload};

/// Inputs by default. Measured on the 2-core machine in the test profile,
/// an input (the request, the answer and the model reading the body again)
/// takes 140 to 270 µs, with other builds running; 20,000 take 3 to 5 s.
const ITERATIONS: u64 = 20_000;

const TOKEN: &str = "s3cret-token";

/// Smaller than the mutator's longest input, so that some bodies are 413.
const MAX_BODY: usize = 32 * 1024;

/// The receiver under test: a route with a matcher and one that takes
/// every alert, both rendering labels into the target (the model in
/// [`route`] routes the same way).
fn receiver(sink: Arc<RecordingSink>) -> AlertmanagerReceiver {
    AlertmanagerReceiver::builder(sink as Arc<dyn TriggerSink>)
        .bearer_token(TOKEN)
        .route(&[r#"severity="page""#], "k8s:{namespace}/{deployment}")
        .route::<&str>(&[], "svc:{service}")
        .max_body_bytes(MAX_BODY)
        // Every key handed over stays remembered for the whole run.
        .dedup_capacity(usize::MAX)
        .log_capacity(16)
        .build()
        .expect("the receiver builds")
}

/// Where the model sends an alert with these labels.
fn route(labels: &BTreeMap<String, String>) -> Option<String> {
    let label = |name: &str| labels.get(name).filter(|v| !v.is_empty());
    if labels.get("severity").map(String::as_str) == Some("page")
        && let (Some(ns), Some(dep)) = (label("namespace"), label("deployment"))
    {
        return Some(format!("k8s:{ns}/{dep}"));
    }
    label("service").map(|s| format!("svc:{s}"))
}

fn alert<'a>(
    status: &'a str,
    fingerprint: &'a str,
    starts_at: &'a str,
    labels: &'a [(&'a str, &'a str)],
) -> TestAlert<'a> {
    TestAlert {
        status,
        fingerprint,
        starts_at,
        labels,
    }
}

/// Payloads as Alertmanager writes them: one alert and several, firing and
/// resolved, routed by either route and by none, a repeat inside one
/// payload, nanoseconds and an offset in `startsAt`, text outside ASCII.
fn seeds() -> Vec<Vec<u8>> {
    let page = [
        ("alertname", "HighErrorRate"),
        ("namespace", "shop"),
        ("deployment", "checkout"),
        ("severity", "page"),
    ];
    let service = [
        ("alertname", "Latency"),
        ("service", "paiement-été"),
        ("severity", "ticket"),
    ];
    let nowhere = [("alertname", "Watchdog"), ("severity", "page")];
    let payloads = [
        webhook_payload(&[alert("firing", "a1b2c3", "2026-11-27T12:00:00Z", &page)]),
        webhook_payload(&[
            alert(
                "firing",
                "d4e5f6",
                "2026-11-27T12:00:00.123456789Z",
                &service,
            ),
            alert("resolved", "a1b2c3", "2026-11-27T11:00:00Z", &page),
            alert("firing", "0f0f0f", "2026-11-27T13:00:00+01:00", &nowhere),
            alert(
                "firing",
                "d4e5f6",
                "2026-11-27T12:00:00.123456789Z",
                &service,
            ),
        ]),
        webhook_payload(&[alert(
            "resolved",
            "d4e5f6",
            "2026-11-27T10:00:00Z",
            &service,
        )]),
        webhook_payload(&[]),
    ];
    let mut seeds: Vec<Vec<u8>> = payloads
        .iter()
        .map(|p| p.to_string().into_bytes())
        .collect();
    // Pretty-printed, as a person would write one to test with.
    seeds.push(serde_json::to_vec_pretty(&payloads[0]).expect("a payload serializes"));
    // Truncated alerts, and the group fields Alertmanager fills in.
    let mut truncated = payloads[0].clone();
    truncated["truncatedAlerts"] = json!(3);
    truncated["commonLabels"] = json!({"alertname": "HighErrorRate", "severity": "page"});
    seeds.push(truncated.to_string().into_bytes());
    seeds
}

/// Syntax of JSON and of the payload: keys, values, escapes.
const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"\"",
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b"\\n",
    b"\xef\xbb\xbf",
    b"null",
    b"true",
    b"-1",
    b"1e400",
    b"18446744073709551616",
    b"\"version\":\"4\"",
    b"\"alerts\":[",
    b"\"status\":\"firing\"",
    b"\"status\":\"resolved\"",
    b"\"fingerprint\":\"",
    b"\"startsAt\":\"",
    b"2026-11-27T12:00:00Z",
    b"1795780800",
    b"\"labels\":{",
    b"\"severity\":\"page\"",
    b"\"service\":\"",
    b"\"truncatedAlerts\":",
];

// ---------------------------------------------------------------------------
// The model of the payload checks

/// A JSON value that keeps every key of an object, repeats included (a
/// repeated field is an error for a struct, the last value for a map).
#[derive(Debug)]
enum Json {
    Null,
    Bool,
    U64,
    I64(i64),
    F64,
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl<'de> serde::Deserialize<'de> for Json {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Json;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Json, E> {
                Ok(Json::Bool)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Json, E> {
                Ok(Json::U64)
            }
            fn visit_i64<E>(self, n: i64) -> Result<Json, E> {
                Ok(Json::I64(n))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Json, E> {
                Ok(Json::F64)
            }
            fn visit_str<E>(self, s: &str) -> Result<Json, E> {
                Ok(Json::Str(s.to_owned()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Json, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = a.next_element()? {
                    items.push(item);
                }
                Ok(Json::Array(items))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Json, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = a.next_entry()? {
                    entries.push(entry);
                }
                Ok(Json::Object(entries))
            }
        }
        d.deserialize_any(V)
    }
}

/// The fields of a struct named `names`, as serde reads one: from an
/// object (other keys ignored, a repeated field refused) or from an array
/// of exactly one element per field (serde's sequence form of a struct,
/// which the receiver accepts too). `None`: not this struct.
fn fields<'a>(j: &'a Json, names: &[&str]) -> Option<Vec<Option<&'a Json>>> {
    match j {
        Json::Object(entries) => {
            let mut found = vec![None; names.len()];
            for (key, value) in entries {
                if let Some(i) = names.iter().position(|n| n == key) {
                    if found[i].is_some() {
                        return None;
                    }
                    found[i] = Some(value);
                }
            }
            Some(found)
        }
        // Both structs end with a field without a default: shorter arrays
        // miss it, longer ones have an element too many.
        Json::Array(items) if items.len() == names.len() => Some(items.iter().map(Some).collect()),
        _ => None,
    }
}

/// A string field: `Err` if it holds something else, `Ok(None)` if missing.
fn string(j: Option<&Json>) -> Result<Option<&str>, ()> {
    match j {
        None => Ok(None),
        Some(Json::Str(s)) => Ok(Some(s)),
        Some(_) => Err(()),
    }
}

/// A map of strings (missing: empty; a repeated key: its last value).
fn strings(j: Option<&Json>) -> Result<BTreeMap<String, String>, ()> {
    let Some(j) = j else {
        return Ok(BTreeMap::new());
    };
    let Json::Object(entries) = j else {
        return Err(());
    };
    entries
        .iter()
        .map(|(k, v)| match v {
            Json::Str(s) => Ok((k.clone(), s.clone())),
            _ => Err(()),
        })
        .collect()
}

/// One alert as the model keeps it.
#[derive(Debug)]
struct ModelAlert {
    firing: bool,
    labels: BTreeMap<String, String>,
    key: String,
}

/// An alert, if it is one the receiver takes.
fn model_alert(j: &Json) -> Option<ModelAlert> {
    let f = fields(
        j,
        &["status", "labels", "annotations", "startsAt", "fingerprint"],
    )?;
    let status = string(f[0]).ok()??;
    let labels = strings(f[1]).ok()?;
    strings(f[2]).ok()?;
    let starts_at = string(f[3]).ok()??;
    let fingerprint = string(f[4]).ok()??;
    let valid = matches!(status, "firing" | "resolved")
        && !fingerprint.trim().is_empty()
        && !fingerprint.chars().any(char::is_control)
        && Timestamp::parse(starts_at).is_some();
    valid.then(|| ModelAlert {
        firing: status == "firing",
        labels,
        key: format!("{fingerprint}@{}", starts_at.trim()),
    })
}

/// The alerts of a payload, if it is a version-4 payload of valid alerts.
fn model_payload(j: &Json) -> Option<Vec<ModelAlert>> {
    let f = fields(
        j,
        &[
            "version",
            "groupKey",
            "truncatedAlerts",
            "receiver",
            "alerts",
        ],
    )?;
    if string(f[0]).ok()?? != "4" {
        return None;
    }
    string(f[1]).ok()?;
    match f[2] {
        None | Some(Json::U64) => {}
        Some(Json::I64(n)) if *n >= 0 => {}
        Some(_) => return None,
    }
    string(f[3]).ok()?;
    let Some(Json::Array(alerts)) = f[4] else {
        return None;
    };
    alerts.iter().map(model_alert).collect()
}

/// What the receiver must answer a body with good headers.
#[derive(Debug)]
enum Expected {
    /// 200, for these alerts.
    Accepted(Vec<ModelAlert>),
    /// Refused with this status.
    Refused(u16),
    /// Valid JSON the model cannot read in full (nested deeper than
    /// serde_json's limit of 128, or a number out of range, in a field the
    /// receiver skips): 200 or 422.
    Unknown,
}

fn expected(body: &[u8]) -> Expected {
    if body.len() > MAX_BODY {
        return Expected::Refused(413);
    }
    if std::str::from_utf8(body).is_err()
        || serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err()
    {
        return Expected::Refused(400);
    }
    match serde_json::from_slice::<Json>(body) {
        Ok(j) => model_payload(&j).map_or(Expected::Refused(422), Expected::Accepted),
        Err(_) => Expected::Unknown,
    }
}

// ---------------------------------------------------------------------------
// Requests

/// The headers of one request: mostly right, else with one fault.
#[derive(Debug, Clone, Copy)]
enum Headers {
    Good,
    /// Also good: the scheme in lower case, a charset parameter.
    GoodVariant,
    NoAuthorization,
    WrongToken,
    NotBearer,
    TwoAuthorizations,
    NoContentType,
    TextPlain,
    ContentTypeNotAscii,
}

impl Headers {
    /// The headers of the `n`th input: 13 of every 20 good.
    fn nth(n: u64) -> Self {
        match n % 20 {
            0..=9 => Headers::Good,
            10 | 11 => Headers::GoodVariant,
            12 => Headers::NoAuthorization,
            13 => Headers::WrongToken,
            14 => Headers::NotBearer,
            15 => Headers::TwoAuthorizations,
            16 => Headers::NoContentType,
            17 => Headers::TextPlain,
            18 => Headers::ContentTypeNotAscii,
            _ => Headers::Good,
        }
    }

    /// The status these headers call for before the body counts.
    fn refusal(self) -> Option<u16> {
        match self {
            Headers::Good | Headers::GoodVariant => None,
            Headers::TwoAuthorizations => Some(400),
            Headers::NoAuthorization | Headers::WrongToken | Headers::NotBearer => Some(401),
            Headers::NoContentType | Headers::TextPlain | Headers::ContentTypeNotAscii => Some(415),
        }
    }

    fn request(self, body: &[u8]) -> Request<Body> {
        let bearer = format!("Bearer {TOKEN}");
        let mut r = Request::builder().method("POST").uri(WEBHOOK_PATH);
        r = match self {
            Headers::NoAuthorization => r,
            Headers::GoodVariant => r.header(header::AUTHORIZATION, format!("bearer  {TOKEN} ")),
            Headers::WrongToken => r.header(header::AUTHORIZATION, "Bearer s3cret-toke"),
            Headers::NotBearer => r.header(header::AUTHORIZATION, "Basic czNjcmV0LXRva2Vu"),
            Headers::TwoAuthorizations => r
                .header(header::AUTHORIZATION, &bearer)
                .header(header::AUTHORIZATION, &bearer),
            _ => r.header(header::AUTHORIZATION, &bearer),
        };
        r = match self {
            Headers::NoContentType => r,
            Headers::GoodVariant => {
                r.header(header::CONTENT_TYPE, "Application/JSON; charset=utf-8")
            }
            Headers::TextPlain => r.header(header::CONTENT_TYPE, "text/plain"),
            Headers::ContentTypeNotAscii => r.header(
                header::CONTENT_TYPE,
                HeaderValue::from_bytes(b"application/j\xc3\xa9son").expect("a header value"),
            ),
            _ => r.header(header::CONTENT_TYPE, "application/json"),
        };
        r.body(Body::from(body.to_vec())).expect("a request")
    }
}

/// What the run saw, for its summary.
static STATUSES: [AtomicU64; 6] = [const { AtomicU64::new(0) }; 6];
const STATUS_CODES: [u16; 6] = [200, 400, 401, 413, 415, 422];
static UNKNOWN: AtomicU64 = AtomicU64::new(0);
static TRIGGERED: AtomicU64 = AtomicU64::new(0);
static DUPLICATES: AtomicU64 = AtomicU64::new(0);

fn statuses() -> String {
    STATUS_CODES
        .iter()
        .zip(&STATUSES)
        .map(|(code, n)| format!("{code}: {}", n.load(Ordering::Relaxed)))
        .collect::<Vec<_>>()
        .join(", ")
}

struct Webhook {
    rt: tokio::runtime::Runtime,
    receiver: AlertmanagerReceiver,
    endpoint: axum::routing::MethodRouter,
    sink: Arc<RecordingSink>,
    /// Targets and keys handed to the sink so far.
    triggered: std::sync::Mutex<HashSet<(String, String)>>,
    inputs: AtomicU64,
}

impl Webhook {
    fn new() -> Self {
        let sink = RecordingSink::new();
        let receiver = receiver(sink.clone());
        Webhook {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime"),
            endpoint: axum::routing::any_service(receiver.router()),
            receiver,
            sink,
            triggered: std::sync::Mutex::default(),
            inputs: AtomicU64::new(0),
        }
    }

    /// Send `body` and answer the status and the JSON body.
    fn post(&self, headers: Headers, body: &[u8]) -> (u16, Value) {
        let response = self.rt.block_on(Handler::call(
            self.endpoint.clone(),
            headers.request(body),
            (),
        ));
        let status = response.status();
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        let www = response.headers().get(header::WWW_AUTHENTICATE).cloned();
        let bytes = self
            .rt
            .block_on(axum::body::to_bytes(response.into_body(), usize::MAX))
            .expect("the answer's body");
        let body: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "answer {status} is not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        assert_eq!(
            content_type.as_ref().map(|v| v.as_bytes()),
            Some(&b"application/json"[..]),
            "answer {status}: {body}"
        );
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(
                www.as_ref().map(|v| v.as_bytes()),
                Some(&b"Bearer realm=\"rollback\""[..])
            );
        }
        (status.as_u16(), body)
    }

    fn check(&self, input: &[u8]) {
        let headers = Headers::nth(self.inputs.fetch_add(1, Ordering::Relaxed));
        let stats_before = self.receiver.stats();
        let calls_before = self.sink.calls.lock().expect("calls").len();
        let (status, body) = self.post(headers, input);
        let i = STATUS_CODES
            .iter()
            .position(|c| *c == status)
            .unwrap_or_else(|| panic!("status {status} is none the receiver documents: {body}"));
        STATUSES[i].fetch_add(1, Ordering::Relaxed);

        // What reached the sink: never a key twice.
        let calls: Vec<(String, String)> = self.sink.calls.lock().expect("calls")[calls_before..]
            .iter()
            .map(|(target, trigger, _)| (target.as_str().to_owned(), trigger.key.clone()))
            .collect();
        let mut triggered = self.triggered.lock().expect("triggered");
        let seen_before = triggered.clone();
        for call in &calls {
            assert!(
                triggered.insert(call.clone()),
                "{call:?} reached the sink twice"
            );
        }
        TRIGGERED.fetch_add(calls.len() as u64, Ordering::Relaxed);

        let stats = self.receiver.stats();
        if status == 200 {
            assert_eq!(body["status"], "ok", "{body}");
            assert_eq!(stats.requests, stats_before.requests + 1);
            assert_eq!(stats.rejected, stats_before.rejected);
        } else {
            let error = body["error"].as_str().unwrap_or_default();
            assert!(!error.is_empty(), "{status} without an error: {body}");
            assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{body}");
            assert!(calls.is_empty(), "{status} triggered {calls:?}");
            assert_eq!(
                stats,
                ReceiverStats {
                    rejected: stats_before.rejected + 1,
                    ..stats_before
                }
            );
        }

        let want = match headers.refusal() {
            Some(refusal) => Expected::Refused(refusal),
            None => expected(input),
        };
        match want {
            Expected::Refused(want) => assert_eq!(status, want, "{body}"),
            Expected::Unknown => {
                UNKNOWN.fetch_add(1, Ordering::Relaxed);
                assert!(matches!(status, 200 | 422), "{status}: {body}");
            }
            Expected::Accepted(alerts) => {
                assert_eq!(status, 200, "a valid payload: {body}");
                let (summary, want_calls) = summarize(&alerts, &seen_before);
                assert_eq!(body["alerts"], summary, "the alerts counted");
                assert_eq!(calls, want_calls, "the triggers handed to the sink");
            }
        }
    }
}

/// The counts of a 200 for these alerts, and the triggers they hand over,
/// given the keys handed over before.
fn summarize(
    alerts: &[ModelAlert],
    seen: &HashSet<(String, String)>,
) -> (Value, Vec<(String, String)>) {
    let mut seen = seen.clone();
    let (mut firing, mut resolved, mut unrouted, mut duplicates) = (0, 0, 0, 0);
    let mut calls = Vec::new();
    for a in alerts {
        if !a.firing {
            resolved += 1;
            continue;
        }
        firing += 1;
        match route(&a.labels) {
            None => unrouted += 1,
            Some(target) => {
                let call = (target, a.key.clone());
                if seen.insert(call.clone()) {
                    calls.push(call);
                } else {
                    duplicates += 1;
                }
            }
        }
    }
    DUPLICATES.fetch_add(duplicates, Ordering::Relaxed);
    let summary = json!({
        "firing": firing,
        "resolved": resolved,
        "triggered": calls.len(),
        "duplicates": duplicates,
        "unrouted": unrouted,
    });
    (summary, calls)
}

#[test]
fn alertmanager_webhook() {
    let seeds = seeds();
    let seeds: Vec<&[u8]> = seeds.iter().map(Vec::as_slice).collect();
    let webhook = Webhook::new();
    let s = mutate::fuzz(
        "alertmanager webhook",
        ITERATIONS,
        &seeds,
        TOKENS,
        |input| {
            webhook.check(input);
        },
    );
    eprintln!(
        "alertmanager webhook: {s}; answers {}; {} bodies the model could not read; {} triggers, {} duplicates dropped",
        statuses(),
        UNKNOWN.load(Ordering::Relaxed),
        TRIGGERED.load(Ordering::Relaxed),
        DUPLICATES.load(Ordering::Relaxed),
    );
}
