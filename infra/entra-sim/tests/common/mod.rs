//! Shared setup for the HTTP tests: certificates, client assertions, a tenant
//! with the consent connector's app, and a token.
#![allow(dead_code)]

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dirsync_entra_sim::{EntraSim, MultiTenantApp, TenantSpec};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
pub const REDIRECT: &str = "https://dirsync.test/consent/callback";

/// A self-signed RSA certificate and its private key.
pub struct Cert {
    pub der: Vec<u8>,
    pub key_pem: String,
}

impl Cert {
    pub fn rsa() -> Cert {
        Cert::with(&rcgen::PKCS_RSA_SHA256, false)
    }

    /// A certificate whose validity ended in 2021.
    pub fn expired_rsa() -> Cert {
        Cert::with(&rcgen::PKCS_RSA_SHA256, true)
    }

    pub fn ec() -> Cert {
        Cert::with(&rcgen::PKCS_ECDSA_P256_SHA256, false)
    }

    fn with(alg: &'static rcgen::SignatureAlgorithm, expired: bool) -> Cert {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["dirsync.test".to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "dirsync consent connector");
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = params.self_signed(&key).unwrap();
        Cert {
            der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
        }
    }

    pub fn x5t_s256(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(&self.der))
    }

    pub fn x5t(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha1::digest(&self.der))
    }

    fn encoding_key(&self) -> EncodingKey {
        EncodingKey::from_rsa_pem(self.key_pem.as_bytes()).unwrap()
    }

    /// Signs `claims` with the header Entra documents: PS256 + `x5t#S256`.
    pub fn sign_ps256(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::PS256);
        header.x5t_s256 = Some(self.x5t_s256());
        jsonwebtoken::encode(&header, claims, &self.encoding_key()).unwrap()
    }

    /// Signs `claims` the legacy way: RS256 + `x5t` (SHA-1).
    pub fn sign_rs256(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.x5t = Some(self.x5t());
        jsonwebtoken::encode(&header, claims, &self.encoding_key()).unwrap()
    }
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Client-assertion claims for `client_id` and the token endpoint `aud`.
pub fn assertion_claims(client_id: Uuid, aud: &str) -> Value {
    let now = now();
    json!({
        "aud": aud,
        "iss": client_id.to_string(),
        "sub": client_id.to_string(),
        "jti": Uuid::new_v4().to_string(),
        "nbf": now,
        "iat": now,
        "exp": now + 600,
    })
}

/// A simulator with one tenant (Contoso) and the consent connector's app,
/// consented there with `roles`.
pub struct Fixture {
    pub sim: EntraSim,
    pub http: reqwest::Client,
    pub tenant: Uuid,
    pub home: Uuid,
    pub client_id: Uuid,
    pub object_id: Uuid,
    pub cert: Cert,
}

impl Fixture {
    pub async fn new(roles: &[&str]) -> Fixture {
        let sim = EntraSim::start().await.unwrap();
        let home = sim.add_tenant(TenantSpec {
            display_name: "dirsync Publisher".into(),
            verified_domains: vec!["dirsync.test".into()],
            ..TenantSpec::default()
        });
        let tenant = sim.add_tenant(TenantSpec {
            display_name: "Contoso".into(),
            verified_domains: vec!["contoso.example".into(), "contoso.test".into()],
            ..TenantSpec::default()
        });
        let cert = Cert::rsa();
        let client_id = Uuid::new_v4();
        let object_id = Uuid::new_v4();
        sim.register_multitenant_app(MultiTenantApp {
            client_id,
            object_id,
            home_tenant: home,
            redirect_uris: vec![REDIRECT.into()],
            certificates: vec![cert.der.clone()],
        });
        if !roles.is_empty() {
            sim.grant_admin_consent(tenant, client_id, roles);
        }
        Fixture {
            sim,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            tenant,
            home,
            client_id,
            object_id,
            cert,
        }
    }

    pub fn token_url(&self, tenant: Uuid) -> String {
        self.sim.token_url(&tenant.to_string())
    }

    /// Posts a token request with `assertion`; returns status and JSON body.
    pub async fn post_assertion(&self, url: &str, assertion: &str) -> (u16, Value) {
        self.post_form(
            url,
            &[
                ("client_id", self.client_id.to_string().as_str()),
                ("scope", &self.sim.graph_scope()),
                ("grant_type", "client_credentials"),
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", assertion),
            ],
        )
        .await
    }

    pub async fn post_form(&self, url: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let response = self.http.post(url).form(form).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// A Graph access token for `tenant`, obtained with a PS256 assertion.
    pub async fn token_for(&self, tenant: Uuid) -> String {
        let url = self.token_url(tenant);
        let assertion = self
            .cert
            .sign_ps256(&assertion_claims(self.client_id, &url));
        let (status, body) = self.post_assertion(&url, &assertion).await;
        assert_eq!(status, 200, "token request failed: {body}");
        body["access_token"].as_str().unwrap().to_string()
    }

    pub async fn token(&self) -> String {
        self.token_for(self.tenant).await
    }

    /// GETs a Graph path (relative to `/v1.0/`) or an absolute link.
    pub async fn get(
        &self,
        token: &str,
        path_or_link: &str,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        self.get_with(token, path_or_link, &[]).await
    }

    pub async fn get_with(
        &self,
        token: &str,
        path_or_link: &str,
        headers: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let url = if path_or_link.starts_with("http") {
            path_or_link.to_string()
        } else {
            format!("{}/v1.0/{path_or_link}", self.sim.graph_url())
        };
        let mut request = self.http.get(url).bearer_auth(token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        (status, headers, body)
    }

    pub async fn post_json(
        &self,
        token: &str,
        path: &str,
        body: &Value,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let url = format!("{}/v1.0/{path}", self.sim.graph_url());
        let response = self
            .http
            .post(url)
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        (status, headers, body)
    }
}

/// The AADSTS code of a token error body.
pub fn aadsts(body: &Value) -> u64 {
    let code = body["error_codes"][0].as_u64().unwrap_or(0);
    let description = body["error_description"].as_str().unwrap_or("");
    assert!(
        description.starts_with(&format!("AADSTS{code}:")),
        "error_description starts with the code: {description}"
    );
    code
}
