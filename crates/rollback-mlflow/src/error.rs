//! The detailed errors of this crate, mapped onto [`rollback_core::Error`].

use rollback_core::{Error, ErrorKind};

/// MLflow's own error codes (`error_code` in an error answer) that this crate
/// tells apart.
pub mod codes {
    /// The registered model, model version or tag does not exist (HTTP 404).
    pub const RESOURCE_DOES_NOT_EXIST: &str = "RESOURCE_DOES_NOT_EXIST";
    /// A parameter is invalid. MLflow also answers this, with HTTP 400, for an
    /// alias that is not set.
    pub const INVALID_PARAMETER_VALUE: &str = "INVALID_PARAMETER_VALUE";
    /// The resource exists already.
    pub const RESOURCE_ALREADY_EXISTS: &str = "RESOURCE_ALREADY_EXISTS";
    /// No valid credentials (HTTP 401).
    pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
    /// The credentials do not allow this (HTTP 403).
    pub const PERMISSION_DENIED: &str = "PERMISSION_DENIED";
    /// Throttled (HTTP 429).
    pub const REQUEST_LIMIT_EXCEEDED: &str = "REQUEST_LIMIT_EXCEEDED";
    /// The server cannot answer now (HTTP 503).
    pub const TEMPORARILY_UNAVAILABLE: &str = "TEMPORARILY_UNAVAILABLE";
}

/// What went wrong talking to an MLflow tracking server.
///
/// Every variant says what was being done (`operation`: "reading alias
/// champion of registered model recommender") so that a log line or an audit
/// record names the model. It converts into [`rollback_core::Error`] with the
/// kind the engine acts on; see [`MlflowError::kind`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MlflowError {
    /// MLflow answered with an error.
    #[error("{operation}: MLflow answered HTTP {status} {code}: {message}{hint}", hint = hint_for(*status, code))]
    Api {
        /// What was being done.
        operation: String,
        /// The HTTP status.
        status: u16,
        /// MLflow's `error_code` (see [`codes`]), or `HTTP_<status>` when the
        /// body was not an MLflow error (a proxy's answer, say).
        code: String,
        /// MLflow's message, or the start of the body.
        message: String,
    },
    /// The alias is not set on the registered model (MLflow answers HTTP 400
    /// `INVALID_PARAMETER_VALUE` for this, not 404).
    #[error(
        "alias {alias:?} is not set on registered model {model:?}; set it to the version that serves (POST /api/2.0/mlflow/registered-models/alias, or MlflowClient.set_registered_model_alias)"
    )]
    AliasNotSet {
        /// The registered model.
        model: String,
        /// The alias.
        alias: String,
    },
    /// No model version is in the stage (legacy stage mode).
    #[error("no version of registered model {model:?} is in stage {stage:?}")]
    StageEmpty {
        /// The registered model.
        model: String,
        /// The stage.
        stage: String,
    },
    /// The request got no HTTP answer: connection refused, timeout, DNS, TLS.
    #[error("{operation}: no answer from the MLflow server at {url}{timeout}; is MLFLOW_TRACKING_URI right and the server up?", timeout = if source.is_timeout() { " (timed out)" } else { "" })]
    Request {
        /// What was being done.
        operation: String,
        /// The URL asked.
        url: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// The answer was not the JSON MLflow documents.
    #[error(
        "{operation}: the answer from {url} is not an MLflow API response ({reason}); is the tracking URI the server's base URL?"
    )]
    Decode {
        /// What was being done.
        operation: String,
        /// The URL asked.
        url: String,
        /// What did not parse.
        reason: String,
    },
    /// The configuration is unusable.
    #[error("{0}")]
    Config(String),
}

fn hint_for(status: u16, code: &str) -> &'static str {
    match (status, code) {
        (401, _) | (_, codes::UNAUTHENTICATED) => {
            "; set MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
        }
        (403, _) | (_, codes::PERMISSION_DENIED) => {
            "; the credentials in use lack a permission on this registered model (MLflow needs MANAGE or EDIT to move aliases and set tags)"
        }
        _ => "",
    }
}

impl MlflowError {
    /// The meaning of this error for the engine.
    ///
    /// MLflow's `error_code` first: `RESOURCE_DOES_NOT_EXIST` and an unset
    /// alias are `NotFound`, `UNAUTHENTICATED` and `PERMISSION_DENIED`
    /// `Unauthorized`, `INVALID_PARAMETER_VALUE` `InvalidInput`,
    /// `REQUEST_LIMIT_EXCEEDED` and `TEMPORARILY_UNAVAILABLE` `Transient`,
    /// `RESOURCE_ALREADY_EXISTS` `Permanent`. Any other answer means what its
    /// status means everywhere ([`rollback_core::http::error_kind`]); no
    /// answer at all is `Transient`.
    pub fn kind(&self) -> ErrorKind {
        match self {
            MlflowError::Api { status, code, .. } => api_kind(*status, code),
            MlflowError::AliasNotSet { .. } | MlflowError::StageEmpty { .. } => ErrorKind::NotFound,
            MlflowError::Request { source, .. } if source.is_builder() => ErrorKind::InvalidInput,
            MlflowError::Request { .. } => ErrorKind::Transient,
            MlflowError::Decode { .. } => ErrorKind::Permanent,
            MlflowError::Config(_) => ErrorKind::InvalidInput,
        }
    }

