//! The admin API: JSON over HTTP behind IAM, on an axum [`Router`] that the
//! Lambda function, `dirsync serve` and the CLI share.
//!
//! [`routes`] is the route table: each route's method, path, who may call
//! it and what the audit trail calls it. `docs/api.md` lists the same
//! routes for people, and a test keeps the two equal. Around every route:
//! the path must be unambiguous (no empty, dot or encoded-`/` segments),
//! the caller must be allowed for the account the path names
//! ([`super::access`]), and a mutating call leaves an audit record,
//! whatever its outcome.

mod accounts;
mod connectors;
mod directory;
mod extract;
mod guard;
mod lookup;
mod runs;

use axum::Router;
use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::domain::AuditAction;
use crate::engine::EngineError;
use crate::secrets::SecretError;
use crate::store::StoreError;

use super::{App, AppError, Caller};

pub(super) use connectors::connector;
pub use extract::{MAX_BODY, is_json};
pub use guard::{Access, check_path};
pub use lookup::LookupError;

/// What a handler answers: a status and a JSON body, or an error.
type Reply = Result<(StatusCode, axum::Json<Value>), AppError>;

fn ok(status: StatusCode, body: Value) -> Reply {
    Ok((status, axum::Json(body)))
}

/// One route of the table.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    /// The audit trail's name for a mutating route; reads have none.
    pub action: Option<AuditAction>,
    handler: MethodRouter<App>,
}

fn route<H, T>(
    method: Method,
    path: &'static str,
    access: Access,
    action: Option<AuditAction>,
    handler: H,
) -> Route
where
    H: Handler<T, App>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("a standard method");
    Route {
        method,
        path,
        access,
        action,
        handler: on(filter, handler),
    }
}

/// Every route of the admin API.
pub fn routes() -> Vec<Route> {
    use Access::{Account, Platform, Signed};
    use AuditAction as A;
    use Method as M;
    vec![
        route(M::GET, "/accounts", Signed, None, accounts::list),
        route(
            M::POST,
            "/accounts",
            Platform,
            Some(A::CreateAccount),
            accounts::create,
        ),
        route(M::GET, "/accounts/{a}", Account, None, accounts::get),
        route(
            M::PATCH,
            "/accounts/{a}",
            Account,
            Some(A::UpdateAccount),
            accounts::change,
        ),
        route(
            M::GET,
            "/accounts/{a}/grants",
            Account,
            None,
            accounts::grants,
        ),
        route(
            M::POST,
            "/accounts/{a}/grants",
            Platform,
            Some(A::GrantAccess),
            accounts::grant,
        ),
        route(
            M::DELETE,
            "/accounts/{a}/grants",
            Platform,
            Some(A::RevokeAccess),
            accounts::revoke,
        ),
        route(
            M::GET,
            "/accounts/{a}/audit",
            Account,
            None,
            accounts::audit,
        ),
        route(
            M::GET,
            "/accounts/{a}/users",
            Account,
            None,
            accounts::find_user,
        ),
        route(
            M::GET,
            "/accounts/{a}/groups",
            Account,
            None,
            accounts::find_group,
        ),
        route(
            M::GET,
            "/accounts/{a}/connectors",
            Account,
            None,
            connectors::list,
        ),
        route(
            M::POST,
            "/accounts/{a}/connectors",
            Account,
            Some(A::CreateConnector),
            connectors::create,
        ),
        route(
            M::GET,
            "/accounts/{a}/connectors/{c}",
            Account,
            None,
            connectors::get,
        ),
        route(
            M::PATCH,
            "/accounts/{a}/connectors/{c}",
            Account,
            Some(A::UpdateConnector),
            connectors::change,
        ),
        route(
            M::DELETE,
            "/accounts/{a}/connectors/{c}",
            Account,
            Some(A::DeleteConnector),
            connectors::delete,
        ),
        route(
            M::PUT,
            "/accounts/{a}/connectors/{c}/secret",
            Account,
            Some(A::SetSecret),
            connectors::set_secret,
        ),
        route(
            M::POST,
            "/accounts/{a}/connectors/{c}/test",
            Account,
            Some(A::TestConnection),
            connectors::test,
        ),
        route(
            M::POST,
            "/accounts/{a}/connectors/{c}/sync",
            Account,
            Some(A::SyncNow),
            connectors::sync_now,
        ),
        route(
            M::POST,
            "/accounts/{a}/connectors/{c}/consent",
            Account,
            Some(A::StartConsent),
            connectors::start_consent,
        ),
        route(
            M::POST,
            "/accounts/{a}/connectors/{c}/migrate",
            Account,
            Some(A::StartMigration),
            connectors::start_migration,
        ),
        route(
            M::POST,
            "/accounts/{a}/connectors/{c}/tenant",
            Account,
            Some(A::ChangeTenant),
            connectors::change_tenant,
        ),
        route(
            M::GET,
            "/accounts/{a}/connectors/{c}/runs",
            Account,
            None,
            runs::list,
        ),
        route(
            M::GET,
            "/accounts/{a}/connectors/{c}/runs/{run}",
            Account,
            None,
            runs::get,
        ),
        route(
            M::POST,
            "/accounts/{a}/connectors/{c}/runs/{run}/approve",
            Account,
            Some(A::Approve),
            runs::approve,
        ),
        route(
            M::POST,
            "/accounts/{a}/connectors/{c}/runs/{run}/reject",
            Account,
            Some(A::Reject),
            runs::reject,
        ),
        route(
            M::GET,
            "/accounts/{a}/connectors/{c}/users/{id}",
            Account,
            None,
            directory::user,
        ),
        route(
            M::GET,
            "/accounts/{a}/connectors/{c}/users/{id}/groups",
            Account,
            None,
            directory::user_groups,
        ),
        route(
            M::GET,
            "/accounts/{a}/connectors/{c}/groups/{id}",
            Account,
            None,
            directory::group,
        ),
        route(
            M::GET,
            "/accounts/{a}/connectors/{c}/groups/{id}/members",
            Account,
            None,
            directory::group_members,
        ),
    ]
}

