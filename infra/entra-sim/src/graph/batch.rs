//! `POST /v1.0/$batch`: up to 20 requests, each counted, throttled and
//! charged on its own; an inner failure (429 included) is that response's
//! status, never the batch's.

use std::collections::HashSet;

use axum::http::Method;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{Call, Reply, RequestIds, Route, logical};
use crate::access_token::Principal;
use crate::error::GraphError;
use crate::state::Inner;

/// Graph's limit on requests in one batch.
pub const MAX_BATCH_REQUESTS: usize = 20;

#[derive(Deserialize)]
struct BatchRequest {
    requests: Vec<InnerRequest>,
}

#[derive(Deserialize)]
struct InnerRequest {
    id: String,
    method: String,
    url: String,
    #[serde(default)]
    headers: Map<String, Value>,
    #[serde(default)]
    body: Option<Value>,
}

#[derive(Serialize)]
struct InnerResponse {
    id: String,
    status: u16,
    headers: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<Box<RawValue>>,
}

/// The requests a `$batch` body carries, as Graph budgets it; an
/// unreadable body counts as one request.
pub(super) fn requests_in(body: &[u8]) -> u64 {
    serde_json::from_slice::<BatchRequest>(body).map_or(1, |b| b.requests.len().max(1) as u64)
}

pub(super) fn run(inner: &Inner, principal: &Principal, call: &Call, ids: &RequestIds) -> Reply {
    match run_batch(inner, principal, call, ids) {
        Ok(reply) => reply,
        Err(error) => Reply::error(error, ids),
    }
}

fn run_batch(
    inner: &Inner,
    principal: &Principal,
    call: &Call,
    ids: &RequestIds,
) -> Result<Reply, GraphError> {
    let batch: BatchRequest = serde_json::from_slice(call.body)
        .map_err(|e| GraphError::bad_request(format!("Invalid batch payload format: {e}")))?;
    if batch.requests.is_empty() {
        return Err(GraphError::bad_request(
            "The batch request contains no requests.",
        ));
    }
    if batch.requests.len() > MAX_BATCH_REQUESTS {
        return Err(GraphError::bad_request(format!(
            "The number of requests in the batch ({}) exceeds the limit of {MAX_BATCH_REQUESTS}.",
            batch.requests.len()
        )));
    }
    let mut seen = HashSet::new();
    if let Some(duplicate) = batch.requests.iter().find(|r| !seen.insert(r.id.as_str())) {
        return Err(GraphError::bad_request(format!(
            "The batch request contains the id '{}' more than once.",
            duplicate.id
        )));
    }
    let responses: Vec<InnerResponse> = batch
        .requests
        .into_iter()
        .map(|request| answer(inner, principal, request, ids))
        .collect();
    let body = serde_json::to_vec(&serde_json::json!({ "responses": responses }))
        .expect("batch responses serialize");
    Ok(Reply::json(body))
}

fn answer(
    inner: &Inner,
    principal: &Principal,
    request: InnerRequest,
    ids: &RequestIds,
) -> InnerResponse {
    let reply = inner_reply(inner, principal, &request, ids);
    if matches!(reply.status.as_u16(), 429 | 503) {
        crate::state::lock(&inner.stats).graph_throttled += 1;
    }
    let mut headers = Map::new();
    if !reply.body.is_empty() {
        headers.insert("Content-Type".into(), Value::from("application/json"));
    }
    for (name, value) in reply.headers {
        headers.insert(name.to_string(), Value::from(value));
    }
    let body = (!reply.body.is_empty()).then(|| {
        RawValue::from_string(String::from_utf8(reply.body).expect("replies are JSON text"))
            .expect("replies are JSON")
    });
    InnerResponse {
        id: request.id,
        status: reply.status.as_u16(),
        headers,
        body,
    }
}

fn inner_reply(
    inner: &Inner,
    principal: &Principal,
    request: &InnerRequest,
    ids: &RequestIds,
) -> Reply {
    let Ok(method) = Method::from_bytes(request.method.to_ascii_uppercase().as_bytes()) else {
        return Reply::error(GraphError::bad_request("Invalid method."), ids);
    };
    // Inner URLs are relative to the version root.
    if request.url.contains("://") {
        return Reply::error(
            GraphError::bad_request("Batch request URLs must be relative, e.g. '/users'."),
            ids,
        );
    }
    let relative = request.url.trim_start_matches('/');
    let (path, query) = relative.split_once('?').unwrap_or((relative, ""));
    let path = format!("/v1.0/{path}");
    let route = match Route::parse(&method, &path) {
        Ok(Route::Batch) => {
            return Reply::error(
                GraphError::bad_request("A $batch cannot contain a $batch."),
                ids,
            );
        }
        Ok(route) => route,
        Err(error) => {
            inner.record("GRAPH (unknown route)");
            return Reply::error(error, ids);
        }
    };
    inner.record(route.key());
    let prefer = request
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("prefer"))
        .and_then(|(_, v)| v.as_str());
    let body = request
        .body
        .as_ref()
        .map(|b| serde_json::to_vec(b).expect("a JSON value serializes"))
        .unwrap_or_default();
    let call = Call {
        query,
        prefer,
        body: &body,
    };
    logical(inner, principal, &route, &call, ids)
}
