//! Faults placed at chosen API requests, and quota storms that last a span
//! of time: the request-level middleware in front of every Directory API
//! route, which also keeps the counters a client's own must equal.
//!
//! Requests are numbered from 0 from the last `set_faults`, over every API
//! request (never `/token`), in the order they arrive.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::errors::ApiError;
use crate::server::ConnKill;
use crate::state::{Inner, lock};

/// A fault for one API request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageFault {
    /// A 200 whose `Content-Length` promises the whole page, half of which
    /// is sent before the connection closes.
    CutBody,
    /// A 200 whose body is not JSON (a proxy's error page).
    NotJson,
    /// A 200 whose page lacks its list (`users`, `groups`, `members`) but
    /// keeps the rest, `nextPageToken` included.
    NoCollection,
    /// The connection is closed with no answer.
    Reset,
    /// No answer ever comes, the connection held open (a hung server):
    /// the client gives up, or dies waiting.
    Stall,
    /// 503 `backendError`, with `Retry-After` seconds when given.
    Unavailable { retry_after: Option<u32> },
    /// 429 `rateLimitExceeded`, with `Retry-After` seconds when given.
    TooMany { retry_after: Option<u32> },
}

/// Every authenticated API request answers a per-minute quota error for
/// `lasts` from the `set_faults` that set it: 403 `userRateLimitExceeded`,
/// 403 `quotaExceeded` and 429 `rateLimitExceeded` in turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaStorm {
    pub lasts: Duration,
}

/// The faults' clock and request numbers since they were set.
#[derive(Debug)]
pub(crate) struct Script {
    pub at: BTreeMap<u64, PageFault>,
    pub storm_until: Option<Instant>,
    seen: u64,
    storm_answers: u64,
}

impl Default for Script {
    fn default() -> Self {
        Script::new(BTreeMap::new(), None)
    }
}

impl Script {
    pub fn new(at: BTreeMap<u64, PageFault>, storm: Option<QuotaStorm>) -> Self {
        Script {
            at,
            storm_until: storm.map(|s| Instant::now() + s.lasts),
            seen: 0,
            storm_answers: 0,
        }
    }

    fn next(&mut self) -> Option<PageFault> {
        let n = self.seen;
        self.seen += 1;
        self.at.remove(&n)
    }

    /// The storm's answer to an authenticated request, while it lasts.
    pub fn storm(&mut self) -> Option<ApiError> {
        if self.storm_until? <= Instant::now() {
            return None;
        }
        self.storm_answers += 1;
        Some(match self.storm_answers % 3 {
            1 => ApiError::user_rate_limit(),
            2 => ApiError::quota_exceeded(),
            _ => ApiError::too_many(),
        })
    }
}

/// Marks a response the client must count as throttled: 429, 503 and
/// Google's 403 quota answers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Throttle;

/// In front of every API route: counts the request, applies its scripted
/// fault, and counts the throttles sent.
pub(crate) async fn api(State(inner): State<Arc<Inner>>, request: Request, next: Next) -> Response {
    lock(&inner.stats).api_requests += 1;
    let fault = lock(&inner.script).next();
    let response = match fault {
        Some(PageFault::Reset) => {
            lock(&inner.stats).fault("reset");
            if let Some(kill) = request.extensions().get::<ConnKill>() {
                kill.kill();
            }
            // The connection is being torn down; no response ever leaves.
            return std::future::pending::<Response>().await;
        }
        Some(PageFault::Stall) => {
            lock(&inner.stats).fault("stall");
            return std::future::pending::<Response>().await;
        }
        Some(PageFault::Unavailable { retry_after }) => {
            lock(&inner.stats).fault("backendError");
            with_retry_after(ApiError::backend_error().into_response(), retry_after)
        }
        Some(PageFault::TooMany { retry_after }) => {
            lock(&inner.stats).fault("rateLimitExceeded");
            with_retry_after(ApiError::too_many().into_response(), retry_after)
        }
        _ => next.run(request).await,
    };
    if response.extensions().get::<Throttle>().is_some() {
        lock(&inner.stats).api_throttled += 1;
    }
    match fault {
        Some(how) if response.status() == StatusCode::OK => spoil(&inner, how, response).await,
        _ => response,
    }
}

fn with_retry_after(mut response: Response, secs: Option<u32>) -> Response {
    if let Some(secs) = secs {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

async fn spoil(inner: &Inner, how: PageFault, response: Response) -> Response {
    let Ok(body) = axum::body::to_bytes(response.into_body(), usize::MAX).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let page: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    spoilt(inner, how, &page)
}

/// A 200 that does not deliver its page.
pub(crate) fn spoilt(inner: &Inner, how: PageFault, page: &serde_json::Value) -> Response {
    let json = "application/json; charset=UTF-8";
    let (reason, content_type, body) = match how {
        PageFault::NotJson => (
            "notJson",
            "text/html",
            Body::from("<html><body>Bad gateway: the upstream sent no answer</body></html>"),
        ),
        PageFault::NoCollection => {
            let mut page = page.clone();
            if let Some(o) = page.as_object_mut() {
                for list in ["users", "groups", "members"] {
                    o.remove(list);
                }
            }
            ("noCollection", json, Body::from(page.to_string()))
        }
        _ => {
            let text = page.to_string().into_bytes();
            let whole = text.len();
            let half = text[..whole / 2].to_vec();
            let mut response = (StatusCode::OK, cut_off(half)).into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(json));
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(whole));
            lock(&inner.stats).fault("cutBody");
            return response;
        }
    };
    lock(&inner.stats).fault(reason);
    (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// A body that sends `part`, then breaks the connection.
fn cut_off(part: Vec<u8>) -> Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(part),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "the simulator cut the body",
        )),
    ];
    Body::from_stream(futures::stream::iter(chunks))
}
