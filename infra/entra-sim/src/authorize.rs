//! `GET {authority}/{tenant}/oauth2/v2.0/authorize`: an OpenID Connect
//! sign-in by the authorization code flow. Who signs in is set beforehand
//! with `EntraSim::set_next_sign_in` (by default, a user of the tenant in
//! the path). The code it sends back is single use, lives ten minutes
//! (Microsoft: "typically about 10 minutes") and is bound to the client,
//! the redirect URI, the tenant signed in to and the user; the token
//! endpoint redeems it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::consent::{Refusal, error_page, refuse, registered_client, with_query};
use crate::error::AadError;
use crate::state::{Inner, lock, read};

/// How long an authorization code may be redeemed.
const CODE_LIFETIME: Duration = Duration::minutes(10);

/// What an authorization code stands for.
#[derive(Clone, Debug)]
pub(crate) struct IssuedCode {
    pub client_id: Uuid,
    pub redirect_uri: String,
    /// The tenant of the authorize request's path.
    pub tenant: Uuid,
    /// The signed-in user: their home tenant and object id.
    pub user_tenant: Uuid,
    pub user: Uuid,
    /// The user's directory roles (template ids).
    pub roles: Vec<Uuid>,
    /// The authorize request's `nonce`, echoed in the `id_token`.
    pub nonce: Option<String>,
    pub expires: DateTime<Utc>,
}

/// Global Administrator's role template id.
pub const GLOBAL_ADMINISTRATOR: Uuid = Uuid::from_u128(0x62e90394_69f5_4237_9190_012177145e10);
/// A role every member holds: "User" (the default user role template).
pub const USER_ROLE: Uuid = Uuid::from_u128(0xb79fbf4d_3ef9_4689_8143_76b194e85509);

/// Codes issued and not yet redeemed, and those redeemed (to tell a replay
/// from a code never issued).
#[derive(Default)]
pub(crate) struct Codes {
    issued: HashMap<String, IssuedCode>,
    redeemed: HashSet<String>,
}

impl Codes {
    fn issue(&mut self, code: IssuedCode) -> String {
        let value = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 48]>());
        self.issued.insert(value.clone(), code);
        value
    }

    /// Redeems `code` once, with Entra's errors for a replayed, expired or
    /// unknown one.
    pub fn redeem(&mut self, code: &str, now: DateTime<Utc>) -> Result<IssuedCode, AadError> {
        if self.redeemed.contains(code) {
            return Err(AadError::new(
                "invalid_grant",
                54005,
                "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.",
            ));
        }
        match self.issued.remove(code) {
            Some(issued) if issued.expires > now => {
                self.redeemed.insert(code.to_owned());
                Ok(issued)
            }
            _ => Err(AadError::new(
                "invalid_grant",
                70008,
                "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
            )),
        }
    }
}

pub(crate) async fn authorize(
    State(inner): State<Arc<Inner>>,
    Path(tenant): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    inner.record("GET authorize");
    let params: HashMap<String, String> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    match sign_in(&inner, &tenant, &params) {
        Ok(location) => (StatusCode::FOUND, [(header::LOCATION, location)]).into_response(),
        Err(Refusal::Error { code, message }) => error_page(code, &message),
        Err(Refusal::Pending) => error_page(
            50058,
            "A silent sign-in request was sent but no user is signed in.",
        ),
    }
}

/// Signs the chosen user in and returns where the browser goes next: the
/// redirect URI with a code, or with an error once the URI is verified.
fn sign_in(
    inner: &Inner,
    segment: &str,
    params: &HashMap<String, String>,
) -> Result<String, Refusal> {
    let (client_id, redirect_uri) = registered_client(inner, params)?;
    let state = params.get("state").map(String::as_str);
    let redirect_error = |error: &str, description: &str| {
        let mut pairs = vec![("error", error), ("error_description", description)];
        pairs.extend(state.map(|s| ("state", s)));
        Ok(with_query(&redirect_uri, &pairs))
    };
    if params.get("response_type").map(String::as_str) != Some("code") {
        return redirect_error(
            "unsupported_response_type",
            "AADSTS700054: response_type is not enabled for the application; the simulator signs in with 'code' only.",
        );
    }
    if !params
        .get("scope")
        .is_some_and(|s| s.split(' ').any(|s| s == "openid"))
    {
        return redirect_error(
            "invalid_scope",
            "AADSTS70011: The provided value for the input parameter 'scope' is not valid: an OpenID Connect sign-in asks for 'openid'.",
        );
    }
    let tenant = inner
        .resolve_tenant(segment)
        .map(|t| read(&t).id)
        .ok_or_else(|| refuse(90002, format!("Tenant '{segment}' not found.")))?;
    let user_tenant = lock(&inner.sign_in).take().unwrap_or(tenant);
    if inner.tenant(user_tenant).is_none() {
        return Err(refuse(90002, format!("Tenant '{user_tenant}' not found.")));
    }
    let code = lock(&inner.codes).issue(IssuedCode {
        client_id,
        redirect_uri: redirect_uri.clone(),
        tenant,
        user_tenant,
        // One administrator per tenant: a stable object id.
        user: Uuid::from_u128(user_tenant.as_u128().rotate_left(32)),
        roles: lock(&inner.sign_in_roles)
            .take()
            .unwrap_or_else(|| vec![GLOBAL_ADMINISTRATOR, USER_ROLE]),
        nonce: params.get("nonce").cloned(),
        expires: inner.now() + CODE_LIFETIME,
    });
    let mut pairs = vec![("code", code.as_str())];
    pairs.extend(state.map(|s| ("state", s)));
    Ok(with_query(&redirect_uri, &pairs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(expires: DateTime<Utc>) -> IssuedCode {
        IssuedCode {
            client_id: Uuid::from_u128(1),
            redirect_uri: "https://app.test/cb".into(),
            tenant: Uuid::from_u128(2),
            user_tenant: Uuid::from_u128(2),
            user: Uuid::from_u128(3),
            roles: Vec::new(),
            nonce: None,
            expires,
        }
    }

    #[test]
    fn a_code_is_redeemed_once_and_not_after_it_expires() {
        let now = Utc::now();
        let mut codes = Codes::default();
        let fresh = codes.issue(code(now + Duration::minutes(10)));
        assert!(codes.redeem(&fresh, now).is_ok());
        assert_eq!(codes.redeem(&fresh, now).unwrap_err().code, 54005);
        let old = codes.issue(code(now));
        assert_eq!(codes.redeem(&old, now).unwrap_err().code, 70008);
        assert_eq!(codes.redeem("never-issued", now).unwrap_err().code, 70008);
    }
}
