//! Entra ID through Microsoft Graph: the `DirectorySource` for consent and
//! legacy connectors.
//!
//! Two streams, read concurrently by the engine:
//! - `users`: `/users/delta?$select=…` — a first round enumerates every user
//!   and ends with a deltaLink; later rounds return what changed.
//! - `groups`: `/groups/delta?$select=…,members` — groups with their members
//!   inline (`members@delta`), so memberships cost no call per group.
//!
//! Pages are asked for at 999 objects (`Prefer: odata.maxpagesize`; `$top`
//! is refused on delta), links are followed verbatim, and an expired delta
//! token becomes [`SourceError::ResyncRequired`].
//!
//! A page's nextLink is asked for as soon as the page has arrived, before it
//! is mapped (see [`Ahead`]): a stream's pages follow one another, so
//! otherwise each page's mapping would add to the stream's total latency.

mod client;
pub mod mapping;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::Value;
use uuid::Uuid;

use crate::auth::{AssertionAlg, AuthError, Credential, TokenProvider};
use crate::domain::{Connector, Consent, SecretRef, SourceConfig};
use crate::source::budget::{RequestBudget, SharedBudget};
use crate::source::retry::{Limiters, RetryPolicy};
use crate::source::{
    Change, ConnectionReport, DirectorySource, Next, ReadFrom, RequestStats, SourceError,
    SourcePage, Stream,
};

pub use client::{GraphClient, GraphFailure, GraphTarget, MAX_PAGE, parse_body};
use mapping::{GROUP_PROPS, USER_SELECT};

/// The platform's multi-tenant app, used by every consent connector.
#[derive(Debug, Clone)]
pub struct EntraApp {
    pub client_id: Uuid,
    /// The secret holding the app certificate (AWSCURRENT/AWSPREVIOUS).
    pub certificate: SecretRef,
    pub assertion: AssertionAlg,
}

impl EntraApp {
    /// How the app signs in: with its certificate, read at each sign-in so
    /// that a rotation is picked up.
    pub fn credential(&self) -> Credential {
        Credential::Certificate {
            client_id: self.client_id,
            secret: self.certificate.clone(),
            alg: self.assertion,
        }
    }
}

/// What every Graph source of a process shares: built once in `main`.
pub struct GraphDeps {
    pub tokens: Arc<TokenProvider>,
    pub limiters: Arc<Limiters>,
    pub policy: RetryPolicy,
    pub app: Option<EntraApp>,
    /// The platform app's budget across all tenants, shared with every
    /// other worker; legacy connectors read as the customer's own app and
    /// are not paced by it.
    pub budget: Option<Arc<SharedBudget>>,
}

impl GraphDeps {
    /// Requests in flight per tenant: Graph throttles a burst from one app
    /// into one tenant long before the network is the limit.
    pub const TENANT_CONCURRENCY: usize = 4;

    /// One token provider and one set of tenant limiters, for a process.
    pub fn new(
        secrets: Arc<dyn crate::secrets::SecretStore>,
        clock: Arc<dyn crate::clock::Clock>,
        policy: RetryPolicy,
        app: Option<EntraApp>,
    ) -> Self {
        Self {
            tokens: Arc::new(TokenProvider::new(secrets, clock)),
            limiters: Arc::new(Limiters::new(Self::TENANT_CONCURRENCY)),
            policy,
            app,
            budget: None,
        }
    }

    pub fn with_budget(mut self, budget: Option<Arc<SharedBudget>>) -> Self {
        self.budget = budget;
        self
    }

    /// The app's budget as `tenant`'s requests to `cloud`'s Graph see it.
    fn budget_for(
        &self,
        cloud: &crate::domain::Cloud,
        tenant: &str,
    ) -> Option<Arc<dyn RequestBudget>> {
        let host = url::Url::parse(cloud.graph_url())
            .ok()?
            .host_str()?
            .to_owned();
        self.budget.as_ref().map(|b| b.for_tenant(&host, tenant))
    }
}

