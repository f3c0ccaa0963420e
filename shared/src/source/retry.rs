//! Retries and pacing for HTTP directory APIs (Graph, Google): bounded
//! retries with exponential backoff and full jitter, `Retry-After` honoured,
//! and a per-tenant limiter that caps concurrency and slows everyone down
//! when the service says its budget is running out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// First backoff cap; doubles per attempt up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// A `Retry-After` longer than this is cut to it (a run must finish).
    pub max_retry_after: Duration,
    /// How long one page read rides out a per-minute quota (Google's) before
    /// the run pauses at its checkpoint instead.
    pub quota_budget: Duration,
    /// How long a paused run waits before it continues: the quotas ridden
    /// out are counted per minute.
    pub quota_pause: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
            quota_budget: Duration::from_secs(180),
            quota_pause: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// A policy for tests and simulators: same shape, millisecond waits,
    /// and minutes of quota scaled to seconds (1 s for 1 min).
    pub fn fast() -> Self {
        Self {
            max_attempts: 8,
            base_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(50),
            max_retry_after: Duration::from_secs(2),
            quota_budget: Duration::from_secs(3),
            quota_pause: Duration::from_secs(1),
        }
    }

    /// Full-jitter exponential backoff before attempt `attempt + 1`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let cap = self
            .base_backoff
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_backoff);
        let millis = cap.as_millis() as u64;
        Duration::from_millis(rand::random_range(0..=millis))
    }

    /// The wait a `Retry-After: <seconds>` asks for, bounded; `None` if
    /// the header is absent or not a number of seconds.
    pub fn retry_after(&self, header: Option<&str>) -> Option<Duration> {
        let secs: u64 = header?.trim().parse().ok()?;
        Some(Duration::from_secs(secs).min(self.max_retry_after))
    }
}

/// Caps requests in flight to one tenant and spaces them when throttled.
#[derive(Debug)]
pub struct TenantLimiter {
    permits: Semaphore,
    pace: Mutex<Pace>,
}

#[derive(Debug)]
struct Pace {
    /// No request before this (after a 429's Retry-After).
    blocked_until: Option<Instant>,
    /// Extra spacing between requests while the service warns.
    delay: Duration,
    delay_until: Option<Instant>,
}

impl TenantLimiter {
    pub fn new(concurrency: usize) -> Self {
        Self {
            permits: Semaphore::new(concurrency.max(1)),
            pace: Mutex::new(Pace {
                blocked_until: None,
                delay: Duration::ZERO,
                delay_until: None,
            }),
        }
    }

    fn wait_needed(&self) -> Duration {
        let pace = self.pace.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let blocked = pace
            .blocked_until
            .map(|t| t.saturating_duration_since(now))
            .unwrap_or_default();
        let delay = match pace.delay_until {
            Some(until) if until > now => pace.delay,
            _ => Duration::ZERO,
        };
        blocked.max(delay)
    }

    /// Waits for the tenant's pacing, then for a free slot.
    pub async fn acquire(&self) -> SemaphorePermit<'_> {
        let wait = self.wait_needed();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        // The semaphore is never closed.
        let permit = self
            .permits
            .acquire()
            .await
            .expect("limiter semaphore closed");
        let wait = self.wait_needed();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        permit
    }

    /// Every request of the tenant waits `d` (a 429's Retry-After).
    pub fn block_for(&self, d: Duration) {
        let mut pace = self.pace.lock().unwrap_or_else(|p| p.into_inner());
        let until = Instant::now() + d;
        pace.blocked_until = Some(pace.blocked_until.map_or(until, |t| t.max(until)));
    }

    /// The service reports `percent` of a budget used (Graph's
    /// `x-ms-throttle-limit-percentage`, sent from 80%): space requests out
    /// for the next ten seconds, more the closer it is to the limit.
    pub fn observe_budget(&self, percent: u32) {
        let over = percent.saturating_sub(79).min(21);
        let mut pace = self.pace.lock().unwrap_or_else(|p| p.into_inner());
        pace.delay = Duration::from_millis(u64::from(over) * 20);
        pace.delay_until = Some(Instant::now() + Duration::from_secs(10));
    }

    /// The spacing currently applied (for tests and metrics).
    pub fn current_delay(&self) -> Duration {
        self.wait_needed()
    }
}

/// Limiters by tenant, shared by every source in the process so that two
/// connectors of one tenant share its cap.
#[derive(Debug, Default)]
pub struct Limiters {
    concurrency: usize,
    by_tenant: Mutex<HashMap<String, Arc<TenantLimiter>>>,
}

impl Limiters {
    pub fn new(concurrency_per_tenant: usize) -> Self {
        Self {
            concurrency: concurrency_per_tenant,
            by_tenant: Mutex::default(),
        }
    }

    pub fn for_tenant(&self, tenant: &str) -> Arc<TenantLimiter> {
        let mut all = self.by_tenant.lock().unwrap_or_else(|p| p.into_inner());
        all.entry(tenant.to_ascii_lowercase())
            .or_insert_with(|| Arc::new(TenantLimiter::new(self.concurrency)))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_and_retry_after_capped() {
        let p = RetryPolicy::default();
        for attempt in 0..20 {
            assert!(p.backoff(attempt) <= p.max_backoff);
        }
        assert_eq!(p.retry_after(Some("3")), Some(Duration::from_secs(3)));
        assert_eq!(p.retry_after(Some("100000")), Some(p.max_retry_after));
        assert_eq!(p.retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_block_delays_every_request_of_the_tenant() {
        let limiters = Limiters::new(2);
        let l = limiters.for_tenant("Contoso");
        assert!(Arc::ptr_eq(&l, &limiters.for_tenant("contoso")));
        l.block_for(Duration::from_secs(2));
        let start = Instant::now();
        drop(l.acquire().await);
        assert!(start.elapsed() >= Duration::from_secs(2));
        l.observe_budget(95);
        assert_eq!(l.current_delay(), Duration::from_millis(320));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(l.current_delay(), Duration::ZERO);
    }
}
