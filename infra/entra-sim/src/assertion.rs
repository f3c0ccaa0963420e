//! Verifying JWTs signed with an app's certificate: client assertions at the
//! token endpoint and proof-of-possession tokens for `addKey`/`removeKey`.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::certs::RegisteredKey;
use crate::error::AadError;

/// RSA algorithms Entra accepts; everything else (ECDSA, HMAC, none) is
/// refused.
const RSA_ALGORITHMS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// Clock skew tolerated on `nbf`/`exp`, in seconds.
pub(crate) const SKEW_SECS: i64 = 300;
/// Longest assertion lifetime accepted (`exp` − `nbf`), in seconds.
pub(crate) const MAX_LIFETIME_SECS: i64 = 600;

/// A JWT whose signature checked out.
#[derive(Debug)]
pub(crate) struct Verified {
    pub claims: Map<String, Value>,
    /// The key credential whose certificate verified the signature.
    pub key_id: Uuid,
}

/// Why a signed JWT was refused before its claims were looked at.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SignatureFailure {
    #[error("the JWT is malformed: {0}")]
    Malformed(String),
    #[error("'{0}' is not a supported signature algorithm")]
    Algorithm(String),
    #[error("the key was not found (thumbprint '{0}')")]
    KeyNotFound(String),
    #[error("the key used is expired or not yet valid")]
    KeyExpired,
    #[error("the signature did not match")]
    Signature,
}

/// How a JWT names its certificate.
#[derive(Debug, Default)]
struct KeyHint {
    x5t_s256: Option<String>,
    x5t: Option<String>,
    kid: Option<String>,
}

impl KeyHint {
    fn is_empty(&self) -> bool {
        self.x5t_s256.is_none() && self.x5t.is_none() && self.kid.is_none()
    }

    fn names(&self, key: &RegisteredKey) -> bool {
        if self.x5t_s256.is_some() || self.x5t.is_some() {
            return key.matches(self.x5t_s256.as_deref(), self.x5t.as_deref());
        }
        match &self.kid {
            // .NET's X509SigningCredentials writes the SHA-1 thumbprint in hex.
            Some(kid) => {
                kid.eq_ignore_ascii_case(&key.thumbprint_hex()) || key.matches(None, Some(kid))
            }
            None => false,
        }
    }

    fn shown(&self) -> String {
        self.x5t_s256
            .clone()
            .or_else(|| self.x5t.clone())
            .or_else(|| self.kid.clone())
            .unwrap_or_default()
    }
}

/// Verifies `token`'s signature with one of `keys`. When the header names no
/// certificate and `try_all` is set, every valid key is tried (proofs made
/// with tools that omit `x5t`).
pub(crate) fn verify_signature(
    token: &str,
    keys: &[RegisteredKey],
    now: DateTime<Utc>,
    try_all: bool,
) -> Result<Verified, SignatureFailure> {
    let header = jsonwebtoken::decode_header(token)
        .map_err(|e| SignatureFailure::Malformed(e.to_string()))?;
    if !RSA_ALGORITHMS.contains(&header.alg) {
        return Err(SignatureFailure::Algorithm(format!("{:?}", header.alg)));
    }
    let hint = KeyHint {
        x5t_s256: header.x5t_s256.clone(),
        x5t: header.x5t.clone(),
        kid: header.kid.clone(),
    };
    let candidates: Vec<&RegisteredKey> = if hint.is_empty() && try_all {
        keys.iter().filter(|k| k.valid_at(now)).collect()
    } else {
        keys.iter().filter(|k| hint.names(k)).collect()
    };
    if candidates.is_empty() {
        return Err(SignatureFailure::KeyNotFound(hint.shown()));
    }
    let (message, signature) = token
        .rsplit_once('.')
        .ok_or_else(|| SignatureFailure::Malformed("no signature".into()))?;
    let mut saw_valid_key = false;
    for key in candidates {
        if !key.valid_at(now) {
            continue;
        }
        saw_valid_key = true;
        let Some(pkcs1) = &key.rsa_pkcs1 else {
            continue;
        };
        let decoding = DecodingKey::from_rsa_der(pkcs1);
        if jsonwebtoken::crypto::verify(signature, message.as_bytes(), &decoding, header.alg)
            .unwrap_or(false)
        {
            return Ok(Verified {
                claims: decode_claims(message)?,
                key_id: key.info.key_id,
            });
        }
    }
    Err(if saw_valid_key {
        SignatureFailure::Signature
    } else {
        SignatureFailure::KeyExpired
    })
}

fn decode_claims(message: &str) -> Result<Map<String, Value>, SignatureFailure> {
    let payload = message
        .split('.')
        .nth(1)
        .ok_or_else(|| SignatureFailure::Malformed("no payload".into()))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|e| SignatureFailure::Malformed(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| SignatureFailure::Malformed(e.to_string()))
}

/// A numeric date claim.
pub(crate) fn time_claim(claims: &Map<String, Value>, name: &str) -> Option<i64> {
    claims
        .get(name)
        .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
}

/// Whether `aud` (string or array) contains one of `expected`.
fn audience_matches(claims: &Map<String, Value>, expected: &[String]) -> bool {
    let matches = |aud: &str| expected.iter().any(|e| e.eq_ignore_ascii_case(aud));
    match claims.get("aud") {
        Some(Value::String(aud)) => matches(aud),
        Some(Value::Array(auds)) => auds.iter().filter_map(Value::as_str).any(matches),
        _ => false,
    }
}

