//! The Alertmanager receiver over HTTP: authentication, request checks,
//! routing, deduplication, resolved alerts, sink failures.

mod support;

use std::sync::Arc;
use std::time::Duration;

use rollback_core::time::Clock;
use rollback_core::{TargetId, Timestamp, TriggerOutcome, TriggerSink};
use rollback_prometheus::{
    AlertOutcome, AlertStatus, AlertmanagerReceiver, ReceiverConfig, ReceiverServer, RouteConfig,
};
use serde_json::{Value, json};
use support::{RecordingSink, TestAlert, webhook_payload};

const TOKEN: &str = "s3cret-token";

fn receiver(sink: Arc<RecordingSink>) -> AlertmanagerReceiver {
    AlertmanagerReceiver::builder(sink as Arc<dyn TriggerSink>)
        .bearer_token(TOKEN)
        .route(&[r#"alertname="ModelDrift""#], "mlflow:{model}@champion")
        .route(&[r#"severity!="info""#], "k8s:{namespace}/{deployment}")
        .max_body_bytes(16 * 1024)
        .build()
        .unwrap()
}

async fn start(sink: Arc<RecordingSink>) -> (AlertmanagerReceiver, ReceiverServer) {
    let r = receiver(sink);
    let server = r.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    (r, server)
}

async fn post(
    server: &ReceiverServer,
    auth: Option<&str>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new().post(server.url()).body(body);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    if let Some(c) = content_type {
        req = req.header("content-type", c);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let www = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if status == 401 {
        assert_eq!(www.as_deref(), Some("Bearer realm=\"rollback\""));
    }
    (status, body)
}

async fn send(server: &ReceiverServer, payload: &Value) -> (u16, Value) {
    post(
        server,
        Some(&format!("Bearer {TOKEN}")),
        Some("application/json"),
        payload.to_string().into_bytes(),
    )
    .await
}

fn firing(fingerprint: &'static str, starts_at: &'static str) -> TestAlert<'static> {
    TestAlert {
        status: "firing",
        fingerprint,
        starts_at,
        labels: &[
            ("alertname", "HighErrorRate"),
            ("namespace", "shop"),
            ("deployment", "checkout"),
            ("severity", "page"),
        ],
    }
}

#[tokio::test]
async fn unauthenticated_requests_get_401_and_never_trigger() {
    let sink = RecordingSink::new();
    let (r, server) = start(sink.clone()).await;
    let body = webhook_payload(&[firing("f1", "2026-11-27T12:00:00Z")])
        .to_string()
        .into_bytes();
    let cases = [
        (None, "missing `Authorization: Bearer <token>` header"),
        (Some("Bearer wrong-token"), "invalid bearer token"),
        (Some("Bearer s3cret-toke"), "invalid bearer token"),
        (Some("Bearer s3cret-token-and-more"), "invalid bearer token"),
        (Some("Basic czNjcmV0LXRva2Vu"), "not a bearer token"),
        (Some("s3cret-token"), "not a bearer token"),
    ];
    for (auth, want) in cases {
        let (status, body) = post(&server, auth, Some("application/json"), body.clone()).await;
        assert_eq!(status, 401, "{auth:?}");
        assert!(
            body["error"].as_str().unwrap().contains(want),
            "{auth:?}: {body}"
        );
    }
    // The scheme is case-insensitive, as in RFC 7235.
    let (status, _) = post(
        &server,
        Some(&format!("bearer {TOKEN}")),
        Some("application/json"),
        body.clone(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(r.stats().rejected, 6);
    assert_eq!(sink.calls().len(), 1);
}

#[tokio::test]
async fn bad_requests_get_the_right_4xx_with_a_clear_message() {
    let sink = RecordingSink::new();
    let (r, server) = start(sink.clone()).await;
    let auth = format!("Bearer {TOKEN}");
    let good = webhook_payload(&[firing("f1", "2026-11-27T12:00:00Z")]);

    let (s, b) = post(
        &server,
        Some(&auth),
        Some("text/plain"),
        good.to_string().into_bytes(),
    )
    .await;
    assert_eq!(
        (s, b["error"].as_str().unwrap()),
        (
            415,
            "Content-Type must be application/json, got \"text/plain\""
        )
    );
    let (s, b) = post(&server, Some(&auth), None, good.to_string().into_bytes()).await;
    assert_eq!(
        (s, b["error"].as_str().unwrap()),
        (415, "Content-Type must be application/json, got none")
    );

    let mut big = good.clone();
    big["commonAnnotations"] = json!({"description": "x".repeat(20_000)});
    let (s, b) = post(
        &server,
        Some(&auth),
        Some("application/json"),
        big.to_string().into_bytes(),
    )
    .await;
    assert_eq!(s, 413);
    assert!(
        b["error"]
            .as_str()
            .unwrap()
            .contains("larger than the limit of 16384 bytes"),
        "{b}"
    );
    // Unauthenticated, a body too large is refused as unauthenticated, unread.
    let (s, _) = post(
        &server,
        Some("Bearer nope"),
        Some("application/json"),
        big.to_string().into_bytes(),
    )
    .await;
    assert_eq!(s, 401);

    let (s, b) = post(
        &server,
        Some(&auth),
        Some("application/json"),
        b"{\"version\": \"4\", ".to_vec(),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert!(
        b["error"]
            .as_str()
            .unwrap()
            .starts_with("the body is not valid JSON"),
        "{b}"
    );
    let (s, _) = post(
        &server,
        Some(&auth),
        Some("application/json"),
        b"{} trailing".to_vec(),
    )
    .await;
    assert_eq!(s, 400);

    let mut unprocessable = Vec::new();
    let mut no_alerts = good.clone();
    no_alerts.as_object_mut().unwrap().remove("alerts");
    unprocessable.push((no_alerts, "missing field `alerts`"));
    let mut v3 = good.clone();
    v3["version"] = json!("3");
    unprocessable.push((v3, "payload version \"3\" is not supported"));
    let mut no_fp = good.clone();
    no_fp["alerts"][0]
        .as_object_mut()
        .unwrap()
        .remove("fingerprint");
    unprocessable.push((no_fp, "at `alerts[0]`: missing field `fingerprint`"));
    let mut bad_type = good.clone();
    bad_type["alerts"][0]["labels"] = json!({"severity": 3});
    unprocessable.push((bad_type, "at `alerts[0].labels.severity`"));
    let bad_start = webhook_payload(&[
        firing("f1", "2026-11-27T12:00:00Z"),
        firing("f2", "yesterday"),
    ]);
    unprocessable.push((bad_start, "`alerts[1].startsAt` is \"yesterday\""));
    let mut pending = good.clone();
    pending["alerts"][0]["status"] = json!("pending");
    unprocessable.push((pending, "`alerts[0].status` is \"pending\""));
    let empty_fp = webhook_payload(&[firing(" ", "2026-11-27T12:00:00Z")]);
    unprocessable.push((empty_fp, "`alerts[0].fingerprint` is empty"));
    for (payload, want) in unprocessable {
        let (s, b) = send(&server, &payload).await;
        assert_eq!(s, 422, "{want}: {b}");
        assert!(b["error"].as_str().unwrap().contains(want), "{want}: {b}");
    }
    // A payload refused as a whole triggers nothing, not even its good alerts.
    assert!(sink.calls().is_empty());
    assert_eq!(r.stats().rejected, 13);
    assert_eq!(r.stats().requests, 0);

    let resp = reqwest::Client::new()
        .get(server.url())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 405);
}

#[tokio::test]
async fn a_firing_alert_triggers_once_however_often_it_is_repeated() {
    let sink = RecordingSink::new();
    let (r, server) = start(sink.clone()).await;
    let payload = webhook_payload(&[firing("a1b2c3", "2026-11-27T12:00:00.123456789Z")]);
    for i in 0..5 {
        let (s, b) = send(&server, &payload).await;
        assert_eq!(s, 200, "{b}");
        let want = if i == 0 { (1, 0) } else { (0, 1) };
        assert_eq!(
            (
                b["alerts"]["triggered"].as_u64().unwrap(),
                b["alerts"]["duplicates"].as_u64().unwrap()
            ),
            want
        );
    }
    let calls = sink.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].0, TargetId::new("k8s:shop/checkout"));
    assert_eq!(calls[0].1.key, "a1b2c3@2026-11-27T12:00:00.123456789Z");
    assert_eq!(
        calls[0].1.summary,
        "Alertmanager alert HighErrorRate firing since 2026-11-27T12:00:00.123456789Z: 5xx ratio above 1%"
    );
    let outcomes: Vec<AlertOutcome> = r.records().into_iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes[0],
        AlertOutcome::Triggered {
            result: TriggerOutcome::Accepted
        }
    );
    assert!(
        outcomes[1..].iter().all(|o| *o == AlertOutcome::Duplicate),
        "{outcomes:?}"
    );
    let stats = r.stats();
    assert_eq!(
        (
            stats.requests,
            stats.firing,
            stats.triggered,
            stats.duplicates
        ),
        (5, 5, 1, 4)
    );

    // The same alert firing again later (a new startsAt) is a new breach.
    send(
        &server,
        &webhook_payload(&[firing("a1b2c3", "2026-11-27T13:00:00Z")]),
    )
    .await;
    assert_eq!(sink.calls().len(), 2);
}

#[tokio::test]
async fn concurrent_duplicates_trigger_once() {
    let sink = RecordingSink::with_delay(Duration::from_millis(100));
    let (_r, server) = start(sink.clone()).await;
    let server = Arc::new(server);
    let payload = webhook_payload(&[firing("same", "2026-11-27T12:00:00Z")]);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (server, payload) = (server.clone(), payload.clone());
        tasks.push(tokio::spawn(async move { send(&server, &payload).await.0 }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(sink.calls().len(), 1);
}

#[tokio::test]
async fn resolved_alerts_are_recorded_and_never_trigger() {
    let sink = RecordingSink::new();
    let (r, server) = start(sink.clone()).await;
    let resolved = TestAlert {
        status: "resolved",
        ..firing("r1", "2026-11-27T12:00:00Z")
    };
    let (s, b) = send(&server, &webhook_payload(&[resolved])).await;
    assert_eq!(s, 200);
    assert_eq!(b["alerts"]["resolved"], 1);
    assert!(sink.calls().is_empty());
    let records = r.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].status, AlertStatus::Resolved);
    assert_eq!(records[0].outcome, AlertOutcome::Resolved);
    assert_eq!(records[0].target, Some(TargetId::new("k8s:shop/checkout")));
    assert_eq!(records[0].alertname.as_deref(), Some("HighErrorRate"));
    assert_eq!(r.stats().resolved, 1);
}

#[tokio::test]
async fn routes_map_labels_to_targets_first_match_wins() {
    let sink = RecordingSink::new();
    let (r, server) = start(sink.clone()).await;
    let alerts = [
        TestAlert {
            status: "firing",
            fingerprint: "m",
            starts_at: "2026-11-27T12:00:00Z",
            labels: &[
                ("alertname", "ModelDrift"),
                ("model", "fraud"),
                ("severity", "page"),
            ],
        },
        TestAlert {
            status: "firing",
            fingerprint: "k",
            starts_at: "2026-11-27T12:00:00Z",
            labels: &[
                ("alertname", "X"),
                ("namespace", "bank"),
                ("deployment", "payments"),
            ],
        },
        // severity=info matches no route
        TestAlert {
            status: "firing",
            fingerprint: "i",
            starts_at: "2026-11-27T12:00:00Z",
            labels: &[
                ("alertname", "X"),
                ("namespace", "a"),
                ("deployment", "b"),
                ("severity", "info"),
            ],
        },
        // matches the second route but lacks the deployment label
        TestAlert {
            status: "firing",
            fingerprint: "n",
            starts_at: "2026-11-27T12:00:00Z",
            labels: &[("alertname", "X"), ("namespace", "a")],
        },
    ];
    let (s, b) = send(&server, &webhook_payload(&alerts)).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b["alerts"],
        json!({"firing": 4, "resolved": 0, "triggered": 2, "duplicates": 0, "unrouted": 2})
    );
    let targets: Vec<String> = sink
        .calls()
        .into_iter()
        .map(|(t, _)| t.to_string())
        .collect();
    assert_eq!(targets, vec!["mlflow:fraud@champion", "k8s:bank/payments"]);
    let records = r.records();
    assert_eq!(
        records[2].outcome,
        AlertOutcome::Unrouted {
            reason: "no route matches the alert's labels".into()
        }
    );
    assert_eq!(
        records[3].outcome,
        AlertOutcome::Unrouted {
            reason: "no route applies: routes[1] needs label \"deployment\"".into()
        }
    );
}

#[tokio::test]
async fn a_failing_sink_gets_503_so_alertmanager_retries() {
    let sink = RecordingSink::new();
    sink.fail_next.store(1, std::sync::atomic::Ordering::SeqCst);
    let (r, server) = start(sink.clone()).await;
    let payload = webhook_payload(&[firing("f", "2026-11-27T12:00:00Z")]);
    let (s, b) = send(&server, &payload).await;
    assert_eq!(s, 503);
    assert!(
        b["error"]
            .as_str()
            .unwrap()
            .contains("target k8s:shop/checkout: the engine is restarting"),
        "{b}"
    );
    assert!(matches!(
        r.records()[0].outcome,
        AlertOutcome::SinkFailed { .. }
    ));
    // The retry is not a duplicate: the failed delivery was not remembered.
    let (s, _) = send(&server, &payload).await;
    assert_eq!(s, 200);
    assert_eq!(sink.calls().len(), 1);
    assert_eq!(r.stats().sink_errors, 1);
}

#[tokio::test]
async fn no_watch_is_not_remembered_so_a_repeat_reaches_a_later_watch() {
    let sink = RecordingSink::new();
    *sink.outcome.lock().unwrap() = TriggerOutcome::NoWatch;
    let (_r, server) = start(sink.clone()).await;
    let payload = webhook_payload(&[firing("f", "2026-11-27T12:00:00Z")]);
    send(&server, &payload).await;
    *sink.outcome.lock().unwrap() = TriggerOutcome::Accepted;
    send(&server, &payload).await;
    send(&server, &payload).await;
    assert_eq!(
        sink.calls().len(),
        2,
        "the NoWatch delivery, then one accepted"
    );
}

#[tokio::test]
async fn the_dedup_memory_is_bounded() {
    let sink = RecordingSink::new();
    let r = AlertmanagerReceiver::builder(sink.clone() as Arc<dyn TriggerSink>)
        .bearer_token(TOKEN)
        .route::<&str>(&[], "t")
        .dedup_capacity(2)
        .log_capacity(3)
        .build()
        .unwrap();
    let server = r.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    for fp in ["a", "b", "c", "a"] {
        send(
            &server,
            &webhook_payload(&[TestAlert {
                fingerprint: fp,
                ..firing("", "2026-11-27T12:00:00Z")
            }]),
        )
        .await;
    }
    // "a" was forgotten when "c" arrived, so it reached the sink again (which
    // is idempotent per key itself); the record log keeps the last 3.
    assert_eq!(sink.calls().len(), 4);
    assert_eq!(r.records().len(), 3);
}

#[tokio::test]
async fn the_receiver_builds_from_config_and_refuses_bad_config() {
    let sink: Arc<dyn TriggerSink> = RecordingSink::new();
    let config: ReceiverConfig = serde_json::from_value(json!({
        "bearer_token": TOKEN,
        "routes": [{"matchers": ["alertname=\"HighErrorRate\""], "target": "k8s:{namespace}/{deployment}"}],
        "max_body_bytes": 4096
    }))
    .unwrap();
    AlertmanagerReceiver::from_config(sink.clone(), &config).unwrap();

    let bad = |c: ReceiverConfig| {
        AlertmanagerReceiver::from_config(sink.clone(), &c)
            .unwrap_err()
            .to_string()
    };
    let mut c = config.clone();
    c.routes.push(RouteConfig {
        matchers: vec!["alertname=~\"High.*\"".into()],
        target: "x".into(),
    });
    assert!(bad(c).contains("`routes[1].matchers[0]`"));
    let mut c = config.clone();
    c.routes[0].target = "k8s:{namespace".into();
    assert!(bad(c).contains("`routes[0].target`"));
    let mut c = config.clone();
    c.routes.clear();
    assert!(bad(c).contains("`routes`"));
    let mut c = config.clone();
    c.bearer_token = "".into();
    assert!(bad(c).contains("`bearer_token`"));
    let e = serde_json::from_value::<ReceiverConfig>(
        json!({"bearer_token": "x", "routes": [], "max_body": 1}),
    )
    .unwrap_err();
    assert!(e.to_string().contains("unknown field `max_body`"), "{e}");
    let e = AlertmanagerReceiver::builder(sink)
        .route::<&str>(&[], "t")
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("`bearer_token`"), "{e}");
}

#[tokio::test]
async fn control_characters_in_fingerprints_are_refused_naming_the_field() {
    let sink = RecordingSink::new();
    let (r, server) = start(sink.clone()).await;
    for fingerprint in [
        "a1b2\nINFO forged",
        "a1b2\tc3",
        "a1b2\r",
        "\u{7f}a1b2",
        "a1\u{85}b2",
    ] {
        let payload = webhook_payload(&[
            firing("ok", "2026-11-27T12:00:00Z"),
            firing(fingerprint, "2026-11-27T12:00:00Z"),
        ]);
        let (s, b) = send(&server, &payload).await;
        assert_eq!(s, 422, "{fingerprint:?}: {b}");
        let error = b["error"].as_str().unwrap();
        assert!(
            error.starts_with("`alerts[1].fingerprint` is ") && error.contains("control character"),
            "{fingerprint:?}: {error}"
        );
        assert!(!error.chars().any(char::is_control), "{error:?}");
    }
    assert!(sink.calls().is_empty());
    assert_eq!(r.stats().rejected, 5);

    // A summary may hold them: the audit sinks escape what they print.
    let mut payload = webhook_payload(&[firing("a1b2", "2026-11-27T12:00:00Z")]);
    payload["alerts"][0]["annotations"]["summary"] = json!("line one\nline two");
    let (s, b) = send(&server, &payload).await;
    assert_eq!(s, 200, "{b}");
    assert!(sink.calls()[0].1.summary.ends_with(": line one\nline two"));
}

/// A clock the test sets.
#[derive(Debug)]
struct ManualClock(std::sync::Mutex<Timestamp>);

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap()
    }
}

