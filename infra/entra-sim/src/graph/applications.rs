//! The app's own registration: `GET /applications/{id}` and the
//! `addKey`/`removeKey` actions that roll its certificates, each authorized
//! by a proof-of-possession JWT signed with a currently valid key.

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::Reply;
use super::route::AppRef;
use crate::access_token::Principal;
use crate::apps::{AppReg, AppRegistry, key_credential_json};
use crate::assertion::{SKEW_SECS, SignatureFailure, time_claim, verify_signature};
use crate::certs::RegisteredKey;
use crate::error::GraphError;
use crate::state::{Inner, read, write};

/// The audience of a proof: Azure AD Graph's application id.
pub const PROOF_AUDIENCE: &str = "00000002-0000-0000-c000-000000000000";
/// A proof lives at most 10 minutes (plus a little tolerance).
const PROOF_MAX_LIFETIME_SECS: i64 = 600 + 60;

fn find<'a>(apps: &'a AppRegistry, app: &AppRef) -> Option<&'a AppReg> {
    match app {
        AppRef::ObjectId(id) => apps.by_object(Uuid::parse_str(id).ok()?),
        AppRef::AppId(id) => apps.get(Uuid::parse_str(id).ok()?),
    }
}

fn find_mut<'a>(apps: &'a mut AppRegistry, app: &AppRef) -> Option<&'a mut AppReg> {
    match app {
        AppRef::ObjectId(id) => apps.by_object_mut(Uuid::parse_str(id).ok()?),
        AppRef::AppId(id) => apps.get_mut(Uuid::parse_str(id).ok()?),
    }
}

fn shown(app: &AppRef) -> &str {
    match app {
        AppRef::ObjectId(id) | AppRef::AppId(id) => id,
    }
}

/// Only the app itself, with a token from its home tenant, rolls its keys.
fn require_self(principal: &Principal, app: &AppReg) -> Result<(), GraphError> {
    if principal.app == app.client_id && principal.tenant == app.home_tenant {
        Ok(())
    } else {
        Err(GraphError::forbidden())
    }
}

