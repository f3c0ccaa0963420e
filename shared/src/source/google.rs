//! Google Workspace through the Admin SDK Directory API, as a service
//! account with domain-wide delegation impersonating an administrator.
//!
//! Two streams: `users` (`users.list`, 500 a page, `projection=full`) and
//! `groups` (`groups.list`, 200 a page; each group's `members.list` read
//! whole, as Google has no bulk membership read). Page tokens survive
//! connections, so a run resumes at the page it stopped. There is no change
//! feed for this: every read is full, and deletions come from the sweep.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use oauth2::basic::{BasicErrorResponse, BasicErrorResponseType};
use oauth2::{RequestTokenError, TokenResponse as _};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::oauth::{self, NoAnswer, Refusal, SignInHttp};
use crate::clock::Clock;
use crate::domain::{
    Connector, EmailAddress, Group, GroupKind, MemberKind, MemberRole, SecretRef, SourceConfig,
    SourceId, User,
};
use crate::secrets::{SecretStore, SecretValue};
use crate::source::http::{BadPage, Call, Driver, QuotaWait, Service, Verdict};
use crate::source::retry::RetryPolicy;
use crate::source::{
    Change, ConnectionReport, DirectorySource, Member, Next, ReadFrom, RequestStats, SourceError,
    SourcePage, Stream,
};

pub const SCOPES: &str = "https://www.googleapis.com/auth/admin.directory.user.readonly \
https://www.googleapis.com/auth/admin.directory.group.readonly";
const GOOGLE_API: &str = "https://admin.googleapis.com";
const GOOGLE_TOKEN: &str = "https://oauth2.googleapis.com/token";

/// The fields of a service account's JSON key that signing in needs.
#[derive(Deserialize)]
struct ServiceAccountKey {
    client_email: String,
    client_id: Option<String>,
    private_key: String,
    private_key_id: Option<String>,
    token_uri: Option<String>,
}

/// What the administrator is told to store instead.
const KEY_ADVICE: &str = "store the JSON key file Google Cloud gave you (IAM → Service accounts → Keys → Add key → JSON)";

/// Checks a service account's JSON key as it is given, without echoing any
/// of it: the shape of the file, a private key that parses, and a token
/// endpoint that is Google's (or, for a connector with its own `api_url`,
/// that host's).
pub fn check_key(value: &str, api_url: Option<&str>) -> Result<(), String> {
    parse_key(value, Some(api_url.unwrap_or(GOOGLE_API))).map(|_| ())
}

fn parse_key(value: &str, api_url: Option<&str>) -> Result<ServiceAccountKey, String> {
    let json: serde_json::Value = serde_json::from_str(value).map_err(|_| {
        format!("the service-account key is not JSON (or is cut short); {KEY_ADVICE}")
    })?;
    match json["type"].as_str() {
        Some("service_account") => {}
        _ if json.get("installed").is_some() || json.get("web").is_some() => {
            return Err(format!(
                "this is an OAuth client file, not a service account's key; {KEY_ADVICE}"
            ));
        }
        _ => {
            return Err(format!(
                "the key's \"type\" is not \"service_account\"; {KEY_ADVICE}"
            ));
        }
    }
    let key: ServiceAccountKey = serde_json::from_value(json).map_err(|e| {
        let missing = e.to_string();
        let field = missing.split('`').nth(1).unwrap_or("a field").to_owned();
        format!("the service-account key lacks {field}; {KEY_ADVICE}")
    })?;
    if key.client_email.parse::<EmailAddress>().is_err() {
        return Err(format!(
            "the key's client_email is not an address; {KEY_ADVICE}"
        ));
    }
    jsonwebtoken::EncodingKey::from_rsa_pem(key.private_key.as_bytes()).map_err(|_| {
        format!("the key's private_key is not an RSA private key in PEM form; {KEY_ADVICE}")
    })?;
    if let Some(uri) = &key.token_uri
        && !token_uri_allowed(uri, api_url)
    {
        return Err(format!(
            "the key's token_uri is not Google's token endpoint ({GOOGLE_TOKEN}); a key file from Google Cloud \
             names it; {KEY_ADVICE}"
        ));
    }
    Ok(key)
}

