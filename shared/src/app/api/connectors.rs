//! A connector's life: creation (with its secret), changes, deletion,
//! secret renewal, connection tests, syncs on demand, consent.
//!
//! A connector's secret is stored under a name the platform makes for that
//! connector alone ([`App::secret_name`]), and goes only where it was
//! given for: a change of where it is sent needs the secret again, in the
//! same request.

use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::domain::{
    AccountId, Connector, ConnectorId, ConnectorKind, ConnectorSpec, Lease, SecretRef, Trigger,
};
use crate::queue::Job;
use crate::secrets::SecretValue;
use crate::source::ConnectionReport;
use crate::store::{Scope, StoreError};

use super::super::{App, AppError, Caller};
use super::extract::{Ids, JsonBody, bad, not_expected};
use super::guard::AuditNote;
use super::{Reply, ok};

pub(super) async fn list(State(app): State<App>, ids: Ids) -> Reply {
    let account = ids.account()?;
    ok(
        StatusCode::OK,
        json!({"connectors": app.store.list_connectors(&account).await?}),
    )
}

pub(super) async fn get(State(app): State<App>, ids: Ids) -> Reply {
    ok(StatusCode::OK, json!(connector(&app, &ids.scope()?).await?))
}

/// The connector a scope names, or 404.
pub(in crate::app) async fn connector(app: &App, scope: &Scope) -> Result<Connector, AppError> {
    app.store
        .get_connector(&scope.account, &scope.connector)
        .await?
        .ok_or_else(|| {
            AppError::NotFound(format!("connector {}/{}", scope.account, scope.connector))
        })
}

