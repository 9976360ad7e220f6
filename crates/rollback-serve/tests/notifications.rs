//! Notifications against loopback receivers: the exact Slack, Teams and
//! webhook payloads of a rollback; retries of 5xx; a refused delivery
//! counted and audited; a full queue dropping (counted, audited) while the
//! rollback goes on undelayed.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::{SERVE, Shelf, start, until, write};
use rollback_core::audit::{AuditEntry, JsonLinesAuditSink, MemoryAuditSink};
use rollback_core::machine::PhaseKind;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

const WAIT: Duration = Duration::from_secs(20);

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Got {
    authorization: Option<String>,
    body: Value,
}

/// A loopback HTTP receiver: answers each POST with the next status of
/// its script (the last repeats), after a permit of `gate` when it has one.
#[derive(Clone)]
struct Receiver {
    got: Arc<Mutex<Vec<Got>>>,
    script: Arc<Mutex<Vec<u16>>>,
    gate: Option<Arc<Semaphore>>,
    url: String,
}

async fn take(State(r): State<Receiver>, headers: HeaderMap, body: String) -> (StatusCode, String) {
    r.got.lock().unwrap().push(Got {
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: serde_json::from_str(&body).unwrap_or(Value::String(body)),
    });
    if let Some(g) = &r.gate {
        g.acquire().await.unwrap().forget();
    }
    let status = {
        let mut s = r.script.lock().unwrap();
        if s.len() > 1 { s.remove(0) } else { s[0] }
    };
    (
        StatusCode::from_u16(status).unwrap(),
        if status < 300 {
            "ok".into()
        } else {
            "no_service".into()
        },
    )
}

impl Receiver {
    async fn start(script: &[u16], gate: Option<Arc<Semaphore>>) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let r = Receiver {
            got: Arc::default(),
            script: Arc::new(Mutex::new(script.to_vec())),
            gate,
            url,
        };
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(take))
            .with_state(r.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        r
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
}

/// Replace each RFC 3339 time (`2026-11-27T12:00:00.123Z`) in the strings
/// of `v` with `TIME`: the engine runs on the wall clock.
fn untime(v: &mut Value) {
    match v {
        Value::String(s) => {
            let b = s.as_bytes();
            let mut out = String::new();
            let mut i = 0;
            while i < b.len() {
                let rest = &s[i..];
                let is_time = rest.len() >= 24
                    && rest.as_bytes()[4] == b'-'
                    && rest.as_bytes()[10] == b'T'
                    && rest.as_bytes()[23] == b'Z'
                    && rest[..4].bytes().all(|c| c.is_ascii_digit());
                if is_time {
                    out.push_str("TIME");
                    i += 24;
                } else {
                    let c = rest.chars().next().unwrap();
                    out.push(c);
                    i += c.len_utf8();
                }
            }
            *s = out;
        }
        Value::Array(a) => a.iter_mut().for_each(untime),
        Value::Object(o) => o.values_mut().for_each(untime),
        _ => {}
    }
}

fn policy() -> &'static str {
    "policy:\n  interval: 100ms\n  bake_time: 1h\n  verify: 300ms\n\
     probes:\n  - name: error_rate\n    success: \"< 0.01\"\n    scripted:\n      per_revision: {bad: [0.05], v1: [0.001]}\n"
}

fn phase(server: &rollback_serve::Server, id: &str) -> Option<PhaseKind> {
    server
        .engine()
        .phases()
        .into_iter()
        .find(|(t, _)| t.as_str() == id)
        .map(|(_, p)| p.kind())
}

