//! Error responses in Google's shapes: the Directory API's
//! `{"error":{"code","message","errors":[{"message","domain","reason"}],"status"}}`
//! and the OAuth token endpoint's `{"error","error_description"}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// A Directory API error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub code: u16,
    pub message: String,
    pub domain: &'static str,
    pub reason: &'static str,
    pub status: &'static str,
    /// `(locationType, location)`, e.g. `("header", "Authorization")`.
    pub location: Option<(&'static str, &'static str)>,
}

impl ApiError {
    fn new(
        code: u16,
        message: impl Into<String>,
        domain: &'static str,
        reason: &'static str,
        status: &'static str,
    ) -> Self {
        ApiError {
            code,
            message: message.into(),
            domain,
            reason,
            status,
            location: None,
        }
    }

    /// No `Authorization` header.
    pub fn login_required() -> Self {
        ApiError {
            location: Some(("header", "Authorization")),
            ..ApiError::new(
                401,
                "Login Required.",
                "global",
                "required",
                "UNAUTHENTICATED",
            )
        }
    }

    /// Unknown or expired access token.
    pub fn invalid_credentials() -> Self {
        ApiError {
            location: Some(("header", "Authorization")),
            ..ApiError::new(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access token, \
                 login cookie or other valid authentication credential.",
                "global",
                "authError",
                "UNAUTHENTICATED",
            )
        }
    }

    pub fn insufficient_scopes() -> Self {
        ApiError::new(
            403,
            "Request had insufficient authentication scopes.",
            "global",
            "insufficientPermissions",
            "PERMISSION_DENIED",
        )
    }

    /// The impersonated user is no admin, or the customer is not theirs.
    pub fn not_authorized() -> Self {
        ApiError::new(
            403,
            "Not Authorized to access this resource/api",
            "global",
            "forbidden",
            "PERMISSION_DENIED",
        )
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::new(
            404,
            format!("Resource Not Found: {what}"),
            "global",
            "notFound",
            "NOT_FOUND",
        )
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, message, "global", "badRequest", "INVALID_ARGUMENT")
    }

    /// A parameter out of range, e.g. `maxResults=1000` on users.
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(400, message, "global", "invalid", "INVALID_ARGUMENT")
    }

    pub fn user_rate_limit() -> Self {
        ApiError::new(
            403,
            "User Rate Limit Exceeded",
            "usageLimits",
            "userRateLimitExceeded",
            "PERMISSION_DENIED",
        )
    }

    pub fn quota_exceeded() -> Self {
        ApiError::new(
            403,
            "Quota Exceeded",
            "usageLimits",
            "quotaExceeded",
            "PERMISSION_DENIED",
        )
    }

    pub fn too_many() -> Self {
        ApiError::new(
            429,
            "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user' \
             of service 'admin.googleapis.com'.",
            "usageLimits",
            "rateLimitExceeded",
            "RESOURCE_EXHAUSTED",
        )
    }

    pub fn backend_error() -> Self {
        ApiError::new(
            503,
            "The service is currently unavailable.",
            "global",
            "backendError",
            "UNAVAILABLE",
        )
    }

    pub fn body(&self) -> Value {
        let mut detail = json!({
            "message": self.message,
            "domain": self.domain,
            "reason": self.reason,
        });
        if let Some((kind, location)) = self.location {
            detail["locationType"] = json!(kind);
            detail["location"] = json!(location);
        }
        json!({
            "error": {
                "code": self.code,
                "message": self.message,
                "errors": [detail],
                "status": self.status,
            }
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(self.body())).into_response();
        let quota = matches!(
            self.reason,
            "userRateLimitExceeded" | "quotaExceeded" | "rateLimitExceeded"
        );
        if quota || matches!(self.code, 429 | 503) {
            response.extensions_mut().insert(crate::script::Throttle);
        }
        if self.code == 401 {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static(
                    "Bearer realm=\"https://accounts.google.com/\"",
                ),
            );
        }
        response
    }
}

/// An OAuth token endpoint error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TokenError {
    pub status: u16,
    pub error: &'static str,
    pub description: String,
}

impl TokenError {
    fn new(status: u16, error: &'static str, description: impl Into<String>) -> Self {
        TokenError {
            status,
            error,
            description: description.into(),
        }
    }

    pub fn invalid_grant(description: impl Into<String>) -> Self {
        TokenError::new(400, "invalid_grant", description)
    }

    pub fn bad_signature() -> Self {
        TokenError::invalid_grant("Invalid JWT Signature.")
    }

    pub fn bad_timing() -> Self {
        TokenError::invalid_grant(
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable \
             timeframe. Check your iat and exp values in the JWT claim.",
        )
    }

    pub fn unauthorized_client() -> Self {
        TokenError::new(
            401,
            "unauthorized_client",
            "Client is unauthorized to retrieve access tokens using this method, or client not \
             authorized for any of the scopes requested.",
        )
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        TokenError::new(400, "invalid_request", description)
    }

    pub fn unsupported_grant_type(grant_type: &str) -> Self {
        TokenError::new(
            400,
            "unsupported_grant_type",
            format!("Invalid grant_type: {grant_type}"),
        )
    }

    pub fn invalid_scope() -> Self {
        TokenError::new(
            400,
            "invalid_scope",
            "Invalid OAuth scope or ID token audience provided.",
        )
    }
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        (
            status,
            Json(json!({"error": self.error, "error_description": self.description})),
        )
            .into_response()
    }
}
