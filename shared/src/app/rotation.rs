//! Daily rotation of the platform app's certificate, as a Secrets Manager
//! rotation function: four idempotent steps, each safe to repeat, and a
//! failure at any of them leaves the current certificate working.
//!
//! - `createSecret`: a new RSA key and self-signed certificate, stored as the
//!   AWSPENDING version.
//! - `setSecret`: the new certificate registered on the app with Graph
//!   `addKey`, proven by the current key.
//! - `testSecret`: a token obtained with the pending certificate.
//! - `finishSecret`: AWSPENDING becomes AWSCURRENT; every key credential on
//!   the app other than the current and previous certificates is removed.

use std::sync::Arc;

use chrono::Duration;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::auth::assertion::key_proof;
use crate::auth::{AppCertificate, AssertionAlg, AuthError, KeyBits, TokenProvider};
use crate::clock::Clock;
use crate::domain::{SecretRef, graph_scope};
use crate::secrets::{SecretError, SecretStore, Stage};
use crate::source::graph::{GraphClient, GraphFailure, GraphTarget};
use crate::source::retry::{RetryPolicy, TenantLimiter};
use crate::source::{RequestStats, SourceError};

/// What Secrets Manager sends a rotation function.
#[derive(Debug, Clone, Deserialize)]
pub struct RotationEvent {
    #[serde(rename = "SecretId")]
    pub secret_id: String,
    #[serde(rename = "ClientRequestToken")]
    pub token: String,
    #[serde(rename = "Step")]
    pub step: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Graph(#[from] SourceError),
    #[error("the stored certificate is unusable: {0}")]
    Certificate(String),
}

/// Who the app is and where it lives.
#[derive(Debug, Clone)]
pub struct AppIdentity {
    pub client_id: Uuid,
    pub object_id: Uuid,
    /// The app's home tenant (its keys are managed there).
    pub home_tenant: String,
    pub certificate: SecretRef,
    pub authority_url: String,
    pub graph_url: String,
    pub assertion: AssertionAlg,
}

pub struct Rotator {
    pub app: AppIdentity,
    pub secrets: Arc<dyn SecretStore>,
    pub tokens: Arc<TokenProvider>,
    pub clock: Arc<dyn Clock>,
    /// How long each certificate is valid: a few days, so that a missed
    /// rotation or two is not an outage.
    pub validity: Duration,
    pub key_bits: KeyBits,
    pub policy: RetryPolicy,
}

impl Rotator {
    fn graph(&self) -> GraphClient {
        let target = GraphTarget {
            authority_url: self.app.authority_url.clone(),
            graph_url: self.app.graph_url.clone(),
            tenant: self.app.home_tenant.clone(),
            credential: crate::auth::Credential::Certificate {
                client_id: self.app.client_id,
                secret: self.app.certificate.clone(),
                alg: self.app.assertion,
            },
        };
        GraphClient::new(
            target,
            self.tokens.clone(),
            Arc::new(TenantLimiter::new(1)),
            self.policy,
        )
    }

    async fn certificate(&self, stage: Stage) -> Result<Option<AppCertificate>, RotationError> {
        self.secrets
            .get(&self.app.certificate, stage)
            .await?
            .map(|s| {
                AppCertificate::from_secret(&s)
                    .map_err(|e| RotationError::Certificate(e.to_string()))
            })
            .transpose()
    }

    async fn pending(&self, token: &str) -> Result<AppCertificate, RotationError> {
        let value = self
            .secrets
            .get_version(&self.app.certificate, token)
            .await?
            .ok_or_else(|| {
                RotationError::Refused(format!(
                    "version {token} has no value: run createSecret first"
                ))
            })?;
        AppCertificate::from_secret(&value).map_err(|e| RotationError::Certificate(e.to_string()))
    }

    /// The app's registered key credentials: (keyId, SHA-1 thumbprint hex).
    async fn registered(
        &self,
        graph: &GraphClient,
    ) -> Result<Vec<(String, String)>, RotationError> {
        let mut stats = RequestStats::default();
        let url = format!(
            "{}?$select=keyCredentials",
            graph.url(&format!("/applications/{}", self.app.object_id))
        );
        let app = graph.get(&url, &mut stats).await.map_err(graph_error)?;
        Ok(app["keyCredentials"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|k| {
                Some((
                    k["keyId"].as_str()?.to_owned(),
                    thumbprint_of(k["customKeyIdentifier"].as_str()?)?,
                ))
            })
            .collect())
    }

