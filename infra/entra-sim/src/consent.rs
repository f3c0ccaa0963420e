//! `GET {authority}/{tenant|organizations}/v2.0/adminconsent`: the admin
//! consent endpoint. What the "administrator" does is set beforehand with
//! `EntraSim::set_next_consent_decision`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use uuid::Uuid;

use crate::model::ConsentDecision;
use crate::sim::CONSENT_ROLES;
use crate::state::{Inner, lock, read, write};

pub(crate) async fn admin_consent(
    State(inner): State<Arc<Inner>>,
    Path(tenant): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    inner.record("GET adminconsent");
    let params: HashMap<String, String> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    match consent(&inner, &tenant, &params) {
        Ok(location) => (StatusCode::FOUND, [(header::LOCATION, location)]).into_response(),
        Err(Refusal::Error { code, message }) => error_page(code, &message),
        Err(Refusal::Pending) => (
            StatusCode::OK,
            Html("<!DOCTYPE html><html><body><h1>Permissions requested</h1><p>Waiting for an administrator.</p></body></html>"),
        )
            .into_response(),
    }
}

/// Why the consent endpoint does not redirect.
pub(crate) enum Refusal {
    /// An error Entra shows on its own page.
    Error { code: u32, message: String },
    /// Nobody has acted yet: the admin is still looking at the page.
    Pending,
}

pub(crate) fn refuse(code: u32, message: impl Into<String>) -> Refusal {
    Refusal::Error {
        code,
        message: message.into(),
    }
}

/// Entra shows errors it cannot redirect (bad client or redirect URI) as a
/// sign-in page, never sending the browser to an unverified address.
pub(crate) fn error_page(code: u32, message: &str) -> Response {
    let body = format!(
        "<!DOCTYPE html><html><head><title>Sign in to your account</title></head><body>\
         <h1>Sorry, but we're having trouble signing you in.</h1>\
         <p id=\"error\">AADSTS{code}: {}</p></body></html>",
        escape(message)
    );
    (StatusCode::BAD_REQUEST, Html(body)).into_response()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `base` with `pairs` appended to its query string.
pub(crate) fn with_query(base: &str, pairs: &[(&str, &str)]) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        query.append_pair(name, value);
    }
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}{}", query.finish())
}

/// The registered app a browser request names, and the redirect URI it
/// asked for, which must be one registered on the app: Entra never sends
/// the browser (and a code) to an address the app did not register.
pub(crate) fn registered_client(
    inner: &Inner,
    params: &HashMap<String, String>,
) -> Result<(Uuid, String), Refusal> {
    let raw_client = params.get("client_id").ok_or_else(|| {
        refuse(
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        )
    })?;
    let client_id = Uuid::parse_str(raw_client).map_err(|_| {
        refuse(
            700038,
            format!("{raw_client} is not a valid application identifier."),
        )
    })?;
    let redirect_uri = params.get("redirect_uri").ok_or_else(|| {
        refuse(
            900144,
            "The request body must contain the following parameter: 'redirect_uri'.",
        )
    })?;
    let apps = read(&inner.apps);
    let app = apps.get(client_id).ok_or_else(|| {
        refuse(
            700016,
            format!("Application with identifier '{client_id}' was not found in the directory."),
        )
    })?;
    if !app.redirect_uris().iter().any(|u| u == redirect_uri) {
        return Err(refuse(
            50011,
            format!(
                "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured for the application '{client_id}'. Make sure the redirect URI sent in the request matches one added to your application in the Azure portal."
            ),
        ));
    }
    Ok((client_id, redirect_uri.clone()))
}

fn consent(
    inner: &Inner,
    segment: &str,
    params: &HashMap<String, String>,
) -> Result<String, Refusal> {
    let (client_id, redirect_uri) = registered_client(inner, params)?;
    let redirect_uri = &redirect_uri;
    let scope = params.get("scope").ok_or_else(|| {
        refuse(
            900144,
            "The request body must contain the following parameter: 'scope'.",
        )
    })?;
    let named_tenant = if ["organizations", "common"]
        .iter()
        .any(|s| segment.eq_ignore_ascii_case(s))
    {
        None
    } else {
        let shared = inner
            .resolve_tenant(segment)
            .ok_or_else(|| refuse(90002, format!("Tenant '{segment}' not found.")))?;
        Some(read(&shared).id)
    };
    let state = params.get("state").map(String::as_str);

    let Some(decision) = lock(&inner.consent).take() else {
        return Err(Refusal::Pending);
    };
    match decision {
        ConsentDecision::Approve { tenant } => {
            let tenant = named_tenant.unwrap_or(tenant);
            if inner.tenant(tenant).is_none() {
                return Err(refuse(90002, format!("Tenant '{tenant}' not found.")));
            }
            let mut apps = write(&inner.apps);
            if let Some(app) = apps.get_mut(client_id) {
                inner.grant_consent(app, tenant, &CONSENT_ROLES);
            }
            let tenant = tenant.to_string();
            let mut pairs = vec![
                ("admin_consent", "True"),
                ("tenant", tenant.as_str()),
                ("scope", scope.as_str()),
            ];
            if let Some(state) = state {
                pairs.push(("state", state));
            }
            Ok(with_query(redirect_uri, &pairs))
        }
        ConsentDecision::Cancel => {
            let mut pairs = vec![
                ("error", "access_denied"),
                (
                    "error_description",
                    "AADSTS65004: User declined to consent to access the app.",
                ),
                ("admin_consent", "True"),
            ];
            if let Some(state) = state {
                pairs.push(("state", state));
            }
            Ok(with_query(redirect_uri, &pairs))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_appended_and_encoded() {
        assert_eq!(
            with_query("https://app.test/cb", &[("a", "x y"), ("b", "1:2")]),
            "https://app.test/cb?a=x+y&b=1%3A2"
        );
        assert_eq!(
            with_query("https://app.test/cb?k=v", &[("a", "1")]),
            "https://app.test/cb?k=v&a=1"
        );
    }
}
