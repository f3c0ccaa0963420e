//! The platform app's certificate: an RSA key and a self-signed X.509
//! certificate, kept together as one JSON secret. Entra accepts RSA keys
//! only, so that is all this makes.

use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::secrets::SecretValue;

#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error(
        "the certificate secret is not valid JSON of the expected shape ({0}); it must hold private_key_pem and certificate_pem"
    )]
    Shape(String),
    #[error("the certificate secret holds no PEM certificate")]
    NoCertificate,
    #[error("the certificate's key is not a usable RSA private key: {0}")]
    Key(String),
    #[error("cannot generate a certificate: {0}")]
    Generate(String),
}

/// How the stored JSON looks (Secrets Manager value of the app-certificate
/// secret). The private key never leaves the secret store otherwise.
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredCertificate {
    pub private_key_pem: String,
    pub certificate_pem: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// Hex SHA-1 of the certificate DER (what Entra shows as "thumbprint").
    pub thumbprint_sha1: String,
    pub thumbprint_sha256: String,
    /// The key credential id on the app, once registered.
    #[serde(default)]
    pub key_id: Option<String>,
}

impl std::fmt::Debug for StoredCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredCertificate")
            .field("thumbprint_sha1", &self.thumbprint_sha1)
            .field("not_after", &self.not_after)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// A certificate ready to sign assertions with.
#[derive(Clone)]
pub struct AppCertificate {
    pub stored: StoredCertificate,
    der: Vec<u8>,
    key: jsonwebtoken::EncodingKey,
}

impl std::fmt::Debug for AppCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.stored.fmt(f)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The DER of the first certificate in a PEM text.
pub fn certificate_der(pem: &str) -> Option<Vec<u8>> {
    let start = pem.find("-----BEGIN CERTIFICATE-----")? + "-----BEGIN CERTIFICATE-----".len();
    let end = start + pem[start..].find("-----END CERTIFICATE-----")?;
    let body: String = pem[start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

impl AppCertificate {
    pub fn from_stored(stored: StoredCertificate) -> Result<Self, CertificateError> {
        let der =
            certificate_der(&stored.certificate_pem).ok_or(CertificateError::NoCertificate)?;
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(stored.private_key_pem.as_bytes())
            .map_err(|e| CertificateError::Key(e.to_string()))?;
        Ok(Self { stored, der, key })
    }

    pub fn from_secret(secret: &SecretValue) -> Result<Self, CertificateError> {
        let stored: StoredCertificate = serde_json::from_str(secret.expose())
            .map_err(|e| CertificateError::Shape(e.to_string()))?;
        Self::from_stored(stored)
    }

    pub fn to_secret(&self) -> SecretValue {
        SecretValue::new(serde_json::to_string(&self.stored).unwrap_or_default())
    }

    /// A new RSA key and self-signed certificate valid from `now` for
    /// `validity` (rotation keeps a few days so a missed rotation is not an
    /// outage).
    pub fn generate(
        common_name: &str,
        now: DateTime<Utc>,
        validity: Duration,
        key_bits: KeyBits,
    ) -> Result<Self, CertificateError> {
        let g = |e: rcgen::Error| CertificateError::Generate(e.to_string());
        let size = match key_bits {
            KeyBits::Rsa2048 => rcgen::RsaKeySize::_2048,
            KeyBits::Rsa3072 => rcgen::RsaKeySize::_3072,
        };
        let key = rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, size).map_err(g)?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(g)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        // Backdate a little for clocks that run behind.
        let not_before = now - Duration::minutes(5);
        let not_after = now + validity;
        params.not_before = to_offset(not_before)?;
        params.not_after = to_offset(not_after)?;
        let cert = params.self_signed(&key).map_err(g)?;
        let der = cert.der().to_vec();
        let stored = StoredCertificate {
            private_key_pem: key.serialize_pem(),
            certificate_pem: cert.pem(),
            not_before,
            not_after,
            thumbprint_sha1: hex(&Sha1::digest(&der)),
            thumbprint_sha256: hex(&Sha256::digest(&der)),
            key_id: None,
        };
        Self::from_stored(stored)
    }

    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The certificate as the base64 DER that Graph's `keyCredential.key`
    /// and the portal upload take.
    pub fn der_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.der)
    }

    /// `x5t`: base64url SHA-1 of the DER (legacy RS256 assertions).
    pub fn x5t(&self) -> String {
        b64url(&Sha1::digest(&self.der))
    }

    /// `x5t#S256`: base64url SHA-256 of the DER (PS256 assertions).
    pub fn x5t_s256(&self) -> String {
        b64url(&Sha256::digest(&self.der))
    }

    pub fn signing_key(&self) -> &jsonwebtoken::EncodingKey {
        &self.key
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum KeyBits {
    #[default]
    Rsa2048,
    Rsa3072,
}

fn to_offset(t: DateTime<Utc>) -> Result<time::OffsetDateTime, CertificateError> {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp())
        .map_err(|e| CertificateError::Generate(e.to_string()))
}