    /// Whether MLflow answered with this `error_code`.
    pub fn has_code(&self, wanted: &str) -> bool {
        matches!(self, MlflowError::Api { code, .. } if code == wanted)
    }

    /// Whether this error means the thing asked for does not exist.
    pub fn is_not_found(&self) -> bool {
        self.kind() == ErrorKind::NotFound
    }
}

fn api_kind(status: u16, code: &str) -> ErrorKind {
    match code {
        codes::RESOURCE_DOES_NOT_EXIST => return ErrorKind::NotFound,
        codes::UNAUTHENTICATED | codes::PERMISSION_DENIED => return ErrorKind::Unauthorized,
        codes::REQUEST_LIMIT_EXCEEDED | codes::TEMPORARILY_UNAVAILABLE => {
            return ErrorKind::Transient;
        }
        codes::INVALID_PARAMETER_VALUE => return ErrorKind::InvalidInput,
        codes::RESOURCE_ALREADY_EXISTS => return ErrorKind::Permanent,
        _ => {}
    }
    rollback_core::http::error_kind(status)
}

impl MlflowError {
    /// The core error, its message prefixed with `context` (the target).
    /// Only a network cause is kept as the source, so that
    /// [`Error::full_message`] does not repeat the message.
    pub(crate) fn into_core(self, context: Option<&str>) -> Error {
        let kind = self.kind();
        let message = match context {
            Some(c) => format!("{c}: {self}"),
            None => self.to_string(),
        };
        match self {
            MlflowError::Request { source, .. } => Error::new(kind, message).with_source(source),
            _ => Error::new(kind, message),
        }
    }
}

impl From<MlflowError> for Error {
    fn from(e: MlflowError) -> Self {
        e.into_core(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: &str) -> MlflowError {
        MlflowError::Api {
            operation: "reading x".into(),
            status,
            code: code.into(),
            message: "m".into(),
        }
    }

    #[test]
    fn mlflow_codes_map_to_core_kinds() {
        assert_eq!(
            api(404, codes::RESOURCE_DOES_NOT_EXIST).kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            api(400, codes::INVALID_PARAMETER_VALUE).kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(api(401, "HTTP_401").kind(), ErrorKind::Unauthorized);
        assert_eq!(
            api(403, codes::PERMISSION_DENIED).kind(),
            ErrorKind::Unauthorized
        );
        assert_eq!(
            api(429, codes::REQUEST_LIMIT_EXCEEDED).kind(),
            ErrorKind::Transient
        );
        assert_eq!(api(503, "HTTP_503").kind(), ErrorKind::Transient);
        assert_eq!(api(500, "INTERNAL_ERROR").kind(), ErrorKind::Transient);
        assert_eq!(
            api(400, codes::RESOURCE_ALREADY_EXISTS).kind(),
            ErrorKind::Permanent
        );
        assert_eq!(api(400, "BAD_REQUEST").kind(), ErrorKind::InvalidInput);
        // 409 is a conflict everywhere now (it was Permanent here).
        assert_eq!(api(409, "HTTP_409").kind(), ErrorKind::Conflict);
        let e = MlflowError::AliasNotSet {
            model: "m".into(),
            alias: "champion".into(),
        };
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn plain_statuses_mean_what_they_mean_everywhere() {
        for status in 300..=599 {
            assert_eq!(
                api(status, &format!("HTTP_{status}")).kind(),
                rollback_core::http::error_kind(status),
                "HTTP {status} without an MLflow error code"
            );
            assert_eq!(
                api(status, "SOME_CODE_THIS_CRATE_DOES_NOT_KNOW").kind(),
                rollback_core::http::error_kind(status),
                "HTTP {status} with an unknown error code"
            );
        }
        // What differed before the one mapping.
        assert_eq!(api(425, "HTTP_425").kind(), ErrorKind::Transient);
        assert_eq!(api(410, "HTTP_410").kind(), ErrorKind::NotFound);
        assert_eq!(api(501, "HTTP_501").kind(), ErrorKind::Unsupported);
        assert_eq!(api(413, "HTTP_413").kind(), ErrorKind::InvalidInput);
    }

    #[test]
    fn messages_say_what_to_do() {
        let e: Error = api(401, codes::UNAUTHENTICATED).into();
        assert_eq!(e.kind(), ErrorKind::Unauthorized);
        assert!(
            e.message()
                .starts_with("reading x: MLflow answered HTTP 401 UNAUTHENTICATED: m"),
            "{}",
            e.message()
        );
        assert!(
            e.message().contains("MLFLOW_TRACKING_TOKEN"),
            "{}",
            e.message()
        );
        let e: Error = MlflowError::AliasNotSet {
            model: "rec".into(),
            alias: "champion".into(),
        }
        .into();
        assert!(
            e.message()
                .contains("alias \"champion\" is not set on registered model \"rec\""),
            "{}",
            e.message()
        );
        assert_eq!(e.full_message(), e.message(), "no repetition");
    }
}
