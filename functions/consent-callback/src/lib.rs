//! consent-callback: the public page Entra returns the administrator to
//! after admin consent. All the checks live in the core crate.

use dirsync_shared::app::App;
use dirsync_shared::app::consent::{PAGE_HEADERS, callback};
use lambda_http::{Body, Request, Response};

pub async fn handle(app: &App, req: Request) -> Response<Body> {
    let page = if req.method() == lambda_http::http::Method::GET {
        callback(app, &app.graph, req.uri().query().unwrap_or_default()).await
    } else {
        dirsync_shared::app::consent::CallbackPage {
            status: 405,
            html: "<!doctype html><title>Method not allowed</title>".into(),
            location: None,
            outcome: dirsync_shared::app::consent::Outcome::Refused,
        }
    };
    let mut builder = Response::builder().status(page.status);
    for (name, value) in PAGE_HEADERS {
        builder = builder.header(name, value);
    }
    // The redirect to the sign-in that proves who completes the consent.
    if let Some(location) = &page.location {
        builder = builder.header("location", location);
    }
    builder.body(Body::from(page.html)).unwrap_or_default()
}
