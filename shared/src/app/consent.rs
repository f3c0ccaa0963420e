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
//!    guest). Only then is the state spent, the tenant claimed and the
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

/// Headers of every callback page (a redirect to the sign-in adds
/// `Location`).
pub const PAGE_HEADERS: [(&str, &str); 5] = [
    ("content-type", "text/html; charset=utf-8"),
    ("cache-control", "no-store"),
    (
        "content-security-policy",
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
];

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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackPage {
    pub status: u16,
    pub html: String,
    /// Where a `302` sends the browser: the sign-in that proves the
    /// administrator belongs to the tenant.
    pub location: Option<String>,
    /// What happened, for logs and tests.
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Granted,
    Migrated,
    Declined,
    Refused,
    /// Entra has not confirmed the grant yet; the page reloads itself.
    Pending,
    /// The grant is confirmed; the administrator is sent to sign in.
    SignIn,
    Failed,
}

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn page(status: u16, outcome: Outcome, title: &str, paragraphs: &[String]) -> CallbackPage {
    let body: String = paragraphs
        .iter()
        .map(|p| format!("<p>{}</p>", escape(p)))
        .collect();
    // Without a URL the refresh reloads this same callback address.
    let reload = if outcome == Outcome::Pending {
        format!("<meta http-equiv=\"refresh\" content=\"{RELOAD_SECONDS}\">")
    } else {
        String::new()
    };
    CallbackPage {
        status,
        outcome,
        location: None,
        html: format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">{reload}<title>{t}</title>\
             <style>body{{font-family:sans-serif;max-width:40em;margin:3em auto}}</style></head>\
             <body><h1>{t}</h1>{body}</body></html>",
            t = escape(title)
        ),
    }
}

const STATE_USED: &str = "This consent link has expired or was already used.";
const SERVICE_DOWN: &str = "The service is unavailable.";
const OTHER_ACCOUNT: &str =
    "This tenant is already connected to another account of the platform; contact support.";
const NO_PROOF_AWAITED: &str = "This sign-in answers no consent that awaits one: start the consent again from the admin console.";

/// How a callback ends, decided before it is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ending {
    /// The grant is recorded (the commit spent the state).
    Recorded {
        outcome: Outcome,
        lines: Vec<String>,
    },
    /// The administrator declined, or Entra sent an error instead of a grant.
    Declined(Vec<String>),
    /// A check did not pass: for good, and nothing was changed.
    Refused(String),
    /// Entra has not confirmed a fresh grant yet: the state is kept.
    Pending(String),
    /// The grant is confirmed: the administrator signs in at `url` to prove
    /// they belong to `tenant` (the state, now awaiting it, is kept).
    SignIn { url: String, tenant: Uuid },
    /// This request is refused, but it does not decide the consent: an
    /// authorization code already redeemed belongs to the request that
    /// redeemed it, which spends the state itself.
    Rejected(String),
    /// The grant could not be confirmed or saved, for good.
    Failed(String),
    /// The store or the sign-in service failed: nothing was decided and the
    /// state is kept.
    Unavailable(String),
}

impl Ending {
    /// Whether the consent is over, its state to be spent.
    fn is_final(&self) -> bool {
        !matches!(
            self,
            Ending::Pending(_)
                | Ending::Unavailable(_)
                | Ending::SignIn { .. }
                | Ending::Rejected(_)
        )
    }

    fn audit(&self) -> (AuditOutcome, String) {
        match self {
            Ending::Recorded { lines, .. } => (AuditOutcome::Succeeded, lines[0].clone()),
            Ending::Declined(lines) => (AuditOutcome::Declined, lines[1].clone()),
            Ending::Refused(why) | Ending::Rejected(why) => (AuditOutcome::Refused, why.clone()),
            Ending::Pending(why) => (AuditOutcome::Pending, why.clone()),
            Ending::SignIn { tenant, .. } => (
                AuditOutcome::Pending,
                format!(
                    "The grant in tenant {tenant} is confirmed; the sign-in of an administrator of that tenant is awaited."
                ),
            ),
            Ending::Failed(why) | Ending::Unavailable(why) => (AuditOutcome::Failed, why.clone()),
        }
    }

