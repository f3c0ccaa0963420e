//! The explicit change of a consent connector's tenant.

use super::*;

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
    let mut c = super::super::api::connector(app, scope).await?;
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

pub(super) enum Retarget {
    /// The connector names that tenant already (or is granted in it).
    Unchanged,
    /// Retargeted; it was granted in this tenant, if in any.
    From(Option<Uuid>),
}

/// Points a consent connector at tenant `named`, waiting for consent there.
pub(super) fn retarget(c: &mut Connector, named: &str) -> Result<Retarget, AppError> {
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
pub(super) fn granted_tenant_of(c: &Connector) -> Option<Uuid> {
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
pub(super) async fn rebind(
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