#[tokio::test]
async fn records_take_their_time_from_the_injected_clock() {
    let sink = RecordingSink::new();
    let start = Timestamp::parse("2020-02-29T08:00:00Z").unwrap();
    let clock = Arc::new(ManualClock(std::sync::Mutex::new(start)));
    let r = AlertmanagerReceiver::builder(sink.clone() as Arc<dyn TriggerSink>)
        .bearer_token(TOKEN)
        .route(&[r#"severity!="info""#], "k8s:{namespace}/{deployment}")
        .clock(clock.clone())
        .build()
        .unwrap();
    let server = r.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let payload = webhook_payload(&[firing("a1b2", "2026-11-27T12:00:00Z")]);
    send(&server, &payload).await;
    // A day later on the engine's clock, however little time really passed.
    *clock.0.lock().unwrap() = start.plus(Duration::from_secs(86_400));
    send(&server, &payload).await;
    let records = r.records();
    assert_eq!(
        records
            .iter()
            .map(|r| (r.received_at, r.outcome.clone()))
            .collect::<Vec<_>>(),
        vec![
            (
                start,
                AlertOutcome::Triggered {
                    result: TriggerOutcome::Accepted
                }
            ),
            (
                Timestamp::parse("2020-03-01T08:00:00Z").unwrap(),
                AlertOutcome::Duplicate
            ),
        ]
    );
}

/// Every field value of every event, as a subscriber that prints values as
/// they are would see them.
#[derive(Default)]
struct CapturedLogs(std::sync::Mutex<Vec<String>>);

struct CaptureSubscriber(Arc<CapturedLogs>);

struct FieldValues<'a>(&'a mut Vec<String>);

impl tracing::field::Visit for FieldValues<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.push(format!("{}={value}", field.name()));
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push(format!("{}={value:?}", field.name()));
    }
}

