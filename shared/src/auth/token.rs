//! Access tokens for Microsoft Graph by the client-credentials grant, with a
//! certificate assertion (consent connectors) or a client secret (legacy
//! connectors), for the `.default` scope of the cloud's Graph (each national
//! cloud has its own). Cached per authority, tenant, scope and client,
//! refreshed ahead of `expires_in` (which Entra randomises between 60 and 90
//! minutes). The same client authentication redeems the authorization code
//! of an OpenID Connect sign-in (the consent's proof of who signed in).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use uuid::Uuid;

use crate::clock::Clock;
use crate::domain::SecretRef;
use crate::secrets::{SecretError, SecretStore, SecretValue, Stage};

use super::aadsts::{self, CERTIFICATE_REFUSED, Signer, TokenErrorBody};
use super::assertion::{AssertionAlg, client_assertion};
use super::certificate::{AppCertificate, CertificateError};

/// Refresh this long before a token expires, so no request carries a token
/// that dies in flight.
const REFRESH_MARGIN: Duration = Duration::minutes(5);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Credential {
    /// The platform's multi-tenant app; its certificate secret has
    /// AWSCURRENT (and during a rotation AWSPREVIOUS) versions.
    Certificate {
        client_id: Uuid,
        secret: SecretRef,
        alg: AssertionAlg,
    },
    /// A customer's app registration and its client secret.
    ClientSecret { client_id: Uuid, secret: SecretRef },
}

impl Credential {
    pub fn client_id(&self) -> Uuid {
        match self {
            Credential::Certificate { client_id, .. }
            | Credential::ClientSecret { client_id, .. } => *client_id,
        }
    }

    fn signer(&self) -> Signer {
        match self {
            Credential::Certificate { .. } => Signer::ConsentApp,
            Credential::ClientSecret { .. } => Signer::LegacyApp,
        }
    }
}

#[derive(Debug, Clone)]
pub struct AccessToken {
    pub value: SecretValue,
    pub expires_at: DateTime<Utc>,
    /// When to get a new one: five minutes before expiry, or a tenth of the
    /// lifetime for short-lived tokens.
    pub refresh_at: DateTime<Utc>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    /// Entra refused; `message` is advice for people.
    #[error("{message}")]
    Refused { code: Option<u64>, message: String },
    #[error("{0}")]
    Secret(#[from] SecretError),
    #[error("the app certificate cannot be used: {0}")]
    Certificate(String),
    #[error(
        "the sign-in service at {authority} could not be reached ({detail}); check the network and the authority URL"
    )]
    Unreachable { authority: String, detail: String },
    #[error("the sign-in service answered something unexpected: {0}")]
    Protocol(String),
}

impl From<CertificateError> for AuthError {
    fn from(e: CertificateError) -> Self {
        AuthError::Certificate(e.to_string())
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(deserialize_with = "number_or_string")]
    expires_in: i64,
}

fn number_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        Num(i64),
        Str(String),
    }
    match N::deserialize(d)? {
        N::Num(n) => Ok(n),
        N::Str(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

/// Authority, tenant, scope (one cloud's Graph) and credential.
type CacheKey = (String, String, String, Credential);

pub struct TokenProvider {
    http: reqwest::Client,
    secrets: Arc<dyn SecretStore>,
    clock: Arc<dyn Clock>,
    /// One slot per (authority, tenant, scope, credential). A slot's lock
    /// is held across a fetch so that concurrent requests for the same
    /// token wait for one fetch; other tenants are not held up by a slow
    /// sign-in.
    cache: std::sync::Mutex<HashMap<CacheKey, Arc<tokio::sync::Mutex<Option<AccessToken>>>>>,
}

/// One request to sign with the platform app's stored certificate.
struct Signed<'a> {
    to: &'a Endpoint<'a>,
    client_id: &'a Uuid,
    secret: &'a SecretRef,
    alg: AssertionAlg,
    grant: &'a [(&'static str, String)],
}

