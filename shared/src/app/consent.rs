//! The admin-consent callback: where Entra sends the administrator back
//! after granting (or refusing) consent to the platform's app.
//!
//! Nothing in the request is trusted: the `state` must be one we issued,
//! unused and unexpired; `tenant` must be a GUID; and the grant is
//! confirmed by signing in to that tenant and reading its id back. Every
//! value shown on the page is HTML-escaped, the page redirects nowhere, and
//! its headers forbid caching, framing and scripts.

use std::collections::HashMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::domain::{
    AccountId, Connector, ConnectorId, ConnectorKind, ConnectorState, Consent, SourceConfig,
};
use crate::source::RequestStats;
use crate::source::graph::{GraphDeps, GraphSource};
use crate::store::Scope;

use super::{App, AppError};

/// Headers of every callback page.
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackPage {
    pub status: u16,
    pub html: String,
    /// What happened, for logs and tests.
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Granted,
    Migrated,
    Declined,
    Refused,
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
    CallbackPage {
        status,
        outcome,
        html: format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
             <style>body{{font-family:sans-serif;max-width:40em;margin:3em auto}}</style></head>\
             <body><h1>{t}</h1>{body}</body></html>",
            t = escape(title)
        ),
    }
}

fn refused(why: &str) -> CallbackPage {
    page(
        400,
        Outcome::Refused,
        "Consent could not be recorded",
        &[
            why.to_owned(),
            "Start the consent again from the admin console.".to_owned(),
        ],
    )
}

pub async fn callback(app: &App, graph: &GraphDeps, raw_query: &str) -> CallbackPage {
    if raw_query.len() > MAX_QUERY {
        return refused("The response is longer than any Entra sends.");
    }
    let mut params: HashMap<String, String> = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(raw_query.as_bytes()) {
        if params.insert(k.to_string(), v.to_string()).is_some() {
            return refused(&format!("The parameter \"{k}\" appears more than once."));
        }
    }
    let Some(state) = params
        .get("state")
        .filter(|s| !s.is_empty() && s.len() <= 128)
    else {
        return refused("The response carries no state.");
    };
    // Single use: taken before anything else is looked at.
    let state: ConsentState = match app.store.take_ephemeral("consent", state).await {
        Ok(Some(v)) => match serde_json::from_value(v) {
            Ok(s) => s,
            Err(_) => return refused("The consent state is unreadable."),
        },
        Ok(None) => return refused("This consent link has expired or was already used."),
        Err(e) => {
            tracing::error!(error = %e, "consent state lookup failed");
            return page(
                503,
                Outcome::Failed,
                "Consent could not be recorded",
                &["The service is unavailable; try again in a minute.".into()],
            );
        }
    };

    if let Some(error) = params.get("error") {
        let description = params
            .get("error_description")
            .map(|d| {
                d.lines()
                    .next()
                    .unwrap_or_default()
                    .chars()
                    .take(300)
                    .collect::<String>()
            })
            .unwrap_or_default();
        let what = if error == "access_denied" {
            "Consent was not granted: the administrator cancelled or declined."
        } else {
            "Entra reported an error instead of a grant."
        };
        tracing::info!(account = %state.account, connector = %state.connector, error = %error, "consent declined");
        return page(
            200,
            Outcome::Declined,
            "Consent not granted",
            &[
                what.to_owned(),
                format!("Entra said: {error}: {description}"),
                "The connector stays waiting for consent. A Global Administrator (or Privileged Role Administrator) of the tenant can start the consent again from the admin console.".to_owned(),
            ],
        );
    }
    if !params
        .get("admin_consent")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        return refused("The response does not say that admin consent was granted.");
    }
    let Some(tenant) = params.get("tenant").and_then(|t| Uuid::parse_str(t).ok()) else {
        return refused("The response does not name the tenant by its id.");
    };
    let connector = match app
        .store
        .get_connector(&state.account, &state.connector)
        .await
    {
        Ok(Some(c)) => c,
        Ok(None) => return refused("The connector this consent was for no longer exists."),
        Err(e) => {
            tracing::error!(error = %e, "connector lookup failed");
            return page(
                503,
                Outcome::Failed,
                "Consent could not be recorded",
                &["The service is unavailable; try again in a minute.".into()],
            );
        }
    };
    match confirm_and_record(
        app,
        graph,
        &state,
        connector,
        tenant,
        params.get("scope").cloned(),
    )
    .await
    {
        Ok(p) => p,
        Err(p) => p,
    }
}

