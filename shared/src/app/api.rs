//! The admin API: JSON over HTTP, behind IAM authorization. Routing and
//! handling are plain functions of an `http::Request`, so the Lambda
//! function and the local `serve` command share them.
//!
//! | method | path | |
//! |---|---|---|
//! | POST | /accounts | create an account |
//! | GET | /accounts/{a} | |
//! | GET, POST | /accounts/{a}/connectors | list, create (`{"connector": spec, "secret": "…"}`) |
//! | GET, PATCH, DELETE | /accounts/{a}/connectors/{c} | read, change options (with `version`), delete |
//! | PUT | /accounts/{a}/connectors/{c}/secret | store a new password / client secret, then test |
//! | POST | /accounts/{a}/connectors/{c}/test | test connection |
//! | POST | /accounts/{a}/connectors/{c}/sync | sync now (`{"full": true}` for a full read) |
//! | POST | /accounts/{a}/connectors/{c}/consent | start admin consent: the URL to send the administrator to |
//! | GET | /accounts/{a}/connectors/{c}/runs | newest first (`?limit=&next=`) |
//! | GET | /accounts/{a}/connectors/{c}/runs/{run} | a run, with its staged actions |
//! | POST | /accounts/{a}/connectors/{c}/runs/{run}/approve, …/reject | review a staged run |
//! | GET | /accounts/{a}/users?address= | a user by any address |
//! | GET | /accounts/{a}/connectors/{c}/users/{id}/groups | a user's groups |
//! | GET | /accounts/{a}/connectors/{c}/groups/{id}/members | a group's members |

use std::collections::HashMap;

use http::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::domain::{
    Account, AccountId, Connector, ConnectorId, ConnectorKind, ConnectorSpec, ConnectorState,
    EmailAddress, Region, RunId, SecretRef, SourceConfig, SourceId, Trigger, ValidationError,
};
use crate::engine::EngineError;
use crate::queue::Job;
use crate::secrets::{SecretError, SecretValue};
use crate::store::{PageRequest, Scope, StoreError};

use super::{App, AppError, Caller};

type Reply = Result<(StatusCode, Value), AppError>;

/// Handles one request; `caller` is who the edge says made it.
pub async fn handle(app: &App, req: Request<Vec<u8>>, caller: Caller) -> Response<String> {
    let result = route(app, &req, caller.principal().map(str::to_owned)).await;
    let (status, body) = match result {
        Ok(ok) => ok,
        Err(e) => error_reply(&e),
    };
    if status.is_server_error() {
        tracing::error!(status = status.as_u16(), body = %body, "admin API error");
    }
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .body(body.to_string())
        .unwrap_or_default()
}

fn error_reply(e: &AppError) -> (StatusCode, Value) {
    let status = match e {
        AppError::NotFound(_) | AppError::Store(StoreError::NotFound { .. }) => {
            StatusCode::NOT_FOUND
        }
        AppError::BadRequest(_) | AppError::Store(StoreError::BadPageToken) => {
            StatusCode::BAD_REQUEST
        }
        AppError::Conflict(_)
        | AppError::Store(StoreError::AlreadyExists { .. })
        | AppError::Store(StoreError::VersionConflict { .. })
        | AppError::Store(StoreError::LeaseHeld { .. })
        | AppError::Engine(EngineError::Review(_)) => StatusCode::CONFLICT,
        AppError::Secret(SecretError::NotFound { .. }) => StatusCode::BAD_REQUEST,
        AppError::Forbidden(_) => StatusCode::FORBIDDEN,
        AppError::Queue(_) | AppError::Secret(_) => StatusCode::BAD_GATEWAY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, json!({"error": e.to_string()}))
}

fn bad(e: ValidationError) -> AppError {
    AppError::BadRequest(e.to_string())
}

