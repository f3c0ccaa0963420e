//! The Lambda Runtime API (version 2018-06-01) as one execution environment
//! sees it: `GET /runtime/invocation/next` hands out the events offered, one
//! at a time; `POST /runtime/invocation/{id}/response`, `.../{id}/error` and
//! `/runtime/init/error` are reported back to the sandbox.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::mpsc;
use uuid::Uuid;

/// What the binary posted for an invocation.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// `POST /invocation/{id}/response`: the handler's result.
    Response(Bytes),
    /// `POST /invocation/{id}/error`: the handler failed.
    Error {
        /// The `Lambda-Runtime-Function-Error-Type` header.
        error_type: Option<String>,
        body: Bytes,
    },
}

impl Outcome {
    /// The response's body, or the error as text.
    pub fn response(&self) -> Result<&Bytes, String> {
        match self {
            Outcome::Response(body) => Ok(body),
            Outcome::Error { error_type, body } => Err(format!(
                "the function reported an error ({}): {}",
                error_type.as_deref().unwrap_or("no error type"),
                String::from_utf8_lossy(body)
            )),
        }
    }
}

/// An event waiting for the binary's next poll.
pub(crate) struct Offer {
    pub request_id: String,
    pub event: Bytes,
    /// The invocation's deadline, as Lambda computes it from the timeout.
    pub deadline: SystemTime,
}

/// What the binary did, as the Runtime API saw it.
pub(crate) enum Report {
    /// A `GET /next` arrived (the runtime is ready for an event).
    Polled(Instant),
    Answered {
        request_id: String,
        at: Instant,
        outcome: Outcome,
    },
    InitError {
        error_type: Option<String>,
        body: Bytes,
    },
    /// A request the Runtime API does not serve, or an answer for an
    /// invocation that is not in flight.
    Unexpected(String),
}

struct Api {
    function_arn: String,
    offers: tokio::sync::Mutex<mpsc::UnboundedReceiver<Offer>>,
    /// Handed out and not answered yet.
    in_flight: Mutex<HashSet<String>>,
    reports: mpsc::UnboundedSender<Report>,
}

impl Api {
    fn report(&self, report: Report) {
        // The sandbox is gone only when the server is being stopped.
        let _ = self.reports.send(report);
    }
}

/// A running Runtime API: offer events, read reports. Dropping it stops
/// the server.
pub(crate) struct RuntimeApi {
    /// `host:port`, what `AWS_LAMBDA_RUNTIME_API` holds.
    pub address: String,
    pub offers: mpsc::UnboundedSender<Offer>,
    pub reports: mpsc::UnboundedReceiver<Report>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl RuntimeApi {
    /// Serves the Runtime API for the function `function_arn` on a free
    /// loopback port.
    pub async fn serve(function_arn: String) -> std::io::Result<RuntimeApi> {
        let (offer_tx, offer_rx) = mpsc::unbounded_channel();
        let (report_tx, report_rx) = mpsc::unbounded_channel();
        let api = Arc::new(Api {
            function_arn,
            offers: tokio::sync::Mutex::new(offer_rx),
            in_flight: Mutex::default(),
            reports: report_tx,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        let app = routes().with_state(api);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(RuntimeApi {
            address,
            offers: offer_tx,
            reports: report_rx,
            server,
        })
    }
}

fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route(
            "/2018-06-01/runtime/invocation/{id}/error",
            post(invocation_error),
        )
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .fallback(other)
}

fn epoch_ms(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()
}

/// An X-Ray trace header as Lambda passes it (not sampled).
fn trace_id() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let root = Uuid::new_v4().simple().to_string();
    let parent = Uuid::new_v4().simple().to_string();
    format!(
        "Root=1-{secs:08x}-{};Parent={};Sampled=0",
        &root[..24],
        &parent[..16]
    )
}

/// `GET /next`: the next event offered, waiting for one as long as it
/// takes (a warm sandbox between invocations).
async fn next(State(api): State<Arc<Api>>) -> Response {
    api.report(Report::Polled(Instant::now()));
    let offer = api.offers.lock().await.recv().await;
    let Some(offer) = offer else {
        // The sandbox is stopping: nothing will be offered again.
        return std::future::pending().await;
    };
    api.in_flight
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(offer.request_id.clone());
    (
        [
            ("content-type", "application/json".to_owned()),
            ("lambda-runtime-aws-request-id", offer.request_id),
            (
                "lambda-runtime-deadline-ms",
                epoch_ms(offer.deadline).to_string(),
            ),
            (
                "lambda-runtime-invoked-function-arn",
                api.function_arn.clone(),
            ),
            ("lambda-runtime-trace-id", trace_id()),
        ],
        offer.event,
    )
        .into_response()
}

fn error_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Takes the answer for invocation `id` if it is in flight.
fn answer(api: &Api, request_id: String, outcome: Outcome) -> StatusCode {
    let at = Instant::now();
    let known = api
        .in_flight
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&request_id);
    if !known {
        api.report(Report::Unexpected(format!(
            "an answer for request {request_id}, which is not in flight"
        )));
        return StatusCode::BAD_REQUEST;
    }
    api.report(Report::Answered {
        request_id,
        at,
        outcome,
    });
    StatusCode::ACCEPTED
}

async fn response(State(api): State<Arc<Api>>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    answer(&api, id, Outcome::Response(body))
}

async fn invocation_error(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let error_type = error_type(&headers);
    answer(&api, id, Outcome::Error { error_type, body })
}

async fn init_error(State(api): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    api.report(Report::InitError {
        error_type: error_type(&headers),
        body,
    });
    StatusCode::ACCEPTED
}

async fn other(State(api): State<Arc<Api>>, uri: Uri) -> StatusCode {
    api.report(Report::Unexpected(format!("a request to {uri}")));
    StatusCode::NOT_FOUND
}
