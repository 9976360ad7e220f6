//! What a rollback reports when MLflow fails part-way, against a fake MLflow
//! that refuses chosen tag writes (a real server cannot be made to fail at
//! a chosen step).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::Uri;
use rollback_core::policy::RetryPolicy;
use rollback_core::{ErrorKind, RevisionRecord, RevisionRef, RollbackOutcome, Rollbacker, Target};
use rollback_mlflow::{MlflowClient, MlflowTarget, tags};
use serde_json::{Value, json};

use crate::registry::request;

#[derive(Clone)]
struct Fake {
    alias: Arc<Mutex<String>>,
    refuse_prefix: &'static str,
    /// How many more writes of a refused key to refuse.
    refusals: Arc<Mutex<usize>>,
    /// Every tag write accepted, in order: (version, key).
    tags_written: Arc<Mutex<Vec<(String, String)>>>,
    /// The tags of each version.
    tags: Arc<Mutex<BTreeMap<String, BTreeMap<String, String>>>>,
}

impl Fake {
    fn keys_written(&self) -> Vec<String> {
        let written = self.tags_written.lock().unwrap();
        written.iter().map(|(_, k)| k.clone()).collect()
    }

    fn version(&self, v: &str) -> Value {
        let tags = self.tags.lock().unwrap();
        let tags: Vec<Value> = tags
            .get(v)
            .into_iter()
            .flatten()
            .map(|(k, v)| json!({ "key": k, "value": v }))
            .collect();
        json!({ "model_version": { "name": "m", "version": v, "status": "READY", "tags": tags } })
    }
}

async fn get_version(State(f): State<Fake>, uri: Uri) -> Json<Value> {
    let query = uri.query().unwrap_or("");
    let v = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("version="))
        .unwrap_or("");
    Json(f.version(v))
}

async fn get_alias(State(f): State<Fake>) -> Json<Value> {
    let v = f.alias.lock().unwrap().clone();
    Json(f.version(&v))
}

async fn set_alias(State(f): State<Fake>, Json(body): Json<Value>) -> Json<Value> {
    *f.alias.lock().unwrap() = body["version"].as_str().unwrap().to_owned();
    Json(json!({}))
}

async fn set_tag(State(f): State<Fake>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    let key = body["key"].as_str().unwrap().to_owned();
    let version = body["version"].as_str().unwrap().to_owned();
    if key.starts_with(f.refuse_prefix) {
        let mut left = f.refusals.lock().unwrap();
        if *left > 0 {
            *left -= 1;
            let err = json!({ "error_code": "INTERNAL_ERROR", "message": "database is locked" });
            return (StatusCode::INTERNAL_SERVER_ERROR, Json(err));
        }
    }
    let value = body["value"].as_str().unwrap().to_owned();
    f.tags
        .lock()
        .unwrap()
        .entry(version.clone())
        .or_default()
        .insert(key.clone(), value);
    f.tags_written.lock().unwrap().push((version, key));
    (StatusCode::OK, Json(json!({})))
}

/// A fake MLflow with versions 1 and 2, the alias on 2, that refuses the
/// next `refusals` writes of tags whose key starts with `refuse_prefix`.
async fn fake_refusing(refuse_prefix: &'static str, refusals: usize) -> (String, Fake) {
    let f = Fake {
        alias: Arc::new(Mutex::new("2".into())),
        refuse_prefix,
        refusals: Arc::new(Mutex::new(refusals)),
        tags_written: Arc::default(),
        tags: Arc::default(),
    };
    let api = "/api/2.0/mlflow";
    let app = axum::Router::new()
        .route(
            &format!("{api}/model-versions/get"),
            axum::routing::get(get_version),
        )
        .route(
            &format!("{api}/registered-models/alias"),
            axum::routing::get(get_alias).post(set_alias),
        )
        .route(
            &format!("{api}/model-versions/set-tag"),
            axum::routing::post(set_tag),
        )
        .with_state(f.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, f)
}

fn target_of(client: MlflowClient) -> MlflowTarget {
    MlflowTarget::builder(client)
        .model("m")
        .alias("champion")
        .build()
        .unwrap()
}