pub struct GraphSource {
    client: Arc<GraphClient>,
    /// Per stream, the next page, asked for while this one was mapped.
    ahead: Mutex<HashMap<String, Ahead>>,
}

/// A delta page's links, all that a first look at it reads (serde skips
/// `value` without building it).
#[derive(serde::Deserialize)]
pub struct PageLinks {
    #[serde(rename = "@odata.nextLink")]
    pub next: Option<String>,
    #[serde(rename = "@odata.deltaLink")]
    pub delta: Option<String>,
}

/// A page requested before the engine asked for it: the link it was asked
/// for and the request, running on a task of its own so that it proceeds
/// while the page before it is mapped. One per stream, so read-ahead stays
/// the engine's to bound. Replaced by the stream's next read whatever it
/// asks for, or dropped with the source, the request is aborted; one left
/// waiting longer than [`AHEAD_FRESH`] (a paused run continued by the same
/// source) is asked for again.
struct Ahead {
    url: String,
    asked: std::time::Instant,
    task: tokio::task::JoinHandle<(Result<String, GraphFailure>, RequestStats)>,
}

/// How long a page asked for ahead is taken as the answer.
const AHEAD_FRESH: std::time::Duration = std::time::Duration::from_secs(30);

impl Drop for Ahead {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GraphSource {
    pub fn new(client: GraphClient) -> Self {
        Self {
            client: Arc::new(client),
            ahead: Mutex::new(HashMap::new()),
        }
    }

    /// The page at `url`, unparsed: the one already asked for when it is
    /// that link, else asked for now.
    async fn page(
        &self,
        stream: &str,
        url: &str,
        stats: &mut RequestStats,
    ) -> Result<String, GraphFailure> {
        let ahead = self
            .ahead
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(stream);
        let fresh = |a: &Ahead| a.url == url && a.asked.elapsed() < AHEAD_FRESH;
        if let Some(mut ahead) = ahead.filter(fresh) {
            // The task fails only by panicking (aborts are ours, on drop):
            // then the page is asked for again here, where a panic shows.
            if let Ok((page, spent)) = (&mut ahead.task).await {
                stats.add(spent);
                return page;
            }
        }
        self.client.get_page(url, stats).await
    }

    /// Starts the request for `url`, the page after the one being read.
    fn ask_ahead(&self, stream: &str, url: &str) {
        let client = self.client.clone();
        let link = url.to_owned();
        let task = tokio::spawn(async move {
            let mut stats = RequestStats::default();
            let page = client.get_page(&link, &mut stats).await;
            (page, stats)
        });
        self.ahead
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                stream.to_owned(),
                Ahead {
                    url: url.to_owned(),
                    asked: std::time::Instant::now(),
                    task,
                },
            );
    }

    /// The Graph source of an Entra connector (consent or legacy).
    pub fn for_connector(connector: &Connector, deps: &GraphDeps) -> Result<Self, SourceError> {
        let (cloud, tenant, credential) = match &connector.source {
            SourceConfig::EntraConsent { cloud, consent, .. } => {
                let Consent::Granted { tenant_id, .. } = consent else {
                    return Err(SourceError::Config(format!(
                        "connector {} is waiting for admin consent; an administrator of the tenant must grant it first",
                        connector.id
                    )));
                };
                let app = deps.app.as_ref().ok_or_else(|| {
                    SourceError::Config(
                        "the platform app is not configured (DIRSYNC_APP_CLIENT_ID and DIRSYNC_APP_CERT_SECRET)".into(),
                    )
                })?;
                (cloud, tenant_id.to_string(), app.credential())
            }
            SourceConfig::EntraLegacy {
                cloud,
                tenant_domain,
                client_id,
                client_secret,
            } => (
                cloud,
                tenant_domain.to_string(),
                Credential::ClientSecret {
                    client_id: *client_id,
                    secret: client_secret.clone(),
                },
            ),
            other => {
                return Err(SourceError::Config(format!(
                    "a {} connector is not read through Microsoft Graph",
                    other.kind()
                )));
            }
        };
        // Only the platform app's requests spend its budget; a legacy
        // connector signs in as the customer's own app.
        let as_platform = matches!(credential, Credential::Certificate { .. });
        let target = GraphTarget {
            authority_url: cloud.authority_url().to_owned(),
            graph_url: cloud.graph_url().to_owned(),
            tenant: tenant.clone(),
            credential,
        };
        let limiter = deps.limiters.for_tenant(&tenant);
        let budget = as_platform
            .then(|| deps.budget_for(cloud, &tenant))
            .flatten();
        Ok(Self::new(
            GraphClient::new(target, deps.tokens.clone(), limiter, deps.policy).with_budget(budget),
        ))
    }