/// `jti`s already redeemed, with their expiry, to refuse replays.
#[derive(Default)]
pub(crate) struct JtiCache {
    seen: HashMap<String, i64>,
}

impl JtiCache {
    /// Records `jti`; false when it was already used.
    pub fn redeem(&mut self, jti: &str, exp: i64, now: i64) -> bool {
        if self.seen.len() > 10_000 {
            self.seen.retain(|_, exp| *exp + SKEW_SECS > now);
        }
        self.seen.insert(jti.to_string(), exp).is_none()
    }
}

/// What a client assertion is checked against.
pub(crate) struct AssertionCheck<'a> {
    pub client_id: Uuid,
    /// Accepted audiences: the token endpoint URL the client posted to (and
    /// its form with the tenant GUID).
    pub audiences: &'a [String],
    pub now: DateTime<Utc>,
}

/// Verifies a client assertion for the certificate credential flow, mapping
/// each failure to the AADSTS code Entra documents for it. Returns the key
/// credential that signed it.
pub(crate) fn verify_client_assertion(
    assertion: &str,
    keys: &[RegisteredKey],
    check: &AssertionCheck,
    jtis: &mut JtiCache,
) -> Result<Uuid, AadError> {
    let verified = verify_signature(assertion, keys, check.now, false).map_err(|failure| match failure {
        SignatureFailure::Malformed(why) => AadError::new(
            "invalid_request",
            50027,
            format!("JWT token is invalid or malformed. {why}"),
        ),
        SignatureFailure::Algorithm(alg) => AadError::new(
            "invalid_client",
            5002738,
            format!(
                "Invalid JWT token. '{alg}' is not a supported signature algorithm. Supported signing algorithms are: 'RS256,RS384,RS512,PS256,PS384,PS512'"
            ),
        ),
        SignatureFailure::KeyNotFound(thumb) => AadError::new(
            "invalid_client",
            700027,
            format!(
                "Client assertion contains an invalid signature. [Reason - The key was not found., Thumbprint of key used by client: '{thumb}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{}'.]",
                check.client_id
            ),
        ),
        SignatureFailure::KeyExpired => AadError::new(
            "invalid_client",
            700027,
            "Client assertion contains an invalid signature. [Reason - The key used is expired.]",
        ),
        SignatureFailure::Signature => AadError::new(
            "invalid_client",
            700027,
            "Client assertion contains an invalid signature. [Reason - The provided signature value did not match the expected signature value.]",
        ),
    })?;
    let claims = &verified.claims;
    let client = check.client_id.to_string();
    let is_client = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .is_some_and(|v| v.eq_ignore_ascii_case(&client))
    };
    if !is_client("iss") || !is_client("sub") {
        return Err(AadError::new(
            "invalid_client",
            700021,
            "Client assertion application identifier doesn't match 'client_id' parameter. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials.",
        ));
    }
    if !audience_matches(claims, check.audiences) {
        return Err(AadError::new(
            "invalid_client",
            700023,
            "Client assertion audience claim does not match Realm issuer. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials.",
        ));
    }
    let now = check.now.timestamp();
    let out_of_range = || {
        AadError::new(
            "invalid_client",
            700024,
            format!(
                "Client assertion is not within its valid time range. Current time: {}, assertion valid from {}, expiry time of assertion {}.",
                check.now.format("%Y-%m-%dT%H:%M:%SZ"),
                fmt_time(time_claim(claims, "nbf")),
                fmt_time(time_claim(claims, "exp")),
            ),
        )
    };
    let exp = time_claim(claims, "exp").ok_or_else(out_of_range)?;
    let start = time_claim(claims, "nbf")
        .or_else(|| time_claim(claims, "iat"))
        .unwrap_or(now);
    if exp + SKEW_SECS <= now
        || start > now + SKEW_SECS
        || exp - start > MAX_LIFETIME_SECS + SKEW_SECS
    {
        return Err(out_of_range());
    }
    let jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .filter(|j| !j.is_empty())
        .ok_or_else(|| {
            AadError::new(
                "invalid_request",
                50027,
                "JWT token is invalid or malformed. The client assertion has no 'jti' claim.",
            )
        })?;
    if !jtis.redeem(&format!("{client}/{jti}"), exp, now) {
        return Err(AadError::new(
            "invalid_client",
            50013,
            "Assertion failed signature validation. [Reason - The client assertion 'jti' was already used; each assertion may be redeemed once.]",
        ));
    }
    Ok(verified.key_id)
}

fn fmt_time(t: Option<i64>) -> String {
    t.and_then(|t| DateTime::from_timestamp(t, 0))
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| "(none)".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jti_is_single_use() {
        let mut jtis = JtiCache::default();
        assert!(jtis.redeem("a", 100, 0));
        assert!(!jtis.redeem("a", 100, 0));
        assert!(jtis.redeem("b", 100, 0));
    }

    #[test]
    fn audience_may_be_a_list() {
        let expected = vec!["http://x/t/oauth2/v2.0/token".to_string()];
        let mut claims = Map::new();
        claims.insert(
            "aud".into(),
            serde_json::json!(["other", "http://x/t/oauth2/v2.0/token"]),
        );
        assert!(audience_matches(&claims, &expected));
        claims.insert("aud".into(), serde_json::json!("other"));
        assert!(!audience_matches(&claims, &expected));
    }
}
