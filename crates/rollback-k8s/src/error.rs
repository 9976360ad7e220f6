//! How Kubernetes API failures map onto the engine's [`ErrorKind`]s, with
//! messages that say what was attempted, on which Deployment, and what to do.

use rollback_core::{Error, ErrorKind, http};

/// What went wrong talking to the API server, before it becomes a core [`Error`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiFailure {
    /// The server answered with a `Status` (4xx, 5xx).
    #[error("{reason} ({code}): {message}")]
    Status {
        code: u16,
        reason: String,
        message: String,
    },
    /// The request never got an answer (connection, TLS, timeout, decoding).
    #[error("{0}")]
    Transport(String),
}

impl From<kube::Error> for ApiFailure {
    fn from(err: kube::Error) -> Self {
        match err {
            kube::Error::Api(status) => ApiFailure::Status {
                code: status.code,
                reason: status.reason.clone(),
                message: status.message.clone(),
            },
            other => ApiFailure::Transport(other.to_string()),
        }
    }
}

impl ApiFailure {
    /// The HTTP status code, if the server answered.
    pub(crate) fn code(&self) -> Option<u16> {
        match self {
            ApiFailure::Status { code, .. } => Some(*code),
            ApiFailure::Transport(_) => None,
        }
    }

    /// The engine's meaning of this failure: the workspace's one reading
    /// of an HTTP status ([`http::error_kind`]); no answer at all is
    /// transient.
    pub(crate) fn kind(&self) -> ErrorKind {
        self.code().map_or(ErrorKind::Transient, http::error_kind)
    }

    /// A core error: `attempt` says what was being done ("patching Deployment
    /// shop/checkout"), and the message adds what the user can do about it.
    pub(crate) fn into_error(
        self,
        attempt: &str,
        verb: &str,
        resource: &str,
        namespace: &str,
    ) -> Error {
        let kind = self.kind();
        let hint = match (kind, self.code()) {
            (ErrorKind::Unauthorized, Some(401)) => {
                " (the credentials were rejected; check the kubeconfig's user and token)".to_owned()
            }
            (ErrorKind::Unauthorized, _) => format!(
                " (RBAC denied it; grant `{verb}` on `{resource}` in namespace `{namespace}` to this identity, \
                 and check with `kubectl auth can-i {verb} {resource} -n {namespace}`)"
            ),
            (ErrorKind::Conflict, _) => " (someone else changed the object meanwhile; read it again and retry)".to_owned(),
            (ErrorKind::Transient, Some(429)) => " (the API server is throttling; retry later)".to_owned(),
            (ErrorKind::Transient, Some(_)) => " (the API server failed; retry later)".to_owned(),
            (ErrorKind::Transient, None) => " (the API server could not be reached; check the kubeconfig's server and the network)".to_owned(),
            _ => String::new(),
        };
        let message = format!("{attempt} failed: {self}{hint}");
        Error::new(kind, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> ApiFailure {
        ApiFailure::Status {
            code,
            reason: "R".into(),
            message: "m".into(),
        }
    }

    #[test]
    fn status_codes_map_to_kinds_and_retryability() {
        for code in 300..=599 {
            let e = status(code).into_error("reading x", "get", "deployments", "shop");
            assert_eq!(e.kind(), http::error_kind(code), "HTTP {code}");
        }
        let cases = [
            (404, ErrorKind::NotFound, false),
            (401, ErrorKind::Unauthorized, false),
            (403, ErrorKind::Unauthorized, false),
            (409, ErrorKind::Conflict, true),
            (422, ErrorKind::InvalidInput, false),
            (429, ErrorKind::Transient, true),
            (500, ErrorKind::Transient, true),
            (503, ErrorKind::Transient, true),
            (418, ErrorKind::Permanent, false),
            (408, ErrorKind::Transient, true),
            (501, ErrorKind::Unsupported, false),
        ];
        for (code, kind, retryable) in cases {
            let e = status(code).into_error(
                "patching Deployment shop/web",
                "patch",
                "deployments",
                "shop",
            );
            assert_eq!((code, e.kind(), e.is_retryable()), (code, kind, retryable));
            assert!(
                e.message()
                    .starts_with("patching Deployment shop/web failed: R ("),
                "{}",
                e.message()
            );
        }
        let e = ApiFailure::Transport("connection refused".into()).into_error(
            "reading x",
            "get",
            "deployments",
            "shop",
        );
        assert_eq!(e.kind(), ErrorKind::Transient);
        assert!(
            e.message().contains("could not be reached"),
            "{}",
            e.message()
        );
        let e = status(401).into_error("reading x", "get", "deployments", "shop");
        assert!(
            e.message().contains("credentials were rejected"),
            "{}",
            e.message()
        );
    }
}
