//! What every receiver test uses: a receiver with two routes on a free
//! port, and requests to it.

use std::sync::Arc;

use rollback_core::TriggerSink;
use rollback_prometheus::{AlertmanagerReceiver, ReceiverServer};
use serde_json::Value;

use crate::support::{RecordingSink, TestAlert};

pub(crate) const TOKEN: &str = "s3cret-token";

pub(crate) fn receiver(sink: Arc<RecordingSink>) -> AlertmanagerReceiver {
    AlertmanagerReceiver::builder(sink as Arc<dyn TriggerSink>)
        .bearer_token(TOKEN)
        .route(&[r#"alertname="ModelDrift""#], "mlflow:{model}@champion")
        .route(&[r#"severity!="info""#], "k8s:{namespace}/{deployment}")
        .max_body_bytes(16 * 1024)
        .build()
        .unwrap()
}

pub(crate) async fn start(sink: Arc<RecordingSink>) -> (AlertmanagerReceiver, ReceiverServer) {
    let r = receiver(sink);
    let server = r.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    (r, server)
}

pub(crate) async fn post(
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

pub(crate) async fn send(server: &ReceiverServer, payload: &Value) -> (u16, Value) {
    post(
        server,
        Some(&format!("Bearer {TOKEN}")),
        Some("application/json"),
        payload.to_string().into_bytes(),
    )
    .await
}

pub(crate) fn firing(fingerprint: &'static str, starts_at: &'static str) -> TestAlert<'static> {
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
