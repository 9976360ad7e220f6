//! `rollback_serve::run`, the function `rollback serve` calls, driven by
//! signals sent to this test process: SIGHUP reloads the file, SIGTERM
//! stops gracefully and `run` returns exit code 0. (cargo-nextest runs each
//! test in a process of its own; `run` handles the signals, so none of
//! them ends the process.)

mod common;

use std::time::Duration;

use rollback_serve::ServeOptions;

fn signal(name: &str) {
    let status = std::process::Command::new("kill")
        .args([format!("-{name}"), std::process::id().to_string()])
        .status()
        .expect("running kill");
    assert!(status.success());
}

fn file(targets: &str) -> String {
    format!(
        "policy: {{interval: 100ms, bake_time: 1h}}\n\
         probes: [{{name: error_rate, success: \"< 0.01\", scripted: {{values: [0.001]}}}}]\n\
         targets:\n{targets}\
         serve:\n  reload_check: 0s\n  operators: [{{actor: bot, token: run-test-token-0123}}]\n"
    )
}

async fn targets(http: &reqwest::Client, base: &str) -> Option<Vec<String>> {
    let r = http
        .get(format!("{base}/api/v1/targets"))
        .bearer_auth("run-test-token-0123")
        .send()
        .await
        .ok()?;
    let v: serde_json::Value = r.json().await.ok()?;
    Some(
        v["targets"]
            .as_array()?
            .iter()
            .map(|t| t["target"].as_str().unwrap_or_default().to_owned())
            .collect(),
    )
}

#[tokio::test]
async fn sighup_reloads_and_sigterm_stops_with_exit_code_0() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::write(
        dir.path(),
        "rollback.yaml",
        &file("  - {url: \"memory://a\", revisions: [v1]}\n"),
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let options = ServeOptions::new().listen(format!("127.0.0.1:{port}").parse().unwrap());
    let running = tokio::spawn(rollback_serve::run(path.clone(), options));
    let http = reqwest::Client::new();
    common::until_async("the server answers", Duration::from_secs(20), || async {
        targets(&http, &base).await == Some(vec!["a".to_owned()])
    })
    .await;

    // With the file checked only on SIGHUP, a change waits for the signal.
    common::write(
        dir.path(),
        "rollback.yaml",
        &file(
            "  - {url: \"memory://a\", revisions: [v1]}\n  - {url: \"memory://b\", revisions: [v1]}\n",
        ),
    );
    signal("HUP");
    common::until_async("b added by SIGHUP", Duration::from_secs(20), || async {
        targets(&http, &base).await == Some(vec!["a".to_owned(), "b".to_owned()])
    })
    .await;

    signal("TERM");
    let code = tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .expect("run returned after SIGTERM")
        .unwrap()
        .unwrap_or_else(|e| panic!("run failed: {}", e.full_message()));
    assert_eq!(code, 0);
    assert!(http.get(format!("{base}/healthz")).send().await.is_err());
}

#[tokio::test]
async fn run_fails_with_the_reason_when_it_cannot_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::write(
        dir.path(),
        "rollback.yaml",
        &file("  - {url: \"memory://a\", revisions: [v1]}\n")
            .replace("reload_check: 0s", "listen: 1"),
    );
    let e = rollback_serve::run(path, ServeOptions::new())
        .await
        .unwrap_err();
    assert!(
        e.full_message().contains("serve.listen"),
        "{}",
        e.full_message()
    );
}
