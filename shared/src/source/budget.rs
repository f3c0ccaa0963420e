//! The platform app's Graph budget, shared by every worker of every
//! invocation: Graph counts the resource units of one app across all
//! tenants (150,000 per 20 s), and every consent connector reads as that
//! one app.
//!
//! The budget is a token bucket in the table, one counter per second:
//! before each request a worker adds the request's units to the current
//! second's counter of its tenant, then of the app, each only if that
//! stays within its bound (an atomic conditional add, [`Table::add`]). A
//! refused add waits for the next second. Two bounds:
//! - the app's, `units × share / (window + 1)` per second: any 20-second
//!   window of Graph's overlaps at most 21 of our seconds, so the app never
//!   spends more than `share` of its budget in one of Graph's windows,
//!   however the windows fall;
//! - each tenant's, a fixed fraction of the app's second (1/4 by default):
//!   a 100,000-user tenant reading flat out takes at most a quarter, so
//!   large tenants read side by side, each progressing steadily. (Graph's
//!   own budget for one tenant, 8,000 RU per 10 s at most, is about an
//!   eighth of the app's; the driver already slows down on its 429s.)
//!
//! Small tenants come first: a sync's first few requests (a small tenant's
//! whole sync is a page or two per stream) may use the whole second, later
//! ones only `bulk_share` of it (3/4). However many large tenants are
//! reading, a quarter of every second is left for syncs just starting, so
//! a window's many small tenants finish near their offsets.
//!
//! What Graph reports overrides the guess: a request's actual cost
//! (`x-ms-resource-unit`) is charged after it, and a 429 whose scope is the
//! app fills every second up to its `Retry-After`, so every worker waits.
//! A store that cannot count makes the request wait a moment and ask again
//! rather than go unpaced (unpaced bursts are what bring the app's 429s);
//! the page's wait is bounded, after which the run pauses.
//!
//! [`Table::add`]: crate::store::Table::add

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::store::{StateStore, keys};

/// How much of Graph's app budget the platform lets itself use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetLimits {
    /// Resource units per `window`, across all tenants (Graph: 150,000).
    pub units: u64,
    pub window: Duration,
    /// The share of it workers plan to use: the rest absorbs requests that
    /// cost more than estimated and other callers of the app (rotation).
    pub share: f64,
    /// The share of each second's budget one tenant may take.
    pub tenant_share: f64,
    /// The share of each second a sync may use past its first requests.
    pub bulk_share: f64,
}

impl Default for BudgetLimits {
    fn default() -> Self {
        Self {
            units: 150_000,
            window: Duration::from_secs(20),
            share: 0.9,
            tenant_share: 1.0 / 4.0,
            bulk_share: 0.75,
        }
    }
}

impl BudgetLimits {
    /// Graph's app budget of `units` per 20 s, with the default shares.
    pub fn of(units: u64) -> Self {
        Self {
            units,
            ..Self::default()
        }
    }

    /// Units the app may spend in one second.
    pub fn per_second(&self) -> u64 {
        let slots = self.window.as_secs() + 1;
        ((self.units as f64 * self.share) / slots as f64)
            .floor()
            .max(1.0) as u64
    }

    /// Units one tenant may spend in one second.
    pub fn tenant_per_second(&self) -> u64 {
        self.part(self.tenant_share)
    }

    /// Units of a second the requests past a sync's first may spend.
    pub fn bulk_per_second(&self) -> u64 {
        self.part(self.bulk_share)
    }

    fn part(&self, share: f64) -> u64 {
        ((self.per_second() as f64) * share).floor().max(1.0) as u64
    }
}

/// How many requests of a sync count as its first: a small tenant's
/// whole read (a page per stream, and a retry).
pub const FIRST_REQUESTS: u64 = 4;

/// The answer to a request for units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    Granted,
    /// None left this second: ask again after this.
    Wait(Duration),
}

/// Pacing shared beyond one source: consulted before each request.
#[async_trait]
pub trait RequestBudget: Send + Sync {
    /// Units for a request; `sent` is how many the source sent before it.
    async fn take(&self, units: u64, sent: u64) -> Grant;
    /// A request cost `units` more than was taken for it.
    async fn spent(&self, units: u64);
    /// The service refused the app as a whole for `wait`.
    async fn refused_for(&self, wait: Duration);
}

/// The app's budget, over the table.
pub struct SharedBudget {
    store: StateStore,
    app: String,
    limits: BudgetLimits,
}

/// Counters outlive their second by this much, then expire.
const KEEP_SECONDS: i64 = 120;

/// What the store said to an add.
enum Added {
    Done,
    Refused,
    Failed,
}

impl SharedBudget {
    pub fn new(store: StateStore, app: impl Into<String>, limits: BudgetLimits) -> Self {
        Self {
            store,
            app: app.into(),
            limits,
        }
    }

