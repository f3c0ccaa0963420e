//! admin-api: the HTTP API for accounts, connectors, runs, reviews and
//! look-ups, behind IAM authorization. The routes live in the core crate;
//! this only says who IAM says is calling.

use axum::Router;
use axum::extract::Request;
use dirsync_shared::app::{App, Caller, api};
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

async fn with_caller(mut req: Request) -> Request {
    let who = caller(&req);
    req.extensions_mut().insert(who);
    req
}

/// The admin API's router, with the caller taken from each request.
pub fn router(app: App) -> Router {
    api::router(app).layer(axum::middleware::map_request(with_caller))
}

/// One Lambda request through the router (tests, with the event fixtures).
pub async fn handle(app: &App, req: lambda_http::Request) -> http::Response<lambda_http::Body> {
    api::answer(router(app.clone()), req.map(axum::body::Body::new))
        .await
        .map(lambda_http::Body::from)
}
