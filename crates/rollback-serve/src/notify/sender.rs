//! Delivering one channel's notices: the payload of its kind, posted with
//! a timeout, retried with backoff.

use std::sync::Arc;
use std::time::Duration;

use rollback_core::http::{Auth, Secret, excerpt};
use rollback_core::policy::RetryPolicy;

use super::{Notice, slack, teams, webhook};
use crate::config::ChannelKind;

/// One channel's delivery settings.
pub(super) struct Sender {
    pub(super) name: Arc<str>,
    pub(super) kind: ChannelKind,
    /// Never shown: Slack and Teams URLs hold their credential.
    pub(super) url: Secret,
    pub(super) auth: Option<Auth>,
    pub(super) http: reqwest::Client,
    pub(super) timeout: Duration,
    pub(super) retry: RetryPolicy,
}

/// Why one try failed.
struct Failure {
    retryable: bool,
    message: String,
    retry_after: Option<Duration>,
}

/// An error's message and its sources, without the URL (a secret).
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

impl Sender {
    /// The body this channel posts for `n`.
    pub(super) fn body(&self, n: &Notice) -> serde_json::Value {
        match self.kind {
            ChannelKind::Slack => slack::payload(n),
            ChannelKind::Teams => teams::payload(n),
            ChannelKind::Webhook => webhook::payload(n),
        }
    }

    /// Post `n` until it is taken or the retries run out: the tries made,
    /// or the tries and the last error.
    pub(super) async fn deliver(&self, n: &Notice) -> Result<u32, (u32, String)> {
        let body = self.body(n);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let failure = match self.post(&body).await {
                Ok(()) => return Ok(attempt),
                Err(f) => f,
            };
            let wait = failure
                .retryable
                .then(|| self.retry.jittered(attempt, fastrand::f64()))
                .flatten();
            let Some(wait) = wait else {
                return Err((attempt, failure.message));
            };
            // A 429's Retry-After, up to the longest wait of the policy.
            let wait = match failure.retry_after {
                Some(after) => after.min(self.retry.max_backoff).max(wait),
                None => wait,
            };
            tracing::debug!(channel = %self.name, attempt, "notification failed, retrying in {wait:?}: {}", failure.message);
            tokio::time::sleep(wait).await;
        }
    }

    async fn post(&self, body: &serde_json::Value) -> Result<(), Failure> {
        let mut request = self
            .http
            .post(self.url.expose())
            .timeout(self.timeout)
            .json(body);
        request = match &self.auth {
            Some(Auth::Bearer { token }) => request.bearer_auth(token.expose()),
            Some(Auth::Basic { username, password }) => {
                request.basic_auth(username, Some(password.expose()))
            }
            None => request,
        };
        let response = request.send().await.map_err(|e| Failure {
            retryable: true,
            message: describe(e),
            retry_after: None,
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response.bytes().await.unwrap_or_default();
        let kind = rollback_core::http::error_kind(status.as_u16());
        Err(Failure {
            retryable: matches!(
                kind,
                rollback_core::ErrorKind::Transient | rollback_core::ErrorKind::Conflict
            ),
            message: format!("HTTP {}: {}", status.as_u16(), excerpt(&text)),
            retry_after,
        })
    }
}
