//! What runs after a rollback: reloading serving.
//!
//! Serving resolves `models:/recommender@champion` when it loads the model, so
//! moving the alias changes nothing until serving reloads. A
//! [`PostRollbackHook`] makes it reload: [`HttpHook`] calls an endpoint of the
//! serving system.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::Url;
use rollback_core::http::{Secret, error_kind, excerpt};
use rollback_core::{Convergence, Error, ErrorKind, Result, RevisionId};

use crate::AliasMove;

/// Runs after an alias has moved.
///
/// # Contract
/// - `after_rollback` is called once the alias points at `event.to` and the
///   move is recorded with its hooks `pending`. It must be safe to call
///   again for the same move: until every hook has succeeded and the record
///   says `done`, each request for the same rollback (the engine's retry, or
///   the same request after a restart) calls the hooks again.
/// - A retryable error ([`Error::is_retryable`]) tells the engine to retry.
/// - `wait_ready` waits until serving runs the restored version (a rollout
///   restart finishing); hooks with nothing to wait for keep the default.
#[async_trait]
pub trait PostRollbackHook: fmt::Debug + Send + Sync + 'static {
    /// A short name for messages and logs.
    fn name(&self) -> &str;

    /// React to the move.
    async fn after_rollback(&self, event: &AliasMove) -> Result<()>;

    /// Wait until serving runs `version` of the model, at most `timeout`.
    async fn wait_ready(&self, version: &RevisionId, timeout: Duration) -> Result<Convergence> {
        let _ = (version, timeout);
        Ok(Convergence::Converged)
    }
}

fn _dyn_ok(_: std::sync::Arc<dyn PostRollbackHook>) {}

/// Calls an HTTP endpoint after a rollback: `POST <url>` with the
/// [`AliasMove`] as JSON (model, alias, from, to, reason, actor, at). Any 2xx
/// answer is success.
///
/// ```
/// let hook = rollback_mlflow::HttpHook::new("http://127.0.0.1:8080/reload".parse().unwrap())
///     .bearer_token("s3cret")
///     .header("X-Reload-Mode", "graceful");
/// # let _ = hook;
/// ```
#[derive(Clone)]
pub struct HttpHook {
    http: reqwest::Client,
    url: Url,
    method: reqwest::Method,
    headers: Vec<(String, String)>,
    bearer: Option<Secret>,
    timeout: Duration,
}

impl fmt::Debug for HttpHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpHook")
            .field("url", &self.url.as_str())
            .field("method", &self.method)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("bearer", &self.bearer)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl HttpHook {
    /// A hook that POSTs to `url`, with a 30 s timeout.
    pub fn new(url: Url) -> Self {
        Self::with_http_client(reqwest::Client::new(), url)
    }

    /// A hook sending through `http`.
    pub fn with_http_client(http: reqwest::Client, url: Url) -> Self {
        HttpHook {
            http,
            url,
            method: reqwest::Method::POST,
            headers: Vec::new(),
            bearer: None,
            timeout: Duration::from_secs(30),
        }
    }

    /// Use another method (`PUT`, say).
    pub fn method(mut self, method: reqwest::Method) -> Self {
        self.method = method;
        self
    }

    /// Add a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Authenticate with a bearer token.
    pub fn bearer_token(mut self, token: impl Into<Secret>) -> Self {
        self.bearer = Some(token.into());
        self
    }

    /// The timeout of the call.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

#[async_trait]
impl PostRollbackHook for HttpHook {
    fn name(&self) -> &str {
        self.url.as_str()
    }

    async fn after_rollback(&self, event: &AliasMove) -> Result<()> {
        let mut req = self
            .http
            .request(self.method.clone(), self.url.clone())
            .timeout(self.timeout)
            .json(event);
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        if let Some(token) = &self.bearer {
            req = req.bearer_auth(token.expose());
        }
        let what = format!(
            "reloading serving through {} {} after version {} was restored",
            self.method, self.url, event.to
        );
        let resp = req.send().await.map_err(|e| {
            let kind = if e.is_builder() {
                ErrorKind::InvalidInput
            } else {
                ErrorKind::Transient
            };
            Error::new(kind, format!("{what}: no answer")).with_source(e)
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body = resp.bytes().await.unwrap_or_default();
        Err(Error::new(
            error_kind(status.as_u16()),
            format!("{what}: HTTP {status}: {}", excerpt(&body)),
        ))
    }
}
