//! Post-rollback hooks: a local HTTP endpoint plays serving's reload API.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use rollback_core::{ErrorKind, RollbackOutcome, Rollbacker, Target, TargetExt};
use rollback_mlflow::HttpHook;

use crate::registry::{request, target};
use crate::support::{client, seed, unique};

/// A reload call: its JSON body and its `Authorization` header.
type Call = (serde_json::Value, Option<String>);

#[derive(Clone, Default)]
struct Shared {
    statuses: Arc<Mutex<Vec<u16>>>,
    calls: Arc<Mutex<Vec<Call>>>,
}

/// A fake serving endpoint that records each reload call and answers with
/// the next scripted status (the last one repeats).
pub(crate) struct Reloads {
    url: String,
    shared: Shared,
    _server: tokio::task::JoinHandle<()>,
}

async fn reload(
    State(s): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> StatusCode {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    s.calls.lock().unwrap().push((body, auth));
    let mut statuses = s.statuses.lock().unwrap();
    let status = if statuses.len() > 1 {
        statuses.remove(0)
    } else {
        statuses.first().copied().unwrap_or(200)
    };
    StatusCode::from_u16(status).unwrap()
}

impl Reloads {
    pub(crate) async fn start(statuses: Vec<u16>) -> Self {
        let shared = Shared {
            statuses: Arc::new(Mutex::new(statuses)),
            ..Shared::default()
        };
        let app = axum::Router::new()
            .route("/reload", axum::routing::post(reload))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/reload", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Reloads {
            url,
            shared,
            _server: server,
        }
    }

    pub(crate) fn hook(&self) -> HttpHook {
        HttpHook::new(self.url.parse().unwrap()).bearer_token("serving-token")
    }

    pub(crate) fn calls(&self) -> Vec<serde_json::Value> {
        self.shared
            .calls
            .lock()
            .unwrap()
            .iter()
            .map(|(b, _)| b.clone())
            .collect()
    }

    fn auth_headers(&self) -> Vec<Option<String>> {
        self.shared
            .calls
            .lock()
            .unwrap()
            .iter()
            .map(|(_, a)| a.clone())
            .collect()
    }
}

#[tokio::test]
async fn a_failed_reload_is_reported_and_retried_by_the_next_request() {
    let name = unique("hook");
    seed(&client().await, &name, 2, Some(("champion", 2))).await;
    let t = target(&name, 100).await;
    let reloads = Reloads::start(vec![503, 200]).await;
    let r = t.rollbacker().hook(Arc::new(reloads.hook()));
    let good = t.find(&"1".into()).await.unwrap().revision;

    let e = r
        .rollback(&request(Some("2"), good.clone(), false))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
    assert!(e.is_retryable());
    assert!(
        e.message().contains("moved from version 2 to version 1"),
        "{e}"
    );
    assert!(e.message().contains("HTTP 503"), "{e}");
    assert_eq!(
        t.current().await.unwrap().id().as_str(),
        "1",
        "the alias moved all the same"
    );

    // The engine retries: the alias is there, the reload runs again.
    let again = r
        .rollback(&request(Some("2"), good.clone(), false))
        .await
        .unwrap();
    assert!(
        matches!(&again, RollbackOutcome::AlreadyAt { detail } if detail.contains("ran again")),
        "{again:?}"
    );
    let calls = reloads.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0], calls[1], "the same move both times");
    assert_eq!(calls[0]["from"], "2");
    assert_eq!(
        reloads.auth_headers()[0].as_deref(),
        Some("Bearer serving-token")
    );

    // Once it succeeded, a repeated request changes nothing and calls nobody.
    let third = r.rollback(&request(Some("2"), good, false)).await.unwrap();
    assert!(matches!(third, RollbackOutcome::AlreadyAt { .. }));
    assert_eq!(reloads.calls().len(), 2);
}

#[tokio::test]
async fn a_restarted_rollbacker_runs_the_hooks_that_had_failed() {
    let name = unique("hook-restart");
    seed(&client().await, &name, 2, Some(("champion", 2))).await;
    let t = target(&name, 100).await;
    let reloads = Reloads::start(vec![503, 200]).await;
    let good = t.find(&"1".into()).await.unwrap().revision;
    let req = request(Some("2"), good, false);
    let e = t
        .rollbacker()
        .hook(Arc::new(reloads.hook()))
        .rollback(&req)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
    let pending = t.alias_moves().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].hooks, rollback_mlflow::HooksState::Pending);

    // A new process: nothing in memory, the record says the hooks are pending.
    let again = t
        .rollbacker()
        .hook(Arc::new(reloads.hook()))
        .rollback(&req)
        .await
        .unwrap();
    assert!(
        matches!(&again, RollbackOutcome::AlreadyAt { detail } if detail.contains("ran again")),
        "{again:?}"
    );
    assert_eq!(reloads.calls().len(), 2);
    let done = t.alias_moves().await.unwrap();
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(done[0].hooks, rollback_mlflow::HooksState::Done);
    // And a third process calls nobody.
    t.rollbacker()
        .hook(Arc::new(reloads.hook()))
        .rollback(&req)
        .await
        .unwrap();
    assert_eq!(reloads.calls().len(), 2);
}

#[tokio::test]
async fn a_refused_reload_is_a_final_error() {
    let reloads = Reloads::start(vec![403]).await;
    let event = rollback_mlflow::AliasMove {
        model: "m".into(),
        alias: Some("champion".into()),
        stage: None,
        from: Some("2".into()),
        to: "1".into(),
        reason: "r".into(),
        actor: "a".into(),
        at: "2026-11-27T12:00:00.000Z".into(),
        at_ms: 0,
        hooks: rollback_mlflow::HooksState::Pending,
    };
    use rollback_mlflow::PostRollbackHook as _;
    let e = reloads.hook().after_rollback(&event).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
    let nowhere = HttpHook::new("http://127.0.0.1:9/reload".parse().unwrap());
    let e = nowhere.after_rollback(&event).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
}

/// Serving that never finishes reloading.
#[derive(Debug)]
struct StuckRollout;

#[rollback_mlflow::async_trait]
impl rollback_mlflow::PostRollbackHook for StuckRollout {
    fn name(&self) -> &str {
        "stuck rollout"
    }
    async fn after_rollback(&self, _: &rollback_mlflow::AliasMove) -> rollback_core::Result<()> {
        Ok(())
    }
    async fn wait_ready(
        &self,
        version: &rollback_core::RevisionId,
        timeout: std::time::Duration,
    ) -> rollback_core::Result<rollback_core::Convergence> {
        Ok(rollback_core::Convergence::TimedOut {
            detail: format!("version {version} not ready after {timeout:?}"),
        })
    }
}

#[tokio::test]
async fn convergence_waits_for_the_hooks() {
    let name = unique("converge");
    seed(&client().await, &name, 2, Some(("champion", 2))).await;
    let t = target(&name, 100).await;
    let r = t.rollbacker().hook(Arc::new(StuckRollout));
    let one = t.find(&"1".into()).await.unwrap().revision;
    r.rollback(&request(Some("2"), one, false)).await.unwrap();
    let c = r
        .wait_converged(&"1".into(), std::time::Duration::from_millis(50))
        .await
        .unwrap();
    assert!(
        matches!(&c, rollback_core::Convergence::TimedOut { detail } if detail.contains("version 1")),
        "{c:?}"
    );
}
