//! `POST {authority}/{tenant}/oauth2/v2.0/token`: the client credentials
//! grant, with a certificate (client assertion) or a client secret, and the
//! authorization code grant of an OpenID Connect sign-in (a confidential
//! client, authenticated the same ways).

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

use chrono::{DateTime, Utc};

use crate::access_token::{
    AccessClaims, GRAPH_APP_ID, GRAPH_AUDIENCE, IdClaims, issue, unique_token_id,
};
use crate::apps::{AppReg, AppRegistry};
use crate::assertion::{AssertionCheck, verify_client_assertion};
use crate::authorize::IssuedCode;
use crate::error::AadError;
use crate::state::{Inner, lock, read};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

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

/// One token request: the tenant it was posted to and its form.
struct TokenRequest<'a> {
    inner: &'a Inner,
    /// The tenant as the URL names it (a GUID or a domain).
    segment: &'a str,
    tenant_id: Uuid,
    tenant_name: String,
    form: &'a HashMap<String, String>,
    now: DateTime<Utc>,
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
    let request = TokenRequest {
        inner,
        segment,
        tenant_id,
        tenant_name,
        form,
        now: inner.now(),
    };
    let grant_type = form
        .get("grant_type")
        .ok_or_else(|| missing("grant_type"))?;
    match grant_type.as_str() {
        "client_credentials" => request.client_credentials(),
        "authorization_code" => request.authorization_code(),
        _ => Err(AadError::new(
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{grant_type}'."),
        )),
    }
}

fn parse_client(raw_client: &str) -> Result<Uuid, AadError> {
    Uuid::parse_str(raw_client).map_err(|_| {
        AadError::new(
            "unauthorized_client",
            700038,
            format!("{raw_client} is not a valid application identifier."),
        )
    })
}