#[tokio::test]
async fn slack_teams_and_webhook_get_exact_payloads_of_a_rollback() {
    let slack = Receiver::start(&[200], None).await;
    let teams = Receiver::start(&[202], None).await;
    let hook = Receiver::start(&[204], None).await;
    let dir = tempfile::tempdir().unwrap();
    let shelf = Shelf::default();
    shelf.put("shop/web", &["v1", "bad"]);
    let file = write(
        dir.path(),
        "rollback.yaml",
        &format!(
            "{}targets: [{{url: shelf://shop/web}}]\n{SERVE}  notifications:\n    channels:\n      - slack: {}\n      - teams: {}\n      - webhook: {}\n        auth: {{bearer: {{token: hook-secret}}}}\n        events: [rollback_started, rollback_verified]\n",
            policy(),
            slack.url,
            teams.url,
            hook.url
        ),
    );
    let audit = MemoryAuditSink::new();
    let server = start(&file, shelf.registry(), &audit).await;
    until(
        "three Slack and Teams notices, two webhook ones",
        WAIT,
        || slack.got().len() == 3 && teams.got().len() == 3 && hook.got().len() == 2,
    )
    .await;

    let mut started = slack.got()[0].body.clone();
    untime(&mut started);
    assert_eq!(
        started,
        json!({
            "text": "Rolling back shop/web (bad → v1): probe error_rate failed 1 times (failure_limit 0); last value 0.05 against success &lt; 0.01",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": "Rolling back shop/web", "emoji": true}},
                {"type": "section", "fields": [
                    {"type": "mrkdwn", "text": "*Target*\nshop/web"},
                    {"type": "mrkdwn", "text": "*Revisions*\nbad → v1"},
                    {"type": "mrkdwn", "text": "*Probe*\nerror_rate"},
                    {"type": "mrkdwn", "text": "*Value*\n0.05"},
                    {"type": "mrkdwn", "text": "*Condition*\nsuccess &lt; 0.01"},
                    {"type": "mrkdwn", "text": "*Limit*\nfailure_limit 0: 1 failed measurements"}
                ]},
                {"type": "section", "text": {"type": "mrkdwn", "text": "*What happens next*\nshop/web is being rolled back to v1; once it has converged, its probes verify v1 for 300ms. bad stays marked bad."}},
                {"type": "context", "elements": [
                    {"type": "mrkdwn", "text": ":leftwards_arrow_with_hook: rollback serve · rollback_started · TIME"}
                ]}
            ]
        })
    );
    let slack_events: Vec<String> = slack
        .got()
        .iter()
        .map(|g| {
            g.body["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        slack_events,
        [
            "Rolling back shop/web",
            "Rolled back shop/web",
            "Rollback of shop/web verified"
        ]
    );
    assert_eq!(
        slack.got()[0].authorization,
        None,
        "a Slack URL holds its own credential"
    );

    let mut verified = teams.got()[2].body.clone();
    untime(&mut verified);
    assert_eq!(
        verified,
        json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": null,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "msteams": {"width": "Full"},
                    "body": [
                        {"type": "TextBlock", "text": "Rollback of shop/web verified", "weight": "Bolder", "size": "Medium", "color": "Good", "wrap": true},
                        {"type": "FactSet", "facts": [
                            {"title": "Target", "value": "shop/web"},
                            {"title": "Revisions", "value": "bad → v1"},
                            {"title": "Probe", "value": "error_rate"},
                            {"title": "Value", "value": "0.05"},
                            {"title": "Condition", "value": "success < 0.01"},
                            {"title": "Limit", "value": "failure_limit 0: 1 failed measurements"}
                        ]},
                        {"type": "TextBlock", "text": "What happens next", "weight": "Bolder", "wrap": true},
                        {"type": "TextBlock", "text": "v1 passed verification and is marked known good; bad stays marked bad. Nothing else happens until the next deploy, which is judged when it ships.", "wrap": true},
                        {"type": "TextBlock", "text": "rollback serve · rollback_verified · TIME", "isSubtle": true, "size": "Small", "wrap": true}
                    ]
                }
            }]
        })
    );

    let got = hook.got();
    assert_eq!(got[0].authorization.as_deref(), Some("Bearer hook-secret"));
    let mut body = got[1].body.clone();
    untime(&mut body);
    assert_eq!(
        body,
        json!({
            "version": 1,
            "event": "rollback_verified",
            "target": "shop/web",
            "at": "TIME",
            "revision": "bad",
            "to": "v1",
            "breach": {
                "cause": "probe",
                "probe": "error_rate",
                "limit": "failure_limit",
                "allowed": 0,
                "count": 1,
                "value": 0.05,
                "verdict_cause": "success_not_matched",
                "conditions": "success < 0.01"
            },
            "title": "Rollback of shop/web verified",
            "summary": "Rollback of shop/web verified (bad → v1): probe error_rate failed 1 times (failure_limit 0); last value 0.05 against success < 0.01",
            "detail": "the rollback to v1 is verified",
            "next": "v1 passed verification and is marked known good; bad stays marked bad. Nothing else happens until the next deploy, which is judged when it ships."
        })
    );
    let metrics = reqwest::get(format!("{}/metrics", server.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"rollback_notifications_total{channel="slack",outcome="sent"} 3"#,
        r#"rollback_notifications_total{channel="teams",outcome="sent"} 3"#,
        r#"rollback_notifications_total{channel="webhook",outcome="sent"} 2"#,
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn an_approval_to_wait_for_says_how_to_give_it() {
    let hook = Receiver::start(&[200], None).await;
    let dir = tempfile::tempdir().unwrap();
    let shelf = Shelf::default();
    shelf.put("k8s:shop/web", &["v1", "bad"]);
    let file = write(
        dir.path(),
        "rollback.yaml",
        &format!(
            "{}targets: [{{url: \"shelf://k8s:shop/web\"}}]\n{SERVE}  notifications:\n    channels: [{{webhook: {}}}]\n",
            policy().replace("probes:", "  approval: manual\nprobes:"),
            hook.url
        ),
    );
    let audit = MemoryAuditSink::new();
    let server = start(&file, shelf.registry(), &audit).await;
    until("the approval notice", WAIT, || !hook.got().is_empty()).await;
    let body = &hook.got()[0].body;
    assert_eq!(body["event"], "awaiting_approval");
    assert_eq!(body["to"], "v1");
    assert_eq!(
        body["next"],
        "Nothing changes until an operator decides: approve the rollback to v1 (POST /api/v1/targets/k8s%3Ashop%2Fweb/approve), roll back to another revision (POST /api/v1/targets/k8s%3Ashop%2Fweb/rollback with {\"to\": \"REVISION\"}), or promote bad if the breach is a false alarm (POST /api/v1/targets/k8s%3Ashop%2Fweb/promote)."
    );
    server.shutdown().await;
}

#[tokio::test]
async fn retries_failures_and_a_full_queue_never_hold_up_the_rollback() {
    let flaky = Receiver::start(&[503, 503, 200], None).await;
    let broken = Receiver::start(&[400], None).await;
    let gate = Arc::new(Semaphore::new(0));
    let slow = Receiver::start(&[200], Some(gate.clone())).await;
    let dir = tempfile::tempdir().unwrap();
    let shelf = Shelf::default();
    let (web, _) = shelf.put("web", &["v1", "bad"]);
    let file = write(
        dir.path(),
        "rollback.yaml",
        &format!(
            "{}audit: audit.jsonl\ntargets: [{{url: shelf://web}}]\n{SERVE}  notifications:\n    queue: 1\n    retry: {{max_attempts: 3, initial_backoff: 20ms, max_backoff: 50ms}}\n    channels:\n      - {{name: flaky, webhook: {}, events: [rollback_started]}}\n      - {{name: broken, webhook: {}, events: [rollback_started]}}\n      - {{name: slow, webhook: {}}}\n",
            policy(),
            flaky.url,
            broken.url,
            slow.url
        ),
    );
    let audit = MemoryAuditSink::new();
    let server = start(&file, shelf.registry(), &audit).await;

    // The slow channel holds its first delivery: the rollback still goes
    // all the way, and of the notices behind it, what does not fit the
    // queue of one is dropped.
    until("rolled back and verified", WAIT, || {
        phase(&server, "web") == Some(PhaseKind::RolledBack)
    })
    .await;
    assert_eq!(web.current_id().as_str(), "v1");
    until("the first is held", WAIT, || slow.got().len() == 1).await;
    let drops = || {
        audit
            .records()
            .iter()
            .filter(|r| {
                matches!(&r.entry, AuditEntry::NotificationFailed { channel, attempts: 0, error, .. }
                    if channel == "slow" && error == "dropped: the channel's queue of 1 notifications is full")
            })
            .count()
    };
    let dropped = drops();
    assert!((1..=2).contains(&dropped), "{dropped} dropped");
    gate.add_permits(10);
    until("what was queued delivered", WAIT, || {
        slow.got().len() == 3 - dropped
    })
    .await;

    // 503 twice, then taken: three tries of the same body.
    until("the flaky channel took it", WAIT, || flaky.got().len() == 3).await;
    let tries = flaky.got();
    assert!(tries.iter().all(|g| g.body == tries[0].body));
    // 400 is not retried: failed at once, counted and audited.
    until("the refusal audited", WAIT, || {
        common::seen(&audit, "web", |e| {
            matches!(e, AuditEntry::NotificationFailed { channel, attempts: 1, error, .. }
                if channel == "broken" && error == "HTTP 400: no_service")
        })
    })
    .await;
    assert_eq!(broken.got().len(), 1);
    let metrics = reqwest::get(format!("{}/metrics", server.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"rollback_notifications_total{channel="flaky",outcome="sent"} 1"#,
        r#"rollback_notifications_total{channel="broken",outcome="failed"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    let line =
        format!(r#"rollback_notifications_total{{channel="slow",outcome="dropped"}} {dropped}"#);
    assert!(metrics.contains(&line), "{line} in\n{metrics}");
    server.shutdown().await;
    // The audit log of the file has the failures too, in its chain.
    let log = JsonLinesAuditSink::read(dir.path().join("audit.jsonl")).unwrap();
    let failed: Vec<String> = log
        .records
        .iter()
        .filter(|r| matches!(r.entry, AuditEntry::NotificationFailed { .. }))
        .map(|r| r.describe())
        .collect();
    assert_eq!(failed.len(), 1 + dropped, "{failed:#?}");
    assert!(
        failed.contains(
            &"notification rollback_started to broken failed after 1 try: HTTP 400: no_service"
                .to_owned()
        ),
        "{failed:#?}"
    );
    assert!(failed.contains(&"notification rollback_verified to slow failed after 0 tries: dropped: the channel's queue of 1 notifications is full".to_owned()), "{failed:#?}");
}