async fn fake(refuse_prefix: &'static str) -> (MlflowTarget, Fake) {
    let (url, f) = fake_refusing(refuse_prefix, usize::MAX).await;
    (target_of(MlflowClient::new(&url).unwrap()), f)
}

/// Roll the fake's alias back from version 2 to version 1, as the engine asks.
async fn roll_back(t: &MlflowTarget) -> rollback_core::Result<RollbackOutcome> {
    let one: RevisionRef = Arc::new(RevisionRecord::new("1"));
    t.rollbacker()
        .rollback(&request(Some("2"), one, false))
        .await
}

#[tokio::test]
async fn a_move_that_cannot_be_recorded_fails_retryably_and_the_same_request_completes_it() {
    let (t, f) = fake("rollback.move.").await;
    let e = roll_back(&t).await.unwrap_err();
    // Before: `RolledBack` with a warning, and the record was never written.
    assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
    assert!(e.is_retryable(), "{e}");
    assert!(
        e.message()
            .contains("alias champion moved from version 2 to version 1, but writing its record"),
        "{e}"
    );
    assert!(e.message().contains("database is locked"), "{e}");
    assert_eq!(
        t.current().await.unwrap().id().as_str(),
        "1",
        "the alias moved"
    );
    assert!(
        f.keys_written().contains(&"rollback.health".to_owned()),
        "the bad version was tagged"
    );

    // The registry accepts writes again; the engine's retry completes the record.
    *f.refusals.lock().unwrap() = 0;
    let again = roll_back(&t).await.unwrap();
    assert!(
        matches!(&again, RollbackOutcome::AlreadyAt { detail } if detail.contains("recorded the move on versions 1 and 2")),
        "{again:?}"
    );
    let moves: Vec<(String, String)> = f
        .tags_written
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, k)| k.starts_with(tags::MOVE_PREFIX))
        .cloned()
        .collect();
    assert_eq!(moves.len(), 2, "once on each version: {moves:?}");
    assert_eq!(t.alias_moves_on(&["1", "2"]).await.len(), 1);
    let health_writes = f
        .keys_written()
        .iter()
        .filter(|k| k.starts_with("rollback.health"))
        .count();
    assert_eq!(health_writes, 3, "the bad version was tagged once");
}

#[tokio::test]
async fn when_the_bad_version_cannot_be_tagged_the_alias_stays() {
    let (t, f) = fake("rollback.health").await;
    let e = roll_back(&t).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
    assert!(e.message().contains("INTERNAL_ERROR"), "{e}");
    assert_eq!(
        t.current().await.unwrap().id().as_str(),
        "2",
        "nothing moved"
    );
    assert!(
        f.keys_written()
            .iter()
            .all(|k| !k.starts_with("rollback.move."))
    );
}

#[tokio::test]
async fn a_client_with_a_retry_policy_retries_a_passing_failure() {
    let (url, f) = fake_refusing("rollback.health", 2).await;
    let retry = RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(10),
    };
    let t = target_of(MlflowClient::new(&url).unwrap().with_retry(retry));
    let done = roll_back(&t).await.unwrap();
    assert!(
        matches!(done, RollbackOutcome::RolledBack { .. }),
        "{done:?}"
    );
    assert_eq!(*f.refusals.lock().unwrap(), 0, "both refusals were met");

    // Without retries the same failure reaches the caller.
    let (url, _) = fake_refusing("rollback.health", 1).await;
    let t = target_of(MlflowClient::new(&url).unwrap());
    let e = roll_back(&t).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
}

/// The move records a fake holds, read the way a target reads them.
trait MovesOn {
    async fn alias_moves_on(&self, versions: &[&str]) -> Vec<rollback_mlflow::AliasMove>;
}

impl MovesOn for MlflowTarget {
    async fn alias_moves_on(&self, versions: &[&str]) -> Vec<rollback_mlflow::AliasMove> {
        let mut out = BTreeMap::new();
        for v in versions {
            let version = self.client().get_model_version("m", v).await.unwrap();
            for tag in version
                .tags
                .iter()
                .filter(|t| t.key.starts_with(tags::MOVE_PREFIX))
            {
                out.insert(tag.key.clone(), serde_json::from_str(&tag.value).unwrap());
            }
        }
        out.into_values().collect()
    }
}