    /// A Graph source signing in to `tenant` as the platform app (consent
    /// confirmation, migration checks).
    pub fn for_tenant(
        cloud: &crate::domain::Cloud,
        tenant: &str,
        deps: &GraphDeps,
    ) -> Result<Self, SourceError> {
        let app = deps.app.as_ref().ok_or_else(|| {
            SourceError::Config("the platform app is not configured (DIRSYNC_APP_CLIENT_ID)".into())
        })?;
        let target = GraphTarget {
            authority_url: cloud.authority_url().to_owned(),
            graph_url: cloud.graph_url().to_owned(),
            tenant: tenant.to_owned(),
            credential: app.credential(),
        };
        let limiter = deps.limiters.for_tenant(tenant);
        Ok(Self::new(
            GraphClient::new(target, deps.tokens.clone(), limiter, deps.policy)
                .with_budget(deps.budget_for(cloud, tenant)),
        ))
    }

    pub fn client(&self) -> &GraphClient {
        &self.client
    }

    /// Where a full read of `stream` starts (public for the benchmark's
    /// no-processing floor, which fetches exactly these pages).
    pub fn first_url(&self, stream: &str) -> Result<String, SourceError> {
        match stream {
            "users" => Ok(format!(
                "{}?$select={USER_SELECT}",
                self.client.url("/users/delta")
            )),
            "groups" => Ok(format!(
                "{}?$select={GROUP_PROPS},members",
                self.client.url("/groups/delta")
            )),
            other => Err(SourceError::Config(format!(
                "Graph has no stream {other:?}"
            ))),
        }
    }

    /// Turns a request failure into a run error that names what was read.
    fn failure(&self, stream: &str, f: GraphFailure) -> SourceError {
        match f {
            GraphFailure::ResyncRequired(why) => SourceError::ResyncRequired(why),
            GraphFailure::Forbidden(e) => {
                SourceError::Permission(permission_advice(stream, &e.code))
            }
            GraphFailure::NotFound => SourceError::Protocol(format!(
                "Microsoft Graph does not know the {stream} endpoint (404)"
            )),
            GraphFailure::Source(e) => e,
        }
    }

    /// Signs in to the source's tenant, or finds a valid token: the error
    /// keeps Entra's AADSTS code, which tells a grant still replicating
    /// (700016, 65001) from a refusal.
    pub async fn sign_in(&self) -> Result<(), AuthError> {
        let t = &self.client.target;
        self.client
            .tokens()
            .token(&t.authority_url, &t.tenant, &t.scope(), &t.credential)
            .await
            .map(|_| ())
    }

    /// Forgets the token cached for this source's tenant and credential:
    /// its secret has been replaced, and a token made from the old one
    /// must not stand for the new one (in a test, or a sync).
    pub fn forget_token(&self) {
        let t = &self.client.target;
        self.client
            .tokens()
            .forget(&t.authority_url, &t.tenant, &t.scope(), &t.credential);
    }