async fn confirm_and_record(
    app: &App,
    graph: &GraphDeps,
    state: &ConsentState,
    mut connector: Connector,
    tenant: Uuid,
    scope: Option<String>,
) -> Result<CallbackPage, CallbackPage> {
    let cloud = match &connector.source {
        SourceConfig::EntraConsent { cloud, .. } if !state.migrate => cloud.clone(),
        SourceConfig::EntraLegacy { cloud, .. } if state.migrate => cloud.clone(),
        _ => return Err(refused("This connector does not take admin consent.")),
    };
    // Confirm: sign in to the tenant the response names, as the platform
    // app, and read the tenant's id back. A forged tenant parameter fails here.
    let mut probe = connector.clone();
    probe.source = SourceConfig::EntraConsent {
        cloud: cloud.clone(),
        tenant: None,
        consent: Consent::granted(tenant, app.store.now()),
    };
    let source = GraphSource::for_connector(&probe, graph).map_err(|e| failed(&e.to_string()))?;
    let (confirmed, name) = source
        .organization(&mut RequestStats::default())
        .await
        .map_err(|e| failed(&format!("The grant could not be confirmed with Entra: {e}")))?;
    if confirmed != tenant {
        return Err(refused(
            "The tenant that signed in is not the tenant named in the response.",
        ));
    }
    // The response's tenant parameter is the administrator's to choose: it
    // must be the tenant the connector was set up for, when that is known…
    let hint = match &connector.source {
        SourceConfig::EntraConsent { tenant, .. } => tenant.clone(),
        _ => None,
    };
    if let Some(hint) = hint {
        let expected = match Uuid::parse_str(&hint) {
            Ok(id) => id,
            Err(_) => {
                GraphSource::for_tenant(&cloud, &hint, graph)
                    .map_err(|e| failed(&e.to_string()))?
                    .organization(&mut RequestStats::default())
                    .await
                    .map_err(|e| {
                        failed(&format!(
                            "The connector's tenant {hint} could not be read: {e}"
                        ))
                    })?
                    .0
            }
        };
        if expected != tenant {
            return Err(refused(&format!(
                "Consent came from another tenant than the connector's ({hint})."
            )));
        }
    }
    let granted = Consent::Granted {
        tenant_id: tenant,
        granted_at: app.store.now(),
        scope,
        started_by: state.started_by.clone(),
        migrated_from: None,
    };
    let (outcome, extra) = match connector.source.clone() {
        SourceConfig::EntraConsent { cloud, tenant, .. } => {
            connector.source = SourceConfig::EntraConsent {
                cloud,
                tenant,
                consent: granted,
            };
            (Outcome::Granted, None)
        }
        SourceConfig::EntraLegacy {
            cloud,
            client_id,
            client_secret,
            ..
        } => {
            // The same connector, now signing in with consent: its stored
            // directory and cursors stay, so nothing is re-created or removed.
            let Consent::Granted {
                tenant_id,
                granted_at,
                scope,
                started_by,
                ..
            } = granted
            else {
                unreachable!("built above")
            };
            connector.source = SourceConfig::EntraConsent {
                cloud,
                tenant: Some(tenant.to_string()),
                consent: Consent::Granted {
                    tenant_id,
                    granted_at,
                    scope,
                    started_by,
                    migrated_from: Some(client_id),
                },
            };
            (Outcome::Migrated, Some((client_id, client_secret)))
        }
        _ => return Err(refused("This connector does not take admin consent.")),
    };
    // …and a tenant belongs to one account only.
    match app.store.claim_tenant(&tenant, &connector.account).await {
        Ok(None) => {}
        Ok(Some(_)) => {
            return Err(refused(
                "This tenant is already connected to another account of the platform; contact support.",
            ));
        }
        Err(e) => return Err(failed(&e.to_string())),
    }
    if let SourceConfig::EntraLegacy { tenant_domain, .. } = &connector.source {
        // The migration must be consented in the legacy connector's own tenant.
        let legacy_tenant = GraphSource::for_tenant(&cloud, tenant_domain.as_str(), graph)
            .map_err(|e| failed(&e.to_string()))?
            .organization(&mut RequestStats::default())
            .await
            .map_err(|e| {
                failed(&format!(
                    "The legacy connector's tenant could not be read: {e}"
                ))
            })?
            .0;
        if legacy_tenant != tenant {
            return Err(refused(&format!(
                "Consent came from another tenant than the legacy connector's ({tenant_domain})."
            )));
        }
    }
    connector.state = ConnectorState::Enabled;
    app.store.update_connector(&connector).await.map_err(|e| {
        failed(&format!(
            "The grant could not be saved ({e}); start the consent again."
        ))
    })?;
    let mut lines = vec![format!(
        "Consent is recorded for tenant {} ({tenant}). Connector {} is active: it syncs in the next window, or now with Sync now.",
        if name.is_empty() {
            "(name not shown)"
        } else {
            &name
        },
        connector.id
    )];
    if let Some((client_id, secret)) = extra {
        // Only the secret dirsync stored for this connector; one named by
        // hand may serve something else.
        let created = format!(
            "{}/{}/{}",
            app.settings.secret_prefix, connector.account, connector.id
        );
        if secret.as_str() == created
            && let Err(e) = app.secrets.delete(&secret).await
        {
            tracing::warn!(error = %e, "the legacy client secret could not be deleted");
        }
        lines.push(format!(
            "The connector was migrated from the legacy app registration {client_id}. That app registration is no longer used \
             by dirsync and may be deleted from your tenant; keep any app registrations used for single sign-on."
        ));
    }
    tracing::info!(account = %connector.account, connector = %connector.id, %tenant, ?outcome, "consent recorded");
    Ok(page(200, outcome, "Consent recorded", &lines))
}

