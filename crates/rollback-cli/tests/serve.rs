//! `rollback serve` as a process: it judges and rolls back a bad revision
//! of an in-memory target without being asked, answers the operator API,
//! `/metrics`, `/healthz` and `/readyz`, logs JSON lines with
//! `--log-format json`, reloads on SIGHUP, and stops with exit code 0 on
//! SIGTERM; a file it cannot serve is exit code 1 with the reason.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `rollback serve`, its stderr lines on a channel; killed when
/// dropped.
struct Serve {
    child: Child,
    lines: mpsc::Receiver<String>,
    base: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    fn start(dir: &std::path::Path, args: &[&str]) -> Serve {
        let port = free_port();
        let mut child = Command::new(common::bin())
            .current_dir(dir)
            .args(["serve", "-c", "rollback.yaml", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .args(args)
            .env("BOT_TOKEN", TOKEN)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting rollback serve");
        let (tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Serve {
            child,
            lines,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success());
    }

    /// Stderr lines until one satisfies `pred`; all of them.
    fn lines_until(&self, what: &str, pred: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let done = pred(&l);
                    seen.push(l);
                    if done {
                        return seen;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no log line {what} within {WAIT:?}; stderr so far:\n{}", seen.join("\n"));
    }
}

async fn get(http: &reqwest::Client, url: String) -> Option<(u16, String)> {
    let r = http.get(url).bearer_auth(TOKEN).send().await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.text().await.ok()?))
}

async fn until<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not within {WAIT:?}");
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
    let mut serve = Serve::start(dir.path(), &["--log-format", "json"]);
    let http = reqwest::Client::new();
    let base = serve.base.clone();

    let (status, body) = until("/healthz answers", || get(&http, format!("{base}/healthz"))).await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));

    // v2 breaches its SLO: served, judged and rolled back to v1 without a
    // command.
    let view = until("shop/checkout is rolled back", || async {
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
        metrics.contains(r#"rollback_rollbacks_total{target="shop/checkout",outcome="succeeded"} 1"#),
        "{metrics}"
    );
    let (status, ready) = get(&http, format!("{base}/readyz")).await.unwrap();
    assert_eq!((status, ready.as_str()), (200, r#"{"status":"ready","targets":1}"#));

    // --log-format json: every line a JSON object; one of them the start.
    let lines = serve.lines_until("saying the server is ready", |l| l.contains("is ready"));
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{l}");
    }

    // SIGHUP: a target added to the file is served; the first is undisturbed.
    common::write(
        dir.path(),
        "rollback.yaml",
        &file("- url: memory://shop/cart\n  revisions: [{id: v1, health: good}]\n"),
    );
    serve.signal("HUP");
    let list = until("shop/cart is served after SIGHUP", || async {
        let (_, list) = get(&http, format!("{base}/api/v1/targets")).await?;
        target_view(&list, "shop/cart").map(|_| list)
    })
    .await;
    let first = target_view(&list, "shop/checkout").unwrap();
    assert_eq!(first["phase"]["phase"], "rolled_back", "{list}");

    // SIGTERM: a graceful stop, exit code 0.
    serve.signal("TERM");
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = serve.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "rollback serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "{status}");
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
