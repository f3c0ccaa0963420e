//! Access tokens for Microsoft Graph by the client-credentials grant, with a
//! certificate assertion (consent connectors) or a client secret (legacy
//! connectors), for the `.default` scope of the cloud's Graph (each national
//! cloud has its own). Cached per authority, tenant, scope and client,
//! refreshed ahead of `expires_in` (which Entra randomises between 60 and 90
//! minutes). The same client authentication redeems the authorization code
//! of an OpenID Connect sign-in (the consent's proof of who signed in).
//! Every request goes through `oauth2`'s client ([`super::oauth`]): the
//! certificate's assertion as extra parameters (`oauth2` has no
//! `private_key_jwt`), Entra's error body as a typed error.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use oauth2::{
    AuthType, AuthorizationCode, ClientId, ClientSecret, RedirectUrl, RequestTokenError, Scope,
    TokenResponse as _, TokenUrl,
};
use uuid::Uuid;

use crate::clock::Clock;
use crate::domain::SecretRef;
use crate::secrets::{SecretError, SecretStore, SecretValue, Stage};

use super::aadsts::{self, CERTIFICATE_REFUSED, Signer, TokenErrorBody};
use super::assertion::{AssertionAlg, client_assertion};
use super::certificate::{AppCertificate, CertificateError};
use super::oauth::{self, EntraClient, NoAnswer, Refusal, SignInHttp, TokenAnswer};

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

/// Authority, tenant, scope (one cloud's Graph) and credential.
type CacheKey = (String, String, String, Credential);

pub struct TokenProvider {
    http: SignInHttp,
    secrets: Arc<dyn SecretStore>,
    clock: Arc<dyn Clock>,
    /// One slot per (authority, tenant, scope, credential). A slot's lock
    /// is held across a fetch so that concurrent requests for the same
    /// token wait for one fetch; other tenants are not held up by a slow
    /// sign-in.
    cache: std::sync::Mutex<HashMap<CacheKey, Arc<tokio::sync::Mutex<Option<AccessToken>>>>>,
}

/// What a token request asks for.
enum Grant<'a> {
    /// An app-only token for `scope` (the `.default` scope of a Graph).
    ClientCredentials { scope: &'a str },
    /// The `id_token` of an OpenID Connect sign-in's authorization code.
    Code {
        code: &'a str,
        redirect_uri: &'a str,
    },
}

/// How the client proves who it is.
enum ClientAuth {
    Secret(SecretValue),
    /// A signed JWT (`private_key_jwt`, which `oauth2` sends as extra
    /// parameters).
    Assertion(String),
}

/// Form parameters `oauth2` sends beyond its own.
type ExtraParams = Vec<(&'static str, String)>;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// One request to sign with the platform app's stored certificate.
struct Signed<'a> {
    to: &'a Endpoint<'a>,
    client_id: &'a Uuid,
    secret: &'a SecretRef,
    alg: AssertionAlg,
    grant: &'a Grant<'a>,
}

fn refused_certificate(answer: &Result<TokenAnswer, AuthError>) -> bool {
    matches!(answer, Err(AuthError::Refused { code: Some(code), .. }) if CERTIFICATE_REFUSED.contains(code))
}

