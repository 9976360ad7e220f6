//! The receiver from its serde configuration, and the settings it refuses.

use std::sync::Arc;
use std::time::Duration;

use rollback_core::TriggerSink;
use rollback_prometheus::{AlertmanagerReceiver, ReceiverConfig, RouteConfig};
use serde_json::json;

use crate::common::TOKEN;
use crate::support::RecordingSink;

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
