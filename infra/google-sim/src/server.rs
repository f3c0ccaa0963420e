//! The HTTP server: axum on a loopback listener.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;

use crate::state::Inner;
use crate::{api, token_endpoint};

fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/token", post(token_endpoint::token))
        .route("/admin/directory/v1/users", get(api::list_users))
        .route("/admin/directory/v1/groups", get(api::list_groups))
        .route(
            "/admin/directory/v1/groups/{group_key}/members",
            get(api::list_members),
        )
        .fallback(api::not_found)
        .with_state(inner)
}

pub(crate) async fn serve(inner: Arc<Inner>, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let _ = inner.origin.set(format!("http://{local}"));
    let app = router(inner);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "google-sim server stopped");
        }
    });
    Ok(local)
}