    fn page(&self) -> CallbackPage {
        let again = "Nothing was changed. Start the consent again from the admin console.";
        match self {
            Ending::Recorded { outcome, lines } => page(200, *outcome, "Consent recorded", lines),
            Ending::Declined(lines) => page(200, Outcome::Declined, "Consent not granted", lines),
            Ending::Refused(why) | Ending::Rejected(why) => page(
                400,
                Outcome::Refused,
                "Consent could not be recorded",
                &[why.clone(), again.into()],
            ),
            Ending::SignIn { url, .. } => CallbackPage {
                location: Some(url.clone()),
                ..page(
                    302,
                    Outcome::SignIn,
                    "Sign in to confirm the consent",
                    &["The grant is confirmed. Sign in as an administrator of the tenant to connect it.".into()],
                )
            },
            Ending::Pending(why) => page(
                200,
                Outcome::Pending,
                "Consent is being confirmed",
                &[
                    why.clone(),
                    format!(
                        "This page checks again every {RELOAD_SECONDS} seconds: keep it open. The connector becomes \
                         active as soon as Entra confirms the grant, and the page then says so. Closed, the same \
                         link works for a few more minutes; after that, start the consent again."
                    ),
                ],
            ),
            Ending::Failed(why) => page(
                502,
                Outcome::Failed,
                "Consent could not be confirmed",
                &[why.clone(), again.into()],
            ),
            Ending::Unavailable(why) => page(
                503,
                Outcome::Failed,
                "Consent could not be confirmed yet",
                &[
                    why.clone(),
                    "Nothing was changed and this consent link still works: reload this page in a minute."
                        .into(),
                ],
            ),
        }
    }
}

/// A store failure before anything was decided.
fn store_down(e: StoreError) -> Ending {
    tracing::error!(error = %e, "consent callback: the store failed");
    Ending::Unavailable(SERVICE_DOWN.into())
}

pub async fn callback(app: &App, graph: &GraphDeps, raw_query: &str) -> CallbackPage {
    let params = match parse_query(raw_query) {
        Ok(p) => p,
        Err(why) => return Ending::Refused(why).page(),
    };
    let (key, state) = match peek_state(app, &params).await {
        Ok(found) => found,
        Err(ending) => return ending.page(),
    };
    let call = Callback {
        app,
        graph,
        granted_at: state.granted_at.unwrap_or_else(|| app.store.now()),
        params,
        key,
        state,
    };
    let ending = match call.decide().await {
        Ok(ending) | Err(ending) => ending,
    };
    call.finish(ending).await
}

fn parse_query(raw_query: &str) -> Result<HashMap<String, String>, String> {
    if raw_query.len() > MAX_QUERY {
        return Err("The response is longer than any Entra sends.".into());
    }
    let mut params = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(raw_query.as_bytes()) {
        if params.insert(k.to_string(), v.to_string()).is_some() {
            return Err(format!("The parameter \"{k}\" appears more than once."));
        }
    }
    Ok(params)
}

/// The state the response carries, read but not spent: a grant Entra has
/// not confirmed yet leaves it usable for the page's next reload.
async fn peek_state(
    app: &App,
    params: &HashMap<String, String>,
) -> Result<(String, ConsentState), Ending> {
    let key = params
        .get("state")
        .filter(|s| !s.is_empty() && s.len() <= 128)
        .ok_or_else(|| Ending::Refused("The response carries no state.".into()))?;
    match app.store.get_ephemeral("consent", key).await {
        Ok(Some(v)) => serde_json::from_value(v)
            .map(|state| (key.clone(), state))
            .map_err(|_| Ending::Refused("The consent state is unreadable.".into())),
        Ok(None) => Err(Ending::Refused(STATE_USED.into())),
        Err(e) => Err(store_down(e)),
    }
}

/// One callback request and the state it carries.
struct Callback<'a> {
    app: &'a App,
    graph: &'a GraphDeps,
    params: HashMap<String, String>,
    key: String,
    state: ConsentState,
    /// When the grant first reached us (now, on a first arrival).
    granted_at: DateTime<Utc>,
}

/// The tenant a connector is bound to, read before anything is rewritten.
struct Binding {
    cloud: Cloud,
    /// As the connector names it: a domain or a GUID.
    named: String,
    /// The tenant's id where it is known without signing in: a GUID named,
    /// or the tenant a granted connector is connected to.
    id: Option<Uuid>,
    kind: BindingKind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum BindingKind {
    /// A consent connector waiting for consent.
    Pending,
    /// A consent connector already granted: consent can renew its grant in
    /// the same tenant, never move it.
    Granted,
    /// A legacy connector to migrate, in its own tenant.
    Legacy,
}

impl Binding {
    fn of(c: &Connector, migrate: bool) -> Result<Self, Ending> {
        match (&c.source, migrate) {
            (
                SourceConfig::EntraConsent {
                    cloud,
                    tenant,
                    consent,
                },
                false,
            ) => {
                let named = tenant.clone().ok_or_else(|| {
                    Ending::Refused(format!(
                        "Connector {} names no tenant. Name its tenant (POST …/tenant) and start the consent again.",
                        c.id
                    ))
                })?;
                let (id, kind) = match consent {
                    Consent::Granted { tenant_id, .. } => (Some(*tenant_id), BindingKind::Granted),
                    Consent::Pending => (Uuid::parse_str(&named).ok(), BindingKind::Pending),
                };
                Ok(Self {
                    cloud: cloud.clone(),
                    named,
                    id,
                    kind,
                })
            }
            (
                SourceConfig::EntraLegacy {
                    cloud,
                    tenant_domain,
                    ..
                },
                true,
            ) => Ok(Self {
                cloud: cloud.clone(),
                named: tenant_domain.to_string(),
                id: None,
                kind: BindingKind::Legacy,
            }),
            _ => Err(Ending::Refused(format!(
                "Connector {} has changed since this consent was started (its kind is now {}).",
                c.id,
                c.kind()
            ))),
        }
    }