/// Google's token endpoint over https, or the origin of the connector's
/// own API (a simulator or a proxy the platform set up).
fn token_uri_allowed(uri: &str, api_url: Option<&str>) -> bool {
    let origin = |u: &str| {
        url::Url::parse(u).ok().map(|u| {
            (
                u.scheme().to_owned(),
                u.host_str().map(str::to_owned),
                u.port_or_known_default(),
            )
        })
    };
    let given = origin(uri);
    given.is_some()
        && (given == origin(GOOGLE_TOKEN) || api_url.is_some_and(|a| given == origin(a)))
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

pub struct GoogleSource {
    /// For the token endpoint (the API's requests go through the driver).
    http: SignInHttp,
    secrets: Arc<dyn SecretStore>,
    clock: Arc<dyn Clock>,
    key: SecretRef,
    admin: EmailAddress,
    customer: String,
    api_url: String,
    driver: Driver,
    token: tokio::sync::Mutex<Option<(SecretValue, DateTime<Utc>)>>,
}

impl GoogleSource {
    pub fn for_connector(
        connector: &Connector,
        secrets: Arc<dyn SecretStore>,
        clock: Arc<dyn Clock>,
        policy: RetryPolicy,
    ) -> Result<Self, SourceError> {
        let SourceConfig::Google {
            admin_email,
            service_account_key,
            customer,
            api_url,
        } = &connector.source
        else {
            return Err(SourceError::Config(format!(
                "a {} connector is not read from Google",
                connector.kind()
            )));
        };
        Ok(Self {
            http: SignInHttp::new(),
            secrets,
            clock,
            key: service_account_key.clone(),
            admin: admin_email.clone(),
            customer: customer.clone(),
            api_url: api_url.clone().unwrap_or_else(|| GOOGLE_API.to_owned()),
            driver: Driver::new(policy, None),
            token: tokio::sync::Mutex::new(None),
        })
    }

    async fn key(&self) -> Result<ServiceAccountKey, SourceError> {
        let value = self
            .secrets
            .current(&self.key)
            .await
            .map_err(|e| SourceError::Config(e.to_string()))?;
        // Checked at every use too: the signed assertion goes only to
        // Google's token endpoint (or the connector's own API host).
        parse_key(value.expose(), Some(&self.api_url)).map_err(SourceError::Config)
    }

    /// An access token: a JWT signed with the service account's key, for
    /// the administrator it acts as, cached until shortly before expiry.
    async fn access_token(&self) -> Result<SecretValue, SourceError> {
        let mut cached = self.token.lock().await;
        if let Some((t, until)) = cached.as_ref()
            && self.clock.now() < *until
        {
            return Ok(t.clone());
        }
        let key = self.key().await?;
        let token_uri = key
            .token_uri
            .clone()
            .unwrap_or_else(|| GOOGLE_TOKEN.to_owned());
        let now = self.clock.now().timestamp();
        let claims = Claims {
            iss: &key.client_email,
            sub: self.admin.as_str(),
            scope: SCOPES,
            aud: &token_uri,
            iat: now,
            exp: now + 3600,
        };
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = key.private_key_id.clone();
        let signing =
            jsonwebtoken::EncodingKey::from_rsa_pem(key.private_key.as_bytes()).map_err(|_| {
                SourceError::Config(
                    "the service-account key's private_key is not a usable RSA key".into(),
                )
            })?;
        let assertion = jsonwebtoken::encode(&header, &claims, &signing)
            .map_err(|e| SourceError::Config(e.to_string()))?;
        let answer = oauth::jwt_bearer(&self.http, &token_uri, &assertion)
            .await
            .map_err(|e| self.refusal(e, &key))?;
        let token = SecretValue::new(answer.access_token().secret());
        let (_, refresh_at) = oauth::lifetime(&answer, self.clock.now());
        *cached = Some((token.clone(), refresh_at));
        Ok(token)
    }

    /// Google's refusal of the sign-in, in words that say what to fix.
    fn refusal(&self, e: Refusal<BasicErrorResponse>, key: &ServiceAccountKey) -> SourceError {
        let error = match e {
            RequestTokenError::ServerResponse(error) => error,
            RequestTokenError::Request(NoAnswer(why)) => {
                return SourceError::Unavailable(format!(
                    "Google's sign-in service could not be reached: {why}"
                ));
            }
            other => {
                return SourceError::Protocol(oauth::unexpected(
                    "Google's sign-in service",
                    &other,
                ));
            }
        };
        let description = error.error_description().map_or("", String::as_str);
        let client = key.client_id.as_deref().unwrap_or(&key.client_email);
        SourceError::Auth(match error.error() {
            BasicErrorResponseType::UnauthorizedClient => format!(
                "domain-wide delegation is not granted: in the Google Admin console (Security → Access and data control → \
                 API controls → Domain-wide delegation) add client ID {client} with the scopes {}",
                SCOPES.replace(' ', ", ")
            ),
            BasicErrorResponseType::InvalidGrant
                if description.contains("email") || description.contains("User ID") =>
            {
                format!(
                    "Google does not know the administrator {} the connector acts as: check admin_email",
                    self.admin
                )
            }
            BasicErrorResponseType::InvalidGrant | BasicErrorResponseType::InvalidClient => {
                format!(
                    "Google refused the service-account key ({description}): the key may have been deleted or rotated; store a current JSON key"
                )
            }
            other => format!(
                "Google refused the sign-in ({}: {description})",
                other.as_ref()
            ),
        })
    }

    /// One API GET through the driver: Google's quota errors ridden out
    /// for the page's budget; a 200 must be a Directory API page holding
    /// `collection` unless it may be [empty](Collection).
    async fn get(
        &self,
        path_and_query: &str,
        collection: Collection,
        cost: &mut Cost,
    ) -> Result<Value, SourceError> {
        let url = format!("{}{path_and_query}", self.api_url.trim_end_matches('/'));
        let read = move |text: String| collection.read(&text);
        self.driver
            .send(
                self,
                &Call::get(&url),
                &read,
                &mut cost.stats,
                &mut cost.quota,
            )
            .await
    }

    fn page_token(from: &ReadFrom) -> Option<String> {
        match from {
            ReadFrom::Continue(t) => Some(t.clone()),
            _ => None,
        }
    }

    fn query(&self, max: u32, extra: &str, token: Option<&str>) -> String {
        let mut q = format!(
            "customer={}&maxResults={max}{extra}",
            url_encode(&self.customer)
        );
        if let Some(t) = token {
            q.push_str(&format!("&pageToken={}", url_encode(t)));
        }
        q
    }

    fn next(body: &Value) -> Next {
        match body["nextPageToken"].as_str() {
            Some(t) if !t.is_empty() => Next::Page(t.to_owned()),
            _ => Next::Done { cursor: None },
        }
    }

    async fn read_users(&self, from: &ReadFrom) -> Result<SourcePage, SourceError> {
        let mut cost = Cost::default();
        let token = Self::page_token(from);
        let body = self
            .get(
                &format!(
                    "/admin/directory/v1/users?{}",
                    self.query(500, "&projection=full", token.as_deref())
                ),
                Collection::USERS,
                &mut cost,
            )
            .await?;
        let changes = body["users"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(map_user)
            .collect();
        Ok(SourcePage {
            changes,
            next: Self::next(&body),
            stats: cost.stats,
        })
    }

    async fn read_groups(&self, from: &ReadFrom) -> Result<SourcePage, SourceError> {
        let mut cost = Cost::default();
        let token = Self::page_token(from);
        let body = self
            .get(
                &format!(
                    "/admin/directory/v1/groups?{}",
                    self.query(200, "", token.as_deref())
                ),
                Collection::groups(token.is_some()),
                &mut cost,
            )
            .await?;
        let mut changes = Vec::new();
        for g in body["groups"].as_array().into_iter().flatten() {
            let Some(id) = g["id"].as_str().and_then(|i| SourceId::new(i).ok()) else {
                continue;
            };
            changes.push(Change::Group(map_group(&id, g)));
            let mut members = Vec::new();
            let mut page: Option<String> = None;
            loop {
                let mut path = format!(
                    "/admin/directory/v1/groups/{}/members?maxResults=200",
                    url_encode(id.as_str())
                );
                if let Some(t) = &page {
                    path.push_str(&format!("&pageToken={}", url_encode(t)));
                }
                let expected = Collection::members(page.is_some(), members_count(g));
                let m = self.get(&path, expected, &mut cost).await?;
                members.extend(
                    m["members"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(map_member),
                );
                match m["nextPageToken"].as_str() {
                    Some(t) if !t.is_empty() => page = Some(t.to_owned()),
                    _ => break,
                }
            }
            changes.push(Change::ReplaceMembers { group: id, members });
        }
        Ok(SourcePage {
            changes,
            next: Self::next(&body),
            stats: cost.stats,
        })
    }
}

fn url_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A Directory API group: every group is a mailing list, found by its
/// address and by each alias, editable or not (those outside the
/// customer's primary domain and its subdomains are not editable, and still
/// deliver).
fn map_group(id: &SourceId, g: &Value) -> Group {
    let mut group = Group::new(
        id.clone(),
        g["name"].as_str().unwrap_or(id.as_str()),
        GroupKind::Distribution,
    );
    group.mail = g["email"].as_str().and_then(|m| m.parse().ok());
    let aliases = ["aliases", "nonEditableAliases"]
        .iter()
        .flat_map(|k| g[*k].as_array().into_iter().flatten())
        .filter_map(|a| a.as_str()?.parse().ok());
    group.with_aliases(aliases)
}

/// A `members.list` entry, with its role and the address it delivers to.
/// A member from outside the customer is listed as a `USER` (or a `GROUP`)
/// like any other, with an id when the address is a Google account and
/// without one otherwise: one without an id, or typed `EXTERNAL`, is an
/// external recipient here; one with an id that is no user of the
/// directory is found to be one at the end of the run. `CUSTOMER` stands
/// for every user of the customer.
fn map_member(m: &Value) -> Option<Member> {
    let address: Option<EmailAddress> = m["email"].as_str().and_then(|e| e.parse().ok());
    let id = m["id"].as_str().and_then(|i| SourceId::new(i).ok());
    let (kind, id) = match (m["type"].as_str()?, id) {
        ("USER", Some(id)) => (MemberKind::User, id),
        ("GROUP", Some(id)) => (MemberKind::Group, id),
        ("CUSTOMER", Some(id)) => (MemberKind::Everyone, id),
        ("USER" | "GROUP" | "EXTERNAL", id) => {
            let address = address.as_ref()?;
            let id = id.or_else(|| SourceId::new(address.as_str()).ok())?;
            (MemberKind::External, id)
        }
        _ => return None,
    };
    let role = match m["role"].as_str() {
        Some("OWNER") => Some(MemberRole::Owner),
        Some("MANAGER") => Some(MemberRole::Manager),
        _ => Some(MemberRole::Member),
    };
    Some(Member {
        id,
        kind,
        role,
        address: address.filter(|_| kind != MemberKind::Everyone),
    })
}

/// A Directory API user: suspended or archived users are disabled.
fn map_user(u: &Value) -> Option<Change> {
    let id = SourceId::new(u["id"].as_str()?).ok()?;
    let primary: EmailAddress = u["primaryEmail"].as_str()?.parse().ok()?;
    let aliases = u["aliases"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str()?.parse().ok());
    let mut user = User::new(id, primary).with_aliases(aliases);
    user.user_principal_name = u["primaryEmail"].as_str().map(str::to_owned);
    user.given_name = u["name"]["givenName"].as_str().map(str::to_owned);
    user.surname = u["name"]["familyName"].as_str().map(str::to_owned);
    user.display_name = u["name"]["fullName"].as_str().map(str::to_owned);
    user.enabled =
        !(u["suspended"].as_bool().unwrap_or(false) || u["archived"].as_bool().unwrap_or(false));
    if let Some(org) = u["organizations"].as_array().and_then(|o| {
        o.iter()
            .find(|o| o["primary"].as_bool().unwrap_or(false))
            .or(o.first())
    }) {
        for (theirs, ours) in [("department", "department"), ("title", "jobTitle")] {
            if let Some(v) = org[theirs].as_str().filter(|v| !v.is_empty()) {
                user.attributes.insert(ours.to_owned(), v.to_owned());
            }
        }
    }
    Some(Change::User(user))
}

/// What one page read cost, and how long it has ridden out quotas: a page
/// of groups reads each group's members too, all within one budget.
#[derive(Default)]
struct Cost {
    stats: RequestStats,
    quota: QuotaWait,
}

/// The list a page must hold. Google leaves a list out of the page when it
/// is empty (its client libraries document the field as "absent if
/// empty"), and does not document pages that are empty with more to come.
/// So a page without its list is taken for an empty last page only where
/// the listing may be empty; anywhere else it is a page that lost its list
/// on the way, read again and never taken for the end.
#[derive(Debug, Clone, Copy)]
struct Collection {
    key: &'static str,
    may_be_empty: bool,
}

impl Collection {
    /// A customer's users always include the administrator the service
    /// account acts as: no page of users is empty.
    const USERS: Collection = Collection {
        key: "users",
        may_be_empty: false,
    };

    /// A customer may have no groups; a page after one that promised more
    /// cannot be empty.
    fn groups(continued: bool) -> Self {
        Self {
            key: "groups",
            may_be_empty: !continued,
        }
    }

    /// A group's members, of which the group's listing gave the count.
    fn members(continued: bool, count: Option<u64>) -> Self {
        Self {
            key: "members",
            may_be_empty: !continued && count.unwrap_or(0) == 0,
        }
    }

    /// A 200's body as a Directory API page (an object of a `kind` of it)
    /// holding this list.
    fn read(self, text: &str) -> Result<Value, BadPage> {
        let page: Value = serde_json::from_str(text)
            .map_err(|_| BadPage::Unreadable("HTTP 200 whose body is not JSON".into()))?;
        let kind = page["kind"].as_str().unwrap_or_default();
        if !kind.starts_with("admin#directory#") {
            return Err(BadPage::Unreadable(
                "HTTP 200 whose body is not a Directory API page".into(),
            ));
        }
        let more = page["nextPageToken"]
            .as_str()
            .is_some_and(|t| !t.is_empty());
        match &page[self.key] {
            Value::Array(_) => Ok(page),
            Value::Null if self.may_be_empty && !more => Ok(page),
            _ => Err(BadPage::Incomplete(format!(
                "a page of {} without its list",
                self.key
            ))),
        }
    }
}

/// `directMembersCount`, an int64 and so a string in Google's JSON.
fn members_count(group: &Value) -> Option<u64> {
    let count = &group["directMembersCount"];
    count
        .as_u64()
        .or_else(|| count.as_str().and_then(|c| c.parse().ok()))
}

#[async_trait]
impl Service for GoogleSource {
    type Token = SecretValue;
    type Failure = SourceError;

    fn name(&self) -> &'static str {
        "the Directory API"
    }

    async fn token(&self) -> Result<SecretValue, SourceError> {
        self.access_token().await
    }

    fn bearer<'t>(&self, token: &'t SecretValue) -> &'t str {
        token.expose()
    }

    async fn forget(&self, _token: &SecretValue) {
        *self.token.lock().await = None;
    }

    fn judge(&self, status: StatusCode, body: &str) -> Verdict<SourceError> {
        let error: Value = serde_json::from_str(body).unwrap_or_default();
        let reason = error["error"]["errors"][0]["reason"]
            .as_str()
            .unwrap_or_default();
        let message = error["error"]["message"].as_str().unwrap_or_default();
        match status.as_u16() {
            200 => Verdict::Success,
            401 => Verdict::Unauthorized(SourceError::Auth(format!(
                "Google refused the access token twice ({message}); check the service account's key and delegation"
            ))),
            403 if QUOTA_REASONS.contains(&reason) => Verdict::Quota(reason.to_owned()),
            429 => Verdict::Quota("rateLimitExceeded (429)".into()),
            500..=599 => Verdict::Retry(format!("HTTP {status}")),
            403 => Verdict::Fail(SourceError::Permission(
                if reason == "insufficientPermissions" {
                    format!(
                        "the token lacks a scope ({message}): grant {} to the service account's domain-wide delegation",
                        SCOPES.replace(' ', ", ")
                    )
                } else {
                    format!(
                        "Google refused the read ({message}): {} must be an administrator allowed to read users and groups",
                        self.admin
                    )
                },
            )),
            404 => Verdict::Fail(SourceError::Config(format!(
                "Google does not know customer {:?}: use my_customer or the customer ID",
                self.customer
            ))),
            _ => Verdict::Fail(SourceError::Protocol(format!(
                "the Directory API answered HTTP {status}: {message}"
            ))),
        }
    }

    fn failure(&self, error: SourceError) -> SourceError {
        error
    }
}

