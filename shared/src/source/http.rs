//! One driver for every request an HTTP directory source sends (Graph,
//! Google): the token and its one refresh on 401, the tenant's limiter,
//! the budget shared with other workers where there is one, `Retry-After`,
//! exponential backoff with full jitter, fresh connections after a
//! failure, and exact request counters.
//!
//! What an answer means is the service's to say ([`Service::judge`]); what
//! a page must hold is the caller's ([`Read`]). A 200 that cannot be read
//! (cut off, reset, not JSON) or lacks its collection is retried like a
//! 5xx: taken for an empty page it would end a listing early, and the sweep
//! would remove everyone after it.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;
use tokio::time::Instant;

use crate::auth::token::without_url;
use crate::source::budget::{Grant, RequestBudget};
use crate::source::retry::{RetryPolicy, TenantLimiter};
use crate::source::{RequestStats, SourceError};

/// What an answer means, as the service that sent it defines.
#[derive(Debug)]
pub enum Verdict<F> {
    /// A success: its body goes to the caller's [`Read`].
    Success,
    /// The token was refused: one fresh token, one more try; the failure
    /// is what a second refusal ends with.
    Unauthorized(F),
    /// Throttled or briefly unavailable: wait (`Retry-After`, else backoff)
    /// and count the attempt.
    Retry(String),
    /// A per-minute quota is spent: ride it out for the policy's quota
    /// budget, then pause the run rather than fail it.
    Quota(String),
    /// No retry can help.
    Fail(F),
}

/// Why a 200 is no page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadPage {
    /// Not the service's JSON (a proxy's page, a body cut short).
    Unreadable(String),
    /// JSON without what the page must hold (its collection).
    Incomplete(String),
}

/// Reads a success's body into what the caller asked for.
pub type Read<'a, T> = &'a (dyn Fn(String) -> Result<T, BadPage> + Send + Sync);

/// An HTTP directory service, as the driver needs to know it.
#[async_trait]
pub trait Service: Send + Sync {
    type Token: Send + Sync;
    type Failure: Send;

    /// For messages: "Microsoft Graph", "the Directory API".
    fn name(&self) -> &'static str;
    async fn token(&self) -> Result<Self::Token, Self::Failure>;
    fn bearer<'t>(&self, token: &'t Self::Token) -> &'t str;
    /// Drops a token the service refused, so the next is fresh.
    async fn forget(&self, token: &Self::Token);
    fn judge(&self, status: StatusCode, body: &str) -> Verdict<Self::Failure>;
    fn failure(&self, error: SourceError) -> Self::Failure;
    /// Headers every request carries.
    fn prepare(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request
    }
    /// The share of its budget the service says is used, in percent.
    fn budget_used(&self, _headers: &HeaderMap) -> Option<u32> {
        None
    }
    /// What the service says a request cost, in the units `weight` guesses.
    fn units_spent(&self, _headers: &HeaderMap) -> Option<u64> {
        None
    }
    /// Whether a refusal is of the whole app (every tenant), not this one.
    fn app_refused(&self, _headers: &HeaderMap) -> bool {
        false
    }
}

/// One request to send.
pub struct Call<'a> {
    pub method: reqwest::Method,
    pub url: &'a str,
    pub json: Option<&'a Value>,
    /// What the service counts it as: a Graph `$batch` is the requests it
    /// carries, which are what Graph budgets. Also the units taken from a
    /// shared budget before it is sent (Graph's delta pages cost 1 each;
    /// the answer's own count corrects the guess).
    pub weight: u64,
}

impl<'a> Call<'a> {
    pub fn get(url: &'a str) -> Self {
        Self {
            method: reqwest::Method::GET,
            url,
            json: None,
            weight: 1,
        }
    }
}

/// How long one page read has been riding out a quota. A page of groups
/// sends many requests: the budget is the page's, not each request's.
#[derive(Debug, Default)]
pub struct QuotaWait {
    since: Option<Instant>,
    tries: u32,
}

/// What every request of a source cost, since the source was built.
#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    throttled: AtomicU64,
    retries: AtomicU64,
}

/// Sends requests for one source; shared by its streams and read-ahead.
pub struct Driver {
    http: Mutex<reqwest::Client>,
    policy: RetryPolicy,
    limiter: Option<Arc<TenantLimiter>>,
    budget: Option<Arc<dyn RequestBudget>>,
    counters: Counters,
}

/// An answer, read whole.
struct Answer {
    status: StatusCode,
    retry_after: Option<String>,
    text: String,
    /// What the service says the request cost.
    units: Option<u64>,
    /// A refusal of the whole app.
    app_refused: bool,
}

/// The problem a retry is about, kept for the message if retries run out.
struct Last {
    why: String,
    protocol: bool,
}