    /// Refuses another tenant than the connector's, where its id is known.
    fn check(&self, tenant: Uuid) -> Result<(), Ending> {
        match self.id {
            Some(id) if id != tenant => Err(Ending::Refused(self.wrong_tenant(tenant))),
            _ => Ok(()),
        }
    }

    fn wrong_tenant(&self, tenant: Uuid) -> String {
        let named = &self.named;
        match self.kind {
            BindingKind::Granted => format!(
                "Consent came from tenant {tenant}, but this connector is connected to tenant {}: consent does not \
                 move a connector to another tenant. To read another tenant, change the connector's tenant first.",
                self.id.map(|id| id.to_string()).unwrap_or_default()
            ),
            BindingKind::Pending => format!(
                "Consent came from another tenant ({tenant}) than the connector's ({named}). Sign in as an \
                 administrator of {named}, or change the connector's tenant first."
            ),
            BindingKind::Legacy => format!(
                "Consent came from another tenant ({tenant}) than the legacy connector's own ({named}); a migration \
                 must be consented in the tenant the connector reads."
            ),
        }
    }
}

impl Callback<'_> {
    /// Every check, then the sign-in proof or the commit; each `Err` says
    /// why not.
    async fn decide(&self) -> Result<Ending, Ending> {
        if let Some(error) = self.params.get("error") {
            return Err(self.declined(error));
        }
        if self.params.contains_key("code") {
            return self.proven().await;
        }
        let tenant = self.granted_tenant()?;
        let connector = self.connector().await?;
        let binding = Binding::of(&connector, self.state.migrate)?;
        binding.check(tenant)?;
        let name = self.confirm(&binding.cloud, tenant).await?;
        self.check_named_domain(&binding, tenant).await?;
        let held = self.check_claim(tenant).await?;
        if held {
            // The account proved it belongs to this tenant when it claimed it.
            return self.commit(connector, tenant, &name, held).await;
        }
        let proof = AwaitedProof {
            tenant,
            name,
            named: binding.named.clone(),
            scope: self.params.get("scope").cloned(),
        };
        self.ask_for_proof(&binding.cloud, proof).await
    }

    /// The grant alone does not show who asked for it: any account can name
    /// a tenant that consented once and is held by no account. Before the
    /// tenant is claimed, an administrator must sign in there (OpenID
    /// Connect), and Entra says which tenant they belong to. Remembers that
    /// the proof is awaited and sends the browser to the sign-in, with the
    /// same state and redirect URI.
    async fn ask_for_proof(&self, cloud: &Cloud, proof: AwaitedProof) -> Result<Ending, Ending> {
        let (app, redirect) = sign_in_client(self.app, self.graph).map_err(Ending::Failed)?;
        let tenant = proof.tenant;
        let url = sign_in_url(cloud, tenant, app.client_id, &redirect, &self.key)?;
        let state = ConsentState {
            granted_at: Some(self.granted_at),
            proof: Some(proof),
            ..self.state.clone()
        };
        // Time to sign in, never less than the state had.
        let expires = (self.granted_at
            + chrono::Duration::minutes(PROPAGATION_MINUTES + CONSENT_STATE_MINUTES))
        .max(self.app.store.now() + chrono::Duration::minutes(CONSENT_STATE_MINUTES));
        match self
            .app
            .store
            .replace_ephemeral("consent", &self.key, &json!(state), expires)
            .await
        {
            Ok(true) => Ok(Ending::SignIn { url, tenant }),
            Ok(false) => Err(Ending::Refused(STATE_USED.into())),
            Err(e) => Err(store_down(e)),
        }
    }

    /// The return of the sign-in: the connector is checked again (it may
    /// have changed meanwhile), the code is redeemed for an ID token that
    /// must show a member of the tenant whose grant was confirmed, and only
    /// then is the grant committed.
    async fn proven(&self) -> Result<Ending, Ending> {
        let proof = self
            .state
            .proof
            .clone()
            .ok_or_else(|| Ending::Refused(NO_PROOF_AWAITED.into()))?;
        let connector = self.connector().await?;
        let binding = Binding::of(&connector, self.state.migrate)?;
        binding.check(proof.tenant)?;
        if binding.named != proof.named {
            return Err(Ending::Refused(format!(
                "Connector {} was pointed at another tenant ({}) since this consent was started.",
                connector.id, binding.named
            )));
        }
        let held = self.check_claim(proof.tenant).await?;
        self.prove(&binding.cloud, proof.tenant).await?;
        self.commit(connector, proof.tenant, &proof.name, held)
            .await
    }

