//! The access tokens the simulator issues and Graph accepts: RS256 JWTs signed
//! with the simulator's own key, shaped like Entra's v1 app-only tokens for
//! Graph (`tid`, `appid`, `roles`, `aud`, `exp`). Clients should treat them as
//! opaque, as Microsoft asks.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};
use uuid::Uuid;

use crate::error::GraphError;

/// The audience of Graph tokens.
pub const GRAPH_AUDIENCE: &str = "https://graph.microsoft.com";
/// Graph's application id, also accepted as audience.
pub(crate) const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";

struct SigningKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    kid: String,
}

/// One RSA key per process: generating it takes a noticeable moment and a
/// test suite starts many simulators.
fn keys() -> &'static SigningKeys {
    static KEYS: OnceLock<SigningKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
            .expect("aws-lc-rs generates RSA keys");
        let encoding = EncodingKey::from_rsa_pem(pair.serialize_pem().as_bytes())
            .expect("rcgen's PKCS#8 PEM is a valid RSA key");
        // For RSA this is the PKCS#1 RSAPublicKey.
        let public = pair.public_key_raw().to_vec();
        let kid = URL_SAFE_NO_PAD.encode(Sha1::digest(&public));
        SigningKeys {
            encoding,
            decoding: DecodingKey::from_rsa_der(&public),
            kid,
        }
    })
}

/// Claims of an issued access token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct AccessClaims {
    pub aud: String,
    pub iss: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub appid: String,
    /// `1`: authenticated with a secret, `2`: with a certificate.
    pub appidacr: String,
    pub idp: String,
    pub idtyp: String,
    pub oid: String,
    pub sub: String,
    pub tid: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Delegated scopes, in a user's token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scp: Option<String>,
    pub uti: String,
    pub ver: String,
}

/// Claims of an issued v2.0 `id_token`: who signed in, where, for which app.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct IdClaims {
    /// The client id of the app the user signed in to.
    pub aud: String,
    /// `{authority}/{tid}/v2.0`.
    pub iss: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub oid: String,
    pub sub: String,
    pub tid: String,
    pub ver: String,
    /// The user's directory roles (Entra emits them when the app's
    /// `groupMembershipClaims` includes directory roles).
    pub wids: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

/// Signs an access token or an `id_token`.
pub(crate) fn issue(claims: &impl Serialize) -> String {
    let keys = keys();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(keys.kid.clone());
    header.x5t = Some(keys.kid.clone());
    jsonwebtoken::encode(&header, claims, &keys.encoding).expect("signing with our own key")
}

/// Who is calling Graph, from a validated token.
#[derive(Clone, Debug)]
pub(crate) struct Principal {
    pub tenant: Uuid,
    pub app: Uuid,
    pub roles: Vec<String>,
}

impl Principal {
    fn has_any(&self, roles: &[&str]) -> bool {
        self.roles.iter().any(|r| roles.contains(&r.as_str()))
    }

    pub fn can_read_users(&self) -> bool {
        self.has_any(&[
            "User.Read.All",
            "User.ReadWrite.All",
            "Directory.Read.All",
            "Directory.ReadWrite.All",
        ])
    }

    pub fn can_read_groups(&self) -> bool {
        self.has_any(&[
            "Group.Read.All",
            "Group.ReadWrite.All",
            "GroupMember.Read.All",
            "GroupMember.ReadWrite.All",
            "Directory.Read.All",
            "Directory.ReadWrite.All",
        ])
    }

    pub fn can_read_contacts(&self) -> bool {
        self.has_any(&[
            "OrgContact.Read.All",
            "Directory.Read.All",
            "Directory.ReadWrite.All",
        ])
    }

    /// `GET /organization` needs more than the sync's least privileges.
    pub fn can_read_organization(&self) -> bool {
        self.has_any(&[
            "Organization.Read.All",
            "Organization.ReadWrite.All",
            "Directory.Read.All",
            "Directory.ReadWrite.All",
        ])
    }

    pub fn can_read_applications(&self) -> bool {
        self.has_any(&[
            "Application.Read.All",
            "Application.ReadWrite.All",
            "Application.ReadWrite.OwnedBy",
            "Directory.Read.All",
            "Directory.ReadWrite.All",
        ])
    }
}

/// A token's `uti` (its unique id, opaque to clients), carrying the
/// generation it was issued in.
pub(crate) fn unique_token_id(generation: u64) -> String {
    format!("{generation}-{}", Uuid::new_v4().simple())
}