fn body<T: for<'de> Deserialize<'de>>(req: &Request<Vec<u8>>) -> Result<T, AppError> {
    if req.body().len() > 256 * 1024 {
        return Err(AppError::BadRequest(
            "the request body is larger than 256 KiB".into(),
        ));
    }
    let bytes: &[u8] = if req.body().is_empty() {
        b"{}"
    } else {
        req.body()
    };
    serde_json::from_slice(bytes).map_err(|e| {
        AppError::BadRequest(format!("the request body is not the expected JSON: {e}"))
    })
}

fn query(req: &Request<Vec<u8>>) -> HashMap<String, String> {
    req.uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

fn page_request(q: &HashMap<String, String>) -> Result<PageRequest, AppError> {
    let limit = match q.get("limit") {
        Some(l) => l
            .parse()
            .map_err(|_| AppError::BadRequest("limit must be a number from 1 to 1000".into()))?,
        None => 100,
    };
    Ok(PageRequest::after(q.get("next").cloned(), limit))
}

async fn route(app: &App, req: &Request<Vec<u8>>, caller: Option<String>) -> Reply {
    let path = req.uri().path().trim_end_matches('/');
    let parts: Vec<String> = path
        .split('/')
        .filter(|p| !p.is_empty())
        .map(|p| {
            url::form_urlencoded::parse(format!("x={p}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        })
        .collect();
    let p: Vec<&str> = parts.iter().map(String::as_str).collect();
    let m = req.method();
    match (m, p.as_slice()) {
        (&Method::POST, ["accounts"]) => create_account(app, req).await,
        (&Method::GET, ["accounts"]) => {
            let page = app.store.list_accounts(page_request(&query(req))?).await?;
            Ok((
                StatusCode::OK,
                json!({"accounts": page.items, "next": page.next}),
            ))
        }
        (&Method::GET, ["accounts", a]) => {
            let id = AccountId::new(*a).map_err(bad)?;
            let account = app
                .store
                .get_account(&id)
                .await?
                .ok_or_else(|| AppError::NotFound(format!("account {a}")))?;
            Ok((StatusCode::OK, json!(account)))
        }
        (&Method::GET, ["accounts", a, "connectors"]) => {
            let id = AccountId::new(*a).map_err(bad)?;
            Ok((
                StatusCode::OK,
                json!({"connectors": app.store.list_connectors(&id).await?}),
            ))
        }
        (&Method::POST, ["accounts", a, "connectors"]) => create_connector(app, req, a).await,
        (&Method::GET, ["accounts", a, "users"]) => find_user(app, req, a).await,
        (_, ["accounts", a, "connectors", c, rest @ ..]) => {
            let scope = Scope::new(
                AccountId::new(*a).map_err(bad)?,
                ConnectorId::new(*c).map_err(bad)?,
            );
            connector_routes(app, req, m, &scope, rest, caller).await
        }
        _ => Err(AppError::NotFound(format!(
            "{m} {path} (see the API reference in shared/src/app/api.rs)"
        ))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAccount {
    id: String,
    name: String,
    region: String,
}

async fn create_account(app: &App, req: &Request<Vec<u8>>) -> Reply {
    let n: NewAccount = body(req)?;
    let region: Region = n.region.parse().map_err(bad)?;
    let account = Account::new(
        AccountId::new(n.id).map_err(bad)?,
        n.name,
        region,
        app.store.now(),
    )
    .map_err(bad)?;
    app.store.create_account(&account).await?;
    Ok((StatusCode::CREATED, json!(account)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewConnector {
    connector: ConnectorSpec,
    /// The password / client secret / service-account key, stored in the
    /// secret store under a name of the platform's; never returned.
    secret: Option<String>,
}

/// The secret setting of each kind, if it has one.
fn secret_field(kind: ConnectorKind) -> Option<&'static str> {
    match kind {
        ConnectorKind::EntraConsent => None,
        ConnectorKind::EntraLegacy => Some("client_secret_ref"),
        ConnectorKind::ActiveDirectory | ConnectorKind::Domino => Some("password_ref"),
        ConnectorKind::Google => Some("service_account_key_ref"),
    }
}

fn secret_of(c: &Connector) -> Option<&SecretRef> {
    match &c.source {
        SourceConfig::EntraConsent { .. } => None,
        SourceConfig::EntraLegacy { client_secret, .. } => Some(client_secret),
        SourceConfig::ActiveDirectory { ldap } | SourceConfig::Domino { ldap, .. } => {
            Some(&ldap.password)
        }
        SourceConfig::Google {
            service_account_key,
            ..
        } => Some(service_account_key),
    }
}

async fn create_connector(app: &App, req: &Request<Vec<u8>>, account: &str) -> Reply {
    let account = AccountId::new(account).map_err(bad)?;
    let NewConnector {
        mut connector,
        secret,
    } = body(req)?;
    let kind: ConnectorKind = connector
        .kind
        .as_deref()
        .unwrap_or_default()
        .parse()
        .map_err(bad)?;
    let id = ConnectorId::new(connector.id.clone().unwrap_or_default()).map_err(bad)?;
    let name: Option<SecretRef> = match (&secret, secret_field(kind)) {
        (Some(_), None) => {
            return Err(AppError::BadRequest(format!(
                "a {kind} connector takes no secret; remove \"secret\""
            )));
        }
        (Some(_), Some(field)) => {
            let name: SecretRef = format!("{}/{account}/{id}", app.settings.secret_prefix)
                .parse()
                .map_err(bad)?;
            let slot = match field {
                "client_secret_ref" => &mut connector.client_secret_ref,
                "password_ref" => &mut connector.password_ref,
                _ => &mut connector.service_account_key_ref,
            };
            *slot = Some(name.as_str().to_owned());
            Some(name)
        }
        (None, _) => None,
    };
    // Custom sign-in and Graph hosts would let whoever creates a connector
    // answer the tenant confirmation: only deployments that ask for them
    // (local runs, the demo) accept them.
    if !app.settings.allow_custom_cloud
        && (connector.authority_url.is_some()
            || connector.graph_url.is_some()
            || connector.api_url.is_some())
    {
        return Err(AppError::BadRequest(
            "custom authority_url/graph_url are not enabled in this deployment; use a cloud preset \
             (global, us-gov, us-gov-dod, china)"
                .into(),
        ));
    }
    // Secrets named by hand must be this account's own: a connector must not
    // be able to read (or, on deletion, remove) anyone else's secret.
    let own = format!("{}/{account}/", app.settings.secret_prefix);
    for r in [
        &connector.client_secret_ref,
        &connector.password_ref,
        &connector.service_account_key_ref,
    ] {
        if let Some(r) = r.as_deref()
            && !r.starts_with(&own)
        {
            return Err(AppError::BadRequest(format!(
                "secret names must start with {own:?}; or send the value as \"secret\" and it is stored for you"
            )));
        }
    }
    // Validate before storing anything, so a refusal leaves nothing behind.
    let c = connector.validate(account, app.store.now()).map_err(bad)?;
    // The connector first: a repeated request is refused before it can
    // touch the existing connector's secret.
    let stored = app.store.create_connector(&c).await?;
    if let (Some(name), Some(value)) = (&name, secret)
        && let Err(e) = app.secrets.put(name, SecretValue::new(value)).await
    {
        // Without its secret the new connector is useless: take it back.
        let _ = app.store.delete_connector(&c.account, &c.id).await;
        return Err(e.into());
    }
    Ok((StatusCode::CREATED, json!(stored)))
}

async fn find_user(app: &App, req: &Request<Vec<u8>>, account: &str) -> Reply {
    let account = AccountId::new(account).map_err(bad)?;
    let q = query(req);
    let address: EmailAddress = q
        .get("address")
        .ok_or_else(|| AppError::BadRequest("give ?address=user@example.com".into()))?
        .parse()
        .map_err(bad)?;
    let (connector, user) = app
        .store
        .find_user_by_address(&account, &address)
        .await?
        .ok_or_else(|| {
            AppError::NotFound(format!(
                "a user with address {address} in account {account}"
            ))
        })?;
    Ok((
        StatusCode::OK,
        json!({"connector": connector, "user": user}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectorPatch {
    version: u64,
    description: Option<String>,
    enabled: Option<bool>,
    acknowledge_disabled: Option<bool>,
    email_domains: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SyncBody {
    #[serde(default)]
    full: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretBody {
    value: String,
}

pub(super) async fn connector(app: &App, scope: &Scope) -> Result<Connector, AppError> {
    app.store
        .get_connector(&scope.account, &scope.connector)
        .await?
        .ok_or_else(|| {
            AppError::NotFound(format!("connector {}/{}", scope.account, scope.connector))
        })
}

async fn connector_routes(
    app: &App,
    req: &Request<Vec<u8>>,
    m: &Method,
    scope: &Scope,
    rest: &[&str],
    caller: Option<String>,
) -> Reply {
    match (m, rest) {
        (&Method::GET, []) => Ok((StatusCode::OK, json!(connector(app, scope).await?))),
        (&Method::PATCH, []) => {
            let mut c = connector(app, scope).await?;
            if c.kind() == ConnectorKind::EntraLegacy {
                return Err(AppError::Conflict(
                    "legacy Entra connectors accept no configuration change until they are migrated to the consent \
                     connector; start the migration, or renew the client secret with PUT …/secret"
                        .into(),
                ));
            }
            let patch: ConnectorPatch = body(req)?;
            c.version = patch.version;
            if let Some(d) = patch.description {
                c.description = d.trim().to_owned();
            }
            if let Some(e) = patch.enabled {
                c.state = if e {
                    ConnectorState::Enabled
                } else {
                    ConnectorState::Paused
                };
            }
            if let Some(a) = patch.acknowledge_disabled {
                c.options.acknowledge_disabled = a;
            }
            if let Some(d) = patch.email_domains {
                c.options.email_domains = d.parse().map_err(bad)?;
            }
            Ok((StatusCode::OK, json!(app.store.update_connector(&c).await?)))
        }
        (&Method::DELETE, []) => {
            let c = connector(app, scope).await?;
            // Hold the connector while deleting it, so that no sync starts
            // and re-creates what is being removed.
            let lease = match app
                .store
                .acquire_lease(scope, "admin-delete", chrono::Duration::minutes(10))
                .await
            {
                Ok(l) => l,
                Err(StoreError::LeaseHeld { .. }) => {
                    return Err(AppError::Conflict(
                        "a sync of this connector is running; delete it when it has finished"
                            .into(),
                    ));
                }
                Err(e) => return Err(e.into()),
            };
            app.store
                .delete_connector(&scope.account, &scope.connector)
                .await?;
            // Only the secret the API created for this connector goes with it.
            let created = format!(
                "{}/{}/{}",
                app.settings.secret_prefix, scope.account, scope.connector
            );
            if let Some(name) = secret_of(&c).filter(|n| n.as_str() == created) {
                app.secrets.delete(name).await?;
            }
            // The lease went with the connector's items; this is a no-op then.
            let _ = app.store.release_lease(&lease).await;
            Ok((StatusCode::OK, json!({"deleted": scope.connector})))
        }
        (&Method::PUT, ["secret"]) => {
            let c = connector(app, scope).await?;
            let name = secret_of(&c).ok_or_else(|| {
                AppError::BadRequest(format!("a {} connector has no secret to set", c.kind()))
            })?;
            let SecretBody { value } = body(req)?;
            if value.is_empty() {
                return Err(AppError::BadRequest("the new secret is empty".into()));
            }
            app.secrets.put(name, SecretValue::new(value)).await?;
            // The password-refresh flow: stored, then tested, result shown.
            let report = app.sources.source_for(&c)?.test_connection().await;
            Ok((StatusCode::OK, json!({"stored": true, "test": report})))
        }
        (&Method::POST, ["test"]) => {
            let c = connector(app, scope).await?;
            let report = match app.sources.source_for(&c) {
                Ok(source) => source.test_connection().await,
                Err(e) => {
                    let mut r = crate::source::ConnectionReport::new();
                    r.failed("configuration", e.to_string());
                    r
                }
            };
            Ok((StatusCode::OK, json!(report)))
        }
        (&Method::POST, ["sync"]) => {
            let c = connector(app, scope).await?;
            let SyncBody { full } = body(req)?;
            if !c.source.is_ready() {
                return Err(AppError::Conflict(
                    "the connector is waiting for admin consent; it cannot sync yet".into(),
                ));
            }
            if let Some(lease) = app.store.current_lease(scope).await? {
                return Err(AppError::Conflict(format!(
                    "a sync of this connector is already running (until {}); wait for it to finish",
                    lease.expires_at
                )));
            }
            let job = Job {
                account: scope.account.clone(),
                connector: scope.connector.clone(),
                trigger: Trigger::Manual {
                    requested_by: caller,
                },
                full,
                continues: None,
            };
            app.queue.send(&job, std::time::Duration::ZERO).await?;
            Ok((StatusCode::ACCEPTED, json!({"queued": true, "full": full})))
        }
        (&Method::POST, ["consent"]) => Ok((
            StatusCode::OK,
            super::consent::start(app, scope, false, caller).await?,
        )),
        (&Method::POST, ["migrate"]) => Ok((
            StatusCode::OK,
            super::consent::start(app, scope, true, caller).await?,
        )),
        (&Method::POST, ["tenant"]) => {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct TenantBody {
                tenant: String,
            }
            let TenantBody { tenant } = body(req)?;
            let changed = super::consent::change_tenant(app, scope, &tenant, caller).await?;
            Ok((StatusCode::OK, changed))
        }
        (&Method::GET, ["runs"]) => {
            let page = app
                .store
                .list_runs(scope, page_request(&query(req))?)
                .await?;
            Ok((
                StatusCode::OK,
                json!({"runs": page.items, "next": page.next}),
            ))
        }
        (&Method::GET, ["runs", run]) => {
            let id: RunId = run.parse().map_err(bad)?;
            let r = app
                .store
                .get_run(scope, &id)
                .await?
                .ok_or_else(|| AppError::NotFound(format!("run {run}")))?;
            let staged = if r.status == crate::domain::RunStatus::Staged {
                app.engine.staged_actions(scope, &id).await?
            } else {
                Vec::new()
            };
            Ok((StatusCode::OK, json!({"run": r, "staged_actions": staged})))
        }
        (&Method::POST, ["runs", run, decision @ ("approve" | "reject")]) => {
            let id: RunId = run.parse().map_err(bad)?;
            let r = if *decision == "approve" {
                app.engine.approve(scope, &id, caller).await?
            } else {
                app.engine.reject(scope, &id, caller).await?
            };
            Ok((StatusCode::OK, json!(r)))
        }
        (&Method::GET, ["users", id, "groups"]) => {
            let id = SourceId::new(*id).map_err(bad)?;
            let page = app
                .store
                .member_of(scope, &id, page_request(&query(req))?)
                .await?;
            Ok((
                StatusCode::OK,
                json!({"memberships": page.items, "next": page.next}),
            ))
        }
        (&Method::GET, ["groups", id, "members"]) => {
            let id = SourceId::new(*id).map_err(bad)?;
            let page = app
                .store
                .group_members(scope, &id, page_request(&query(req))?)
                .await?;
            Ok((
                StatusCode::OK,
                json!({"memberships": page.items, "next": page.next}),
            ))
        }
        _ => Err(AppError::NotFound(format!("{m} {}", req.uri().path()))),
    }
}