    /// Redeems the sign-in's code as the platform app and checks the ID
    /// token Entra answered with.
    async fn prove(&self, cloud: &Cloud, tenant: Uuid) -> Result<(), Ending> {
        let code = self
            .params
            .get("code")
            .filter(|c| !c.is_empty())
            .ok_or_else(|| Ending::Refused("The sign-in response carries no code.".into()))?;
        let (app, redirect) = sign_in_client(self.app, self.graph).map_err(Ending::Failed)?;
        let id_token = self
            .graph
            .tokens
            .redeem_code(
                (cloud.authority_url(), &tenant.to_string()),
                &app.credential(),
                code,
                &redirect,
            )
            .await
            .map_err(code_refused)?;
        let expected = Expected {
            authority: cloud.authority_url(),
            tenant,
            client_id: app.client_id,
            now: self.app.store.now(),
        };
        id_token::claims(&id_token)
            .and_then(|claims| claims.check(&expected))
            .map_err(|e| Ending::Refused(not_proven(&e, tenant)))
    }

    fn declined(&self, error: &str) -> Ending {
        let description: String = self
            .params
            .get("error_description")
            .and_then(|d| d.lines().next())
            .unwrap_or_default()
            .chars()
            .take(300)
            .collect();
        let what = if self.state.proof.is_some() && !self.params.contains_key("admin_consent") {
            "The sign-in that confirms the consent did not complete."
        } else if error == "access_denied" {
            "Consent was not granted: the administrator cancelled or declined."
        } else {
            "Entra reported an error instead of a grant."
        };
        Ending::Declined(vec![
            what.to_owned(),
            format!("Entra said: {error}: {description}"),
            "The connector stays as it was. A Global Administrator (or Privileged Role Administrator) of the tenant \
             can start the consent again from the admin console."
                .to_owned(),
        ])
    }

