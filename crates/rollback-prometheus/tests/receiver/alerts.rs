//! What becomes of the alerts of a payload: routed to a target, handed to
//! the sink once however often repeated, resolved ones recorded; sink
//! failures, and the time of the records.

use std::sync::Arc;
use std::time::Duration;

use rollback_core::time::Clock;
use rollback_core::{TargetId, Timestamp, TriggerOutcome, TriggerSink};
use rollback_prometheus::{AlertOutcome, AlertStatus, AlertmanagerReceiver};
use serde_json::json;

use crate::common::{TOKEN, firing, send, start};
use crate::support::{RecordingSink, TestAlert, webhook_payload};

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