fn failed(why: &str) -> CallbackPage {
    page(
        502,
        Outcome::Failed,
        "Consent could not be confirmed",
        &[
            why.to_owned(),
            "Nothing was changed. Start the consent again in a minute.".to_owned(),
        ],
    )
}

/// Consent states live this long: enough to sign in and click Accept.
pub const CONSENT_STATE_MINUTES: i64 = 15;

/// Starts admin consent (or a legacy connector's migration): remembers a
/// single-use state and returns the URL to send the administrator to.
pub async fn start(
    app: &App,
    scope: &Scope,
    migrate: bool,
    caller: Option<String>,
) -> Result<Value, AppError> {
    let c = super::api::connector(app, scope).await?;
    let (cloud, tenant) = match (&c.source, migrate) {
        (SourceConfig::EntraConsent { cloud, tenant, .. }, false) => (cloud, tenant.clone()),
        (
            SourceConfig::EntraLegacy {
                cloud,
                tenant_domain,
                ..
            },
            true,
        ) => (cloud, Some(tenant_domain.to_string())),
        (_, false) => {
            return Err(AppError::BadRequest(format!(
                "admin consent is for consent connectors; this is a {} connector{}",
                c.kind(),
                if c.kind() == ConnectorKind::EntraLegacy {
                    " (use POST …/migrate to move it to consent)"
                } else {
                    ""
                }
            )));
        }
        (_, true) => {
            return Err(AppError::BadRequest(format!(
                "only legacy Entra connectors are migrated; this is a {} connector",
                c.kind()
            )));
        }
    };
    let client_id = app.graph.app.as_ref().map(|a| a.client_id).ok_or_else(|| {
        AppError::Config("the platform app is not configured (DIRSYNC_APP_CLIENT_ID)".into())
    })?;
    let redirect = app
        .settings
        .consent_redirect_uri
        .clone()
        .ok_or_else(|| AppError::Config("DIRSYNC_CONSENT_REDIRECT_URI is not set".into()))?;
    let state = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let expires = app.store.now() + chrono::Duration::minutes(CONSENT_STATE_MINUTES);
    let remembered = ConsentState {
        account: scope.account.clone(),
        connector: scope.connector.clone(),
        started_by: caller,
        migrate,
    };
    app.store
        .put_ephemeral("consent", &state, &json!(remembered), expires, true)
        .await?;
    // The consent page of the connector's tenant, never `organizations`:
    // the administrator signs in where the connector reads.
    let tenant = tenant.as_deref().ok_or_else(|| {
        AppError::Conflict(format!(
            "connector {} names no tenant; name its domain or tenant ID first",
            c.id
        ))
    })?;
    let url = url::Url::parse_with_params(
        &format!("{}/{}/v2.0/adminconsent", cloud.authority_url(), tenant),
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
