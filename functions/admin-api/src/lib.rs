//! admin-api: the HTTP API for accounts, connectors, runs, reviews and
//! look-ups, behind IAM authorization. The routes live in the core crate;
//! this only says who IAM says is calling.

use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dirsync_shared::app::{App, AppError, Caller, api};
use lambda_http::RequestExt;
use lambda_http::request::RequestContext;

/// The caller IAM signed for (its ARN), from API Gateway's context.
fn caller(req: &Request) -> Caller {
    let arn = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx
            .authorizer
            .as_ref()
            .and_then(|a| a.iam.as_ref())
            .and_then(|iam| iam.user_arn.clone()),
        _ => None,
    };
    Caller::iam(arn)
}

/// Refuses a path lambda_http read differently from the client's: it
/// parses `rawPath` as a URL, which resolves `.`/`..` (also encoded),
/// turns `\\` into `/` and drops tabs, so the router could act on another
/// path than the one sent (and logged, and authorised by any gateway rule).
fn as_sent(req: &Request) -> Result<(), String> {
    let raw = req.raw_http_path();
    if raw.is_empty() {
        return Ok(());
    }
    api::check_path(raw).map_err(str::to_owned)?;
    if raw != req.uri().path() {
        return Err("it does not read the same once parsed".into());
    }
    Ok(())
}

async fn from_gateway(mut req: Request, next: Next) -> Response {
    if let Err(why) = as_sent(&req) {
        let message = format!(
            "the path {:?} is ambiguous: {why}; send each id as one segment, percent-encoded",
            req.raw_http_path()
        );
        return AppError::BadRequest(message).into_response();
    }
    let who = caller(&req);
    req.extensions_mut().insert(who);
    next.run(req).await
}

/// The admin API's router, with the caller taken from each request.
pub fn router(app: App) -> Router {
    api::router(app).layer(axum::middleware::from_fn(from_gateway))
}

/// One Lambda request through the router (tests, with the event fixtures).
pub async fn handle(app: &App, req: lambda_http::Request) -> http::Response<lambda_http::Body> {
    api::answer(router(app.clone()), req.map(axum::body::Body::new))
        .await
        .map(lambda_http::Body::from)
}