impl TokenProvider {
    pub fn new(secrets: Arc<dyn SecretStore>, clock: Arc<dyn Clock>) -> Self {
        Self {
            http: SignInHttp::new(),
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

    /// A provider over `secrets` that shares this one's clock but none of
    /// its tokens: a candidate secret, tested before it
    /// replaces the stored one, is read through it. The cache is keyed by
    /// the secret's name, not its value: tested through this provider, the
    /// candidate would find the stored secret's token (and pass with it),
    /// or leave its own behind for the next sync (which would then run on a
    /// secret that was never stored).
    pub fn isolated(&self, secrets: Arc<dyn SecretStore>) -> Self {
        Self::new(secrets, self.clock.clone())
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
        let answer = self
            .authenticated_post(&to, credential, &Grant::ClientCredentials { scope })
            .await?;
        Ok(self.access_token(&answer))
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
        let grant = Grant::Code { code, redirect_uri };
        let answer = self.authenticated_post(&to, credential, &grant).await?;
        answer.id_token.clone().ok_or_else(|| {
            AuthError::Protocol("the code redemption's answer has no id_token".into())
        })
    }

    /// Asks for `grant` with the client's credential.
    async fn authenticated_post(
        &self,
        to: &Endpoint<'_>,
        credential: &Credential,
        grant: &Grant<'_>,
    ) -> Result<TokenAnswer, AuthError> {
        match credential {
            Credential::ClientSecret { client_id, secret } => {
                let secret = self.secrets.current(secret).await?;
                let auth = ClientAuth::Secret(secret);
                self.exchange(to, client_id, auth, grant, credential.signer())
                    .await
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
    async fn with_stored_certificate(&self, s: &Signed<'_>) -> Result<TokenAnswer, AuthError> {
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

    async fn sign_with(
        &self,
        s: &Signed<'_>,
        cert: &AppCertificate,
    ) -> Result<TokenAnswer, AuthError> {
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
        let grant = Grant::ClientCredentials { scope };
        let answer = self
            .with_certificate(&to, client_id, cert, alg, &grant)
            .await?;
        Ok(self.access_token(&answer))
    }

    /// Asks for `grant` with a client assertion signed by `cert`.
    async fn with_certificate(
        &self,
        to: &Endpoint<'_>,
        client_id: &Uuid,
        cert: &AppCertificate,
        alg: AssertionAlg,
        grant: &Grant<'_>,
    ) -> Result<TokenAnswer, AuthError> {
        let assertion = client_assertion(cert, alg, client_id, &to.url, self.clock.now())
            .map_err(|e| AuthError::Certificate(e.to_string()))?;
        let auth = ClientAuth::Assertion(assertion);
        self.exchange(to, client_id, auth, grant, Signer::ConsentApp)
            .await
    }

    /// An access token from a successful token answer.
    fn access_token(&self, answer: &TokenAnswer) -> AccessToken {
        let (expires_at, refresh_at) = oauth::lifetime(answer, self.clock.now());
        AccessToken {
            value: SecretValue::new(answer.access_token().secret()),
            expires_at,
            refresh_at,
        }
    }

    /// Sends one token request through `oauth2`'s client; Entra's refusal
    /// comes back as advice.
    async fn exchange(
        &self,
        to: &Endpoint<'_>,
        client_id: &Uuid,
        auth: ClientAuth,
        grant: &Grant<'_>,
        signer: Signer,
    ) -> Result<TokenAnswer, AuthError> {
        let (client, extra) = client_for(to, client_id, auth)?;
        let answer = match grant {
            Grant::ClientCredentials { scope } => {
                let mut request = client
                    .exchange_client_credentials()
                    .add_scope(Scope::new((*scope).to_owned()));
                for (name, value) in extra {
                    request = request.add_extra_param(name, value);
                }
                request.request_async(&self.http).await
            }
            Grant::Code { code, redirect_uri } => {
                let redirect = RedirectUrl::new((*redirect_uri).to_owned()).map_err(|e| {
                    AuthError::Protocol(format!("the redirect URI is not a URL ({e})"))
                })?;
                let mut request = client
                    .exchange_code(AuthorizationCode::new((*code).to_owned()))
                    .set_redirect_uri(std::borrow::Cow::Owned(redirect))
                    .add_extra_param("scope", "openid");
                for (name, value) in extra {
                    request = request.add_extra_param(name, value);
                }
                request.request_async(&self.http).await
            }
        };
        answer.map_err(|e| refusal(e, to, signer))
    }
}

/// `oauth2`'s client for `to` as `client_id`, and the parameters its
/// authentication adds to every request: none for a secret (the client
/// sends it), the signed assertion otherwise.
fn client_for(
    to: &Endpoint<'_>,
    client_id: &Uuid,
    auth: ClientAuth,
) -> Result<(EntraClient, ExtraParams), AuthError> {
    let url = TokenUrl::new(to.url.clone()).map_err(|e| {
        AuthError::Protocol(format!("the token endpoint {} is not a URL ({e})", to.url))
    })?;
    let client: EntraClient = oauth2::Client::new(ClientId::new(client_id.to_string()))
        .set_token_uri(url)
        .set_auth_type(AuthType::RequestBody);
    Ok(match auth {
        ClientAuth::Secret(secret) => (
            client.set_client_secret(ClientSecret::new(secret.expose().to_owned())),
            Vec::new(),
        ),
        ClientAuth::Assertion(assertion) => (
            client,
            vec![
                ("client_assertion_type", ASSERTION_TYPE.to_owned()),
                ("client_assertion", assertion),
            ],
        ),
    })
}

/// Entra's refusal as advice; no answer, or one that is neither token nor
/// refusal, as what it is.
fn refusal(e: Refusal<TokenErrorBody>, to: &Endpoint<'_>, signer: Signer) -> AuthError {
    match e {
        RequestTokenError::ServerResponse(err) => {
            let code = err.code();
            let mut message = aadsts::advice(code, signer, to.tenant);
            if !err.summary().is_empty() {
                message = format!("{message} (Entra said: {})", err.summary());
            }
            AuthError::Refused { code, message }
        }
        RequestTokenError::Request(NoAnswer(detail)) => AuthError::Unreachable {
            authority: to.authority.to_owned(),
            detail,
        },
        other => AuthError::Protocol(oauth::unexpected("the token endpoint", &other)),
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