    /// The tenant the response says granted consent (not yet believed).
    fn granted_tenant(&self) -> Result<Uuid, Ending> {
        if !self
            .params
            .get("admin_consent")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            return Err(Ending::Refused(
                "The response does not say that admin consent was granted.".into(),
            ));
        }
        self.params
            .get("tenant")
            .and_then(|t| Uuid::parse_str(t).ok())
            .ok_or_else(|| {
                Ending::Refused("The response does not name the tenant by its id.".into())
            })
    }

    async fn connector(&self) -> Result<Connector, Ending> {
        let s = &self.state;
        match self.app.store.get_connector(&s.account, &s.connector).await {
            Ok(Some(c)) => Ok(c),
            Ok(None) => Err(Ending::Refused(
                "The connector this consent was for no longer exists.".into(),
            )),
            Err(e) => Err(store_down(e)),
        }
    }

    /// Whether Entra may still be replicating the grant.
    fn replicating(&self) -> bool {
        self.app.store.now() < self.granted_at + chrono::Duration::minutes(PROPAGATION_MINUTES)
    }

    /// Confirms the grant by signing in to `tenant` as the platform app and
    /// reading its id back (a forged tenant parameter fails here); returns
    /// the tenant's name. While a fresh grant replicates, tries again a few
    /// times within the request, then answers [`Ending::Pending`].
    async fn confirm(&self, cloud: &Cloud, tenant: Uuid) -> Result<String, Ending> {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            let left = (CONFIRM_BUDGET + CONFIRM_GRACE).saturating_sub(started.elapsed());
            let once = tokio::time::timeout(left, confirm_once(cloud, tenant, self.graph))
                .await
                .map_err(|_| Ending::Unavailable("Entra did not answer in time.".into()))?;
            let not_yet = match once? {
                Confirmation::Confirmed(name) => return Ok(name),
                Confirmation::NotYetSeen(why) => why,
            };
            if !self.replicating() {
                return Err(Ending::Failed(format!(
                    "Entra still does not confirm the grant {PROPAGATION_MINUTES} minutes after it was given. {not_yet}"
                )));
            }
            let wait = confirm_backoff(self.graph, attempt);
            attempt += 1;
            if attempt >= CONFIRM_ATTEMPTS || started.elapsed() + wait > CONFIRM_BUDGET {
                return Err(Ending::Pending(format!(
                    "The grant in tenant {tenant} is being confirmed by Entra: a new grant can take a few minutes \
                     to reach all of Entra, and until then Entra does not let the platform app sign in there."
                )));
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// A connector named by domain (or a legacy connector) is checked once
    /// the grant is confirmed: its domain must lead to the tenant that
    /// consented. The platform app is in that tenant now, so a domain it
    /// cannot sign in to is another tenant.
    async fn check_named_domain(&self, b: &Binding, tenant: Uuid) -> Result<(), Ending> {
        if b.id.is_some() {
            return Ok(());
        }
        match read_tenant(&b.cloud, &b.named, self.graph).await {
            Ok((id, _)) if id == tenant => Ok(()),
            Ok(_) | Err(SignIn::NotYetSeen(_)) => Err(Ending::Refused(b.wrong_tenant(tenant))),
            Err(SignIn::Refused(why)) => Err(Ending::Refused(format!(
                "The connector's tenant {} could not be confirmed: {why}",
                b.named
            ))),
            Err(SignIn::Unavailable(why)) => Err(Ending::Unavailable(why)),
        }
    }

    /// Refuses a tenant another account holds; says whether this account
    /// held it already (a commit that fails then keeps the claim).
    async fn check_claim(&self, tenant: Uuid) -> Result<bool, Ending> {
        match self.app.store.tenant_holder(&tenant).await {
            Ok(Some(holder)) if holder != self.state.account => {
                Err(Ending::Refused(OTHER_ACCOUNT.into()))
            }
            Ok(holder) => Ok(holder.is_some()),
            Err(e) => Err(store_down(e)),
        }
    }

    /// Spends the state, claims the tenant and records the grant, in that
    /// order: of two requests committing one consent only one gets past
    /// the first step, and the claim's own condition settles a race with
    /// another account.
    async fn commit(
        &self,
        mut connector: Connector,
        tenant: Uuid,
        name: &str,
        held: bool,
    ) -> Result<Ending, Ending> {
        match self.app.store.take_ephemeral("consent", &self.key).await {
            Ok(Some(_)) => {}
            Ok(None) => return Err(Ending::Refused(STATE_USED.into())),
            Err(e) => return Err(store_down(e)),
        }
        let unsaved = |e: StoreError| {
            Ending::Failed(format!(
                "The grant could not be saved ({e}); start the consent again."
            ))
        };
        match self
            .app
            .store
            .claim_tenant(&tenant, &connector.account)
            .await
        {
            Ok(None) => {}
            Ok(Some(_)) => return Err(Ending::Refused(OTHER_ACCOUNT.into())),
            Err(e) => return Err(unsaved(e)),
        }
        let (outcome, legacy) = self.grant(&mut connector, tenant);
        if let Err(e) = self.app.store.update_connector(&connector).await {
            if !held
                && let Err(e) = self
                    .app
                    .store
                    .release_tenant(&tenant, &connector.account)
                    .await
            {
                tracing::error!(error = %e, %tenant, "a claim of a consent not saved was not released");
            }
            return Err(unsaved(e));
        }
        let name = if name.is_empty() {
            "(name not shown)"
        } else {
            name
        };
        let mut lines = vec![format!(
            "Consent is recorded for tenant {name} ({tenant}). Connector {} is active: it syncs in the next window, \
             or now with Sync now.",
            connector.id
        )];
        if let Some((client_id, secret)) = legacy {
            self.forget_legacy_secret(&connector, &secret).await;
            lines.push(format!(
                "The connector was migrated from the legacy app registration {client_id}. That app registration is \
                 no longer used by dirsync and may be deleted from your tenant; keep any app registrations used for \
                 single sign-on."
            ));
        }
        Ok(Ending::Recorded { outcome, lines })
    }

    /// Rewrites the connector as granted in `tenant` and active; a legacy
    /// one becomes a consent connector for its own tenant, keeping its
    /// stored directory and cursors (nothing is re-created or removed).
    /// Returns the legacy app and secret it no longer uses.
    fn grant(&self, c: &mut Connector, tenant: Uuid) -> (Outcome, Option<(Uuid, SecretRef)>) {
        let granted = |migrated_from| Consent::Granted {
            tenant_id: tenant,
            granted_at: self.granted_at,
            scope: self.scope(),
            started_by: self.state.started_by.clone(),
            migrated_from,
        };
        c.state = ConnectorState::Enabled;
        match &mut c.source {
            SourceConfig::EntraConsent { consent, .. } => {
                *consent = granted(None);
                (Outcome::Granted, None)
            }
            SourceConfig::EntraLegacy {
                cloud,
                tenant_domain,
                client_id,
                client_secret,
            } => {
                let legacy = (*client_id, client_secret.clone());
                c.source = SourceConfig::EntraConsent {
                    cloud: cloud.clone(),
                    tenant: Some(tenant_domain.to_string()),
                    consent: granted(Some(*client_id)),
                };
                (Outcome::Migrated, Some(legacy))
            }
            // `Binding::of` let no other source through.
            _ => (Outcome::Granted, None),
        }
    }

    /// The scope the grant carried: on the sign-in's return, as the grant's
    /// own response said.
    fn scope(&self) -> Option<String> {
        match &self.state.proof {
            Some(proof) if self.params.contains_key("code") => proof.scope.clone(),
            _ => self.params.get("scope").cloned(),
        }
    }

    /// Deletes the migrated connector's client secret if dirsync stored it:
    /// one named by hand may serve something else.
    async fn forget_legacy_secret(&self, c: &Connector, secret: &SecretRef) {
        let created = self.app.secret_name(&c.account, &c.id).ok();
        if created.as_ref() == Some(secret)
            && let Err(e) = self.app.secrets.delete(secret).await
        {
            tracing::warn!(error = %e, "the legacy client secret could not be deleted");
        }
    }

    /// Spends the state of a consent that is over (a commit has already),
    /// or remembers when a grant still being confirmed first arrived; then
    /// audits and shows the ending.
    async fn finish(&self, ending: Ending) -> CallbackPage {
        let spend = ending.is_final() && !matches!(ending, Ending::Recorded { .. });
        if spend && let Err(e) = self.app.store.take_ephemeral("consent", &self.key).await {
            tracing::error!(error = %e, "a finished consent's state was not spent");
        }
        if matches!(ending, Ending::Pending(_) | Ending::Unavailable(_)) {
            self.remember_grant_time().await;
        }
        let (outcome, detail) = ending.audit();
        let action = if self.state.migrate {
            AuditAction::Migration
        } else {
            AuditAction::Consent
        };
        let caller = self
            .state
            .started_by
            .as_deref()
            .unwrap_or("consent-callback");
        self.app
            .audit(
                AuditRecord::new(action, self.state.account.clone(), caller)
                    .connector(Some(self.state.connector.clone()))
                    .outcome(outcome, detail),
            )
            .await;
        ending.page()
    }

    /// Stores the first arrival's time in the state (never bringing back a
    /// state spent meanwhile), and keeps the state for the replication
    /// delay and the page's reloads after it.
    async fn remember_grant_time(&self) {
        if self.state.granted_at.is_some() {
            return;
        }
        let state = ConsentState {
            granted_at: Some(self.granted_at),
            ..self.state.clone()
        };
        let expires = self.granted_at
            + chrono::Duration::minutes(PROPAGATION_MINUTES + CONSENT_STATE_MINUTES);
        if let Err(e) = self
            .app
            .store
            .replace_ephemeral("consent", &self.key, &json!(state), expires)
            .await
        {
            tracing::error!(error = %e, "the grant's arrival time was not stored");
        }
    }
}

/// The wait before sign-in attempt `attempt + 2`: doubling from twice the
/// Graph policy's base (1 s, 2 s, 4 s, 8 s in production).
fn confirm_backoff(graph: &GraphDeps, attempt: u32) -> Duration {
    let policy = &graph.policy;
    policy
        .base_backoff
        .saturating_mul(2u32 << attempt.min(8))
        .min(policy.max_backoff)
}

enum Confirmation {
    /// The platform app signed in to the tenant, whose name this is.
    Confirmed(String),
    /// Entra does not know the grant yet, as this says.
    NotYetSeen(String),
}

/// One attempt to confirm a grant in `tenant`: a forged tenant parameter,
/// or one Entra refuses to sign in to, ends here.
async fn confirm_once(
    cloud: &Cloud,
    tenant: Uuid,
    graph: &GraphDeps,
) -> Result<Confirmation, Ending> {
    match read_tenant(cloud, &tenant.to_string(), graph).await {
        Ok((id, name)) if id == tenant => Ok(Confirmation::Confirmed(name)),
        Ok((id, _)) => Err(Ending::Refused(format!(
            "The tenant that signed in ({id}) is not the tenant named in the response ({tenant})."
        ))),
        Err(SignIn::NotYetSeen(why)) => Ok(Confirmation::NotYetSeen(why)),
        Err(SignIn::Refused(why)) => Err(Ending::Failed(why)),
        Err(SignIn::Unavailable(why)) => Err(Ending::Unavailable(why)),
    }
}

/// Why a sign-in to a tenant as the platform app did not read the tenant.
enum SignIn {
    /// Entra does not know the grant (yet): AADSTS700016 / 65001.
    NotYetSeen(String),
    /// Entra or Graph refused for another reason, which the message says.
    Refused(String),
    /// The sign-in service, Graph or the certificate's secret store could
    /// not be reached.
    Unavailable(String),
}

impl From<AuthError> for SignIn {
    fn from(e: AuthError) -> Self {
        match &e {
            AuthError::Refused { code: Some(c), .. } if GRANT_NOT_YET_SEEN.contains(c) => {
                SignIn::NotYetSeen(e.to_string())
            }
            AuthError::Unreachable { .. } | AuthError::Secret(_) => {
                SignIn::Unavailable(e.to_string())
            }
            _ => SignIn::Refused(e.to_string()),
        }
    }
}

impl From<SourceError> for SignIn {
    fn from(e: SourceError) -> Self {
        if e.is_transient() {
            SignIn::Unavailable(e.to_string())
        } else {
            SignIn::Refused(e.to_string())
        }
    }
}

/// Signs in to `tenant` (a GUID or a domain) as the platform app and reads
/// the tenant's (id, name) back.
async fn read_tenant(
    cloud: &Cloud,
    tenant: &str,
    graph: &GraphDeps,
) -> Result<(Uuid, String), SignIn> {
    let source = GraphSource::for_tenant(cloud, tenant, graph)?;
    source.sign_in().await?;
    Ok(source.organization(&mut RequestStats::default()).await?)
}

/// Why an ID token does not prove the sign-in, for the page and the audit.
fn not_proven(e: &IdTokenError, tenant: Uuid) -> String {
    match e {
        IdTokenError::OtherTenant(other) => format!(
            "The administrator who signed in belongs to another tenant ({other}), not to tenant {tenant} whose grant \
             this consent would connect: only an administrator of that tenant can connect it."
        ),
        IdTokenError::Guest(_) => format!(
            "The administrator who signed in is a guest of tenant {tenant}, not one of its own users: only an \
             administrator of that tenant can connect it."
        ),
        other => format!("The sign-in could not be confirmed: {other}."),
    }
}

/// A code redemption Entra refused, or that did not reach it.
fn code_refused(e: AuthError) -> Ending {
    match &e {
        AuthError::Refused { code: Some(c), .. } if CODE_SPENT.contains(c) => {
            Ending::Rejected(e.to_string())
        }
        AuthError::Unreachable { .. } | AuthError::Secret(_) => Ending::Unavailable(e.to_string()),
        _ => Ending::Refused(format!("Entra did not confirm the sign-in: {e}")),
    }
}

/// The platform app and the callback's redirect URI: the client of both
/// the consent and the sign-in.
fn sign_in_client<'a>(app: &App, graph: &'a GraphDeps) -> Result<(&'a EntraApp, String), String> {
    let platform = graph
        .app
        .as_ref()
        .ok_or("the platform app is not configured (DIRSYNC_APP_CLIENT_ID)")?;
    let redirect = app
        .settings
        .consent_redirect_uri
        .clone()
        .ok_or("DIRSYNC_CONSENT_REDIRECT_URI is not set")?;
    Ok((platform, redirect))
}