pub(super) fn get(inner: &Inner, principal: &Principal, app: &AppRef) -> Result<Reply, GraphError> {
    let apps = read(&inner.apps);
    let reg = find(&apps, app)
        .filter(|reg| reg.home_tenant == principal.tenant)
        .ok_or_else(|| GraphError::not_found(shown(app)))?;
    // Reading an application needs an Application.* (or Directory) role, even
    // one's own.
    if !principal.can_read_applications() {
        return Err(GraphError::forbidden());
    }
    Ok(Reply::value(&reg.to_json(&inner.graph_base())))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AddKeyBody {
    key_credential: KeyCredentialIn,
    #[serde(default)]
    password_credential: Option<Value>,
    proof: String,
}

#[derive(Deserialize)]
struct KeyCredentialIn {
    #[serde(rename = "type")]
    kind: String,
    usage: String,
    key: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RemoveKeyBody {
    key_id: Uuid,
    proof: String,
}

fn bad_body(e: serde_json::Error) -> GraphError {
    GraphError::bad_request(format!("The request body is not valid: {e}"))
}

/// Checks a proof of possession for `app`: signed by one of its valid keys,
/// `aud` Azure AD Graph, `iss` the application's object id, short-lived.
fn verify_proof(app: &AppReg, proof: &str, now: DateTime<Utc>) -> Result<(), GraphError> {
    let verified = verify_signature(proof, &app.keys, now, true).map_err(|failure| match failure {
        SignatureFailure::Malformed(why) => GraphError::new(
            StatusCode::UNAUTHORIZED,
            "Authentication_MissingOrMalformed",
            format!("The proof of possession token is missing or malformed: {why}"),
        ),
        other => GraphError::new(
            StatusCode::UNAUTHORIZED,
            "Authentication_Unauthorized",
            format!("The proof of possession token was not signed by a valid key of the application: {other}."),
        ),
    })?;
    let claims = &verified.claims;
    let invalid = |why: &str| {
        GraphError::bad_request(format!("The proof of possession token is invalid: {why}"))
    };
    if !audience_is(claims, PROOF_AUDIENCE) {
        return Err(invalid(
            "'aud' must be 00000002-0000-0000-c000-000000000000",
        ));
    }
    let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
    if !iss.eq_ignore_ascii_case(&app.object_id.to_string()) {
        return Err(invalid("'iss' must be the application's object id"));
    }
    let now = now.timestamp();
    let nbf = time_claim(claims, "nbf").ok_or_else(|| invalid("'nbf' is missing"))?;
    let exp = time_claim(claims, "exp").ok_or_else(|| invalid("'exp' is missing"))?;
    if nbf > now + SKEW_SECS {
        return Err(invalid("'nbf' is in the future"));
    }
    if exp <= now {
        return Err(invalid("the token has expired"));
    }
    if exp - nbf > PROOF_MAX_LIFETIME_SECS {
        return Err(invalid("'exp' must be at most 10 minutes after 'nbf'"));
    }
    Ok(())
}

fn audience_is(claims: &Map<String, Value>, expected: &str) -> bool {
    match claims.get("aud") {
        Some(Value::String(aud)) => aud == expected,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(expected)),
        _ => false,
    }
}

pub(super) fn add_key(
    inner: &Inner,
    principal: &Principal,
    app: &AppRef,
    body: &[u8],
) -> Result<Reply, GraphError> {
    let request: AddKeyBody = serde_json::from_slice(body).map_err(bad_body)?;
    let mut apps = write(&inner.apps);
    let reg = find_mut(&mut apps, app).ok_or_else(|| GraphError::not_found(shown(app)))?;
    require_self(principal, reg)?;
    verify_proof(reg, &request.proof, inner.now())?;
    if request
        .password_credential
        .as_ref()
        .is_some_and(|p| !p.is_null())
    {
        return Err(GraphError::bad_request(
            "This simulator rolls certificate key credentials only; passwordCredential must be null.",
        ));
    }
    let credential = request.key_credential;
    if credential.kind != "AsymmetricX509Cert" || credential.usage != "Verify" {
        return Err(GraphError::bad_request(
            "Key credential type must be 'AsymmetricX509Cert' with usage 'Verify'.",
        ));
    }
    let der = STANDARD
        .decode(credential.key.trim())
        .map_err(|_| GraphError::bad_request("Key credential key is not valid base64."))?;
    let key = RegisteredKey::parse(&der, Uuid::new_v4())
        .map_err(|e| GraphError::bad_request(format!("Key credential key is invalid: {e}.")))?;
    if key.info.end <= inner.now() {
        return Err(GraphError::bad_request(
            "Key credential end date is in the past.",
        ));
    }
    if reg
        .keys
        .iter()
        .any(|k| k.info.thumbprint_sha1 == key.info.thumbprint_sha1)
    {
        return Err(GraphError::bad_request(
            "A key credential with the same certificate already exists on the application.",
        ));
    }
    let mut value = key_credential_json(&key);
    value["@odata.context"] = Value::from(format!(
        "{}/v1.0/$metadata#microsoft.graph.keyCredential",
        inner.graph_base()
    ));
    reg.keys.push(key);
    Ok(Reply::value(&value))
}

/// Removes a key. Graph's documentation does not forbid removing the key
/// that signed the proof, so neither does the simulator.
pub(super) fn remove_key(
    inner: &Inner,
    principal: &Principal,
    app: &AppRef,
    body: &[u8],
) -> Result<Reply, GraphError> {
    let request: RemoveKeyBody = serde_json::from_slice(body).map_err(bad_body)?;
    let mut apps = write(&inner.apps);
    let reg = find_mut(&mut apps, app).ok_or_else(|| GraphError::not_found(shown(app)))?;
    require_self(principal, reg)?;
    verify_proof(reg, &request.proof, inner.now())?;
    let before = reg.keys.len();
    reg.keys.retain(|k| k.info.key_id != request.key_id);
    if reg.keys.len() == before {
        return Err(GraphError::not_found(&request.key_id.to_string()));
    }
    Ok(Reply::no_content())
}
