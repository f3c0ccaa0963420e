//! Request counters a test reads back.

use std::collections::BTreeMap;

/// What the simulator has served since it started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Every HTTP request the simulator routed.
    pub requests_total: u64,
    /// Directory API requests (every one but `/token`): what a client's
    /// count of its requests must equal.
    pub api_requests: u64,
    /// Directory API answers a client counts as throttled: 429, 503 and
    /// the 403 quota errors (`userRateLimitExceeded`, `quotaExceeded`,
    /// `rateLimitExceeded`).
    pub api_throttled: u64,
    /// Per route: `"POST /token"`, `"GET /admin/directory/v1/users"`,
    /// `"GET /admin/directory/v1/groups"`,
    /// `"GET /admin/directory/v1/groups/{groupKey}/members"`.
    pub per_route: BTreeMap<String, u64>,
    /// Access tokens issued by `/token`.
    pub tokens_issued: u64,
    /// Token requests refused.
    pub token_errors: u64,
    /// Injected faults of every kind.
    pub faults_injected: u64,
    /// Injected faults per reason: `userRateLimitExceeded`, `quotaExceeded`,
    /// `rateLimitExceeded` (429), `backendError` (503), `cutBody` and
    /// `notJson`, `noCollection` (spoilt 200s), `reset`.
    pub faults_by_reason: BTreeMap<String, u64>,
}

impl Stats {
    /// Count of one route; 0 when never hit.
    pub fn route(&self, route: &str) -> u64 {
        self.per_route.get(route).copied().unwrap_or(0)
    }

    pub(crate) fn record(&mut self, route: &str) {
        self.requests_total += 1;
        *self.per_route.entry(route.to_string()).or_default() += 1;
    }

    pub(crate) fn fault(&mut self, reason: &str) {
        self.faults_injected += 1;
        *self.faults_by_reason.entry(reason.to_string()).or_default() += 1;
    }
}
