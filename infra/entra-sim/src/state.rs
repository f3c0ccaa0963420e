//! The simulator's shared state, behind the `EntraSim` handle and the HTTP
//! handlers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use uuid::Uuid;

use crate::apps::{AppReg, AppRegistry};
use crate::assertion::JtiCache;
use crate::authorize::Codes;
use crate::directory::Tenant;
use crate::faults::FaultState;
use crate::model::ConsentDecision;
use crate::stats::SimStats;
use crate::throttle::Meter;
use crate::token::TokenSealer;

/// Locks ignoring poison: a panicking test thread must not wedge the
/// simulator for the others.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn read<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn write<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

pub(crate) type SharedTenant = Arc<RwLock<Tenant>>;

pub(crate) struct Inner {
    pub tenants: RwLock<HashMap<Uuid, SharedTenant>>,
    pub apps: RwLock<AppRegistry>,
    pub faults: Mutex<FaultState>,
    pub stats: Mutex<SimStats>,
    pub meter: Mutex<Meter>,
    pub jtis: Mutex<JtiCache>,
    pub consent: Mutex<Option<ConsentDecision>>,
    /// The home tenant of whoever signs in next at the authorize endpoint.
    pub sign_in: Mutex<Option<Uuid>>,
    /// The directory roles (template ids) of the next user to sign in.
    pub sign_in_roles: Mutex<Option<Vec<Uuid>>>,
    /// Authorization codes issued by the authorize endpoint.
    pub codes: Mutex<Codes>,
    /// How long a new service principal stays invisible to token requests
    /// (directory replication after admin consent).
    pub replication_delay: Mutex<chrono::Duration>,
    /// How far the simulator's clock is ahead of real time.
    pub clock_offset: Mutex<chrono::Duration>,
    /// Access tokens issued in an earlier generation have expired
    /// (`EntraSim::expire_access_tokens`).
    pub access_token_generation: AtomicU64,
    /// `http://127.0.0.1:PORT`, once serving.
    pub origin: OnceLock<String>,
    /// The Graph resource tokens are issued for, when the simulator stands
    /// for a cloud's Graph (`EntraSim::answer_for_graph`); else its own.
    pub graph_resource: Mutex<Option<String>>,
    pub sealer: TokenSealer,
}

impl Inner {
    pub fn new() -> Self {
        Inner {
            tenants: RwLock::default(),
            apps: RwLock::default(),
            faults: Mutex::default(),
            stats: Mutex::default(),
            meter: Mutex::default(),
            jtis: Mutex::default(),
            consent: Mutex::default(),
            sign_in: Mutex::default(),
            sign_in_roles: Mutex::default(),
            codes: Mutex::default(),
            replication_delay: Mutex::new(chrono::Duration::zero()),
            clock_offset: Mutex::new(chrono::Duration::zero()),
            access_token_generation: AtomicU64::new(0),
            origin: OnceLock::new(),
            graph_resource: Mutex::default(),
            sealer: TokenSealer::new(rand::random()),
        }
    }

    /// The simulator's time: real time plus every `EntraSim::advance_clock`.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() + *lock(&self.clock_offset)
    }

    /// The generation access tokens are issued in now.
    pub fn access_token_generation(&self) -> u64 {
        self.access_token_generation.load(Ordering::SeqCst)
    }

    /// Adds roles to the app's service principal in `tenant` as an admin
    /// consent does. A new service principal replicates for the configured
    /// delay before token requests see it.
    pub fn grant_consent(&self, app: &mut AppReg, tenant: Uuid, roles: &[&str]) {
        let visible_at = self.now() + *lock(&self.replication_delay);
        app.grant_visible_at(tenant, roles, visible_at);
    }

    /// The authority root (`{authority}/{tenant}/oauth2/v2.0/token`).
    pub fn authority(&self) -> String {
        self.origin
            .get()
            .cloned()
            .unwrap_or_else(|| "http://127.0.0.1:0".to_string())
    }

    /// The Graph resource a token request names in its scope
    /// (`{resource}/.default`): a Graph's origin, as Entra names it.
    pub fn graph_resource(&self) -> String {
        lock(&self.graph_resource)
            .clone()
            .unwrap_or_else(|| self.authority())
    }

    /// The Graph root (`{graph}/v1.0/users`).
    pub fn graph_base(&self) -> String {
        format!("{}/graph", self.authority())
    }

    pub fn tenant(&self, id: Uuid) -> Option<SharedTenant> {
        read(&self.tenants).get(&id).cloned()
    }

    /// A tenant named by GUID or by one of its verified domains.
    pub fn resolve_tenant(&self, segment: &str) -> Option<SharedTenant> {
        if let Ok(id) = Uuid::parse_str(segment) {
            return self.tenant(id);
        }
        read(&self.tenants)
            .values()
            .find(|t| read(t).has_domain(segment))
            .cloned()
    }

    pub fn record(&self, route: &str) {
        lock(&self.stats).record(route);
    }
}
