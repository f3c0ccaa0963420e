//! The `id_token` of an OpenID Connect sign-in, as the token endpoint
//! answered it to the platform app: who signed in, in which tenant, for
//! which app.
//!
//! Its signature is not checked. OpenID Connect Core 1.0 §3.1.3.7 (step 6)
//! lets a client that received the ID token directly from the token
//! endpoint over TLS rely on that TLS server validation instead: the token
//! comes from the request the platform app itself authenticated, not from
//! the browser. The other steps are kept (issuer, audience, expiry).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

/// The claims the consent reads.
#[derive(Debug, Clone, Deserialize)]
pub struct IdClaims {
    pub tid: String,
    pub aud: String,
    pub iss: String,
    pub exp: i64,
    /// Present when the user signed in with another identity provider than
    /// the issuer: a guest of the tenant.
    #[serde(default)]
    pub idp: Option<String>,
    /// The tenant-wide roles of the user (role template ids): present when
    /// the app's `groupMembershipClaims` includes directory roles.
    #[serde(default)]
    pub wids: Vec<String>,
    /// The `nonce` of the sign-in request this token answers.
    #[serde(default)]
    pub nonce: Option<String>,
}

/// The roles that can grant admin consent to application permissions of
/// Microsoft Graph: Global Administrator, Privileged Role Administrator.
pub const CONSENTING_ROLES: [&str; 2] = [
    "62e90394-69f5-4237-9190-012177145e10",
    "e8611ab8-c189-46e8-94e1-60213ab1f814",
];

/// Why an `id_token` does not show a member of the expected tenant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    #[error("the sign-in answer is not an ID token Entra issues: {0}")]
    Malformed(String),
    #[error("the ID token was issued to another application")]
    Audience,
    #[error("the ID token was issued by {0}, not by the tenant's sign-in service")]
    Issuer(String),
    #[error("the ID token has expired")]
    Expired,
    /// The user who signed in belongs to this other tenant.
    #[error("the user who signed in belongs to tenant {0}")]
    OtherTenant(String),
    /// A guest of the tenant, whose account is another provider's.
    #[error("the user who signed in is a guest of the tenant, from {0}")]
    Guest(String),
    /// A user of the tenant who could not have granted the consent.
    #[error(
        "the user who signed in is not a Global Administrator or Privileged Role Administrator"
    )]
    NotAdministrator,
    /// The token answers another sign-in request than this consent's.
    #[error("the ID token answers another sign-in than this consent's")]
    Nonce,
}

/// Reads the claims of `id_token` (see the module's note on the signature).
pub fn claims(id_token: &str) -> Result<IdClaims, IdTokenError> {
    let malformed = |why: &str| IdTokenError::Malformed(why.to_owned());
    let payload = id_token
        .split('.')
        .nth(1)
        .ok_or_else(|| malformed("no payload"))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| malformed("the payload is not base64url"))?;
    serde_json::from_slice(&bytes).map_err(|e| IdTokenError::Malformed(e.to_string()))
}

/// What an ID token must show: a member of `tenant`, signed in to the app
/// `client_id` at `authority`, now.
pub struct Expected<'a> {
    pub authority: &'a str,
    pub tenant: Uuid,
    pub client_id: Uuid,
    pub now: DateTime<Utc>,
    /// The nonce the sign-in was asked for with.
    pub nonce: &'a str,
}

impl IdClaims {
    /// Checks the claims against `expected`: the audience first (a token
    /// for another app proves nothing), then the tenant and issuer.
    pub fn check(&self, expected: &Expected) -> Result<(), IdTokenError> {
        if Uuid::parse_str(&self.aud).ok() != Some(expected.client_id) {
            return Err(IdTokenError::Audience);
        }
        if Uuid::parse_str(&self.tid).ok() != Some(expected.tenant) {
            return Err(IdTokenError::OtherTenant(self.tid.clone()));
        }
        let issuer = format!(
            "{}/{}/v2.0",
            expected.authority.trim_end_matches('/'),
            expected.tenant
        );
        if !self.iss.eq_ignore_ascii_case(&issuer) {
            return Err(IdTokenError::Issuer(self.iss.clone()));
        }
        if let Some(idp) = self.idp.as_ref().filter(|idp| **idp != self.iss) {
            return Err(IdTokenError::Guest(idp.clone()));
        }
        if self.exp <= expected.now.timestamp() {
            return Err(IdTokenError::Expired);
        }
        if self.nonce.as_deref() != Some(expected.nonce) {
            return Err(IdTokenError::Nonce);
        }
        // Any user of the tenant can sign in once the app is consented: only
        // one who could have granted the consent proves it.
        if !self
            .wids
            .iter()
            .any(|w| CONSENTING_ROLES.contains(&w.as_str()))
        {
            return Err(IdTokenError::NotAdministrator);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn token(claims: serde_json::Value) -> String {
        format!(
            "eyJhbGciOiJSUzI1NiJ9.{}.c2ln",
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    }

    #[test]
    fn a_member_of_the_tenant_passes_and_others_are_named() {
        let (tenant, client) = (Uuid::from_u128(7), Uuid::from_u128(9));
        let expected = Expected {
            authority: "https://login.example/",
            tenant,
            client_id: client,
            now: Utc::now(),
            nonce: "n-1",
        };
        let iss = format!("https://login.example/{tenant}/v2.0");
        let base = json!({"tid": tenant.to_string(), "aud": client.to_string(), "iss": iss,
            "exp": Utc::now().timestamp() + 60, "nonce": "n-1",
            "wids": ["b79fbf4d-3ef9-4689-8143-76b194e85509", CONSENTING_ROLES[0]]});
        let ok = claims(&token(base.clone())).unwrap();
        assert_eq!(ok.check(&expected), Ok(()));

        let with = |k: &str, v: serde_json::Value| {
            let mut c = base.clone();
            c[k] = v;
            claims(&token(c)).unwrap().check(&expected).unwrap_err()
        };
        let other = Uuid::from_u128(8).to_string();
        assert_eq!(
            with("tid", json!(other)),
            IdTokenError::OtherTenant(other.clone())
        );
        assert_eq!(with("aud", json!(other)), IdTokenError::Audience);
        assert!(matches!(
            with("iss", json!("https://evil.example/x/v2.0")),
            IdTokenError::Issuer(_)
        ));
        assert!(matches!(
            with("idp", json!("https://sts.windows.net/other/")),
            IdTokenError::Guest(_)
        ));
        assert_eq!(with("exp", json!(1)), IdTokenError::Expired);
        assert_eq!(
            with("nonce", json!("another sign-in's")),
            IdTokenError::Nonce
        );
        // A user of the tenant without a role that can grant the consent.
        assert_eq!(
            with("wids", json!(["b79fbf4d-3ef9-4689-8143-76b194e85509"])),
            IdTokenError::NotAdministrator
        );
        assert!(matches!(
            claims("not-a-jwt"),
            Err(IdTokenError::Malformed(_))
        ));
    }
}
