//! What the receiver logs: no raw control characters from an alert.

use std::sync::Arc;

use serde_json::json;

use crate::common::{TOKEN, post, send, start};
use crate::support::{RecordingSink, TestAlert, webhook_payload};

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
