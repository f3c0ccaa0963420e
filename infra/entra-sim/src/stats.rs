//! Request counters a test or the benchmark reads back.

use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

/// What the simulator has served since it started or `reset_stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Every HTTP request, plus every request inside a `$batch`.
    pub requests_total: u64,
    /// Per route, e.g. `"GET /v1.0/users"`, `"GET /v1.0/groups/delta"`,
    /// `"GET /v1.0/groups/{id}/members"`, `"POST /v1.0/$batch"`,
    /// `"POST token"`, `"GET adminconsent"`. Requests inside a `$batch` count
    /// under their own route as well.
    pub per_route: BTreeMap<String, u64>,
    /// 429s sent, injected or for resource units, including inner ones.
    pub throttled: u64,
    /// 429s for resource units of the app across all tenants
    /// (`x-ms-throttle-scope: Application/…`).
    pub app_throttled: u64,
    /// 429s for resource units of the app in one tenant
    /// (`Tenant_Application/…`).
    pub tenant_throttled: u64,
    /// Graph requests as Graph budgets them: every HTTP request to Graph,
    /// a `$batch` counted as the requests it carries (tokens not at all).
    /// What a client's count of its requests must equal.
    pub graph_requests: u64,
    /// Graph answers of 429 or 503, inner ones included (a refused
    /// `$batch` counts as its requests): what a client counts as throttled.
    pub graph_throttled: u64,
    /// Injected faults: dropped connections, 5xx and injected 429s.
    pub faults_injected: u64,
    /// Resource units spent per tenant by requests that were served.
    pub resource_units: HashMap<Uuid, u64>,
    /// Token requests whose client secret was accepted, per the secret's
    /// key id (what Entra's sign-in log names as the credential key ID).
    pub secret_sign_ins: HashMap<Uuid, u64>,
    /// Token requests whose client assertion was accepted, per the key id
    /// of the certificate that signed it (the sign-in log's credential key
    /// ID).
    pub certificate_sign_ins: HashMap<Uuid, u64>,
}

impl SimStats {
    /// Token requests accepted with the client secret `key_id`; 0 when none.
    pub fn sign_ins_with(&self, key_id: Uuid) -> u64 {
        self.secret_sign_ins.get(&key_id).copied().unwrap_or(0)
    }

    /// Token requests accepted with an assertion signed by the certificate
    /// `key_id`; 0 when none.
    pub fn certificate_sign_ins_with(&self, key_id: Uuid) -> u64 {
        self.certificate_sign_ins.get(&key_id).copied().unwrap_or(0)
    }

    /// Count of one route; 0 when never hit.
    pub fn route(&self, route: &str) -> u64 {
        self.per_route.get(route).copied().unwrap_or(0)
    }

    pub(crate) fn record(&mut self, route: &str) {
        self.requests_total += 1;
        match self.per_route.get_mut(route) {
            Some(count) => *count += 1,
            None => {
                self.per_route.insert(route.to_string(), 1);
            }
        }
    }
}