    /// The tenant as Graph reports it: `GET /organization` → (id, name).
    /// Reading the organization needs Organization.Read.All, more than a
    /// sync needs; without it the tenant id comes from the access token's
    /// `tid` claim (and the name is unknown).
    pub async fn organization(
        &self,
        stats: &mut RequestStats,
    ) -> Result<(Uuid, String), SourceError> {
        let url = format!(
            "{}?$select=id,displayName",
            self.client.url("/organization")
        );
        let v = match self.client.get(&url, stats).await {
            Ok(v) => v,
            Err(GraphFailure::Forbidden(_)) => {
                let t = &self.client.target;
                let token = self
                    .client
                    .tokens()
                    .token(&t.authority_url, &t.tenant, &t.scope(), &t.credential)
                    .await
                    .map_err(|e| SourceError::Auth(e.to_string()))?;
                let tid = tenant_of_token(token.value.expose()).ok_or_else(|| {
                    SourceError::Protocol("the access token carries no tenant id (tid)".into())
                })?;
                return Ok((tid, String::new()));
            }
            Err(f) => return Err(self.failure("organization", f)),
        };
        let org = &v["value"][0];
        let id = org["id"]
            .as_str()
            .and_then(|s| Uuid::parse_str(s).ok())
            .ok_or_else(|| {
                SourceError::Protocol("GET /organization returned no tenant id".into())
            })?;
        Ok((
            id,
            org["displayName"].as_str().unwrap_or_default().to_owned(),
        ))
    }

    /// A users page's changes. No object is read again: one missing
    /// properties becomes a [`Change::PartialUser`].
    fn users_page(value: &[Value]) -> Vec<Change> {
        let mut changes = Vec::with_capacity(value.len());
        for o in value.iter().filter_map(Value::as_object) {
            let Some(id) = mapping::id_of(o) else {
                continue;
            };
            let proxies = o.get("proxyAddresses").and_then(Value::as_array);
            let proxies = proxies.into_iter().flatten().filter_map(Value::as_str);
            let note = crate::source::extra_primaries(&id, proxies);
            changes.push(match mapping::removal_of(o) {
                Some(reason) => Change::RemoveUser { id, reason },
                None => mapping::user_change(id, o),
            });
            changes.extend(note);
        }
        changes
    }

    /// A groups page's changes. A property left out is one never set (a
    /// security group's `mail`): see [`mapping::group_of`]. An entry without
    /// `displayName`, which every group has, carries only membership
    /// changes.
    fn groups_page(value: &[Value]) -> Vec<Change> {
        let mut changes = Vec::with_capacity(value.len());
        for o in value.iter().filter_map(Value::as_object) {
            let Some(id) = mapping::id_of(o) else {
                continue;
            };
            if let Some(reason) = mapping::removal_of(o) {
                changes.push(Change::RemoveGroup { id, reason });
                continue;
            }
            if o.contains_key("displayName") {
                changes.push(Change::Group(mapping::group_of(id.clone(), o)));
            }
            if let Some(entries) = o.get("members@delta").and_then(Value::as_array) {
                let (added, removed) = mapping::members_of(entries);
                if !added.is_empty() {
                    changes.push(Change::AddMembers {
                        group: id.clone(),
                        members: added,
                    });
                }
                if !removed.is_empty() {
                    changes.push(Change::RemoveMembers {
                        group: id,
                        members: removed,
                    });
                }
            }
        }
        changes
    }
}

/// The `tid` claim of an access token. Microsoft asks clients to treat Graph
/// tokens as opaque; this is only the fallback when the organization cannot
/// be read, and the signature is not checked (the token came straight from
/// the tenant's token endpoint over TLS).
fn tenant_of_token(token: &str) -> Option<Uuid> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    Uuid::parse_str(claims["tid"].as_str()?).ok()
}

