//! What a rollback reports when MLflow fails part-way, against a fake MLflow
//! that refuses chosen tag writes (a real server cannot be made to fail at
//! a chosen step).

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::Uri;
use rollback_core::{ErrorKind, RevisionRecord, RevisionRef, RollbackOutcome, Rollbacker, Target};
use rollback_mlflow::{MlflowClient, MlflowTarget};
use serde_json::{Value, json};

use crate::registry::request;

#[derive(Clone)]
struct Fake {
    alias: Arc<Mutex<String>>,
    refuse_prefix: &'static str,
    tags_written: Arc<Mutex<Vec<String>>>,
}

fn version(v: &str) -> Value {
    json!({ "model_version": { "name": "m", "version": v, "status": "READY" } })
}

async fn get_version(uri: Uri) -> Json<Value> {
    let query = uri.query().unwrap_or("");
    let v = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("version="))
        .unwrap_or("");
    Json(version(v))
}

async fn get_alias(State(f): State<Fake>) -> Json<Value> {
    Json(version(&f.alias.lock().unwrap()))
}

async fn set_alias(State(f): State<Fake>, Json(body): Json<Value>) -> Json<Value> {
    *f.alias.lock().unwrap() = body["version"].as_str().unwrap().to_owned();
    Json(json!({}))
}

async fn set_tag(State(f): State<Fake>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    let key = body["key"].as_str().unwrap().to_owned();
    if key.starts_with(f.refuse_prefix) {
        let err = json!({ "error_code": "INTERNAL_ERROR", "message": "database is locked" });
        return (StatusCode::INTERNAL_SERVER_ERROR, Json(err));
    }
    f.tags_written.lock().unwrap().push(key);
    (StatusCode::OK, Json(json!({})))
}

async fn fake(refuse_prefix: &'static str) -> (MlflowTarget, Fake) {
    let f = Fake {
        alias: Arc::new(Mutex::new("2".into())),
        refuse_prefix,
        tags_written: Arc::default(),
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
    let t = MlflowTarget::builder(MlflowClient::new(&url).unwrap())
        .model("m")
        .alias("champion")
        .build()
        .unwrap();
    (t, f)
}

fn one() -> RevisionRef {
    Arc::new(RevisionRecord::new("1"))
}

#[tokio::test]
async fn a_move_that_cannot_be_recorded_is_rolled_back_with_a_warning() {
    let (t, f) = fake("rollback.move.").await;
    let outcome = t
        .rollbacker()
        .rollback(&request(&t, Some("2"), one(), false))
        .await
        .unwrap();
    let RollbackOutcome::RolledBack { detail } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        detail.contains("WARNING: the move record is missing"),
        "{detail}"
    );
    assert!(detail.contains("database is locked"), "{detail}");
    assert_eq!(
        t.current().await.unwrap().id().as_str(),
        "1",
        "the alias moved"
    );
    assert!(
        f.tags_written
            .lock()
            .unwrap()
            .contains(&"rollback.health".to_owned()),
        "the bad version was tagged"
    );
}

#[tokio::test]
async fn when_the_bad_version_cannot_be_tagged_the_alias_stays() {
    let (t, f) = fake("rollback.health").await;
    let e = t
        .rollbacker()
        .rollback(&request(&t, Some("2"), one(), false))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
    assert!(e.message().contains("INTERNAL_ERROR"), "{e}");
    assert_eq!(
        t.current().await.unwrap().id().as_str(),
        "2",
        "nothing moved"
    );
    assert!(
        f.tags_written
            .lock()
            .unwrap()
            .iter()
            .all(|k| !k.starts_with("rollback.move."))
    );
}