impl TokenRequest<'_> {
    fn field(&self, name: &str) -> Result<&String, AadError> {
        self.form.get(name).ok_or_else(|| missing(name))
    }

    /// The app named by `client_id`, enabled.
    fn app<'r>(&self, apps: &'r AppRegistry, client_id: Uuid) -> Result<&'r AppReg, AadError> {
        let app = apps
            .get(client_id)
            .ok_or_else(|| app_not_found(&client_id.to_string(), &self.tenant_name))?;
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
        Ok(app)
    }

    fn client_credentials(&self) -> Result<Value, AadError> {
        let raw_client = self.field("client_id")?;
        self.check_graph_scope(self.field("scope")?)?;
        let client_id = parse_client(raw_client)?;
        let apps = read(&self.inner.apps);
        let app = self.app(&apps, client_id)?;
        // A service principal still replicating is not found yet.
        if !app.is_in_tenant(self.tenant_id, self.now) {
            return Err(app_not_found(raw_client, &self.tenant_name));
        }
        let roles = app.grants.get(&self.tenant_id).cloned().unwrap_or_default();
        let appidacr = self.authenticate(app, "client_credentials")?;
        drop(apps);
        // The service principal's object id is stable per app and tenant.
        let sp = Uuid::from_u128(self.tenant_id.as_u128() ^ client_id.as_u128().rotate_left(64));
        let lifetime = token_lifetime(self.inner);
        let claims = self.access_claims(client_id, appidacr, sp, lifetime);
        Ok(json!({
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": issue(&AccessClaims { roles, ..claims }),
        }))
    }

    /// An app-only token's scope is `{resource}/.default`, the resource
    /// being this Graph by its URI (the origin of its URL) or by Graph's
    /// application id. Each cloud has its own Graph resource: another
    /// cloud's is not found in the tenant.
    fn check_graph_scope(&self, scope: &str) -> Result<(), AadError> {
        let Some(resource) = scope.trim().strip_suffix("/.default") else {
            return Err(AadError::new(
                "invalid_scope",
                70011,
                format!(
                    "The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."
                ),
            ));
        };
        let graph = self.inner.graph_resource();
        if [graph.as_str(), GRAPH_APP_ID]
            .iter()
            .any(|r| r.eq_ignore_ascii_case(resource))
        {
            return Ok(());
        }
        Err(AadError::new(
            "invalid_resource",
            500011,
            format!(
                "The resource principal named {resource} was not found in the tenant named {}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.",
                self.tenant_name
            ),
        ))
    }

    /// Redeems an authorization code for the user who signed in: an
    /// `id_token` (who, from which tenant, for which app) and a delegated
    /// access token, as a confidential client must authenticate for.
    fn authorization_code(&self) -> Result<Value, AadError> {
        let client_id = parse_client(self.field("client_id")?)?;
        let code = self.field("code")?;
        let redirect_uri = self.field("redirect_uri")?;
        // Optional in a v2.0 code redemption.
        let scope = self.form.get("scope").map_or("openid", String::as_str);
        let apps = read(&self.inner.apps);
        let app = self.app(&apps, client_id)?;
        let appidacr = self.authenticate(app, "authorization_code")?;
        drop(apps);
        let issued = lock(&self.inner.codes).redeem(code, self.now)?;
        if issued.client_id != client_id {
            return Err(AadError::new(
                "invalid_grant",
                70000,
                "Provided grant is invalid or malformed: the authorization code was issued to another application.",
            ));
        }
        if &issued.redirect_uri != redirect_uri {
            return Err(AadError::new(
                "invalid_grant",
                70000,
                "The provided value for the 'redirect_uri' is not valid. The value must exactly match the redirect URI used to obtain the authorization code.",
            ));
        }
        if issued.tenant != self.tenant_id {
            return Err(AadError::new(
                "invalid_grant",
                700005,
                "Provided Authorization Code is intended to use against other tenant, thus rejected.",
            ));
        }
        Ok(self.user_tokens(&issued, appidacr, scope))
    }

    fn user_tokens(&self, issued: &IssuedCode, appidacr: &str, scope: &str) -> Value {
        let lifetime = token_lifetime(self.inner);
        let tid = issued.user_tenant;
        let user = issued.user.to_string();
        let issued_at = self.now.timestamp();
        let id_token = IdClaims {
            aud: issued.client_id.to_string(),
            iss: format!("{}/{tid}/v2.0", self.inner.authority()),
            iat: issued_at,
            nbf: issued_at,
            exp: issued_at + 3600,
            oid: user.clone(),
            sub: user.clone(),
            tid: tid.to_string(),
            ver: "2.0".into(),
            wids: issued.roles.iter().map(Uuid::to_string).collect(),
            nonce: issued.nonce.clone(),
        };
        let access = AccessClaims {
            idtyp: "user".into(),
            scp: Some("openid profile email".into()),
            tid: tid.to_string(),
            iss: format!("https://sts.windows.net/{tid}/"),
            idp: format!("https://sts.windows.net/{tid}/"),
            ..self.access_claims(issued.client_id, appidacr, issued.user, lifetime)
        };
        json!({
            "token_type": "Bearer",
            "scope": scope,
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": issue(&access),
            "id_token": issue(&id_token),
        })
    }

    /// Checks the client's credential (a certificate assertion or a secret)
    /// and returns `appidacr`: `2` for a certificate, `1` for a secret.
    fn authenticate(&self, app: &AppReg, grant_type: &str) -> Result<&'static str, AadError> {
        let client_id = app.client_id;
        if let Some(assertion) = self.form.get("client_assertion") {
            if self.form.get("client_assertion_type").map(String::as_str) != Some(JWT_BEARER) {
                return Err(AadError::new(
                    "invalid_request",
                    90014,
                    "The required field 'client_assertion_type' is missing or invalid; it must be 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'.",
                ));
            }
            let authority = self.inner.authority();
            let audiences = [
                format!("{authority}/{}/oauth2/v2.0/token", self.segment),
                format!("{authority}/{}/oauth2/v2.0/token", self.tenant_id),
            ];
            let check = AssertionCheck {
                client_id,
                audiences: &audiences,
                now: self.now,
            };
            let key_id =
                verify_client_assertion(assertion, &app.keys, &check, &mut lock(&self.inner.jtis))?;
            *lock(&self.inner.stats)
                .certificate_sign_ins
                .entry(key_id)
                .or_default() += 1;
            return Ok("2");
        }
        let Some(secret) = self.form.get("client_secret") else {
            return Err(AadError::new(
                "invalid_request",
                7000216,
                format!(
                    "'client_assertion', 'client_secret' or 'request' is required for the '{grant_type}' grant type."
                ),
            ));
        };
        match app.secrets.iter().find(|s| &s.value == secret) {
            Some(s) if s.expires <= self.now => Err(AadError::new(
                "invalid_client",
                7000222,
                format!(
                    "The provided client secret keys for app '{client_id}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds."
                ),
            )),
            Some(s) => {
                *lock(&self.inner.stats)
                    .secret_sign_ins
                    .entry(s.key_id)
                    .or_default() += 1;
                Ok("1")
            }
            None => Err(AadError::new(
                "invalid_client",
                7000215,
                format!(
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
                ),
            )),
        }
    }

    /// An app-only access token's claims for Graph in this tenant, with no
    /// roles.
    fn access_claims(
        &self,
        client_id: Uuid,
        appidacr: &str,
        oid: Uuid,
        lifetime: i64,
    ) -> AccessClaims {
        let issued = self.now.timestamp();
        let tenant_id = self.tenant_id;
        AccessClaims {
            aud: GRAPH_AUDIENCE.to_string(),
            iss: format!("https://sts.windows.net/{tenant_id}/"),
            iat: issued,
            nbf: issued,
            exp: issued + lifetime,
            appid: client_id.to_string(),
            appidacr: appidacr.to_string(),
            idp: format!("https://sts.windows.net/{tenant_id}/"),
            idtyp: "app".to_string(),
            oid: oid.to_string(),
            sub: oid.to_string(),
            tid: tenant_id.to_string(),
            roles: Vec::new(),
            scp: None,
            uti: unique_token_id(self.inner.access_token_generation()),
            ver: "1.0".to_string(),
        }
    }
}

/// Entra randomises lifetimes between 60 and 90 minutes (or a fault fixes it).
fn token_lifetime(inner: &Inner) -> i64 {
    i64::from(
        lock(&inner.faults)
            .faults
            .token_lifetime_secs
            .unwrap_or_else(|| rand::rng().random_range(3600..=5400)),
    )
}
