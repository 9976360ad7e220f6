//! Credentials reach the server, and its refusals are `Unauthorized`.
//!
//! MLflow's own `basic-auth` app needs Flask-WTF, which the test venv does not
//! install, so a local HTTP server plays an authenticating MLflow here.

use axum::http::{HeaderMap, StatusCode};
use rollback_core::http::Auth;
use rollback_core::{ErrorKind, Target};
use rollback_mlflow::{MlflowClient, MlflowTarget};

async fn guarded(headers: HeaderMap) -> (StatusCode, String) {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // "alice:wonderland" in base64.
    if auth == "Bearer t0ken" || auth == "Basic YWxpY2U6d29uZGVybGFuZA==" {
        (
            StatusCode::OK,
            r#"{"model_version": {"name": "m", "version": "4", "status": "READY"}}"#.into(),
        )
    } else if auth.is_empty() {
        (
            StatusCode::UNAUTHORIZED,
            "You are not authenticated. Please see the documentation.".into(),
        )
    } else {
        (
            StatusCode::FORBIDDEN,
            r#"{"error_code": "PERMISSION_DENIED", "message": "Permission denied"}"#.into(),
        )
    }
}

async fn server() -> String {
    let app = axum::Router::new().route(
        "/api/2.0/mlflow/registered-models/alias",
        axum::routing::get(guarded),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

async fn current_with(url: &str, auth: Option<Auth>) -> rollback_core::Result<String> {
    let client = MlflowClient::new(url).unwrap().with_auth(auth);
    let t = MlflowTarget::builder(client)
        .model("m")
        .alias("champion")
        .build()
        .unwrap();
    Ok(t.current().await?.id().to_string())
}

#[tokio::test]
async fn bearer_and_basic_credentials_are_sent_and_refusals_are_unauthorized() {
    let url = server().await;
    assert_eq!(
        current_with(&url, Some(Auth::bearer("t0ken")))
            .await
            .unwrap(),
        "4"
    );
    let basic = Auth::basic("alice", "wonderland");
    assert_eq!(current_with(&url, Some(basic)).await.unwrap(), "4");

    let e = current_with(&url, None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
    assert!(
        e.message().contains("HTTP 401") && e.message().contains("MLFLOW_TRACKING_TOKEN"),
        "{e}"
    );
    let e = current_with(&url, Some(Auth::bearer("wrong")))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
    assert!(e.message().contains("PERMISSION_DENIED"), "{e}");
}

#[tokio::test]
async fn an_unreachable_server_is_transient() {
    let e = current_with("http://127.0.0.1:9", None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
    assert!(
        e.message().contains("no answer from the MLflow server"),
        "{e}"
    );
}
