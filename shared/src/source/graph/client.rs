//! HTTP to Microsoft Graph for one tenant, through the shared
//! [`Driver`](crate::source::http::Driver): what Graph's answers mean, the
//! token of the tenant, and what a page must hold. Graph's policy is counted
//! attempts: 429 (with `Retry-After`, the whole tenant waiting), 5xx, broken
//! or unreadable answers alike.

use std::sync::Arc;

use async_trait::async_trait;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::auth::token::AccessToken;
use crate::auth::{AuthError, Credential, TokenProvider};
use crate::source::budget::RequestBudget;
use crate::source::http::{BadPage, Call, Driver, QuotaWait, Service, Verdict};
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

impl GraphTarget {
    /// The scope of its tokens: the `.default` scope of this cloud's Graph.
    pub fn scope(&self) -> String {
        crate::domain::graph_scope(&self.graph_url)
    }
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
    tokens: Arc<TokenProvider>,
    driver: Driver,
}

/// Graph pages of delta queries: `$top` is not allowed there, the page size
/// is asked for with this preference.
pub const MAX_PAGE: u32 = 999;

/// The skim of a page that checks it is whole without building it: JSON
/// throughout (serde reads every token it skips) with its collection.
#[derive(serde::Deserialize)]
struct Skim {
    value: Option<serde::de::IgnoredAny>,
}

impl GraphClient {
    pub fn new(
        target: GraphTarget,
        tokens: Arc<TokenProvider>,
        limiter: Arc<TenantLimiter>,
        policy: RetryPolicy,
    ) -> Self {
        Self {
            target,
            tokens,
            driver: Driver::new(policy, Some(limiter)),
        }
    }

    /// Paces every request by the platform app's shared budget too.
    pub fn with_budget(mut self, budget: Option<Arc<dyn RequestBudget>>) -> Self {
        self.driver = self.driver.with_budget(budget);
        self
    }

    pub fn tokens(&self) -> &TokenProvider {
        &self.tokens
    }

    pub fn policy(&self) -> RetryPolicy {
        self.driver.policy()
    }

    /// Every request sent to Graph since the client was built.
    pub fn stats(&self) -> RequestStats {
        self.driver.stats()
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

    async fn send<T>(
        &self,
        call: &Call<'_>,
        read: &(dyn Fn(String) -> Result<T, BadPage> + Send + Sync),
        stats: &mut RequestStats,
    ) -> Result<T, GraphFailure> {
        let mut quota = QuotaWait::default();
        self.driver.send(self, call, read, stats, &mut quota).await
    }

    /// A GET's JSON (null for 204 No Content).
    pub async fn get(&self, url: &str, stats: &mut RequestStats) -> Result<Value, GraphFailure> {
        self.send(&Call::get(url), &json_of, stats).await
    }

    /// A collection page as it came, checked whole and holding `value`, for
    /// a caller that reads part of it before parsing the rest
    /// ([`parse_body`]).
    pub async fn get_page(
        &self,
        url: &str,
        stats: &mut RequestStats,
    ) -> Result<String, GraphFailure> {
        self.send(&Call::get(url), &whole_page, stats).await
    }

    pub async fn post(
        &self,
        url: &str,
        body: &Value,
        stats: &mut RequestStats,
    ) -> Result<Value, GraphFailure> {
        let call = Call {
            method: reqwest::Method::POST,
            url,
            json: Some(body),
            weight: 1,
        };
        self.send(&call, &json_of, stats).await
    }
}

/// A success's JSON; an empty body (204 No Content) is null.
fn json_of(text: String) -> Result<Value, BadPage> {
    if text.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text)
        .map_err(|e| BadPage::Unreadable(format!("HTTP 200 whose body is not JSON ({e})")))
}

fn whole_page(text: String) -> Result<String, BadPage> {
    match serde_json::from_str::<Skim>(&text) {
        Ok(Skim { value: Some(_) }) => Ok(text),
        Ok(Skim { value: None }) => Err(BadPage::Incomplete(
            "a page without its collection (value)".into(),
        )),
        Err(e) => Err(BadPage::Unreadable(format!(
            "HTTP 200 whose body is not JSON ({e})"
        ))),
    }
}

#[async_trait]
impl Service for GraphClient {
    type Token = AccessToken;
    type Failure = GraphFailure;

    fn name(&self) -> &'static str {
        "Microsoft Graph"
    }

    async fn token(&self) -> Result<AccessToken, GraphFailure> {
        let t = &self.target;
        Ok(self
            .tokens
            .token(&t.authority_url, &t.tenant, &t.scope(), &t.credential)
            .await?)
    }

    fn bearer<'t>(&self, token: &'t AccessToken) -> &'t str {
        token.value.expose()
    }

    async fn forget(&self, token: &AccessToken) {
        let t = &self.target;
        self.tokens
            .invalidate(
                &t.authority_url,
                &t.tenant,
                &t.scope(),
                &t.credential,
                token,
            )
            .await;
    }

    fn prepare(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request.header("Prefer", format!("odata.maxpagesize={MAX_PAGE}"))
    }

    fn budget_used(&self, headers: &HeaderMap) -> Option<u32> {
        let pct = headers
            .get("x-ms-throttle-limit-percentage")?
            .to_str()
            .ok()?
            .trim()
            .parse::<f64>()
            .ok()?;
        // Graph sends the share of the limit used as a fraction (0.8 to
        // 1.8); accept a plain percentage too.
        let percent = if pct <= 5.0 { pct * 100.0 } else { pct };
        Some(percent.round() as u32)
    }

    fn units_spent(&self, headers: &HeaderMap) -> Option<u64> {
        headers
            .get("x-ms-resource-unit")?
            .to_str()
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Graph names the budget a 429 is about: `Application/…` for the app
    /// across all tenants, `Tenant_Application/…` for the app in one.
    fn app_refused(&self, headers: &HeaderMap) -> bool {
        headers
            .get("x-ms-throttle-scope")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|scope| {
                scope
                    .get(..12)
                    .is_some_and(|p| p.eq_ignore_ascii_case("application/"))
            })
    }

    fn judge(&self, status: StatusCode, body: &str) -> Verdict<GraphFailure> {
        let error = || GraphErrorBody::parse(body);
        match status {
            s if s.is_success() => Verdict::Success,
            StatusCode::UNAUTHORIZED => {
                let e = error();
                Verdict::Unauthorized(GraphFailure::Source(SourceError::Auth(format!(
                    "Microsoft Graph refused the access token twice ({}: {}); check the app's consent and permissions",
                    e.code, e.message
                ))))
            }
            StatusCode::TOO_MANY_REQUESTS => Verdict::Retry("throttled (429)".into()),
            s if s.is_server_error() => Verdict::Retry(format!("HTTP {}", s.as_u16())),
            StatusCode::GONE => Verdict::Fail(GraphFailure::ResyncRequired(format!(
                "HTTP 410 {}",
                error().code
            ))),
            StatusCode::NOT_FOUND => Verdict::Fail(GraphFailure::NotFound),
            StatusCode::FORBIDDEN => Verdict::Fail(GraphFailure::Forbidden(error())),
            s => {
                let e = error();
                if RESYNC_CODES.contains(&e.code.as_str()) {
                    return Verdict::Fail(GraphFailure::ResyncRequired(e.code));
                }
                Verdict::Fail(GraphFailure::Source(SourceError::Protocol(format!(
                    "Microsoft Graph answered HTTP {} {}: {}",
                    s.as_u16(),
                    e.code,
                    e.message
                ))))
            }
        }
    }

    fn failure(&self, error: SourceError) -> GraphFailure {
        GraphFailure::Source(error)
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
