//! Microsoft Graph under `/graph`: the front door (faults, authentication,
//! latency) and the logical requests behind it (throttling, resource units,
//! permissions, the operation itself). `$batch` runs each inner request
//! through the same logical path.

mod applications;
mod batch;
mod reads;
mod route;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use uuid::Uuid;

use crate::access_token::{Principal, validate};
use crate::error::GraphError;
use crate::faults::{FrontDoor, PageFault};
use crate::server::ConnKill;
use crate::state::{Inner, lock, read};
use crate::throttle::{Charge, request_cost};

pub(crate) use route::{Params, Route};

/// Largest request body accepted (a `$batch` of 20 is far smaller).
const BODY_LIMIT: usize = 4 * 1024 * 1024;

const JSON_CONTENT_TYPE: &str = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";

/// One logical Graph request.
pub(crate) struct Call<'a> {
    pub query: &'a str,
    /// The `Prefer` header.
    pub prefer: Option<&'a str>,
    pub body: &'a [u8],
}

/// A logical request's answer.
pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: Vec<(&'static str, String)>,
    /// JSON, or empty for 204.
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(body: Vec<u8>) -> Reply {
        Reply {
            status: StatusCode::OK,
            headers: Vec::new(),
            body,
        }
    }

    pub fn value(value: &serde_json::Value) -> Reply {
        Reply::json(serde_json::to_vec(value).expect("a JSON value serializes"))
    }

    pub fn no_content() -> Reply {
        Reply {
            status: StatusCode::NO_CONTENT,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    fn error(error: GraphError, ids: &RequestIds) -> Reply {
        Reply {
            status: error.status,
            body: serde_json::to_vec(&error.body(&ids.request_id, &ids.client_request_id))
                .expect("a JSON value serializes"),
            headers: error.headers,
        }
    }
}

/// The ids Graph echoes in headers and error bodies.
pub(crate) struct RequestIds {
    pub request_id: String,
    pub client_request_id: String,
}

/// The axum handler for everything under `/graph`.
pub(crate) async fn entry(State(inner): State<Arc<Inner>>, request: Request) -> Response {
    let arrived = tokio::time::Instant::now();
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path()
        .strip_prefix("/graph")
        .unwrap_or(parts.uri.path())
        .to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    let request_id = Uuid::new_v4().to_string();
    let ids = RequestIds {
        client_request_id: parts
            .headers
            .get("client-request-id")
            .and_then(|v| v.to_str().ok())
            .map_or_else(|| request_id.clone(), str::to_string),
        request_id,
    };
    let route = Route::parse(&parts.method, &path);
    inner.record(match &route {
        Ok(route) => route.key(),
        Err(_) => "GRAPH (unknown route)",
    });

    let body = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(body) => body,
        Err(_) => {
            let error = GraphError::bad_request("The request body could not be read.");
            return respond(&inner, Reply::error(error, &ids), &ids);
        }
    };
    let weight = match &route {
        Ok(Route::Batch) => batch::requests_in(&body),
        _ => 1,
    };
    lock(&inner.stats).graph_requests += weight;
    let scripted = lock(&inner.faults).scripted();
    let door = match scripted {
        Some(PageFault::Reset) => FrontDoor::Drop,
        _ => lock(&inner.faults).front_door(),
    };
    let front = match (door, scripted) {
        (FrontDoor::Drop, _) => {
            lock(&inner.stats).faults_injected += 1;
            if let Some(kill) = parts.extensions.get::<ConnKill>() {
                kill.kill();
            }
            // The connection is being torn down; no response ever leaves.
            return std::future::pending::<Response>().await;
        }
        (FrontDoor::ServerError(status), _) => Some(GraphError::server_error(status)),
        (_, Some(PageFault::Unavailable { retry_after })) => {
            let mut error = GraphError::server_error(503);
            error.headers.retain(|(name, _)| *name != "Retry-After");
            Some(match retry_after {
                Some(secs) => error.with_header("Retry-After", secs.to_string()),
                None => error,
            })
        }
        (_, Some(PageFault::TooMany { retry_after })) => {
            Some(GraphError::too_many_requests(retry_after))
        }
        _ => None,
    };
    let reply = match front {
        Some(error) => {
            lock(&inner.stats).faults_injected += 1;
            Reply::error(error, &ids)
        }
        None => {
            let reply = served(&inner, &parts, route, &query, &body, &ids);
            // The latency is the response time, as a client measures a
            // service's: the simulator's own work on the reply (building a
            // page of 5,000 members takes it a few milliseconds of this
            // machine's CPU, which Graph's servers would not share with the
            // client) is part of it, not added to it.
            let latency = lock(&inner.faults).faults.page_latency;
            if !latency.is_zero() {
                tokio::time::sleep_until(arrived + latency).await;
            }
            reply
        }
    };
    if matches!(reply.status.as_u16(), 429 | 503) {
        lock(&inner.stats).graph_throttled += weight;
    }
    match scripted {
        Some(how) if reply.status == StatusCode::OK => spoilt(&inner, how, reply, &ids),
        _ => respond(&inner, reply, &ids),
    }
}

/// A request past the front door: authenticated, then run.
fn served(
    inner: &Inner,
    parts: &axum::http::request::Parts,
    route: Result<Route, GraphError>,
    query: &str,
    body: &[u8],
    ids: &RequestIds,
) -> Reply {
    let authorization = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let principal = match validate(
        authorization,
        inner.now().timestamp(),
        inner.access_token_generation(),
    ) {
        Ok(principal) if inner.tenant(principal.tenant).is_some() => principal,
        Ok(_) => {
            let error =
                GraphError::unauthenticated("The tenant of the access token does not exist.");
            return Reply::error(error, ids);
        }
        Err(error) => return Reply::error(error, ids),
    };
    let prefer = parts.headers.get("prefer").and_then(|v| v.to_str().ok());
    let call = Call {
        query,
        prefer,
        body,
    };
    match route {
        Err(error) => Reply::error(error, ids),
        Ok(Route::Batch) => batch::run(inner, &principal, &call, ids),
        Ok(route) => logical(inner, &principal, &route, &call, ids),
    }
}

/// A 200 that does not deliver its page.
fn spoilt(inner: &Inner, how: PageFault, mut reply: Reply, ids: &RequestIds) -> Response {
    lock(&inner.stats).faults_injected += 1;
    match how {
        PageFault::NotJson => {
            reply.body =
                b"<html><body>Bad gateway: the upstream sent no answer</body></html>".to_vec();
            let mut response = respond(inner, reply, ids);
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
            response
        }
        PageFault::NoCollection => {
            let mut page: serde_json::Value =
                serde_json::from_slice(&reply.body).unwrap_or_default();
            if let Some(o) = page.as_object_mut() {
                o.remove("value");
                o.remove("responses");
            }
            reply.body = serde_json::to_vec(&page).expect("a JSON value serializes");
            respond(inner, reply, ids)
        }
        _ => {
            let whole = std::mem::take(&mut reply.body);
            let mut response = respond(inner, reply, ids);
            let half = whole[..whole.len() / 2].to_vec();
            let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
                Ok(half),
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "the simulator cut the body",
                )),
            ];
            *response.body_mut() = Body::from_stream(futures::stream::iter(chunks));
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(whole.len()));
            response
        }
    }
}