/// Google's 403 reasons for a spent per-minute quota (429 is the other way
/// it says so).
const QUOTA_REASONS: [&str; 3] = [
    "userRateLimitExceeded",
    "rateLimitExceeded",
    "quotaExceeded",
];

#[async_trait]
impl DirectorySource for GoogleSource {
    async fn read(&self, stream: Stream, from: &ReadFrom) -> Result<SourcePage, SourceError> {
        match stream {
            Stream::Users => self.read_users(from).await,
            Stream::Groups => self.read_groups(from).await,
        }
    }

    fn stats(&self) -> Option<RequestStats> {
        Some(self.driver.stats())
    }

    async fn test_connection(&self) -> ConnectionReport {
        let mut report = ConnectionReport::new();
        let mut cost = Cost::default();
        match self.access_token().await {
            Ok(_) => report.passed(
                "sign-in",
                format!("the service account acts as {}", self.admin),
            ),
            Err(e) => {
                report.failed("sign-in", e.to_string());
                return report;
            }
        }
        for (name, collection) in [
            ("users", Collection::USERS),
            ("groups", Collection::groups(false)),
        ] {
            match self
                .get(
                    &format!("/admin/directory/v1/{name}?{}", self.query(1, "", None)),
                    collection,
                    &mut cost,
                )
                .await
            {
                Ok(_) => report.passed(name, format!("can read {name}")),
                Err(e) => {
                    report.failed(name, e.to_string());
                    return report;
                }
            }
        }
        report
    }
}