    pub async fn step(&self, event: &RotationEvent) -> Result<(), RotationError> {
        if !names_secret(&event.secret_id, self.app.certificate.as_str()) {
            return Err(RotationError::Refused(format!(
                "this function rotates {} only, not {}",
                self.app.certificate.as_str(),
                event.secret_id
            )));
        }
        let stages = self.secrets.version_stages(&self.app.certificate).await?;
        let of_token: Vec<Stage> = stages
            .iter()
            .find(|(id, _)| *id == event.token)
            .map(|(_, s)| s.clone())
            .unwrap_or_default();
        if of_token.contains(&Stage::Current) {
            // Already done: a repeated invocation of a finished rotation.
            return Ok(());
        }
        match event.step.as_str() {
            "createSecret" => self.create(&event.token, &of_token).await,
            "setSecret" => self.set(&event.token).await,
            "testSecret" => self.test(&event.token).await,
            "finishSecret" => self.finish(&event.token).await,
            other => Err(RotationError::Refused(format!(
                "unknown rotation step {other:?}"
            ))),
        }
    }

    async fn create(&self, token: &str, stages: &[Stage]) -> Result<(), RotationError> {
        if stages.contains(&Stage::Pending)
            && self
                .secrets
                .get_version(&self.app.certificate, token)
                .await?
                .is_some()
        {
            return Ok(());
        }
        let cert = AppCertificate::generate(
            "dirsync app certificate",
            self.clock.now(),
            self.validity,
            self.key_bits,
        )
        .map_err(|e| RotationError::Certificate(e.to_string()))?;
        self.secrets
            .put_pending(&self.app.certificate, token, cert.to_secret())
            .await?;
        tracing::info!(thumbprint = %cert.stored.thumbprint_sha1, not_after = %cert.stored.not_after, "created the pending certificate");
        Ok(())
    }

    async fn set(&self, token: &str) -> Result<(), RotationError> {
        let pending = self.pending(token).await?;
        let graph = self.graph();
        let thumb = pending.stored.thumbprint_sha1.to_ascii_lowercase();
        if self
            .registered(&graph)
            .await?
            .iter()
            .any(|(_, t)| *t == thumb)
        {
            return Ok(());
        }
        let current = self.certificate(Stage::Current).await?.ok_or_else(|| {
            RotationError::Refused("there is no current certificate to prove the app's identity: bootstrap one first (README, Deploy)".into())
        })?;
        let proof = key_proof(&current, &self.app.object_id, self.clock.now())
            .map_err(|e| RotationError::Certificate(e.to_string()))?;
        let body = json!({
            "keyCredential": {"type": "AsymmetricX509Cert", "usage": "Verify", "key": pending.der_base64()},
            "passwordCredential": null,
            "proof": proof,
        });
        let mut stats = RequestStats::default();
        let url = graph.url(&format!("/applications/{}/addKey", self.app.object_id));
        let added: Value = graph
            .post(&url, &body, &mut stats)
            .await
            .map_err(graph_error)?;
        tracing::info!(key_id = %added["keyId"], thumbprint = %thumb, "registered the pending certificate on the app");
        Ok(())
    }

    async fn test(&self, token: &str) -> Result<(), RotationError> {
        let pending = self.pending(token).await?;
        self.tokens
            .token_with_certificate(
                (
                    &self.app.authority_url,
                    &self.app.home_tenant,
                    &graph_scope(&self.app.graph_url),
                ),
                &self.app.client_id,
                &pending,
                self.app.assertion,
            )
            .await?;
        Ok(())
    }