/// The admin API over `app`. The edge puts the [`Caller`] into the
/// request's extensions; a request without one is anonymous.
pub fn router(app: App) -> Router {
    let mut router = Router::new();
    for r in routes() {
        let rule = guard::Rule {
            access: r.access,
            action: r.action,
        };
        router = router.route(
            r.path,
            r.handler
                .route_layer(from_fn_with_state((app.clone(), rule), guard::guarded)),
        );
    }
    router
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(axum::middleware::from_fn(guard::unambiguous_path))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
}

/// One request, in process (the CLI, the demo, tests): the same router.
pub async fn handle(app: &App, req: http::Request<Vec<u8>>, caller: Caller) -> Response<String> {
    let (mut parts, body) = req.into_parts();
    parts.extensions.insert(caller);
    answer(
        router(app.clone()),
        http::Request::from_parts(parts, Body::from(body)),
    )
    .await
}

/// `router`'s whole answer to `req`, its body as text.
pub async fn answer(router: Router, req: http::Request<Body>) -> Response<String> {
    let response = router
        .oneshot(req)
        .await
        .unwrap_or_else(|never| match never {});
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    Response::from_parts(parts, String::from_utf8_lossy(&bytes).into_owned())
}

async fn no_route(method: Method, uri: http::Uri) -> Response {
    AppError::NotFound(format!(
        "a route {method} {} (the routes are listed in docs/api.md)",
        uri.path()
    ))
    .into_response()
}

async fn wrong_method(method: Method, uri: http::Uri) -> Response {
    let mut r = error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!(
            "{} does not take {method} (the routes are listed in docs/api.md)",
            uri.path()
        ),
    );
    r.headers_mut()
        .insert("cache-control", http::HeaderValue::from_static("no-store"));
    r
}

fn status_of(e: &AppError) -> StatusCode {
    match e {
        AppError::NotFound(_)
        | AppError::Store(StoreError::NotFound { .. })
        | AppError::Lookup(LookupError::NotFound { .. }) => StatusCode::NOT_FOUND,
        AppError::BadRequest(_) | AppError::Store(StoreError::BadPageToken) => {
            StatusCode::BAD_REQUEST
        }
        AppError::Conflict(_)
        | AppError::Store(StoreError::AlreadyExists { .. })
        | AppError::Store(StoreError::VersionConflict { .. })
        | AppError::Store(StoreError::LeaseHeld { .. })
        | AppError::Lookup(LookupError::Ambiguous { .. })
        | AppError::Engine(EngineError::Review(_)) => StatusCode::CONFLICT,
        AppError::Secret(SecretError::NotFound { .. }) => StatusCode::BAD_REQUEST,
        AppError::Forbidden(_) => StatusCode::FORBIDDEN,
        AppError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        AppError::Queue(_) | AppError::Secret(_) => StatusCode::BAD_GATEWAY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The message of an error answer, kept for the audit record.
#[derive(Debug, Clone)]
struct ErrorMessage(String);

fn error_response(status: StatusCode, message: &str) -> Response {
    let mut r = (status, axum::Json(json!({"error": message}))).into_response();
    r.extensions_mut().insert(ErrorMessage(message.to_owned()));
    r
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = status_of(&self);
        let message = self.to_string();
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), error = %message, "admin API error");
        }
        let mut r = error_response(status, &message);
        // What some errors say beside the message, for a program to read.
        let mut merged = match self {
            AppError::Unprocessable { body, .. } => body,
            AppError::Lookup(LookupError::Ambiguous { ids, .. }) => json!({"ids": ids}),
            _ => return r,
        };
        merged["error"] = json!(message);
        *r.body_mut() = axum::body::Body::from(merged.to_string());
        r
    }
}
