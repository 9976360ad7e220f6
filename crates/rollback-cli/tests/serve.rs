//! `rollback serve` as a process: it judges and rolls back a bad revision
//! of an in-memory target without being asked, answers the operator API,
//! `/metrics`, `/healthz` and `/readyz`, logs JSON lines with
//! `--log-format json`, reloads on SIGHUP, and stops with exit code 0 on
//! SIGTERM; a file it cannot serve is exit code 1 with the reason.

mod common;

use std::time::Duration;

use common::{Running, until};

const TOKEN: &str = "cli-serve-token-0123";
const WAIT: Duration = Duration::from_secs(30);

fn file(extra_target: &str) -> String {
    format!(
        "policy: {{interval: 100ms, bake_time: 1h, verify: 300ms}}\n\
         probes:\n\
         - name: error_rate\n\
         \x20 success: \"< 0.01\"\n\
         \x20 scripted: {{per_revision: {{v2: [0.002, 0.05, 0.06, 0.07], v1: [0.001]}}}}\n\
         targets:\n\
         - url: memory://shop/checkout\n\
         \x20 revisions: [{{id: v1, health: good}}, v2]\n\
         {extra_target}\
         serve:\n\
         \x20 reload_check: 0s\n\
         \x20 operators: [{{actor: bot, token: \"${{BOT_TOKEN}}\"}}]\n"
    )
}

/// `rollback serve -c rollback.yaml` in `dir` on a free port, with `args`;
/// its log lines read; its base URL.
fn serve(dir: &std::path::Path, args: &[&str]) -> (Running, String) {
    let listen = format!("127.0.0.1:{}", common::free_port());
    let mut all = vec!["serve", "-c", "rollback.yaml", "--listen", &listen];
    all.extend_from_slice(args);
    let running = Running::start_logging(dir, &all, &[("BOT_TOKEN", TOKEN)]);
    (running, format!("http://{listen}"))
}

async fn get(http: &reqwest::Client, url: String) -> Option<(u16, String)> {
    let r = http.get(url).bearer_auth(TOKEN).send().await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.text().await.ok()?))
}

fn target_view(list: &str, id: &str) -> Option<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(list).ok()?;
    v["targets"]
        .as_array()?
        .iter()
        .find(|t| t["target"] == id)
        .cloned()
}

#[tokio::test]
async fn serve_judges_rolls_back_answers_reloads_and_stops_with_exit_code_0() {
    let dir = tempfile::tempdir().unwrap();
    common::write(dir.path(), "rollback.yaml", &file(""));
    let (mut serve, base) = serve(dir.path(), &["--log-format", "json"]);
    let http = reqwest::Client::new();

    let (status, body) = until("/healthz answers", WAIT, || {
        get(&http, format!("{base}/healthz"))
    })
    .await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));

    // v2 breaches its SLO: served, judged and rolled back to v1 without a
    // command.
    let view = until("shop/checkout is rolled back", WAIT, || async {
        let (_, list) = get(&http, format!("{base}/api/v1/targets")).await?;
        let v = target_view(&list, "shop/checkout")?;
        (v["phase"]["phase"] == "rolled_back").then_some(v)
    })
    .await;
    assert_eq!(view["phase"]["to"], "v1", "{view}");
    assert_eq!(view["url"], "memory://shop/checkout", "{view}");

    let (status, metrics) = get(&http, format!("{base}/metrics")).await.unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics
            .contains(r#"rollback_rollbacks_total{target="shop/checkout",outcome="succeeded"} 1"#),
        "{metrics}"
    );
    let (status, ready) = get(&http, format!("{base}/readyz")).await.unwrap();
    assert_eq!(
        (status, ready.as_str()),
        (200, r#"{"status":"ready","targets":1}"#)
    );

    // --log-format json: every line a JSON object; one of them the start.
    serve.wait_for("rollback serve is ready", WAIT);
    for l in &serve.seen {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{l}");
    }

    // SIGHUP: a target added to the file is served; the first is undisturbed.
    common::write(
        dir.path(),
        "rollback.yaml",
        &file("- url: memory://shop/cart\n  revisions: [{id: v1, health: good}]\n"),
    );
    serve.signal("HUP");
    let list = until("shop/cart is served after SIGHUP", WAIT, || async {
        let (_, list) = get(&http, format!("{base}/api/v1/targets")).await?;
        target_view(&list, "shop/cart").map(|_| list)
    })
    .await;
    let first = target_view(&list, "shop/checkout").unwrap();
    assert_eq!(first["phase"]["phase"], "rolled_back", "{list}");

    // SIGTERM: a graceful stop, exit code 0.
    serve.signal("TERM");
    assert_eq!(common::exit_code_within(&mut serve.child, WAIT), Some(0));
}

#[test]
fn serve_refuses_a_file_it_cannot_serve_with_exit_code_1() {
    let dir = tempfile::tempdir().unwrap();
    common::write(dir.path(), "rollback.yaml", &file(""));
    // BOT_TOKEN unset: the operator's token names the variable.
    common::rollback(dir.path())
        .args(["serve", "-c", "rollback.yaml", "--listen", "127.0.0.1:0"])
        .env_remove("BOT_TOKEN")
        .assert()
        .code(1)
        .stderr(predicates::str::contains("BOT_TOKEN"));
    common::rollback(dir.path())
        .args(["serve", "-c", "missing.yaml"])
        .assert()
        .code(1)
        .stderr(predicates::str::contains("missing.yaml"));
    common::rollback(dir.path())
        .args(["serve", "-c", "rollback.yaml", "--listen", "not-an-address"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("--listen"));
}
