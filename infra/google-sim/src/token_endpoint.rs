//! `POST /token`: the JWT bearer grant (RFC 7523) as Google's OAuth server
//! runs it for service accounts, with the assertion verified for real.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{Duration, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value, json};

use crate::errors::TokenError;
use crate::state::{AccessToken, Inner, lock, read};

pub(crate) const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Lifetime of issued access tokens, as Google reports it.
pub(crate) const TOKEN_LIFETIME_SECS: i64 = 3599;
/// Longest assertion lifetime (`exp` − `iat`).
const MAX_ASSERTION_SECS: i64 = 3600;
/// Clock skew tolerated on `iat` and `exp`.
const SKEW_SECS: i64 = 60;

pub(crate) async fn token(
    State(inner): State<Arc<Inner>>,
    axum::Form(form): axum::Form<HashMap<String, String>>,
) -> Response {
    inner.record("POST /token");
    match grant(&inner, &form) {
        Ok(body) => {
            lock(&inner.stats).tokens_issued += 1;
            Json(body).into_response()
        }
        Err(e) => {
            lock(&inner.stats).token_errors += 1;
            tracing::debug!(error = e.error, description = %e.description, "token refused");
            e.into_response()
        }
    }
}

fn grant(inner: &Inner, form: &HashMap<String, String>) -> Result<Value, TokenError> {
    let grant_type = form.get("grant_type").map(String::as_str).unwrap_or("");
    if grant_type.is_empty() {
        return Err(TokenError::invalid_request(
            "Missing required parameter: grant_type",
        ));
    }
    if grant_type != JWT_BEARER_GRANT {
        return Err(TokenError::unsupported_grant_type(grant_type));
    }
    let assertion = form
        .get("assertion")
        .filter(|a| !a.is_empty())
        .ok_or_else(|| TokenError::invalid_request("Missing required parameter: assertion"))?;
    let claims = verify(inner, assertion)?;
    issue(inner, &claims)
}

/// The assertion's claims, read before the signature is checked (to find
/// the key by `iss`).
fn unverified_claims(jwt: &str) -> Option<Map<String, Value>> {
    let mut parts = jwt.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

struct Claims {
    client_id: String,
    scopes: BTreeSet<String>,
    sub: Option<String>,
}

fn verify(inner: &Inner, jwt: &str) -> Result<Claims, TokenError> {
    let malformed = || TokenError::invalid_grant("Invalid JWT: the assertion is malformed.");
    let header = jsonwebtoken::decode_header(jwt).map_err(|_| malformed())?;
    let claims = unverified_claims(jwt).ok_or_else(malformed)?;
    let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
    let account = read(&inner.dir)
        .service_accounts
        .get(iss)
        .cloned()
        .ok_or_else(|| TokenError::invalid_grant("Invalid grant: account not found"))?;
    // Google signs and verifies service account assertions with RS256 only.
    if header.alg != Algorithm::RS256 {
        return Err(TokenError::bad_signature());
    }
    if let Some(kid) = &header.kid
        && *kid != account.private_key_id
    {
        return Err(TokenError::bad_signature());
    }
    let key = DecodingKey::from_rsa_pem(account.public_key_pem.as_bytes())
        .map_err(|_| TokenError::bad_signature())?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<Map<String, Value>>(jwt, &key, &validation)
        .map_err(|_| TokenError::bad_signature())?;

    if claims.get("aud").and_then(Value::as_str) != Some(inner.token_url().as_str()) {
        return Err(TokenError::invalid_grant(
            "Invalid JWT: Failed audience check.",
        ));
    }
    let now = Utc::now().timestamp();
    let iat = claims.get("iat").and_then(Value::as_i64);
    let exp = claims.get("exp").and_then(Value::as_i64);
    let (Some(iat), Some(exp)) = (iat, exp) else {
        return Err(TokenError::bad_timing());
    };
    if iat > now + SKEW_SECS
        || exp + SKEW_SECS < now
        || exp <= iat
        || exp - iat > MAX_ASSERTION_SECS
    {
        return Err(TokenError::bad_timing());
    }
    let scopes: BTreeSet<String> = claims
        .get("scope")
        .and_then(Value::as_str)
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if scopes.is_empty() {
        return Err(TokenError::invalid_scope());
    }
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    Ok(Claims {
        client_id: account.client_id,
        scopes,
        sub,
    })
}

fn issue(inner: &Inner, claims: &Claims) -> Result<Value, TokenError> {
    let (customer, user_id) = match &claims.sub {
        None => (None, None),
        Some(sub) => {
            let dir = read(&inner.dir);
            let (customer, user) = dir
                .find_user_anywhere(sub)
                .ok_or_else(|| TokenError::invalid_grant("Invalid email or User ID"))?;
            let granted = customer.delegations.get(&claims.client_id);
            let allowed = granted.is_some_and(|g| claims.scopes.iter().all(|s| g.contains(s)));
            if !allowed {
                return Err(TokenError::unauthorized_client());
            }
            (Some(customer.id.clone()), Some(user.id.clone()))
        }
    };
    let access_token = new_access_token();
    lock(&inner.tokens).insert(
        access_token.clone(),
        AccessToken {
            scopes: claims.scopes.clone(),
            customer,
            user_id,
            expires: Utc::now() + Duration::seconds(TOKEN_LIFETIME_SECS),
        },
    );
    Ok(json!({
        "access_token": access_token,
        "expires_in": TOKEN_LIFETIME_SECS,
        "token_type": "Bearer",
    }))
}

/// An opaque token shaped like Google's (`ya29.` and random characters).
fn new_access_token() -> String {
    let bytes: [u8; 48] = rand::random();
    format!("ya29.sim{}", URL_SAFE_NO_PAD.encode(bytes))
}
