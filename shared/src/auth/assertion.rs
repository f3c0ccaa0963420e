//! Signed JWTs the platform presents to Entra: the client assertion of the
//! client-credentials grant, and the proof of possession that Graph's
//! `addKey` / `removeKey` ask for.

use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{Algorithm, Header};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::certificate::AppCertificate;

/// The `aud` of a key-rotation proof (the AAD Graph resource id, as Graph's
/// addKey documentation requires).
pub const PROOF_AUDIENCE: &str = "00000002-0000-0000-c000-000000000000";

/// How the assertion is signed. PS256 with `x5t#S256` is Entra's current
/// documented form; RS256 with `x5t` (SHA-1) the legacy one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AssertionAlg {
    #[default]
    Ps256,
    Rs256,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct AssertionClaims {
    pub aud: String,
    pub iss: String,
    pub sub: String,
    pub jti: String,
    pub nbf: i64,
    pub iat: i64,
    pub exp: i64,
}

/// Assertions live five minutes: well inside Entra's ten-minute limit.
const LIFETIME: Duration = Duration::minutes(5);

fn header(cert: &AppCertificate, alg: AssertionAlg) -> Header {
    let mut header = Header::new(match alg {
        AssertionAlg::Ps256 => Algorithm::PS256,
        AssertionAlg::Rs256 => Algorithm::RS256,
    });
    match alg {
        AssertionAlg::Ps256 => header.x5t_s256 = Some(cert.x5t_s256()),
        AssertionAlg::Rs256 => header.x5t = Some(cert.x5t()),
    }
    header
}

/// The `client_assertion` for `POST {token_endpoint}`.
pub fn client_assertion(
    cert: &AppCertificate,
    alg: AssertionAlg,
    client_id: &Uuid,
    token_endpoint: &str,
    now: DateTime<Utc>,
) -> Result<String, jsonwebtoken::errors::Error> {
    let claims = AssertionClaims {
        aud: token_endpoint.to_owned(),
        iss: client_id.to_string(),
        sub: client_id.to_string(),
        jti: Uuid::new_v4().to_string(),
        nbf: now.timestamp(),
        iat: now.timestamp(),
        exp: (now + LIFETIME).timestamp(),
    };
    jsonwebtoken::encode(&header(cert, alg), &claims, cert.signing_key())
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ProofClaims {
    pub aud: String,
    pub iss: String,
    pub nbf: i64,
    pub exp: i64,
}

/// The `proof` for addKey/removeKey on the application with `object_id`,
/// signed by one of its currently registered certificates.
pub fn key_proof(
    cert: &AppCertificate,
    object_id: &Uuid,
    now: DateTime<Utc>,
) -> Result<String, jsonwebtoken::errors::Error> {
    let claims = ProofClaims {
        aud: PROOF_AUDIENCE.to_owned(),
        iss: object_id.to_string(),
        nbf: now.timestamp(),
        exp: (now + LIFETIME).timestamp(),
    };
    jsonwebtoken::encode(
        &header(cert, AssertionAlg::Rs256),
        &claims,
        cert.signing_key(),
    )
}