impl tracing::Subscriber for CaptureSubscriber {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut values = self.0.0.lock().unwrap();
        span.record(&mut FieldValues(&mut values));
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, record: &tracing::span::Record<'_>) {
        record.record(&mut FieldValues(&mut self.0.0.lock().unwrap()));
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        event.record(&mut FieldValues(&mut self.0.0.lock().unwrap()));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test]
async fn the_receiver_logs_no_raw_control_characters() {
    let logs = Arc::new(CapturedLogs::default());
    // The runtime of a #[tokio::test] runs the server's tasks on this thread.
    let _guard = tracing::subscriber::set_default(CaptureSubscriber(logs.clone()));
    let sink = RecordingSink::new();
    sink.fail_next.store(1, std::sync::atomic::Ordering::SeqCst);
    let (_r, server) = start(sink.clone()).await;
    let labels = [
        ("alertname", "High\nErrorRate"),
        ("namespace", "shop\r"),
        ("deployment", "check\u{1b}[2Kout"),
        ("severity", "page"),
    ];
    let alert = |status| TestAlert {
        status,
        fingerprint: "a1b2",
        starts_at: "2026-11-27T12:00:00Z\n",
        labels: &labels,
    };
    let unrouted = TestAlert {
        labels: &[("alertname", "No\nRoute"), ("severity", "page")],
        ..alert("firing")
    };
    let mut payload = webhook_payload(&[alert("firing"), alert("resolved"), unrouted]);
    payload["receiver"] = json!("rollback\n");
    payload["groupKey"] = json!("{}:{alertname=\"High\nErrorRate\"}");
    payload["truncatedAlerts"] = json!(2);
    // The sink fails once (logged with the target), then accepts; the third
    // delivery is a duplicate (logged with the key).
    for want in [503, 200, 200] {
        let (s, b) = send(&server, &payload).await;
        assert_eq!(s, want, "{b}");
    }
    let (s, _) = post(
        &server,
        Some(&format!("Bearer {TOKEN}")),
        Some("text/plain\t"),
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(s, 415);
    assert_eq!(sink.calls().len(), 1);
    // What the sink got is the alert as it is; only the logs are escaped.
    assert_eq!(sink.calls()[0].0.as_str(), "k8s:shop\r/check\u{1b}[2Kout");

    let logs = logs.0.lock().unwrap();
    let joined = logs.join("\n");
    for needle in [
        "High\\nErrorRate",
        "shop\\r",
        "check\\u{1b}[2Kout",
        "rollback\\n",
    ] {
        assert!(joined.contains(needle), "{needle} not logged:\n{joined}");
    }
    for value in logs.iter() {
        assert!(!value.chars().any(char::is_control), "{value:?}");
    }
}

#[tokio::test]
async fn a_body_that_is_not_utf8_is_not_json_400() {
    let sink = RecordingSink::new();
    let (r, server) = start(sink.clone()).await;
    let body = webhook_payload(&[firing("FINGERPRINT", "2026-11-27T12:00:00Z")]).to_string();
    let body = body
        .replace("FINGERPRINT", "a1\u{0}b2")
        .replace("\\u0000", "\u{0}")
        .into_bytes()
        .into_iter()
        .map(|b| if b == 0 { 0xff } else { b })
        .collect::<Vec<u8>>();
    assert!(std::str::from_utf8(&body).is_err());
    let (s, b) = post(
        &server,
        Some(&format!("Bearer {TOKEN}")),
        Some("application/json"),
        body,
    )
    .await;
    assert_eq!(s, 400, "{b}");
    let error = b["error"].as_str().unwrap();
    assert!(
        error.starts_with("the body is not valid JSON: it is not UTF-8"),
        "{error}"
    );
    // Also where the payload's own fields would not look: JSON is UTF-8 throughout.
    let mut body = webhook_payload(&[firing("a1b2", "2026-11-27T12:00:00Z")])
        .to_string()
        .into_bytes();
    let at = body.len() - 1;
    body.splice(at..at, b", \"extra\": \"\xc3\x28\"".iter().copied());
    let (s, b) = post(
        &server,
        Some(&format!("Bearer {TOKEN}")),
        Some("application/json"),
        body,
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert!(sink.calls().is_empty());
    assert_eq!(r.stats().rejected, 2);
}

#[tokio::test]
async fn a_content_type_that_is_not_ascii_is_reported_as_such() {
    let sink = RecordingSink::new();
    let (_r, server) = start(sink.clone()).await;
    let body = webhook_payload(&[firing("a1b2", "2026-11-27T12:00:00Z")]).to_string();
    let resp = reqwest::Client::new()
        .post(server.url())
        .bearer_auth(TOKEN)
        .header(
            "content-type",
            reqwest::header::HeaderValue::from_bytes(b"application/j\xc3\xa9son").unwrap(),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 415);
    let b: Value = resp.json().await.unwrap();
    assert_eq!(
        b["error"].as_str().unwrap(),
        "Content-Type must be application/json; the Content-Type header is not ASCII: \"application/j\\xc3\\xa9son\"",
    );
    assert!(sink.calls().is_empty());
}

#[tokio::test]
async fn two_authorization_headers_are_refused() {
    let sink = RecordingSink::new();
    let (r, server) = start(sink.clone()).await;
    let body = webhook_payload(&[firing("a1b2", "2026-11-27T12:00:00Z")]).to_string();
    for second in [format!("Bearer {TOKEN}"), "Bearer wrong".to_owned()] {
        let resp = reqwest::Client::new()
            .post(server.url())
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("authorization", second)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400);
        let b: Value = resp.json().await.unwrap();
        assert_eq!(
            b["error"].as_str().unwrap(),
            "the request has 2 Authorization headers; send one, `Authorization: Bearer <token>`"
        );
    }
    assert!(sink.calls().is_empty());
    assert_eq!(r.stats().rejected, 2);
}

// ---------------------------------------------------------------------------
// Slow clients

/// How a raw connection ended.
#[derive(Debug, PartialEq)]
enum Ending {
    /// The server closed it without answering.
    Closed,
    /// The server answered with this status line, e.g. `HTTP/1.1 408 Request Timeout`.
    Answered(String),
    /// The client sent everything and the server never closed it.
    Held,
}

/// Wait up to `wait` for the server to answer or close; `None` if it did neither.
async fn answer_within(stream: &mut tokio::net::TcpStream, wait: Duration) -> Option<Ending> {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0; 4096];
    match tokio::time::timeout(wait, stream.read(&mut buf)).await {
        Err(_) => None,
        Ok(Ok(0)) | Ok(Err(_)) => Some(Ending::Closed),
        Ok(Ok(n)) => {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            Some(Ending::Answered(
                text.lines().next().unwrap_or("").to_owned(),
            ))
        }
    }
}

