//! admin-api: the HTTP API for connectors, runs, reviews and look-ups,
//! behind IAM authorization. The routes live in the core crate.

use dirsync_shared::app::{App, Caller};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};

/// Who IAM says is calling (the caller's ARN), for run records.
fn caller(req: &Request) -> Option<String> {
    match req.request_context_ref()? {
        RequestContext::ApiGatewayV2(ctx) => ctx
            .authorizer
            .as_ref()
            .and_then(|a| a.iam.as_ref())
            .and_then(|iam| iam.user_arn.clone()),
        _ => None,
    }
}

pub async fn handle(app: &App, req: Request) -> Response<Body> {
    let who = caller(&req);
    let (parts, body) = req.into_parts();
    let bytes = match body {
        Body::Empty => Vec::new(),
        Body::Text(t) => t.into_bytes(),
        Body::Binary(b) => b,
        _ => Vec::new(),
    };
    let response = dirsync_shared::app::api::handle(
        app,
        http::Request::from_parts(parts, bytes),
        Caller::iam(who),
    )
    .await;
    response.map(Body::from)
}
