//! `EntraSim`: the handle tests hold to set up tenants and apps, change the
//! directory, inject faults and read back what was served.
//!
//! Setup methods panic on impossible requests (an unknown tenant or object, a
//! duplicate id, an unparsable certificate): those are bugs in the test, and a
//! panic with the reason is the most useful report.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::apps::{AppKind, AppReg, Secret};
use crate::certs::RegisteredKey;
use crate::directory::{Directory, DirectoryError, Tenant};
use crate::faults::Faults;
use crate::generate::{GenSpec, populate};
use crate::model::{
    ConsentDecision, DirectorySnapshot, KeyCredentialInfo, MultiTenantApp, SimContact, SimGroup,
    SimUser, TenantSpec,
};
use crate::server;
use crate::state::{Inner, lock, read, write};
use crate::stats::SimStats;

/// The roles an approved admin consent grants: the sync's least privileges.
pub const CONSENT_ROLES: [&str; 2] = ["User.Read.All", "Group.Read.All"];

/// A running (or ready to run) Entra ID + Microsoft Graph simulator. Cheap to
/// clone; all clones share one simulator.
#[derive(Clone)]
pub struct EntraSim {
    inner: Arc<Inner>,
}

impl Default for EntraSim {
    fn default() -> Self {
        EntraSim::new()
    }
}

fn parse_id(id: &str) -> Uuid {
    Uuid::parse_str(id).unwrap_or_else(|_| panic!("'{id}' is not a GUID"))
}

impl EntraSim {
    pub fn new() -> Self {
        EntraSim {
            inner: Arc::new(Inner::new()),
        }
    }

    /// A new simulator serving on `127.0.0.1` at a free port.
    pub async fn start() -> std::io::Result<Self> {
        let sim = EntraSim::new();
        sim.serve(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        Ok(sim)
    }

    /// Binds `addr` and serves on the current tokio runtime until it shuts
    /// down. Returns the bound address. The URLs reported are those of the
    /// first `serve`.
    pub async fn serve(&self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        server::serve(Arc::clone(&self.inner), addr).await
    }

    /// `http://127.0.0.1:PORT`; the token endpoint is
    /// `{authority}/{tenant}/oauth2/v2.0/token`.
    pub fn authority_url(&self) -> String {
        self.inner.authority()
    }

    /// `http://127.0.0.1:PORT/graph`; users are at `{graph}/v1.0/users`.
    pub fn graph_url(&self) -> String {
        self.inner.graph_base()
    }

    /// The `.default` scope of the Graph resource tokens are issued for:
    /// `{origin of graph_url}/.default`, unless `answer_for_graph` says
    /// otherwise.
    pub fn graph_scope(&self) -> String {
        format!("{}/.default", self.inner.graph_resource())
    }

    /// Stands for the Graph of a cloud (`https://graph.microsoft.us` for US
    /// Government L4, say): token requests must name that resource, as that
    /// cloud's Entra requires, and any other is not found there.
    pub fn answer_for_graph(&self, resource: &str) {
        *lock(&self.inner.graph_resource) = Some(resource.trim_end_matches('/').to_owned());
    }

    /// The token endpoint of `tenant` (a GUID or a verified domain).
    pub fn token_url(&self, tenant: &str) -> String {
        format!("{}/{tenant}/oauth2/v2.0/token", self.authority_url())
    }

    /// Creates a tenant and returns its id.
    pub fn add_tenant(&self, spec: TenantSpec) -> Uuid {
        let id = spec.id.unwrap_or_else(Uuid::new_v4);
        let mut domains = spec.verified_domains.clone();
        let initial = match domains
            .iter()
            .find(|d| d.to_ascii_lowercase().ends_with(".onmicrosoft.com"))
        {
            Some(initial) => initial.clone(),
            None => {
                let slug: String = spec
                    .display_name
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric())
                    .collect::<String>()
                    .to_ascii_lowercase();
                let slug = if slug.is_empty() {
                    format!("tenant{}", &id.simple().to_string()[..8])
                } else {
                    slug
                };
                let initial = format!("{slug}.onmicrosoft.com");
                domains.push(initial.clone());
                initial
            }
        };
        let tenant = Tenant {
            id,
            display_name: spec.display_name,
            domains,
            initial_domain: initial,
            size_hint: spec.users,
            dir: Directory::default(),
        };
        let mut tenants = write(&self.inner.tenants);
        assert!(!tenants.contains_key(&id), "tenant {id} already exists");
        tenants.insert(id, Arc::new(std::sync::RwLock::new(tenant)));
        id
    }

