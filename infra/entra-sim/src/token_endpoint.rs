//! `POST {authority}/{tenant}/oauth2/v2.0/token`: the client credentials
//! grant, with a certificate (client assertion) or a client secret.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::access_token::{AccessClaims, GRAPH_AUDIENCE, issue};
use crate::assertion::{AssertionCheck, verify_client_assertion};
use crate::error::AadError;
use crate::state::{Inner, lock, read};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const GRAPH_SCOPES: [&str; 2] = [
    "https://graph.microsoft.com/.default",
    "00000003-0000-0000-c000-000000000000/.default",
];

pub(crate) async fn token(
    State(inner): State<Arc<Inner>>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Response {
    inner.record("POST token");
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let (status, body) = match grant(&inner, &tenant, &form) {
        Ok(body) => (StatusCode::OK, body),
        Err(e) => (e.status, e.body(&inner.authority())),
    };
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    response
}

fn missing(parameter: &str) -> AadError {
    AadError::new(
        "invalid_request",
        900144,
        format!("The request body must contain the following parameter: '{parameter}'."),
    )
}

fn app_not_found(client_id: &str, tenant_name: &str) -> AadError {
    AadError::new(
        "unauthorized_client",
        700016,
        format!(
            "Application with identifier '{client_id}' was not found in the directory '{tenant_name}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
        ),
    )
}

fn grant(inner: &Inner, segment: &str, form: &HashMap<String, String>) -> Result<Value, AadError> {
    if ["common", "organizations", "consumers"]
        .iter()
        .any(|s| segment.eq_ignore_ascii_case(s))
    {
        return Err(AadError::new(
            "invalid_request",
            50059,
            "No tenant-identifying information found in either the request or implied by any provided credentials.",
        ));
    }
    let shared = inner.resolve_tenant(segment).ok_or_else(|| {
        AadError::new(
            "invalid_request",
            90002,
            format!(
                "Tenant '{segment}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
            ),
        )
    })?;
    let (tenant_id, tenant_name) = {
        let tenant = read(&shared);
        (tenant.id, tenant.display_name.clone())
    };

    let grant_type = form
        .get("grant_type")
        .ok_or_else(|| missing("grant_type"))?;
    if grant_type != "client_credentials" {
        return Err(AadError::new(
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{grant_type}'."),
        ));
    }
    let raw_client = form.get("client_id").ok_or_else(|| missing("client_id"))?;
    let scope = form.get("scope").ok_or_else(|| missing("scope"))?;
    if !GRAPH_SCOPES
        .iter()
        .any(|s| s.eq_ignore_ascii_case(scope.trim()))
    {
        return Err(AadError::new(
            "invalid_scope",
            70011,
            format!(
                "The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."
            ),
        ));
    }
    let client_id = Uuid::parse_str(raw_client).map_err(|_| {
        AadError::new(
            "unauthorized_client",
            700038,
            format!("{raw_client} is not a valid application identifier."),
        )
    })?;

    let apps = read(&inner.apps);
    let app = apps
        .get(client_id)
        .ok_or_else(|| app_not_found(raw_client, &tenant_name))?;
    if app.disabled {
        return Err(AadError::new(
            "unauthorized_client",
            7000112,
            format!(
                "Application '{client_id}'({}) is disabled.",
                app.display_name()
            ),
        ));
    }
    let now = inner.now();
    // A service principal still replicating is not found yet.
    if !app.is_in_tenant(tenant_id, now) {
        return Err(app_not_found(raw_client, &tenant_name));
    }
    let roles = app.grants.get(&tenant_id).cloned().unwrap_or_default();

    let appidacr = if let Some(assertion) = form.get("client_assertion") {
        if form.get("client_assertion_type").map(String::as_str) != Some(JWT_BEARER) {
            return Err(AadError::new(
                "invalid_request",
                90014,
                "The required field 'client_assertion_type' is missing or invalid; it must be 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'.",
            ));
        }
        let authority = inner.authority();
        let audiences = [
            format!("{authority}/{segment}/oauth2/v2.0/token"),
            format!("{authority}/{tenant_id}/oauth2/v2.0/token"),
        ];
        let check = AssertionCheck {
            client_id,
            audiences: &audiences,
            now,
        };
        verify_client_assertion(assertion, &app.keys, &check, &mut lock(&inner.jtis))?;
        "2"
    } else if let Some(secret) = form.get("client_secret") {
        match app.secrets.iter().find(|s| &s.value == secret) {
            Some(s) if s.expires <= now => {
                return Err(AadError::new(
                    "invalid_client",
                    7000222,
                    format!(
                        "The provided client secret keys for app '{client_id}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds."
                    ),
                ));
            }
            Some(_) => "1",
            None => {
                return Err(AadError::new(
                    "invalid_client",
                    7000215,
                    format!(
                        "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
                    ),
                ));
            }
        }
    } else {
        return Err(AadError::new(
            "invalid_request",
            7000216,
            "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.",
        ));
    };
    drop(apps);

    let lifetime = i64::from(
        lock(&inner.faults)
            .faults
            .token_lifetime_secs
            .unwrap_or_else(|| rand::rng().random_range(3600..=5400)),
    );
    let issued = now.timestamp();
    // The service principal's object id is stable per app and tenant.
    let sp = Uuid::from_u128(tenant_id.as_u128() ^ client_id.as_u128().rotate_left(64));
    let claims = AccessClaims {
        aud: GRAPH_AUDIENCE.to_string(),
        iss: format!("https://sts.windows.net/{tenant_id}/"),
        iat: issued,
        nbf: issued,
        exp: issued + lifetime,
        appid: client_id.to_string(),
        appidacr: appidacr.to_string(),
        idp: format!("https://sts.windows.net/{tenant_id}/"),
        idtyp: "app".to_string(),
        oid: sp.to_string(),
        sub: sp.to_string(),
        tid: tenant_id.to_string(),
        roles,
        uti: Uuid::new_v4().simple().to_string(),
        ver: "1.0".to_string(),
    };
    Ok(json!({
        "token_type": "Bearer",
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": issue(&claims),
    }))
}
