//! The detailed errors of this crate, mapped onto [`rollback_core::Error`].

use std::time::Duration;

use rollback_core::{Error, ErrorKind};

/// What went wrong talking to Prometheus or reading its answer.
///
/// Every variant names the query (or URL) it is about, so an audit record or a
/// log line says which probe failed and why. It converts into
/// [`rollback_core::Error`] with the kind the engine needs: transient for the
/// network, timeouts and 5xx, invalid input for a query Prometheus refuses or
/// a result shape the probe cannot judge.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrometheusError {
    /// The request did not get an answer in time.
    #[error(
        "query {query:?} to {url} timed out after {timeout:?}; raise the probe's timeout or simplify the query"
    )]
    Timeout {
        /// The PromQL.
        query: String,
        /// The endpoint.
        url: String,
        /// The configured timeout.
        timeout: Duration,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// The request failed before an HTTP answer (connection refused, DNS, TLS).
    #[error("query {query:?} to {url} failed: could not reach Prometheus")]
    Request {
        /// The PromQL.
        query: String,
        /// The endpoint.
        url: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// Prometheus answered with an error: its own `errorType` and `error`
    /// when the body carried them, else an excerpt of the body.
    #[error("query {query:?} to {url} failed with HTTP {status}: {message}")]
    Status {
        /// The PromQL.
        query: String,
        /// The endpoint.
        url: String,
        /// The HTTP status.
        status: u16,
        /// Prometheus' `errorType` (`bad_data`, `execution`, `timeout`, …), if any.
        error_type: Option<String>,
        /// Prometheus' own message, or the start of the body.
        message: String,
    },
    /// The answer was not the JSON the Prometheus HTTP API documents.
    #[error(
        "query {query:?} to {url}: the answer is not a Prometheus API response ({reason}); is the URL the Prometheus server's base URL?"
    )]
    Decode {
        /// The PromQL.
        query: String,
        /// The endpoint.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// The result has a shape the probe cannot turn into one number.
    #[error("query {query:?}: {reason}")]
    Shape {
        /// The PromQL.
        query: String,
        /// What was wrong and what to do.
        reason: String,
    },
    /// The client or probe is configured wrongly.
    #[error("invalid Prometheus configuration: `{field}`: {reason}")]
    Config {
        /// The field, like `url`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl PrometheusError {
    /// The meaning of this error for the engine.
    pub fn kind(&self) -> ErrorKind {
        match self {
            PrometheusError::Timeout { .. } | PrometheusError::Request { .. } => {
                ErrorKind::Transient
            }
            PrometheusError::Status {
                status, error_type, ..
            } => match error_type.as_deref() {
                // Prometheus says more than its status: a query that timed
                // out or was cancelled may pass; then the status decides,
                // as it does for every backend.
                Some("timeout" | "canceled" | "unavailable") => ErrorKind::Transient,
                Some("bad_data") => ErrorKind::InvalidInput,
                _ => rollback_core::http::error_kind(*status),
            },
            PrometheusError::Decode { .. } => ErrorKind::Permanent,
            PrometheusError::Shape { .. } | PrometheusError::Config { .. } => {
                ErrorKind::InvalidInput
            }
        }
    }

    pub(crate) fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        PrometheusError::Config {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<PrometheusError> for Error {
    fn from(e: PrometheusError) -> Self {
        let kind = e.kind();
        let message = e.to_string();
        match e {
            PrometheusError::Timeout { source, .. } | PrometheusError::Request { source, .. } => {
                Error::new(kind, message).with_source(source)
            }
            _ => Error::new(kind, message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, error_type: Option<&str>) -> PrometheusError {
        PrometheusError::Status {
            query: "up".into(),
            url: "http://x/api/v1/query".into(),
            status,
            error_type: error_type.map(str::to_owned),
            message: "m".into(),
        }
    }

    #[test]
    fn a_plain_status_means_what_it_means_for_every_backend() {
        for code in 300..=599 {
            assert_eq!(
                status(code, None).kind(),
                rollback_core::http::error_kind(code),
                "HTTP {code}"
            );
        }
    }

    #[test]
    fn kinds_follow_status_and_error_type() {
        assert_eq!(
            status(400, Some("bad_data")).kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            status(422, Some("execution")).kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(status(503, Some("timeout")).kind(), ErrorKind::Transient);
        assert_eq!(status(422, Some("timeout")).kind(), ErrorKind::Transient);
        assert_eq!(status(502, None).kind(), ErrorKind::Transient);
        assert_eq!(status(429, None).kind(), ErrorKind::Transient);
        assert_eq!(status(401, None).kind(), ErrorKind::Unauthorized);
        assert_eq!(status(404, None).kind(), ErrorKind::NotFound);
        assert_eq!(status(418, None).kind(), ErrorKind::Permanent);
        let core: Error = status(400, Some("bad_data")).into();
        assert_eq!(core.kind(), ErrorKind::InvalidInput);
        assert!(core.message().contains("HTTP 400: m"), "{}", core.message());
    }
}