/// The OpenID Connect sign-in in `tenant`: an authorization code sent back
/// to the callback with the consent's state. `select_account` lets the
/// administrator pick the account of that tenant rather than whichever
/// account the browser is signed in with.
fn sign_in_url(
    cloud: &Cloud,
    tenant: Uuid,
    client_id: Uuid,
    redirect: &str,
    state: &str,
) -> Result<String, Ending> {
    url::Url::parse_with_params(
        &format!("{}/{tenant}/oauth2/v2.0/authorize", cloud.authority_url()),
        &[
            ("client_id", client_id.to_string().as_str()),
            ("response_type", "code"),
            ("response_mode", "query"),
            ("redirect_uri", redirect),
            ("scope", "openid"),
            ("state", state),
            ("prompt", "select_account"),
        ],
    )
    .map(String::from)
    .map_err(|e| Ending::Failed(format!("The sign-in address could not be built: {e}")))
}

/// Starts admin consent (or a legacy connector's migration) in the
/// connector's tenant: remembers a single-use state and returns the URL to
/// send the administrator to.
pub async fn start(
    app: &App,
    scope: &Scope,
    migrate: bool,
    caller: Option<String>,
) -> Result<Value, AppError> {
    let c = super::api::connector(app, scope).await?;
    let (cloud, tenant) = consent_tenant(&c, migrate)?;
    let (platform, redirect) =
        sign_in_client(app, &app.graph).map_err(|e| AppError::Config(e.to_owned()))?;
    let client_id = platform.client_id;
    let state = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let expires = app.store.now() + chrono::Duration::minutes(CONSENT_STATE_MINUTES);
    let remembered = ConsentState {
        account: scope.account.clone(),
        connector: scope.connector.clone(),
        started_by: caller,
        migrate,
        granted_at: None,
        proof: None,
    };
    app.store
        .put_ephemeral("consent", &state, &json!(remembered), expires, true)
        .await?;
    // The consent page of the connector's tenant, never `organizations`:
    // the administrator signs in where the connector reads.
    let url = url::Url::parse_with_params(
        &format!("{}/{tenant}/v2.0/adminconsent", cloud.authority_url()),
        &[
            ("client_id", client_id.to_string()),
            ("scope", crate::auth::token::GRAPH_SCOPE.to_owned()),
            ("redirect_uri", redirect),
            ("state", state),
        ],
    )
    .map_err(|e| AppError::Config(format!("cannot build the consent URL: {e}")))?;
    Ok(json!({"consent_url": url.as_str(), "expires_at": expires}))
}

