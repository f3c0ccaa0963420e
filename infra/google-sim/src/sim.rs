//! The `GoogleSim` handle: start the server, set up customers, service
//! accounts and delegation, change the directory, inject faults, read stats.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use chrono::Utc;

use crate::directory::full_scope;
use crate::faults::Faults;
use crate::model::{MemberRole, SimGroup, SimUser, Snapshot};
use crate::script::Script;
use crate::state::{Inner, lock, read, write};
use crate::stats::Stats;
use crate::{generate, ids, keys, server};

/// A running simulator. Clones share the same state and server.
#[derive(Clone)]
pub struct GoogleSim {
    inner: Arc<Inner>,
}

impl GoogleSim {
    /// Serves on `127.0.0.1` at a free port.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_on(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)).await
    }

    /// Serves on `addr` (the binary uses it for a fixed port).
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<Self> {
        let inner = Arc::new(Inner::default());
        server::serve(Arc::clone(&inner), addr).await?;
        Ok(GoogleSim { inner })
    }

    /// `http://127.0.0.1:PORT/token`, the service account's `token_uri`
    /// and the JWT's `aud`.
    pub fn token_url(&self) -> String {
        self.inner.token_url()
    }

    /// `http://127.0.0.1:PORT`; the API is under `/admin/directory/v1/`.
    pub fn api_url(&self) -> String {
        self.inner.origin()
    }

    /// A customer (domain) with its super admin; returns the customer id
    /// (`C0` and 7 characters). The id depends only on the domain (and on
    /// customers already holding it), so runs are reproducible.
    pub fn add_customer(&self, primary_domain: &str, admin_email: &str) -> String {
        write(&self.inner.dir).add_customer(primary_domain, admin_email)
    }

    /// A service account with a fresh RSA key; returns its JSON key file.
    /// Adding the same email again replaces the key (and keeps the client
    /// id, which is derived from the email).
    pub fn add_service_account(&self, client_email: &str) -> String {
        let client_id = ids::user_id(client_email, 0);
        let (account, file) =
            keys::new_service_account(client_email, &client_id, &self.token_url());
        write(&self.inner.dir)
            .service_accounts
            .insert(client_email.to_string(), account);
        file
    }

    /// Domain-wide delegation: `client_id` may impersonate the customer's
    /// users with these scopes (short `admin.directory.user.readonly` or
    /// full URL). Adds to any scopes already granted.
    pub fn grant_delegation(&self, customer: &str, client_id: &str, scopes: &[&str]) {
        let mut dir = write(&self.inner.dir);
        let granted = dir
            .customer_mut(customer)
            .delegations
            .entry(client_id.to_string())
            .or_default();
        granted.extend(scopes.iter().map(|s| full_scope(s)));
    }

    /// Withdraws every scope granted to `client_id`. Tokens already issued
    /// stay valid until they expire, as with Google.
    pub fn revoke_delegation(&self, customer: &str, client_id: &str) {
        write(&self.inner.dir)
            .customer_mut(customer)
            .delegations
            .remove(client_id);
    }

    /// Adds a deterministic directory to the customer; see the `generate`
    /// module for its shape.
    pub fn generate(&self, customer: &str, users: u32, groups: u32, seed: u64) {
        generate::generate(
            write(&self.inner.dir).customer_mut(customer),
            users,
            groups,
            seed,
        );
    }

    /// Adds (or replaces) a user; an empty `id` gets a fresh one.
    pub fn add_user(&self, customer: &str, user: SimUser) {
        write(&self.inner.dir).customer_mut(customer).add_user(user);
    }

    /// Changes a live user in place; unknown ids are ignored.
    pub fn update_user(&self, customer: &str, id: &str, f: impl FnOnce(&mut SimUser)) {
        let mut dir = write(&self.inner.dir);
        if let Some(user) = dir.customer_mut(customer).users.get_mut(id) {
            f(user);
        }
    }

    /// Deletes a user: it disappears from listings and groups, and is listed
    /// by `showDeleted=true` with its `deletionTime`.
    pub fn delete_user(&self, customer: &str, id: &str) {
        write(&self.inner.dir)
            .customer_mut(customer)
            .delete_user(id, Utc::now());
    }

    /// Adds (or replaces) a group; an empty `id` gets a fresh one.
    pub fn add_group(&self, customer: &str, group: SimGroup) {
        write(&self.inner.dir)
            .customer_mut(customer)
            .add_group(group);
    }

    /// Adds a member with role `MEMBER`: a user id, a group id, or the
    /// customer id (a `CUSTOMER` member). Unknown ids are ignored.
    pub fn add_member(&self, customer: &str, group_id: &str, member_id: &str) {
        write(&self.inner.dir).customer_mut(customer).add_member(
            group_id,
            member_id,
            MemberRole::Member,
        );
    }

    /// Adds (or changes) a member with a role; unknown ids are ignored.
    pub fn set_member(&self, customer: &str, group_id: &str, member_id: &str, role: MemberRole) {
        write(&self.inner.dir)
            .customer_mut(customer)
            .add_member(group_id, member_id, role);
    }

    /// Adds someone from outside the customer; returns the member's key
    /// (its Google id with `google_account`, its address otherwise).
    pub fn add_external_member(
        &self,
        customer: &str,
        group_id: &str,
        email: &str,
        google_account: bool,
    ) -> Option<String> {
        write(&self.inner.dir)
            .customer_mut(customer)
            .add_external_member(group_id, email, google_account, MemberRole::Member)
    }

    pub fn remove_member(&self, customer: &str, group_id: &str, member_id: &str) {
        write(&self.inner.dir)
            .customer_mut(customer)
            .remove_member(group_id, member_id);
    }

    /// The customer's live directory, ordered by id.
    pub fn snapshot(&self, customer: &str) -> Snapshot {
        read(&self.inner.dir)
            .customers
            .get(customer)
            .map(|c| c.snapshot())
            .unwrap_or_else(|| panic!("google-sim: unknown customer {customer}"))
    }

    /// Replaces the faults in force (and their counters).
    pub fn set_faults(&self, f: Faults) {
        *lock(&self.inner.script) = Script::new(f.at.clone(), f.quota_storm);
        *lock(&self.inner.faults) = f;
    }

    pub fn stats(&self) -> Stats {
        lock(&self.inner.stats).clone()
    }

    /// Makes every access token issued so far expire now (the next API call
    /// with one gets 401), to rehearse token refresh.
    pub fn expire_tokens(&self) {
        let now = Utc::now();
        for token in lock(&self.inner.tokens).values_mut() {
            token.expires = now;
        }
    }
}