/// Turns a reply into the HTTP response, with Graph's common headers.
fn respond(inner: &Inner, reply: Reply, ids: &RequestIds) -> Response {
    let mut response = Response::new(Body::from(reply.body));
    *response.status_mut() = reply.status;
    let headers = response.headers_mut();
    if reply.status != StatusCode::NO_CONTENT {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(JSON_CONTENT_TYPE),
        );
    }
    let mut put = |name: &str, value: &str| {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.insert(name, value);
        }
    };
    put("request-id", &ids.request_id);
    put("client-request-id", &ids.client_request_id);
    for (name, value) in &reply.headers {
        put(name, value);
    }
    if let Some(forced) = lock(&inner.faults).faults.throttle_percentage_header {
        put(
            "x-ms-throttle-limit-percentage",
            &format!("{:.2}", f64::from(forced) / 100.0),
        );
    }
    response
}

/// One logical request: injected throttling, resource units, then the
/// operation.
pub(crate) fn logical(
    inner: &Inner,
    principal: &Principal,
    route: &Route,
    call: &Call,
    ids: &RequestIds,
) -> Reply {
    if let Some(retry_after) = lock(&inner.faults).throttle() {
        let mut stats = lock(&inner.stats);
        stats.throttled += 1;
        stats.faults_injected += 1;
        drop(stats);
        return Reply::error(GraphError::too_many_requests(retry_after), ids);
    }

    let params = Params::parse(call.query);
    let cost = request_cost(
        route.base_cost(),
        params.has("$select"),
        params.top_lenient(),
    );
    let tenant_users = inner
        .tenant(principal.tenant)
        .map_or(0, |t| read(&t).size_for_tier());
    let enforce = lock(&inner.faults).faults.enforce_resource_units;
    let charge = lock(&inner.meter).charge(
        principal.app,
        principal.tenant,
        tenant_users,
        cost,
        enforce,
        Instant::now(),
    );
    let usage = match charge {
        Charge::Throttled { retry_after, scope } => {
            let mut stats = lock(&inner.stats);
            stats.throttled += 1;
            if scope.starts_with(crate::throttle::APP_SCOPE) {
                stats.app_throttled += 1;
            } else {
                stats.tenant_throttled += 1;
            }
            drop(stats);
            let error = GraphError::too_many_requests(retry_after)
                .with_header("x-ms-throttle-scope", scope)
                .with_header("x-ms-throttle-information", "ResourceUnitLimitExceeded");
            return Reply::error(error, ids);
        }
        Charge::Served { usage } => usage,
    };
    *lock(&inner.stats)
        .resource_units
        .entry(principal.tenant)
        .or_default() += u64::from(cost);

    let mut reply = match execute(inner, principal, route, call, &params) {
        Ok(reply) => reply,
        Err(error) => Reply::error(error, ids),
    };
    reply.headers.push(("x-ms-resource-unit", cost.to_string()));
    if usage > 0.8 {
        reply
            .headers
            .push(("x-ms-throttle-limit-percentage", format!("{usage:.2}")));
    }
    reply
}

fn execute(
    inner: &Inner,
    principal: &Principal,
    route: &Route,
    call: &Call,
    params: &Params,
) -> Result<Reply, GraphError> {
    match route {
        Route::Organization => reads::organization(inner, principal),
        Route::Users | Route::Groups | Route::Members { .. } => {
            reads::list(inner, principal, route, params)
        }
        Route::UsersDelta | Route::GroupsDelta => {
            reads::delta(inner, principal, route, call, params)
        }
        Route::User(id) => reads::user(inner, principal, id, params),
        Route::Group(id) => reads::group(inner, principal, id, params),
        Route::Application(app) => applications::get(inner, principal, app),
        Route::AddKey(app) => applications::add_key(inner, principal, app, call.body),
        Route::RemoveKey(app) => applications::remove_key(inner, principal, app, call.body),
        Route::Batch => Err(GraphError::bad_request("A $batch cannot contain a $batch.")),
    }
}
