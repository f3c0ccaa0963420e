//! HTTP to Microsoft Graph for one tenant: bearer tokens, bounded retries,
//! `Retry-After`, backoff on 5xx and dropped connections with a fresh
//! connection pool, the tenant's concurrency cap and budget pacing.

use std::sync::{Arc, Mutex};

use reqwest::StatusCode;
use serde_json::Value;

use crate::auth::token::without_url;
use crate::auth::{AuthError, Credential, TokenProvider};
use crate::source::retry::{RetryPolicy, TenantLimiter};
use crate::source::{RequestStats, SourceError};

/// Where and as whom to call Graph.
#[derive(Debug, Clone)]
pub struct GraphTarget {
    pub authority_url: String,
    pub graph_url: String,
    /// GUID or verified domain.
    pub tenant: String,
    pub credential: Credential,
}

/// A Graph error body: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, Default)]
pub struct GraphErrorBody {
    pub code: String,
    pub message: String,
}

impl GraphErrorBody {
    fn parse(body: &str) -> Self {
        let v: Value = serde_json::from_str(body).unwrap_or_default();
        let s = |k: &str| v["error"][k].as_str().unwrap_or_default().to_owned();
        Self {
            code: s("code"),
            message: s("message"),
        }
    }
}

/// What a request ended with, before it is turned into a [`SourceError`]
/// by a caller that knows what it was asking for.
#[derive(Debug)]
pub enum GraphFailure {
    NotFound,
    Forbidden(GraphErrorBody),
    ResyncRequired(String),
    Source(SourceError),
}

impl From<AuthError> for GraphFailure {
    fn from(e: AuthError) -> Self {
        GraphFailure::Source(match e {
            AuthError::Unreachable { .. } => SourceError::Unavailable(e.to_string()),
            other => SourceError::Auth(other.to_string()),
        })
    }
}

/// Graph error codes that mean "this delta token is no longer usable".
const RESYNC_CODES: [&str; 3] = ["syncStateNotFound", "resyncRequired", "syncStateInvalid"];

pub struct GraphClient {
    pub target: GraphTarget,
    http: Mutex<reqwest::Client>,
    tokens: Arc<TokenProvider>,
    limiter: Arc<TenantLimiter>,
    policy: RetryPolicy,
}

/// Graph pages of delta queries: `$top` is not allowed there, the page size
/// is asked for with this preference.
pub const MAX_PAGE: u32 = 999;

impl GraphClient {
    pub fn new(
        target: GraphTarget,
        tokens: Arc<TokenProvider>,
        limiter: Arc<TenantLimiter>,
        policy: RetryPolicy,
    ) -> Self {
        Self {
            target,
            http: Mutex::new(new_http()),
            tokens,
            limiter,
            policy,
        }
    }