impl Driver {
    pub fn new(policy: RetryPolicy, limiter: Option<Arc<TenantLimiter>>) -> Self {
        Self {
            http: Mutex::new(new_http()),
            policy,
            limiter,
            budget: None,
            counters: Counters::default(),
        }
    }

    /// Paces every request by `budget` too (the platform app's, shared by
    /// every worker).
    pub fn with_budget(mut self, budget: Option<Arc<dyn RequestBudget>>) -> Self {
        self.budget = budget;
        self
    }

    pub fn policy(&self) -> RetryPolicy {
        self.policy
    }

    /// Every request sent, throttle received and retry, since built.
    pub fn stats(&self) -> RequestStats {
        let c = &self.counters;
        RequestStats {
            requests: c.requests.load(Ordering::Relaxed),
            throttled: c.throttled.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
        }
    }

    /// Adds to a page's stats and to the source's totals at once, so the
    /// two never disagree.
    pub fn tally(&self, stats: &mut RequestStats, more: RequestStats) {
        stats.add(more);
        let c = &self.counters;
        c.requests.fetch_add(more.requests, Ordering::Relaxed);
        c.throttled.fetch_add(more.throttled, Ordering::Relaxed);
        c.retries.fetch_add(more.retries, Ordering::Relaxed);
    }

