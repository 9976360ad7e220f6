//! The one error type of the engine and its backends.

use std::fmt;

/// What kind of failure an [`Error`] is. Backends keep their own detailed
/// errors and map them onto one of these meanings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The target, revision or resource does not exist.
    NotFound,
    /// Someone else changed the resource concurrently (optimistic concurrency).
    Conflict,
    /// The caller is not allowed to do this (401/403, or an [`crate::auth::Authorizer`] denial).
    Unauthorized,
    /// The backend cannot do this at all (see `capabilities()`).
    Unsupported,
    /// A passing failure: network trouble, throttling, 5xx. Worth retrying.
    Transient,
    /// A failure that will not go away by retrying.
    Permanent,
    /// The input (policy, revision, request, file) is invalid.
    InvalidInput,
    /// Persisted data is corrupt; nothing was reset.
    Corrupt,
}

impl ErrorKind {
    /// A short lowercase name, as written in audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Transient => "transient",
            ErrorKind::Permanent => "permanent",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::Corrupt => "corrupt",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error of the engine or of a backend: a kind, a message that says what was
/// attempted on which target and what the user can do, and an optional source.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    retryable: Option<bool>,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// A new error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            retryable: None,
            message: message.into(),
            source: None,
        }
    }

    /// Attach the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Shorthand for [`ErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// Shorthand for [`ErrorKind::InvalidInput`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// Shorthand for [`ErrorKind::Transient`].
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Transient, message)
    }

    /// Shorthand for [`ErrorKind::Permanent`].
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Permanent, message)
    }

    /// Shorthand for [`ErrorKind::Unsupported`].
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the source chain.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Say whether retrying may help, overriding what the kind implies: a
    /// `Conflict` that re-reading cannot resolve (someone moved the target
    /// on purpose) is not retryable.
    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.retryable = Some(retryable);
        self
    }

    /// Whether retrying the same call may succeed: by default transient
    /// failures and optimistic-concurrency conflicts.
    pub fn is_retryable(&self) -> bool {
        self.retryable.unwrap_or(matches!(
            self.kind,
            ErrorKind::Transient | ErrorKind::Conflict
        ))
    }

    /// The message followed by every source in the chain, `: `-separated.
    pub fn full_message(&self) -> String {
        let mut out = self.message.clone();
        let mut next = std::error::Error::source(self);
        while let Some(cause) = next {
            out.push_str(": ");
            out.push_str(&cause.to_string());
            next = cause.source();
        }
        out
    }
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_kinds() {
        assert!(Error::transient("x").is_retryable());
        assert!(Error::new(ErrorKind::Conflict, "x").is_retryable());
        assert!(!Error::permanent("x").is_retryable());
        assert!(!Error::not_found("x").is_retryable());
        assert!(
            !Error::new(ErrorKind::Conflict, "moved")
                .with_retryable(false)
                .is_retryable()
        );
    }

    #[test]
    fn full_message_walks_the_chain() {
        let io = std::io::Error::other("disk on fire");
        let e = Error::permanent("saving state of shop/checkout").with_source(io);
        assert_eq!(
            e.full_message(),
            "saving state of shop/checkout: disk on fire"
        );
        assert_eq!(e.to_string(), "saving state of shop/checkout");
    }
}