/// What a kind's secret is, for messages; `None` for a kind without one.
fn secret_kind(kind: ConnectorKind) -> Option<&'static str> {
    match kind {
        ConnectorKind::EntraConsent => None,
        ConnectorKind::EntraLegacy => Some("the app registration's client secret"),
        ConnectorKind::ActiveDirectory | ConnectorKind::Domino => {
            Some("the service account's password")
        }
        ConnectorKind::Google => Some("the service account's JSON key"),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewConnector {
    connector: ConnectorSpec,
    /// The password / client secret / service-account key, stored under
    /// the connector's own secret name; never returned.
    secret: Option<String>,
}

pub(super) async fn create(
    State(app): State<App>,
    ids: Ids,
    JsonBody(n): JsonBody<NewConnector>,
) -> Response {
    let note = AuditNote {
        account: None,
        connector: n
            .connector
            .id
            .as_deref()
            .and_then(|c| ConnectorId::new(c).ok()),
    };
    let mut response = match ids.account() {
        Ok(account) => create_connector(&app, account, n).await.into_response(),
        Err(e) => e.into_response(),
    };
    response.extensions_mut().insert(note);
    response
}

async fn create_connector(app: &App, account: AccountId, n: NewConnector) -> Reply {
    let NewConnector {
        connector: mut spec,
        secret,
    } = n;
    refuse_named_secrets(&spec)?;
    refuse_custom_hosts(app, &spec)?;
    let kind: ConnectorKind = spec
        .kind
        .as_deref()
        .unwrap_or_default()
        .parse()
        .map_err(bad)?;
    let id = ConnectorId::new(spec.id.clone().unwrap_or_default()).map_err(bad)?;
    let name = app.secret_name(&account, &id)?;
    let secret = match (secret, secret_kind(kind)) {
        (Some(_), None) => {
            return Err(AppError::BadRequest(format!(
                "a {kind} connector takes no secret; remove \"secret\""
            )));
        }
        (None, Some(what)) => {
            return Err(AppError::BadRequest(format!(
                "a {kind} connector needs {what}: send it as \"secret\" (it is stored for this connector \
                 alone and never returned)"
            )));
        }
        (Some(value), Some(_)) => {
            set_secret_ref(&mut spec, kind, &name);
            Some(nonempty(value)?)
        }
        (None, None) => None,
    };
    // Validate before storing anything, so a refusal leaves nothing behind.
    let c = spec.validate(account, app.store.now()).map_err(bad)?;
    if let Some(value) = &secret {
        check_secret(&c, value)?;
    }
    // The connector first: a repeated request is refused before it can
    // touch the existing connector's secret.
    let stored = app.store.create_connector(&c).await?;
    if let Some(value) = secret
        && let Err(e) = app.secrets.put(&name, value).await
    {
        // Without its secret the new connector is useless: take it back.
        let _ = app.store.delete_connector(&c.account, &c.id).await;
        return Err(e.into());
    }
    ok(StatusCode::CREATED, json!(stored))
}

/// Secret names are the platform's to make: one named by hand could be
/// another connector's.
fn refuse_named_secrets(spec: &ConnectorSpec) -> Result<(), AppError> {
    let named = [
        ("client_secret_ref", &spec.client_secret_ref),
        ("password_ref", &spec.password_ref),
        ("service_account_key_ref", &spec.service_account_key_ref),
    ];
    if let Some((field, _)) = named.iter().find(|(_, v)| v.is_some()) {
        return Err(AppError::BadRequest(format!(
            "{field} cannot be given: each connector's secret is stored under a name of its own; \
             remove {field} and send the value as \"secret\""
        )));
    }
    Ok(())
}

/// Custom sign-in, Graph and Google hosts would let whoever creates a
/// connector answer the tenant confirmation: only deployments that ask for
/// them (local runs, the demo) accept them.
fn refuse_custom_hosts(app: &App, spec: &ConnectorSpec) -> Result<(), AppError> {
    if !app.settings.allow_custom_cloud
        && (spec.authority_url.is_some() || spec.graph_url.is_some() || spec.api_url.is_some())
    {
        return Err(AppError::BadRequest(
            "custom authority_url/graph_url/api_url are not enabled in this deployment; use a cloud preset \
             (global, us-gov, us-gov-dod, china)"
                .into(),
        ));
    }
    Ok(())
}

fn set_secret_ref(spec: &mut ConnectorSpec, kind: ConnectorKind, name: &SecretRef) {
    let slot = match kind {
        ConnectorKind::EntraLegacy => &mut spec.client_secret_ref,
        ConnectorKind::ActiveDirectory | ConnectorKind::Domino => &mut spec.password_ref,
        ConnectorKind::Google => &mut spec.service_account_key_ref,
        ConnectorKind::EntraConsent => return,
    };
    *slot = Some(name.as_str().to_owned());
}

fn nonempty(value: String) -> Result<SecretValue, AppError> {
    if value.is_empty() {
        return Err(AppError::BadRequest("the secret is empty".into()));
    }
    Ok(SecretValue::new(value))
}

/// `PATCH`: the settings in [`crate::domain::CHANGEABLE`], with the
/// `version` read; `secret` too when the change moves where it is sent.
pub(super) async fn change(
    State(app): State<App>,
    ids: Ids,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> Reply {
    let scope = ids.scope()?;
    let current = connector(&app, &scope).await?;
    if current.kind() == ConnectorKind::EntraLegacy {
        return Err(AppError::Conflict(
            "legacy Entra connectors accept no configuration change until they are migrated to the consent \
             connector: start the migration (POST …/migrate, or `dirsync migrate ACCOUNT CONNECTOR`), or renew \
             the client secret (PUT …/secret, or `dirsync password set`)"
                .into(),
        ));
    }
    let Change {
        version,
        secret,
        settings,
    } = Change::read(body)?;
    refuse_custom_hosts(&app, &settings)?;
    same_version(&current, version)?;
    let next = changed(&current, &settings)?;
    let Some(value) = secret else {
        if next.secret_endpoint_changed() {
            return Err(AppError::BadRequest(format!(
                "this change moves where {} is sent: give it again as \"secret\" in the same request",
                secret_kind(next.kind()).unwrap_or("the secret")
            )));
        }
        return ok(
            StatusCode::OK,
            json!(app.store.update_connector(&next).await?),
        );
    };
    let lease = hold(&app, &scope, "change it").await?;
    let stored = async {
        // Read again under the lease: the change applies to what it read.
        same_version(&connector(&app, &scope).await?, version)?;
        store_secret(&app, next, value).await
    }
    .await;
    let _ = app.store.release_lease(&lease).await;
    ok(StatusCode::OK, json!(stored?.0))
}

/// A `PATCH` body, taken apart.
struct Change {
    version: u64,
    secret: Option<SecretValue>,
    settings: ConnectorSpec,
}

impl Change {
    fn read(mut body: Map<String, Value>) -> Result<Self, AppError> {
        let version = body
            .remove("version")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| {
                AppError::BadRequest(
                    "give the \"version\" you read (GET the connector first), so that two changes cannot \
                     overwrite each other"
                        .into(),
                )
            })?;
        let secret = match body.remove("secret") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(nonempty(s)?),
            Some(_) => return Err(AppError::BadRequest("\"secret\" must be a string".into())),
        };
        let settings = serde_json::from_value(Value::Object(body)).map_err(|e| not_expected(&e))?;
        Ok(Self {
            version,
            secret,
            settings,
        })
    }
}

