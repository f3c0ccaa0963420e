//! The HTTP server. It runs its own accept loop rather than `axum::serve` so
//! that a request can close its connection without an answer (the `Reset`
//! fault): each connection puts a [`ConnKill`] in its requests' extensions.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tower_service::Service;

use crate::state::Inner;
use crate::{api, script, token_endpoint};

/// Closes the connection a request arrived on, without a response.
#[derive(Clone)]
pub(crate) struct ConnKill(Arc<Notify>);

impl ConnKill {
    pub fn kill(&self) {
        self.0.notify_one();
    }
}

fn router(inner: Arc<Inner>) -> Router {
    let directory = Router::new()
        .route("/admin/directory/v1/users", get(api::list_users))
        .route("/admin/directory/v1/groups", get(api::list_groups))
        .route(
            "/admin/directory/v1/groups/{group_key}/members",
            get(api::list_members),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&inner),
            script::api,
        ));
    Router::new()
        .route("/token", post(token_endpoint::token))
        .merge(directory)
        .fallback(api::not_found)
        .with_state(inner)
}

pub(crate) async fn serve(inner: Arc<Inner>, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let _ = inner.origin.set(format!("http://{local}"));
    tokio::spawn(accept_loop(listener, router(inner)));
    Ok(local)
}

async fn accept_loop(listener: TcpListener, app: Router) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(stream, app.clone()));
    }
}

async fn serve_connection(stream: tokio::net::TcpStream, app: Router) {
    let notify = Arc::new(Notify::new());
    let kill = ConnKill(Arc::clone(&notify));
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(kill.clone());
        let mut app = app.clone();
        async move { app.call(request).await }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        result = connection => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        // Dropping the connection future closes the socket mid-request.
        () = notify.notified() => {}
    }
}