    /// The budget as one tenant's requests to the Graph at `graph_host` see
    /// it: each cloud budgets the app on its own, and what one cloud's
    /// answers say never spends another's.
    pub fn for_tenant(self: &Arc<Self>, graph_host: &str, tenant: &str) -> Arc<dyn RequestBudget> {
        Arc::new(TenantBudget {
            shared: self.clone(),
            app: format!("{}@{}", self.app, graph_host.to_ascii_lowercase()),
            tenant: tenant.to_ascii_lowercase(),
        })
    }

    fn now(&self) -> (i64, Duration) {
        let now = self.store.now();
        let into = Duration::from_millis(u64::from(now.timestamp_subsec_millis()));
        (now.timestamp(), into)
    }

    /// Adds to one counter of `slot`.
    async fn add(
        &self,
        key: &crate::store::table::Key,
        slot: i64,
        units: u64,
        bound: Option<u64>,
    ) -> Added {
        // A request that costs more than a whole second still goes, alone.
        let bound = bound.map(|b| b.max(units));
        match self
            .store
            .add_to_counter(key, units, bound, slot + KEEP_SECONDS)
            .await
        {
            Ok(Some(_)) => Added::Done,
            Ok(None) => Added::Refused,
            Err(e) => {
                tracing::warn!(error = %e, "the shared Graph budget could not be counted");
                Added::Failed
            }
        }
    }
}

/// One tenant's view of the app's budget.
struct TenantBudget {
    shared: Arc<SharedBudget>,
    /// The app in one cloud.
    app: String,
    tenant: String,
}

impl TenantBudget {
    fn app_key(&self, slot: i64) -> crate::store::table::Key {
        keys::budget(&self.app, slot, None)
    }

    fn tenant_key(&self, slot: i64) -> crate::store::table::Key {
        keys::budget(&self.app, slot, Some(&self.tenant))
    }
}

#[async_trait]
impl RequestBudget for TenantBudget {
    async fn take(&self, units: u64, sent: u64) -> Grant {
        let (b, l) = (&self.shared, &self.shared.limits);
        let (slot, into) = b.now();
        let app = if sent < FIRST_REQUESTS {
            l.per_second()
        } else {
            l.bulk_per_second()
        };
        // The tenant's share first: a refusal there spends nothing of the
        // app's, which other tenants are waiting for.
        let tenant = self.tenant_key(slot);
        let outcome = match b
            .add(&tenant, slot, units, Some(l.tenant_per_second()))
            .await
        {
            Added::Done => b.add(&self.app_key(slot), slot, units, Some(app)).await,
            other => other,
        };
        match outcome {
            Added::Done => Grant::Granted,
            // Waiters spread over the next second's first fifth rather
            // than all asking at its first millisecond.
            Added::Refused => Grant::Wait(
                Duration::from_secs(1).saturating_sub(into)
                    + Duration::from_millis(rand::random_range(0..200)),
            ),
            // A store that cannot count (throttled, say) is asked again
            // shortly rather than passed: unpaced requests are what would
            // bring the app's 429s. The page's wait is bounded all the same.
            Added::Failed => Grant::Wait(Duration::from_millis(rand::random_range(100..400))),
        }
    }

    async fn spent(&self, units: u64) {
        let b = &self.shared;
        let (slot, _) = b.now();
        // No answer spends more than a second of the app's budget.
        let units = units.min(b.limits.per_second());
        b.add(&self.tenant_key(slot), slot, units, None).await;
        b.add(&self.app_key(slot), slot, units, None).await;
    }

    async fn refused_for(&self, wait: Duration) {
        let (b, l) = (&self.shared, &self.shared.limits);
        let (slot, _) = b.now();
        // One filler per second: of the many requests Graph refuses at
        // once, the first to mark the second fills the seconds ahead.
        let mark = keys::budget(&self.app, slot, Some("!refused"));
        if !matches!(b.add(&mark, slot, 1, Some(1)).await, Added::Done) {
            return;
        }
        // Graph's window is the longest a refusal of the app can be about.
        let seconds = wait.as_secs().clamp(1, l.window.as_secs() + 1) as i64;
        let full = l.per_second();
        for s in slot..=slot + seconds {
            b.add(&self.app_key(s), s, full, None).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graphs_budget_becomes_bounds_per_second() {
        let l = BudgetLimits::default();
        // 150,000 × 0.9 over the 21 seconds a 20-second window can touch.
        assert_eq!(l.per_second(), 6_428);
        assert_eq!(l.tenant_per_second(), 1_607);
        assert_eq!(l.bulk_per_second(), 4_821);
        assert!(l.per_second() * 21 <= 135_000);
        let tiny = BudgetLimits::of(10);
        assert_eq!((tiny.per_second(), tiny.tenant_per_second()), (1, 1));
    }
}