fn generation_of(uti: &str) -> u64 {
    uti.split_once('-')
        .and_then(|(g, _)| g.parse().ok())
        .unwrap_or(0)
}

/// Validates a bearer token as Graph would: signature, audience, lifetime.
/// The simulator's clocks are the clients' clocks, so there is no skew
/// allowance: an expired token is refused the second it expires. A token
/// from before the current `generation` has expired too.
pub(crate) fn validate(
    authorization: Option<&str>,
    now: i64,
    generation: u64,
) -> Result<Principal, GraphError> {
    let raw = authorization
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| GraphError::unauthenticated("Access token is empty."))?;
    let mut validation = jsonwebtoken::Validation::new(Algorithm::RS256);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let data = jsonwebtoken::decode::<AccessClaims>(raw, &keys().decoding, &validation)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                GraphError::unauthenticated("Access token validation failure. Invalid signature.")
            }
            _ => GraphError::unauthenticated(
                "IDX14100: JWT is not well formed, there are no dots (.). Access token validation failure.",
            ),
        })?;
    let claims = data.claims;
    if claims.aud != GRAPH_AUDIENCE && claims.aud != GRAPH_APP_ID {
        return Err(GraphError::unauthenticated(
            "Access token validation failure. Invalid audience.",
        ));
    }
    if claims.exp <= now || generation_of(&claims.uti) < generation {
        return Err(GraphError::unauthenticated(
            "Lifetime validation failed, the token is expired.",
        ));
    }
    if claims.nbf > now {
        return Err(GraphError::unauthenticated(
            "Lifetime validation failed, the token is not yet valid.",
        ));
    }
    let parse = |s: &str| {
        Uuid::parse_str(s).map_err(|_| {
            GraphError::unauthenticated("Access token validation failure. Invalid claims.")
        })
    };
    Ok(Principal {
        tenant: parse(&claims.tid)?,
        app: parse(&claims.appid)?,
        roles: claims.roles,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64, aud: &str) -> AccessClaims {
        AccessClaims {
            aud: aud.to_string(),
            iss: "https://sts.windows.net/x/".into(),
            iat: 0,
            nbf: 0,
            exp,
            appid: Uuid::from_u128(1).to_string(),
            appidacr: "2".into(),
            idp: "x".into(),
            idtyp: "app".into(),
            oid: Uuid::from_u128(3).to_string(),
            sub: Uuid::from_u128(3).to_string(),
            tid: Uuid::from_u128(2).to_string(),
            roles: vec!["User.Read.All".into()],
            scp: None,
            uti: unique_token_id(1),
            ver: "1.0".into(),
        }
    }

    #[test]
    fn accepts_a_fresh_token_and_reads_the_principal() {
        let token = issue(&claims(100, GRAPH_AUDIENCE));
        let principal = validate(Some(&format!("Bearer {token}")), 50, 0).unwrap();
        assert_eq!(principal.tenant, Uuid::from_u128(2));
        assert!(principal.can_read_users());
        assert!(!principal.can_read_groups());
    }

    #[test]
    fn refuses_expired_foreign_and_tampered_tokens() {
        let token = issue(&claims(100, GRAPH_AUDIENCE));
        let err = validate(Some(&format!("Bearer {token}")), 100, 0).unwrap_err();
        assert!(err.message.contains("expired"));
        let other = issue(&claims(100, "https://example.test"));
        assert!(
            validate(Some(&format!("Bearer {other}")), 50, 0)
                .unwrap_err()
                .message
                .contains("audience")
        );
        let mut tampered = token.clone();
        tampered.insert_str(tampered.rfind('.').unwrap() + 1, "AB");
        assert_eq!(
            validate(Some(&format!("Bearer {tampered}")), 50, 0)
                .unwrap_err()
                .status,
            axum::http::StatusCode::UNAUTHORIZED
        );
        assert!(validate(None, 50, 0).unwrap_err().message.contains("empty"));
    }

    #[test]
    fn a_token_of_an_earlier_generation_has_expired() {
        let token = format!("Bearer {}", issue(&claims(100, GRAPH_AUDIENCE)));
        assert!(validate(Some(&token), 50, 1).is_ok());
        let err = validate(Some(&token), 50, 2).unwrap_err();
        assert!(err.message.contains("expired"), "{}", err.message);
    }
}