/// The cloud and tenant a consent (or migration) of `c` is given in.
fn consent_tenant(c: &Connector, migrate: bool) -> Result<(&Cloud, String), AppError> {
    match (&c.source, migrate) {
        (SourceConfig::EntraConsent { cloud, tenant, .. }, false) => {
            let tenant = tenant.clone().ok_or_else(|| {
                AppError::Conflict(format!(
                    "connector {} names no tenant; name it first with POST …/tenant {{\"tenant\": \"contoso.onmicrosoft.com\"}} \
                     (its domain or tenant ID)",
                    c.id
                ))
            })?;
            Ok((cloud, tenant))
        }
        (
            SourceConfig::EntraLegacy {
                cloud,
                tenant_domain,
                ..
            },
            true,
        ) => Ok((cloud, tenant_domain.to_string())),
        (_, false) => Err(AppError::BadRequest(format!(
            "admin consent is for consent connectors; this is a {} connector{}",
            c.kind(),
            if c.kind() == ConnectorKind::EntraLegacy {
                " (use POST …/migrate to move it to consent)"
            } else {
                ""
            }
        ))),
        (_, true) => Err(AppError::BadRequest(format!(
            "only legacy Entra connectors are migrated; this is a {} connector",
            c.kind()
        ))),
    }
}

