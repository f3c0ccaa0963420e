//! The two error dialects the simulator speaks: Entra's token endpoint
//! (`{"error", "error_description": "AADSTSnnnn: ...", "error_codes"}`) and
//! Graph (`{"error": {"code", "message", "innerError"}}`).

use axum::http::StatusCode;
use chrono::{SecondsFormat, Utc};
use serde_json::json;
use uuid::Uuid;

/// A Graph error response.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub(crate) struct GraphError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra response headers, e.g. `Retry-After` or `Location`.
    pub headers: Vec<(&'static str, String)>,
}

impl GraphError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        GraphError {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        GraphError::new(StatusCode::BAD_REQUEST, "Request_BadRequest", message)
    }

    pub fn unsupported_query(message: impl Into<String>) -> Self {
        GraphError::new(StatusCode::BAD_REQUEST, "Request_UnsupportedQuery", message)
    }

    pub fn not_found(id: &str) -> Self {
        GraphError::new(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            format!(
                "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
            ),
        )
    }

    pub fn no_segment(segment: &str) -> Self {
        GraphError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("Resource not found for the segment '{segment}'."),
        )
    }

    pub fn forbidden() -> Self {
        GraphError::new(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        )
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        GraphError::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            message,
        )
        .with_header("WWW-Authenticate", "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"")
    }

    pub fn too_many_requests(retry_after_secs: u32) -> Self {
        GraphError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Too many requests. Please retry after the time specified in the Retry-After header.",
        )
        .with_header("Retry-After", retry_after_secs.to_string())
    }

    pub fn server_error(status: u16) -> Self {
        if status == 504 {
            GraphError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "GatewayTimeout",
                "The gateway did not receive a timely response from the service.",
            )
        } else {
            GraphError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceNotAvailable",
                "The service is temporarily unavailable. Please retry later.",
            )
            .with_header("Retry-After", "1")
        }
    }

    /// The Graph error body, with the request ids in `innerError`.
    pub fn body(&self, request_id: &str, client_request_id: &str) -> serde_json::Value {
        json!({
            "error": {
                "code": self.code,
                "message": self.message,
                "innerError": {
                    "date": Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
                    "request-id": request_id,
                    "client-request-id": client_request_id,
                }
            }
        })
    }
}

/// An Entra token-endpoint error: an OAuth error plus an AADSTS code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{error} AADSTS{code}: {message}")]
pub(crate) struct AadError {
    pub status: StatusCode,
    /// The OAuth `error`, e.g. `invalid_client`.
    pub error: &'static str,
    pub code: u32,
    pub message: String,
}

impl AadError {
    /// `invalid_client` errors are 401 at Entra; the others 400.
    pub fn new(error: &'static str, code: u32, message: impl Into<String>) -> Self {
        let status = if error == "invalid_client" {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::BAD_REQUEST
        };
        AadError {
            status,
            error,
            code,
            message: message.into(),
        }
    }

    /// The JSON body Entra sends.
    pub fn body(&self, authority: &str) -> serde_json::Value {
        let trace_id = Uuid::new_v4();
        let correlation_id = Uuid::new_v4();
        let timestamp = Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string();
        json!({
            "error": self.error,
            "error_description": format!(
                "AADSTS{}: {}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\nTimestamp: {timestamp}",
                self.code, self.message
            ),
            "error_codes": [self.code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": format!("{authority}/error?code={}", self.code),
        })
    }
}

/// Why a certificate could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("not a DER X.509 certificate: {0}")]
    Parse(String),
    #[error("certificate validity is out of range")]
    Validity,
}