fn permission_advice(what: &str, code: &str) -> String {
    let permission = match what {
        "users" => "User.Read.All",
        "groups" => "Group.Read.All",
        _ => "Directory.Read.All",
    };
    format!(
        "Microsoft Graph denied reading {what} ({code}): the app needs the application permission {permission} \
         (or Directory.Read.All) with admin consent granted in the tenant"
    )
}

#[async_trait]
impl DirectorySource for GraphSource {
    async fn read(&self, stream: Stream, from: &ReadFrom) -> Result<SourcePage, SourceError> {
        let stream = stream.as_str();
        let url = match from {
            ReadFrom::Full => self.first_url(stream)?,
            ReadFrom::Delta(link) | ReadFrom::Continue(link) => {
                self.client.check_link(link)?;
                link.clone()
            }
        };
        let mut stats = RequestStats::default();
        let text = self
            .page(stream, &url, &mut stats)
            .await
            .map_err(|f| self.failure(stream, f))?;
        // The next page is asked for first: finding its link skims the page,
        // parsing and mapping it take longer. A link this source would refuse
        // is left to be refused when it is followed.
        if let Ok(PageLinks {
            next: Some(next), ..
        }) = serde_json::from_str::<PageLinks>(&text)
            && self.client.check_link(&next).is_ok()
        {
            self.ask_ahead(stream, &next);
        }
        let page = parse_body(&text).map_err(|f| self.failure(stream, f))?;
        // Not kept beside its parsed form while the page is mapped.
        drop(text);
        let value = page["value"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let changes = match stream {
            "users" => Self::users_page(value),
            "groups" => Self::groups_page(value),
            other => {
                return Err(SourceError::Config(format!(
                    "Graph has no stream {other:?}"
                )));
            }
        };
        let next = if let Some(next) = page["@odata.nextLink"].as_str() {
            Next::Page(next.to_owned())
        } else if let Some(delta) = page["@odata.deltaLink"].as_str() {
            Next::Done {
                cursor: Some(delta.to_owned()),
            }
        } else {
            return Err(SourceError::Protocol(
                "a Graph delta page had neither @odata.nextLink nor @odata.deltaLink".into(),
            ));
        };
        Ok(SourcePage {
            changes,
            next,
            stats,
        })
    }

    fn stats(&self) -> Option<RequestStats> {
        Some(self.client.stats())
    }

    async fn test_connection(&self) -> ConnectionReport {
        let mut report = ConnectionReport::new();
        let t = &self.client.target;
        let mut stats = RequestStats::default();
        match self
            .client
            .tokens()
            .token(&t.authority_url, &t.tenant, &t.scope(), &t.credential)
            .await
        {
            Ok(_) => report.passed("sign-in", format!("signed in to tenant {}", t.tenant)),
            Err(e) => {
                report.failed("sign-in", e.to_string());
                return report;
            }
        }
        match self.organization(&mut stats).await {
            Ok((id, name)) => {
                let name = if name.is_empty() {
                    "name not shown: grant Organization.Read.All to see it".to_owned()
                } else {
                    name
                };
                let expected = Uuid::parse_str(&t.tenant).ok();
                if expected.is_some_and(|e| e != id) {
                    report.failed(
                        "organization",
                        format!(
                            "the token is for tenant {id}, not {}; check the connector's tenant",
                            t.tenant
                        ),
                    );
                    return report;
                }
                report.passed("organization", format!("tenant {name} ({id})"));
            }
            Err(e) => {
                report.failed("organization", e.to_string());
                return report;
            }
        }
        for (stream, path) in [
            ("users", "/users?$top=1&$select=id"),
            ("groups", "/groups?$top=1&$select=id"),
        ] {
            match self.client.get(&self.client.url(path), &mut stats).await {
                Ok(_) => report.passed(stream, format!("can read {stream}")),
                Err(f) => {
                    report.failed(stream, self.failure(stream, f).to_string());
                    return report;
                }
            }
        }
        report
    }
}