/// Binds a consent connector to another tenant: the explicit operation
/// that consent never performs. The connector waits for consent in the new
/// tenant; its cursors and any unfinished run's checkpoints are forgotten,
/// so the first read after the new consent is a full one, under the
/// deletion guard (the old tenant's users are not in the new one); and the
/// account's claim on the old tenant is given up unless another of its
/// connectors is granted there. Refused while a sync holds the connector.
pub async fn change_tenant(
    app: &App,
    scope: &Scope,
    tenant: &str,
    caller: Option<String>,
) -> Result<Value, AppError> {
    let named = tenant_name(tenant).map_err(|e| AppError::BadRequest(e.to_string()))?;
    let mut c = super::api::connector(app, scope).await?;
    let Retarget::From(old) = retarget(&mut c, &named)? else {
        return Ok(json!({"connector": c, "changed": false}));
    };
    let lease = match app
        .store
        .acquire_lease(scope, "admin-change-tenant", chrono::Duration::minutes(5))
        .await
    {
        Ok(lease) => lease,
        Err(StoreError::LeaseHeld { .. }) => {
            return Err(AppError::Conflict(
                "a sync of this connector is running; change its tenant when it has finished"
                    .into(),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let rebound = rebind(app, scope, &c, old).await;
    // The lease is only held against syncs starting meanwhile.
    let _ = app.store.release_lease(&lease).await;
    let (stored, released) = rebound?;
    tracing::info!(account = %scope.account, connector = %scope.connector, caller = caller.as_deref(),
        to = %named, released = ?released, "connector tenant changed");
    Ok(json!({
        "connector": stored,
        "changed": true,
        "released_tenant": released,
        "next": format!("start the consent in {named} (POST …/consent)"),
    }))
}

enum Retarget {
    /// The connector names that tenant already (or is granted in it).
    Unchanged,
    /// Retargeted; it was granted in this tenant, if in any.
    From(Option<Uuid>),
}

/// Points a consent connector at tenant `named`, waiting for consent there.
fn retarget(c: &mut Connector, named: &str) -> Result<Retarget, AppError> {
    let old = granted_tenant_of(c);
    let SourceConfig::EntraConsent {
        tenant, consent, ..
    } = &mut c.source
    else {
        return Err(AppError::BadRequest(format!(
            "only consent connectors change tenant; this is a {} connector",
            c.kind()
        )));
    };
    if tenant.as_deref() == Some(named) || old.is_some_and(|id| id.to_string() == named) {
        return Ok(Retarget::Unchanged);
    }
    *tenant = Some(named.to_owned());
    *consent = Consent::Pending;
    Ok(Retarget::From(old))
}

/// The tenant a consent connector is granted in.
fn granted_tenant_of(c: &Connector) -> Option<Uuid> {
    match &c.source {
        SourceConfig::EntraConsent {
            consent: Consent::Granted { tenant_id, .. },
            ..
        } => Some(*tenant_id),
        _ => None,
    }
}

/// The steps of a tenant change, in the order that is safe to stop after
/// any one: forgetting cursors and checkpoints only costs a full read.
async fn rebind(
    app: &App,
    scope: &Scope,
    c: &Connector,
    old: Option<Uuid>,
) -> Result<(Connector, Option<Uuid>), AppError> {
    app.store.clear_cursors(scope).await?;
    app.store.clear_progress(scope).await?;
    let stored = app.store.update_connector(c).await?;
    let Some(old) = old else {
        return Ok((stored, None));
    };
    // Another connector of the account still reading the old tenant keeps
    // the account's claim on it.
    let connectors = app.store.list_connectors(&scope.account).await?;
    if connectors.iter().any(|o| granted_tenant_of(o) == Some(old)) {
        return Ok((stored, None));
    }
    let released = app.store.release_tenant(&old, &scope.account).await?;
    Ok((stored, released.then_some(old)))
}