    async fn finish(&self, token: &str) -> Result<(), RotationError> {
        self.pending(token).await?;
        self.secrets.promote(&self.app.certificate, token).await?;
        // Keep the new current certificate and the one before it.
        let current = self.certificate(Stage::Current).await?;
        let previous = self.certificate(Stage::Previous).await?;
        let keep: Vec<String> = [current.as_ref(), previous.as_ref()]
            .into_iter()
            .flatten()
            .map(|c| c.stored.thumbprint_sha1.to_ascii_lowercase())
            .collect();
        let Some(signer) = current else {
            return Ok(());
        };
        let graph = self.graph();
        let registered = self.registered(&graph).await?;
        // If the current certificate is not recognisable among the app's
        // keys, removing anything could lock the app out: keep them all.
        if !registered.iter().any(|(_, t)| keep.first() == Some(t)) {
            tracing::warn!(
                "the current certificate is not among the app's keys as listed; no key was removed"
            );
            return Ok(());
        }
        for (key_id, thumb) in registered {
            if keep.contains(&thumb) {
                continue;
            }
            let proof = key_proof(&signer, &self.app.object_id, self.clock.now())
                .map_err(|e| RotationError::Certificate(e.to_string()))?;
            let mut stats = RequestStats::default();
            let url = graph.url(&format!("/applications/{}/removeKey", self.app.object_id));
            graph
                .post(&url, &json!({"keyId": key_id, "proof": proof}), &mut stats)
                .await
                .map_err(graph_error)?;
            tracing::info!(%key_id, thumbprint = %thumb, "removed an old certificate from the app");
        }
        Ok(())
    }
}

/// A key credential's `customKeyIdentifier` as a lower-case hex SHA-1
/// thumbprint. Graph types it as binary (base64 of the thumbprint's bytes);
/// some tools store the hex text itself, base64-encoded or not.
fn thumbprint_of(identifier: &str) -> Option<String> {
    use base64::Engine as _;
    let is_hex = |s: &str| s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit());
    if is_hex(identifier) {
        return Some(identifier.to_ascii_lowercase());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(identifier)
        .ok()?;
    if bytes.len() == 20 {
        return Some(bytes.iter().map(|b| format!("{b:02x}")).collect());
    }
    let text = String::from_utf8(bytes).ok()?;
    is_hex(&text).then(|| text.to_ascii_lowercase())
}

/// Whether a rotation event names our secret: by name, or by its ARN
/// (`…:secret:<name>-<6 random characters>`).
fn names_secret(secret_id: &str, name: &str) -> bool {
    secret_id == name
        || secret_id
            .rsplit_once(":secret:")
            .and_then(|(_, rest)| rest.rsplit_once('-'))
            .is_some_and(|(n, suffix)| n == name && suffix.len() == 6)
}

fn graph_error(f: GraphFailure) -> RotationError {
    RotationError::Graph(match f {
        GraphFailure::Source(e) => e,
        GraphFailure::NotFound => SourceError::Config(
            "the app registration was not found: check DIRSYNC_APP_OBJECT_ID (the object ID, not the client ID)".into(),
        ),
        GraphFailure::Forbidden(e) => SourceError::Permission(format!(
            "Graph refused to manage the app's keys ({}: {}); the app needs Application.ReadWrite.OwnedBy in its home tenant",
            e.code, e.message
        )),
        GraphFailure::ResyncRequired(why) => SourceError::Protocol(why),
    })
}

/// The first certificate, before any rotation can run (addKey needs a valid
/// key to prove with): generated here, stored as AWSCURRENT, and returned so
/// the operator can upload its public part to the app registration.
pub async fn bootstrap(
    secrets: &dyn SecretStore,
    name: &SecretRef,
    now: chrono::DateTime<chrono::Utc>,
    validity: Duration,
) -> Result<AppCertificate, RotationError> {
    let cert = AppCertificate::generate("dirsync app certificate", now, validity, KeyBits::Rsa2048)
        .map_err(|e| RotationError::Certificate(e.to_string()))?;
    secrets.put(name, cert.to_secret()).await?;
    Ok(cert)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprints_are_read_in_every_form_graph_uses() {
        let hex = "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3";
        assert_eq!(thumbprint_of(&hex.to_uppercase()).as_deref(), Some(hex));
        let bytes: Vec<u8> = (0..20)
            .map(|i| u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).unwrap())
            .collect();
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        assert_eq!(thumbprint_of(&b64).as_deref(), Some(hex));
        let b64_text = base64::engine::general_purpose::STANDARD.encode(hex.to_uppercase());
        assert_eq!(thumbprint_of(&b64_text).as_deref(), Some(hex));
        assert_eq!(thumbprint_of("my-key"), None);
    }

    #[test]
    fn the_event_must_name_our_secret() {
        assert!(names_secret(
            "dirsync-prod/app-certificate",
            "dirsync-prod/app-certificate"
        ));
        assert!(names_secret(
            "arn:aws:secretsmanager:eu-west-2:123456789012:secret:dirsync-prod/app-certificate-AbCdEf",
            "dirsync-prod/app-certificate"
        ));
        assert!(!names_secret(
            "arn:aws:secretsmanager:eu-west-2:123456789012:secret:dirsync-prod/app-certificate-staging-AbCdEf",
            "dirsync-prod/app-certificate"
        ));
        assert!(!names_secret(
            "dirsync-prod/app-certificate-staging",
            "dirsync-prod/app-certificate"
        ));
    }
}
