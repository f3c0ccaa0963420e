//! Admin consent: the URL an administrator is sent to, the callback where
//! Entra sends them back after granting (or refusing) consent to the
//! platform's app, the sign-in that proves they belong to the tenant, and
//! the explicit change of a connector's tenant.
//!
//! A consent connector names its tenant when it is created, and consent is
//! accepted from that tenant only (for a migration: the legacy connector's
//! own tenant); a granted connector never changes tenant through consent.
//! Nothing in the callback's request is trusted: the `state` must be one we
//! issued, unused and unexpired; `tenant` must be a GUID and the
//! connector's; and the grant is confirmed by signing in to that tenant and
//! reading its id back.
//!
//! A confirmed grant still does not say who asked for it: any account may
//! name a tenant that consented once and that no account holds (a callback
//! that failed, a link that expired, a claim released by a change of
//! tenant) and forge the callback with its own state. So the flow has two
//! legs when the account does not hold the tenant yet:
//!
//! 1. `?admin_consent=True&tenant=T&state=S`: every check above; then the
//!    state remembers that T's grant is confirmed and a proof is awaited,
//!    and the callback answers `302` to T's OpenID Connect sign-in
//!    (`/{T}/oauth2/v2.0/authorize`, `scope=openid`, the same state and
//!    redirect URI, `prompt=select_account`).
//! 2. `?code=…&state=S`: the code is redeemed at T's token endpoint by the
//!    platform app with its certificate assertion, and the ID token of that
//!    response must say `aud` = the app and `tid` = T (a member of T, not a
//!    guest), carry the `nonce` this consent's sign-in was asked with, and
//!    list in `wids` a role that can grant the consent (Global or
//!    Privileged Role Administrator): once the app is consented, any
//!    member of T could sign in. Only then is the state spent, the tenant claimed and the
//!    connector saved. Another tenant's administrator is refused, the state
//!    spent and nothing claimed.
//!
//! A re-consent in a tenant this account holds commits at the first leg:
//! the account proved it belongs there when it claimed it. The platform
//! app needs the delegated `openid` permission for the sign-in, besides its
//! application permissions. The tenant is claimed only after every check
//! has passed, so a refusal changes nothing.
//!
//! Right after a grant Entra may not know it yet (directory replication):
//! the callback retries for a few seconds, then shows a page that reloads
//! itself until Entra confirms, keeping the state unspent for the five
//! minutes such a delay may last. The state is spent when the callback
//! commits a grant or ends for good (a code another request redeemed ends
//! nothing: that request decides). Every value shown on the page is
//! HTML-escaped, the only redirect is to the sign-in at the configured
//! authority, no code or token is shown or logged, and the page's headers
//! forbid caching, framing and scripts.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::auth::AuthError;
use crate::auth::aadsts::{CODE_SPENT, GRANT_NOT_YET_SEEN};
use crate::auth::id_token::{self, Expected, IdTokenError};
use crate::domain::{
    AccountId, AuditAction, AuditOutcome, AuditRecord, Cloud, Connector, ConnectorId,
    ConnectorKind, ConnectorState, Consent, SecretRef, SourceConfig, tenant_name,
};
use crate::source::graph::{EntraApp, GraphDeps, GraphSource};
use crate::source::{RequestStats, SourceError};
use crate::store::{Scope, StoreError};

use super::{App, AppError};

mod callback;
mod page;
mod proof;
mod start;
mod tenant;

pub use callback::callback;
pub use page::{CallbackPage, Outcome, PAGE_HEADERS, escape};
pub use start::start;
pub use tenant::change_tenant;

use callback::*;
use page::*;
use proof::*;

/// Longer queries are not Entra's.
const MAX_QUERY: usize = 4096;

/// Consent states live this long: enough to sign in and click Accept.
pub const CONSENT_STATE_MINUTES: i64 = 15;

/// How long after a grant Entra may still not know it (directory
/// replication): within this, "app not found" means "not yet".
pub const PROPAGATION_MINUTES: i64 = 5;

/// Sign-in attempts per callback request while a grant replicates…
const CONFIRM_ATTEMPTS: u32 = 5;
/// …within this much of the request's time: an HTTP API request is cut
/// off at 30 seconds.
const CONFIRM_BUDGET: Duration = Duration::from_secs(20);
/// The last attempt may run this much past the budget, no more: the page
/// must still be answered in time.
const CONFIRM_GRACE: Duration = Duration::from_secs(5);

/// How often the "being confirmed" page reloads itself (no script: the
/// page's policy forbids them).
const RELOAD_SECONDS: u32 = 10;

/// What a consent state remembers between start and callback.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsentState {
    pub account: AccountId,
    pub connector: ConnectorId,
    #[serde(default)]
    pub started_by: Option<String>,
    /// The connector is a legacy one to migrate.
    #[serde(default)]
    pub migrate: bool,
    /// When the grant first reached the callback: the replication delay is
    /// waited for from then on.
    #[serde(default)]
    pub granted_at: Option<DateTime<Utc>>,
    /// The grant was confirmed, and the sign-in that proves the
    /// administrator belongs to its tenant is awaited.
    #[serde(default)]
    pub proof: Option<AwaitedProof>,
}

/// A confirmed grant waiting for its sign-in proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwaitedProof {
    /// The tenant whose grant was confirmed.
    pub tenant: Uuid,
    /// Its name, as Graph read it back.
    pub name: String,
    /// The tenant as the connector named it when the grant was confirmed.
    pub named: String,
    /// The scope the grant carried.
    pub scope: Option<String>,
    /// Sent with the sign-in and expected back in its ID token, so that a
    /// code from another consent's sign-in proves nothing here.
    #[serde(default)]
    pub nonce: String,
}
