//! Building the [`App`] from the environment, once, in each function's
//! `main`. Local runs point the standard AWS variables at emulators
//! (`AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_SQS`,
//! `AWS_ENDPOINT_URL_SECRETS_MANAGER`); the code has no branch for them.

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use crate::auth::{AssertionAlg, TokenProvider};
use crate::clock::{Clock, SystemClock};
use crate::queue::SqsQueue;
use crate::secrets::SecretsManagerStore;
use crate::source::budget::BudgetLimits;
use crate::source::graph::EntraApp;
use crate::source::retry::RetryPolicy;
use crate::store::{DynamoTable, StateStore};

use super::window::WindowSpans;
use super::{App, AppError, AppSettings};

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn required(name: &str, what: &str) -> Result<String, AppError> {
    var(name).ok_or_else(|| AppError::Config(format!("set {name} ({what})")))
}

/// The platform app, when its settings are present.
pub fn entra_app_from_env() -> Result<Option<EntraApp>, AppError> {
    let Some(client_id) = var("DIRSYNC_APP_CLIENT_ID") else {
        return Ok(None);
    };
    let client_id = Uuid::parse_str(&client_id).map_err(|_| {
        AppError::Config("DIRSYNC_APP_CLIENT_ID must be the app's client ID (a GUID)".into())
    })?;
    let certificate = required(
        "DIRSYNC_APP_CERT_SECRET",
        "the secret holding the app certificate",
    )?
    .parse()
    .map_err(|e| AppError::Config(format!("DIRSYNC_APP_CERT_SECRET: {e}")))?;
    let assertion = match var("DIRSYNC_ASSERTION_ALG").as_deref() {
        None | Some("ps256") => AssertionAlg::Ps256,
        Some("rs256") => AssertionAlg::Rs256,
        Some(other) => {
            return Err(AppError::Config(format!(
                "DIRSYNC_ASSERTION_ALG {other:?}: use ps256 or rs256"
            )));
        }
    };
    Ok(Some(EntraApp {
        client_id,
        certificate,
        assertion,
    }))
}

pub fn settings_from_env() -> Result<AppSettings, AppError> {
    let mut s = AppSettings::default();
    let spans = &mut s.window_spans;
    for (name, span) in [
        ("DIRSYNC_WINDOW_SPAN_ENTRA_SECONDS", &mut spans.entra),
        ("DIRSYNC_WINDOW_SPAN_LDAP_SECONDS", &mut spans.ldap),
        ("DIRSYNC_WINDOW_SPAN_GOOGLE_SECONDS", &mut spans.google),
    ] {
        if let Some(v) = var(name) {
            *span = window_span(name, &v)?;
        }
    }
    if let Some(p) = var("DIRSYNC_SECRET_PREFIX") {
        s.secret_prefix = p;
    }
    if let Some(v) = var("DIRSYNC_GRAPH_APP_BUDGET") {
        s.graph_budget = graph_budget(&v)?;
    }
    s.consent_redirect_uri = var("DIRSYNC_CONSENT_REDIRECT_URI");
    s.allow_custom_cloud = var("DIRSYNC_ALLOW_CUSTOM_CLOUD").as_deref() == Some("true");
    s.platform_admins = var("DIRSYNC_PLATFORM_ADMINS")
        .unwrap_or_default()
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(super::access::check_principal)
        .collect::<Result<_, _>>()
        .map_err(|e| AppError::Config(format!("DIRSYNC_PLATFORM_ADMINS: {e}")))?;
    Ok(s)
}

/// The app's Graph budget: resource units per 20 s across all tenants
/// (Graph's is 150,000); 0 turns the shared pacing off.
fn graph_budget(value: &str) -> Result<Option<BudgetLimits>, AppError> {
    match value.trim().parse::<u64>() {
        Ok(0) => Ok(None),
        Ok(units) if units <= 10_000_000 => Ok(Some(BudgetLimits::of(units))),
        _ => Err(AppError::Config(format!(
            "DIRSYNC_GRAPH_APP_BUDGET must be the platform app's Graph resource units per 20 s \
             across all tenants (150000 unless Microsoft granted more), or 0 to stop pacing by \
             it; it is {value:?}"
        ))),
    }
}

