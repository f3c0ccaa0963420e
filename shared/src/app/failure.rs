//! What a function's failure asks of whoever reacts to it, as a stable
//! error type in Lambda's error report (the function's logs, the invoker's
//! retries, an alarm's metric filter): wait and try again, fix a setting,
//! act on the directory, or report a bug. Messages say what to do; the
//! type says who must do it.

use crate::auth::AuthError;
use crate::engine::EngineError;
use crate::secrets::SecretError;
use crate::source::SourceError;
use crate::store::{StoreError, TableError};

use super::AppError;
use super::rotation::RotationError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Transient: the same invocation later may succeed without anyone
    /// acting (a throttled or unreachable service, a lease held).
    Retryable,
    /// A setting, an input or a permission of the deployment is wrong: an
    /// operator must change it; retrying changes nothing.
    Configuration,
    /// The directory or its sign-in service refused, or answered what
    /// cannot be read: the customer's administrator must act.
    Source,
    /// A bug, or stored data edited by hand.
    Internal,
}

impl FailureKind {
    pub const ALL: [FailureKind; 4] = [
        FailureKind::Retryable,
        FailureKind::Configuration,
        FailureKind::Source,
        FailureKind::Internal,
    ];

    /// The `errorType` Lambda reports.
    pub const fn error_type(self) -> &'static str {
        match self {
            FailureKind::Retryable => "Dirsync.Retryable",
            FailureKind::Configuration => "Dirsync.Configuration",
            FailureKind::Source => "Dirsync.Source",
            FailureKind::Internal => "Dirsync.Internal",
        }
    }
}

/// A function's error: its kind and the message for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

impl Failure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
        }
    }

    pub fn configuration(message: impl Into<String>) -> Self {
        Failure::new(FailureKind::Configuration, message)
    }
}

impl From<AppError> for Failure {
    fn from(e: AppError) -> Self {
        Failure::new(e.failure_kind(), e.to_string())
    }
}

impl From<RotationError> for Failure {
    fn from(e: RotationError) -> Self {
        Failure::new(e.failure_kind(), e.to_string())
    }
}

impl AppError {
    pub fn failure_kind(&self) -> FailureKind {
        match self {
            AppError::Store(e) => e.failure_kind(),
            AppError::Engine(e) => e.failure_kind(),
            AppError::Queue(_) | AppError::Conflict(_) => FailureKind::Retryable,
            AppError::Secret(e) => e.failure_kind(),
            AppError::Source(e) => e.failure_kind(),
            AppError::NotFound(_)
            | AppError::Lookup(_)
            | AppError::BadRequest(_)
            | AppError::Unprocessable { .. }
            | AppError::Forbidden(_)
            | AppError::Config(_) => FailureKind::Configuration,
        }
    }
}

impl StoreError {
    pub fn failure_kind(&self) -> FailureKind {
        match self {
            StoreError::VersionConflict { .. }
            | StoreError::LeaseHeld { .. }
            | StoreError::Table(TableError::Backend(_)) => FailureKind::Retryable,
            StoreError::AlreadyExists { .. }
            | StoreError::NotFound { .. }
            | StoreError::BadPageToken => FailureKind::Configuration,
            StoreError::Corrupt { .. } | StoreError::Table(TableError::Corrupt { .. }) => {
                FailureKind::Internal
            }
        }
    }
}

impl EngineError {
    pub fn failure_kind(&self) -> FailureKind {
        match self {
            EngineError::Store(e) => e.failure_kind(),
            EngineError::Review(_) => FailureKind::Configuration,
            EngineError::LeaseLost { .. } => FailureKind::Retryable,
        }
    }
}

impl SecretError {
    pub fn failure_kind(&self) -> FailureKind {
        match self {
            SecretError::NotFound { .. } | SecretError::Denied { .. } => FailureKind::Configuration,
            SecretError::Backend(_) => FailureKind::Retryable,
        }
    }
}

impl SourceError {
    pub fn failure_kind(&self) -> FailureKind {
        match self {
            SourceError::ResyncRequired(_)
            | SourceError::Unavailable(_)
            | SourceError::Paused { .. } => FailureKind::Retryable,
            SourceError::Auth(_) | SourceError::Permission(_) | SourceError::Protocol(_) => {
                FailureKind::Source
            }
            SourceError::Config(_) => FailureKind::Configuration,
        }
    }
}

impl AuthError {
    pub fn failure_kind(&self) -> FailureKind {
        match self {
            AuthError::Refused { .. } | AuthError::Protocol(_) => FailureKind::Source,
            AuthError::Secret(e) => e.failure_kind(),
            AuthError::Certificate(_) => FailureKind::Configuration,
            AuthError::Unreachable { .. } => FailureKind::Retryable,
        }
    }
}

impl RotationError {
    pub fn failure_kind(&self) -> FailureKind {
        match self {
            // Invoked for another secret, an unknown step, a version with
            // no value, or no certificate to start from.
            RotationError::Refused(_) | RotationError::Certificate(_) => FailureKind::Configuration,
            RotationError::Secret(e) => e.failure_kind(),
            RotationError::Auth(e) => e.failure_kind(),
            RotationError::Graph(e) => e.failure_kind(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_types_are_stable_and_distinct() {
        let types: Vec<_> = FailureKind::ALL.iter().map(|k| k.error_type()).collect();
        assert_eq!(
            types,
            [
                "Dirsync.Retryable",
                "Dirsync.Configuration",
                "Dirsync.Source",
                "Dirsync.Internal"
            ]
        );
    }

    #[test]
    fn each_failure_names_who_must_act() {
        let cases = [
            (
                Failure::from(AppError::Config("set DIRSYNC_TABLE".into())),
                FailureKind::Configuration,
            ),
            (
                AppError::Source(SourceError::Unavailable("503".into())).into(),
                FailureKind::Retryable,
            ),
            (
                AppError::Source(SourceError::Permission("grant User.Read.All".into())).into(),
                FailureKind::Source,
            ),
            (
                AppError::Store(StoreError::Corrupt {
                    what: "run".into(),
                    problem: "not JSON".into(),
                })
                .into(),
                FailureKind::Internal,
            ),
            (
                RotationError::Refused("unknown rotation step \"x\"".into()).into(),
                FailureKind::Configuration,
            ),
            (
                RotationError::Auth(AuthError::Unreachable {
                    authority: "https://login.microsoftonline.com".into(),
                    detail: "timed out".into(),
                })
                .into(),
                FailureKind::Retryable,
            ),
            (
                RotationError::Secret(SecretError::Denied {
                    name: "dirsync-prod/app-certificate".into(),
                    detail: "AccessDenied".into(),
                })
                .into(),
                FailureKind::Configuration,
            ),
        ];
        for (failure, kind) in cases {
            assert_eq!(failure.kind, kind, "{failure}");
        }
    }
}
