//! Starting a consent (or a migration): the state and the URL.

use super::*;

/// Starts admin consent (or a legacy connector's migration) in the
/// connector's tenant: remembers a single-use state and returns the URL to
/// send the administrator to.
pub async fn start(
    app: &App,
    scope: &Scope,
    migrate: bool,
    caller: Option<String>,
) -> Result<Value, AppError> {
    let c = super::super::api::connector(app, scope).await?;
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
            ("scope", cloud.graph_scope()),
            ("redirect_uri", redirect),
            ("state", state),
        ],
    )
    .map_err(|e| AppError::Config(format!("cannot build the consent URL: {e}")))?;
    Ok(json!({"consent_url": url.as_str(), "expires_at": expires}))
}

/// The cloud and tenant a consent (or migration) of `c` is given in.
pub(super) fn consent_tenant(c: &Connector, migrate: bool) -> Result<(&Cloud, String), AppError> {
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
                " (migrate it to consent: POST …/migrate, or `dirsync migrate ACCOUNT CONNECTOR`)"
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