fn refused_certificate(answer: &Result<String, AuthError>) -> bool {
    matches!(answer, Err(AuthError::Refused { code: Some(code), .. }) if CERTIFICATE_REFUSED.contains(code))
}

/// A sign-in that takes longer than this has failed.
const SIGN_IN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl TokenProvider {
    pub fn new(
        http: reqwest::Client,
        secrets: Arc<dyn SecretStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            http,
            secrets,
            clock,
            cache: std::sync::Mutex::default(),
        }
    }

    pub fn token_endpoint(authority: &str, tenant: &str) -> String {
        format!(
            "{}/{tenant}/oauth2/v2.0/token",
            authority.trim_end_matches('/')
        )
    }

    /// A valid token for `scope` (the `.default` scope of the cloud's
    /// Graph), from the cache or freshly obtained.
    pub async fn token(
        &self,
        authority: &str,
        tenant: &str,
        scope: &str,
        credential: &Credential,
    ) -> Result<AccessToken, AuthError> {
        let slot = self.slot(cache_key(authority, tenant, scope, credential));
        let mut cached = slot.lock().await;
        if let Some(t) = cached.as_ref()
            && self.clock.now() < t.refresh_at
        {
            return Ok(t.clone());
        }
        let token = self.fetch(authority, tenant, scope, credential).await?;
        *cached = Some(token.clone());
        Ok(token)
    }

    /// A provider over `secrets` that shares this one's HTTP client and
    /// clock but none of its tokens: a candidate secret, tested before it
    /// replaces the stored one, is read through it. The cache is keyed by
    /// the secret's name, not its value: tested through this provider, the
    /// candidate would find the stored secret's token (and pass with it),
    /// or leave its own behind for the next sync (which would then run on a
    /// secret that was never stored).
    pub fn isolated(&self, secrets: Arc<dyn SecretStore>) -> Self {
        Self::new(self.http.clone(), secrets, self.clock.clone())
    }

    /// Forgets the cached token of (authority, tenant, scope, credential),
    /// whatever it is: the credential's secret has just been replaced, so
    /// the next request signs in with the new one. (A fetch under way
    /// finishes into the slot it holds, which nothing reads any more.)
    pub fn forget(&self, authority: &str, tenant: &str, scope: &str, credential: &Credential) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&cache_key(authority, tenant, scope, credential));
    }

    fn slot(&self, key: CacheKey) -> Arc<tokio::sync::Mutex<Option<AccessToken>>> {
        let mut all = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        all.entry(key).or_default().clone()
    }

    /// Forgets a cached token that Graph refused (401) — unless another
    /// request has already replaced it.
    pub async fn invalidate(
        &self,
        authority: &str,
        tenant: &str,
        scope: &str,
        credential: &Credential,
        refused: &AccessToken,
    ) {
        let slot = self.slot(cache_key(authority, tenant, scope, credential));
        let mut cached = slot.lock().await;
        if cached.as_ref().is_some_and(|t| t.value == refused.value) {
            *cached = None;
        }
    }

    async fn fetch(
        &self,
        authority: &str,
        tenant: &str,
        scope: &str,
        credential: &Credential,
    ) -> Result<AccessToken, AuthError> {
        let to = Endpoint::new(authority, tenant);
        let body = self
            .authenticated_post(&to, credential, &client_credentials(scope))
            .await?;
        self.access_token(&body)
    }

    /// Redeems the authorization code of an OpenID Connect sign-in to
    /// `tenant` as a confidential client (the platform app, with its
    /// certificate or secret), and returns the `id_token` the token
    /// endpoint answered with. Never cached: a code is redeemed once.
    pub async fn redeem_code(
        &self,
        to: (&str, &str),
        credential: &Credential,
        code: &str,
        redirect_uri: &str,
    ) -> Result<String, AuthError> {
        let to = Endpoint::new(to.0, to.1);
        let grant = [
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.to_owned()),
            ("redirect_uri", redirect_uri.to_owned()),
            ("scope", "openid".to_owned()),
        ];
        let body = self.authenticated_post(&to, credential, &grant).await?;
        #[derive(Deserialize)]
        struct CodeResponse {
            id_token: String,
        }
        serde_json::from_str::<CodeResponse>(&body)
            .map(|r| r.id_token)
            .map_err(|e| AuthError::Protocol(format!("code redemption response: {e}")))
    }

    /// Posts `grant` with the client's credential and returns the body of
    /// the successful answer.
    async fn authenticated_post(
        &self,
        to: &Endpoint<'_>,
        credential: &Credential,
        grant: &[(&'static str, String)],
    ) -> Result<String, AuthError> {
        match credential {
            Credential::ClientSecret { client_id, secret } => {
                let secret = self.secrets.current(secret).await?;
                let mut form = vec![
                    ("client_id", client_id.to_string()),
                    ("client_secret", secret.expose().to_owned()),
                ];
                form.extend_from_slice(grant);
                self.post(to, &form, credential.signer()).await
            }
            Credential::Certificate {
                client_id,
                secret,
                alg,
            } => {
                let signed = Signed {
                    to,
                    client_id,
                    secret,
                    alg: *alg,
                    grant,
                };
                self.with_stored_certificate(&signed).await
            }
        }
    }

    /// Signs with the stored current certificate, read every time a token
    /// is needed so that a rotation is picked up without a restart. When
    /// Entra refuses it, the store may hold a stale copy (another process
    /// rotated): it is read again, and a newer current tried; failing that,
    /// mid-rotation the new certificate may be current here before Entra
    /// accepts it, and the previous one still works.
    async fn with_stored_certificate(&self, s: &Signed<'_>) -> Result<String, AuthError> {
        let current = AppCertificate::from_secret(&self.secrets.current(s.secret).await?)?;
        let first = self.sign_with(s, &current).await;
        if !refused_certificate(&first) {
            return first;
        }
        self.secrets.forget(s.secret);
        let reread = AppCertificate::from_secret(&self.secrets.current(s.secret).await?)?;
        if reread.stored.thumbprint_sha1 != current.stored.thumbprint_sha1 {
            tracing::info!(
                thumbprint = %reread.stored.thumbprint_sha1,
                "the app certificate was rotated elsewhere; signing with the new one"
            );
            let second = self.sign_with(s, &reread).await;
            if !refused_certificate(&second) {
                return second;
            }
        }
        let Some(previous) = self.secrets.get(s.secret, Stage::Previous).await? else {
            return first;
        };
        let previous = AppCertificate::from_secret(&previous)?;
        tracing::warn!(
            thumbprint = %reread.stored.thumbprint_sha1,
            "the current app certificate was refused; using the previous one"
        );
        self.sign_with(s, &previous).await.or(first)
    }

    async fn sign_with(&self, s: &Signed<'_>, cert: &AppCertificate) -> Result<String, AuthError> {
        self.with_certificate(s.to, s.client_id, cert, s.alg, s.grant)
            .await
    }

    /// A token signed with a certificate that is not (yet) the stored
    /// current one, uncached: a rotation's test of the pending certificate.
    pub async fn token_with_certificate(
        &self,
        (authority, tenant, scope): (&str, &str, &str),
        client_id: &Uuid,
        cert: &AppCertificate,
        alg: AssertionAlg,
    ) -> Result<AccessToken, AuthError> {
        let to = Endpoint::new(authority, tenant);
        let body = self
            .with_certificate(&to, client_id, cert, alg, &client_credentials(scope))
            .await?;
        self.access_token(&body)
    }

    /// Posts `grant` with a client assertion signed by `cert`.
    async fn with_certificate(
        &self,
        to: &Endpoint<'_>,
        client_id: &Uuid,
        cert: &AppCertificate,
        alg: AssertionAlg,
        grant: &[(&'static str, String)],
    ) -> Result<String, AuthError> {
        let assertion = client_assertion(cert, alg, client_id, &to.url, self.clock.now())
            .map_err(|e| AuthError::Certificate(e.to_string()))?;
        let mut form = vec![
            ("client_id", client_id.to_string()),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned(),
            ),
            ("client_assertion", assertion),
        ];
        form.extend_from_slice(grant);
        self.post(to, &form, Signer::ConsentApp).await
    }

    /// An access token from a successful token response.
    fn access_token(&self, body: &str) -> Result<AccessToken, AuthError> {
        let t: TokenResponse = serde_json::from_str(body)
            .map_err(|e| AuthError::Protocol(format!("token response: {e}")))?;
        let now = self.clock.now();
        let lifetime = Duration::seconds(t.expires_in.max(1));
        Ok(AccessToken {
            value: SecretValue::new(t.access_token),
            expires_at: now + lifetime,
            refresh_at: now + lifetime - REFRESH_MARGIN.min(lifetime / 10),
        })
    }

    /// Posts a token request; returns the body of a successful answer, or
    /// Entra's refusal as advice.
    async fn post(
        &self,
        to: &Endpoint<'_>,
        form: &[(&str, String)],
        signer: Signer,
    ) -> Result<String, AuthError> {
        let unreachable = |e: reqwest::Error| AuthError::Unreachable {
            authority: to.authority.to_owned(),
            detail: without_url(&e),
        };
        // Transient failures of the sign-in service get a few quick retries.
        let mut attempt = 0;
        let response = loop {
            attempt += 1;
            match self
                .http
                .post(&to.url)
                .timeout(SIGN_IN_TIMEOUT)
                .form(form)
                .send()
                .await
            {
                Ok(r) if r.status().is_server_error() && attempt < 3 => {}
                Ok(r) => break r,
                Err(e) if attempt >= 3 => return Err(unreachable(e)),
                Err(_) => {}
            }
            tokio::time::sleep(std::time::Duration::from_millis(200 * attempt)).await;
        };
        let status = response.status();
        let body = response.text().await.map_err(unreachable)?;
        if status.is_success() {
            return Ok(body);
        }
        let err: TokenErrorBody = serde_json::from_str(&body).unwrap_or_default();
        let code = err.code();
        let mut message = aadsts::advice(code, signer, to.tenant);
        if code.is_some() && !err.summary().is_empty() {
            message = format!("{message} (Entra said: {})", err.summary());
        } else if code.is_none() {
            message = format!("{message} (HTTP {status})");
        }
        Err(AuthError::Refused { code, message })
    }
}

fn cache_key(authority: &str, tenant: &str, scope: &str, credential: &Credential) -> CacheKey {
    (
        authority.to_owned(),
        tenant.to_ascii_lowercase(),
        scope.to_owned(),
        credential.clone(),
    )
}

/// The client-credentials grant of an app-only token for `scope`.
fn client_credentials(scope: &str) -> [(&'static str, String); 2] {
    [
        ("scope", scope.to_owned()),
        ("grant_type", "client_credentials".to_owned()),
    ]
}

/// A tenant's token endpoint.
struct Endpoint<'a> {
    authority: &'a str,
    tenant: &'a str,
    url: String,
}

impl<'a> Endpoint<'a> {
    fn new(authority: &'a str, tenant: &'a str) -> Self {
        Self {
            authority,
            tenant,
            url: TokenProvider::token_endpoint(authority, tenant),
        }
    }
}

/// reqwest errors name the URL, which for some requests carries a query;
/// keep only the kind of failure.
pub(crate) fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "the response was cut off"
    } else if e.is_request() {
        "the request failed"
    } else {
        "HTTP error"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {detail}")
    }
}