/// The connector with `settings` applied, validated as a new one would be.
fn changed(current: &Connector, settings: &ConnectorSpec) -> Result<Connector, AppError> {
    let spec = ConnectorSpec::from(current)
        .changed_by(settings)
        .map_err(bad)?;
    let next = spec
        .validate(current.account.clone(), current.created_at)
        .map_err(bad)?;
    let mut c = current.clone();
    // A consent connector's source is its consent: never reset by a change.
    if c.kind() != ConnectorKind::EntraConsent {
        c.source = next.source;
        c.source.keep_identity_of(&current.source);
    }
    c.description = next.description;
    c.state = next.state;
    c.options = next.options;
    Ok(c)
}

/// Stores `value` as the connector's secret, under its own name, and binds
/// it to where the connector points now. The secret goes first: were the
/// connector saved first and the secret not, the old secret would be bound
/// to the new endpoint.
async fn store_secret(
    app: &App,
    mut c: Connector,
    value: SecretValue,
) -> Result<(Connector, SecretRef), AppError> {
    let name = app.secret_name(&c.account, &c.id)?;
    if secret_kind(c.kind()).is_none() {
        return Err(AppError::BadRequest(format!(
            "a {} connector has no secret to set",
            c.kind()
        )));
    }
    check_secret(&c, &value)?;
    app.secrets.put(&name, value).await?;
    c.source.set_secret_ref(name.clone());
    c.bind_secret();
    // A token made from the old secret no longer speaks for the connector.
    app.sources.secret_replaced(&c);
    let saved = app.store.update_connector(&c).await?;
    Ok((saved, name))
}

/// Takes the connector's lease for an administrator's change, as a sync
/// would: no sync runs while the change is half made, and two such changes
/// cannot interleave (one's secret stored, the other's endpoint saved).
async fn hold(app: &App, scope: &Scope, what: &str) -> Result<Lease, AppError> {
    match app
        .store
        .acquire_lease(scope, "admin-change", chrono::Duration::minutes(10))
        .await
    {
        Ok(l) => Ok(l),
        Err(StoreError::LeaseHeld { .. }) => Err(AppError::Conflict(format!(
            "a sync or another change of this connector is under way; {what} when it has finished"
        ))),
        Err(e) => Err(e.into()),
    }
}

