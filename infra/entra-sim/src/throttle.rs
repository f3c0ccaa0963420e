//! Resource units, as Graph's identity and access service budgets them:
//! per application+tenant pair (3,500 / 5,000 / 8,000 RU per 10 s for tenants
//! under 50 / 50–500 / over 500 users) and per application across all tenants
//! (150,000 RU per 20 s; [`Meter::set_app_budget`] changes both, for tests
//! and a benchmark that compress time). Budgets are fixed windows that start
//! with their first request.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use uuid::Uuid;

const PAIR_WINDOW: Duration = Duration::from_secs(10);
const APP_WINDOW: Duration = Duration::from_secs(20);
pub const APP_BUDGET: u64 = 150_000;

/// The application+tenant budget for a tenant of `users` users.
pub fn tenant_budget(users: u64) -> u64 {
    match users {
        0..50 => 3_500,
        50..=500 => 5_000,
        _ => 8_000,
    }
}

/// The documented base cost of a request, with its modifiers: `$select`
/// takes 1 off, `$top` under 20 takes 1 off, and no request costs less
/// than 1.
pub fn request_cost(base: u32, has_select: bool, top: Option<u32>) -> u32 {
    let mut cost = base;
    if has_select {
        cost = cost.saturating_sub(1);
    }
    if top.is_some_and(|t| t < 20) {
        cost = cost.saturating_sub(1);
    }
    cost.max(1)
}

#[derive(Clone, Copy, Debug)]
struct Window {
    start: Instant,
    used: u64,
}

impl Window {
    fn roll(&mut self, now: Instant, length: Duration) {
        if now.duration_since(self.start) >= length {
            *self = Window {
                start: now,
                used: 0,
            };
        }
    }

    fn retry_after(&self, now: Instant, length: Duration) -> u32 {
        let left = length.saturating_sub(now.duration_since(self.start));
        left.as_secs_f64().ceil().max(1.0) as u32
    }
}

/// The outcome of charging a request.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Charge {
    /// Served. `usage` is the highest fraction of a budget in use, sent as
    /// `x-ms-throttle-limit-percentage` when over 0.8.
    Served { usage: f64 },
    /// Over budget: 429 with this `Retry-After` and `x-ms-throttle-scope`.
    Throttled { retry_after: u32, scope: String },
}

/// Resource units spent per window.
pub(crate) struct Meter {
    pairs: HashMap<(Uuid, Uuid), Window>,
    apps: HashMap<Uuid, Window>,
    app_budget: u64,
    app_window: Duration,
    /// The most units any app spent in one of its windows.
    app_peak: u64,
}

impl Default for Meter {
    fn default() -> Self {
        Self {
            pairs: HashMap::new(),
            apps: HashMap::new(),
            app_budget: APP_BUDGET,
            app_window: APP_WINDOW,
            app_peak: 0,
        }
    }
}

/// Whose budget a 429 is about (`x-ms-throttle-scope`).
pub const APP_SCOPE: &str = "Application/";

impl Meter {
    /// The most units an app spent in one of its windows since the last
    /// call (the current window included).
    pub fn take_app_peak(&mut self) -> u64 {
        std::mem::take(&mut self.app_peak)
    }

    /// Resource units per `window` an app may spend across all tenants.
    pub fn set_app_budget(&mut self, units: u64, window: Duration) {
        self.app_budget = units.max(1);
        self.app_window = window.max(Duration::from_millis(1));
    }

    /// Charges `cost` to `app` in `tenant`. When `enforce` is off the units
    /// are counted but never refused.
    pub fn charge(
        &mut self,
        app: Uuid,
        tenant: Uuid,
        tenant_users: u64,
        cost: u32,
        enforce: bool,
        now: Instant,
    ) -> Charge {
        let cost = u64::from(cost);
        let fresh = Window {
            start: now,
            used: 0,
        };
        let pair = self.pairs.entry((app, tenant)).or_insert(fresh);
        pair.roll(now, PAIR_WINDOW);
        let app_window = self.apps.entry(app).or_insert(fresh);
        app_window.roll(now, self.app_window);
        let pair_budget = tenant_budget(tenant_users);
        if enforce {
            if pair.used + cost > pair_budget {
                return Charge::Throttled {
                    retry_after: pair.retry_after(now, PAIR_WINDOW),
                    scope: format!("Tenant_Application/ReadWrite/{app}/{tenant}"),
                };
            }
            if app_window.used + cost > self.app_budget {
                return Charge::Throttled {
                    retry_after: app_window.retry_after(now, self.app_window),
                    scope: format!("{APP_SCOPE}ReadWrite/{app}/{tenant}"),
                };
            }
        }
        pair.used += cost;
        app_window.used += cost;
        self.app_peak = self.app_peak.max(app_window.used);
        let usage = (pair.used as f64 / pair_budget as f64)
            .max(app_window.used as f64 / self.app_budget as f64);
        Charge::Served { usage }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_follow_tenant_size() {
        assert_eq!(tenant_budget(49), 3_500);
        assert_eq!(tenant_budget(50), 5_000);
        assert_eq!(tenant_budget(500), 5_000);
        assert_eq!(tenant_budget(501), 8_000);
    }

    #[test]
    fn costs_follow_the_documented_modifiers() {
        assert_eq!(request_cost(2, false, None), 2, "list users");
        assert_eq!(request_cost(2, true, Some(999)), 1, "with $select");
        assert_eq!(request_cost(5, true, Some(10)), 3, "$select and small $top");
        assert_eq!(request_cost(1, true, Some(1)), 1, "never below 1");
    }

    #[test]
    fn enforcement_refuses_past_the_pair_budget_until_the_window_rolls() {
        let mut meter = Meter::default();
        let (app, tenant) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let t0 = Instant::now();
        assert!(matches!(
            meter.charge(app, tenant, 10, 3_000, true, t0),
            Charge::Served { usage } if usage > 0.8
        ));
        let refused = meter.charge(app, tenant, 10, 600, true, t0 + Duration::from_secs(4));
        assert_eq!(
            refused,
            Charge::Throttled {
                retry_after: 6,
                scope: format!("Tenant_Application/ReadWrite/{app}/{tenant}")
            }
        );
        assert!(matches!(
            meter.charge(app, tenant, 10, 600, true, t0 + Duration::from_secs(10)),
            Charge::Served { .. }
        ));
        assert!(
            matches!(
                meter.charge(app, tenant, 10, 10_000, false, t0 + Duration::from_secs(11)),
                Charge::Served { .. }
            ),
            "counted, not refused, when enforcement is off"
        );
    }

    #[test]
    fn the_app_budget_spans_tenants_and_names_its_scope() {
        let mut meter = Meter::default();
        meter.set_app_budget(100, APP_WINDOW);
        let app = Uuid::from_u128(1);
        let t0 = Instant::now();
        for t in 0..10 {
            assert!(matches!(
                meter.charge(app, Uuid::from_u128(10 + t), 10, 10, true, t0),
                Charge::Served { .. }
            ));
        }
        let Charge::Throttled { retry_after, scope } = meter.charge(
            app,
            Uuid::from_u128(99),
            10,
            1,
            true,
            t0 + Duration::from_secs(5),
        ) else {
            panic!("the 101st unit across tenants is refused");
        };
        assert_eq!(retry_after, 15);
        assert!(scope.starts_with(APP_SCOPE), "{scope}");
    }
}
