//! `dirsync serve`: the admin API and the consent callback on localhost,
//! the same router and page the Lambda functions serve.
//!
//! A browser on this machine can reach localhost too, so the server takes
//! only what no other web page can send: the token printed at start
//! (`Authorization: Bearer …`), a `Host` that is this server (no DNS
//! rebinding), and JSON declared as JSON on every change (no form posts).
//! The consent callback stays open: Entra sends the administrator's
//! browser there, and it trusts nothing in the request anyway.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use dirsync_shared::app::Caller;
use dirsync_shared::app::api::{self, is_json};
use dirsync_shared::app::consent::{PAGE_HEADERS, callback};
use http::{HeaderMap, Method, StatusCode, Uri};

use crate::local::Local;

/// What every request but the callback must match.
struct Door {
    token: String,
    hosts: [String; 2],
}

async fn consent_page(State(local): State<Arc<Local>>, uri: Uri) -> Response {
    let page = callback(
        &local.app,
        &local.app.graph,
        uri.query().unwrap_or_default(),
    )
    .await;
    let mut builder = Response::builder().status(page.status);
    for (k, v) in PAGE_HEADERS {
        builder = builder.header(k, v);
    }
    // The redirect to the sign-in that proves who completes the consent.
    if let Some(location) = &page.location {
        builder = builder.header(http::header::LOCATION, location);
    }
    builder.body(Body::from(page.html)).unwrap_or_default()
}

fn refused(status: StatusCode, why: &str) -> Response {
    (status, axum::Json(serde_json::json!({"error": why}))).into_response()
}

/// Why a request may not pass, if it may not.
fn check(door: &Door, method: &Method, headers: &HeaderMap) -> Option<(StatusCode, &'static str)> {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    if !door.hosts.iter().any(|h| h == header(http::header::HOST)) {
        return Some((
            StatusCode::MISDIRECTED_REQUEST,
            "this server answers only requests for localhost or 127.0.0.1 on its own port",
        ));
    }
    let given = header(http::header::AUTHORIZATION)
        .strip_prefix("Bearer ")
        .unwrap_or_default();
    if !same(given.as_bytes(), door.token.as_bytes()) {
        return Some((
            StatusCode::UNAUTHORIZED,
            "send the token dirsync serve printed at start: Authorization: Bearer <token>",
        ));
    }
    let changes = !matches!(*method, Method::GET | Method::HEAD);
    if changes && !is_json(header(http::header::CONTENT_TYPE)) {
        return Some((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send changes as JSON, with Content-Type: application/json",
        ));
    }
    None
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

async fn guard(State(door): State<Arc<Door>>, mut req: Request, next: Next) -> Response {
    if let Some((status, why)) = check(&door, req.method(), req.headers()) {
        return refused(status, why);
    }
    // Whoever holds the token runs this machine's deployment.
    req.extensions_mut().insert(Caller::operator("local"));
    next.run(req).await
}

/// Sync now enqueues; here the job runs once the request is answered.
async fn run_queued(State(local): State<Arc<Local>>, req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let _ = local.run_queued().await;
    response
}

pub async fn run(local: Local, port: u16) -> crate::exit::Outcome {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| {
            crate::exit::Failure::refused(format!("cannot listen on 127.0.0.1:{port}: {e}"))
        })?;
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(port);
    let door = Arc::new(Door {
        token: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>()),
        hosts: [format!("localhost:{port}"), format!("127.0.0.1:{port}")],
    });
    eprintln!(
        "dirsync serves the admin API and /consent/callback on http://127.0.0.1:{port} (Ctrl-C to stop)\n\
         send every admin API request with this header (it changes at each start):\n\
         Authorization: Bearer {}",
        door.token
    );
    let local = Arc::new(local);
    let admin = api::router(local.app.clone())
        .layer(from_fn_with_state(local.clone(), run_queued))
        .layer(from_fn_with_state(door, guard));
    let app = Router::new()
        .route("/consent/callback", get(consent_page))
        .with_state(local)
        .fallback_service(admin);
    axum::serve(listener, app)
        .await
        .map_err(crate::exit::Failure::internal)
}