/// A window's span: whole seconds, at most [`WindowSpans::MAX`].
fn window_span(name: &str, value: &str) -> Result<Duration, AppError> {
    let max = WindowSpans::MAX.as_secs();
    match value.trim().parse::<u64>() {
        Ok(secs) if secs <= max => Ok(Duration::from_secs(secs)),
        _ => Err(AppError::Config(format!(
            "{name} must be a number of seconds from 0 to {max} (a window's jobs must start \
             an hour before the next window at the latest); it is {value:?}"
        ))),
    }
}

/// The production wiring: DynamoDB, SQS, Secrets Manager, real time.
pub async fn app_from_env() -> Result<App, AppError> {
    let aws = aws_config::load_from_env().await;
    let table = required("DIRSYNC_TABLE", "the DynamoDB table name")?;
    let queue_url = required("DIRSYNC_QUEUE_URL", "the sync job queue URL")?;
    let store = StateStore::new(
        Arc::new(DynamoTable::new(aws_sdk_dynamodb::Client::new(&aws), table)),
        Arc::new(SystemClock),
    );
    let secrets = Arc::new(SecretsManagerStore::new(
        aws_sdk_secretsmanager::Client::new(&aws),
    ));
    let queue = Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(&aws), queue_url));
    Ok(App::builder(store, queue, secrets)
        .entra_app(entra_app_from_env()?)
        .settings(settings_from_env()?)
        .build())
}

/// The rotation function's wiring: Secrets Manager and the app's identity.
pub async fn rotator_from_env() -> Result<super::rotation::Rotator, AppError> {
    let aws = aws_config::load_from_env().await;
    rotator_with(Arc::new(SecretsManagerStore::new(
        aws_sdk_secretsmanager::Client::new(&aws),
    )))
}

/// A rotator for the app named by the environment, over any secret store
/// (the CLI's local secrets, for instance).
pub fn rotator_with(
    secrets: Arc<dyn crate::secrets::SecretStore>,
) -> Result<super::rotation::Rotator, AppError> {
    let app = entra_app_from_env()?
        .ok_or_else(|| AppError::Config("set DIRSYNC_APP_CLIENT_ID (the app to rotate)".into()))?;
    let object_id = Uuid::parse_str(&required(
        "DIRSYNC_APP_OBJECT_ID",
        "the app registration's object ID",
    )?)
    .map_err(|_| AppError::Config("DIRSYNC_APP_OBJECT_ID must be a GUID".into()))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    Ok(super::rotation::Rotator {
        app: super::rotation::AppIdentity {
            client_id: app.client_id,
            object_id,
            home_tenant: required("DIRSYNC_APP_TENANT", "the app's home tenant id or domain")?,
            certificate: app.certificate,
            authority_url: var("DIRSYNC_AUTHORITY_URL")
                .unwrap_or_else(|| "https://login.microsoftonline.com".into()),
            graph_url: var("DIRSYNC_GRAPH_URL")
                .unwrap_or_else(|| "https://graph.microsoft.com".into()),
            assertion: app.assertion,
        },
        tokens: Arc::new(TokenProvider::new(secrets.clone(), clock.clone())),
        secrets,
        clock,
        validity: chrono::Duration::days(4),
        key_bits: crate::auth::KeyBits::Rsa2048,
        policy: RetryPolicy::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_span_is_seconds_up_to_four_hours() {
        let span = |v| window_span("DIRSYNC_WINDOW_SPAN_ENTRA_SECONDS", v);
        assert_eq!(span("10800").unwrap(), Duration::from_secs(10_800));
        assert_eq!(span("0").unwrap(), Duration::ZERO);
        for bad in ["14401", "3h", "-1"] {
            let err = span(bad).unwrap_err().to_string();
            assert!(
                err.contains(
                    "DIRSYNC_WINDOW_SPAN_ENTRA_SECONDS must be a number of seconds from 0 to 14400"
                ),
                "{err}"
            );
        }
    }

    #[test]
    fn the_graph_budget_is_units_per_20_seconds_or_off() {
        assert_eq!(
            graph_budget("150000").unwrap(),
            Some(BudgetLimits::default())
        );
        assert_eq!(graph_budget("0").unwrap(), None);
        for bad in ["lots", "-5", "99999999999"] {
            let err = graph_budget(bad).unwrap_err().to_string();
            assert!(err.contains("DIRSYNC_GRAPH_APP_BUDGET must be"), "{err}");
        }
    }
}
