//! CodeDeploy API failures and their meaning for the engine.
//!
//! Every SDK error is turned into an [`ApiError`] (operation, AWS error code,
//! message, HTTP status), which then maps onto one [`ErrorKind`] with a
//! message naming the deployment group and what the user can do. The
//! `ApiError` stays attached as the source of the engine error.

use std::fmt;

use aws_sdk_codedeploy::error::{ProvideErrorMetadata, SdkError};
use rollback_core::{Error, ErrorKind};

/// AWS error codes that mean "slow down" or "try again": throttling, and
/// the service's own passing failures.
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ProvisionedThroughputExceededException",
    "SlowDown",
    "PriorRequestNotComplete",
    "InternalFailure",
    "InternalServerError",
    "InternalError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// Credentials that are missing, wrong or expired, or a policy that denies.
const UNAUTHORIZED_CODES: &[&str] = &[
    "AccessDeniedException",
    "AccessDenied",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "ExpiredToken",
    "ExpiredTokenException",
    "NotAuthorized",
    "UnauthorizedOperation",
    "AuthFailure",
];

/// Things that do not exist.
const NOT_FOUND_CODES: &[&str] = &[
    "ApplicationDoesNotExistException",
    "DeploymentGroupDoesNotExistException",
    "DeploymentDoesNotExistException",
    "DeploymentConfigDoesNotExistException",
    "RevisionDoesNotExistException",
];

/// The deployment group already runs a deployment: CodeDeploy allows one
/// active deployment per group, so this passes once that one completes.
const CONFLICT_CODES: &[&str] = &["DeploymentLimitExceededException"];

/// Final refusals that are not about the input's shape.
const PERMANENT_CODES: &[&str] = &[
    "DeploymentAlreadyCompletedException",
    "UnsupportedActionForDeploymentTypeException",
    "AlarmsLimitExceededException",
];

/// How a call failed before or after reaching CodeDeploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// CodeDeploy answered with an error.
    Service,
    /// The request could not be built (bad input, missing configuration).
    Construction,
    /// The request could not be sent: connection refused, DNS, TLS.
    Dispatch,
    /// The request or a connection timed out.
    Timeout,
    /// The response could not be read or parsed.
    Response,
}

/// One failed CodeDeploy API call.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) operation: &'static str,
    pub(crate) failure: Failure,
    pub(crate) code: Option<String>,
    pub(crate) message: Option<String>,
    pub(crate) http_status: Option<u16>,
    /// A connector or construction failure caused by the caller's configuration.
    pub(crate) user_caused: bool,
    /// The request could not be signed: credentials missing or failing to load.
    pub(crate) credentials: Option<Credentials>,
    pub(crate) detail: String,
}

/// Why a request could not be signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Credentials {
    /// None configured, or the configuration is wrong: will not pass.
    Missing,
    /// The provider failed or timed out (IMDS, STS, SSO): may pass.
    Unavailable,
}