    fn http(&self) -> reqwest::Client {
        self.http.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// After a 5xx or a broken answer, later requests open new connections
    /// rather than reuse the pool: the next may reach a healthy front end.
    fn renew_connections(&self) {
        *self.http.lock().unwrap_or_else(|p| p.into_inner()) = new_http();
    }

    /// Sends `call` until it succeeds and its body reads, a failure no retry
    /// helps, the attempts run out, or a quota outlasts its budget.
    pub async fn send<S: Service, T>(
        &self,
        service: &S,
        call: &Call<'_>,
        read: Read<'_, T>,
        stats: &mut RequestStats,
        quota: &mut QuotaWait,
    ) -> Result<T, S::Failure> {
        let (mut attempts, mut sent, mut refreshed) = (0, 0u32, false);
        let mut last = Last {
            why: String::new(),
            protocol: false,
        };
        while attempts < self.policy.max_attempts {
            let once = RequestStats {
                requests: call.weight,
                retries: if sent > 0 { call.weight } else { 0 },
                throttled: 0,
            };
            sent += 1;
            let token = service.token().await?;
            let permit = match &self.limiter {
                Some(l) => Some(l.acquire().await),
                None => None,
            };
            // Units are taken last, just before the request goes: taken
            // before a wait for the tenant, they would land in a later
            // second than they were counted in.
            self.wait_for_budget(service, call.weight, quota).await?;
            self.tally(stats, once);
            let mut request = self
                .http()
                .request(call.method.clone(), call.url)
                .bearer_auth(service.bearer(&token));
            if let Some(body) = call.json {
                request = request.json(body);
            }
            let response = service.prepare(request).send().await;
            drop(permit);
            let answer = match self.answer(service, response).await {
                Ok(answer) => answer,
                Err(why) => {
                    self.renew_connections();
                    last = Last {
                        why,
                        protocol: false,
                    };
                    tokio::time::sleep(self.policy.backoff(attempts)).await;
                    attempts += 1;
                    continue;
                }
            };
            self.settle_budget(call.weight, &answer).await;
            let Answer {
                status,
                retry_after,
                text,
                ..
            } = answer;
            let verdict = service.judge(status, &text);
            let throttled =
                matches!(status.as_u16(), 429 | 503) || matches!(verdict, Verdict::Quota(_));
            if throttled {
                self.tally(
                    stats,
                    RequestStats {
                        throttled: call.weight,
                        ..Default::default()
                    },
                );
            }
            let wait = self
                .policy
                .retry_after(retry_after.as_deref())
                .unwrap_or_else(|| self.policy.backoff(attempts));
            match verdict {
                Verdict::Success => match read(text) {
                    Ok(page) => return Ok(page),
                    Err(bad) => {
                        self.renew_connections();
                        last = match bad {
                            BadPage::Unreadable(why) => Last {
                                why,
                                protocol: false,
                            },
                            BadPage::Incomplete(why) => Last {
                                why,
                                protocol: true,
                            },
                        };
                    }
                },
                Verdict::Unauthorized(_) if !refreshed => {
                    refreshed = true;
                    service.forget(&token).await;
                    continue;
                }
                Verdict::Unauthorized(f) | Verdict::Fail(f) => return Err(f),
                Verdict::Quota(why) => {
                    self.ride_out(service, quota, why, retry_after.as_deref())
                        .await?;
                    continue;
                }
                Verdict::Retry(why) => {
                    if status.is_server_error() {
                        self.renew_connections();
                    }
                    if let Some(l) = self.limiter.as_ref().filter(|_| status == 429) {
                        // Everyone reading this tenant waits, not just this request.
                        l.block_for(wait);
                    }
                    last = Last {
                        why,
                        protocol: false,
                    };
                }
            }
            if status != 429 || self.limiter.is_none() {
                tokio::time::sleep(wait).await;
            }
            attempts += 1;
        }
        let name = service.name();
        let why = last.why;
        Err(service.failure(if last.protocol {
            SourceError::Protocol(format!(
                "{name} kept answering pages that cannot be complete ({why}); nothing was removed, \
                 and the next sync reads again"
            ))
        } else {
            SourceError::Unavailable(format!(
                "{name} was still unavailable after {} attempts (last: {why}); nothing was removed, \
                 and the next sync continues from the last checkpoint",
                self.policy.max_attempts
            ))
        }))
    }

    /// The status, `Retry-After` and whole body of an answer; why not, if
    /// the connection broke before or during the body.
    async fn answer<S: Service>(
        &self,
        service: &S,
        response: reqwest::Result<reqwest::Response>,
    ) -> Result<Answer, String> {
        let response = response.map_err(|e| without_url(&e))?;
        let headers = response.headers();
        if let (Some(percent), Some(l)) = (service.budget_used(headers), &self.limiter) {
            l.observe_budget(percent);
        }
        let units = service.units_spent(headers);
        let app_refused = service.app_refused(headers);
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = response.text().await.map_err(|e| {
            format!(
                "HTTP {} whose body was cut off ({})",
                status.as_u16(),
                without_url(&e)
            )
        })?;
        Ok(Answer {
            status,
            retry_after,
            text,
            units,
            app_refused,
        })
    }

    /// Waits for `units` of the shared budget, or pauses the run once the
    /// page has waited as long as it would ride out a quota: workers that
    /// find no budget continue in a later invocation rather than spin.
    async fn wait_for_budget<S: Service>(
        &self,
        service: &S,
        units: u64,
        quota: &mut QuotaWait,
    ) -> Result<(), S::Failure> {
        let Some(budget) = &self.budget else {
            return Ok(());
        };
        loop {
            let sent = self.counters.requests.load(Ordering::Relaxed);
            let Grant::Wait(wait) = budget.take(units, sent).await else {
                return Ok(());
            };
            let since = *quota.since.get_or_insert_with(Instant::now);
            if since.elapsed() + wait > self.policy.quota_budget {
                let after = self.policy.quota_pause;
                return Err(service.failure(SourceError::Paused {
                    why: format!(
                        "the platform's shared {} budget stayed spent for {} s: the sync pauses at \
                         its last checkpoint and continues in {} s",
                        service.name(),
                        since.elapsed().as_secs(),
                        after.as_secs().max(1)
                    ),
                    after,
                }));
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Tells the shared budget what the answer says: a cost above the
    /// guess, or a refusal of the whole app (every worker waits it out).
    async fn settle_budget(&self, guessed: u64, answer: &Answer) {
        let Some(budget) = &self.budget else {
            return;
        };
        if answer.status == StatusCode::TOO_MANY_REQUESTS && answer.app_refused {
            let wait = self
                .policy
                .retry_after(answer.retry_after.as_deref())
                .unwrap_or(Duration::from_secs(1));
            budget.refused_for(wait).await;
        } else if let Some(extra) = answer.units.and_then(|u| u.checked_sub(guessed))
            && extra > 0
        {
            budget.spent(extra).await;
        }
    }

    /// Waits out a spent quota, or pauses the run once the page has waited
    /// its budget (or would, by the wait asked for).
    async fn ride_out<S: Service>(
        &self,
        service: &S,
        quota: &mut QuotaWait,
        why: String,
        retry_after: Option<&str>,
    ) -> Result<(), S::Failure> {
        let since = *quota.since.get_or_insert_with(Instant::now);
        let wait = self
            .policy
            .retry_after(retry_after)
            .unwrap_or_else(|| self.policy.backoff(quota.tries));
        quota.tries += 1;
        if since.elapsed() + wait > self.policy.quota_budget {
            let after = self.policy.quota_pause.max(wait);
            return Err(service.failure(SourceError::Paused {
                why: format!(
                    "{} kept refusing with a per-minute quota ({why}) for {} s: the sync pauses at its \
                     last checkpoint and continues in {} s",
                    service.name(),
                    since.elapsed().as_secs(),
                    after.as_secs().max(1)
                ),
                after,
            }));
        }
        tokio::time::sleep(wait).await;
        Ok(())
    }
}

fn new_http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(100))
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .unwrap_or_default()
}
