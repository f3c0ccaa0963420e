//! Reading the certificates registered on an app: thumbprints, validity and
//! the RSA public key that verifies client assertions and proofs.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use uuid::Uuid;
use x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION;

use crate::error::CertError;
use crate::model::KeyCredentialInfo;

/// A certificate key credential as the simulator keeps it.
#[derive(Clone, Debug)]
pub(crate) struct RegisteredKey {
    pub info: KeyCredentialInfo,
    /// The PKCS#1 RSAPublicKey; `None` for a non-RSA certificate, which Entra
    /// accepts as a key credential but never for a client assertion.
    pub rsa_pkcs1: Option<Vec<u8>>,
    /// The certificate subject, e.g. `CN=dirsync`; Graph's `displayName`.
    pub subject: String,
}

impl RegisteredKey {
    pub fn parse(der: &[u8], key_id: Uuid) -> Result<RegisteredKey, CertError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| CertError::Parse(e.to_string()))?;
        let validity = cert.validity();
        let start = DateTime::from_timestamp(validity.not_before.timestamp(), 0)
            .ok_or(CertError::Validity)?;
        let end = DateTime::from_timestamp(validity.not_after.timestamp(), 0)
            .ok_or(CertError::Validity)?;
        let spki = cert.public_key();
        let rsa_pkcs1 = (spki.algorithm.algorithm == OID_PKCS1_RSAENCRYPTION)
            .then(|| spki.subject_public_key.data.to_vec());
        Ok(RegisteredKey {
            info: KeyCredentialInfo {
                key_id,
                thumbprint_sha1: Sha1::digest(der).to_vec(),
                thumbprint_sha256: Sha256::digest(der).to_vec(),
                start,
                end,
                der: der.to_vec(),
            },
            rsa_pkcs1,
            subject: cert.subject().to_string(),
        })
    }

    /// Whether the certificate is within its validity period at `now`.
    pub fn valid_at(&self, now: DateTime<Utc>) -> bool {
        self.info.start <= now && now <= self.info.end
    }

    /// Whether a JWT header's thumbprint names this certificate: `x5t#S256`
    /// (SHA-256) or `x5t` (SHA-1), base64url.
    pub fn matches(&self, x5t_s256: Option<&str>, x5t: Option<&str>) -> bool {
        if let Some(s256) = x5t_s256 {
            return decode_thumbprint(s256).as_deref()
                == Some(self.info.thumbprint_sha256.as_slice());
        }
        if let Some(s1) = x5t {
            return decode_thumbprint(s1).as_deref() == Some(self.info.thumbprint_sha1.as_slice());
        }
        false
    }

    /// The SHA-1 thumbprint in uppercase hex, as the Entra portal shows it
    /// and Graph reports it in `customKeyIdentifier`.
    pub fn thumbprint_hex(&self) -> String {
        self.info
            .thumbprint_sha1
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect()
    }
}

/// Thumbprints arrive base64url; some clients pad them or use the standard
/// alphabet, which Entra tolerates.
fn decode_thumbprint(raw: &str) -> Option<Vec<u8>> {
    let normalized: String = raw
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    URL_SAFE_NO_PAD.decode(normalized).ok()
}
