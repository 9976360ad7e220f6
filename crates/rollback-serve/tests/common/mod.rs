//! Helpers of the server's tests: watch files in temporary directories, a
//! registry whose `shelf://NAME` targets are in-memory targets the test
//! holds (so it can deploy while the server runs), a server started on a
//! free port, an HTTP client that speaks as a bot would, and waiting for a
//! condition with a generous bound (never a timing assertion).
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rollback_core::audit::{AuditEntry, AuditRecord, MemoryAuditSink};
use rollback_core::memory::{InMemoryRollbacker, InMemoryTarget};
use rollback_core::registry::{Backend, Options, Registry, TargetScheme, TargetUrl};
use rollback_core::{Error, Result, RevisionRecord};
use rollback_serve::Server;

/// In-memory targets the test holds, served as `shelf://NAME`.
#[derive(Debug, Clone, Default)]
pub struct Shelf(Arc<Mutex<BTreeMap<String, (InMemoryTarget, InMemoryRollbacker)>>>);

impl Shelf {
    /// Put a target `name` with `revisions` (oldest first) on the shelf.
    pub fn put(&self, name: &str, revisions: &[&str]) -> (InMemoryTarget, InMemoryRollbacker) {
        let t = InMemoryTarget::new(name, revisions.iter().map(|r| RevisionRecord::new(*r)))
            .expect("an in-memory target");
        let r = InMemoryRollbacker::new(&t);
        self.0
            .lock()
            .unwrap()
            .insert(name.to_owned(), (t.clone(), r.clone()));
        (t, r)
    }

    /// The registry: `shelf://` targets and `scripted` probes.
    pub fn registry(&self) -> Registry {
        Registry::with_memory().scheme(self.clone())
    }
}

#[async_trait]
impl TargetScheme for Shelf {
    fn scheme(&self) -> &'static str {
        "shelf"
    }
    fn form(&self) -> &'static str {
        "shelf://NAME"
    }
    fn check(&self, url: &TargetUrl, _: &Options) -> Result<()> {
        if self.0.lock().unwrap().contains_key(url.rest()) {
            Ok(())
        } else {
            Err(url.error("not on the shelf"))
        }
    }
    async fn connect(&self, url: &TargetUrl, _: &Options) -> Result<Backend> {
        let (t, r) = self
            .0
            .lock()
            .unwrap()
            .get(url.rest())
            .cloned()
            .ok_or_else(|| Error::not_found("not on the shelf"))?;
        Ok(Backend::new(t, r))
    }
}

/// Write `text` to `dir/name`; its path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Variables of the tests' watch files.
pub fn env(name: &str) -> Option<String> {
    match name {
        "BOT_TOKEN" => Some("bot-token-0123456789".into()),
        "VIEWER_TOKEN" => Some("viewer-token-0123456789".into()),
        "AM_TOKEN" => Some("alertmanager-token".into()),
        _ => None,
    }
}

pub const BOT: &str = "bot-token-0123456789";
pub const VIEWER: &str = "viewer-token-0123456789";

/// The serve section of most tests: a bot that may do everything, a
/// viewer that may only read, the file checked every 100ms.
pub const SERVE: &str = r#"serve:
  reload_check: 100ms
  shutdown_grace: 5s
  operators:
    - {actor: chatops-bot, token: "${BOT_TOKEN}", commands: [pause, resume, approve, rollback, promote]}
    - {actor: viewer, token: "${VIEWER_TOKEN}"}
"#;

/// Start a server for `file` on a free loopback port, with `registry` and
/// the tests' variables; a start failure fails the test with its reason.
pub async fn start(file: &Path, registry: Registry, audit: &MemoryAuditSink) -> Server {
    Server::builder(file)
        .listen("127.0.0.1:0".parse().unwrap())
        .registry(registry)
        .env(env)
        .audit(Arc::new(audit.clone()))
        .start()
        .await
        .unwrap_or_else(|e| panic!("the server did not start: {}", e.full_message()))
}

/// Wait until `f` holds, checking every 20ms, for at most `within`;
/// panics with `what` (and what `show` says) when it never does.
pub async fn until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !f() {
        if tokio::time::Instant::now() > deadline {
            panic!("{what}: not within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The entries of the audit records of `target`, as short words.
pub fn events(audit: &MemoryAuditSink, target: &str) -> Vec<String> {
    audit
        .records()
        .iter()
        .filter(|r| r.target.as_str() == target)
        .filter_map(word)
        .collect()
}

fn word(r: &AuditRecord) -> Option<String> {
    Some(match &r.entry {
        AuditEntry::WatchStarted { .. } => format!("started {}", r.revision),
        AuditEntry::WatchResumed { phase } => format!("resumed {} {phase}", r.revision),
        AuditEntry::Transition { from, to } => format!("{from}->{to}"),
        AuditEntry::Decided { decision, .. } => format!("decided {decision}"),
        AuditEntry::CommandAccepted { command, .. } => format!("{} {command}", r.actor),
        AuditEntry::CommandRejected { command, .. } => format!("{} {command} rejected", r.actor),
        AuditEntry::CommandDenied { command, .. } => format!("{} {command} denied", r.actor),
        AuditEntry::NotificationFailed {
            channel,
            notification,
            ..
        } => format!("notification {notification} to {channel} failed"),
        _ => return None,
    })
}

/// Whether the audit holds a record of `target` that `f` accepts.
pub fn seen(audit: &MemoryAuditSink, target: &str, f: impl Fn(&AuditEntry) -> bool) -> bool {
    audit
        .records()
        .iter()
        .any(|r| r.target.as_str() == target && f(&r.entry))
}

/// A bot's HTTP client.
pub struct Bot {
    pub http: reqwest::Client,
    pub base: String,
    pub token: Option<String>,
}

impl Bot {
    pub fn new(server: &Server, token: Option<&str>) -> Bot {
        Bot {
            http: reqwest::Client::new(),
            base: server.url(),
            token: token.map(str::to_owned),
        }
    }

    fn auth(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// GET `path`: the status and the JSON body.
    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self
            .auth(self.http.get(format!("{}{path}", self.base)))
            .send()
            .await
            .expect("a response");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// POST `path` with `body` (empty when `None`): the status and the JSON body.
    pub async fn post(&self, path: &str, body: Option<&str>) -> (u16, serde_json::Value) {
        let mut r = self.auth(self.http.post(format!("{}{path}", self.base)));
        if let Some(b) = body {
            r = r
                .header("content-type", "application/json")
                .body(b.to_owned());
        }
        let r = r.send().await.expect("a response");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }
}

/// [`until`] with an async condition.
pub async fn until_async<F, Fut>(what: &str, within: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !f().await {
        if tokio::time::Instant::now() > deadline {
            panic!("{what}: not within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