    /// The tenant's verified domains, default first.
    pub fn tenant_domains(&self, tenant: Uuid) -> Vec<String> {
        read(&self.tenant(tenant)).domains.clone()
    }

    fn tenant(&self, id: Uuid) -> Arc<std::sync::RwLock<Tenant>> {
        self.inner
            .tenant(id)
            .unwrap_or_else(|| panic!("no tenant {id}"))
    }

    fn with_dir(&self, tenant: Uuid, f: impl FnOnce(&mut Directory) -> Result<(), DirectoryError>) {
        let shared = self.tenant(tenant);
        let mut tenant = write(&shared);
        if let Err(e) = f(&mut tenant.dir) {
            panic!("tenant {}: {e}", tenant.id);
        }
    }

    /// Replaces the tenant's population with a generated one, deterministic
    /// for `spec.seed` and the mail domains. Delta and skip tokens issued
    /// before expire.
    pub fn generate_directory(&self, tenant: Uuid, spec: GenSpec) {
        let shared = self.tenant(tenant);
        let mut tenant = write(&shared);
        let domains = if spec.domains.is_empty() {
            tenant.domains.clone()
        } else {
            spec.domains.clone()
        };
        let initial = tenant.initial_domain.clone();
        let epoch = tenant.dir.epoch;
        tenant.dir = Directory {
            epoch,
            ..Directory::default()
        };
        populate(&mut tenant.dir, &spec, &domains, &initial);
    }

    /// Registers the consent connector's multi-tenant app. It has a service
    /// principal (without roles) in its home tenant only.
    pub fn register_multitenant_app(&self, app: MultiTenantApp) {
        self.tenant(app.home_tenant);
        let keys = app
            .certificates
            .iter()
            .map(|der| {
                RegisteredKey::parse(der, Uuid::new_v4())
                    .unwrap_or_else(|e| panic!("certificate of app {}: {e}", app.client_id))
            })
            .collect();
        let reg = AppReg {
            client_id: app.client_id,
            object_id: app.object_id,
            home_tenant: app.home_tenant,
            kind: AppKind::MultiTenant {
                redirect_uris: app.redirect_uris,
            },
            keys,
            secrets: Vec::new(),
            disabled: false,
            grants: HashMap::from([(app.home_tenant, Vec::new())]),
            replicating_until: HashMap::new(),
        };
        self.insert_app(reg);
    }

    fn insert_app(&self, reg: AppReg) {
        let mut apps = write(&self.inner.apps);
        assert!(
            apps.get(reg.client_id).is_none(),
            "app {} is already registered",
            reg.client_id
        );
        apps.insert(reg);
    }

    /// The app's certificate key credentials, in registration order.
    pub fn app_key_credentials(&self, object_id: Uuid) -> Vec<KeyCredentialInfo> {
        read(&self.inner.apps)
            .by_object(object_id)
            .unwrap_or_else(|| panic!("no application object {object_id}"))
            .keys
            .iter()
            .map(|k| k.info.clone())
            .collect()
    }

    fn with_app(&self, client_id: Uuid, f: impl FnOnce(&mut AppReg)) {
        let mut apps = write(&self.inner.apps);
        let app = apps
            .get_mut(client_id)
            .unwrap_or_else(|| panic!("no app {client_id}"));
        f(app);
    }

    /// Grants application roles in `tenant` directly, as an admin would on the
    /// consent page (creating the service principal there).
    /// A service principal it creates replicates for the
    /// [consent replication delay](Self::set_consent_replication_delay).
    pub fn grant_admin_consent(&self, tenant: Uuid, client_id: Uuid, roles: &[&str]) {
        self.tenant(tenant);
        self.with_app(client_id, |app| {
            self.inner.grant_consent(app, tenant, roles)
        });
    }