    fn http(&self) -> reqwest::Client {
        self.http.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// After a 5xx or a broken connection, later requests open new
    /// connections rather than reuse the pool (Microsoft's advice: the next
    /// attempt may reach a healthy front end).
    fn renew_connections(&self) {
        *self.http.lock().unwrap_or_else(|p| p.into_inner()) = new_http();
    }

    pub fn tokens(&self) -> &TokenProvider {
        &self.tokens
    }

    pub fn policy(&self) -> RetryPolicy {
        self.policy
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/v1.0{path}", self.target.graph_url.trim_end_matches('/'))
    }

    /// Links Graph handed us (nextLink, deltaLink) must point at the same
    /// Graph service: a tampered cursor must not receive our token.
    pub fn check_link(&self, link: &str) -> Result<(), SourceError> {
        let base = format!("{}/", self.target.graph_url.trim_end_matches('/'));
        if link.starts_with(&base) {
            Ok(())
        } else {
            Err(SourceError::Protocol(format!(
                "a stored Graph link does not start with {base}; it was refused (a full sync will start afresh)"
            )))
        }
    }

    pub async fn get(&self, url: &str, stats: &mut RequestStats) -> Result<Value, GraphFailure> {
        parse_body(&self.get_text(url, stats).await?)
    }

    /// A GET's body as it came, for a caller that reads part of it before
    /// parsing the rest ([`parse_body`]).
    pub async fn get_text(
        &self,
        url: &str,
        stats: &mut RequestStats,
    ) -> Result<String, GraphFailure> {
        self.send(reqwest::Method::GET, url, None, stats).await
    }

    pub async fn post(
        &self,
        url: &str,
        body: &Value,
        stats: &mut RequestStats,
    ) -> Result<Value, GraphFailure> {
        parse_body(
            &self
                .send(reqwest::Method::POST, url, Some(body), stats)
                .await?,
        )
    }

    /// Sends with the retry policy; a success's body as it came (empty for
    /// 204 No Content).
    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<&Value>,
        stats: &mut RequestStats,
    ) -> Result<String, GraphFailure> {
        let t = &self.target;
        let mut refreshed = false;
        let mut last_problem = String::new();
        for attempt in 0..self.policy.max_attempts {
            if attempt > 0 {
                stats.retries += 1;
            }
            let token = self
                .tokens
                .token(&t.authority_url, &t.tenant, &t.credential)
                .await?;
            let permit = self.limiter.acquire().await;
            stats.requests += 1;
            let mut request = self
                .http()
                .request(method.clone(), url)
                .bearer_auth(token.value.expose())
                .header("Prefer", format!("odata.maxpagesize={MAX_PAGE}"));
            if let Some(b) = body {
                request = request.json(b);
            }
            let response = request.send().await;
            drop(permit);
            let response = match response {
                Ok(r) => r,
                Err(e) => {
                    last_problem = without_url(&e);
                    self.renew_connections();
                    tokio::time::sleep(self.policy.backoff(attempt)).await;
                    continue;
                }
            };
            if let Some(pct) = response
                .headers()
                .get("x-ms-throttle-limit-percentage")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
            {
                // Graph sends the share of the limit used as a fraction
                // (0.8 to 1.8); accept a plain percentage too.
                let percent = if pct <= 5.0 { pct * 100.0 } else { pct };
                self.limiter.observe_budget(percent.round() as u32);
            }
            let status = response.status();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let text = match response.text().await {
                Ok(t) => t,
                Err(e) => {
                    last_problem = without_url(&e);
                    self.renew_connections();
                    tokio::time::sleep(self.policy.backoff(attempt)).await;
                    continue;
                }
            };
            match status {
                StatusCode::NO_CONTENT => return Ok(String::new()),
                s if s.is_success() => return Ok(text),
                StatusCode::UNAUTHORIZED if !refreshed => {
                    // The token may have been revoked or expired early: one
                    // fresh token, one more try.
                    refreshed = true;
                    self.tokens
                        .invalidate(&t.authority_url, &t.tenant, &t.credential, &token)
                        .await;
                    continue;
                }
                StatusCode::UNAUTHORIZED => {
                    let e = GraphErrorBody::parse(&text);
                    return Err(GraphFailure::Source(SourceError::Auth(format!(
                        "Microsoft Graph refused the access token twice ({}: {}); check the app's consent and permissions",
                        e.code, e.message
                    ))));
                }
                StatusCode::TOO_MANY_REQUESTS => {
                    stats.throttled += 1;
                    let wait = self
                        .policy
                        .retry_after(retry_after.as_deref())
                        .unwrap_or_else(|| self.policy.backoff(attempt));
                    // Everyone reading this tenant waits, not just this request.
                    self.limiter.block_for(wait);
                    last_problem = "throttled (429)".into();
                    continue;
                }
                s if s.is_server_error() => {
                    last_problem = format!("HTTP {}", s.as_u16());
                    self.renew_connections();
                    let wait = self
                        .policy
                        .retry_after(retry_after.as_deref())
                        .unwrap_or_else(|| self.policy.backoff(attempt));
                    tokio::time::sleep(wait).await;
                    continue;
                }
                StatusCode::GONE => {
                    let e = GraphErrorBody::parse(&text);
                    return Err(GraphFailure::ResyncRequired(format!("HTTP 410 {}", e.code)));
                }
                StatusCode::NOT_FOUND => return Err(GraphFailure::NotFound),
                StatusCode::FORBIDDEN => {
                    return Err(GraphFailure::Forbidden(GraphErrorBody::parse(&text)));
                }
                s => {
                    let e = GraphErrorBody::parse(&text);
                    if RESYNC_CODES.contains(&e.code.as_str()) {
                        return Err(GraphFailure::ResyncRequired(e.code));
                    }
                    return Err(GraphFailure::Source(SourceError::Protocol(format!(
                        "Microsoft Graph answered HTTP {} {}: {}",
                        s.as_u16(),
                        e.code,
                        e.message
                    ))));
                }
            }
        }
        Err(GraphFailure::Source(SourceError::Unavailable(format!(
            "Microsoft Graph was still unavailable after {} attempts (last: {last_problem}); nothing was removed, \
             and the next sync continues from the last checkpoint",
            self.policy.max_attempts
        ))))
    }
}

/// A successful response's body as JSON; an empty one (204 No Content) is
/// null.
pub fn parse_body(text: &str) -> Result<Value, GraphFailure> {
    if text.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(text).map_err(|e| {
        GraphFailure::Source(SourceError::Protocol(format!(
            "Graph answered invalid JSON: {e}"
        )))
    })
}

fn new_http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(100))
        .connect_timeout(std::time::Duration::from_secs(10))
        .pool_idle_timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap_or_default()
}