/// Look through an error's sources for a credentials failure.
fn credentials_problem(err: &(dyn std::error::Error + 'static)) -> Option<Credentials> {
    use aws_credential_types::provider::error::CredentialsError;
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = next {
        if let Some(c) = e.downcast_ref::<CredentialsError>() {
            return Some(match c {
                CredentialsError::ProviderTimedOut(_) | CredentialsError::ProviderError(_) => {
                    Credentials::Unavailable
                }
                _ => Credentials::Missing,
            });
        }
        // No credentials provider at all: the SDK finds no identity to sign with.
        let text = e.to_string();
        if text.contains("failed to select an auth scheme") || text.contains("no identity resolver")
        {
            return Some(Credentials::Missing);
        }
        next = e.source();
    }
    None
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CodeDeploy {}", self.operation)?;
        match (&self.code, &self.message) {
            (Some(code), Some(message)) if !message.is_empty() => {
                write!(f, " failed with {code}: {message}")?
            }
            (Some(code), _) => write!(f, " failed with {code}")?,
            (None, _) => write!(f, " failed: {}", self.detail)?,
        }
        if let Some(status) = self.http_status {
            write!(f, " (HTTP {status})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// Capture an SDK error of `operation` (the AWS operation name, e.g. `CreateDeployment`).
    pub(crate) fn from_sdk<E, R>(operation: &'static str, err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: fmt::Debug + HttpStatus + Send + Sync + 'static,
    {
        let detail = aws_sdk_codedeploy::error::DisplayErrorContext(&err).to_string();
        let http_status = err.raw_response().map(HttpStatus::status_code);
        let (failure, user_caused) = match &err {
            SdkError::ServiceError(_) => (Failure::Service, false),
            SdkError::ConstructionFailure(_) => (Failure::Construction, true),
            SdkError::TimeoutError(_) => (Failure::Timeout, false),
            SdkError::DispatchFailure(d) => {
                if d.is_timeout() {
                    (Failure::Timeout, false)
                } else {
                    (Failure::Dispatch, d.is_user())
                }
            }
            SdkError::ResponseError(_) => (Failure::Response, false),
            _ => (Failure::Response, false),
        };
        let credentials = match &err {
            SdkError::ServiceError(_) => None,
            other => credentials_problem(other),
        };
        ApiError {
            operation,
            failure,
            code: err.code().map(str::to_owned),
            message: err.message().map(str::to_owned),
            http_status,
            user_caused,
            credentials,
            detail,
        }
    }

    /// An error of a call that succeeded but answered something unusable.
    pub(crate) fn malformed(operation: &'static str, what: impl Into<String>) -> Self {
        ApiError {
            operation,
            failure: Failure::Response,
            code: None,
            message: None,
            http_status: None,
            user_caused: false,
            credentials: None,
            detail: what.into(),
        }
    }

    /// The AWS error code, if CodeDeploy answered with one.
    pub(crate) fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// What this failure means for the engine.
    pub(crate) fn kind(&self) -> ErrorKind {
        match self.credentials {
            Some(Credentials::Missing) => return ErrorKind::Unauthorized,
            Some(Credentials::Unavailable) => return ErrorKind::Transient,
            None => {}
        }
        match self.failure {
            Failure::Timeout => return ErrorKind::Transient,
            // An answer that could not be read: its status still says what it means.
            Failure::Response if self.http_status.is_none_or(|s| s < 300) => {
                return ErrorKind::Transient;
            }
            Failure::Dispatch if !self.user_caused => return ErrorKind::Transient,
            Failure::Dispatch | Failure::Construction => return ErrorKind::InvalidInput,
            Failure::Service | Failure::Response => {}
        }
        if let Some(code) = self.code.as_deref() {
            if TRANSIENT_CODES.contains(&code) {
                return ErrorKind::Transient;
            }
            if UNAUTHORIZED_CODES.contains(&code) {
                return ErrorKind::Unauthorized;
            }
            if NOT_FOUND_CODES.contains(&code) {
                return ErrorKind::NotFound;
            }
            if CONFLICT_CODES.contains(&code) {
                return ErrorKind::Conflict;
            }
            if PERMANENT_CODES.contains(&code) {
                return ErrorKind::Permanent;
            }
            if code.starts_with("Invalid")
                || code.ends_with("RequiredException")
                || code.ends_with("TooLongException")
            {
                return ErrorKind::InvalidInput;
            }
            // AWS answers every client error with 400, throttling included:
            // with a code this crate does not know, 400 says only that
            // retrying the same request will not help.
            if self.http_status == Some(400) {
                return ErrorKind::Permanent;
            }
        }
        match self.http_status {
            Some(status) => rollback_core::http::error_kind(status),
            None => ErrorKind::Permanent,
        }
    }

    /// What the user can do about it.
    fn advice(&self, kind: ErrorKind) -> String {
        match (kind, self.code.as_deref()) {
            (ErrorKind::Transient, _) if self.credentials.is_some() => {
                "the credentials provider failed to load credentials; this may pass, and the engine retries it".into()
            }
            (ErrorKind::Transient, _) => "this may pass; the engine retries it with its retry policy".into(),
            (ErrorKind::Unauthorized, _) if self.credentials.is_some() => {
                "no AWS credentials could be loaded: configure them (environment, profile, SSO or instance role) \
                 or pass an SDK client that has them"
                    .into()
            }
            (ErrorKind::Unauthorized, _) => format!(
                "check the AWS credentials, and that their IAM policy allows codedeploy:{} on this deployment group",
                self.operation
            ),
            (ErrorKind::NotFound, Some("RevisionDoesNotExistException")) => {
                "the revision's bundle is gone (S3 object or GitHub commit); restore it or roll back to another revision"
                    .into()
            }
            (ErrorKind::NotFound, _) => {
                "check the application and deployment group names, the AWS account and the region".into()
            }
            (ErrorKind::Conflict, _) => {
                "the deployment group already has an active deployment; retry once it has completed".into()
            }
            (ErrorKind::Permanent, Some("DeploymentAlreadyCompletedException")) => {
                "the deployment completed before it could be stopped; roll back with a new deployment".into()
            }
            (ErrorKind::InvalidInput, _) if self.failure != Failure::Service => {
                "check the AWS SDK configuration (endpoint URL, region, credentials provider)".into()
            }
            (ErrorKind::InvalidInput, _) => "CodeDeploy refused the request as invalid; it will not pass by retrying".into(),
            _ => "retrying will not help".into(),
        }
    }

    /// The engine error for this failure, while doing `doing` (e.g. "listing
    /// the deployments of CodeDeploy deployment group bank/payments").
    pub(crate) fn into_error(self, doing: &str) -> Error {
        let kind = self.kind();
        let message = format!("{doing}: {self}; {}", self.advice(kind));
        Error::new(kind, message).with_source(self)
    }
}

/// The HTTP status of a raw response, whatever its type.
pub(crate) trait HttpStatus {
    /// The status code.
    fn status_code(&self) -> u16;
}

impl HttpStatus for aws_sdk_codedeploy::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(code: Option<&str>, status: Option<u16>) -> ApiError {
        ApiError {
            operation: "CreateDeployment",
            failure: Failure::Service,
            code: code.map(str::to_owned),
            message: Some("msg".into()),
            http_status: status,
            user_caused: false,
            credentials: None,
            detail: String::new(),
        }
    }

    #[test]
    fn codes_map_to_kinds() {
        let cases = [
            ("ThrottlingException", ErrorKind::Transient),
            ("AccessDeniedException", ErrorKind::Unauthorized),
            ("DeploymentGroupDoesNotExistException", ErrorKind::NotFound),
            ("ApplicationDoesNotExistException", ErrorKind::NotFound),
            ("DeploymentAlreadyCompletedException", ErrorKind::Permanent),
            ("InvalidRevisionException", ErrorKind::InvalidInput),
            ("RevisionRequiredException", ErrorKind::InvalidInput),
            ("DescriptionTooLongException", ErrorKind::InvalidInput),
            ("DeploymentLimitExceededException", ErrorKind::Conflict),
        ];
        for (code, kind) in cases {
            assert_eq!(service(Some(code), Some(400)).kind(), kind, "{code}");
        }
    }

    #[test]
    fn unknown_codes_fall_back_to_the_http_status() {
        assert_eq!(
            service(Some("SomethingNew"), Some(503)).kind(),
            ErrorKind::Transient
        );
        assert_eq!(service(None, Some(429)).kind(), ErrorKind::Transient);
        assert_eq!(service(None, Some(403)).kind(), ErrorKind::Unauthorized);
        assert_eq!(
            service(Some("SomethingNew"), Some(400)).kind(),
            ErrorKind::Permanent
        );
        assert_eq!(service(None, None).kind(), ErrorKind::Permanent);
    }

    #[test]
    fn plain_statuses_mean_what_they_mean_everywhere() {
        for status in 300..=599 {
            let want = rollback_core::http::error_kind(status);
            assert_eq!(service(None, Some(status)).kind(), want, "HTTP {status}");
            let mut unreadable = service(None, Some(status));
            unreadable.failure = Failure::Response;
            assert_eq!(unreadable.kind(), want, "unreadable HTTP {status}");
        }
        let mut unreadable_ok = service(None, Some(200));
        unreadable_ok.failure = Failure::Response;
        assert_eq!(unreadable_ok.kind(), ErrorKind::Transient);
    }

    #[test]
    fn transport_failures_are_transient_unless_caused_by_configuration() {
        let mut e = service(None, None);
        e.failure = Failure::Dispatch;
        assert_eq!(e.kind(), ErrorKind::Transient);
        e.user_caused = true;
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        e.failure = Failure::Timeout;
        assert_eq!(e.kind(), ErrorKind::Transient);
    }

    #[test]
    fn the_message_names_what_was_attempted_and_what_to_do() {
        let e = service(Some("AccessDeniedException"), Some(400))
            .into_error("rolling back bank/payments");
        assert_eq!(e.kind(), ErrorKind::Unauthorized);
        assert!(!e.is_retryable());
        assert_eq!(
            e.message(),
            "rolling back bank/payments: CodeDeploy CreateDeployment failed with AccessDeniedException: msg (HTTP 400); \
             check the AWS credentials, and that their IAM policy allows codedeploy:CreateDeployment on this deployment group"
        );
    }
}