    /// After an admin consent creates the app's service principal in a
    /// tenant, the app's token requests there answer AADSTS700016 (the app
    /// is not found in the directory) for `delay`, as Entra's do while the
    /// directory replicates the grant. Zero (the default) until set.
    pub fn set_consent_replication_delay(&self, delay: std::time::Duration) {
        *lock(&self.inner.replication_delay) = chrono::Duration::from_std(delay)
            .unwrap_or_else(|_| panic!("replication delay {delay:?} is too long"));
    }

    /// Moves the simulator's clock forward by `by`: token requests, access
    /// tokens, proofs and consent replication see real time plus every
    /// advance. Move the clock of the code under test by as much.
    pub fn advance_clock(&self, by: std::time::Duration) {
        let by = chrono::Duration::from_std(by)
            .unwrap_or_else(|_| panic!("clock advance {by:?} is too long"));
        *lock(&self.inner.clock_offset) += by;
    }

    /// Ends the lifetime of every access token issued so far, as if each had
    /// reached its `exp`: Graph refuses them with 401 "Lifetime validation
    /// failed, the token is expired.", and a client has to get a new one
    /// (for a certificate credential: sign a new assertion). Tokens issued
    /// afterwards live their normal lifetime. What an hour's wait does to
    /// a warm client's tokens, without the wait.
    pub fn expire_access_tokens(&self) {
        self.inner
            .access_token_generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Removes the app's service principal from `tenant`: its token requests
    /// there fail with AADSTS700016. Tokens already issued stay valid until
    /// they expire, as at Entra.
    pub fn revoke_consent(&self, tenant: Uuid, client_id: Uuid) {
        self.with_app(client_id, |app| {
            app.grants.remove(&tenant);
            app.replicating_until.remove(&tenant);
        });
    }

    /// Registers a customer-made single-tenant app with a client secret and
    /// the given roles in `tenant`; returns the secret's key id.
    pub fn add_legacy_app(
        &self,
        tenant: Uuid,
        client_id: Uuid,
        secret: &str,
        secret_expires: DateTime<Utc>,
        roles: &[&str],
    ) -> Uuid {
        self.tenant(tenant);
        let key_id = Uuid::new_v4();
        let mut reg = AppReg {
            client_id,
            object_id: Uuid::new_v4(),
            home_tenant: tenant,
            kind: AppKind::Legacy,
            keys: Vec::new(),
            secrets: vec![Secret {
                key_id,
                value: secret.to_string(),
                expires: secret_expires,
            }],
            disabled: false,
            grants: HashMap::new(),
            replicating_until: HashMap::new(),
        };
        reg.grant(tenant, roles);
        self.insert_app(reg);
        key_id
    }

    /// Adds a client secret to the app, beside those it has (the portal's
    /// Certificates & secrets → New client secret); returns its key id.
    pub fn add_client_secret(&self, client_id: Uuid, secret: &str, expires: DateTime<Utc>) -> Uuid {
        let key_id = Uuid::new_v4();
        self.with_app(client_id, |app| {
            app.secrets.push(Secret {
                key_id,
                value: secret.to_string(),
                expires,
            })
        });
        key_id
    }

    /// Deletes one of the app's client secrets: token requests with it fail
    /// with AADSTS7000215. Tokens already issued stay valid until they
    /// expire, as at Entra.
    pub fn remove_client_secret(&self, client_id: Uuid, key_id: Uuid) {
        self.with_app(client_id, |app| app.secrets.retain(|s| s.key_id != key_id));
    }

    /// Disables the app: token requests fail with AADSTS7000112.
    pub fn disable_app(&self, client_id: Uuid) {
        self.with_app(client_id, |app| app.disabled = true);
    }

    /// What the administrator does on the next admin-consent visit.
    pub fn set_next_consent_decision(&self, decision: ConsentDecision) {
        *lock(&self.inner.consent) = Some(decision);
    }

    /// Who signs in on the next visit to the authorize endpoint: an
    /// administrator whose home tenant is `tenant`, so the `id_token` the
    /// code is redeemed for says `tid` = `tenant`. Unset, the user signing
    /// in belongs to the tenant in the authorize URL.
    pub fn set_next_sign_in(&self, tenant: Uuid) {
        self.tenant(tenant);
        *lock(&self.inner.sign_in) = Some(tenant);
    }

    /// The directory roles (role template ids, the `wids` claim) of the next
    /// user to sign in; unset, a Global Administrator.
    pub fn set_next_sign_in_roles(&self, roles: &[Uuid]) {
        *lock(&self.inner.sign_in_roles) = Some(roles.to_vec());
    }

    pub fn add_user(&self, tenant: Uuid, user: SimUser) {
        self.with_dir(tenant, |dir| dir.add_user(user));
    }

    pub fn update_user(&self, tenant: Uuid, id: &str, f: impl FnOnce(&mut SimUser)) {
        self.with_dir(tenant, |dir| dir.update_user(parse_id(id), f));
    }

    /// Soft delete: the user leaves its groups and delta reports it with
    /// `@removed: {"reason": "changed"}`.
    pub fn delete_user(&self, tenant: Uuid, id: &str) {
        self.with_dir(tenant, |dir| dir.delete_user(parse_id(id)));
    }

    /// Restores a soft-deleted user, with its group memberships.
    pub fn restore_user(&self, tenant: Uuid, id: &str) {
        self.with_dir(tenant, |dir| dir.restore_user(parse_id(id)));
    }

    /// Permanent delete (from the recycle bin or directly): delta reports
    /// `@removed: {"reason": "deleted"}`.
    pub fn purge_user(&self, tenant: Uuid, id: &str) {
        self.with_dir(tenant, |dir| dir.purge_user(parse_id(id)));
    }

    pub fn add_group(&self, tenant: Uuid, group: SimGroup) {
        self.with_dir(tenant, |dir| dir.add_group(group));
    }

    pub fn update_group(&self, tenant: Uuid, id: &str, f: impl FnOnce(&mut SimGroup)) {
        self.with_dir(tenant, |dir| dir.update_group(parse_id(id), f));
    }

    /// Deletes a group: Microsoft 365 groups are soft-deleted (delta reason
    /// "changed"), others permanently ("deleted").
    pub fn delete_group(&self, tenant: Uuid, id: &str) {
        self.with_dir(tenant, |dir| dir.delete_group(parse_id(id)));
    }

    /// Adds a user, group or contact to a group.
    pub fn add_member(&self, tenant: Uuid, group_id: &str, member_id: &str) {
        self.with_dir(tenant, |dir| {
            dir.add_member(parse_id(group_id), parse_id(member_id))
        });
    }

    pub fn remove_member(&self, tenant: Uuid, group_id: &str, member_id: &str) {
        self.with_dir(tenant, |dir| {
            dir.remove_member(parse_id(group_id), parse_id(member_id))
        });
    }

    pub fn add_contact(&self, tenant: Uuid, contact: SimContact) {
        self.with_dir(tenant, |dir| dir.add_contact(contact));
    }

    /// Every delta and skip token issued so far for the tenant now gets
    /// 410 Gone (`syncStateNotFound`).
    pub fn expire_delta_tokens(&self, tenant: Uuid) {
        self.with_dir(tenant, |dir| {
            dir.expire_tokens();
            Ok(())
        });
    }

    /// The tenant's current directory, sorted by id.
    pub fn snapshot(&self, tenant: Uuid) -> DirectorySnapshot {
        read(&self.tenant(tenant)).dir.snapshot()
    }

    /// Resource units per `window` an app may spend across all tenants
    /// (Graph's 150,000 per 20 s until set); enforced with
    /// `Faults::enforce_resource_units`.
    pub fn set_app_budget(&self, units: u64, window: std::time::Duration) {
        lock(&self.inner.meter).set_app_budget(units, window);
    }

    /// The most resource units the app spent in one of its budget windows
    /// since the last call.
    pub fn take_app_window_peak(&self) -> u64 {
        lock(&self.inner.meter).take_app_peak()
    }

    pub fn stats(&self) -> SimStats {
        lock(&self.inner.stats).clone()
    }

    pub fn reset_stats(&self) {
        *lock(&self.inner.stats) = SimStats::default();
    }

    /// Replaces the faults in force (and restarts their counters).
    pub fn set_faults(&self, faults: Faults) {
        lock(&self.inner.faults).set(faults);
    }
}
