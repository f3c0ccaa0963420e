//! `dirsync serve`: the admin API and the consent callback on localhost,
//! the same handlers the Lambda functions run.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use dirsync_shared::app::consent::{PAGE_HEADERS, callback};

use crate::local::Local;

async fn handle(State(local): State<Arc<Local>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, 256 * 1024)
        .await
        .unwrap_or_default()
        .to_vec();
    if parts.uri.path() == "/consent/callback" {
        let page = callback(
            &local.app,
            &local.app.graph,
            parts.uri.query().unwrap_or_default(),
        )
        .await;
        let mut builder = Response::builder().status(page.status);
        for (k, v) in PAGE_HEADERS {
            builder = builder.header(k, v);
        }
        return builder.body(Body::from(page.html)).unwrap_or_default();
    }
    let resp = dirsync_shared::app::api::handle(
        &local.app,
        http::Request::from_parts(parts, bytes),
        dirsync_shared::app::Caller::operator("local"),
    )
    .await;
    // Sync now enqueues; here the job runs at once.
    let _ = local.run_queued().await;
    resp.map(Body::from)
}

pub async fn run(local: Local, port: u16) -> Result<(), crate::Failure> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| crate::Failure(2, format!("cannot listen on 127.0.0.1:{port}: {e}")))?;
    eprintln!(
        "dirsync serves the admin API and /consent/callback on http://127.0.0.1:{port} (Ctrl-C to stop)"
    );
    let app = Router::new().fallback(handle).with_state(Arc::new(local));
    axum::serve(listener, app)
        .await
        .map_err(|e| crate::Failure(4, e.to_string()))
}