pub(super) async fn delete(State(app): State<App>, ids: Ids) -> Reply {
    let scope = ids.scope()?;
    let c = connector(&app, &scope).await?;
    // Held while deleting, so that no sync re-creates what is removed.
    let lease = hold(&app, &scope, "delete it").await?;
    app.store
        .delete_connector(&scope.account, &scope.connector)
        .await?;
    // Only the secret made for this connector goes with it.
    let own = app.secret_name(&scope.account, &scope.connector)?;
    if c.source.secret_ref() == Some(&own) {
        app.secrets.delete(&own).await?;
    }
    // The lease went with the connector's items; this is a no-op then.
    let _ = app.store.release_lease(&lease).await;
    ok(StatusCode::OK, json!({"deleted": scope.connector}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SecretBody {
    value: String,
    /// The connector's version as read: the secret is given for the
    /// connector as it was then, and refused if it has changed since.
    version: Option<u64>,
    /// Store it even if the connection test fails (the seed's flow: the
    /// old password is already invalid, the directory is down meanwhile).
    #[serde(default)]
    force: bool,
}

/// The password-refresh flow: the new value is tested first and replaces
/// the working one only if the test passes (or with `force`); the answer
/// carries the test.
pub(super) async fn set_secret(
    State(app): State<App>,
    ids: Ids,
    JsonBody(SecretBody {
        value,
        version,
        force,
    }): JsonBody<SecretBody>,
) -> Reply {
    let scope = ids.scope()?;
    let version = version.ok_or_else(|| {
        AppError::BadRequest(
            "give the connector's \"version\" you read (GET it first, and check where it points): the secret \
             is stored for the connector as it was then"
                .into(),
        )
    })?;
    let value = nonempty(value)?;
    let lease = hold(&app, &scope, "give the secret").await?;
    let stored = async {
        let c = connector(&app, &scope).await?;
        same_version(&c, version)?;
        check_secret(&c, &value)?;
        if let Some(report) = candidate_test(&app, &c, &value).await?
            && !report.ok
            && !force
        {
            return Err(AppError::Unprocessable {
                message: format!(
                    "the new secret was not stored: the connection test with it failed ({}), so the current \
                     secret stays. Check the value, or give \"force\": true to store it anyway (when the current \
                     one no longer works either)",
                    failed_step(&report)
                ),
                body: json!({"stored": false, "test": report}),
            });
        }
        store_secret(&app, c, value).await
    }
    .await;
    let _ = app.store.release_lease(&lease).await;
    let (c, _) = stored?;
    let report = app.sources.source_for(&c)?.test_connection().await;
    ok(StatusCode::OK, json!({"stored": true, "test": report}))
}

/// The connection test with `value` in place of the stored secret, where
/// the kind has one (`None` otherwise: it is tested once stored).
async fn candidate_test(
    app: &App,
    current: &Connector,
    value: &SecretValue,
) -> Result<Option<ConnectionReport>, AppError> {
    let mut candidate = current.clone();
    candidate
        .source
        .set_secret_ref(app.secret_name(&current.account, &current.id)?);
    candidate.bind_secret();
    match app.sources.with_secret(&candidate, value.clone()) {
        None => Ok(None),
        Some(source) => Ok(Some(source?.test_connection().await)),
    }
}

/// What went wrong, in the report's words.
fn failed_step(report: &ConnectionReport) -> String {
    report.steps.iter().find(|s| !s.ok).map_or_else(
        || "no step passed".into(),
        |s| format!("{}: {}", s.name, s.detail),
    )
}

/// Checks a secret's form where the kind has one (a Google key file),
/// before anything is stored; the error never repeats the value.
fn check_secret(c: &Connector, value: &SecretValue) -> Result<(), AppError> {
    if let crate::domain::SourceConfig::Google { api_url, .. } = &c.source {
        crate::source::google::check_key(value.expose(), api_url.as_deref())
            .map_err(AppError::BadRequest)?;
    }
    Ok(())
}

fn same_version(c: &Connector, version: u64) -> Result<(), AppError> {
    if c.version == version {
        return Ok(());
    }
    Err(StoreError::VersionConflict {
        id: c.id.to_string(),
        expected: version,
        current: c.version,
    }
    .into())
}

pub(super) async fn test(State(app): State<App>, ids: Ids) -> Reply {
    let c = connector(&app, &ids.scope()?).await?;
    let report = match app.sources.source_for(&c) {
        Ok(source) => source.test_connection().await,
        Err(e) => {
            let mut r = ConnectionReport::new();
            r.failed("configuration", e.to_string());
            r
        }
    };
    ok(StatusCode::OK, json!(report))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct SyncBody {
    #[serde(default)]
    full: bool,
}

pub(super) async fn sync_now(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    ids: Ids,
    JsonBody(SyncBody { full }): JsonBody<SyncBody>,
) -> Reply {
    let scope = ids.scope()?;
    let c = connector(&app, &scope).await?;
    if !c.source.is_ready() {
        return Err(AppError::Conflict(
            "the connector is waiting for admin consent; it cannot sync yet".into(),
        ));
    }
    if let Some(lease) = app.store.current_lease(&scope).await? {
        return Err(AppError::Conflict(format!(
            "a sync of this connector is already running (until {}); wait for it to finish",
            lease.expires_at
        )));
    }
    let job = Job {
        account: scope.account.clone(),
        connector: scope.connector.clone(),
        trigger: Trigger::Manual {
            requested_by: Some(caller.to_string()),
        },
        full,
        continues: None,
        due: None,
    };
    app.queue.send(&job, std::time::Duration::ZERO).await?;
    ok(StatusCode::ACCEPTED, json!({"queued": true, "full": full}))
}

pub(super) async fn start_consent(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    ids: Ids,
) -> Reply {
    start(&app, &caller, &ids, false).await
}

pub(super) async fn start_migration(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    ids: Ids,
) -> Reply {
    start(&app, &caller, &ids, true).await
}

async fn start(app: &App, caller: &Caller, ids: &Ids, migrate: bool) -> Reply {
    let scope = ids.scope()?;
    let url = super::super::consent::start(app, &scope, migrate, Some(caller.to_string())).await?;
    ok(StatusCode::OK, url)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TenantBody {
    tenant: String,
}

pub(super) async fn change_tenant(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    ids: Ids,
    JsonBody(TenantBody { tenant }): JsonBody<TenantBody>,
) -> Reply {
    let scope = ids.scope()?;
    let changed =
        super::super::consent::change_tenant(&app, &scope, &tenant, Some(caller.to_string()))
            .await?;
    ok(StatusCode::OK, changed)
}