#[cfg(test)]
mod key_tests {
    use super::check_key;

    fn rsa_pem() -> String {
        let key =
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                .unwrap();
        key.serialize_pem()
    }

    fn key(pem: &str) -> serde_json::Value {
        serde_json::json!({
            "type": "service_account", "project_id": "p", "private_key_id": "k1",
            "private_key": pem, "client_email": "sync@p.iam.gserviceaccount.com",
            "client_id": "1", "token_uri": "https://oauth2.googleapis.com/token",
        })
    }

    #[test]
    fn a_key_file_from_google_passes_and_every_malformed_one_is_refused_without_its_content() {
        let pem = rsa_pem();
        let good = key(&pem);
        assert_eq!(check_key(&good.to_string(), None), Ok(()));
        let with = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut k = good.clone();
            f(&mut k);
            k.to_string()
        };
        let full = good.to_string();
        let cases: Vec<(String, &str)> = vec![
            ("not json".into(), "not JSON"),
            (full[..full.len() / 2].to_owned(), "not JSON"),
            ("[]".into(), "\"type\""),
            (
                serde_json::json!({"installed": {"client_id": "x", "client_secret": "s"}})
                    .to_string(),
                "OAuth client file",
            ),
            (with(&|k| k["type"] = "authorized_user".into()), "\"type\""),
            (
                with(&|k| {
                    k.as_object_mut().unwrap().remove("private_key");
                }),
                "private_key",
            ),
            (
                with(&|k| {
                    k.as_object_mut().unwrap().remove("client_email");
                }),
                "client_email",
            ),
            (
                with(&|k| k["client_email"] = "nobody".into()),
                "client_email",
            ),
            (
                with(&|k| {
                    k["private_key"] =
                        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----".into()
                }),
                "RSA private key",
            ),
            (
                with(&|k| k["token_uri"] = "https://attacker.example/token".into()),
                "token_uri",
            ),
        ];
        for (value, says) in cases {
            let e = check_key(&value, None).unwrap_err();
            assert!(e.contains(says), "{says}: {e}");
            assert!(
                !e.contains("BEGIN") && !e.contains("gserviceaccount"),
                "{e}"
            );
        }
        // A connector with its own API host may name that host's token URL.
        let local = with(&|k| k["token_uri"] = "http://127.0.0.1:4000/token".into());
        assert_eq!(check_key(&local, Some("http://127.0.0.1:4000")), Ok(()));
        assert!(check_key(&local, Some("http://127.0.0.1:4001")).is_err());
    }
}
