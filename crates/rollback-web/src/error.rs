//! What can go wrong in a web probe, and what each failure means to the engine.

use rollback_core::{Error, ErrorKind, http};

/// A web probe's error. Requests are named by method and the URL without
/// its query (which may hold a key), never with header values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebError {
    /// The configuration is invalid.
    #[error("field `{field}`: {reason}")]
    Config {
        /// The field, like `json_path`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The request could not be sent or answered in time.
    #[error("{request}: {reason}")]
    Request {
        /// `GET https://host/path`.
        request: String,
        /// Why, in words.
        reason: String,
        /// Whether it timed out.
        timeout: bool,
    },
    /// The server answered with a status that is not 2xx.
    #[error("{request}: HTTP {status}: {excerpt}")]
    Status {
        /// `GET https://host/path`.
        request: String,
        /// The status.
        status: u16,
        /// The start of the body.
        excerpt: String,
    },
    /// The answer is not JSON.
    #[error("{request}: the answer is not JSON ({reason}): {excerpt}")]
    NotJson {
        /// `GET https://host/path`.
        request: String,
        /// The parser's words.
        reason: String,
        /// The start of the body.
        excerpt: String,
    },
    /// The path matched something that is not one number.
    #[error("{request}: {path}: {reason}")]
    Shape {
        /// `GET https://host/path`.
        request: String,
        /// The JSONPath.
        path: String,
        /// What it matched, and what to do.
        reason: String,
    },
}

impl WebError {
    pub(crate) fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        WebError::Config {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// What the failure means to the engine: the status by
    /// [`rollback_core::http::error_kind`], a timeout or an unreachable
    /// server transient, a wrong shape or configuration invalid input.
    pub fn kind(&self) -> ErrorKind {
        match self {
            WebError::Config { .. } | WebError::Shape { .. } => ErrorKind::InvalidInput,
            WebError::Request { .. } => ErrorKind::Transient,
            WebError::Status { status, .. } => http::error_kind(*status),
            WebError::NotJson { .. } => ErrorKind::Permanent,
        }
    }
}

impl From<WebError> for Error {
    fn from(e: WebError) -> Self {
        Error::new(e.kind(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_mean_what_core_says() {
        let status = |s| WebError::Status {
            request: "GET http://x/".into(),
            status: s,
            excerpt: "no".into(),
        };
        assert_eq!(status(403).kind(), ErrorKind::Unauthorized);
        assert_eq!(status(429).kind(), ErrorKind::Transient);
        assert_eq!(status(400).kind(), ErrorKind::InvalidInput);
        let e: Error = status(503).into();
        assert_eq!(e.kind(), ErrorKind::Transient);
        assert!(e.message().contains("HTTP 503: no"), "{e}");
    }
}
