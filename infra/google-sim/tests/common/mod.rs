//! Shared setup for the HTTP tests: a customer, a service account with
//! delegation, signed assertions and tokens.
#![allow(dead_code)]

use std::time::{SystemTime, UNIX_EPOCH};

use dirsync_google_sim::GoogleSim;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
pub const USER_RO: &str = "https://www.googleapis.com/auth/admin.directory.user.readonly";
pub const GROUP_RO: &str = "https://www.googleapis.com/auth/admin.directory.group.readonly";
pub const DOMAIN: &str = "example.test";
pub const ADMIN: &str = "admin@example.test";
pub const SA_EMAIL: &str = "dirsync@dirsync-test.iam.gserviceaccount.com";

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

pub struct Setup {
    pub sim: GoogleSim,
    pub customer: String,
    pub key: Value,
    pub http: reqwest::Client,
}

impl Setup {
    /// A customer, a service account and delegation for both read scopes.
    pub async fn new() -> Setup {
        let sim = GoogleSim::start().await.expect("sim starts");
        let customer = sim.add_customer(DOMAIN, ADMIN);
        let key: Value =
            serde_json::from_str(&sim.add_service_account(SA_EMAIL)).expect("key file is JSON");
        sim.grant_delegation(
            &customer,
            key["client_id"].as_str().expect("client_id"),
            &[
                "admin.directory.user.readonly",
                "admin.directory.group.readonly",
            ],
        );
        Setup {
            sim,
            customer,
            key,
            http: reqwest::Client::new(),
        }
    }

    pub fn client_id(&self) -> String {
        self.key["client_id"]
            .as_str()
            .expect("client_id")
            .to_string()
    }

    /// Standard claims for `sub` and `scope`.
    pub fn claims(&self, sub: &str, scope: &str) -> Value {
        let iat = now();
        json!({
            "iss": self.key["client_email"],
            "sub": sub,
            "scope": scope,
            "aud": self.key["token_uri"],
            "iat": iat,
            "exp": iat + 3600,
        })
    }

    /// Signs claims with the key file's private key and `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        sign_with(&self.key, claims)
    }

    pub async fn token_request(&self, assertion: &str) -> (u16, Value) {
        let response = self
            .http
            .post(self.sim.token_url())
            .form(&[("grant_type", JWT_BEARER), ("assertion", assertion)])
            .send()
            .await
            .expect("token request");
        let status = response.status().as_u16();
        (status, response.json().await.expect("token JSON"))
    }

    /// An access token for `sub` with `scope`; panics on failure.
    pub async fn token_for(&self, sub: &str, scope: &str) -> String {
        let (status, body) = self
            .token_request(&self.sign(&self.claims(sub, scope)))
            .await;
        assert_eq!(status, 200, "token: {body}");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    /// An admin token with both read scopes.
    pub async fn admin_token(&self) -> String {
        self.token_for(ADMIN, &format!("{USER_RO} {GROUP_RO}"))
            .await
    }

    /// `GET {api}{path_and_query}` with a bearer token.
    pub async fn get(&self, path_and_query: &str, token: Option<&str>) -> (u16, Value) {
        let mut request = self
            .http
            .get(format!("{}{path_and_query}", self.sim.api_url()));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("API request");
        let status = response.status().as_u16();
        (status, response.json().await.expect("API JSON"))
    }

    /// Every page of a listing; returns the items and the number of pages.
    pub async fn all_pages(&self, path: &str, field: &str, token: &str) -> (Vec<Value>, usize) {
        let mut items = Vec::new();
        let mut pages = 0;
        let mut page_token: Option<String> = None;
        loop {
            let sep = if path.contains('?') { '&' } else { '?' };
            let url = match &page_token {
                Some(t) => format!("{path}{sep}pageToken={t}"),
                None => path.to_string(),
            };
            let (status, body) = self.get(&url, Some(token)).await;
            assert_eq!(status, 200, "{url}: {body}");
            pages += 1;
            items.extend(body[field].as_array().cloned().unwrap_or_default());
            match body["nextPageToken"].as_str() {
                Some(t) => page_token = Some(t.to_string()),
                None => return (items, pages),
            }
        }
    }
}

pub fn sign_with(key: &Value, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = key["private_key_id"].as_str().map(str::to_string);
    let encoding =
        EncodingKey::from_rsa_pem(key["private_key"].as_str().expect("private_key").as_bytes())
            .expect("PKCS#8 RSA key");
    jsonwebtoken::encode(&header, claims, &encoding).expect("signing")
}

/// The first error reason of a Google API error body.
pub fn reason(body: &Value) -> &str {
    body["error"]["errors"][0]["reason"].as_str().unwrap_or("")
}
