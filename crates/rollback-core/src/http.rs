//! Network-free HTTP helpers every backend shares: what a status code means
//! to the engine, credentials as configuration, and a short excerpt of a body
//! for error messages.
//!
//! They live here, not in each backend, so that the backends agree: a 408
//! is worth retrying whether Prometheus, MLflow or the Kubernetes API said it.

use std::fmt;

use crate::ErrorKind;

/// What an HTTP error status means to the engine.
///
/// | status | kind |
/// |---|---|
/// | 401, 403 | [`ErrorKind::Unauthorized`] |
/// | 404, 410 | [`ErrorKind::NotFound`] |
/// | 409 | [`ErrorKind::Conflict`] (retryable: re-read and try again) |
/// | 408, 425, 429, 500, 502–504 and other 5xx | [`ErrorKind::Transient`] |
/// | 501 | [`ErrorKind::Unsupported`] |
/// | 400, 413, 415, 422 | [`ErrorKind::InvalidInput`] |
/// | any other | [`ErrorKind::Permanent`] |
///
/// A backend whose server says more than its status (MLflow's `error_code`,
/// Prometheus' `errorType`, an AWS error code) refines this with it, and
/// falls back to this for the rest.
///
/// ```
/// use rollback_core::{ErrorKind, http};
/// assert_eq!(http::error_kind(408), ErrorKind::Transient);
/// assert_eq!(http::error_kind(409), ErrorKind::Conflict);
/// assert_eq!(http::error_kind(418), ErrorKind::Permanent);
/// ```
pub fn error_kind(status: u16) -> ErrorKind {
    match status {
        401 | 403 => ErrorKind::Unauthorized,
        404 | 410 => ErrorKind::NotFound,
        409 => ErrorKind::Conflict,
        501 => ErrorKind::Unsupported,
        408 | 425 | 429 | 500..=599 => ErrorKind::Transient,
        400 | 413 | 415 | 422 => ErrorKind::InvalidInput,
        _ => ErrorKind::Permanent,
    }
}

/// The longest excerpt of a body [`excerpt`] keeps, in characters.
pub const EXCERPT_CHARS: usize = 300;

/// The start of a response body for an error message: trimmed, at most
/// [`EXCERPT_CHARS`] characters (an ellipsis says it was cut), invalid UTF-8
/// replaced, control characters escaped so a body cannot forge log lines,
/// and `(empty body)` for nothing.
///
/// ```
/// use rollback_core::http::excerpt;
/// assert_eq!(excerpt(b"  not found\n"), "not found");
/// assert_eq!(excerpt(b""), "(empty body)");
/// assert_eq!(excerpt(b"a\nb"), "a\\nb");
/// assert!(excerpt("x".repeat(1000).as_bytes()).ends_with('…'));
/// ```
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_owned();
    }
    let mut out = String::new();
    let mut chars = text.chars();
    for c in chars.by_ref().take(EXCERPT_CHARS) {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

/// A secret string (a token, a password): never shown by `Debug` or
/// `Display`, and never written to an audit record.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, to put in a request.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_owned())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

/// How a client authenticates to an HTTP API, as configuration:
/// `{bearer: {token: …}}` or `{basic: {username: …, password: …}}`.
/// No authentication is `None` where an `Option<Auth>` is configured.
///
/// ```
/// use rollback_core::http::Auth;
/// let a: Auth = serde_json::from_str(r#"{"bearer": {"token": "t"}}"#).unwrap();
/// assert_eq!(a, Auth::bearer("t"));
/// assert_eq!(format!("{a:?}"), r#"Bearer { token: Secret(***) }"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token.
        token: Secret,
    },
    /// HTTP basic authentication.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: Secret,
    },
}

impl Auth {
    /// Bearer authentication with `token`.
    pub fn bearer(token: impl Into<Secret>) -> Self {
        Auth::Bearer {
            token: token.into(),
        }
    }

    /// Basic authentication.
    pub fn basic(username: impl Into<String>, password: impl Into<Secret>) -> Self {
        Auth::Basic {
            username: username.into(),
            password: password.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_one_meaning() {
        let cases = [
            (400, ErrorKind::InvalidInput),
            (401, ErrorKind::Unauthorized),
            (403, ErrorKind::Unauthorized),
            (404, ErrorKind::NotFound),
            (408, ErrorKind::Transient),
            (409, ErrorKind::Conflict),
            (410, ErrorKind::NotFound),
            (413, ErrorKind::InvalidInput),
            (415, ErrorKind::InvalidInput),
            (418, ErrorKind::Permanent),
            (422, ErrorKind::InvalidInput),
            (425, ErrorKind::Transient),
            (429, ErrorKind::Transient),
            (500, ErrorKind::Transient),
            (501, ErrorKind::Unsupported),
            (502, ErrorKind::Transient),
            (503, ErrorKind::Transient),
            (504, ErrorKind::Transient),
            (599, ErrorKind::Transient),
            (302, ErrorKind::Permanent),
        ];
        for (status, kind) in cases {
            assert_eq!(error_kind(status), kind, "HTTP {status}");
        }
    }

    #[test]
    fn excerpts_are_short_and_cannot_forge_lines() {
        let long = "é".repeat(400);
        let e = excerpt(long.as_bytes());
        assert_eq!(e.chars().count(), EXCERPT_CHARS + 1);
        assert!(e.ends_with('…'));
        assert_eq!(excerpt(&[0xff, b'o', b'k']), "\u{fffd}ok");
        assert!(!excerpt(b"line\n2024 decision rollback").contains('\n'));
    }

    #[test]
    fn secrets_stay_hidden() {
        let a = Auth::basic("me", "hunter2");
        assert!(!format!("{a:?}").contains("hunter2"));
        let back: Auth = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(back, a);
    }
}