/// A request head sent one byte every 500 ms.
async fn dribble_head(addr: std::net::SocketAddr) -> Ending {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /webhook/alertmanager HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n"
    );
    for byte in head.bytes() {
        if stream.write_all(&[byte]).await.is_err() {
            return Ending::Closed;
        }
        if let Some(ending) = answer_within(&mut stream, Duration::from_millis(500)).await {
            return ending;
        }
    }
    Ending::Held
}

/// A complete request head, then 10 of the 1000 body bytes it announces.
async fn stall_body(addr: std::net::SocketAddr) -> Ending {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /webhook/alertmanager HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"version\""
    );
    if stream.write_all(request.as_bytes()).await.is_err() {
        return Ending::Closed;
    }
    answer_within(&mut stream, Duration::from_secs(60))
        .await
        .unwrap_or(Ending::Held)
}

/// A connection that never sends a byte.
async fn stay_silent(addr: std::net::SocketAddr) -> Ending {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    answer_within(&mut stream, Duration::from_secs(60))
        .await
        .unwrap_or(Ending::Held)
}

#[tokio::test]
async fn slow_clients_cannot_starve_valid_alerts() {
    const MAX_CONNECTIONS: usize = 4;
    let sink = RecordingSink::new();
    let r = AlertmanagerReceiver::builder(sink.clone() as Arc<dyn TriggerSink>)
        .bearer_token(TOKEN)
        .route(&[r#"severity!="info""#], "k8s:{namespace}/{deployment}")
        .max_connections(MAX_CONNECTIONS)
        .header_read_timeout(Duration::from_secs(1))
        .body_read_timeout(Duration::from_secs(1))
        .idle_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let server = r.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = server.local_addr();

    // Over three times as many slow clients as connections, connected first.
    let mut dribblers = Vec::new();
    let mut stallers = Vec::new();
    for _ in 0..MAX_CONNECTIONS * 3 / 2 {
        dribblers.push(tokio::spawn(dribble_head(addr)));
        stallers.push(tokio::spawn(stall_body(addr)));
    }
    let silent: Vec<_> = (0..2).map(|_| tokio::spawn(stay_silent(addr))).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A valid alert waits its turn and gets through: each slow client holds
    // a connection for about a second (the timeouts), four at a time.
    let payload = webhook_payload(&[firing("a1b2", "2026-11-27T12:00:00Z")]);
    let (s, b) = tokio::time::timeout(Duration::from_secs(30), send(&server, &payload))
        .await
        .expect("a valid alert answered while slow clients come and go");
    assert_eq!(s, 200, "{b}");
    assert_eq!(sink.calls().len(), 1);
    assert_eq!(sink.calls()[0].0.as_str(), "k8s:shop/checkout");

    // Every slow client was let go: a head that never completes (or never
    // starts) is cut off, a body that never arrives is answered 408.
    for d in dribblers.into_iter().chain(silent) {
        assert_eq!(d.await.unwrap(), Ending::Closed);
    }
    for s in stallers {
        assert_eq!(
            s.await.unwrap(),
            Ending::Answered("HTTP/1.1 408 Request Timeout".into())
        );
    }
    assert_eq!(r.stats().rejected, (MAX_CONNECTIONS * 3 / 2) as u64);
    assert_eq!(r.stats().requests, 1);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    use tokio::io::AsyncWriteExt;
    let sink = RecordingSink::new();
    let r = AlertmanagerReceiver::builder(sink.clone() as Arc<dyn TriggerSink>)
        .bearer_token(TOKEN)
        .route(&[r#"severity!="info""#], "k8s:{namespace}/{deployment}")
        .idle_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let server = r.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = server.local_addr();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    // Two requests on one connection: it is kept alive between them.
    for fingerprint in ["a1", "b2"] {
        let body = webhook_payload(&[firing(fingerprint, "2026-11-27T12:00:00Z")]).to_string();
        let request = format!(
            "POST /webhook/alertmanager HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        assert_eq!(
            answer_within(&mut stream, Duration::from_secs(10)).await,
            Some(Ending::Answered("HTTP/1.1 200 OK".into()))
        );
    }
    assert_eq!(sink.calls().len(), 2);
    // Then nothing: the server closes it.
    assert_eq!(
        answer_within(&mut stream, Duration::from_secs(20)).await,
        Some(Ending::Closed)
    );
}

#[tokio::test]
async fn shutdown_waits_for_a_stalled_request_only_as_long_as_its_timeout() {
    let sink = RecordingSink::new();
    let r = AlertmanagerReceiver::builder(sink.clone() as Arc<dyn TriggerSink>)
        .bearer_token(TOKEN)
        .route::<&str>(&[], "t")
        .body_read_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let server = r.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = server.local_addr();
    // A request in progress: shutdown waits for it, and its body timeout ends it.
    let staller = tokio::spawn(stall_body(addr));
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::time::timeout(Duration::from_secs(30), server.shutdown())
        .await
        .expect("shutdown returns once the stalled body timed out");
    assert_eq!(
        staller.await.unwrap(),
        Ending::Answered("HTTP/1.1 408 Request Timeout".into())
    );
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn connection_limits_come_from_config_and_zero_is_refused() {
    let sink: Arc<dyn TriggerSink> = RecordingSink::new();
    let config: ReceiverConfig = serde_json::from_value(json!({
        "bearer_token": TOKEN,
        "routes": [{"target": "t"}],
    }))
    .unwrap();
    assert_eq!(config.header_read_timeout, Duration::from_secs(10));
    assert_eq!(config.body_read_timeout, Duration::from_secs(10));
    assert_eq!(config.idle_timeout, Duration::from_secs(10));
    assert_eq!(config.max_connections, 256);
    assert_eq!(config, ReceiverConfig::new(TOKEN, config.routes.clone()));
    let config: ReceiverConfig = serde_json::from_value(json!({
        "bearer_token": TOKEN,
        "routes": [{"target": "t"}],
        "header_read_timeout": "2s",
        "body_read_timeout": "1m",
        "idle_timeout": "500ms",
        "max_connections": 16,
    }))
    .unwrap();
    assert_eq!(
        (
            config.header_read_timeout,
            config.body_read_timeout,
            config.idle_timeout,
            config.max_connections
        ),
        (
            Duration::from_secs(2),
            Duration::from_secs(60),
            Duration::from_millis(500),
            16
        )
    );
    AlertmanagerReceiver::from_config(sink.clone(), &config).unwrap();
    let e = serde_json::from_value::<ReceiverConfig>(json!({
        "bearer_token": TOKEN, "routes": [], "idle_timeout": "forever"
    }))
    .unwrap_err();
    assert!(
        e.to_string().contains("invalid duration \"forever\""),
        "{e}"
    );

    let bad = |c: ReceiverConfig| {
        AlertmanagerReceiver::from_config(sink.clone(), &c)
            .unwrap_err()
            .to_string()
    };
    let mut c = config.clone();
    c.max_connections = 0;
    assert!(bad(c).contains("`max_connections`"));
    for field in ["header_read_timeout", "body_read_timeout", "idle_timeout"] {
        let mut c = config.clone();
        match field {
            "header_read_timeout" => c.header_read_timeout = Duration::ZERO,
            "body_read_timeout" => c.body_read_timeout = Duration::ZERO,
            _ => c.idle_timeout = Duration::ZERO,
        }
        let e = bad(c);
        assert!(e.contains(&format!("`{field}`")), "{field}: {e}");
    }
}
