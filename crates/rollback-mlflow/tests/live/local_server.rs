//! The throwaway server stops with its owner.

use std::time::Duration;

use rollback_mlflow::local_server::{LocalMlflowServer, Owner, find_venv};

#[tokio::test]
async fn a_local_server_stops_and_cleans_up_when_dropped() {
    let server = LocalMlflowServer::start_with(&find_venv().unwrap(), Owner::This)
        .await
        .unwrap();
    let url = server.url().to_owned();
    let dir = server.dir().to_owned();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    assert!(
        http.get(format!("{url}/health"))
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );
    assert!(dir.join("mlflow.db").exists());
    drop(server);
    assert!(
        http.get(format!("{url}/health")).send().await.is_err(),
        "the server still answers after drop"
    );
    assert!(!dir.exists(), "{} was not removed", dir.display());
}
